"""A session's link to the store: writes its run, never blocks training for long, never loses it.

:class:`RunWriter` holds the truth of one run (its row, devices, the series chunks not yet
written) and writes it through any :class:`~greentrack.store.base.RunStore`:

- a flush waits at most :data:`FLUSH_WAIT_S` for a locked database (the sampler thread must
  keep sampling); what it could not write stays in memory and goes with the next flush;
- the end of the run waits at most ``GREENTRACK_LOCK_TIMEOUT`` seconds (default 3) in all,
  so ``stop()`` returns within about that plus one flush wait, however long another process
  holds the lock; what still could not be written goes to the spool (:mod:`.spool`) with one
  line saying where, and the next session on that database (or ``greentrack doctor --deliver``)
  delivers it;
- a database deleted or replaced mid-run is noticed at the next write: what was already
  written is read back through the still-open old file and the run continues in the file
  now at the path (created if need be), with one line saying so;
- disk full, a read-only or damaged file: one line, the run kept in memory and retried at
  each flush, then spooled at the end.

Every failure is reported once (``greentrack: ...`` on stderr) and the training goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import GreentrackError
from ..notify import say_once
from ..settings import spool_dir
from .base import RunStore, StoreBusy, StoreError, StoreGone, StoreUnavailable
from .records import DeviceRow, PhaseRow, RunEnd, RunRow, SeriesChunk, StoredRun

FLUSH_WAIT_S = 0.5  # the longest a flush waits for a locked database
BUSY_FLUSH_WAIT_S = 0.05  # ... once the lock has already made a flush wait in vain
LOCK_TIMEOUT_S = 3.0  # default of GREENTRACK_LOCK_TIMEOUT: the end of a run waits at most this long
REOPEN_EVERY_S = 5.0  # how often a store that failed to open is tried again during a run
KEEP_EVERY_S = 1.0  # while its database cannot be written, a run's copy in the spool is renewed this often
DELIVER_BUDGET_S = 2.0  # a session delivers spooled runs for at most this long at its start (the rest: later)


def lock_timeout_s() -> float:
    """``GREENTRACK_LOCK_TIMEOUT`` (seconds >= 0), else :data:`LOCK_TIMEOUT_S`."""
    from ..settings import env

    raw = env("GREENTRACK_LOCK_TIMEOUT")
    if raw is None:
        return LOCK_TIMEOUT_S
    try:
        val = float(raw)
    except ValueError:
        say_once(f"GREENTRACK_LOCK_TIMEOUT={raw!r} is not a number (using {LOCK_TIMEOUT_S:g} s)")
        return LOCK_TIMEOUT_S
    return max(0.0, min(val, 600.0))


def open_store(location: str | os.PathLike[str], verify: bool = False) -> RunStore:
    """The backend for *location* (SQLite for a file path, PostgreSQL for a URL), opened for writing."""
    from .location import open_location

    return open_location(location, write=True, verify=verify, timeout_s=lock_timeout_s())


class RunWriter:
    """Writes one run; see the module docstring. Methods never raise (except :meth:`open` when strict)."""

    def __init__(self, path: str | os.PathLike[str] | Path, *, strict: bool = False,
                 opener: Callable[..., RunStore] = open_store, timeout_s: float | None = None) -> None:
        from ..settings import db_location
        from .location import describe

        self.path: Path | str = path if isinstance(path, Path) else db_location(os.fspath(path))
        self.location = describe(self.path)
        self.strict = strict
        self.timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
        self._opener = opener
        self.store: RunStore | None = None
        self.open_error: StoreError | GreentrackError | None = None
        self._last_open_try = 0.0
        self.run: RunRow | None = None
        self.devices: list[DeviceRow] = []
        self.phases: list[PhaseRow] = []
        self.pending: dict[tuple[str, int], SeriesChunk] = {}
        self.begun = False  # the run row is in the current database
        self.needs_merge = False  # written parts must be merged (salvaged from a replaced file)
        self.busy = False
        self.spooled: Path | None = None
        self.delivered: list[str] = []
        self._kept_at = 0.0  # when the run was last kept in the spool while its database could not be written
        self._kept: Path | None = None

    # opening ---------------------------------------------------------------------------------------
    def open(self) -> RunStore | None:
        """Open the database (on the calling thread, at start). Strict: a bad database raises here."""
        self._last_open_try = time.monotonic()
        try:
            self.store = self._opener(self.path, verify=self.strict)
        except GreentrackError as exc:
            if self.strict and not isinstance(exc, (StoreBusy, StoreUnavailable)):  # a server down: keep measuring
                raise
            self.open_error = exc
            if not isinstance(exc, StoreUnavailable):  # a server that is down: the spool's line says it
                say_once(f"{exc}; the run is measured and kept until it can be written")
            self.store = None
        return self.store

    def _ensure_store(self, force: bool = False) -> RunStore | None:
        if self.store is not None:
            return self.store
        if not force and time.monotonic() - self._last_open_try < REOPEN_EVERY_S:
            return None
        self._last_open_try = time.monotonic()
        try:
            self.store = self._opener(self.path)
            self.open_error = None
        except GreentrackError as exc:
            self.open_error = exc
        return self.store

    # the run ---------------------------------------------------------------------------------------
    def begin(self, run: RunRow, devices: Sequence[DeviceRow]) -> None:
        """The run starts: write its row (status ``running``), then deliver this database's spool."""
        from ..settings import host_name

        self.run = run.replaced(host=run.host or host_name(), pid=run.pid if run.pid is not None else os.getpid())
        self.devices = list(devices)
        self._write(final=False, timeout_s=FLUSH_WAIT_S)
        if self.begun:
            self._deliver_spool()

    def progress(self, energy_j: float | None, devices: Sequence[DeviceRow], chunks: Sequence[SeriesChunk]) -> None:
        """One flush: new chunks (kept until written) and the energy so far."""
        if self.run is None:
            return
        now = time.time()
        self.run.energy_j = energy_j
        self.run.duration_s = now - self.run.started_at
        self.devices = list(devices)
        for c in chunks:
            self.pending[(c.device_key, c.seq)] = c
        self._write(final=False, timeout_s=BUSY_FLUSH_WAIT_S if self.busy else FLUSH_WAIT_S)
        err = self.open_error if self.store is None else self._last_error
        if not self._done and isinstance(err, StoreUnavailable):  # a server that is down: keep the run on disk
            self._keep()

    def finish(self, end: RunEnd, devices: Sequence[DeviceRow], phases: Sequence[PhaseRow]) -> None:
        """The run ends: write everything within the lock timeout, else spool it."""
        if self.run is None:
            return
        for k, v in end.__dict__.items():
            setattr(self.run, k, v)
        self.devices = list(devices)
        self.phases = list(phases)
        deadline = time.monotonic() + self.timeout_s
        self._ensure_store(force=True)
        while True:
            self._write(final=True, timeout_s=max(0.0, deadline - time.monotonic()), end=end)
            if self._done:  # written: the phases (one per test of a pytest session) are no longer needed here
                self.phases = []
                return
            left = deadline - time.monotonic()
            if self.store is None or not self._retryable or left <= 0:
                break
            time.sleep(min(0.05, left))
        self._spool()

    # writing ---------------------------------------------------------------------------------------
    _done = False
    _retryable = False

    def _write(self, final: bool, timeout_s: float, end: RunEnd | None = None) -> None:
        self._done = False
        self._retryable = False
        run = self.run
        store = self._ensure_store()
        if run is None or store is None:
            self._retryable = store is None and final
            return
        chunks = list(self.pending.values())
        try:
            if self.begun and not self.needs_merge:
                if final and end is not None:
                    store.finish_run(run.id, end, self.devices, self.phases, chunks, timeout_s=timeout_s)
                else:
                    store.progress(run.id, run.energy_j, self.devices, chunks, timeout_s=timeout_s)
            elif final:
                store.deliver(self._whole(chunks), timeout_s=timeout_s)
            elif chunks or self.needs_merge:
                store.deliver(StoredRun(run=run, devices=self.devices, chunks=chunks), timeout_s=timeout_s)
            else:
                store.begin_run(run, self.devices, timeout_s=timeout_s)
            self.begun, self.needs_merge = True, False
        except StoreGone as exc:
            self._salvage(store, exc)
            self._retryable = True
            return
        except StoreError as exc:
            self.busy = isinstance(exc, StoreBusy)
            self._retryable = exc.transient
            if not isinstance(exc, (StoreBusy, StoreUnavailable)):  # unavailable: the spool's line says it
                say_once(f"cannot write run {run.id} ({run.name}): {exc}; the run is kept until it can be written",
                         key=f"write:{run.id}:{type(exc).__name__}")
            self._last_error = exc
            return
        except Exception as exc:  # a bug must not stop training: say it, keep the data
            self._last_error = exc
            say_once(f"cannot write run {run.id} ({run.name}) to {self.location}: {type(exc).__name__}: {exc}")
            return
        self.busy = False
        for c in chunks:
            self.pending.pop((c.device_key, c.seq), None)
        self._done = True
        if self._kept is not None:
            self._unkeep()

    def _whole(self, chunks: list[SeriesChunk]) -> StoredRun:
        assert self.run is not None
        return StoredRun(run=self.run, devices=self.devices, phases=self.phases, chunks=chunks)

    def _salvage(self, store: RunStore, exc: StoreError) -> None:
        """The file was deleted or replaced: read our run back from the old one, continue in the new one."""
        assert self.run is not None
        try:
            old = store.snapshot(self.run.id) if self.begun else None
        except Exception:
            old = None
        if old is not None:
            for c in old.chunks:
                self.pending.setdefault((c.device_key, c.seq), c)
        self.begun = False
        self.needs_merge = True
        try:
            store.reopen()
            where = f"the run continues in the file now at {self.location}"
        except Exception as err:
            self.store = None
            where = f"the run is kept until it can be written ({err})"
        say_once(f"{exc} during run {self.run.id} ({self.run.name}); {where}")

    _last_error: BaseException | None = None

    def _spool(self) -> None:
        from . import spool

        assert self.run is not None
        err = self._last_error or self.open_error
        reason = str(err) if err is not None else "the database could not be written"
        sr = self._whole(list(self.pending.values()))
        try:
            self.spooled = spool.write(sr, self.location, reason)
        except Exception as exc:
            say_once(f"run {self.run.id} ({self.run.name}) could not be stored ({reason}) nor spooled "
                     f"({type(exc).__name__}: {exc}); its result is only in this process")
            return
        say_once(f"{reason}; run {self.run.id} ({self.run.name}) kept in the spool ({self.spooled}): the next "
                 "session on this database or 'greentrack doctor --deliver' delivers it")

    def _keep(self) -> None:
        """The database cannot be written now (server down, disk full...): keep the run so far in the
        spool, so that even a crash before the database is back loses nothing already measured.
        Rewritten at most every :data:`KEEP_EVERY_S`; removed once the run is written."""
        from . import spool

        if self.run is None or time.monotonic() - self._kept_at < KEEP_EVERY_S:
            return
        self._kept_at = time.monotonic()
        err = self._last_error or self.open_error
        try:
            self._kept = spool.write(self._whole(list(self.pending.values())), self.location,
                                     str(err) if err else "the database could not be written")
        except Exception as exc:
            say_once(f"run {self.run.id} ({self.run.name}) cannot be kept in the spool ({type(exc).__name__}: {exc});"
                     " it is kept in memory until its database can be written")
            return
        say_once(f"{err or 'the database could not be written'}; run {self.run.id} ({self.run.name}) is measured "
                 f"and kept in the spool ({self._kept}) until {self.location} can be written",
                 key=f"keep:{self.run.id}")

    def _unkeep(self) -> None:
        """The run reached its database: drop the copy kept in the spool (one line says so)."""
        from . import spool

        assert self.run is not None
        if self._kept is not None and spool.discard(self._kept):
            say_once(f"{self.location} can be written again: run {self.run.id} ({self.run.name}) delivered, "
                     "nothing lost")
        self._kept = None
        self._kept_at = 0.0

    def _deliver_spool(self) -> None:
        """Deliver spooled runs meant for this database (at a session's start, on the sampler thread)."""
        store = self.store
        if store is None:
            return
        try:
            folder = spool_dir()
            if not folder.is_dir():  # nothing has ever been spooled here: the spool module is not even imported
                return
            from . import spool

            waiting = spool.entries(folder)
        except Exception:
            return
        until = time.monotonic() + DELIVER_BUDGET_S
        for entry in waiting:
            if time.monotonic() > until:
                break
            if entry.run_id == (self.run.id if self.run else None):
                continue
            loc, err = spool.deliver(entry, lambda _loc: store, timeout_s=FLUSH_WAIT_S, only=store.location)
            if err is None:
                self.delivered.append(entry.run_id)
        if self.delivered:
            say_once(f"delivered {len(self.delivered)} spooled run(s) to {store.location}: {', '.join(self.delivered)}")

    @property
    def state(self) -> dict[str, Any]:
        """What became of the run (for tests and messages)."""
        return {"begun": self.begun, "pending_chunks": len(self.pending), "spooled": self.spooled,
                "delivered": list(self.delivered), "error": str(self._last_error) if self._last_error else None}
