"""The background thread: polls sources, integrates, folds step marks, flushes chunks to the store.

Nothing here runs on the training thread. Every source read is isolated and checked at this
boundary:

- a read that raises is reported once and opens a *data gap* for that device; the gap runs from
  its newest good sample to the next good one (or the end of the run). Nothing is integrated
  across a gap: its energy is measured afterwards by the device's energy counter when readings
  of it bracket the gap, and is otherwise left out and counted as unmeasured seconds
  (:mod:`greentrack.measure.attribution`). A hole shorter than :func:`gap_threshold_s` (a driver
  buffer that refills what a failed poll missed) is no gap;
- an impossible reading (not a number, NaN, infinite, negative, above :data:`MAX_DEVICE_W`; a
  counter going that fast) is dropped, counted per device and said once.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from typing import Any, Callable, Sequence

from ..notify import say_once
from ..plugins import warn_once
from .energy import Accumulator, counter_delta_j
from .sources.base import Device, Source
from .steps import DeviceSeries, StepLog

MAX_DEVICE_W = 1e6  # no metered device (a GPU, a socket, a rack PDU) draws 1 MW: a larger reading is an error
COUNTER_MIN_DT_S = 0.2  # counters refresh every ~0.1 s: judge a counter's implied power over >= 0.2 s
GAP_HOLD_S = 5.0  # step marks wait this long for a device in a gap before being folded without it
COMPACT_S = 0.1  # how often raw step marks are compacted between polls
MARKS_FOLD_AT = 8192  # edge readings (Sampler.mark_edge) kept before a poll folds them into the series


class DeviceState:
    """The sampler's state of one device: its accumulator (the power series), counter readings, gaps.

    A plain class, not a dataclass: greentrack's modules on the pytest plugin's path keep their
    internal state in plain classes (a dataclass's generated methods cost 0.2 to 0.8 ms each at import).
    """

    def __init__(self, source: Source, device: Device, acc: Accumulator, interval_means: bool = False) -> None:
        self.source = source
        self.device = device
        self.acc = acc
        self.interval_means = interval_means  # the source's samples are mean powers since its previous one
        self.counter_start_j: float | None = None
        self.counter_last_j: float | None = None
        self.counter_last_t: float | None = None
        self.counter_first_t: float | None = None  # when the first counter value was read
        self.start_dated = False  # the first reading was dated at a counter refresh (sync_counters)
        self.counter_failed = False
        self.counter_anomaly = False
        self.counter_sum_j = 0.0  # accumulated deltas (survives resets)
        self.in_gap_since: float | None = None  # start of the current data gap (the newest good sample's time)
        self.gap_seen_at: float | None = None  # when the read that opened it failed
        self.gaps: list[tuple[float, float]] = []
        self.seq = 0
        self.rejected = 0  # impossible readings dropped
        self.counter_log: Any = array("d")  # (t, counter_sum) pairs, one per read

    def counter_energy_j(self) -> float | None:
        if self.counter_start_j is None:
            return None
        return self.counter_sum_j


THREAD_NAME = "greentrack-sampler"  # sources may recognise it (the CPU model leaves its CPU time out)


class Sampler:
    """Polls every device of every source on its own interval; flushes every *flush_interval_s*.

    With *background* False, no thread is started when every source's reads at a window's edges
    lose nothing (``edge_reads_suffice``: the CPU model): the sources are then read at
    :meth:`start`, at each :meth:`poll_edges` and at :meth:`stop`, where the series is flushed once.
    Any other source (a GPU, RAPL's wrapping counters) keeps the thread whatever *background* says.
    """

    def __init__(self, sources: Sequence[Source], flush_interval_s: float,
                 on_flush: Callable[[list[tuple], list[DeviceState]], None],
                 on_start: Callable[[], None] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, background: bool = True) -> None:
        self.sources = list(sources)
        self.background = background
        self.inline = False  # started without a thread (see the class docstring)
        self.flush_interval_s = flush_interval_s
        self.on_flush = on_flush
        self.on_start = on_start
        self.clock = clock
        self.sleep = sleep  # with a virtual clock, a sleep that advances it
        # a source whose power is small (the CPU model: a few watts) keeps its series at a finer tolerance
        self.states: list[DeviceState] = [
            DeviceState(source=s, device=d, acc=Accumulator(tolerance_j=getattr(s, "series_tolerance_j", 0.1)),
                        interval_means=bool(getattr(s, "interval_means", False)))
            for s in self.sources for d in s.devices
        ]
        # the devices of sources that derive power at each read (RAPL, the CPU model): read at a window's edges
        self.edge_states = [st for st in self.states if getattr(st.source, "poll_at_edges", False)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0
        # held while a source is polled, so another thread may poll synchronously (Session.energy_between)
        self.lock = threading.Lock()
        self.sync_at_stop = True
        # while live figures are read (greentrack.measure.live), sources are polled at least this often
        self.max_poll_s: float | None = None
        self.steps: StepLog | None = None  # the session's step marks, folded after each poll
        self.phase_edges: Callable[[], list[float]] = list
        self.edge_marks = 0  # readings mark_edge took since it last folded them into the series
        self.stopped = False  # set by stop(): no edge is read after it
        self.started = clock()

    # checks at the source boundary ---------------------------------------------------------------
    def _reject(self, st: DeviceState, what: str) -> None:
        st.rejected += 1
        say_once(f"{st.source.name}:{st.device.key} gave an impossible reading ({what}); such readings are "
                 "left out and counted in the run's notes", key=f"impossible:{id(st)}")

    def _valid(self, st: DeviceState, samples: Any) -> list[tuple[float, float]]:
        """The good ``(t, W)`` samples of a poll; a non-iterable answer is a failed read (TypeError)."""
        out = []
        for smp in samples:
            try:
                t, p = smp
                t, p = float(t), float(p)
            except (TypeError, ValueError):
                self._reject(st, f"sample {smp!r:.40}")
                continue
            if not (math.isfinite(t) and 0.0 <= p <= MAX_DEVICE_W):  # NaN, inf, negative, absurd
                self._reject(st, f"{p!r} W")
                continue
            out.append((t, p))
        return out

    # counters ----------------------------------------------------------------------------------
    def read_counters(self, first: bool = False) -> None:
        now = self.clock()
        for st in self.states:
            if not st.device.has_counter or st.counter_failed:
                continue
            try:
                val = st.source.energy_j(st.device)
            except Exception as exc:
                warn_once(f"{st.source.name}:{st.device.key}", "energy counter", exc)
                if first:
                    st.counter_failed = True
                continue
            if val is not None:
                self._take_counter(st, val, now, first, dated=False)

    def _counter_ok(self, st: DeviceState, val: Any, t: float, first: bool) -> float | None:
        """A counter reading as joules if it is possible, else None (counted, said once)."""
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not (0.0 <= val < math.inf):
            self._reject(st, f"energy counter {val!r:.40}")
            return None
        val = float(val)
        if not first and st.counter_last_j is not None and st.counter_last_t is not None and val > st.counter_last_j:
            dt = max(t - st.counter_last_t, COUNTER_MIN_DT_S)
            if (val - st.counter_last_j) / dt > MAX_DEVICE_W:
                self._reject(st, f"energy counter jumped by {val - st.counter_last_j:.3g} J in {dt:.3g} s")
                return None
        return val

    def sync_counters(self, first: bool, timeout_s: float = 0.15, every_s: float = 0.002) -> None:
        """Read each counter until its value changes, and date the reading at the change.

        An energy counter refreshes about every 100 ms (NVML), so a plain read can be up to
        100 ms stale: at a run's edges that is up to 0.1 s of full power, which dominates a
        short run. Waiting for the next refresh dates the reading to within one poll
        (*every_s*); the power series then fills the run's edges exactly. A counter that
        does not change within *timeout_s* keeps the plain reading.
        """
        todo = [st for st in self.states if st.device.has_counter and not st.counter_failed]
        if not todo:
            return
        base: dict[int, tuple[float, float]] = {}
        for st in todo:
            try:
                v = st.source.energy_j(st.device)
            except Exception:
                continue
            if v is not None:
                base[id(st)] = (v, self.clock())
        deadline = self.clock() + timeout_s
        pending = [st for st in todo if id(st) in base]
        for _ in range(int(2 * timeout_s / every_s)):  # bounded even if the clock stands still
            if not pending or self.clock() >= deadline:
                break
            if first and self._stop.is_set():
                return  # stopped while still starting: the readings taken at start() stand
            self.sleep(every_s)
            for st in list(pending):
                try:
                    v = st.source.energy_j(st.device)
                except Exception:
                    pending.remove(st)
                    continue
                now = self.clock()
                v0, t_prev = base[id(st)]
                if v is None or v == v0:
                    base[id(st)] = (v0, now)
                    continue
                pending.remove(st)
                t_change = (t_prev + now) / 2
                self._take_counter(st, v, t_change, first)
        for st in pending:  # never changed: keep the plain reading
            v0, t_prev = base[id(st)]
            self._take_counter(st, v0, t_prev, first)

    def _take_counter(self, st: DeviceState, val: float, t: float, first: bool, dated: bool = True) -> None:
        """One counter reading at time *t*: the run's origin when *first*, else a delta added.

        *dated*: *t* is when the counter refreshed (sync_counters), not merely when it was read.
        """
        checked = self._counter_ok(st, val, t, first or st.counter_start_j is None)
        if checked is None:
            return
        val = checked
        if first or st.counter_start_j is None:
            st.counter_start_j = st.counter_last_j = val
            st.counter_last_t = st.counter_first_t = t
            st.counter_sum_j = 0.0
            st.start_dated = dated
            st.counter_log = array("d", [t, 0.0])
            return
        wrap = st.device.info.get("wrap_j") or getattr(st.source, "wrap_j", None)  # per device (RAPL)
        if st.counter_last_j is None:  # no reading yet to measure from (the first one was lost)
            st.counter_last_j = val
            return
        delta, anomaly = counter_delta_j(st.counter_last_j, val, wrap)
        st.counter_sum_j += delta
        st.counter_anomaly |= anomaly
        st.counter_last_j = val
        st.counter_last_t = t
        st.counter_log.extend((t, st.counter_sum_j))

    # polling -----------------------------------------------------------------------------------
    def poll(self, source: Source) -> None:
        for st in self.states:
            if st.source is source:
                self.poll_state(st)

    def poll_state(self, st: DeviceState) -> None:
        """Poll one device now (the caller holds :attr:`lock`)."""
        source = st.source
        try:
            samples = source.poll(st.device)
            # the common answer, one good sample, checked inline (a few microseconds per test's edge)
            if type(samples) is list and len(samples) == 1 and type(samples[0]) is tuple:
                t, p = samples[0]
                if not (type(t) is float and type(p) is float and t - t == 0.0 and 0.0 <= p <= MAX_DEVICE_W):
                    samples = self._valid(st, samples)
            elif not (type(samples) is list and all(  # the CPU model's marks since the last poll
                    type(smp) is tuple and len(smp) == 2 and type(smp[0]) is float and type(smp[1]) is float
                    and smp[0] - smp[0] == 0.0 and 0.0 <= smp[1] <= MAX_DEVICE_W for smp in samples)):
                samples = self._valid(st, samples)
        except Exception as exc:
            warn_once(f"{source.name}:{st.device.key}", "power read", exc)
            if st.in_gap_since is None:
                st.in_gap_since = st.acc.last_t if st.acc.last_t is not None else self.started
                st.gap_seen_at = self.clock()
                st.acc.gap()
            return
        if not samples:
            return
        # interval_means: each sample is the mean power since the previous one (RAPL, CPU model)
        add = st.acc.add_mean if st.interval_means else st.acc.add
        if st.in_gap_since is not None:
            g0, (t_r, p_r) = st.in_gap_since, samples[0]
            st.in_gap_since = st.gap_seen_at = None
            if t_r - g0 > gap_threshold_s(st):
                st.gaps.append((g0, t_r))
                st.acc.resume(t_r, p_r)
                samples = samples[1:]
        for t, p in samples:
            add(t, p)

    # step marks ----------------------------------------------------------------------------------
    def step_devices(self) -> list[DeviceSeries]:
        """The devices whose power series make each step's energy: those with samples."""
        return [DeviceSeries(st.device.key, st.acc, st.gaps, st.in_gap_since) for st in self.states if st.acc.n_raw]

    def step_horizon(self, now: float) -> float:
        """Up to when step marks can be folded: every device's series covers them, or it has been
        in a gap (or without any sample) long enough not to wait for it (:data:`GAP_HOLD_S`)."""
        if not self.states:
            return now
        horizon = math.inf
        for st in self.states:
            hold = max(GAP_HOLD_S, 2 * gap_threshold_s(st))
            if st.acc.n_raw == 0:
                if now - self.started < hold:
                    return -math.inf
                continue
            if st.in_gap_since is not None and st.gap_seen_at is not None and now - st.gap_seen_at >= hold:
                continue  # marks past its gap start are folded as overlapping a gap
            if st.acc.last_t is not None:
                horizon = min(horizon, st.acc.last_t)
        return horizon if horizon != math.inf else now

    def _compact_steps(self) -> None:
        try:
            self.steps.compact(self.phase_edges())  # type: ignore[union-attr]
        except Exception as exc:  # never lose the run over step statistics
            warn_once("greentrack", "step statistics", exc)

    def fold_steps(self, final: bool = False) -> None:
        """Fold the session's step marks that every device's series now covers (all of them when *final*)."""
        if self.steps is None:
            return
        try:
            horizon = math.inf if final else self.step_horizon(self.clock())
            if horizon == -math.inf:
                return
            self.steps.fold(self.step_devices(), horizon, self.phase_edges())
        except Exception as exc:  # never lose the run over step statistics
            warn_once("greentrack", "step statistics", exc)

    def poll_edges(self) -> None:
        """Poll now the sources that derive power at each poll (``poll_at_edges``: RAPL, the CPU model),
        so a window that opens here (a test's call) starts at a sample. Called on the caller's thread."""
        if self.edge_states:
            with self.lock:
                for st in self.edge_states:
                    self.poll_state(st)
                if self.inline and self.steps is not None and self.steps.marks:
                    self.fold_steps()  # no thread folds them: step marks stay few between edges

    def mark_edge(self) -> tuple[float, float] | None:
        """A window's edge read cheaply: ``(t, J)``, the time of a reading of the one device, a source
        that can :meth:`mark` (the CPU model), and its joules so far; the reading becomes a sample at the
        next poll. None where that does not hold (several devices, another source, a data gap, step marks
        to fold at this edge, a failed read, stopped): the caller then polls (:meth:`poll_edges`)."""
        edge = self._edge_function(fast=False)
        return edge() if edge is not None else None

    def edge_function(self) -> Callable[[], tuple[float, float] | None]:
        """:meth:`mark_edge` as a function bound once, for a caller that reads edges by the thousand (the
        pytest plugin): the one device's source and its reader are looked up here, not at each call,
        and a source with an ``edge_reader(device)`` (the CPU model) is read through it. Each call still
        answers None where :meth:`mark_edge` would."""
        return self._edge_function(fast=True) or no_edge

    def _edge_function(self, fast: bool) -> Callable[[], tuple[float, float] | None] | None:
        if len(self.states) != 1:
            return None
        st = self.states[0]
        reader = getattr(st.source, "edge_reader", None) if fast else None
        if reader is not None:
            read = reader(st.device)
        else:
            mark = getattr(st.source, "mark", None)
            if mark is None:
                return None
            device = st.device

            def read() -> Any:
                return mark(device)

        lock = self.lock

        def edge() -> tuple[float, float] | None:
            if self.stopped or st.in_gap_since is not None or (self.steps is not None and self.steps.marks):
                return None
            with lock:
                try:
                    t, j = read()
                except Exception as exc:
                    warn_once(f"{st.source.name}:{st.device.key}", "power read", exc)
                    return None
                self.edge_marks += 1
                if self.edge_marks >= MARKS_FOLD_AT:  # a long suite without a poll: its readings join the series
                    self.edge_marks = 0
                    self.poll_state(st)
            if type(t) is float and type(j) is float and t - t == 0.0 and j - j == 0.0:
                return t, j
            return None

        return edge

    def flush(self, final: bool = False, read_counters: bool = True) -> None:
        if read_counters:
            self.read_counters()
        chunks = []
        for st in self.states:
            if final:
                st.acc.close()
                if st.in_gap_since is not None:
                    st.gaps.append((st.in_gap_since, max(self.clock(), st.in_gap_since)))
                    st.in_gap_since = st.gap_seen_at = None
                    st.acc.end_in_gap()
            pts = st.acc.take_pending()
            if pts:
                chunks.append((st.device.key, st.seq, pts[0][0], [p[0] for p in pts], [p[1] for p in pts]))
                st.seq += 1
        self.flushes += 1
        try:
            self.on_flush(chunks, self.states)
        except Exception as exc:
            warn_once("greentrack", "flush", exc)

    # thread --------------------------------------------------------------------------------------
    def start(self) -> None:
        self.read_counters(first=True)
        # a first power sample at once, on the calling thread: the figures a logger reads right after
        # start (greentrack.live) exist even while a loaded machine keeps the sampler thread waiting,
        # and the store's first write (which can be slow) cannot delay it
        for s in self.sources:
            with self.lock:
                self.poll(s)
        if not self.background and all(getattr(s, "edge_reads_suffice", False) for s in self.sources):
            self.inline = True
            if self.on_start is not None:
                try:
                    self.on_start()
                except Exception as exc:
                    warn_once("greentrack", "start", exc)
            return
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def edge_process_clock(self) -> Callable[[], float] | None:
        """Where :meth:`edge_function` reads the one device's source through a reading of this process's CPU
        clock (the CPU model): a function giving ``time.process_time()`` as of the latest edge read, without
        a system call of its own. None elsewhere. Valid right after an edge that answered (not None)."""
        if len(self.states) != 1:
            return None
        get = getattr(self.states[0].source, "process_clock", None)
        if get is None:
            return None
        try:
            clock = get()
        except Exception:  # a plugin source's bug: the caller reads the clock itself
            return None
        return clock if callable(clock) else None

    def cpu_time_reader(self) -> Callable[[], float] | None:
        """A function giving the sampler thread's CPU seconds so far, read from any thread (None before
        :meth:`start`, or where this platform cannot read another thread's CPU clock). The pytest plugin
        leaves the sampler's CPU time out of a test's share of CPU time on other threads."""
        getclock = getattr(time, "pthread_getcpuclockid", None)
        ident = self._thread.ident if self._thread is not None else None
        if getclock is None or ident is None:
            return None
        try:
            clk = getclock(ident)
            time.clock_gettime(clk)
        except (OSError, ValueError):
            return None

        def read() -> float:
            try:
                return time.clock_gettime(clk)
            except OSError:  # the thread has ended
                return 0.0

        return read

    def _run(self) -> None:
        for s in self.sources:  # a source may leave this thread's own CPU time out (the CPU model)
            hook = getattr(s, "on_sampler_thread", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    warn_once(s.name, "sampler thread", exc)
        if self.on_start is not None:
            try:
                self.on_start()
            except Exception as exc:
                warn_once("greentrack", "start", exc)
        for s in self.sources:  # samples before re-basing the counters, which waits up to one counter period
            with self.lock:
                self.poll(s)
        self.sync_counters(first=True)  # re-bases the counters at their first refresh (off the training thread)
        now = self.clock()
        next_poll = {id(s): now for s in self.sources}
        next_flush = now + self.flush_interval_s
        next_compact = now + COMPACT_S
        while not self._stop.is_set():
            now = self.clock()
            polled = False
            for s in self.sources:
                if now >= next_poll[id(s)]:
                    with self.lock:
                        self.poll(s)
                    iv = s.poll_interval_s if self.max_poll_s is None else min(s.poll_interval_s, self.max_poll_s)
                    polled = True
                    next_poll[id(s)] = max(next_poll[id(s)] + iv, now + iv / 4)
            if polled or not self.sources:
                with self.lock:
                    self.fold_steps()
            elif now >= next_compact and self.steps is not None and self.steps.marks:
                with self.lock:  # keep the raw marks few between polls: 48 bytes each, 8-24 compacted
                    self._compact_steps()
            if now >= next_compact:
                next_compact = now + COMPACT_S
            if now >= next_flush:
                self.flush()
                next_flush = max(next_flush + self.flush_interval_s, now + self.flush_interval_s / 4)
            wake = min([next_flush, next_compact, *next_poll.values()])
            self._stop.wait(max(0.0, wake - self.clock()))
        self._last_reads()

    def _last_reads(self) -> None:
        """At stop: a last read of every source, the final flush, the steps folded (thread or not)."""
        for s in self.sources:
            with self.lock:
                self.poll(s)
        if self.sync_at_stop:
            self.sync_counters(first=False)
            for s in self.sources:  # the samples of the wait too: the series fills the edge both ways
                with self.lock:
                    self.poll(s)
        self.flush(final=True, read_counters=not self.sync_at_stop)
        with self.lock:
            self.fold_steps()  # what the series now covers; the rest is folded at attribution

    def stop(self, sync: bool = True) -> None:
        """Stop the thread. With *sync*, the last counter reading waits for the counter's
        next refresh (at most 0.15 s; worth it when 0.1 s is a noticeable part of the run)."""
        self.sync_at_stop = sync
        self.stopped = True
        self._stop.set()
        if self.inline:
            self.inline = False
            self._last_reads()
            return
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def no_edge() -> None:
    """The edge function where no edge can be read cheaply: always None (see Sampler.edge_function)."""
    return None


def gap_threshold_s(st: DeviceState) -> float:
    """The longest hole between two good samples of a device that is not a data gap.

    A buffer series (samples every 20 ms, refilled after a failed poll) has holes only when
    samples were really lost; an instant series is as fine as its poll interval.
    """
    spacing = 0.02 if st.device.series_method == "buffer" else float(st.source.poll_interval_s)
    return max(0.25, 2.5 * spacing)
