"""greentrack-wandb: a session's live figures in a Weights & Biases run.

    run = wandb.init(project="llm", mode="offline")       # any mode
    with greentrack.session("train", region="FR") as s:
        energy = WandbEnergy(s, run)
        for step, batch in enumerate(loader):
            train_step(batch)
            s.step(samples=len(batch))
            if step % 50 == 0:
                energy.log(step)                           # into the run's history
        energy.finish(step)                                # stops the session: summary, report artifact
    run.finish()
"""

from __future__ import annotations

try:
    import wandb  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"greentrack-wandb needs the 'wandb' package, which cannot be imported ({exc}); "
        "install it with: pip install wandb"
    ) from exc

from .logger import WandbEnergy

__all__ = ["WandbEnergy"]
__version__ = "0.1.0"
