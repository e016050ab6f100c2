"""greentrack-mlflow: a session's live figures on an MLflow run.

    with mlflow.start_run(), greentrack.session("train", region="FR") as s:
        energy = MlflowEnergy(s)                 # the active run (or run_id=...)
        for step, batch in enumerate(loader):
            train_step(batch)
            s.step(samples=len(batch))
            if step % 50 == 0:
                energy.log(step)                 # greentrack/energy_j, power_w, energy_kwh, co2e_g... with step=
        energy.finish(step)                      # stops the session: totals, phase tags, the HTML report
"""

from __future__ import annotations

try:
    import mlflow  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"greentrack-mlflow needs the 'mlflow' package, which cannot be imported ({exc}); "
        "install it with: pip install mlflow"
    ) from exc

from .logger import MlflowEnergy

__all__ = ["MlflowEnergy"]
__version__ = "0.1.0"
