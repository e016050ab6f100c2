"""Shared parts of the H200 benchmarks: an independent counter reference, the phased workload,
and a dry-run mode that runs the same code on greentrack's mock backend (no GPU, no torch).

The reference never goes through greentrack: a thread reads the NVML energy counter as fast
as it can (one read takes about 3 ms on the H200), keeps the moments where its value changed,
and gives the counter's energy between any two wall-clock times by linear interpolation
between those change points.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


class RefCounter(threading.Thread):
    """Reads one or more energy counters continuously; optionally records the raw sample buffer.

    *read(i)* returns counter *i* in joules; *buffer(i, since_us)* (optional) returns new raw
    ``(t_s, power_w)`` samples of device *i*.
    """

    def __init__(self, read: Callable[[int], float], n: int = 1,
                 buffer: Callable[[int], list[tuple[float, float]]] | None = None,
                 buffer_every_s: float = 0.5) -> None:
        super().__init__(name="ref-counter", daemon=True)
        self.read = read
        self.n = n
        self.buffer = buffer
        self.buffer_every_s = buffer_every_s
        self.reads: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # (t, J) at every change
        self.samples: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        self.n_reads = 0
        self._halt = threading.Event()
        self._prev: list[tuple[float, float] | None] = [None] * n

    def run(self) -> None:
        next_buf = time.time()
        while not self._halt.is_set():
            for i in range(self.n):
                v = self.read(i)
                t = time.time()
                self.n_reads += 1
                prev = self._prev[i]
                if prev is None:
                    self.reads[i].append((t, v))
                elif v != prev[1]:
                    # the change happened between the previous read and this one
                    self.reads[i].append(((prev[0] + t) / 2.0, v))
                self._prev[i] = (t, v)
            if self.buffer is not None and time.time() >= next_buf:
                for i in range(self.n):
                    self.samples[i].extend(self.buffer(i))
                next_buf += self.buffer_every_s
            time.sleep(0.001)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        if self.buffer is not None:
            for i in range(self.n):
                self.samples[i].extend(self.buffer(i))

    def at(self, t: float, i: int = 0) -> float:
        """Counter value (J) at wall-clock *t*, interpolated between change points."""
        pts = self.reads[i]
        if not pts:
            raise ValueError("no counter read yet")
        if t <= pts[0][0]:
            return pts[0][1]
        if t >= pts[-1][0]:
            return pts[-1][1]
        lo, hi = 0, len(pts) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if pts[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (ta, va), (tb, vb) = pts[lo], pts[hi]
        return va + (vb - va) * (t - ta) / (tb - ta)

    def delta(self, t0: float, t1: float, i: int = 0) -> float:
        return self.at(t1, i) - self.at(t0, i)


def nvml_reference(indices: list[int]) -> tuple[RefCounter, Any]:
    """A RefCounter over NVML devices *indices* (NVML numbering), recording their sample buffers."""
    import pynvml as nv

    nv.nvmlInit()
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices]
    last = [int(time.time() * 1e6)] * len(handles)

    def read(i: int) -> float:
        return nv.nvmlDeviceGetTotalEnergyConsumption(handles[i]) / 1000.0

    def buffer(i: int) -> list[tuple[float, float]]:
        try:
            vt, ss = nv.nvmlDeviceGetSamples(handles[i], nv.NVML_TOTAL_POWER_SAMPLES, last[i])
        except nv.NVMLError:
            return []
        from greentrack.measure.sources.nvml import value_of

        out = [(s.timeStamp / 1e6, value_of(vt, s.sampleValue) / 1000.0) for s in ss if s.timeStamp > last[i]]
        if out:
            last[i] = max(s.timeStamp for s in ss)
        return sorted(out)

    return RefCounter(read, len(handles), buffer), nv


def mock_reference(source: Any) -> RefCounter:
    """Dry run: a RefCounter over a MockSource's counters and buffer."""
    devs = list(source.devices)

    def read(i: int) -> float:
        return source.energy_j(devs[i]) or 0.0

    def buffer(i: int) -> list[tuple[float, float]]:
        return source.poll(devs[i])

    return RefCounter(read, len(devs), buffer)


# ---- the phased workload -----------------------------------------------------------------------

class Workload:
    """Heavy training, idle, bursty, light: on a GPU with torch, or sleeps in a dry run."""

    def __init__(self, dry: bool, device: str = "cuda:0", scale: float = 1.0) -> None:
        self.dry = dry
        self.scale = scale
        if dry:
            return
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        torch.manual_seed(0)
        width = 8192
        self.model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(4)]).to(
            self.dev, torch.bfloat16)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-6)
        self.x = torch.randn(8192, width, device=self.dev, dtype=torch.bfloat16)
        self.small = torch.randn(1024, 1024, device=self.dev)
        self.train_step()  # warm-up
        self.sync()

    def sync(self) -> None:
        if not self.dry:
            self.torch.cuda.synchronize(self.dev)

    def train_step(self) -> None:
        if self.dry:
            time.sleep(0.02)
            return
        self.opt.zero_grad(set_to_none=True)
        loss = self.model(self.x).float().pow(2).mean()
        loss.backward()
        self.opt.step()

    def heavy(self, seconds: float, mark: Callable[..., None] | None = None) -> int:
        end = time.time() + seconds * self.scale
        n = 0
        while time.time() < end:
            self.train_step()
            self.sync()
            n += 1
            if mark is not None:
                mark(samples=8192)
        return n

    def idle(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def bursty(self, seconds: float, mark: Callable[..., None] | None = None, on_s: float = 0.25,
               off_s: float = 0.25) -> int:
        end = time.time() + seconds * self.scale
        n = 0
        while time.time() < end:
            n += self.heavy(on_s / self.scale, mark)
            time.sleep(off_s * self.scale)
        return n

    def light(self, seconds: float, mark: Callable[..., None] | None = None) -> int:
        end = time.time() + seconds * self.scale
        n = 0
        while time.time() < end:
            if not self.dry:
                for _ in range(20):
                    self.small = (self.small @ self.small).clamp_(-1, 1)
                self.sync()
            time.sleep(0.01)
            n += 1
            if mark is not None:
                mark(samples=1024)
        return n


# phase name, method, seconds (before --scale)
PHASES = [
    ("idle_start", "idle", 3.0),
    ("heavy", "heavy", 8.0),
    ("idle", "idle", 5.0),
    ("bursty", "bursty", 8.0),
    ("heavy_1s", "heavy", 1.0),
    ("light", "light", 6.0),
    ("idle_end", "idle", 3.0),
]


def run_phases(w: Workload, phase: Callable[[str], Any], mark: Callable[..., None] | None,
               guard_s: float = 0.0, margin_s: float = 0.0) -> list[dict]:
    """Run every phase inside ``phase(name)`` context managers; returns the phase records.

    *guard_s* seconds of idle, in no phase, separate consecutive phases; *margin_s* seconds of
    idle open and close each phase (inside it), so its bounds fall where the power is steady.
    """
    out = []
    for i, (name, kind, secs) in enumerate(PHASES):
        if i and guard_s:
            time.sleep(guard_s)
        with phase(name):
            t0 = time.time()
            if margin_s:
                time.sleep(margin_s)
            fn = getattr(w, kind)
            n = fn(secs) if kind == "idle" else fn(secs, mark)
            w.sync()
            if margin_s:
                time.sleep(margin_s)
            t1 = time.time()
        out.append({"name": name, "kind": kind, "t0": t0, "t1": t1, "steps": n or 0})
    return out


class MultiPhase:
    """Enter ``phase(name)`` of several greentrack sessions at once."""

    def __init__(self, sessions: list[Any]) -> None:
        self.sessions = sessions

    def __call__(self, name: str) -> Any:
        from contextlib import ExitStack, contextmanager

        @contextmanager
        def cm() -> Any:
            with ExitStack() as stack:
                for s in self.sessions:
                    stack.enter_context(s.phase(name))
                yield

        return cm()


def pct(a: float, b: float) -> float:
    """Relative difference of *a* against reference *b*, in percent."""
    return (a - b) / b * 100.0 if b else float("nan")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def dump(obj: Any, path: str | None) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    print(text if len(text) < 6000 else text[:6000] + "\n...")


def env_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        pass
    try:
        import pynvml as nv

        nv.nvmlInit()
        info["driver"] = nv.nvmlSystemGetDriverVersion()
        info["nvml"] = nv.nvmlSystemGetNVMLVersion()
        nv.nvmlShutdown()
    except Exception:
        pass
    return info
