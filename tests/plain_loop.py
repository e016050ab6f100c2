"""Shared by the logger-integration tests: a tiny plain PyTorch loop measured with the mock GPU.

``PLAIN`` is the prelude of the scripts those tests run in a subprocess: ``train(session, log)``
trains a small MLP for 100 steps of 8 samples (256 tokens), calls ``log(step, loss)`` every 10
steps, sleeps 20 ms a step so the run lasts a few seconds (the run's edges, one 20 ms tick of
the mock each, stay small against its total), and spends 0.2 s in an ``eval`` phase halfway.
"""

from __future__ import annotations

import os
from pathlib import Path

PLAIN = """
import json, os, sys, time
import torch
import greentrack

def train(session, log, steps=100, every=10, sleep=0.02):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        x = torch.randn(8, 4, generator=g)
        loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        time.sleep(sleep)
        session.step(samples=8, tokens=8 * 32)
        if step % every == 0:
            log(step, loss.item())
        if step == steps // 2:
            with session.phase("eval"):
                time.sleep(0.2)
    return step
"""


def plain_env(site: Path, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a script: the plugin's install folder first, the mock GPU, the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="load:60,300", GREENTRACK_FLUSH_INTERVAL="0.5",
               GREENTRACK_DB=str(tmp / "runs.db"), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env
