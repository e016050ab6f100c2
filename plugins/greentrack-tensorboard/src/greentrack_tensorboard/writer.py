"""``TensorBoardEnergy``: live figures written with ``SummaryWriter.add_scalar``."""

from __future__ import annotations

from typing import Any

from greentrack.measure.loggers import LiveLogger


class TensorBoardEnergy(LiveLogger):
    """Write a session's live figures as TensorBoard scalars (``greentrack/energy_j``, ...).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``, or a log directory (a writer is then
            made on the rank that logs, and closed by :meth:`finish`).
        session: the :class:`greentrack.Session` to follow.
        per_rank, counts_are_global: see :class:`greentrack.measure.loggers.LiveLogger`.

    :meth:`log` at each logging step writes the interval since the previous one at that step;
    :meth:`finish` stops the session, writes the last interval and the reconciled totals at the
    last step, and the energy of each phase as ``greentrack/phase/<name>_j``.
    """

    integration = "tensorboard"

    def __init__(self, writer: Any, session: Any, *, per_rank: bool = False, counts_are_global: bool = False) -> None:
        super().__init__(session, per_rank=per_rank, counts_are_global=counts_are_global)
        self._owned = isinstance(writer, (str, bytes)) or hasattr(writer, "__fspath__")
        self._logdir = writer if self._owned else None
        self.writer = None if self._owned else writer
        self._step = 0

    def _writer(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self._logdir))
        return self.writer

    def write(self, metrics: dict[str, float], step: int | None) -> None:
        if step is None:
            step = self._step
        self._step = step + 1
        w = self._writer()
        for k, v in metrics.items():
            w.add_scalar(k, v, step)

    def finish(self, step: int | None = None, status: str | None = None, error: str | None = None) -> dict[str, float]:
        if step is None:
            step = max(0, self._step - 1)
        out = super().finish(step, status, error)
        if self.writer is not None:
            try:
                self.writer.flush()
                if self._owned:
                    self.writer.close()
            except Exception as exc:
                self.fail("finish", exc)
        return out
