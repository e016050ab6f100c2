"""Live figures for loggers: what a run has used so far, read at a logging step.

    meter = greentrack.live(session)          # or session.meter(), or run_view.meter() in a hook
    for step, batch in enumerate(loader):
        train_step(batch)
        session.step(samples=len(batch))
        if step % 50 == 0:
            figures = meter.read()            # energy since the previous read, power, kWh, CO2e...
            logger.log(figures.metrics(), step=step)
    ...                                       # after the session stops:
    logger.log(meter.read().metrics())        # the last interval, up to the run's end

A read touches no hardware and takes no lock: it adds up what the sampler thread already
holds (each device's newest sample, published by :class:`~greentrack.measure.energy.Accumulator`
as one tuple) and holds the newest power up to now, the way the run's edges are filled at
stop. So the figures come from the power series, *not* reconciled to the energy counter; the
reconciled totals come when the session stops (:func:`result_metrics`). Successive reads
telescope: the interval energies always add up to the last cumulative figure, whatever the
sampler's polling interval (the part of an interval held at the newest power is corrected in
the next one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ..carbon.footprint import operational
from ..errors import GreentrackError
from ..units import J_PER_KWH
from .energy import cumulative_at

PREFIX = "greentrack/"
LIVE_POLL_S = 0.2  # while a meter is read, the sampler polls each source at least this often


@dataclass(frozen=True)
class LiveFigures:
    """One read of a :class:`Meter`: the interval since the previous read, and the run so far.

    Energies in joules at the device (before PUE); ``co2e_g`` includes the PUE and the run's
    grid intensity (:func:`greentrack.carbon.footprint.operational`). Per-step, per-sample and
    per-token figures are over the interval, None where the interval has no step, sample or token.
    All energies are None when no power sample has been read yet.
    """

    t: float  # wall-clock time of the read (the run's end for the closing read)
    interval_s: float
    energy_j: float | None  # since the previous read
    power_w: float | None  # average over the interval
    total_j: float | None  # since the run started
    co2e_g: float | None  # of total_j, with PUE
    steps: int  # steps marked in the interval
    samples: float | None
    tokens: float | None
    phase: str | None  # the innermost open phase at the read
    total_steps: int
    final: bool = False  # this read was taken after the session stopped (it closes the series)

    @property
    def energy_kwh(self) -> float | None:
        """Cumulative energy so far, kWh at the device."""
        return None if self.total_j is None else self.total_j / J_PER_KWH

    @property
    def j_per_step(self) -> float | None:
        return _per(self.energy_j, self.steps)

    @property
    def j_per_sample(self) -> float | None:
        return _per(self.energy_j, self.samples)

    @property
    def j_per_token(self) -> float | None:
        return _per(self.energy_j, self.tokens)

    def metrics(self, prefix: str = PREFIX) -> dict[str, float]:
        """The figures as ``{name: number}`` for a logger; figures that are None are left out.

        Names: ``energy_j`` and ``power_w`` (the interval), ``energy_kwh`` and ``co2e_g`` (cumulative),
        ``j_per_step``, ``j_per_sample``, ``j_per_token`` (the interval).
        """
        vals = {"energy_j": self.energy_j, "power_w": self.power_w, "energy_kwh": self.energy_kwh,
                "co2e_g": self.co2e_g, "j_per_step": self.j_per_step, "j_per_sample": self.j_per_sample,
                "j_per_token": self.j_per_token}
        return {prefix + k: float(v) for k, v in vals.items() if v is not None}


def _per(energy_j: float | None, n: float | None) -> float | None:
    if energy_j is None or not n:
        return None
    return energy_j / n


class Meter:
    """Reads a session's live figures; each :meth:`read` starts a new interval.

    Make one per consumer (two loggers reading one meter would split its intervals between
    them). Reading costs no hardware access and no lock (see ``benchmarks/bench_live.py``).
    A meter made before the session starts can be read once it has started; the first
    interval begins at the session's start.

    While a meter is in use the sampler polls each source at least every *poll_s* seconds
    (default 0.2 s; a GPU's sample buffer is otherwise read once a second), so the part of an
    interval held at the newest power is at most that long. The polls run on the sampler
    thread; reading an NVML sample buffer takes about 0.55 ms, so 5 polls a second cost about
    0.3 % of one CPU core per GPU.
    """

    __slots__ = ("_s", "_prev_t", "_prev_j", "_prev_counts", "_origins", "_closed", "poll_s")

    def __init__(self, session: Any, poll_s: float | None = LIVE_POLL_S) -> None:
        self._s = session
        self.poll_s = poll_s
        self._speed_up()
        self._prev_t: float | None = None
        self._prev_j = 0.0
        self._prev_counts: tuple[int, float, float] = (0, 0.0, 0.0)
        self._origins: dict[int, float] = {}  # per device: series cumulative energy at the run's start
        self._closed: LiveFigures | None = None

    def _speed_up(self) -> None:
        sampler = self._s.sampler
        if sampler is not None and self.poll_s is not None:
            cur = sampler.max_poll_s
            sampler.max_poll_s = self.poll_s if cur is None else min(cur, self.poll_s)

    @property
    def session(self) -> Any:
        return self._s

    def cumulative_j(self, t: float | None = None) -> float | None:
        """Energy of all devices from the run's start to *t* (default now); no state changes.

        None before the first power sample. After the session stopped, *t* is capped at its end.
        """
        s = self._s
        t0 = s.started_at
        sampler = s.sampler
        if t0 is None or sampler is None:
            return None
        if s.result is not None:  # stopped: the sampler thread is done, its series closed
            t_end = s.ended_at if t is None else min(t, s.ended_at)
            vals = [st.acc.series_energy_j(t0, t_end) for st in sampler.states if st.acc.n_raw]
            return sum(vals) if vals else None
        t = time.time() if t is None else t
        total = None
        for st in sampler.states:
            acc = st.acc
            head = acc.head
            if head is None:
                continue
            t_h, c_h, p_h = head
            c = c_h + (t - t_h) * p_h if t > t_h else c_h
            total = (total or 0.0) + c - self._origin_j(acc, t0, head)
        return total

    def _origin_j(self, acc: Any, t0: float, head: tuple[float, float, float]) -> float:
        """Series cumulative energy at the run's start (negative: the first power held back to it)."""
        key = id(acc)
        got = self._origins.get(key)
        if got is not None:
            return got
        first_t, first_p = acc.first_t, acc.first_p  # set before head was first published
        if first_t >= t0:
            got = -(first_t - t0) * first_p
        else:  # samples from before the start (a driver buffer): interpolate the archived series
            n = min(len(acc.times), len(acc.cums))
            if n >= 2 and acc.times[n - 1] >= t0:
                got = cumulative_at(acc.times[:n], acc.cums[:n], t0)
            else:  # not archived yet: a straight line from the first sample to the newest
                t_h, c_h, _p = head
                return c_h * (t0 - first_t) / (t_h - first_t) if t_h > first_t else 0.0
        self._origins[key] = got
        return got

    def read(self) -> LiveFigures:
        """Figures since the previous read (or the session's start) and the run so far.

        After the session stopped, the first read closes the series at the run's end; later
        reads return that closing read again. Raises :class:`GreentrackError` before the
        session has started.
        """
        s = self._s
        if s.started_at is None or s.sampler is None:
            raise GreentrackError(f"session {s.name!r} has not started: nothing to read")
        if self._closed is not None:
            return self._closed
        if self._prev_t is None:
            self._speed_up()  # made before the session started
        final = s.result is not None
        t = s.ended_at if final else time.time()
        total_j = self.cumulative_j(t)
        steps, samples, tokens = s.step_counts()
        prev_t = s.started_at if self._prev_t is None else self._prev_t
        p_steps, p_samples, p_tokens = self._prev_counts
        dt = max(0.0, t - prev_t)
        energy_j = None if total_j is None else total_j - self._prev_j
        co2e_g = None
        if total_j is not None and s.intensity is not None:
            co2e_g = operational(total_j, s.pue, s.intensity.g_per_kwh).co2e_g
        open_ = s._open_phases
        figures = LiveFigures(
            t=t, interval_s=dt, energy_j=energy_j,
            power_w=(energy_j / dt) if (energy_j is not None and dt > 0) else None,
            total_j=total_j, co2e_g=co2e_g, steps=steps - p_steps,
            samples=(samples - p_samples) if samples else None, tokens=(tokens - p_tokens) if tokens else None,
            phase=open_[-1][0] if open_ else None, total_steps=steps, final=final)
        if total_j is not None:  # nothing measured yet: the next interval still starts where this one did
            self._prev_t, self._prev_j = t, total_j
            self._prev_counts = (steps, samples, tokens)
        if final:
            self._closed = figures
        return figures


def result_metrics(result: Any, prefix: str = PREFIX) -> dict[str, float]:
    """The reconciled totals of a stopped run, for a logger's summary or final step.

    ``total_energy_kwh``, ``total_energy_j``, ``total_co2e_kg`` (with PUE), ``duration_s``,
    ``avg_power_w``, and ``phase/<name>_j``: the energy of each phase name (repeats added up).
    """
    out: dict[str, float] = {}
    vals = {"total_energy_kwh": result.energy_kwh, "total_energy_j": result.energy_j,
            "total_co2e_kg": result.co2e_kg, "duration_s": result.duration_s, "avg_power_w": result.avg_power_w}
    for k, v in vals.items():
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[prefix + k] = float(v)
    for name, j in phase_energy_j(result).items():
        out[f"{prefix}phase/{name}_j"] = j
    return out


def phase_energy_j(result: Any) -> dict[str, float]:
    """Energy per phase name of a stopped run, repeats of one name added up (in first-seen order)."""
    out: dict[str, float] = {}
    for p in result.phases:
        if p.energy_j is not None:
            out[p.name] = out.get(p.name, 0.0) + float(p.energy_j)
    return out


def live(session: Any) -> Meter:
    """A new :class:`Meter` on *session* (a :class:`~greentrack.Session` or a hook's ``RunView``)."""
    from .view import RunView

    if isinstance(session, RunView):
        session = session._s
    return Meter(session)
