"""greentrack-prometheus: what greentrack measures, as Prometheus metrics.

Registered through the ``greentrack`` entry-point group under the name ``prometheus``.

- **Per process**: with ``GREENTRACK_PROMETHEUS_PORT`` (or ``[tool.greentrack.prometheus] port``)
  set, the first session of a process starts an HTTP endpoint serving ``/metrics`` on that port
  (plus ``LOCAL_RANK`` under torchrun and other launchers that set it). Its series carry the
  current phase. Without a port nothing is served and the hooks return at once.
- **Per node**: ``greentrack serve-metrics`` serves every run of this host found in the store.
- In your own registry: ``REGISTRY.register(greentrack_prometheus.collector())``.

Metrics (names as Prometheus shows them): ``greentrack_energy_joules_total``,
``greentrack_co2e_grams_total``, ``greentrack_power_watts``, ``greentrack_steps_total``,
``greentrack_device_info``, ``greentrack_grid_intensity_grams_per_kwh``, ``greentrack_pue``,
``greentrack_run_start_time_seconds``, ``greentrack_run_end_time_seconds``; labels ``run`` (name),
``run_id``, ``job_id``, ``rank``, ``host``, ``device``, ``phase``. See the README.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import greentrack

__all__ = ["collector", "endpoint"]
__version__ = "0.1.0"

_lock = threading.Lock()
_exp: Any = None  # the ProcessExporter, made at the first session (or collector() call)
_decided = False  # whether this process's first session has read the settings


def _exporter() -> Any:
    global _exp
    if _exp is None:
        from .exporter import ProcessExporter

        _exp = ProcessExporter()
    return _exp


def _setup() -> Any:
    """Read the settings once per process and start the endpoint they ask for; the exporter or None."""
    global _decided
    with _lock:
        if _decided:
            return _exp if (_exp is not None and _exp.recording) else None
        _decided = True
        from greentrack.errors import GreentrackError
        from greentrack.notify import say_once

        from . import config

        try:
            cfg = config.load()
            port = None if cfg.port is None else config.process_port(cfg.port)
        except GreentrackError as exc:
            say_once(f"prometheus: {exc} (no metrics endpoint; the run goes on)")
            return _exp if (_exp is not None and _exp.recording) else None
        exp = _exporter()
        exp.grace_s, exp.linger_s = cfg.grace_s, cfg.linger_s
        # the child of `greentrack run` is measured by the wrapper's run, which serves these devices already
        if port is not None and not os.environ.get("GREENTRACK_PARENT_RUN_ID"):
            exp.serve(port, cfg.addr)
        return exp if exp.recording else None


def collector() -> Any:
    """This process's collector, to register in a registry of your own (runs are recorded from then on).

    ``prometheus_client.REGISTRY.register(greentrack_prometheus.collector())`` puts greentrack's
    metrics on the endpoint your program already serves.
    """
    exp = _exporter()
    exp.recording = True
    return exp.collector()


def endpoint() -> str | None:
    """The URL this process serves its metrics on, or None."""
    return None if _exp is None else _exp.url


@greentrack.hookimpl
def greentrack_session_start(run: Any) -> None:
    exp = _setup()
    if exp is not None:
        exp.start_run(run)


@greentrack.hookimpl
def greentrack_samples(run: Any, batch: Any) -> None:
    exp = _exp
    if exp is not None and exp.recording:
        exp.samples(run, batch)


@greentrack.hookimpl
def greentrack_session_end(run: Any, result: Any) -> None:
    exp = _exp
    if exp is not None and exp.recording:
        exp.end_run(run, result)


@greentrack.hookimpl
def greentrack_register_commands(cli: Any) -> None:
    from .cli import register

    register(cli)


def _forget_in_child() -> None:
    """A forked child serves nothing of its parent's (the parent keeps the port and the runs)."""
    global _exp, _decided, _lock
    _exp, _decided, _lock = None, False, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
