"""Changing a GPU's power limit and SM clocks through NVML, and always putting them back.

Used by ``greentrack tune``; nothing else changes GPU settings, and only when asked. Before the
first change to a device, its original settings are written to a state file
(``$XDG_STATE_HOME/greentrack/gpu-settings.json``, or ``GREENTRACK_GPU_STATE``). The original
settings are restored by :meth:`GPUControl.restore` (on normal exit, on an exception and on
SIGTERM/SIGHUP through :func:`restoring`), and, after a SIGKILL or a crash, by
:func:`restore_pending` at the next start of ``greentrack tune`` (or ``greentrack tune --restore``).

A driver or a container that forbids changes (NVML "insufficient permissions" / "not
supported") raises :class:`ControlRefused` with one line saying so.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import GreentrackError
from ..settings import env as settings_env


class ControlRefused(GreentrackError):
    """The driver or the container does not allow this change."""


def state_path() -> Path:
    """Where the original settings are kept while they are changed."""
    p = settings_env("GREENTRACK_GPU_STATE")
    if p:
        return Path(p).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "greentrack" / "gpu-settings.json"


def _nvml(nv: Any | None) -> Any:
    if nv is not None:
        return nv
    try:
        import pynvml
    except Exception as exc:
        raise ControlRefused(f"pynvml is not importable ({exc})") from None
    return pynvml


class GPUControl:
    """Power limits (W) and locked SM clocks (MHz) of NVML devices, with a restore record."""

    def __init__(self, nv: Any | None = None, path: str | os.PathLike[str] | None = None) -> None:
        self.nv = _nvml(nv)
        self.path = Path(path) if path is not None else state_path()
        self._lock = threading.Lock()
        try:
            self.nv.nvmlInit()
        except Exception as exc:
            raise ControlRefused(f"NVML cannot start here ({_why(self.nv, exc)})") from None

    def _h(self, index: int) -> Any:
        return self.nv.nvmlDeviceGetHandleByIndex(index)

    def limits_w(self, index: int) -> dict[str, float]:
        """``{"min", "max", "default", "current"}`` power limits of device *index*, in watts."""
        h = self._h(index)
        lo, hi = self.nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
        return {"min": lo / 1000.0, "max": hi / 1000.0,
                "default": self.nv.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0,
                "current": self.nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0}

    def _record(self, index: int) -> None:
        """Write the device's original settings to the state file, once, before its first change."""
        state = _read(self.path)
        key = str(index)
        if key in state.get("devices", {}):
            return
        lim = self.limits_w(index)
        state.setdefault("devices", {})[key] = {"power_limit_w": lim["current"], "clocks_locked": False}
        state["pid"] = os.getpid()
        _write(self.path, state)

    def set_power_limit(self, index: int, watts: float) -> None:
        """Set device *index*'s power limit (within its constraints)."""
        lim = self.limits_w(index)
        if not lim["min"] <= watts <= lim["max"]:
            raise GreentrackError(f"power limit {watts:g} W is outside GPU {index}'s range "
                                  f"{lim['min']:g}-{lim['max']:g} W")
        with self._lock:
            self._record(index)
            try:
                self.nv.nvmlDeviceSetPowerManagementLimit(self._h(index), int(round(watts * 1000)))
            except Exception as exc:
                raise ControlRefused(f"setting GPU {index}'s power limit is not allowed here "
                                     f"({_why(self.nv, exc)})") from None

    def lock_clocks(self, index: int, mhz: int) -> None:
        """Lock device *index*'s SM clock at *mhz*."""
        with self._lock:
            self._record(index)
            state = _read(self.path)
            state["devices"][str(index)]["clocks_locked"] = True
            _write(self.path, state)
            try:
                self.nv.nvmlDeviceSetGpuLockedClocks(self._h(index), int(mhz), int(mhz))
            except Exception as exc:
                raise ControlRefused(f"locking GPU {index}'s clocks is not allowed here "
                                     f"({_why(self.nv, exc)})") from None

    def restore(self) -> list[str]:
        """Put every changed device back as it was; returns one line per device restored."""
        with self._lock:
            return _restore(self.nv, self.path)


def _restore(nv: Any, path: Path) -> list[str]:
    state = _read(path)
    done = []
    failed = []
    for key, orig in (state.get("devices") or {}).items():
        h = nv.nvmlDeviceGetHandleByIndex(int(key))
        try:
            if orig.get("clocks_locked"):
                nv.nvmlDeviceResetGpuLockedClocks(h)
            nv.nvmlDeviceSetPowerManagementLimit(h, int(round(float(orig["power_limit_w"]) * 1000)))
            done.append(f"GPU {key}: power limit back to {float(orig['power_limit_w']):g} W"
                        + (", SM clocks unlocked" if orig.get("clocks_locked") else ""))
        except Exception as exc:
            failed.append(f"GPU {key}: could not restore ({_why(nv, exc)}); the record stays in {path}")
    if not failed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return done + failed


def restore_pending(nv: Any | None = None, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Restore settings a previous, killed ``greentrack tune`` left changed (from its state file)."""
    p = Path(path) if path is not None else state_path()
    if not p.exists():
        return []
    state = _read(p)
    pid = state.get("pid")
    if pid and pid != os.getpid() and _alive(int(pid)):
        return [f"GPU settings are being changed by process {pid} (greentrack tune); not touching them"]
    nv = _nvml(nv)
    nv.nvmlInit()
    return _restore(nv, p)


@contextmanager
def restoring(control: GPUControl) -> Iterator[GPUControl]:
    """Restore on leaving, on an exception, and on SIGTERM or SIGHUP (then the signal's usual effect)."""
    prev: dict[Any, Any] = {}
    main = threading.current_thread() is threading.main_thread()

    def on_signal(signum: int, _frame: Any) -> None:
        control.restore()
        handler = prev.get(signum)
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    if main:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            prev[signum] = signal.signal(signum, on_signal)
    try:
        yield control
    finally:
        control.restore()
        if main:
            for signum, h in prev.items():
                signal.signal(signum, h if h is not None else signal.SIG_DFL)


def _why(nv: Any, exc: BaseException) -> str:
    code = getattr(exc, "value", None)
    names = {getattr(nv, "NVML_ERROR_NO_PERMISSION", 4): "insufficient permissions",
             getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3): "not supported by this GPU or driver"}
    return names.get(code, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except ValueError:
        raise GreentrackError(f"{path} is not a greentrack GPU state file; remove it after checking the GPU's "
                              "settings with nvidia-smi") from None


def _write(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, path)
