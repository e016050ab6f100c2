"""greentrack-hf: measure a Hugging Face ``Trainer.train()`` run with greentrack.

    from greentrack_hf import GreentrackCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ev,
                      callbacks=[GreentrackCallback(region="FR")])
    trainer.train()

One greentrack run per ``train()`` call and per process: under torchrun each rank opens its own
session and measures its own GPU (``LOCAL_RANK``), the runs sharing the job id.
"""

from __future__ import annotations

try:
    import transformers  # noqa: F401  (the callback subclasses transformers.TrainerCallback)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"greentrack-hf needs the 'transformers' package, which cannot be imported ({exc}); "
        "install it with: pip install transformers"
    ) from exc

from .callback import GreentrackCallback, precision_of

__all__ = ["GreentrackCallback", "precision_of"]
__version__ = "0.1.0"
