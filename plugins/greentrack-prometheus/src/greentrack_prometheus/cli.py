"""``greentrack serve-metrics`` (a node-level endpoint over the store) and ``greentrack prometheus-dashboard``."""

from __future__ import annotations

import signal
import socket
from typing import Any

from . import config

DASHBOARD = "dashboards/greentrack.json"


def dashboard_json() -> str:
    """The Grafana dashboard shipped with the plugin, as JSON text."""
    from importlib.resources import files

    return (files(__package__) / DASHBOARD).read_text(encoding="utf-8")


class _Stop(Exception):
    pass


def _server(addr: str, port: int, app: Any) -> Any:
    """A single-threaded WSGI server (every scrape reads the store on the main thread, one connection)."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from greentrack.errors import GreentrackError

    class Quiet(WSGIRequestHandler):
        timeout = 10  # a client that stops sending cannot hold the endpoint

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        family = socket.getaddrinfo(addr or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as exc:
        raise GreentrackError(f"cannot serve on {addr}:{port}: {exc.strerror}") from None

    class Server(WSGIServer):
        address_family = family

    try:
        return make_server(addr, port, app, server_class=Server, handler_class=Quiet)
    except OSError as exc:
        raise GreentrackError(f"cannot serve on {addr}:{port}: {exc.strerror or exc}") from None


def register(cli: Any) -> None:
    """Add ``serve-metrics`` and ``prometheus-dashboard`` to the greentrack CLI."""
    import click

    from greentrack.cli.common import db_option

    @cli.command("serve-metrics")
    @click.option("--port", default=None, help=f"TCP port to serve /metrics on (default {config.DEFAULT_NODE_PORT}; "
                                               "0: the system picks one).")
    @click.option("--addr", default=None, help="Address to listen on (default: GREENTRACK_PROMETHEUS_ADDR, "
                                               "[tool.greentrack.prometheus] addr, or 0.0.0.0).")
    @click.option("--grace", default=None, help="Seconds an ended run is still shown (default: "
                                                "GREENTRACK_PROMETHEUS_GRACE, [tool.greentrack.prometheus] "
                                                f"grace_s, or {config.DEFAULT_GRACE_S:.0f}).")
    @click.option("--once", is_flag=True, help="Print one scrape on stdout and exit, instead of serving.")
    @db_option
    def serve_metrics(port: str | None, addr: str | None, grace: str | None, once: bool, db: str | None) -> None:
        """Serve every greentrack run of this host on a Prometheus endpoint.

        Reads the store at each scrape: the runs with status running (their devices' energy as of
        their last flush) and the runs that ended within the grace period (their final values).
        No phase label (the store holds phases once a run ends); steps appear when a run ends.
        Ctrl-C or SIGTERM stops it.
        """
        from prometheus_client import CollectorRegistry, make_wsgi_app

        from greentrack.settings import resolve_db_path

        from .metrics import RunsCollector, exposition, store_up
        from .node import NodeExporter

        cfg = config.load()
        grace_s = cfg.grace_s if grace is None else config.parse_seconds(grace, "--grace")
        port_n = config.DEFAULT_NODE_PORT if port is None else config.parse_port(port, "--port")
        addr = cfg.addr if addr is None else addr.strip()
        db_path = resolve_db_path(db)
        node = NodeExporter(db_path, grace_s)
        coll = RunsCollector(node.snapshots, with_phase=False, extra=lambda: [store_up(node.ok)])
        if once:
            click.echo(exposition(coll), nl=False)
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(coll)
        httpd = _server(addr, port_n, make_wsgi_app(registry))
        bound = httpd.server_address[1]
        shown = f"[{addr}]" if ":" in addr else addr
        click.echo(f"greentrack: serving http://{shown}:{bound}/metrics: runs of {node.host} in {db_path}, "
                   f"ended runs kept {grace_s:g} s (Ctrl-C stops)")

        def on_term(signum: int, frame: Any) -> None:
            raise _Stop()

        prev = signal.signal(signal.SIGTERM, on_term)
        try:
            httpd.serve_forever(poll_interval=0.5)
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            signal.signal(signal.SIGTERM, prev)
            httpd.server_close()
        click.echo("greentrack: serve-metrics stopped")

    @cli.command("prometheus-dashboard")
    @click.option("-o", "--output", default=None, help="Write to this file instead of stdout.")
    def prometheus_dashboard(output: str | None) -> None:
        """Print the Grafana dashboard for greentrack's Prometheus metrics (import it in Grafana)."""
        text = dashboard_json()
        if output is None:
            click.echo(text, nl=not text.endswith("\n"))
            return
        from greentrack.cli.common import write_output

        write_output(text, output)
        click.echo(f"wrote {output}")
