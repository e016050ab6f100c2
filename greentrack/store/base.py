"""The store interface: what every backend (SQLite, PostgreSQL) implements.

The rest of greentrack talks to a :class:`RunStore` and never to a database module: the
session through :class:`greentrack.store.writer.RunWriter`, import and export through
:mod:`.transfer`, the API and the CLI through the reading methods. A backend raises
:class:`StoreError` subclasses (one line each) and never a driver's own exception.

Write methods take ``timeout_s``: the longest they may wait for another writer's lock
before raising :class:`StoreBusy`; a session passes a short one and spools what could not
be written (see :mod:`.spool`). Writes are idempotent where the spool needs it
(:meth:`RunStore.deliver` merges a run that may be partly there).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import GreentrackError, SchemaError
from .records import DeviceRow, PhaseRow, RunEnd, RunRow, SeriesChunk, StoredRun


class StoreError(GreentrackError):
    """The store could not do what was asked; ``str()`` is one line naming the database.

    ``transient``: worth trying again later (locked, disk full, file gone), so a session's
    run goes to the spool rather than being dropped.
    """

    transient = False


class StoreBusy(StoreError):
    """Another process held the database's write lock for longer than the write could wait."""

    transient = True


class StoreFull(StoreError):
    """The disk (or quota) holding the database is full."""

    transient = True


class StoreUnwritable(StoreError):
    """The database or its folder cannot be written (read-only file or mount, permissions)."""

    transient = True


class StoreGone(StoreError):
    """The database file was deleted or replaced while open."""

    transient = True


class StoreUnavailable(StoreError):
    """The database server cannot be reached (down, restarting, network): the run is kept and delivered later."""

    transient = True


class StoreCorrupt(SchemaError, StoreError):
    """The file is damaged ("database disk image is malformed") or is not a database at all."""

    transient = True  # a repaired or moved-aside database can receive the spooled run later


@runtime_checkable
class RunStore(Protocol):
    """A greentrack database: runs, their tags, devices, phases and power series."""

    #: Where the runs are (a file path, or a URL without its password), for messages.
    location: str
    #: Opened for reading only (``report``, ``show``, ``export`` on a read-only file or mount).
    read_only: bool

    # writing: a session's run ----------------------------------------------------------------
    def begin_run(self, run: RunRow, devices: Sequence[DeviceRow], *, timeout_s: float | None = None) -> None:
        """Insert a run (status ``running``), its tags and devices."""

    def progress(self, run_id: str, energy_j: float | None, devices: Sequence[DeviceRow],
                 chunks: Sequence[SeriesChunk], *, timeout_s: float | None = None) -> None:
        """One flush: new series chunks, the devices' energy so far and the run's."""

    def finish_run(self, run_id: str, end: RunEnd, devices: Sequence[DeviceRow], phases: Sequence[PhaseRow],
                   chunks: Sequence[SeriesChunk] = (), *, timeout_s: float | None = None) -> None:
        """Complete a run in one transaction: the last chunks, totals, status, final devices and phases."""

    def update_run(self, run_id: str, fields: Mapping[str, Any], *, timeout_s: float | None = None) -> None:
        """Set some run columns afterwards (e.g. the pytest plugin's budget outcome)."""

    # writing: whole runs -----------------------------------------------------------------------
    def import_runs(self, runs: Sequence[StoredRun], *, timeout_s: float | None = None) -> tuple[int, int]:
        """Insert whole runs in one transaction (all or nothing); runs already there are skipped.
        Returns ``(imported, skipped)``."""

    def deliver(self, run: StoredRun, *, timeout_s: float | None = None) -> None:
        """Merge a spooled run: insert or update its row, devices, phases and chunks (idempotent)."""

    def snapshot(self, run_id: str) -> StoredRun | None:
        """Everything stored of one run, as it is now (None if absent): salvage and export."""

    # reading -------------------------------------------------------------------------------------
    def list_runs(self, last: int | None = 10, name: str | None = None, since: float | None = None,
                  until: float | None = None, tags: dict[str, str] | None = None, status: str | None = None,
                  job_id: str | None = None) -> list[dict[str, Any]]:
        """Runs newest first, each a dict of its columns plus ``devices`` (a summary) and ``energy_kwh``."""

    def resolve_id(self, ref: str) -> str:
        """A full run id from an id, a unique prefix, a name (its newest run), ``last``, ``-2``..."""

    def get_run(self, ref: str) -> dict[str, Any]:
        """One run with ``devices`` and ``phases`` (lists of dicts)."""

    def read_series(self, run_id: str, arrays: bool = False) -> dict[str, tuple[Any, Any]]:
        """``{device_key: (times, powers)}``: lists, or numpy arrays with *arrays*."""

    def run_ids(self) -> Iterable[str]:
        """Every run id (export of everything)."""

    def updated(self, run_ids: Iterable[str]) -> dict[str, float | None]:
        """``{run_id: updated_at}`` of those of *run_ids* stored here (``push`` skips runs already current)."""

    # the database itself -----------------------------------------------------------------------
    def health(self, write: bool = False) -> dict[str, Any]:
        """What ``greentrack doctor`` says of the database (integrity, schema, access, size)."""

    def reopen(self) -> None:
        """Reconnect: after the file was deleted or replaced (SQLite), or the server restarted."""

    def close(self) -> None:
        """Release connections."""
