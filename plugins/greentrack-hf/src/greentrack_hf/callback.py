"""``GreentrackCallback``: a ``transformers.TrainerCallback`` that measures ``Trainer.train()``.

What it does, event by event:

- ``on_train_begin``: opens a :class:`greentrack.Session` named after the callback's *name*,
  else ``args.run_name``, else the last part of ``args.output_dir``; tagged with the model's
  class, the precision (``bf16``/``fp16`` from ``args``, else the model's dtype, else ``fp32``),
  ``peft`` (the adapter types) when the model has a ``peft_config``, then the user's tags.
- ``on_step_end`` (one optimizer step, after gradient accumulation): ``session.step(samples=
  global batch, tokens=...)``. The global batch is ``per_device_train_batch_size *
  gradient_accumulation_steps * world_size``; tokens are ``global batch * seq_len`` when
  *seq_len* is given, else the step's share of ``state.num_input_tokens_seen`` when the
  Trainer counts tokens (``include_num_input_tokens_seen``), else None.
- evaluation: the Trainer has no "evaluation begins" event. An evaluation inside ``train()``
  starts right after the step (or save, or previous evaluation) that triggered it, so the
  phase runs from that moment to ``on_evaluate`` and is recorded with
  :meth:`greentrack.Session.mark_phase` (energy is attributed when the session stops).
- ``on_log`` (every ``logging_steps``, and each evaluation's metrics): the live figures since
  the previous log (``greentrack/energy_j``, ``power_w``, ``energy_kwh``, ``co2e_g``,
  ``j_per_step``, ``j_per_sample``, ``j_per_token``; see :mod:`greentrack.measure.live`) are
  added to the Trainer's ``logs``, so every ``report_to`` integration (TensorBoard, W&B,
  MLflow...) receives them: the callback moves itself before those integrations in the
  Trainer's callback list when training begins. Under torchrun they are the job's figures
  (one all-reduce per log, :mod:`greentrack.measure.jobs`), on rank 0. The Trainer's last log
  (``train_loss``, ``total_flos``...) ends the run: the session stops there and that log also gets the last
  interval and the reconciled ``greentrack/total_energy_kwh``, ``total_energy_j`` and
  ``total_co2e_kg``.
- ``on_train_end``: stops the session if still running; :attr:`GreentrackCallback.result` holds the
  :class:`greentrack.measure.result.RunResult`, and ``greentrack/energy_kwh`` and ``greentrack/co2e_kg``
  are appended to ``state.log_history``.

Every event body is guarded: a failure of greentrack is reported once on stderr and the
callback stops measuring; training goes on.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from transformers import TrainerCallback

from greentrack.measure.jobs import JobMeter

F = TypeVar("F", bound=Callable[..., Any])

_DTYPES = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}


def _guarded(fn: F) -> F:
    """Run an event body; on an exception report it once and measure no more (training goes on)."""

    @functools.wraps(fn)
    def wrapper(self: GreentrackCallback, *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return None
        try:
            fn(self, *args, **kwargs)
        except Exception as exc:
            self._fail(fn.__name__ if fn.__name__.startswith("on_") else "on" + fn.__name__, exc)
        return None  # never hand a TrainerControl back: the callback does not steer training

    return wrapper  # type: ignore[return-value]


def precision_of(args: Any, model: Any = None) -> str:
    """``bf16`` or ``fp16`` from the TrainingArguments, else the model's dtype, else ``fp32``."""
    if getattr(args, "bf16", False):
        return "bf16"
    if getattr(args, "fp16", False):
        return "fp16"
    dtype = getattr(model, "dtype", None)
    return _DTYPES.get(str(dtype), "fp32")


def _model_tags(model: Any) -> dict[str, str]:
    tags: dict[str, str] = {}
    if model is None:
        return tags
    base = model
    peft = getattr(model, "peft_config", None)
    if peft:
        kinds = sorted({str(getattr(getattr(c, "peft_type", None), "value", getattr(c, "peft_type", "")) or "")
                        for c in (peft.values() if isinstance(peft, dict) else [peft])} - {""})
        tags["peft"] = ",".join(k.lower() for k in kinds) or "yes"
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base):
            try:
                base = get_base()
            except Exception:
                base = model
    tags["model"] = type(base).__name__
    return tags


def _counts_tokens(args: Any) -> bool:
    v = getattr(args, "include_num_input_tokens_seen", False)
    return bool(v) and v != "no"


class GreentrackCallback(TrainerCallback):
    """Measure each ``Trainer.train()`` call as a greentrack run.

    Args:
        name: the run's name (default: ``args.run_name``, else the last part of ``args.output_dir``).
        tags: extra ``key=value`` labels, added after (and overriding) ``model``, ``precision``, ``peft``.
        region, backend, db: passed to :class:`greentrack.Session` (None: greentrack's settings).
        seq_len: tokens per sample; with it each step records ``global batch * seq_len`` tokens
            (a positive integer, else ``ValueError`` when the callback is made).
        eval_phase: the name of the phase each evaluation is recorded as (default ``eval``).
        live: add the live figures to each ``on_log`` (default True).
        per_rank: under torchrun, rank 0 also logs each rank's own ``greentrack/rank<N>/...`` figures.
        **session_kwargs: any other :class:`greentrack.Session` argument (``budget_kwh``, ``pue``...).

    After training, :attr:`result` is the run's ``RunResult`` (None if nothing was measured),
    :attr:`session` the session, and :attr:`errors` the failures reported, if any.
    """

    def __init__(self, name: str | None = None, *, tags: dict[str, Any] | None = None,
                 region: str | None = None, backend: str | None = None, db: str | None = None,
                 seq_len: int | None = None, eval_phase: str = "eval", live: bool = True, per_rank: bool = False,
                 **session_kwargs: Any) -> None:
        if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0):
            raise ValueError(f"GreentrackCallback: seq_len must be a positive integer, got {seq_len!r}")
        self.name = name
        self.tags = dict(tags or {})
        self.seq_len = seq_len
        self.eval_phase = eval_phase
        self.live = live
        self.per_rank = per_rank
        self.job: JobMeter | None = None
        self.session_kwargs = dict(session_kwargs, region=region, backend=backend, db=db)
        self.session: Any = None
        self.result: Any = None
        self.errors: list[str] = []
        self._broken = False
        self._samples: int | None = None
        self._tokens_seen = 0
        self._boundary_t = 0.0

    # failures ------------------------------------------------------------------------------------
    def _fail(self, event: str, exc: BaseException) -> None:
        self._broken = True
        if self.job is not None:
            self.job.meter = None  # keeps taking part in the collective reads (torchrun), with an empty row
        msg = f"{event}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        self.errors.append(msg)
        print(f"greentrack: hf: {msg} (measurement stopped; training goes on)", file=sys.stderr)
        s = self.session
        if s is not None and event != "on_train_end" and getattr(s, "sampler", None) is not None:
            try:
                self.result = s.stop("failed", f"greentrack-hf {msg}")
            except Exception:
                pass

    def _running(self) -> bool:
        s = self.session
        return s is not None and s.status == "running" and s.result is None

    # events --------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._running():  # an earlier train() that raised: its run ends here
            try:
                self.session.stop("failed", "train() did not reach on_train_end")
            except Exception:
                pass
        self._broken = False
        self.session = self.result = None
        self.job = JobMeter(None, counts_are_global=True) if self.live else None  # on every rank
        self._train_begin(args, state, model)
        if self.live:
            try:
                _move_before_reporters(self)
            except Exception:  # the figures still reach state.log_history and later callbacks
                pass

    @_guarded
    def _train_begin(self, args: Any, state: Any, model: Any) -> None:
        from greentrack.measure.tracker import Session

        tags = {"precision": precision_of(args, model), **_model_tags(model)}
        tags.update({str(k): str(v) for k, v in self.tags.items()})
        name = self.name or getattr(args, "run_name", None)
        out = getattr(args, "output_dir", None)
        if not name or (out and name == out):  # older transformers default run_name to output_dir
            name = Path(str(out)).name if out else "trainer"
        self._samples = (int(args.per_device_train_batch_size) * int(args.gradient_accumulation_steps)
                         * int(getattr(args, "world_size", 1) or 1))
        self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        session = Session(name, tags=tags, **self.session_kwargs)
        try:
            session.start()
        except BaseException:
            if getattr(session, "sampler", None) is not None:
                session.stop("failed", "start failed")
            raise
        self.session = session
        if self.job is not None:
            self.job.meter = session.meter()
        self._boundary_t = time.time()

    @_guarded
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._running():
            return
        tokens: int | None = None
        if self.seq_len:
            tokens = self._samples * self.seq_len
        elif _counts_tokens(args):
            seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            tokens, self._tokens_seen = seen - self._tokens_seen, seen
        self.session.step(samples=self._samples, tokens=tokens)
        self._boundary_t = time.time()

    @_guarded
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._boundary_t = time.time()

    @_guarded
    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._running():  # trainer.evaluate() before or after train(): not part of a run
            return
        t1 = time.time()
        self.session.mark_phase(self.eval_phase, self._boundary_t, t1)
        self._boundary_t = t1

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        job = self.job
        if job is None or logs is None:
            return
        if "train_loss" in logs and "total_flos" in logs and self._running():  # the Trainer's last log: the run ends
            try:
                self.result = self.session.stop()
            except Exception as exc:
                self._fail("on_log", exc)
        try:
            reading = job.read()  # every rank, at every log (one all-reduce under torchrun)
        except Exception as exc:
            self._fail("on_log", exc)
            self.job = None
            return
        if reading.local is not None and reading.local.final:
            self.job = None  # the closing read was taken
        try:
            metrics = reading.metrics(per_rank=self.per_rank)
            logs.update(metrics)
            if metrics and state.log_history:  # the Trainer stored its copy of logs just before on_log
                state.log_history[-1].update(metrics)
        except Exception as exc:
            self._fail("on_log", exc)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # runs even after a failure, so that a started session is not left open
        if self._running():
            try:
                self.result = self.session.stop()
            except Exception as exc:
                if not self._broken:
                    self._fail("on_train_end", exc)
                return
        if self._broken or self.result is None:
            return
        try:
            r = self.result
            state.log_history.append({"greentrack/energy_kwh": r.energy_kwh, "greentrack/co2e_kg": r.co2e_kg,
                                      "step": state.global_step})
        except Exception as exc:
            self._fail("on_train_end", exc)


def _move_before_reporters(callback: GreentrackCallback) -> None:
    """Put *callback* before the ``report_to`` integrations in the Trainer's callback list.

    The Trainer calls callbacks in list order with one ``logs`` dict, and adds user callbacks
    after its reporting ones, so figures added in ``on_log`` would reach none of them. The
    handler is the caller of this event (``CallbackHandler.call_event``); the list is replaced,
    not changed in place, so the event being dispatched is not disturbed.
    """
    frame = sys._getframe(1)
    handler = None
    while frame is not None:
        obj = frame.f_locals.get("self")
        if type(obj).__name__ == "CallbackHandler" and callback in getattr(obj, "callbacks", ()):
            handler = obj
            break
        frame = frame.f_back
    del frame
    if handler is None:
        return
    cbs = list(handler.callbacks)
    first = next((i for i, cb in enumerate(cbs) if type(cb).__module__.startswith("transformers.integrations")), None)
    if first is None or cbs.index(callback) < first:
        return
    cbs.remove(callback)
    cbs.insert(first, callback)
    handler.callbacks = cbs
