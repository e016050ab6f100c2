"""greentrack-lightning: measure a PyTorch Lightning ``Trainer`` with greentrack, live.

    from greentrack_lightning import GreentrackCallback

    trainer = lightning.Trainer(callbacks=[GreentrackCallback(region="FR")], logger=CSVLogger("logs"))
    trainer.fit(model, datamodule=dm)

At each of the Trainer's logging steps the callback logs energy since the previous one, power,
cumulative kWh and CO2e and J per step/sample/token through ``self.log`` (so whatever logger the
Trainer has receives them); validation and test loops are phases; each ``fit``/``validate``/
``test``/``predict`` call is one greentrack run, named after the logger's run and tagged with the
module's hyperparameters. Under torchrun/DDP the logged figures are the job's (summed over ranks).
"""

from __future__ import annotations

try:
    import lightning.pytorch  # noqa: F401  (the callback subclasses lightning.pytorch.Callback)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"greentrack-lightning needs the 'lightning' package, which cannot be imported ({exc}); "
        "install it with: pip install lightning"
    ) from exc

from .callback import GreentrackCallback, hparam_tags

__all__ = ["GreentrackCallback", "hparam_tags"]
__version__ = "0.1.0"
