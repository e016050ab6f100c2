"""``MlflowEnergy``: live figures as MLflow metrics; at the end, totals, tags and the HTML report."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from greentrack.measure.loggers import LiveLogger


class MlflowEnergy(LiveLogger):
    """Log a session's live figures on an MLflow run.

    Args:
        session: the :class:`greentrack.Session` to follow.
        run_id: the MLflow run (default: the active run, ``mlflow.active_run()``, when this is made).
        report: attach the run's HTML report as the artifact ``greentrack/report-<id>.html`` at the end.
        per_rank, counts_are_global: see :class:`greentrack.measure.loggers.LiveLogger`.

    :meth:`log` writes ``greentrack/energy_j``, ``power_w``, ``energy_kwh``, ``co2e_g``,
    ``j_per_step``/``sample``/``token`` with ``step=``, in one ``log_batch`` call. :meth:`finish`
    stops the session and writes the last interval and the reconciled totals
    (``greentrack/total_energy_kwh``, ``total_co2e_kg``...) as metrics, and the run tags
    ``greentrack.run_id``, ``greentrack.energy_kwh``, ``greentrack.co2e_kg``,
    ``greentrack.intensity`` (the grid intensity and its source) and ``greentrack.phase.<name>_j``.
    The tag ``greentrack.run_id`` is set as soon as the run is known, so a crashed run can be found.
    """

    integration = "mlflow"

    def __init__(self, session: Any, run_id: str | None = None, *, report: bool = True, per_rank: bool = False,
                 counts_are_global: bool = False, client: MlflowClient | None = None) -> None:
        super().__init__(session, per_rank=per_rank, counts_are_global=counts_are_global)
        self.report = report
        self.client = client or MlflowClient()
        self.run_id = run_id
        if self.run_id is None:
            active = mlflow.active_run()
            self.run_id = active.info.run_id if active is not None else None
        self._step = 0
        if self.run_id is None:
            self.fail("init", RuntimeError("no active MLflow run and no run_id given"))
            return
        try:
            self.client.set_tag(self.run_id, "greentrack.run_id", session.id)
        except Exception as exc:
            self.fail("init", exc)

    def write(self, metrics: dict[str, float], step: int | None) -> None:
        if step is None:
            step = self._step
        self._step = step + 1
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def write_final(self, reading: Any, result: Any, step: int | None) -> None:
        if step is None:
            step = max(0, self._step - 1)
        super().write_final(reading, result, step)
        if result is None:
            return
        tags = {"greentrack.run_id": result.run_id, "greentrack.status": result.status}
        if result.energy_kwh is not None:
            tags["greentrack.energy_kwh"] = f"{result.energy_kwh:.6g}"
        if result.co2e_kg is not None:
            tags["greentrack.co2e_kg"] = f"{result.co2e_kg:.6g}"
        if result.intensity_g_per_kwh is not None:
            tags["greentrack.intensity"] = f"{result.intensity_g_per_kwh:g} gCO2e/kWh ({result.intensity_source})"
        for name, j in self.phases(result).items():
            tags[f"greentrack.phase.{name}_j"] = f"{j:.6g}"
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v[:5000])
        if self.report:
            self._attach_report(result.run_id)

    def _attach_report(self, run_id: str) -> None:
        store = getattr(self.session, "store", None)
        if store is None:  # measured but not stored: there is no report to render
            return
        from greentrack.api import run_html_report

        html = run_html_report(run_id, db=store.location)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"report-{run_id}.html"
            path.write_text(html, encoding="utf-8")
            self.client.log_artifact(self.run_id, str(path), artifact_path="greentrack")
