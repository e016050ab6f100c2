"""Job figures: under ``torch.distributed``, the live figures of every rank added up.

    job = JobMeter(session.meter())       # on every rank, at the same logging steps
    reading = job.read()                  # one all-reduce on the existing process group
    if reading.logs_job:                  # rank 0, or a process without a process group
        logger.log(reading.metrics(), step=step)

Each rank measures its own GPU (its own session). At each read every rank writes its figures
into its own row of a small ``world_size x 8`` float64 tensor and one ``all_reduce(SUM)`` gives
every rank all the rows: the job's figures are their sum, and rank 0 can log each rank's own
figures too (``metrics(per_rank=True)``). That is one collective per logging interval, never per
step; reads must happen at the same points on all ranks (a Trainer's logging steps are).

torch is never imported here: without ``torch.distributed`` already imported and a process
group initialised, a :class:`JobMeter` reads only its own process, which then logs its own
figures. A rank whose greentrack failed still takes part in the collective (with an empty row),
so a failing tracker never leaves the other ranks waiting.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from ..notify import say_once
from ..units import J_PER_KWH
from .jobenv import job_id_from_env as job_id_from_env  # re-exported
from .live import PREFIX, LiveFigures, Meter

# the columns of one rank's row
_OK, _ENERGY, _TOTAL, _CO2E, _SAMPLES, _TOKENS, _RESULT_J, _RESULT_CO2E = range(8)
_NCOLS = 8


def process_group() -> Any | None:
    """``torch.distributed`` when this process has an initialised default process group, else None.

    Never imports torch: a process that has not imported ``torch.distributed`` has no group.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except Exception:
        return None
    return None


@dataclass(frozen=True)
class RankFigures:
    """One rank's own figures at a read (energies in joules; ``co2e_g`` cumulative, with PUE)."""

    rank: int
    energy_j: float
    total_j: float
    co2e_g: float
    result_j: float | None  # the reconciled total, in the closing read


@dataclass(frozen=True)
class JobReading:
    """One read of a :class:`JobMeter`.

    *local* is this process's :class:`LiveFigures` (None when its meter failed); *job* the sum over
    ranks (this process alone without a process group); *ranks* each rank's own figures (only
    under a process group); *result_j* / *result_co2e_kg* the reconciled totals added up over the
    ranks, set in the closing read (after the sessions stopped) when every rank has one.
    """

    local: LiveFigures | None
    job: LiveFigures | None
    rank: int
    world_size: int
    distributed: bool
    ranks: tuple[RankFigures, ...] = ()
    result_j: float | None = None
    result_co2e_kg: float | None = None

    @property
    def logs_job(self) -> bool:
        """Whether this process logs the job's figures: rank 0, or any process without a process group."""
        return not self.distributed or self.rank == 0

    def metrics(self, per_rank: bool = False, prefix: str = PREFIX) -> dict[str, float]:
        """What to log: the job's figures (see :meth:`LiveFigures.metrics`), ``{}`` on ranks other than 0.

        With *per_rank*, rank 0 adds each rank's own ``rank<N>/energy_j``, ``rank<N>/power_w``,
        ``rank<N>/energy_kwh`` and ``rank<N>/co2e_g``. The closing read adds the reconciled
        ``total_energy_kwh``, ``total_energy_j`` and ``total_co2e_kg``.
        """
        if not self.logs_job or self.job is None:
            return {}
        out = self.job.metrics(prefix)
        if per_rank and self.distributed:
            dt = self.job.interval_s
            for r in self.ranks:
                p = f"{prefix}rank{r.rank}/"
                out[p + "energy_j"] = r.energy_j
                if dt > 0:
                    out[p + "power_w"] = r.energy_j / dt
                out[p + "energy_kwh"] = r.total_j / J_PER_KWH
                out[p + "co2e_g"] = r.co2e_g
        if self.result_j is not None:
            out[prefix + "total_energy_j"] = self.result_j
            out[prefix + "total_energy_kwh"] = self.result_j / J_PER_KWH
            if self.result_co2e_kg is not None:
                out[prefix + "total_co2e_kg"] = self.result_co2e_kg
        return out


class JobMeter:
    """Live figures of this process and, under ``torch.distributed``, of the whole job.

    Args:
        meter: this process's :class:`~greentrack.measure.live.Meter`, or None when its session
            could not start (the process still takes part in the collective).
        counts_are_global: the samples and tokens given to ``session.step()`` already count the
            whole job's batch on every rank (the Hugging Face callback does so): the job's
            per-sample figures then use this rank's counts instead of the sum over ranks.
        group: the process group to reduce on (default: the default group).
    """

    def __init__(self, meter: Meter | None, *, counts_are_global: bool = False, group: Any = None) -> None:
        self.meter = meter
        self.counts_are_global = counts_are_global
        self.group = group
        self.collectives = 0  # all-reduces made (one per read under a process group)
        self._broken = False

    def _local(self) -> LiveFigures | None:
        if self.meter is None:
            return None
        try:
            return self.meter.read()
        except Exception as exc:
            say_once(f"live figures cannot be read ({type(exc).__name__}: {exc}); this rank logs none")
            self.meter = None
            return None

    def read(self) -> JobReading:
        """Read this process's meter and, under a process group, add up every rank's (one all-reduce)."""
        local = self._local()
        dist = None if self._broken else process_group()
        if dist is None:
            result_j, result_kg = _result(self.meter, local)
            return JobReading(local, local, 0, 1, False, result_j=result_j, result_co2e_kg=result_kg)
        try:
            rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
            rows = self._reduce(dist, rank, world, _row(self.meter, local))
        except Exception as exc:
            self._broken = True
            say_once(f"job figures cannot be added up over the ranks ({type(exc).__name__}: {exc}); "
                     "each process logs its own from now on")
            result_j, result_kg = _result(self.meter, local)
            return JobReading(local, local, 0, 1, False, result_j=result_j, result_co2e_kg=result_kg)
        return _job_reading(local, rows, rank, world, self.counts_are_global)

    def _reduce(self, dist: Any, rank: int, world: int, row: list[float]) -> list[list[float]]:
        import torch

        device = "cpu"
        if "nccl" in str(dist.get_backend(self.group)).lower():
            device = f"cuda:{torch.cuda.current_device()}"
        t = torch.zeros((world, _NCOLS), dtype=torch.float64, device=device)
        t[rank] = torch.tensor(row, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        self.collectives += 1
        return t.cpu().tolist()


def _result(meter: Meter | None, local: LiveFigures | None) -> tuple[float | None, float | None]:
    """The reconciled totals of this process's stopped session (closing read only)."""
    if meter is None or local is None or not local.final:
        return None, None
    r = meter.session.result
    if r is None or r.energy_j is None:
        return None, None
    return float(r.energy_j), (None if r.co2e_kg is None else float(r.co2e_kg))


def _row(meter: Meter | None, local: LiveFigures | None) -> list[float]:
    row = [0.0] * _NCOLS
    if local is None or local.total_j is None:
        return row
    row[_OK] = 1.0
    row[_ENERGY] = local.energy_j or 0.0
    row[_TOTAL] = local.total_j
    row[_CO2E] = local.co2e_g or 0.0
    row[_SAMPLES] = local.samples or 0.0
    row[_TOKENS] = local.tokens or 0.0
    result_j, result_kg = _result(meter, local)
    if result_j is not None:
        row[_RESULT_J] = result_j
        row[_RESULT_CO2E] = (result_kg or 0.0) * 1000.0  # grams, like the live column
    else:
        row[_RESULT_J] = float("nan")  # a rank without a total leaves the job's total unknown
    return row


def _job_reading(local: LiveFigures | None, rows: list[list[float]], rank: int, world: int,
                 counts_are_global: bool) -> JobReading:
    ok = [(r, row) for r, row in enumerate(rows) if row[_OK] > 0]
    ranks = tuple(RankFigures(r, row[_ENERGY], row[_TOTAL], row[_CO2E],
                              None if row[_RESULT_J] != row[_RESULT_J] else row[_RESULT_J]) for r, row in ok)
    if not ok or local is None:
        return JobReading(local, None, rank, world, True, ranks)
    energy = sum(row[_ENERGY] for _r, row in ok)
    if counts_are_global:
        samples, tokens = local.samples, local.tokens
    else:
        samples = sum(row[_SAMPLES] for _r, row in ok) or None
        tokens = sum(row[_TOKENS] for _r, row in ok) or None
    job = replace(local, energy_j=energy, total_j=sum(row[_TOTAL] for _r, row in ok),
                  co2e_g=sum(row[_CO2E] for _r, row in ok),
                  power_w=(energy / local.interval_s) if local.interval_s > 0 else None,
                  samples=samples, tokens=tokens)
    result_j = result_kg = None
    if len(ok) == world and all(r.result_j is not None for r in ranks):
        result_j = sum(r.result_j or 0.0 for r in ranks)
        result_kg = sum(row[_RESULT_CO2E] for _r, row in ok) / 1000.0
    return JobReading(local, job, rank, world, True, ranks, result_j, result_kg)
