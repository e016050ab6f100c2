"""NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py). The only module importing pynvml.

Per device, at open, the best available method is chosen and recorded:

- total: the energy counter ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and newer),
  read at start, end and each flush, never on the training thread;
- series: the driver's power-sample buffer ``nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)``
  (about 50 Hz on Hopper, read about once a second), else the instant power field
  ``NVML_FI_DEV_POWER_INSTANT`` polled at 10 Hz, else ``nvmlDeviceGetPowerUsage`` (on Hopper
  a one-second average that lags the load: recorded as method ``average``).

Forcing a method (validation, or a driver that misreports): ``GREENTRACK_NVML_COUNTER=off``
ignores the energy counter (totals then come from the series), ``GREENTRACK_NVML_SERIES=``
``buffer``, ``instant`` or ``average`` picks the series method.

Device selection honours ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs, ``MIG-`` ids; a MIG
instance is measured as its whole parent GPU). Under torchrun (``LOCAL_RANK`` set) a session
measures only its own rank's GPU unless ``GREENTRACK_ALL_GPUS=1``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from ...errors import ConfigError
from ...plugins import hookimpl
from ...settings import env as settings_env
from .base import Device, SourceUnavailable, timed_read

_pynvml: Any = None

SERIES_METHODS = ("buffer", "instant", "average")
ENV_SERIES = "GREENTRACK_NVML_SERIES"
ENV_COUNTER = "GREENTRACK_NVML_COUNTER"
# a driver whose sample timestamps are further than this from the wall clock uses another
# time base: the offset is measured at open and removed
CLOCK_OFFSET_LIMIT_S = 2.0


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


def _err_code(exc: BaseException) -> Any:
    return getattr(exc, "value", None)


# nvmlValueType_t -> field of the c_nvmlValue_t union
_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def value_of(value_type: int, value: Any) -> float:
    """A ``c_nvmlValue_t`` union read as the type NVML says it holds."""
    return float(getattr(value, _VALUE_FIELDS.get(int(value_type), "uiVal")))


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
            parent = _mig_parent(nv, count, tok)
            if parent is None:
                break
            chosen.append((parent, f"MIG instance {tok}: the whole parent GPU is measured"))
            continue
        want = tok if tok.startswith("GPU-") else "GPU-" + tok
        hits = [i for i, u in enumerate(uuids) if u.startswith(want)]
        if len(hits) != 1:
            break
        chosen.append((hits[0], None))
    seen: set[int] = set()
    out = []
    for i, n in chosen:
        if i not in seen:
            seen.add(i)
            out.append((i, n))
    return out


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
    if settings_env("GREENTRACK_ALL_GPUS") == "1":
        return indices
    lr = os.environ.get("LOCAL_RANK")
    if lr is None or not lr.isdigit() or len(indices) <= 1:
        return indices
    return [indices[int(lr) % len(indices)]]


def _env_choice() -> tuple[str | None, bool]:
    """(forced series method or None, counter allowed) from the environment."""
    series = (settings_env(ENV_SERIES) or "").strip().lower() or None
    if series is not None and series not in SERIES_METHODS:
        raise ConfigError(f"{ENV_SERIES}={series!r}: use one of {', '.join(SERIES_METHODS)}")
    raw = (settings_env(ENV_COUNTER) or "").strip().lower()
    if raw and raw not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"{ENV_COUNTER}={raw!r}: use on or off")
    return series, raw not in ("off", "0", "false", "no")


class NVMLSource:
    """Every visible NVIDIA GPU (or this rank's one), measured as well as the GPU allows.

    Args:
        nv: the pynvml module (or a stand-in with the same API); imported when None.
        clock: wall-clock seconds, used for instant and average readings.
        poll_interval_s: how often the sampler polls; 1 s with a sample buffer, else 0.1 s.
        series: force ``buffer``, ``instant`` or ``average`` (default: ``GREENTRACK_NVML_SERIES``
            or the best the GPU offers).
        counter: use the energy counter when there is one (default: ``GREENTRACK_NVML_COUNTER``,
            on).
    """

    name = "nvml"
    kind = "gpu"

    def __init__(self, nv: Any | None = None, clock: Callable[[], float] = time.time,
                 poll_interval_s: float | None = None, series: str | None = None,
                 counter: bool | None = None) -> None:
        env_series, env_counter = _env_choice()
        series = series or env_series
        if series is not None and series not in SERIES_METHODS:
            raise ConfigError(f"unknown NVML series method {series!r}; use {', '.join(SERIES_METHODS)}")
        use_counter = env_counter if counter is None else counter
        nv = nv or _load()
        self.nv = nv
        self.clock = clock
        self._inited = False
        try:
            nv.nvmlInit()
            self._inited = True
        except Exception as exc:
            raise SourceUnavailable(f"NVML did not initialise ({_text(exc)})") from None
        try:
            count = nv.nvmlDeviceGetCount()
            picked = rank_filter(select_indices(nv, count, parse_visible(os.environ.get("CUDA_VISIBLE_DEVICES"))))
            if not picked:
                raise SourceUnavailable("NVML sees no usable GPU (check CUDA_VISIBLE_DEVICES)")
            self.handles: dict[str, Any] = {}
            self.devices: list[Device] = []
            self._last_ts: dict[str, int] = {}  # newest buffer timestamp seen, driver µs
            self._offset_us: dict[str, int] = {}  # driver time base minus wall clock, µs
            self.caps: dict[str, dict[str, Any]] = {}  # what each GPU offers (see probe)
            for idx, note in picked:
                h = nv.nvmlDeviceGetHandleByIndex(idx)
                dev = Device(key=f"gpu{idx}", kind="gpu", index=idx, name=_text(nv.nvmlDeviceGetName(h)),
                             uuid=_text(nv.nvmlDeviceGetUUID(h)))
                if note:
                    dev.info["note"] = note
                self.handles[dev.key] = h
                caps = self.probe(h)
                self.caps[dev.key] = caps
                dev.has_counter = caps["counter"] and use_counter
                if caps["counter"] and not use_counter:
                    dev.info["counter"] = "ignored (GREENTRACK_NVML_COUNTER=off)"
                dev.series_method = self._choose(dev, caps, series)
                self._offset_us[dev.key] = caps["buffer_offset_us"] or 0
                self._last_ts[dev.key] = int(clock() * 1e6) + self._offset_us[dev.key]
                self.devices.append(dev)
        except (SourceUnavailable, ConfigError):
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SourceUnavailable(f"NVML failed while listing GPUs ({_text(exc)})") from None
        fast = any(d.series_method != "buffer" for d in self.devices)
        self.poll_interval_s = poll_interval_s or (0.1 if fast else 1.0)
        try:
            self.driver: str | None = _text(nv.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver = None

    # probing ---------------------------------------------------------------------------------
    def probe(self, h: Any) -> dict[str, Any]:
        """What this GPU offers: counter, sample buffer (and its clock offset), instant field, average."""
        nv = self.nv
        caps: dict[str, Any] = {"counter": False, "buffer": False, "instant": False, "average": False,
                                "buffer_offset_us": None, "buffer_held": 0, "buffer_period_ms": None}
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(h)
            caps["counter"] = True
        except Exception:
            pass
        try:
            _vt, samples = nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, 0)
            caps["buffer"] = True
            if samples:
                stamps = sorted(int(s.timeStamp) for s in samples)
                caps["buffer_held"] = len(stamps)
                if len(stamps) > 1:
                    caps["buffer_period_ms"] = (stamps[-1] - stamps[0]) / 1e3 / (len(stamps) - 1)
                newest = stamps[-1]
                off = newest - int(self.clock() * 1e6)
                caps["buffer_offset_us"] = off if abs(off) > CLOCK_OFFSET_LIMIT_S * 1e6 else 0
        except Exception as exc:
            # "not found": the buffer exists but holds nothing yet
            if _err_code(exc) == getattr(nv, "NVML_ERROR_NOT_FOUND", object()):
                caps["buffer"] = True
        caps["instant"] = self._instant(h) is not None
        try:
            nv.nvmlDeviceGetPowerUsage(h)
            caps["average"] = True
        except Exception:
            pass
        return caps

    @staticmethod
    def _choose(dev: Device, caps: dict[str, Any], forced: str | None) -> str:
        if forced is not None:
            if caps.get(forced):
                dev.info["series"] = f"forced {forced}"
                return forced
            dev.info["series"] = f"{forced} asked for but not offered by this GPU"
        for m in SERIES_METHODS:
            if caps.get(m):
                return m
        return "none"

    def _instant_read(self, h: Any) -> tuple[float, int] | None:
        """(watts, driver timestamp µs) of the instant power field, or None."""
        nv = self.nv
        try:
            v = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
        except Exception:
            return None
        if int(getattr(v, "nvmlReturn", 0)) != 0:
            return None
        return value_of(getattr(v, "valueType", 1), v.value) / 1000.0, int(getattr(v, "timestamp", 0))

    def _instant(self, h: Any) -> float | None:
        r = self._instant_read(h)
        return None if r is None else r[0]

    # reads -------------------------------------------------------------------------------------
    def poll(self, device: Device) -> list[tuple[float, float]]:
        """New power samples of *device* (wall-clock seconds, watts), oldest first."""
        nv = self.nv
        h = self.handles[device.key]
        method = device.series_method
        if method == "buffer":
            key = device.key
            since = self._last_ts[key]
            try:
                vtype, samples = nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, since)
            except Exception as exc:
                if _err_code(exc) == getattr(nv, "NVML_ERROR_NOT_FOUND", object()):
                    return []
                raise
            off = self._offset_us[key]
            out = []
            newest = since
            for s in samples:
                ts = int(s.timeStamp)
                if ts <= since:
                    continue
                if ts > newest:
                    newest = ts
                out.append(((ts - off) / 1e6, value_of(vtype, s.sampleValue) / 1000.0))
            out.sort()
            self._last_ts[key] = newest
            return out
        if method == "instant":
            t, r = timed_read(lambda: self._instant_read(h), self.clock)
            if r is None:
                raise RuntimeError("instant power field unavailable")
            return [(t, r[0])]
        if method == "average":
            t, mw = timed_read(lambda: nv.nvmlDeviceGetPowerUsage(h), self.clock)
            return [(t, float(mw) / 1000.0)]
        return []

    def energy_j(self, device: Device) -> float | None:
        """The energy counter in joules (mJ since driver load), or None without one."""
        if not device.has_counter:
            return None
        return float(self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handles[device.key])) / 1000.0

    def close(self) -> None:
        """Shut NVML down (NVML counts init/shutdown pairs, so other users are unaffected)."""
        if not self._inited:
            return
        self._inited = False
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass


# what an NVIDIA driver leaves on Linux (WSL 2: /dev/dxg); without any, NVML cannot answer
_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")


def from_settings(settings: Any) -> NVMLSource:
    if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in _DRIVER_PATHS):
        # no driver: skip importing pynvml and failing nvmlInit (about 15 ms on a CPU-only CI runner)
        raise SourceUnavailable("no NVIDIA driver here (no /dev/nvidiactl)")
    return NVMLSource(poll_interval_s=getattr(settings, "sample_interval_s", None))


@hookimpl
def greentrack_register_sources(register: Callable[..., None]) -> None:
    register("nvml", from_settings, priority=100, auto=True)
