"""A deterministic simulated GPU that behaves like NVML sees one.

Like an NVIDIA GPU under NVML it has an energy counter that updates at 10 Hz, a driver
buffer of power samples every 20 ms, and an instant power reading that updates at 10 Hz,
so CI and laptops run the same integration code as a real GPU. Power follows a trace:

- ``constant:W``                     constant power
- ``step:LOW,HIGH,PERIOD_S``         square wave, LOW for PERIOD_S then HIGH for PERIOD_S
- ``load:IDLE,BUSY``                 BUSY while ``session.step()`` was called in the last 0.5 s
- ``replay:PATH``                    a recorded CSV (``t_s,power_w``), linearly interpolated,
                                     holding the last value past its end

Select it with ``backend="mock"`` or ``GREENTRACK_BACKEND=mock``; ``GREENTRACK_MOCK`` picks
the trace (default ``load:70,600``), ``GREENTRACK_MOCK_GPUS`` the number of GPUs,
``GREENTRACK_MOCK_FEATURES`` what it offers (``counter,buffer`` by default; ``instant`` for a
GPU without a sample buffer; leave out ``counter`` for one without an energy counter) and
``GREENTRACK_MOCK_FAIL_AFTER`` makes its reads fail after that many seconds (``1:0.5``: from 1 s
for 0.5 s, then it answers again). Like the NVML
source, under torchrun (``LOCAL_RANK`` set) it measures only the rank's own GPU unless
``GREENTRACK_ALL_GPUS=1``.
"""

from __future__ import annotations

import csv
import math
import os
import time
from bisect import bisect_right
from collections import deque
from typing import Any, Callable, Sequence

from ...errors import ConfigError
from ...settings import env as settings_env
from .base import Device, SourceUnavailable

TICK_S = 0.02  # driver sample buffer period (50 Hz)
UPDATE_TICKS = 5  # counter and instant power update every 5 ticks (10 Hz)
BUFFER_S = 10.0  # how much history the simulated driver keeps
LOAD_WINDOW_S = 0.5
DEFAULT_TRACE = "load:70,600"


class MockError(RuntimeError):
    """What a failing simulated GPU raises (like pynvml.NVMLError)."""


def parse_trace(spec: str) -> Callable[[float, bool], float]:
    """Turn a trace spec into ``power(t_rel_s, active) -> W``; bad specs raise ConfigError."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "constant":
            w = float(arg)
            _nonneg(w, spec)
            return lambda t, active: w
        if kind == "step":
            low, high, period = (float(x) for x in arg.split(","))
            _nonneg(min(low, high), spec)
            if period <= 0:
                raise ValueError
            return lambda t, active: high if int(t // period) % 2 else low
        if kind == "load":
            idle, busy = (float(x) for x in arg.split(","))
            _nonneg(min(idle, busy), spec)
            return lambda t, active: busy if active else idle
        if kind == "replay":
            ts, ps = load_trace_csv(arg)
            return lambda t, active: _interp(ts, ps, t)
    except ConfigError:
        raise
    except (ValueError, TypeError):
        pass
    raise ConfigError(
        f"bad mock trace {spec!r}; use constant:W, step:LOW,HIGH,PERIOD_S, load:IDLE,BUSY or replay:FILE.csv"
    )


def _nonneg(w: float, spec: str) -> None:
    if w < 0 or math.isnan(w) or math.isinf(w):
        raise ConfigError(f"bad mock trace {spec!r}: power must be a finite number >= 0")


def load_trace_csv(path: str) -> tuple[list[float], list[float]]:
    """Read a ``t_s,power_w`` CSV (header optional, extra columns ignored)."""
    ts: list[float] = []
    ps: list[float] = []
    try:
        with open(path, newline="") as fh:
            for row in csv.reader(fh):
                if not row or row[0].startswith("#"):
                    continue
                try:
                    t, p = float(row[0]), float(row[1])
                except (ValueError, IndexError):
                    if not ts:
                        continue  # header
                    raise ConfigError(f"bad row in trace {path}: {','.join(row)}") from None
                ts.append(t)
                ps.append(p)
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror}") from None
    if not ts:
        raise ConfigError(f"trace {path} holds no samples")
    t0 = ts[0]
    return [t - t0 for t in ts], ps


def _interp(ts: Sequence[float], ps: Sequence[float], t: float) -> float:
    if t <= ts[0]:
        return ps[0]
    if t >= ts[-1]:
        return ps[-1]
    i = bisect_right(ts, t)
    t_a, t_b = ts[i - 1], ts[i]
    return ps[i - 1] + (ps[i] - ps[i - 1]) * (t - t_a) / (t_b - t_a)


class MockGPU:
    """One simulated GPU. Its physics advance in 20 ms ticks, lazily, on each read."""

    def __init__(self, index: int, power: Callable[[float, bool], float], clock: Callable[[], float],
                 fail_after_s: float | None = None, fail_for_s: float | None = None) -> None:
        self.index = index
        self.power = power
        self.clock = clock
        self.t0 = clock()
        self.tick = 0  # ticks processed
        self.energy_j = 0.0  # exact integral of the simulated power
        self.counter_j = 0.0  # what the counter shows (updated at 10 Hz)
        self.instant_w = power(0.0, False)
        self.buffer: deque[tuple[float, float]] = deque(maxlen=int(BUFFER_S / TICK_S))
        self.fail_after_s = fail_after_s
        self.fail_until_s = math.inf if fail_for_s is None else (fail_after_s or 0.0) + fail_for_s
        self.step_log: Any = None  # the bound session's StepLog (load-following traces read its marks)

    def _active(self, t: float) -> bool:
        log = self.step_log
        if log is None:
            return False
        last = log.last_mark_at_or_before(t)
        return last is not None and t - last < LOAD_WINDOW_S

    def advance(self) -> None:
        now = self.clock()
        if self.fail_after_s is not None and self.fail_after_s <= now - self.t0 < self.fail_until_s:
            raise MockError(f"simulated GPU {self.index} failure")
        target = int((now - self.t0) / TICK_S)
        while self.tick < target:
            self.tick += 1
            t_rel = self.tick * TICK_S
            t_abs = self.t0 + t_rel
            w = self.power(t_rel - TICK_S / 2, self._active(t_abs))
            self.energy_j += w * TICK_S
            self.buffer.append((t_abs, w))
            if self.tick % UPDATE_TICKS == 0:
                self.counter_j = self.energy_j
                self.instant_w = w


class MockSource:
    """The mock backend: N simulated GPUs with NVML-like reads."""

    name = "mock"
    kind = "gpu"

    def __init__(self, trace: str = DEFAULT_TRACE, gpus: int = 1, features: str = "counter,buffer",
                 clock: Callable[[], float] = time.time, fail_after_s: float | None = None,
                 poll_interval_s: float | None = None, fail_for_s: float | None = None) -> None:
        power = parse_trace(trace)
        feats = {f.strip().lower() for f in features.split(",") if f.strip()}
        unknown = feats - {"counter", "buffer", "instant"}
        if unknown:
            raise ConfigError(f"unknown mock feature(s) {sorted(unknown)}; use counter, buffer, instant")
        if gpus < 1:
            raise ConfigError("GREENTRACK_MOCK_GPUS must be at least 1")
        self.trace = trace
        self.has_buffer = "buffer" in feats
        self.gpus = [MockGPU(i, power, clock, fail_after_s, fail_for_s) for i in range(gpus)]
        self.clock = clock
        self.poll_interval_s = poll_interval_s or (1.0 if self.has_buffer else 0.1)
        self.devices = [
            Device(key=f"gpu{i}", kind="gpu", index=i, name="Mock GPU", uuid=f"MOCK-GPU-{i:04d}",
                   has_counter="counter" in feats, series_method="buffer" if self.has_buffer else "instant",
                   info={"trace": trace})
            for i in range(gpus)
        ]
        self._last_seen = [-math.inf] * gpus
        # like NVML under torchrun: a rank measures only its own GPU (LOCAL_RANK)
        lr = os.environ.get("LOCAL_RANK")
        if lr is not None and lr.isdigit() and gpus > 1 and settings_env("GREENTRACK_ALL_GPUS") != "1":
            self.devices = [self.devices[int(lr) % gpus]]

    def bind(self, session: Any) -> None:
        """Let load-following traces see the session's step marks."""
        for g in self.gpus:
            g.step_log = session._steps

    def poll(self, device: Device) -> list[tuple[float, float]]:
        g = self.gpus[device.index]
        g.advance()
        if self.has_buffer:
            since = self._last_seen[device.index]
            out = [s for s in g.buffer if s[0] > since]
            if out:
                self._last_seen[device.index] = out[-1][0]
            return out
        return [(self.clock(), g.instant_w)]

    def energy_j(self, device: Device) -> float | None:
        if not device.has_counter:
            return None
        g = self.gpus[device.index]
        g.advance()
        return g.counter_j

    def close(self) -> None:
        pass


def from_settings(settings: Any) -> MockSource:
    """Build the mock backend from the environment (see the module docstring)."""
    extra = getattr(settings, "extra", {}) or {}
    trace = settings_env("GREENTRACK_MOCK") or extra.get("mock_trace") or DEFAULT_TRACE
    raw_gpus = settings_env("GREENTRACK_MOCK_GPUS") or extra.get("mock_gpus") or 1
    try:
        gpus = int(raw_gpus)
    except (TypeError, ValueError):
        raise ConfigError(f"GREENTRACK_MOCK_GPUS={raw_gpus!r} is not a whole number") from None
    features = settings_env("GREENTRACK_MOCK_FEATURES") or "counter,buffer"
    fail = settings_env("GREENTRACK_MOCK_FAIL_AFTER")
    fail_after = fail_for = None
    if fail:
        start, _, length = fail.partition(":")
        try:
            fail_after = float(start)
            fail_for = float(length) if length else None
        except ValueError:
            raise ConfigError(f"GREENTRACK_MOCK_FAIL_AFTER={fail!r}: use SECONDS or SECONDS:DURATION") from None
        if not (fail_after >= 0 and (fail_for is None or fail_for > 0)):
            raise ConfigError(f"GREENTRACK_MOCK_FAIL_AFTER={fail!r}: times must be >= 0 (a duration > 0)")
    return MockSource(trace=trace, gpus=gpus, features=features, fail_after_s=fail_after, fail_for_s=fail_for,
                      poll_interval_s=getattr(settings, "sample_interval_s", None))


__all__ = ["MockSource", "MockGPU", "parse_trace", "load_trace_csv", "SourceUnavailable"]
