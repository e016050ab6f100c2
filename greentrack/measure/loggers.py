"""The shared part of the logger integrations (greentrack-mlflow, greentrack-wandb, greentrack-tensorboard).

A :class:`LiveLogger` reads a session's live figures at the user's logging steps (through a
:class:`~greentrack.measure.jobs.JobMeter`, so a torchrun job's figures are summed over its
ranks and logged once, by rank 0) and hands them to :meth:`LiveLogger.write`, which each
integration implements for its tracking tool. :meth:`LiveLogger.finish` closes the series when
the run ends: the last interval, the reconciled totals and the energy of each phase.

A failure of the tracking tool is reported once on stderr and that integration stops writing;
it keeps reading at each logging step, so a torchrun job's collective reads stay matched.
"""

from __future__ import annotations

import sys
from typing import Any

from .jobs import JobMeter, JobReading
from .live import phase_energy_j, result_metrics


class LiveLogger:
    """Base of the logger integrations: ``log(step)`` at each logging step, ``finish()`` at the end.

    Args:
        session: the :class:`greentrack.Session` to follow (started, or started before the first ``log``).
        per_rank: under torchrun, rank 0 also logs each rank's own ``greentrack/rank<N>/...`` figures.
        counts_are_global: the session's ``step(samples=...)`` counts the whole job's batch on every rank.
    """

    integration = "logger"  # the name in messages: "greentrack: <integration>: ..."

    def __init__(self, session: Any, *, per_rank: bool = False, counts_are_global: bool = False) -> None:
        self.session = session
        self.per_rank = per_rank
        self.job = JobMeter(session.meter(), counts_are_global=counts_are_global)
        self.errors: list[str] = []
        self.broken = False
        self.finished = False
        self.last: dict[str, float] = {}

    # what an integration implements ----------------------------------------------------------------
    def write(self, metrics: dict[str, float], step: int | None) -> None:
        """Write *metrics* (at *step*, or the tool's own next step when None). Rank 0 only under torchrun."""
        raise NotImplementedError

    def write_final(self, reading: JobReading, result: Any, step: int | None) -> None:
        """At the end (rank 0): by default, the last interval and the totals as metrics."""
        metrics = self.final_metrics(reading, result)
        if metrics:
            self.write(metrics, step)

    # the flow -------------------------------------------------------------------------------------------
    def fail(self, where: str, exc: BaseException) -> None:
        """Report a failure once on stderr and stop writing (the training goes on)."""
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = f"{where}: {type(exc).__name__}: {text}".rstrip(": ")
        self.errors.append(msg)
        if not self.broken:
            print(f"greentrack: {self.integration}: {msg} (logging stopped; training goes on)", file=sys.stderr)
        self.broken = True

    def log(self, step: int | None = None) -> dict[str, float]:
        """Read the live figures (every rank, at the same steps) and write them (rank 0). Returns what was written."""
        if self.finished:
            return {}
        reading = self.job.read()
        if self.broken or not reading.logs_job:
            return {}
        metrics = reading.metrics(per_rank=self.per_rank)
        if not metrics:
            return {}
        try:
            self.write(metrics, step)
        except Exception as exc:
            self.fail("log", exc)
            return {}
        self.last = metrics
        return metrics

    def finish(self, step: int | None = None, status: str | None = None, error: str | None = None) -> dict[str, float]:
        """Stop the session if it still runs (with *status*, *error*), then write the last interval,
        the totals and the phases.

        Call it on every rank. Returns the metrics written (``{}`` on other ranks).
        """
        if self.finished:
            return {}
        self.finished = True
        result = None
        try:
            result = self.session.stop(status, error) if self.session.result is None else self.session.result
        except Exception as exc:
            self.fail("finish", exc)
        reading = self.job.read()  # the closing read
        if self.broken or not reading.logs_job:
            return {}
        try:
            self.write_final(reading, result, step)
        except Exception as exc:
            self.fail("finish", exc)
            return {}
        self.last = self.final_metrics(reading, result)
        return self.last

    def final_metrics(self, reading: JobReading, result: Any) -> dict[str, float]:
        """The closing interval and the reconciled totals (of the job under torchrun); phases of this process."""
        metrics = reading.metrics(per_rank=self.per_rank)
        if not reading.distributed and result is not None:
            metrics.update(result_metrics(result))
        return metrics

    @staticmethod
    def phases(result: Any) -> dict[str, float]:
        """Energy per phase name of *result* (joules, reconciled)."""
        return phase_energy_j(result) if result is not None else {}

    def __enter__(self) -> "LiveLogger":
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.finish()
        else:  # the run ends with the error, as the session's own ``with`` would record it
            status = "interrupted" if issubclass(et, KeyboardInterrupt) else "failed"
            first = str(ev).splitlines()[0] if str(ev) else ""
            self.finish(status=status, error=f"{et.__name__}: {first}".rstrip(": "))
