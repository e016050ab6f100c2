"""The per-process exporter: runs of this process, fed by the hooks, served on ``/metrics``.

The hooks run at session start and end (the training thread, once each) and at each sampler
flush (the sampler thread); they update a :class:`~greentrack_prometheus.state.RunState` under a
lock. A scrape (on the HTTP server's thread) takes the same lock only to copy the values. The
server is started by the first session of the process when ``GREENTRACK_PROMETHEUS_PORT`` (or
``[tool.greentrack.prometheus] port``) is set, and serves for the life of the process.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any

from greentrack.notify import say_once

from . import config
from .state import DeviceLabels, RunState, Snapshot


def _host() -> str:
    return os.uname().nodename


class ProcessExporter:
    """The runs of this process and, when configured, the HTTP endpoint that serves them."""

    def __init__(self, grace_s: float = config.DEFAULT_GRACE_S, linger_s: float = 0.0) -> None:
        self.grace_s = grace_s
        self.linger_s = linger_s
        self.lock = threading.Lock()
        self.runs: dict[str, RunState] = {}
        self.recording = False  # True once an endpoint serves or collector() was registered somewhere
        self.server: Any = None
        self.url: str | None = None
        self._linger_registered = False
        self._collector: Any = None
        self.scraped = threading.Condition(self.lock)

    # the collector ------------------------------------------------------------------------------
    def collector(self) -> Any:
        """The ``prometheus_client`` collector of this process's runs (one per process)."""
        if self._collector is None:
            from .metrics import RunsCollector

            self._collector = RunsCollector(self.snapshots)
        return self._collector

    def snapshots(self) -> list[Snapshot]:
        """What one scrape shows; runs ended more than the grace period ago are dropped here."""
        now = time.time()
        with self.lock:
            for rid in [rid for rid, st in self.runs.items() if st.expired(now, self.grace_s)]:
                del self.runs[rid]
            snaps = [st.snapshot(now) for st in self.runs.values()]
            self.scraped.notify_all()
        return snaps

    # serving ------------------------------------------------------------------------------------
    def serve(self, port: int, addr: str) -> bool:
        """Start the endpoint on *addr*:*port*; a port that cannot be bound is said once on stderr."""
        if self.server is not None:
            return True
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector())
        try:
            server, _thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            say_once(f"prometheus: cannot serve on {addr}:{port}: {exc.strerror or exc} "
                     "(no metrics endpoint in this process; the run goes on)")
            return False
        self.server = server
        bound = server.server_address[1]
        shown = f"[{addr}]" if ":" in addr else addr
        self.url = f"http://{shown}:{bound}/metrics"
        if port == 0:
            say_once(f"prometheus: serving {self.url}")
        self.recording = True
        return True

    def shutdown(self) -> None:
        """Stop serving (tests, benchmarks)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self.url = None

    # the hooks ----------------------------------------------------------------------------------
    def start_run(self, run: Any) -> None:
        st = RunState(run_id=run.id, name=run.name, job_id=run.job_id, rank=run.rank, host=_host(),
                      started_at=run.started_at, region=run.region, intensity_g_per_kwh=run.intensity_g_per_kwh,
                      intensity_source=run.intensity_source, pue=run.pue)
        phase = run.current_phase
        for d in run.devices:
            st.add_device(DeviceLabels(d.key, d.name or "", d.uuid or "", d.method or ""), phase)
        st.steps = 0.0
        with self.lock:
            self.runs[run.id] = st

    def samples(self, run: Any, batch: Any) -> None:
        st = self.runs.get(run.id)
        if st is None:
            return
        ended = run.ended_at
        # the last flush comes after the run's end, with counters read past it: the run's own totals
        # (greentrack_session_end) close the counters instead
        readings = dict(run.device_energy_j) if ended is None else {}  # read by the sampler at this flush
        span = dict(getattr(run, "device_energy_span", None) or {})  # the time they cover (else: up to now)
        now = time.time()
        steps = run.steps
        phases = run.phases
        with self.lock:
            st.observe(readings, batch, phases, window_end=now if ended is None else min(now, ended), steps=steps,
                       read_at={k: b for k, (a, b) in span.items()}, counts_from={k: a for k, (a, b) in span.items()})

    def end_run(self, run: Any, result: Any) -> None:
        st = self.runs.get(run.id)
        if st is None:
            return
        readings = {d.key: d.energy_j for d in result.devices}  # the totals stored with the run
        phases = run.phases
        with self.lock:
            st.end(result.ended_at, readings, phases, steps=result.steps)
        if self.linger_s > 0 and self.server is not None and not self._linger_registered:
            self._linger_registered = True
            atexit.register(self.linger)

    def linger(self) -> None:
        """At exit: wait (at most ``linger_s``) until a scrape has fetched the final values of every ended run.

        Two scrapes after the end: the second one begins only once the first one's answer was sent (a
        Prometheus server scrapes a target one request at a time), so exiting then loses nothing.
        """
        deadline = time.monotonic() + self.linger_s
        with self.lock:
            while True:
                waiting = [st for st in self.runs.values() if st.ended_at is not None and st.final_scrapes < 2]
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    return
                self.scraped.wait(left)
