"""Step marks in memory that grows with the run's duration, not with its number of steps.

``session.step()`` stays a single C-level list operation on the training thread: it extends
:attr:`StepLog.marks` by one ``(time, samples, tokens)`` triple. The sampler thread *folds* those
marks, every time it has read new power samples, into what the end of the run needs:

- per-step energy statistics: each folded step's energy is computed exactly as before (the
  cumulative power series at the step's end minus at its start, summed over devices) and then
  goes into (a) exact per-device sums, which give the mean energy per step, J/sample and J/token
  exactly once each device's series-to-counter scale is known at stop, and (b) a log-bucketed
  histogram with a relative accuracy of 0.1 % (:class:`LogHistogram`), which gives p50 and p95
  to within 0.1 % (plus the spread between devices' scales on multi-GPU runs, usually < 0.2 %);
- step counts per phase: marks are kept as *entries* ``(first time, last time, count)``, one per
  0.1 s of wall clock at most and split at every phase edge known when they are folded, so a
  phase opened and closed with ``with s.phase(...)`` gets its exact step count; a phase recorded
  afterwards (:meth:`Session.mark_phase`) whose edge falls inside a 0.1 s entry gets the entry's
  steps split in proportion to time;
- totals of ``samples`` and ``tokens`` (values that are not non-negative numbers left out, said once).

Memory: the entries (24 bytes per 0.1 s of steps, about 0.9 MB per hour), the histogram (a few
hundred buckets) and the marks not yet folded: those of the last poll interval (about 1 s),
48 bytes each. A mark is folded once every device's power series covers it, so its energy is
the one attribution would have computed with every mark kept; a step that overlaps a device's
data gap is counted but left out of the per-step energies (see :attr:`StepLog.unmeasured`).
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, Sequence

ENTRY_S = 0.1  # the wall-clock span of one entry of step marks
REL_ACCURACY = 0.001  # of the per-step energy histogram
NUMPY_BATCH = 4096  # fold with numpy from this many marks (or when numpy is already imported)
CHUNK = 1 << 17  # marks per folding pass (bounds the temporary arrays: about 1 MB each)
_NUMBERS = {int, float}


class LogHistogram:
    """Counts of non-negative values in logarithmic buckets: any quantile within *rel_accuracy*.

    A value ``x > 0`` goes to bucket ``ceil(log(x) / log(gamma))`` with
    ``gamma = (1 + a) / (1 - a)``; the bucket's representative value ``2 gamma^i / (gamma + 1)`` is
    within ``a`` of every value in it (the DDSketch construction). Zeros have their own bucket.
    Memory is one counter per occupied bucket: a few hundred for any step-energy distribution.
    """

    __slots__ = ("rel_accuracy", "gamma", "_log_gamma", "counts", "zeros", "n")

    def __init__(self, rel_accuracy: float = REL_ACCURACY) -> None:
        self.rel_accuracy = rel_accuracy
        self.gamma = (1 + rel_accuracy) / (1 - rel_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.counts: dict[int, int] = {}
        self.zeros = 0
        self.n = 0

    def add(self, x: float) -> None:
        self.n += 1
        if x <= 0.0:
            self.zeros += 1
            return
        i = math.ceil(math.log(x) / self._log_gamma)
        self.counts[i] = self.counts.get(i, 0) + 1

    def add_array(self, xs: Any) -> None:
        """Add a numpy array of values (vectorised)."""
        import numpy as np

        self.n += int(xs.size)
        pos = xs[xs > 0.0]
        self.zeros += int(xs.size - pos.size)
        if not pos.size:
            return
        idx = np.ceil(np.log(pos) / self._log_gamma).astype(np.int64)
        lo = int(idx.min())
        cnt = np.bincount(idx - lo)
        keys = np.flatnonzero(cnt)
        c = self.counts
        for k, v in zip((keys + lo).tolist(), cnt[keys].tolist()):
            c[k] = c.get(k, 0) + v

    def _value(self, i: int) -> float:
        return 2.0 * self.gamma ** i / (self.gamma + 1.0)

    def value_at_rank(self, rank: int) -> float:
        """The *rank*-th smallest value (0-based), to within the relative accuracy."""
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for i in sorted(self.counts):
            seen += self.counts[i]
            if rank < seen:
                return self._value(i)
        return self._value(max(self.counts)) if self.counts else 0.0

    def quantile(self, q: float) -> float:
        """The *q*-th percentile (0-100), interpolated between ranks like :func:`energy.percentile`."""
        if self.n == 0:
            return 0.0
        pos = (self.n - 1) * q / 100.0
        lo = int(math.floor(pos))
        hi = min(lo + 1, self.n - 1)
        a, b = self.value_at_rank(lo), self.value_at_rank(hi)
        return a + (b - a) * (pos - lo)


class DeviceSeries:
    """What the fold needs of one device: its accumulator and its data gaps so far."""

    def __init__(self, key: str, acc: Any, gaps: Sequence[tuple[float, float]] = (),
                 open_gap_since: float | None = None) -> None:
        self.key = key
        self.acc = acc
        self.gaps = gaps
        self.open_gap_since = open_gap_since  # in a gap now, since then


class StepLog:
    """Step marks of one session, folded as the run goes (see the module docstring).

    A plain class (see :class:`greentrack.measure.sampler.DeviceState`)."""

    def __init__(self, start_t: float, marks: list[Any] | None = None) -> None:
        self.start_t = start_t
        self.marks: list[Any] = [] if marks is None else marks  # flat (t, samples, tokens) triples, by step()
        self.n = 0  # steps whose energy is folded
        self.unmeasured = 0  # folded steps overlapping a data gap: counted, not in the per-step energies
        self.prev_t = start_t  # end of the newest folded step
        self.samples: float | None = None  # totals over every step (compacted ones included)
        self.tokens: float | None = None
        self.samples_measured = 0.0  # over the measured steps only
        self.tokens_measured = 0.0
        self.bad_counts = False
        self.energy_sum: dict[str, float] = {}  # device -> sum of its measured steps' energy
        self.hist = LogHistogram()
        self.measured_with_energy = False  # whether any step got an energy (some device had a series)
        self.e_first = array("d")  # entries: (first time, last time, count) of marks, <= ENTRY_S each
        self.e_last = array("d")
        self.e_count = array("q")
        self._t = array("d")  # compacted marks waiting for the power series to cover them
        self._s: array | None = None  # their samples / tokens (NaN: none given), once any is given
        self._k: array | None = None

    @property
    def steps(self) -> int:
        """Steps marked so far, folded or not."""
        return self.n + len(self._t) + len(self.marks) // 3

    # the mock's view (load-following traces) ---------------------------------------------------------
    def last_mark_at_or_before(self, t: float) -> float | None:
        """Time of the newest step mark at or before *t* (None if none)."""
        marks = self.marks
        n = len(marks) // 3
        if n and marks[0] <= t:
            lo, hi = 0, n  # bisect over the raw triples' times (time-ordered)
            while lo < hi:
                mid = (lo + hi) // 2
                if marks[3 * mid] <= t:
                    lo = mid + 1
                else:
                    hi = mid
            return marks[3 * (lo - 1)]
        i = bisect_right(self.e_first, t)  # the newest entry that starts at or before t
        if not i:
            return None
        last = self.e_last[i - 1]
        return last if last <= t else self.e_first[i - 1]  # a mark inside: at least its first

    # stage 1: compact the raw marks (sampler thread, every 0.1 s) ---------------------------------------
    def compact(self, edges: Sequence[float] = ()) -> int:
        """Move the raw marks into compact arrays and entries; returns how many were moved.

        No energy is needed for this, so it runs often and keeps the raw list (48 bytes a mark)
        short; the compacted marks take 8 bytes each (16 or 24 with samples or tokens) until the
        power series covers them.
        """
        marks = self.marks
        n3 = len(marks) - len(marks) % 3
        if not n3:
            return 0
        times, samples, tokens = marks[0:n3:3], marks[1:n3:3], marks[2:n3:3]
        del marks[:n3]
        k = len(times)
        self._entries(times, edges)
        self._t.extend(array("d", times))  # (the constructor converts a list twice as fast as fromlist)
        self._s = self._column(samples, self._s, k, "samples")
        self._k = self._column(tokens, self._k, k, "tokens")
        return k

    def _entries(self, times: list[float], edges: Sequence[float]) -> None:
        """Entries of a batch: split on the ENTRY_S grid and at phase edges (no per-mark work)."""
        t_first, t_last = times[0], times[-1]
        cuts: set[float] = set()
        if t_last > t_first:
            g = math.floor((t_first - self.start_t) / ENTRY_S) + 1
            while True:
                b = self.start_t + g * ENTRY_S
                if b > t_last or len(cuts) > 100_000:
                    break
                cuts.add(b)
                g += 1
            cuts.update(e for e in edges if t_first < e <= t_last)
        bounds = [0] + sorted({bisect_left(times, b) for b in cuts} - {0, len(times)}) + [len(times)]
        for i0, i1 in zip(bounds, bounds[1:]):
            self.e_first.append(times[i0])
            self.e_last.append(times[i1 - 1])
            self.e_count.append(i1 - i0)

    def _column(self, vals: list[Any], col: array | None, k: int, which: str) -> array | None:
        """Add a batch's samples (or tokens) to the totals and to the compact column (NaN: none)."""
        if vals[0] is None and vals.count(None) == k:
            if col is not None:
                col.extend(_nans(k))
            return col
        if col is None:
            col = _nans(len(self._t) - k)  # the marks compacted before had none
        v0 = vals[0]
        if type(v0) in _NUMBERS and 0 <= v0 < math.inf and vals.count(v0) == k:
            # the common case, a fixed batch size or sequence length: one C-level pass
            col.extend(array("d", [v0]) * k)
            setattr(self, which, (getattr(self, which) or 0.0) + v0 * k)
            return col
        ok = False
        if set(map(type, vals)) <= _NUMBERS:
            total = sum(vals)
            ok = 0 <= total < math.inf and min(vals) >= 0  # no NaN, inf or negative among them
        if ok:
            col.extend(array("d", vals))
        else:  # check each value
            total, counted = 0.0, False
            for v in vals:
                if v is None:
                    col.append(math.nan)
                elif isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf:
                    col.append(float(v))
                    total += v
                    counted = True
                else:
                    self.bad_counts = True
                    col.append(math.nan)
            if not counted:  # every value absent or rejected: the total stays unknown, not 0
                return col
        setattr(self, which, (getattr(self, which) or 0.0) + total)
        return col

    # stage 2: per-step energies (sampler thread, after each poll; all at the end) ---------------------
    def fold(self, devices: Sequence[DeviceSeries], horizon: float, edges: Sequence[float] = ()) -> int:
        """Fold the marks up to *horizon* (all of them when it is ``inf``); returns how many.

        *devices* are the devices with a power series (their energies make each step's); *edges*
        the phase bounds known now (entries are split there).
        """
        self.compact(edges)
        k_all = len(self._t) if horizon == math.inf else bisect_right(self._t, horizon)
        done = 0
        while done < k_all:  # in chunks: the temporary arrays stay a few MB at any step rate
            k = min(CHUNK, k_all - done)
            self._fold_chunk(k, devices)
            done += k
        return k_all

    def _fold_chunk(self, k: int, devices: Sequence[DeviceSeries]) -> None:
        t = self._t[:k]
        del self._t[:k]
        cols = []
        for name in ("_s", "_k"):
            col = getattr(self, name)
            if col is not None:
                cols.append((name, col[:k]))
                del col[:k]
        if devices:
            self.measured_with_energy = True
            if _use_numpy(k):
                self._energies_np(t, cols, devices)
            else:
                self._energies_py(t, cols, devices)
        else:  # no device had a series for them: counted, never given a made-up energy
            self.unmeasured += k
        self.n += k
        self.prev_t = t[-1]

    def _measured_totals(self, name: str, value: float) -> None:
        which = "samples_measured" if name == "_s" else "tokens_measured"
        setattr(self, which, getattr(self, which) + value)

    def _energies_py(self, t: array, cols: list[tuple[str, array]], devices: Sequence[DeviceSeries]) -> None:
        k = len(t)
        starts = [self.prev_t, *t[:-1]]
        gaps = _gap_list(devices)
        per_dev = []
        for d in devices:
            cum = d.acc.cumulative_j
            cs = [cum(x) for x in t]
            per_dev.append([b - a for a, b in zip([cum(self.prev_t), *cs[:-1]], cs)])
        ok = [not any(g0 < b and a < g1 for g0, g1 in gaps) for a, b in zip(starts, t)]
        for i in range(k):
            if ok[i]:
                e = 0.0
                for d, es in zip(devices, per_dev):
                    self.energy_sum[d.key] = self.energy_sum.get(d.key, 0.0) + es[i]
                    e += es[i]
                self.hist.add(e)
            else:
                self.unmeasured += 1
        for name, col in cols:
            self._measured_totals(name, sum(v for v, m in zip(col, ok) if m and v == v))

    def _energies_np(self, t_arr: array, cols: list[tuple[str, array]], devices: Sequence[DeviceSeries]) -> None:
        import numpy as np

        t = np.frombuffer(t_arr, dtype=np.float64)
        k = t.size
        x = np.empty(k + 1)  # each step runs from the previous mark (or the last folded one) to its own
        x[0] = self.prev_t
        x[1:] = t
        gaps = _gap_list(devices)
        ok: Any = slice(None)  # every step measured: no mask to build or apply
        if gaps:
            ok = np.ones(k, dtype=bool)
            for g0, g1 in gaps:
                ok &= ~((g0 < x[1:]) & (x[:-1] < g1))
        total = None
        for d in devices:
            e = np.diff(_cum_np(d.acc, x))
            total = e if total is None else total + e
            self.energy_sum[d.key] = self.energy_sum.get(d.key, 0.0) + float(e[ok].sum())
        assert total is not None  # devices is never empty here
        self.hist.add_array(total[ok])
        if gaps:
            self.unmeasured += int(k - ok.sum())
        for name, col in cols:
            v = np.frombuffer(col, dtype=np.float64)
            self._measured_totals(name, float(np.nansum(v[ok])))

    # the end of the run -------------------------------------------------------------------------------
    def steps_between(self, a: float, b: float) -> int:
        """Steps marked in ``[a, b]``: exact at entry bounds, in proportion to time inside one entry."""
        return max(0, self._count_le(b) - self._count_lt(a))

    def _prefix(self) -> list[int]:
        pre = getattr(self, "_pre", None)
        if pre is None or len(pre) != len(self.e_count) + 1:
            pre = [0]
            for c in self.e_count:
                pre.append(pre[-1] + c)
            self._pre = pre
        return pre

    def _count_le(self, x: float) -> int:
        """Marks at or before *x*."""
        pre = self._prefix()
        i = bisect_right(self.e_first, x)  # entries starting at or before x
        if not i:
            return 0
        f, last, c = self.e_first[i - 1], self.e_last[i - 1], self.e_count[i - 1]
        if x >= last or c == 1:
            return pre[i]
        return pre[i - 1] + 1 + int((c - 1) * (x - f) / (last - f))

    def _count_lt(self, x: float) -> int:
        """Marks before *x*."""
        pre = self._prefix()
        i = bisect_left(self.e_first, x)  # entries starting before x
        if not i:
            return 0
        f, last, c = self.e_first[i - 1], self.e_last[i - 1], self.e_count[i - 1]
        if x > last or c == 1:
            return pre[i]
        return pre[i - 1] + max(1, math.ceil((c - 1) * (x - f) / (last - f)))

    def stats(self, scales: dict[str, float]) -> dict[str, Any] | None:
        """Per-step statistics with each device's series-to-counter *scales* applied (None without energy)."""
        measured = self.n - self.unmeasured
        if not self.measured_with_energy or measured <= 0:
            return None
        kept = [k for k in self.energy_sum if k in scales]
        raw = sum(self.energy_sum[k] for k in kept)
        scaled = sum(scales[k] * self.energy_sum[k] for k in kept)
        factor = scaled / raw if raw > 0 else 1.0
        return {
            "steps": measured,
            "mean_j": scaled / measured,
            "p50_j": self.hist.quantile(50) * factor,
            "p95_j": self.hist.quantile(95) * factor,
            "j_per_sample": (scaled / self.samples_measured) if self.samples_measured else None,
            "j_per_token": (scaled / self.tokens_measured) if self.tokens_measured else None,
        }

    def memory_bytes(self) -> int:
        """Bytes held besides the raw marks: entries, compacted marks, histogram."""
        cols = sum(len(c) for c in (self._s, self._k) if c is not None)
        return 8 * (len(self.e_first) + len(self.e_last) + len(self.e_count) + len(self._t) + cols) \
            + 100 * (len(self.hist.counts) + 1)


def _use_numpy(k: int) -> bool:
    """numpy for a large batch, or when it is loaded anyway (the pure-Python fold spares a short
    run numpy's import); both paths compute the same figures."""
    return k >= NUMPY_BATCH or "numpy" in sys.modules


def _nans(k: int) -> array:
    return array("d", [math.nan]) * k


def _gap_list(devices: Sequence[DeviceSeries]) -> list[tuple[float, float]]:
    out = [tuple(g) for d in devices for g in d.gaps]
    out += [(d.open_gap_since, math.inf) for d in devices if d.open_gap_since is not None]
    return out  # type: ignore[return-value]


def _cum_np(acc: Any, x: Any) -> Any:
    """numpy twin of ``acc.cumulative_j`` over an array of times."""
    import numpy as np

    acc._archive()
    ts = np.frombuffer(acc.times, dtype=np.float64)
    cs = np.frombuffer(acc.cums, dtype=np.float64)
    try:
        if ts.size == 0:
            return np.zeros_like(x)
        out = np.interp(x, ts, cs)
        before = x < ts[0]
        if before.any():
            out[before] = -(ts[0] - x[before]) * acc.first_p
        after = x > ts[-1]
        if after.any():
            tail = acc.last_p if acc.tail_p is None else acc.tail_p
            out[after] = cs[-1] + (x[after] - ts[-1]) * tail
        return out
    finally:
        del ts, cs  # release the buffers: the accumulator's arrays must stay resizable


__all__ = ["StepLog", "LogHistogram", "DeviceSeries"]
