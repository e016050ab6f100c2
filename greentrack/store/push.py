"""Copy runs from one store to another (``greentrack push --to URL``), idempotently. No SQL here.

Each run goes whole (row, tags, devices, phases, series chunks) through the target's
:meth:`~greentrack.store.base.RunStore.deliver`, which merges: a run already there is completed or
updated, never doubled. A run whose copy in the target is as recent as the source's (same or later
``updated_at``) is skipped, so pushing again costs one query. A run that reads as ``lost`` here
(its process gone on this host) is pushed as ``lost``: other hosts could not tell. Runs waiting in
the spool for the target are delivered first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .base import RunStore


@dataclass
class PushResult:
    """What :func:`push` did: run ids copied, skipped (already current there) and delivered from the spool."""

    copied: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    spooled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def push(src: RunStore, dst: RunStore, run_ids: Iterable[str], *, spool_too: bool = True) -> PushResult:
    """Copy *run_ids* of *src* into *dst* (see the module docstring)."""
    from . import spool

    out = PushResult()
    if spool_too:
        for entry in spool.entries():
            loc, err = spool.deliver(entry, lambda _loc: dst, only=dst.location)
            if err is None:
                out.spooled.append(entry.run_id)
    ids = list(dict.fromkeys(run_ids))
    there = dst.updated(ids)
    here = src.updated(ids)
    for rid in ids:
        theirs, ours = there.get(rid, -1.0), here.get(rid)
        if rid in there and theirs is not None and ours is not None and theirs >= ours:
            out.current.append(rid)
            continue
        sr = src.snapshot(rid)
        if sr is None:
            out.failed.append((rid, "it cannot be read here"))
            continue
        if sr.run.status == "running" and src.get_run(rid)["status"] == "lost":
            sr.run.status = "lost"
        dst.deliver(sr)
        out.copied.append(rid)
    return out
