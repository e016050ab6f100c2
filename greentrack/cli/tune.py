"""``greentrack tune``: the energy-time frontier across GPU power limits, and the best setting."""

from __future__ import annotations

import importlib
import json
from typing import Any, Callable

import click

from .common import db_option


def _load_step(spec: str) -> Callable[[], Any]:
    """``module:factory``: factory() returns the step callable (one training step per call)."""
    from ..errors import GreentrackError

    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise GreentrackError(f"--step {spec!r}: use module:factory (factory() returns a step function)")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as exc:
        raise GreentrackError(f"--step {spec!r}: {exc}") from None
    step = factory()
    if not callable(step):
        raise GreentrackError(f"--step {spec!r}: {attr}() must return a callable")
    return step


def _numbers(raw: str | None, kind: type) -> list[Any] | None:
    from ..errors import GreentrackError

    if not raw or raw == "auto":
        return None
    try:
        return [kind(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise GreentrackError(f"bad list {raw!r}: use comma-separated numbers") from None


@click.command("tune")
@click.option("--limits", default="auto", show_default=True,
              help="Power limits in W, comma-separated; 'auto': 5 from the GPU's minimum to its maximum.")
@click.option("--clocks", default=None, help="Also try these locked SM clocks (MHz) at the default limit.")
@click.option("--max-slowdown", type=float, default=10.0, show_default=True,
              help="Slowdown allowed against the default limit, percent.")
@click.option("--gpu", "index", type=int, default=0, show_default=True, help="NVML index of the GPU to tune.")
@click.option("--step", "step_spec", default=None,
              help="Your training step: module:factory (default: a study workload).")
@click.option("--workload", default="bf16", show_default=True, help="Study setting to run when no --step is given.")
@click.option("--size", default="small", show_default=True, help="Study workload size (tiny, small, base).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seconds", type=float, default=10.0, show_default=True,
              help="Measured seconds per point and repetition.")
@click.option("--reps", type=int, default=3, show_default=True)
@click.option("--fallback/--no-fallback", default=True, show_default=True,
              help="Where limits cannot be changed, compare batch sizes and precisions instead.")
@click.option("--restore", is_flag=True, help="Only restore settings a killed greentrack tune left changed.")
@click.option("--backend", default=None, help="Power source (default: GREENTRACK_BACKEND or auto).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the sweep as JSON.")
@db_option
def tune_cmd(limits: str, clocks: str | None, max_slowdown: float, index: int, step_spec: str | None, workload: str,
             size: str, batch_size: int, seconds: float, reps: int, fallback: bool, restore: bool, backend: str | None,
             json_out: str | None, db: str | None) -> None:
    """Measure J/step and time/step across GPU power limits (and locked SM clocks) and choose the setting
    that saves most energy within --max-slowdown; the choice is measured again in separate runs. Changes
    GPU settings (needs root or admin rights), and restores them on exit, on errors, on SIGTERM, and at
    the next start after a SIGKILL."""
    from ..errors import GreentrackError
    from ..measure.gpucontrol import ControlRefused, GPUControl, restore_pending
    from ..study.tune import tune
    from ..views.study import render_tune
    from .common import write_output

    try:
        for line in restore_pending():
            click.echo(f"greentrack: restored: {line}", err=True)
    except ControlRefused as exc:
        if restore:
            raise
        click.echo(f"greentrack: {exc}", err=True)
    if restore:
        return
    step = _load_step(step_spec) if step_spec else None
    try:
        control = GPUControl()
        res = tune(step or _study_step(workload, size, batch_size), control=control, device_index=index,
                   limits=_numbers(limits, float), clocks=_numbers(clocks, int), seconds=seconds, reps=reps,
                   max_slowdown_pct=max_slowdown, backend=backend, db=db, progress=lambda m: click.echo(m, err=True))
    except ControlRefused as exc:
        if step is not None or not fallback:
            raise GreentrackError(f"{exc}; GPU power limits cannot be changed here") from None
        click.echo(f"greentrack: {exc}; GPU power limits cannot be changed here, so comparing what can vary "
                   "instead: batch size and precision", err=True)
        from ..study.runner import run_study
        from ..study.settings import select
        from ..views.study import render_study

        st = run_study(select(FALLBACK), size=size, batch_size=batch_size, reps=reps, seconds=seconds,
                       backend=backend, db=db, progress=lambda m: click.echo(m, err=True))
        click.echo(render_study(st))
        if json_out:
            write_output(json.dumps(st.as_dict(), indent=1, default=str) + "\n", json_out)
        return
    click.echo(render_tune(res))
    if json_out:
        write_output(json.dumps(res.as_dict(), indent=1, default=str) + "\n", json_out)


FALLBACK = "fp32,bf16,bf16-batch-x2"


def _study_step(name: str, size: str, batch_size: int) -> Callable[[], Any]:
    from ..study.runner import _device, _Workload
    from ..study.settings import select

    (setting,) = select(name)
    wl = _Workload(setting, size, batch_size, None, _device("auto"), 16, seed=1234)
    return wl.step


def register(cli: click.Group) -> None:
    cli.add_command(tune_cmd)
