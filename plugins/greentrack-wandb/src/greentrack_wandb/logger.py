"""``WandbEnergy``: live figures in a W&B run's history; totals in its summary; the report as an artifact."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import wandb

from greentrack.measure.loggers import LiveLogger


class WandbEnergy(LiveLogger):
    """Log a session's live figures to a Weights & Biases run.

    Args:
        session: the :class:`greentrack.Session` to follow.
        run: the W&B run (default: ``wandb.run``, the run of ``wandb.init``, when this is made).
        report: log the run's HTML report as an artifact of type ``greentrack-report`` at the end.
        per_rank, counts_are_global: see :class:`greentrack.measure.loggers.LiveLogger`.

    :meth:`log` calls ``run.log(figures, step=step)`` (``step=None``: W&B's own next step), so the
    figures join the history row of that step. :meth:`finish` stops the session, logs the last
    interval (at the step after the last one logged when *step* was logged already), and puts the
    reconciled totals, the energy of each phase and ``greentrack/run_id``
    into ``run.summary``. Works in every W&B mode, ``offline`` included.
    """

    integration = "wandb"

    def __init__(self, session: Any, run: Any = None, *, report: bool = True, per_rank: bool = False,
                 counts_are_global: bool = False) -> None:
        super().__init__(session, per_rank=per_rank, counts_are_global=counts_are_global)
        self.report = report
        self.run = run if run is not None else wandb.run
        self._last_step: int | None = None
        if self.run is None:
            self.fail("init", RuntimeError("no W&B run: call wandb.init() first or pass run="))

    def write(self, metrics: dict[str, float], step: int | None) -> None:
        if step is None:
            self.run.log(metrics)
        else:
            self.run.log(metrics, step=step)
            self._last_step = step

    def write_final(self, reading: Any, result: Any, step: int | None) -> None:
        final = self.final_metrics(reading, result)
        live = {k: v for k, v in final.items() if not k.startswith(("greentrack/total_", "greentrack/phase/"))
                and k not in ("greentrack/duration_s", "greentrack/avg_power_w")}
        if live:
            # the last interval, in the history like the others; W&B merges two logs of one step into one
            # row (the later values win), so it goes one step after the last one logged
            if step is not None and self._last_step is not None and step <= self._last_step:
                step = self._last_step + 1
            self.write(live, step)
        summary: dict[str, Any] = {k: v for k, v in final.items() if k not in live}
        if result is not None:
            summary["greentrack/run_id"] = result.run_id
            summary["greentrack/status"] = result.status
            if result.intensity_g_per_kwh is not None:
                summary["greentrack/intensity_g_per_kwh"] = result.intensity_g_per_kwh
                summary["greentrack/intensity_source"] = result.intensity_source
        self.run.summary.update(summary)
        if self.report and result is not None:
            self._attach_report(result.run_id)

    def _attach_report(self, run_id: str) -> None:
        store = getattr(self.session, "store", None)
        if store is None:  # measured but not stored: there is no report to render
            return
        from greentrack.api import run_html_report

        html = run_html_report(run_id, db=store.location)
        tmp = Path(tempfile.mkdtemp(prefix="greentrack-wandb-"))  # W&B copies it when the run syncs or ends
        path = tmp / f"report-{run_id}.html"
        path.write_text(html, encoding="utf-8")
        art = wandb.Artifact(f"greentrack-report-{run_id}", type="greentrack-report",
                             metadata={"greentrack_run_id": run_id})
        art.add_file(str(path), name=path.name)
        self.run.log_artifact(art)
