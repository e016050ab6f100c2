"""Energy integration and attribution: pure functions, no I/O, no clocks.

Conventions: times in seconds (wall clock), power in watts, energy in joules.

A device's time series is kept as *interval averages*: point ``i`` is ``(t_i, p_i)`` where
``p_i`` is the mean power over ``(t_{i-1}, t_i]``. Re-integrating such a series as rectangles
gives back exactly the energy of the raw samples it was built from, so storage at 10 Hz
loses no energy while a 50 Hz driver buffer is read underneath.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Sequence


def counter_delta_j(start_j: float, end_j: float, wrap_j: float | None = None) -> tuple[float, bool]:
    """Energy between two readings of a cumulative counter.

    Returns ``(joules, reset)``. A counter that went backwards either wrapped, which is normal
    when its range *wrap_j* is known (RAPL), or was reset (driver reload: NVML); after a reset the
    counter restarts at zero, so the end reading is the best lower bound, and *reset* is True.
    """
    if end_j >= start_j:
        return end_j - start_j, False
    if wrap_j:
        return end_j + wrap_j - start_j, False
    return end_j, True


class Accumulator:
    """Turns raw samples of one device into exact cumulative energy and 10 Hz interval averages.

    Feed samples with :meth:`add`; completed points land in :attr:`pending` (for storage)
    and in the in-memory cumulative series used to attribute energy to steps and phases.
    """

    __slots__ = ("resolution_s", "last_t", "last_p", "cum_j", "bucket_t", "bucket_j",
                 "times", "cums", "pending", "peak_w", "n_raw", "first_t", "first_p",
                 "tolerance_j", "_anchor_t", "_anchor_j", "_lo", "_hi", "_cand", "head", "tail_p")

    def __init__(self, resolution_s: float = 0.1, tolerance_j: float = 0.1) -> None:
        from array import array

        self.resolution_s = resolution_s
        # the in-memory cumulative series (times/cums) that attributes energy to steps and
        # phases keeps the raw samples' time resolution: a raw point is dropped only while the
        # straight line past it stays within tolerance_j of it (swinging door), so a power step
        # inside a 0.1 s storage bucket is not smeared across the bucket
        self.tolerance_j = tolerance_j
        self._anchor_t = 0.0
        self._anchor_j = 0.0
        self._lo = -math.inf
        self._hi = math.inf
        self._cand: tuple[float, float] | None = None
        self.last_t: float | None = None
        self.last_p = 0.0
        self.first_t: float | None = None
        self.first_p = 0.0
        self.cum_j = 0.0
        self.bucket_t = 0.0
        self.bucket_j = 0.0
        self.times = array("d")
        self.cums = array("d")
        self.pending: list[tuple[float, float]] = []
        self.peak_w = 0.0
        self.n_raw = 0
        # (t, cumulative J, power W) of the newest raw sample, published as one tuple so that another
        # thread (the live figures, greentrack.measure.live) reads a consistent triple without a lock
        self.head: tuple[float, float, float] | None = None
        self.tail_p: float | None = None  # power held after the newest sample (None: the last power)

    def add(self, t: float, p: float) -> None:
        """One raw sample; out-of-order or duplicate timestamps are ignored."""
        if p != p or p < 0 or math.isinf(p):  # NaN, negative or infinite readings are dropped
            return
        last = self.last_t
        if last is None:
            self.last_t, self.last_p = t, p
            self.first_t, self.first_p = t, p
            self.bucket_t, self.bucket_j = t, 0.0
            self.times.append(t)
            self.cums.append(0.0)
            self._anchor_t, self._anchor_j = t, 0.0
            self.peak_w = p
            self.n_raw = 1
            self.head = (t, 0.0, p)
            return
        if t <= last:
            return
        self._advance(t, p, self.cum_j + 0.5 * (p + self.last_p) * (t - last))

    def add_mean(self, t: float, p: float) -> None:
        """One interval sample: *p* is the mean power since the previous sample (RAPL deltas, the CPU model).

        Integrated as a rectangle, so the energy between any two samples is exactly what the
        source reported, however short the interval (a trapezoid would mix in the previous
        interval's power). The first sample only dates the start.
        """
        if p != p or p < 0 or math.isinf(p):
            return
        last = self.last_t
        if last is None:
            self.add(t, p)
            return
        if t <= last:
            return
        self._advance(t, p, self.cum_j + p * (t - last))

    def _advance(self, t: float, p: float, cum_j: float) -> None:
        """The tail of :meth:`add` and :meth:`add_mean`: the newest sample *t*, *p*, at cumulative energy *cum_j*.

        Counts it, keeps the peak, passes the point through the swinging door, closes the storage
        bucket once it spans the resolution, and publishes the new head. The door is inline: this
        runs for every sample, and one more call per sample costs about 2 % of add()'s time.
        """
        self.cum_j = cum_j
        self.last_t, self.last_p = t, p
        self.n_raw += 1
        if p > self.peak_w:
            self.peak_w = p
        # swinging door: the candidate point is dropped while the line from the anchor to the new point
        # stays within tolerance_j of every point skipped since the anchor (the slopes' bounds lo..hi)
        cand = self._cand
        if cand is None:
            self._cand = (t, cum_j)
        else:
            ta, ca = self._anchor_t, self._anchor_j
            tp, cp = cand
            tol = self.tolerance_j
            lo = max(self._lo, (cp - tol - ca) / (tp - ta))
            hi = min(self._hi, (cp + tol - ca) / (tp - ta))
            slope = (cum_j - ca) / (t - ta)
            if lo <= slope <= hi:
                self._lo, self._hi = lo, hi
            else:
                self._archive()
            self._cand = (t, cum_j)
        if t - self.bucket_t >= self.resolution_s * 0.999:
            self._emit(t)
        self.head = (t, cum_j, p)

    def _archive(self) -> None:
        """Keep the candidate point in the attribution series; the door restarts from it."""
        if self._cand is None:
            return
        tp, cp = self._cand
        self.times.append(tp)
        self.cums.append(cp)
        self._anchor_t, self._anchor_j = tp, cp
        self._lo, self._hi = -math.inf, math.inf
        self._cand = None

    def _emit(self, t: float) -> None:
        dt = t - self.bucket_t
        if dt <= 0:
            return
        self.pending.append((t, (self.cum_j - self.bucket_j) / dt))
        self.bucket_t, self.bucket_j = t, self.cum_j

    def gap(self) -> None:
        """A read failed: close the stored bucket at the newest sample (nothing is bridged here)."""
        self._archive()
        if self.last_t is not None and self.last_t > self.bucket_t:
            self._emit(self.last_t)

    def resume(self, t: float, p: float) -> None:
        """The first sample after a data gap: the gap holds no energy (flat cumulative series).

        Nothing is integrated across ``(last_t, t)``; the stored series has no point there and the
        next stored bucket starts at *t*, so the gap stays visible as a gap. What the gap held is
        for the caller to measure (an energy counter across it) or count as unmeasured.
        """
        if self.last_t is None:
            self.add(t, p)
            self.first_p = 0.0  # nothing before the first sample is extrapolated either
            return
        if t <= self.last_t:
            return
        self._archive()
        self.times.append(t)
        self.cums.append(self.cum_j)
        self._anchor_t, self._anchor_j = t, self.cum_j
        self._lo, self._hi = -math.inf, math.inf
        self.last_t, self.last_p = t, p
        self.n_raw += 1
        if p > self.peak_w:
            self.peak_w = p
        self.bucket_t, self.bucket_j = t, self.cum_j
        self.tail_p = None
        self.head = (t, self.cum_j, p)

    def end_in_gap(self) -> None:
        """The device was in a gap when the run ended: hold no power after its newest sample."""
        self._archive()
        self.tail_p = 0.0

    def close(self) -> None:
        """Flush the partial bucket (call before the last flush)."""
        self._archive()
        if self.last_t is not None and self.last_t > self.bucket_t:
            self._emit(self.last_t)

    def take_pending(self) -> list[tuple[float, float]]:
        out, self.pending = self.pending, []
        return out

    def cumulative_j(self, t: float) -> float:
        """Cumulative energy at *t*, up to the newest raw sample (the first/last power held outside)."""
        self._archive()
        return cumulative_at(self.times, self.cums, t, self.first_p,
                             self.last_p if self.tail_p is None else self.tail_p)

    def series_energy_j(self, t0: float, t1: float) -> float:
        """Energy over ``[t0, t1]``, holding the first/last power outside the sampled span."""
        return self.cumulative_j(t1) - self.cumulative_j(t0)



def cumulative_at(times: Sequence[float], cums: Sequence[float], t: float,
                  first_p: float = 0.0, last_p: float = 0.0) -> float:
    """Cumulative energy at *t*, interpolated linearly between stored points.

    Before the first point the first power is held (negative energy), after the last the last.
    """
    n = len(times)
    if n == 0:
        return 0.0
    if t <= times[0]:
        return -(times[0] - t) * first_p
    if t >= times[-1]:
        return cums[-1] + (t - times[-1]) * last_p
    i = bisect_right(times, t)
    t_a, t_b = times[i - 1], times[i]
    c_a, c_b = cums[i - 1], cums[i]
    if t_b <= t_a:
        return c_b
    return c_a + (c_b - c_a) * (t - t_a) / (t_b - t_a)


def cumulative_from_averages(times: Sequence[float], powers: Sequence[float]) -> list[float]:
    """Cumulative energy of an interval-average series (first point starts at zero)."""
    out = [0.0] * len(times)
    for i in range(1, len(times)):
        out[i] = out[i - 1] + powers[i] * (times[i] - times[i - 1])
    return out


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of sorted values, q in [0, 100]."""
    if not sorted_vals:
        return 0.0
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def step_energies(step_times: Sequence[float], start_t: float, energy_at) -> list[float]:
    """Energy of each step: from the previous mark (or *start_t*) to its own mark."""
    out = []
    prev = energy_at(start_t)
    for t in step_times:
        e = energy_at(t)
        out.append(e - prev)
        prev = e
    return out


def step_stats(energies: Sequence[float], samples: float | None, tokens: float | None) -> dict[str, Any] | None:
    """Per-step energies summarised, every mark kept (the form of ``RunResult.step_stats``): ``steps``,
    ``mean_j``, ``p50_j``, ``p95_j``, and J/sample and J/token from the totals given to ``step()``.
    Sessions fold their marks as they go (:mod:`.steps`); this is the exact figure they are checked against."""
    if not energies:
        return None
    s = sorted(energies)
    total = sum(energies)
    return {"steps": len(energies), "mean_j": total / len(energies), "p50_j": percentile(s, 50),
            "p95_j": percentile(s, 95), "j_per_sample": (total / samples) if samples else None,
            "j_per_token": (total / tokens) if tokens else None}


def reconcile_scale(series_j: float, counter_j: float | None) -> float:
    """Factor that makes series-derived energies sum to the counter total (1.0 without one)."""
    if counter_j is None or series_j <= 0:
        return 1.0
    return counter_j / series_j
