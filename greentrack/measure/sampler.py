"""The background thread: polls sources, integrates, flushes chunks to the store.

Nothing here runs on the training thread. Every source read is isolated: a device that
fails is reported once, its gap recorded, and the run goes on with the other devices.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..plugins import warn_once
from .energy import Accumulator, counter_delta_j
from .sources.base import Device, Source


@dataclass
class DeviceState:
    source: Source
    device: Device
    acc: Accumulator
    counter_start_j: float | None = None
    counter_last_j: float | None = None
    counter_last_t: float | None = None
    counter_first_t: float | None = None  # when the first counter value was read
    start_dated: bool = False  # the first reading was dated at a counter refresh (sync_counters)
    counter_failed: bool = False
    counter_anomaly: bool = False
    counter_sum_j: float = 0.0  # accumulated deltas (survives resets)
    in_gap_since: float | None = None
    gaps: list[tuple[float, float]] = field(default_factory=list)
    seq: int = 0

    def counter_energy_j(self) -> float | None:
        if self.counter_start_j is None:
            return None
        return self.counter_sum_j


THREAD_NAME = "greentrack-sampler"  # sources may recognise it (the CPU model leaves its CPU time out)


class Sampler:
    """Polls every device of every source on its own interval; flushes every *flush_interval_s*."""

    def __init__(self, sources: Sequence[Source], flush_interval_s: float,
                 on_flush: Callable[[list[tuple], list[DeviceState]], None],
                 on_start: Callable[[], None] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sources = list(sources)
        self.flush_interval_s = flush_interval_s
        self.on_flush = on_flush
        self.on_start = on_start
        self.clock = clock
        self.sleep = sleep  # with a virtual clock, a sleep that advances it
        # a source whose power is small (the CPU model: a few watts) keeps its series at a finer tolerance
        self.states: list[DeviceState] = [
            DeviceState(source=s, device=d, acc=Accumulator(tolerance_j=getattr(s, "series_tolerance_j", 0.1)))
            for s in self.sources for d in s.devices
        ]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0
        # held while a source is polled, so another thread may poll synchronously (Session.energy_between)
        self.lock = threading.Lock()
        self.sync_at_stop = True

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
        if first or st.counter_start_j is None:
            st.counter_start_j = st.counter_last_j = val
            st.counter_last_t = st.counter_first_t = t
            st.counter_sum_j = 0.0
            st.start_dated = dated
            return
        wrap = st.device.info.get("wrap_j") or getattr(st.source, "wrap_j", None)  # per device (RAPL)
        delta, anomaly = counter_delta_j(st.counter_last_j, val, wrap)
        st.counter_sum_j += delta
        st.counter_anomaly |= anomaly
        st.counter_last_j = val
        st.counter_last_t = t

    # polling -----------------------------------------------------------------------------------
    def poll(self, source: Source) -> None:
        for st in self.states:
            if st.source is not source:
                continue
            try:
                samples = source.poll(st.device)
            except Exception as exc:
                warn_once(f"{source.name}:{st.device.key}", "power read", exc)
                if st.in_gap_since is None:
                    st.in_gap_since = self.clock()
                    st.acc.gap()
                continue
            if st.in_gap_since is not None and samples:
                st.gaps.append((st.in_gap_since, samples[0][0]))
                st.in_gap_since = None
            # interval_means: each sample is the mean power since the previous one (RAPL, CPU model)
            add = st.acc.add_mean if getattr(source, "interval_means", False) else st.acc.add
            for t, p in samples:
                add(t, p)

    def poll_edges(self) -> None:
        """Poll now the sources that derive power at each poll (``poll_at_edges``: RAPL, the CPU model),
        so a window that opens here (a test's call) starts at a sample. Called on the caller's thread."""
        edge = [s for s in self.sources if getattr(s, "poll_at_edges", False)]
        if edge:
            with self.lock:
                for s in edge:
                    self.poll(s)

    def flush(self, final: bool = False, read_counters: bool = True) -> None:
        if read_counters:
            self.read_counters()
        chunks = []
        for st in self.states:
            if final:
                st.acc.close()
                if st.in_gap_since is not None:
                    st.gaps.append((st.in_gap_since, self.clock()))
                    st.in_gap_since = None
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
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.on_start is not None:
            try:
                self.on_start()
            except Exception as exc:
                warn_once("greentrack", "start", exc)
        self.sync_counters(first=True)  # re-bases the counters at their first refresh (off the training thread)
        now = self.clock()
        next_poll = {id(s): now for s in self.sources}
        next_flush = now + self.flush_interval_s
        while not self._stop.is_set():
            now = self.clock()
            for s in self.sources:
                if now >= next_poll[id(s)]:
                    with self.lock:
                        self.poll(s)
                    next_poll[id(s)] = max(next_poll[id(s)] + s.poll_interval_s, now + s.poll_interval_s / 4)
            if now >= next_flush:
                self.flush()
                next_flush = max(next_flush + self.flush_interval_s, now + self.flush_interval_s / 4)
            wake = min([next_flush, *next_poll.values()])
            self._stop.wait(max(0.0, wake - self.clock()))
        for s in self.sources:
            with self.lock:
                self.poll(s)
        if self.sync_at_stop:
            self.sync_counters(first=False)
            for s in self.sources:  # the samples of the wait too: the series fills the edge both ways
                with self.lock:
                    self.poll(s)
        self.flush(final=True, read_counters=not self.sync_at_stop)

    def stop(self, sync: bool = True) -> None:
        """Stop the thread. With *sync*, the last counter reading waits for the counter's
        next refresh (at most 0.15 s; worth it when 0.1 s is a noticeable part of the run)."""
        self.sync_at_stop = sync
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
