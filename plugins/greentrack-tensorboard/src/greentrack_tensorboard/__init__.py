"""greentrack-tensorboard: a session's live figures as TensorBoard scalars.

    from torch.utils.tensorboard import SummaryWriter
    from greentrack_tensorboard import TensorBoardEnergy

    with greentrack.session("train", region="FR") as s, SummaryWriter("runs/x") as writer:
        energy = TensorBoardEnergy(writer, s)
        for step, batch in enumerate(loader):
            train_step(batch)
            s.step(samples=len(batch))
            if step % 50 == 0:
                energy.log(step)
        energy.finish(step)      # stops the session: the last interval, the totals, the phases

Lightning's TensorBoardLogger and the Hugging Face Trainer's ``report_to="tensorboard"`` get the
same figures through greentrack-lightning and greentrack-hf; this package is for plain loops.
"""

from __future__ import annotations

from .writer import TensorBoardEnergy

__all__ = ["TensorBoardEnergy"]
__version__ = "0.1.0"
