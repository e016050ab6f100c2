"""``GreentrackCallback``: a ``lightning.pytorch.Callback`` that measures and logs energy live.

Hook by hook:

- ``setup(stage)``: a :class:`greentrack.Session` starts for this ``fit``/``validate``/``test``/
  ``predict`` call, named after the callback's *name*, else the first logger's run
  (``<logger name>/version_<n>``, or ``<name>/<run id>``), else the module's class; tagged with
  ``stage``, ``model``, ``precision``, the module's (and datamodule's) hyperparameters, then the
  user's tags.
- ``on_train_batch_end``: after each optimizer step, ``session.step(samples=..., tokens=...)``
  (the rank's own samples of the step's micro-batches; tokens from *seq_len* or *tokens_fn*).
  At the Trainer's logging steps (``log_every_n_steps``) the live figures are read (one
  all-reduce under DDP) and logged with ``pl_module.log_dict(..., on_step=True)`` on rank 0.
- validation, test and predict loops: phases ``validate`` (``sanity_check`` for the sanity
  check), ``test``, ``predict``; without a process group the loop's live energy is logged as
  ``greentrack/<phase>/energy_j`` when it ends.
- ``teardown``: the session stops; the last interval (up to the run's end), the reconciled
  totals (``greentrack/total_energy_kwh``, ``total_co2e_kg``...) and, without a process group,
  the energy of each phase are logged to every logger at the last step.

Every hook body is guarded: a failure of greentrack is reported once on stderr, measuring stops,
and training goes on. Under DDP a rank whose measuring failed still takes part in the
collective reads, so the other ranks never wait for it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch import Callback

from greentrack.measure.jobs import JobMeter, process_group
from greentrack.measure.live import phase_energy_j, result_metrics

PREFIX = "greentrack/"
_MAX_TAG = 250


def hparam_tags(hparams: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Hyperparameters as ``key=value`` tags: nested mappings flattened with dots, values as text."""
    out: dict[str, str] = {}
    for k, v in (hparams or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(hparam_tags(v, key + "."))
        else:
            text = str(v)
            out[key] = text if len(text) <= _MAX_TAG else text[:_MAX_TAG - 1] + "…"
    return out


def _logger_run_name(trainer: Any) -> str | None:
    logger = trainer.loggers[0] if getattr(trainer, "loggers", None) else None
    if logger is None:
        return None
    name, version = getattr(logger, "name", None), getattr(logger, "version", None)
    if not name:
        return None
    if version is None or version == "":
        return str(name)
    return f"{name}/version_{version}" if isinstance(version, int) else f"{name}/{version}"


def _batch_size(batch: Any) -> int | None:
    try:
        from lightning.pytorch.utilities.data import extract_batch_size

        return int(extract_batch_size(batch))
    except Exception:
        return None


class GreentrackCallback(Callback):
    """Measure each Trainer call (``fit``, ``validate``, ``test``, ``predict``) as a greentrack run.

    Args:
        name: the run's name (default: the first logger's run, else the LightningModule's class).
        tags: extra ``key=value`` labels, added after (and overriding) the automatic ones.
        region, backend, db: passed to :class:`greentrack.Session` (None: greentrack's settings).
        seq_len: tokens per sample; each step then records ``samples * seq_len`` tokens.
        tokens_fn: ``tokens_fn(batch) -> int``, the tokens of one micro-batch (wins over *seq_len*).
        per_rank: under DDP, rank 0 also logs each rank's own ``greentrack/rank<N>/...`` figures.
        hparams: tag the run with the module's and datamodule's hyperparameters (default True).
        **session_kwargs: any other :class:`greentrack.Session` argument (``pue``, ``budget_kwh``...).

    After a Trainer call, :attr:`result` is the run's ``RunResult`` (None when nothing was
    measured), :attr:`last_logged` the last figures logged, :attr:`errors` the failures reported.
    """

    def __init__(self, name: str | None = None, *, tags: dict[str, Any] | None = None,
                 region: str | None = None, backend: str | None = None, db: str | None = None,
                 seq_len: int | None = None, tokens_fn: Callable[[Any], int] | None = None,
                 per_rank: bool = False, hparams: bool = True, **session_kwargs: Any) -> None:
        if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0):
            raise ValueError(f"GreentrackCallback: seq_len must be a positive integer, got {seq_len!r}")
        self.name = name
        self.tags = dict(tags or {})
        self.seq_len = seq_len
        self.tokens_fn = tokens_fn
        self.per_rank = per_rank
        self.hparams = hparams
        self.session_kwargs = dict(session_kwargs, region=region, backend=backend, db=db)
        self.session: Any = None
        self.result: Any = None
        self.job: JobMeter | None = None
        self.errors: list[str] = []
        self.last_logged: dict[str, float] = {}
        self.collectives = 0  # all-reduces the last run made (under DDP: one per logging step, one at the end)
        self._stage: str | None = None
        self._step_seen = 0
        self._samples = 0
        self._tokens = 0
        self._counts_known = True
        self._phase: tuple[str, float, float | None] | None = None  # name, start, live energy at start

    # failures ------------------------------------------------------------------------------------
    def _fail(self, hook: str, exc: BaseException) -> None:
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = f"{hook}: {type(exc).__name__}: {text}".rstrip(": ")
        self.errors.append(msg)
        if len(self.errors) == 1:
            print(f"greentrack: lightning: {msg} (measurement stopped; training goes on)", file=sys.stderr)
        if self.job is not None:
            self.job.meter = None  # keeps taking part in the collective reads, with an empty row
        s, self.session = self.session, None
        if s is not None and s.result is None and getattr(s, "sampler", None) is not None:
            try:
                self.result = s.stop("failed", f"greentrack-lightning {msg}")
            except Exception:
                pass

    def _guard(self, hook: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            self._fail(hook, exc)

    def _running(self) -> bool:
        s = self.session
        return s is not None and s.status == "running" and s.result is None

    # the run -------------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._running():  # an earlier call that raised without teardown: its run ends here
            try:
                self.session.stop("failed", "the Trainer call did not reach teardown")
            except Exception:
                pass
        self.session = self.result = None
        self.errors = []
        self.last_logged = {}
        self._stage = str(getattr(stage, "value", stage))  # TrainerFn.FITTING -> "fit"
        self._step_seen = int(getattr(trainer, "global_step", 0) or 0)
        self._samples = self._tokens = 0
        self._counts_known = True
        self._phase = None
        self.job = JobMeter(None)  # every rank has one, so the collective reads match up
        self._guard("setup", lambda: self._start(trainer, pl_module))

    def _start(self, trainer: Any, pl_module: Any) -> None:
        from greentrack.measure.tracker import Session

        tags: dict[str, str] = {"stage": self._stage or "", "model": type(pl_module).__name__,
                                "precision": str(getattr(trainer, "precision", "") or "")}
        run_name = _logger_run_name(trainer)
        if run_name:
            tags["lightning_run"] = run_name
        if self.hparams:
            dm = getattr(trainer, "datamodule", None)
            tags.update(hparam_tags(getattr(dm, "hparams", None)))
            tags.update(hparam_tags(getattr(pl_module, "hparams", None)))
        tags.update({str(k): str(v) for k, v in self.tags.items()})
        session = Session(self.name or run_name or type(pl_module).__name__, tags=tags, **self.session_kwargs)
        try:
            session.start()
        except BaseException:
            if getattr(session, "sampler", None) is not None:
                session.stop("failed", "start failed")
            raise
        self.session = session
        assert self.job is not None
        self.job.meter = session.meter()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.job is None:
            return
        self._guard("teardown", lambda: self._stop())
        reading = self._read("teardown")  # the closing read: every rank takes part
        self.collectives = self.job.collectives if self.job is not None else self.collectives
        if reading is None:
            self.job = None
            return
        self._guard("teardown", lambda: self._log_final(trainer, reading))
        self.job = None

    def _stop(self) -> None:
        if self._running():
            self._close_phase(None)
            self.result = self.session.stop()

    def _log_final(self, trainer: Any, reading: Any) -> None:
        if not reading.logs_job:
            return
        metrics = reading.metrics(per_rank=self.per_rank)
        if not reading.distributed and self.result is not None:
            metrics.update(result_metrics(self.result))  # this process's totals and phases
        if not metrics:
            return
        step = int(getattr(trainer, "global_step", 0) or 0)
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics(metrics, step=step)
        self.last_logged = metrics

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        s = self.session
        if s is not None and s.result is None and getattr(s, "sampler", None) is not None:
            status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            text = str(exception).splitlines()[0] if str(exception) else ""
            try:
                self.result = s.stop(status, f"{type(exception).__name__}: {text}".rstrip(": "))
            except Exception:
                pass
        self.job = None  # no collective after an exception: other ranks may be gone

    # reading ---------------------------------------------------------------------------------------
    def _read(self, hook: str) -> Any:
        job = self.job
        if job is None:
            return None
        try:
            return job.read()
        except Exception as exc:
            self._fail(hook, exc)
            return None

    # training ----------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.job is None:
            return
        stepped = self._count(trainer, batch)
        if not stepped or not _should_log(trainer):
            return
        reading = self._read("on_train_batch_end")
        if reading is None or not reading.logs_job:
            return
        self._guard("on_train_batch_end", lambda: self._log_step(pl_module, reading))

    def _count(self, trainer: Any, batch: Any) -> bool:
        """Add the micro-batch; mark a step when the optimizer stepped. True when it did."""
        try:
            if self._running():
                n = _batch_size(batch)
                if n is None:
                    self._counts_known = False
                else:
                    self._samples += n
                    if self.tokens_fn is not None:
                        self._tokens += int(self.tokens_fn(batch))
                    elif self.seq_len:
                        self._tokens += n * self.seq_len
            gs = int(getattr(trainer, "global_step", 0) or 0)
            if gs == self._step_seen:
                return False  # accumulating gradients
            self._step_seen = gs
            if self._running():
                known = self._counts_known
                self.session.step(samples=self._samples if known else None,
                                  tokens=self._tokens if (known and (self.tokens_fn or self.seq_len)) else None)
            self._samples = self._tokens = 0
            self._counts_known = True
            return True
        except Exception as exc:
            self._fail("on_train_batch_end", exc)
            self._step_seen = int(getattr(trainer, "global_step", 0) or 0)
            return True

    def _log_step(self, pl_module: Any, reading: Any) -> None:
        metrics = reading.metrics(per_rank=self.per_rank)
        if metrics:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, logger=True,
                               rank_zero_only=True, batch_size=1)
            self.last_logged = metrics

    # phases ------------------------------------------------------------------------------------------
    def _open_phase(self, name: str) -> None:
        if not self._running():
            return
        self._close_phase(None)
        meter = self.job.meter if self.job is not None else None
        self._phase = (name, time.time(), meter.cumulative_j() if meter is not None else None)

    def _close_phase(self, trainer: Any) -> None:
        ph, self._phase = self._phase, None
        if ph is None or not self._running():
            return
        name, t0, e0 = ph
        t1 = time.time()
        self.session.mark_phase(name, t0, t1)
        meter = self.job.meter if self.job is not None else None
        if trainer is None or meter is None or e0 is None or process_group() is not None:
            return
        e1 = meter.cumulative_j(t1)
        if e1 is None:
            return
        metrics = {f"{PREFIX}{name}/energy_j": e1 - e0}
        step = int(getattr(trainer, "global_step", 0) or 0)
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics(metrics, step=step)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        name = "sanity_check" if getattr(trainer, "sanity_checking", False) else "validate"
        self._guard("on_validation_start", lambda: self._open_phase(name))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._guard("on_validation_end", lambda: self._close_phase(trainer))

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._guard("on_test_start", lambda: self._open_phase("test"))

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._guard("on_test_end", lambda: self._close_phase(trainer))

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._guard("on_predict_start", lambda: self._open_phase("predict"))

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._guard("on_predict_end", lambda: self._close_phase(trainer))

    @property
    def phase_energy_j(self) -> dict[str, float]:
        """Energy per phase name of the last run (reconciled; empty before it stopped)."""
        return phase_energy_j(self.result) if self.result is not None else {}


def _should_log(trainer: Any) -> bool:
    """Whether the Trainer writes this step's ``on_step`` metrics to its loggers.

    The same test as Lightning's own monitors (LearningRateMonitor, ThroughputMonitor): the
    logger connector's ``should_update_logs``, or every step under ``fast_dev_run``.
    """
    if getattr(trainer, "fast_dev_run", False):
        return True
    connector = getattr(trainer, "_logger_connector", None)
    flag = getattr(connector, "should_update_logs", None)
    if isinstance(flag, bool):
        return flag
    every = int(getattr(trainer, "log_every_n_steps", 50) or 0)  # older or newer Lightning: the same rule
    return every > 0 and int(getattr(trainer, "global_step", 0)) % every == 0
