"""NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py). The only module importing pynvml.

Per device, at open, the best available method is chosen and recorded:

- total: the energy counter ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and newer),
  read at start, end and each flush, never on the training thread;
- series: the driver's power-sample buffer ``nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)``
  (about 50 Hz on Hopper, read about once a second), else the instant power field
  ``NVML_FI_DEV_POWER_INSTANT`` polled at 10 Hz, else ``nvmlDeviceGetPowerUsage`` (on Hopper
  a one-second average that lags the load: recorded as method ``average``).

Device selection honours ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs, ``MIG-`` ids; a MIG
instance is measured as its whole parent GPU). Under torchrun (``LOCAL_RANK`` set) a session
measures only its own rank's GPU unless ``GREENTRACK_ALL_GPUS=1``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..plugins import hookimpl
from .base import Device, SourceUnavailable

_pynvml: Any = None


def _load() -> Any:
    global _pynvml
    if _pynvml is None:
        try:
            import pynvml  # noqa: PLC0415 - imported only here, only when asked
        except Exception as exc:  # ImportError, or a broken install
            raise SourceUnavailable(f"pynvml is not importable ({exc})") from None
        _pynvml = pynvml
    return _pynvml


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def parse_visible(raw: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of tokens; None when unset. CUDA stops at a bad token."""
    if raw is None:
        return None
    out = []
    for tok in raw.split(","):
        tok = tok.strip()
        if not tok:
            break
        if tok.lstrip("-").isdigit() and int(tok) < 0:
            break
        out.append(tok)
    return out


def select_indices(nv: Any, count: int, visible: list[str] | None) -> list[tuple[int, str | None]]:
    """NVML indices of the GPUs this process should measure, with a note for MIG tokens."""
    if visible is None:
        return [(i, None) for i in range(count)]
    uuids: list[str] | None = None
    chosen: list[tuple[int, str | None]] = []
    for tok in visible:
        if tok.isdigit():
            idx = int(tok)
            if idx >= count:
                break  # CUDA ignores this and everything after it
            chosen.append((idx, None))
            continue
        if uuids is None:
            uuids = [_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        if tok.startswith("MIG-"):
            idx = _mig_parent(nv, count, tok)
            if idx is None:
                break
            chosen.append((idx, f"MIG instance {tok}: the whole parent GPU is measured"))
            continue
        want = tok if tok.startswith("GPU-") else "GPU-" + tok
        hits = [i for i, u in enumerate(uuids) if u.startswith(want)]
        if len(hits) != 1:
            break
        chosen.append((hits[0], None))
    seen: set[int] = set()
    return [(i, n) for i, n in chosen if not (i in seen or seen.add(i))]


def _mig_parent(nv: Any, count: int, tok: str) -> int | None:
    try:
        handle = nv.nvmlDeviceGetHandleByUUID(tok.encode() if isinstance(tok, str) else tok)
        parent = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        puuid = _text(nv.nvmlDeviceGetUUID(parent))
    except Exception:
        return 0 if count == 1 else None
    for i in range(count):
        if _text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) == puuid:
            return i
    return None


def rank_filter(indices: list[tuple[int, str | None]]) -> list[tuple[int, str | None]]:
    """Under torchrun, keep only the GPU of this rank (``LOCAL_RANK``)."""
    if os.environ.get("GREENTRACK_ALL_GPUS") == "1":
        return indices
    lr = os.environ.get("LOCAL_RANK")
    if lr is None or not lr.isdigit() or len(indices) <= 1:
        return indices
    return [indices[int(lr) % len(indices)]]


class NVMLSource:
    """Every visible NVIDIA GPU (or this rank's one), measured as well as the GPU allows."""

    name = "nvml"
    kind = "gpu"

    def __init__(self, nv: Any | None = None, clock: Callable[[], float] = time.time,
                 poll_interval_s: float | None = None) -> None:
        nv = nv or _load()
        self.nv = nv
        self.clock = clock
        try:
            nv.nvmlInit()
        except Exception as exc:
            raise SourceUnavailable(f"NVML did not initialise ({_text(exc)})") from None
        try:
            count = nv.nvmlDeviceGetCount()
            picked = rank_filter(select_indices(nv, count, parse_visible(os.environ.get("CUDA_VISIBLE_DEVICES"))))
            if not picked:
                raise SourceUnavailable("NVML sees no usable GPU (check CUDA_VISIBLE_DEVICES)")
            self.handles: dict[str, Any] = {}
            self.devices: list[Device] = []
            self._last_ts: dict[str, int] = {}
            start_us = int(clock() * 1e6)
            for idx, note in picked:
                h = nv.nvmlDeviceGetHandleByIndex(idx)
                dev = Device(key=f"gpu{idx}", kind="gpu", index=idx, name=_text(nv.nvmlDeviceGetName(h)),
                             uuid=_text(nv.nvmlDeviceGetUUID(h)))
                if note:
                    dev.info["note"] = note
                dev.has_counter = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
                dev.series_method = self._probe_series(h, start_us)
                self.handles[dev.key] = h
                self._last_ts[dev.key] = start_us
                self.devices.append(dev)
        except SourceUnavailable:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SourceUnavailable(f"NVML failed while listing GPUs ({_text(exc)})") from None
        fast = any(d.series_method != "buffer" for d in self.devices)
        self.poll_interval_s = poll_interval_s or (0.1 if fast else 1.0)
        try:
            self.driver = _text(nv.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver = None

    @staticmethod
    def _try(fn: Callable[[], Any]) -> bool:
        try:
            fn()
            return True
        except Exception:
            return False

    def _probe_series(self, h: Any, since_us: int) -> str:
        nv = self.nv
        if os.environ.get("GREENTRACK_NVML_SERIES") in ("instant", "average"):
            forced = os.environ["GREENTRACK_NVML_SERIES"]
        else:
            forced = None
        if forced is None:
            try:
                nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, since_us)
                return "buffer"
            except Exception as exc:
                # "not found" means the buffer exists but holds nothing newer yet
                if getattr(exc, "value", None) == getattr(nv, "NVML_ERROR_NOT_FOUND", object()):
                    return "buffer"
        if forced in (None, "instant") and self._instant(h) is not None:
            return "instant"
        return "average"

    def _instant(self, h: Any) -> float | None:
        nv = self.nv
        try:
            vals = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])
            v = vals[0]
            if getattr(v, "nvmlReturn", 0) != 0:
                return None
            return float(v.value.uiVal) / 1000.0
        except Exception:
            return None

    def poll(self, device: Device) -> list[tuple[float, float]]:
        nv = self.nv
        h = self.handles[device.key]
        if device.series_method == "buffer":
            try:
                _vtype, samples = nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, self._last_ts[device.key])
            except Exception as exc:
                if getattr(exc, "value", None) == getattr(nv, "NVML_ERROR_NOT_FOUND", object()):
                    return []
                raise
            out = []
            last = newest = self._last_ts[device.key]
            for s in samples:
                ts = int(s.timeStamp)
                if ts <= last:
                    continue
                newest = max(newest, ts)
                out.append((ts / 1e6, float(s.sampleValue.uiVal) / 1000.0))
            out.sort()
            self._last_ts[device.key] = newest
            return out
        if device.series_method == "instant":
            w = self._instant(h)
            if w is None:
                raise RuntimeError("instant power field unavailable")
            return [(self.clock(), w)]
        return [(self.clock(), float(nv.nvmlDeviceGetPowerUsage(h)) / 1000.0)]

    def energy_j(self, device: Device) -> float | None:
        if not device.has_counter:
            return None
        return float(self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handles[device.key])) / 1000.0

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass


def from_settings(settings: Any) -> NVMLSource:
    return NVMLSource(poll_interval_s=getattr(settings, "sample_interval_s", None))


@hookimpl
def greentrack_register_sources(register: Callable[..., None]) -> None:
    register("nvml", from_settings, priority=100, auto=True)
