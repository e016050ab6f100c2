"""A tiny simulated training loop that exercises the whole path on any machine."""

from __future__ import annotations

import time
from typing import Any

from .tracker import Session


def run_demo(steps: int = 60, step_time: float = 0.03, name: str = "demo-train", region: str | None = "FR",
             backend: str = "mock", db: Any = None, batch_size: int = 32, seq_len: int = 128,
             eval_time: float = 1.2) -> Any:
    """Train-then-evaluate on the mock GPU; returns the run's result."""
    with Session(name, region=region, backend=backend, db=db, strict=True,
                 tags={"demo": "yes", "precision": "bf16"}) as s:
        with s.phase("train"):
            for _ in range(steps):
                time.sleep(step_time)  # stands in for forward + backward + optimizer step
                s.step(samples=batch_size, tokens=batch_size * seq_len)
        with s.phase("eval"):
            time.sleep(eval_time)  # no steps marked: after 0.5 s the mock GPU idles
    return s.result
