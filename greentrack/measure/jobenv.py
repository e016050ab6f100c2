"""The id the runs of one job share, read from the environment (no import beyond ``os``: every session reads it)."""

from __future__ import annotations

from typing import Any


def job_id_from_env(environ: Any = None) -> str | None:
    """The job id the runs of one job share, on every node, from the environment.

    ``GREENTRACK_JOB_ID`` (set by ``greentrack run`` for its child, or by you); else torchrun's
    rendezvous id ``TORCHELASTIC_RUN_ID`` (the ``--rdzv-id`` every node of a multi-node job is
    given; torchrun's placeholder ``none`` is ignored); else Slurm's ``SLURM_JOB_ID``, with
    ``.SLURM_STEP_ID`` inside a job step (``123.0``, as ``sacct`` writes it; ``report --job 123``
    finds the runs of all its steps).
    """
    import os

    env = os.environ if environ is None else environ
    given = env.get("GREENTRACK_JOB_ID")
    if given:
        return str(given)
    rdzv = env.get("TORCHELASTIC_RUN_ID")
    if rdzv and rdzv.strip().lower() != "none":
        return str(rdzv)
    slurm = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if slurm:
        step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
        return f"{slurm}.{step}" if step not in (None, "") else str(slurm)
    return None
