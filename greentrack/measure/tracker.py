"""Session: the lifecycle of one measured run, its step and phase marks, live budgets.

The training thread only appends timestamps (``step``) and phase bounds (``phase``). The
sampler thread reads the sources and writes the store; energy is attributed to steps and
phases afterwards, from the time series, reconciled to the hardware counter's total.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from ..errors import GreentrackError
from ..notify import say_once as _say_once
from ..notify import warn_once as _warn_once
from ..settings import env as settings_env
from ..settings import resolve_pue
from . import lifecycle
from .result import PhaseResult, RunResult
from .steps import StepLog
from .view import RunView

F = TypeVar("F", bound=Callable[..., Any])



def _new_id() -> str:
    return os.urandom(6).hex()  # 48 random bits, like the first 12 hex digits of a uuid4


class Session:
    """One measured run. Use as a context manager, a decorator (:func:`track`) or start/stop.

    Args:
        name: what the run is called in reports.
        region: grid region for CO2e (``FR``, ``DEU``, ...); None uses ``GREENTRACK_REGION``,
            ``[tool.greentrack] region``, or else a labelled world average.
        tags: free ``key=value`` labels (precision, technique, model...), filterable in reports.
        db: database file (else ``GREENTRACK_DB``, ``[tool.greentrack] db``, the default).
        backend: ``auto`` (default), ``nvml``, ``mock``, ``none`` or a plugin source.
        budget_kwh / budget_co2e_kg: live budgets, checked at each flush; crossing one warns
            once and calls ``greentrack_budget_exceeded``. A budget that is not a finite number
            >= 0 (negative, NaN, infinite, text) raises :class:`~greentrack.errors.ConfigError` at once.
        store: keep the run in the database (default True).
        pue: power usage effectiveness of the data centre (CO2e = energy x PUE x grid intensity); None
            uses ``GREENTRACK_PUE``, ``[tool.greentrack] pue``, or else 1.0 (not applied). Anything but a
            finite number >= 1.0 raises :class:`~greentrack.errors.ConfigError` at once.
        strict: raise configuration errors instead of reporting them and measuring less.
        exact_edges: at stop, wait for the energy counter's next refresh (at most 0.1 s on NVML)
            so the run's end is dated exactly. Default (None): only for runs shorter than 100 s,
            where a stale reading could be more than 0.1 % of the run.
        progress: show a live status line (elapsed time, power, energy, CO2e, steps, phase) at the
            bottom of the terminal while the session runs; the program's output, tqdm bars and rich
            progress bars included, scrolls above it. Off when stderr is not a terminal.
        background: poll the sources on greentrack's sampler thread (default). False (the pytest
            plugin) starts no thread where every source can be read at a window's edges only (the
            CPU model): it is read at start, at each phase's edges, at :meth:`energy_between` and at
            stop, where the series is written and the ``greentrack_samples`` hook called, once. A
            GPU or RAPL keeps the thread.
    """

    def __init__(self, name: str = "run", *, region: str | None = None, tags: dict[str, Any] | None = None,
                 db: str | os.PathLike[str] | None = None, backend: str | None = None,
                 budget_kwh: float | None = None, budget_co2e_kg: float | None = None,
                 store: bool = True, strict: bool = False, pue: float | None = None,
                 sample_interval_s: float | None = None, flush_interval_s: float | None = None,
                 exact_edges: bool | None = None, progress: bool = False,
                 command: str | None = None, sources: list[Any] | None = None, background: bool = True) -> None:
        # a run needs a name: an empty one, or one of blanks only (which the store reads as no name), gets the default
        self.name = str(name) if str(name).strip() else "run"
        self.id = _new_id()
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.region = region
        self._pue_given = pue is not None
        self.pue = resolve_pue(pue) if pue is not None else 1.0  # else resolved at start (environment, pyproject)
        self.budget_kwh = _budget("budget_kwh", budget_kwh, "kWh")
        self.budget_co2e_kg = _budget("budget_co2e_kg", budget_co2e_kg, "kg CO2e")
        self.command = command
        self.strict = strict
        self.exact_edges = exact_edges
        self.progress = bool(progress)
        self.background = bool(background)
        self._display: Any = None
        self._want_store = store
        self._kw: dict[str, Any] = dict(db=db, backend=backend, sample_interval_s=sample_interval_s,
                        flush_interval_s=flush_interval_s)
        self._given_sources = sources
        self._steps = StepLog(start_t=time.time())
        self._marks = self._steps.marks  # flat (t, samples, tokens) triples; the sampler folds them
        self.step = _fast_step(self._marks.extend)  # type: ignore[method-assign]
        self._phases: list[tuple[str, float, float]] = []
        self._phase_j: dict[int, float] = {}  # index in _phases -> the energy read at the phase's edges
        self._open_phases: list[tuple[str, float]] = []
        self.started_at: float | None = None
        self.started_cpu_s: float | None = None  # time.process_time() at started_at
        self.ended_at: float | None = None
        self.status = "new"
        self.result: RunResult | None = None
        self.notes: list[str] = []
        self.intensity: Any = None
        self.store: Any = None
        self.writer: Any = None
        self.sampler: Any = None
        self.sources: list[Any] = []
        self.backend = "none"
        self.budget_exceeded: dict[str, Any] | None = None
        self._signal: int | None = None  # set by the process's signal handler (lifecycle)
        self._stopping_thread: int | None = None
        self._forked = False
        self._lock = threading.Lock()
        self.view = RunView(self)
        from .jobenv import job_id_from_env

        self.job_id = settings_env("GREENTRACK_JOB_ID") or job_id_from_env()
        parent = settings_env("GREENTRACK_PARENT_RUN_ID")
        if parent and "parent_run" not in self.tags:  # measured inside greentrack run: the job total counts it once
            self.tags = {**self.tags, "parent_run": parent}
        self.rank = _int_env("RANK")
        self.world_size = _int_env("WORLD_SIZE")

    # the hot path -------------------------------------------------------------------------------
    def step(self, samples: Any = None, tokens: Any = None) -> None:
        """Mark the end of a training step (about 0.2 µs: a timestamp appended to a list).

        *samples* and *tokens* (numbers) give J/sample and J/token. No I/O, no lock, no hardware
        read: the sampler thread folds the marks into per-step statistics as the run goes, so
        memory grows with the run's duration, not with its number of steps.
        """
        self._marks.extend((time.time(), samples, tokens))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark a phase (``with s.phase("eval"):``); phases may nest. Energy is attributed later.

        Sources whose series is derived at each read (the CPU model, RAPL) are read at both
        edges, so the phase gets exactly its own energy (about 1 µs each; none for GPUs)."""
        self.poll_edges()
        t0 = time.time()
        self._open_phases.append((name, t0))
        try:
            yield
        finally:
            t1 = time.time()
            self.poll_edges()
            self._open_phases.remove((name, t0))
            self._phases.append((str(name), t0, t1))

    def step_counts(self) -> tuple[int, float, float]:
        """Steps marked so far and the samples and tokens given to them (non-numbers left out).

        The folded totals plus the raw marks not yet folded (at most about 0.1 s of them), read
        as one consistent pair under the sampler's lock (held for microseconds).
        """
        log = self._steps
        sampler = self.sampler
        if sampler is not None:
            with sampler.lock:
                raw = log.marks[:]
                n, samples, tokens = log.steps, log.samples or 0.0, log.tokens or 0.0
        else:
            raw = log.marks[:]
            n, samples, tokens = log.steps, log.samples or 0.0, log.tokens or 0.0
        for a in raw[1::3]:
            if isinstance(a, (int, float)) and not isinstance(a, bool) and a >= 0:
                samples += a
        for b in raw[2::3]:
            if isinstance(b, (int, float)) and not isinstance(b, bool) and b >= 0:
                tokens += b
        return n, samples, tokens

    def meter(self) -> Any:
        """A new live-figures :class:`~greentrack.measure.live.Meter` on this session (see greentrack.live)."""
        from .live import Meter

        return Meter(self)

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "Session":
        """Open the sources, write the run row (status ``running``) and start sampling."""
        if self.status != "new":
            raise GreentrackError(f"session {self.name!r} was already started")
        from .. import plugins
        from .. import settings as config
        from ..carbon import grid
        from .sources import build_sources

        self.started_at = time.time()
        self.started_cpu_s = time.process_time()  # the CPU model counts from here (its bind)
        self._steps.start_t = self._steps.prev_t = self.started_at
        self.status = "running"
        try:
            settings = config.resolve(region=self.region, **self._kw)
        except GreentrackError as exc:
            if self.strict:
                raise
            _say_once(f"{exc} (using defaults)")
            try:  # keep the other settings (the backend above all) when only the database is wrong
                settings = config.resolve(region=self.region, **{**self._kw, "db": config.default_db_path()})
            except GreentrackError:
                settings = config.Settings(db_path=config.default_db_path())
        self.settings = settings
        self.region = settings.region
        if not self._pue_given:
            try:
                self.pue = config.resolve_pue(conf=settings.extra)
            except GreentrackError as exc:
                if self.strict:
                    raise
                _say_once(f"{exc}; PUE 1.0 (not applied)")
                self.notes.append(f"{exc}: PUE 1.0 (not applied) was used")
        try:
            self.intensity = grid.lookup(self.region)
        except GreentrackError as exc:
            if self.strict:
                raise
            _say_once(f"{exc}; CO2e uses the world average")
            self.intensity = grid.world_average()
            hint = str(exc).removeprefix(f"unknown region {self.region!r}").strip()
            self.notes.append(f"region {self.region!r} was not recognised{' ' + hint if hint else ''}: CO2e uses "
                              f"the {self.intensity.describe()}")
        else:
            if self.intensity.fallback:
                self.notes.append(f"no region given: CO2e uses the {self.intensity.describe()}")
        # sources
        if self._given_sources is not None:
            notes: list[str] = []
            self.sources = list(self._given_sources)
            self.backend = ",".join(s.name for s in self.sources) or "none"
        else:
            try:
                self.sources, notes = build_sources(settings)
                self.backend = ",".join(s.name for s in self.sources) or "none"
            except GreentrackError as exc:
                if self.strict:
                    raise
                _say_once(f"{exc}; nothing is measured")
                self.sources, notes = [], [str(exc)]
            else:
                if notes and not any(s.kind == "gpu" for s in self.sources):
                    _say_once(notes[0])
        self.notes += notes
        for s in self.sources:
            bind = getattr(s, "bind", None)
            if bind is not None:
                try:
                    bind(self)
                except Exception as exc:  # a plugin source's bug must not stop the run
                    _warn_once(str(getattr(s, "name", type(s).__name__)), "bind", exc)
        # store: a bad database stops a strict session here; otherwise the run is kept and spooled
        if self._want_store:
            from ..store.writer import RunWriter

            self.writer = RunWriter(settings.db_path, strict=self.strict)
            self.store = self.writer.open()
            if self.writer.open_error is not None:
                self.notes.append(str(self.writer.open_error))
        from .sampler import Sampler

        self.sampler = Sampler(self.sources, settings.flush_interval_s, self._on_flush, self._on_start,
                               background=self.background)
        self.sampler.steps = self._steps
        self.sampler.phase_edges = self._phase_edges
        self.sampler.start()
        lifecycle.track(self)
        plugins.hook().greentrack_session_start(run=self.view)
        if self.progress:
            from .progress import LiveStatus

            self._display = LiveStatus(self, capture=True).start()
        return self

    def _device_rows(self) -> list[Any]:
        from ..store.records import DeviceRow

        rows = []
        for st in (self.sampler.states if self.sampler else []):
            d = st.device
            rows.append(DeviceRow(key=d.key, kind=d.kind, idx=d.index, name=d.name, uuid=d.uuid, method=d.method,
                                  series_method=d.series_method, energy_j=self._device_energy_so_far(st),
                                  n_samples=st.acc.n_raw, peak_power_w=st.acc.peak_w if st.acc.n_raw else None,
                                  info=dict(d.info)))
        return rows

    @staticmethod
    def _device_energy_so_far(st: Any) -> float | None:
        c = st.counter_energy_j() if st.device.has_counter and not st.counter_failed else None
        if c is not None:
            return c
        return st.acc.cum_j if st.acc.n_raw else None

    def _on_start(self) -> None:
        if self.writer is not None:
            self.writer.begin(self._run_row(), self._device_rows())

    def _run_row(self) -> Any:
        from .._version import __version__
        from ..store.records import RunRow

        assert self.started_at is not None
        return RunRow(id=self.id, name=self.name, status="running", started_at=self.started_at,
                      region=self.intensity.region if self.intensity else None,
                      intensity_g_per_kwh=self.intensity.g_per_kwh if self.intensity else None,
                      intensity_source=self.intensity.describe() if self.intensity else None,
                      pue=self.pue, backend=self.backend, command=self.command, tags=dict(self.tags),
                      job_id=self.job_id, rank=self.rank, world_size=self.world_size, version=__version__)

    def live_energy_j(self) -> float | None:
        """Energy measured so far (as of the last flush); no hardware read on this thread."""
        if self.sampler is None:
            return None
        vals = [e for e in (self._device_energy_so_far(st) for st in self.sampler.states) if e is not None]
        return sum(vals) if vals else None

    def snapshot(self) -> Any:
        """Elapsed time, power, energy and CO2e as of now (a :class:`~greentrack.measure.snapshot.Snapshot`),
        from the sampler's latest readings brought up to now: no hardware read, a few microseconds."""
        from .snapshot import snapshot

        return snapshot(self)

    def energy_between(self, t0: float, t1: float | None = None) -> float | None:
        """Energy in joules of all devices over ``[t0, t1]`` (wall-clock seconds; *t1*: now).

        While the session runs, the sources are polled first on the calling thread (under the
        sampler's lock), so a window that has just ended, such as one test, gets its energy at
        once from the power series, even one shorter than the counter's update period. It is
        not reconciled to the hardware counter (the phases of :attr:`result` are), so the two
        may differ by the counter/series ratio. None when no power sample was read.
        """
        sampler = self.sampler
        if sampler is None:
            return None
        t1 = time.time() if t1 is None else t1
        total: float | None = None
        with sampler.lock:
            running = self.result is None
            for st in sampler.states:
                if running:
                    sampler.poll_state(st)
                if st.acc.n_raw:
                    total = (total or 0.0) + st.acc.series_energy_j(t0, t1)
        return total

    def _phase_edges(self) -> list[float]:
        """Every phase bound known now (the sampler splits its step entries there)."""
        edges = [x for _n, a, b in list(self._phases) for x in (a, b)]
        edges += [a for _n, a in list(self._open_phases)]
        return edges
    def poll_edges(self) -> None:
        """Read now the sources whose series is derived at each read (the CPU model, RAPL), so a
        window opening now (a test's call) starts at a sample; about 1 µs per such source."""
        sampler = self.sampler
        if sampler is not None and self.result is None:
            sampler.poll_edges()

    def edge(self) -> tuple[float, float] | None:
        """A window's edge, cheaply, where the session's one device derives its power at each read
        (the CPU model): ``(t, J)``, the wall-clock time of a reading taken now and the joules so far.
        The energy of a window between two edges is the difference of their joules; give it to the
        window's phase (``mark_phase(name, t_a, t_b, energy_j=j_b - j_a)``), which keeps it. The power
        series keeps an edge's reading only 0.1 s after the last one it kept (at most ten points a second,
        however many windows), so :meth:`energy_between` gives that figure for windows between readings it
        kept, and spreads the energy evenly between them otherwise. None where this does not
        apply (a GPU, RAPL, several devices, not running): use :meth:`poll_edges` and
        :meth:`energy_between`. The pytest plugin dates each test's call with it."""
        sampler = self.sampler
        if sampler is None or self.result is not None:
            return None
        return sampler.mark_edge()

    def edge_function(self) -> Callable[[], tuple[float, float] | None]:
        """:meth:`edge` as a function bound once (the pytest plugin calls it twice per test): the same
        answers, None included, with the lookups done here rather than at each call."""
        from .sampler import no_edge

        sampler = self.sampler
        if sampler is None or self.result is not None:
            return no_edge
        return sampler.edge_function()

    def edge_process_clock(self) -> Callable[[], float] | None:
        """With :meth:`edge_function`: a function giving this process's own CPU seconds
        (``time.process_time()``) as of the latest edge read, which the CPU model's reading took anyway;
        None where the edges do not read it (then call ``time.process_time()``). Valid only right after
        an edge that answered (not None)."""
        sampler = self.sampler
        if sampler is None or self.result is not None:
            return None
        return sampler.edge_process_clock()

    @property
    def modelled(self) -> bool:
        """True when a source models rather than measures (the CPU model): figures are labelled ``~``."""
        return any(getattr(s, "measured", True) is False for s in self.sources)

    def mark_phase(self, name: str, t0: float, t1: float, energy_j: float | None = None) -> None:
        """Record a phase that already happened, from its wall-clock bounds (attributed at stop).

        *energy_j*: its energy read at its edges (the difference of two :meth:`edge` readings' joules),
        which the phase keeps instead of an attribution from the power series; only such a figure belongs
        here (a finite float >= 0, else ignored). The pytest plugin marks each test's call so."""
        if energy_j is not None and type(energy_j) is float and 0.0 <= energy_j < math.inf:
            self._phase_j[len(self._phases)] = energy_j
        self._phases.append((str(name), float(t0), float(t1)))

    def _on_flush(self, chunks: list[tuple], states: list[Any]) -> None:
        from .. import plugins

        total = self.live_energy_j()
        if self.writer is not None and self.started_at is not None:  # bounded wait; unwritten data is kept
            from ..store.records import SeriesChunk

            encoded = [SeriesChunk.encode(k, seq, t, p, self.started_at) for k, seq, _t0, t, p in chunks if t]
            self.writer.progress(total, self._device_rows(), encoded)
        if chunks:
            plugins.hook().greentrack_samples(run=self.view, batch=[(k, t, p) for k, _s, _t0, t, p in chunks])
        self._check_budgets(total)

    def usage(self, total_j: float) -> dict[str, float]:
        """What *total_j* joules mean against the budgets: ``energy_kwh`` and ``co2e_kg`` (with PUE)."""
        from .attribution import usage

        return usage(total_j, self.pue, self.intensity.g_per_kwh)

    def _check_budgets(self, total_j: float | None) -> None:
        if total_j is None or self.budget_exceeded is not None:
            return
        from .. import plugins

        usage = self.usage(total_j)
        for key, limit, unit in (("energy_kwh", self.budget_kwh, "kWh"), ("co2e_kg", self.budget_co2e_kg, "kgCO2e")):
            if limit is not None and usage[key] > limit:
                self.budget_exceeded = {"budget": key, "limit": limit, "usage": usage[key]}
                _say_once(f"run {self.name!r} exceeded its budget: {usage[key]:.6g} {unit} > {limit:.6g} {unit}")
                plugins.hook().greentrack_budget_exceeded(run=self.view, budget=dict(self.budget_exceeded),
                             usage=usage)
                return

    def stop(self, status: str | None = None, error: str | None = None) -> RunResult:
        """Stop sampling, attribute energy, complete the run row; returns :attr:`result`.

        In a forked child (a DataLoader worker) the session is the parent's: stopping it there
        does nothing and returns None, so the child leaves silently with its own exit code.
        """
        if self._forked:
            return self.result  # type: ignore[return-value]
        with self._lock:
            if self.result is not None:
                return self.result
            if self.status != "running":
                raise GreentrackError(f"session {self.name!r} was never started")
            self._stopping_thread = threading.get_ident()
            self.ended_at = time.time()
            if self._display is not None:
                self._display.stop()
            for name, t0 in list(self._open_phases):
                self._phases.append((name, t0, self.ended_at))
            self._open_phases.clear()
            # a stale counter reading (<= 0.1 s) matters below ~100 s; for long runs skip the wait
            assert self.started_at is not None
            sync = self.exact_edges if self.exact_edges is not None else (self.ended_at - self.started_at) < 100.0
            self.sampler.stop(sync=sync)
            if self._signal is not None and status is None:
                import signal

                status = "interrupted"
                error = error or f"terminated by {signal.Signals(self._signal).name}"
            self.status = status = status or "finished"
            self.result = self._compute(status)
            if self.writer is not None:  # returns within GREENTRACK_LOCK_TIMEOUT; else the run is spooled
                self.writer.finish(self._finish_fields(error), self._final_device_rows(),
                                   [self._phase_row(i, p) for i, p in enumerate(self.result.phases)])
                self.store = self.writer.store
            for s in self.sources:
                try:
                    s.close()
                except Exception:
                    pass
            lifecycle.forget(self)
        from .. import plugins

        plugins.hook().greentrack_session_end(run=self.view, result=self.result)
        return self.result

    # attribution (greentrack/attribution.py) ---------------------------------------------------------
    def _compute(self, status: str) -> RunResult:
        from .attribution import RunRecord, compute_result

        assert self.started_at is not None and self.ended_at is not None
        record = RunRecord(
            run_id=self.id, name=self.name, started_at=self.started_at, ended_at=self.ended_at,
            states=list(self.sampler.states), steps=self._steps, phases=list(self._phases), phase_j=self._phase_j,
            intensity=self.intensity, pue=self.pue, measured=bool(self.sources), budget_kwh=self.budget_kwh,
            budget_co2e_kg=self.budget_co2e_kg, budget_exceeded=self.budget_exceeded, notes=self.notes)
        return compute_result(record, status)

    def _finish_fields(self, error: str | None) -> Any:
        from ..store.records import RunEnd

        r = self.result
        assert r is not None
        return RunEnd(status=r.status, ended_at=r.ended_at, duration_s=r.duration_s, energy_j=r.energy_j,
                      co2e_kg=r.co2e_kg, steps=r.steps, samples=r.samples, tokens=r.tokens, error=error,
                      notes=r.notes, budget=r.budget,
                      stats={"step": r.step_stats, "outside_phases_j": r.outside_phases_j,
                             **({"unmeasured_s": r.unmeasured_s, "gaps": r.gaps} if r.gaps else {})})

    def _final_device_rows(self) -> list[Any]:
        from ..store.records import DeviceRow

        assert self.result is not None
        return [DeviceRow(key=d.key, kind=d.kind, idx=d.index, name=d.name, uuid=d.uuid, method=d.method,
                          series_method=d.series_method, energy_j=d.energy_j, series_energy_j=d.series_energy_j,
                          avg_power_w=d.avg_power_w, peak_power_w=d.peak_power_w, n_samples=d.n_samples,
                          info=dict(d.info, gaps=d.gaps) if d.gaps else dict(d.info))
                for d in self.result.devices]

    @staticmethod
    def _phase_row(i: int, p: PhaseResult) -> Any:
        from ..store.records import PhaseRow

        return PhaseRow(seq=i, name=p.name, started_at=p.started_at, ended_at=p.ended_at, energy_j=p.energy_j,
                        steps=p.steps)

    # context manager ---------------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        return self.start()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self._forked:  # a forked child leaving the parent's block: not its run, nothing to say
            return
        if et is None:
            self.stop()
        elif issubclass(et, KeyboardInterrupt):
            self.stop("interrupted", "KeyboardInterrupt")
        elif issubclass(et, SystemExit) and ev is not None and ev.code in (0, None):
            self.stop()
        else:
            self.stop("failed", f"{et.__name__}: {str(ev).splitlines()[0] if str(ev) else ''}".rstrip(": "))

    @staticmethod
    def say_once(msg: str) -> None:
        """One line on stderr, once per process (greentrack's way to report without breaking)."""
        _say_once(msg)

    def __repr__(self) -> str:
        return f"<greentrack.Session {self.name!r} {self.id} {self.status}>"


def _budget(label: str, value: Any, unit: str) -> float | None:
    """A live budget as a float; anything but a finite number >= 0 is a one-line ConfigError (as on the CLI)."""
    if value is None:
        return None
    import math

    from ..errors import ConfigError

    try:
        v = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v >= 0):
        raise ConfigError(f"{label} must be a finite number >= 0 ({unit}), got {value!r}")
    return v
def _fast_step(extend: Callable[[Any], None], _t: Callable[[], float] = time.time) -> Callable[..., None]:
    """``session.step`` as a closure over the marks' ``extend``: one C-level list operation per call."""

    def step(samples: Any = None, tokens: Any = None) -> None:
        """Mark the end of a training step (about 0.2 µs); see :meth:`Session.step`."""
        extend((_t(), samples, tokens))

    return step


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v is not None and v.isdigit() else None


def session(name: str = "run", **kwargs: Any) -> Session:
    """A new :class:`Session`; ``with greentrack.session("llama-ft", region="FR") as s:``."""
    return Session(name, **kwargs)


def track(name: str | Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """Decorator measuring each call of a function as a run: ``@greentrack.track("train")``.

    The session is passed to the function as ``greentrack_session`` when it accepts it. After
    each call, ``fn.last_result`` holds that call's :class:`RunResult` (None before the first
    call), also when the call raised (the run is then ``failed`` or ``interrupted``). Keyword
    arguments are those of :class:`Session`; bad budgets are reported when decorating.
    """
    if callable(name):
        return track(None)(name)
    _budget("budget_kwh", kwargs.get("budget_kwh"), "kWh")
    _budget("budget_co2e_kg", kwargs.get("budget_co2e_kg"), "kg CO2e")

    def deco(fn: F) -> F:
        run_name = name or fn.__name__
        import inspect

        wants = "greentrack_session" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            s = Session(run_name, **kwargs)
            try:
                with s:
                    if wants:
                        kw["greentrack_session"] = s
                    return fn(*a, **kw)
            finally:
                if s.result is not None:
                    wrapper.last_result = s.result  # type: ignore[attr-defined]

        wrapper.last_result = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco
