"""A small real Lightning training run on NVML: logged per-step energy vs the stored total, and slowdown.

A 3 x Linear(256) MLP (Adam, batch 64, data already on the GPU) trains with Lightning on GPU 0,
a launch-bound loop where any work on the training thread shows. Each repetition runs, in a
shuffled order so drift hits both alike:

- ``bare``: ``Trainer.fit`` without greentrack;
- ``greentrack``: the same with ``greentrack_lightning.GreentrackCallback`` (backend ``nvml``),
  logging the live figures every ``--log-every`` steps to a CSVLogger.

Figures, written as JSON (``--out``) and printed:

- ``energy``: per repetition, the sum of the logged ``greentrack/energy_j`` intervals (CSVLogger's
  file) against the run's stored, counter-reconciled total (target: within 1 %);
- ``slowdown``: median over repetitions of (training-loop time with the callback / without), the
  loop timed from ``on_train_start`` to ``on_train_end`` after a CUDA synchronize, with the
  bootstrap-free spread (min, max) of the ratios.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/gpu_lightning.py --reps 7 --steps 3000 --out gpu_lightning.json
    python3 benchmarks/gpu_lightning.py --dry-run --reps 2 --steps 40     # CPU, mock GPU: checks the script
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _import_plugin() -> Any:
    try:
        import greentrack_lightning
    except ImportError:  # from a checkout: the plugin's source
        sys.path.insert(0, str(ROOT / "plugins" / "greentrack-lightning" / "src"))
        import greentrack_lightning
    return greentrack_lightning


def build(dry: bool, steps: int) -> tuple[Any, Any, Any]:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset

    dev = torch.device("cpu" if dry else "cuda:0")

    class OnDevice(Dataset):  # the batches already on the device: the loop is launch-bound
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 256, generator=g).to(dev)
            self.y = torch.randint(0, 10, (64,), generator=g).to(dev)

        def __len__(self) -> int:
            return steps

        def __getitem__(self, i: int) -> Any:
            return self.x, self.y

    class MLP(pl.LightningModule):
        def __init__(self, width: int = 256, lr: float = 1e-3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(256, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                           torch.nn.ReLU(), torch.nn.Linear(width, 10))

        def training_step(self, batch: Any, i: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    class LoopTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds = float("nan")

        def _sync(self) -> None:
            if not dry:
                torch.cuda.synchronize()

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._sync()
            self._t = time.perf_counter()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._sync()
            self.seconds = time.perf_counter() - self._t

    loader = DataLoader(OnDevice(), batch_size=None, shuffle=False)
    return MLP, loader, LoopTimer


def fit(dry: bool, steps: int, log_every: int, out: Path, tracked: bool, db: str) -> dict[str, Any]:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    MLP, loader, LoopTimer = build(dry, steps)
    timer = LoopTimer()
    callbacks: list[Any] = [timer]
    cb = None
    if tracked:
        cb = _import_plugin().GreentrackCallback("gpu-lightning", region="FR", db=db,
                                                 backend="mock" if dry else "nvml")
        callbacks.append(cb)
    trainer = pl.Trainer(accelerator="cpu" if dry else "gpu", devices=1, max_steps=steps, log_every_n_steps=log_every,
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         logger=CSVLogger(str(out), name="tracked" if tracked else "bare"), callbacks=callbacks)
    trainer.fit(MLP(), loader)
    row: dict[str, Any] = {"loop_s": timer.seconds, "steps": int(trainer.global_step)}
    if cb is not None and cb.result is not None:
        with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as fh:
            logged = [float(r["greentrack/energy_j"]) for r in csv.DictReader(fh) if r.get("greentrack/energy_j")]
        total = cb.result.energy_j
        row.update(run_id=cb.result.run_id, logged_intervals=len(logged), logged_sum_j=sum(logged),
                   stored_total_j=total, method=[d.method for d in cb.result.devices],
                   logged_vs_stored_pct=(sum(logged) - total) / total * 100.0 if total else None,
                   errors=cb.errors)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    ap.add_argument("--dry-run", action="store_true", help="CPU and greentrack's mock GPU: checks the script")
    args = ap.parse_args()
    if args.dry_run:
        os.environ.setdefault("GREENTRACK_MOCK", "constant:250")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-lightning-") as tmp:
        db = str(Path(tmp) / "runs.db")
        for rep in range(args.reps):
            order = [False, True]
            random.Random(rep).shuffle(order)
            pair = {}
            for tracked in order:
                pair["greentrack" if tracked else "bare"] = fit(args.dry_run, args.steps, args.log_every,
                                                                Path(tmp) / f"rep{rep}", tracked, db)
            pair["ratio"] = pair["greentrack"]["loop_s"] / pair["bare"]["loop_s"]
            pair["order"] = ["greentrack" if t else "bare" for t in order]
            rows.append(pair)
            print(f"rep {rep}: bare {pair['bare']['loop_s']:.3f} s, greentrack {pair['greentrack']['loop_s']:.3f} s "
                  f"(x{pair['ratio']:.4f}); logged {pair['greentrack']['logged_sum_j']:.1f} J vs stored "
                  f"{pair['greentrack']['stored_total_j']:.1f} J ({pair['greentrack']['logged_vs_stored_pct']:+.3f} %)",
                  flush=True)
    ratios = [r["ratio"] for r in rows]
    diffs = [r["greentrack"]["logged_vs_stored_pct"] for r in rows]
    import torch

    out = {
        "what": "Lightning MLP 3x256, batch 64 on the device; GreentrackCallback vs bare, interleaved",
        "dry_run": args.dry_run, "steps": args.steps, "log_every": args.log_every, "reps": args.reps,
        "device": "cpu (mock GPU)" if args.dry_run else torch.cuda.get_device_name(0),
        "slowdown_pct_median": (statistics.median(ratios) - 1.0) * 100.0,
        "slowdown_pct_min": (min(ratios) - 1.0) * 100.0, "slowdown_pct_max": (max(ratios) - 1.0) * 100.0,
        "logged_vs_stored_pct": diffs, "logged_vs_stored_pct_max_abs": max(abs(d) for d in diffs),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "rows": rows,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
