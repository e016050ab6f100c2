"""A stand-in for pynvml's power-limit and clock API, its state in a file so it outlives a process.

It plays the driver: ``limit_mw`` of each GPU survives the greentrack process that changed it,
as a real GPU's limit survives a SIGKILLed ``greentrack tune``. Errors are pynvml's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pynvml as real

NVMLError = real.NVMLError
NVML_ERROR_NO_PERMISSION = real.NVML_ERROR_NO_PERMISSION
NVML_ERROR_NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED


class StandInNVML:
    MIN_MW, MAX_MW, DEFAULT_MW = 200_000, 700_000, 700_000

    NVMLError = real.NVMLError
    NVML_ERROR_NO_PERMISSION = real.NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED

    def __init__(self, path: str | os.PathLike[str], gpus: int = 1, refuse: bool = False) -> None:
        self.path = Path(path)
        self.refuse = refuse
        if not self.path.exists():
            self._save({str(i): {"limit_mw": self.DEFAULT_MW, "clock_mhz": None} for i in range(gpus)})

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def _save(self, d: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(d))
        os.replace(tmp, self.path)

    def limit_w(self, i: int = 0) -> float:
        return self._load()[str(i)]["limit_mw"] / 1000.0

    def clock_mhz(self, i: int = 0) -> int | None:
        return self._load()[str(i)]["clock_mhz"]

    # the pynvml API greentrack uses
    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if str(i) not in self._load():
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return i

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> tuple[int, int]:
        return self.MIN_MW, self.MAX_MW

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return self.DEFAULT_MW

    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int:
        return int(self._load()[str(h)]["limit_mw"])

    def nvmlDeviceSetPowerManagementLimit(self, h: int, mw: int) -> None:
        if self.refuse:
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        if not self.MIN_MW <= mw <= self.MAX_MW:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        d = self._load()
        d[str(h)]["limit_mw"] = int(mw)
        self._save(d)

    def nvmlDeviceSetGpuLockedClocks(self, h: int, lo: int, hi: int) -> None:
        if self.refuse:
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        d = self._load()
        d[str(h)]["clock_mhz"] = int(hi)
        self._save(d)

    def nvmlDeviceResetGpuLockedClocks(self, h: int) -> None:
        d = self._load()
        d[str(h)]["clock_mhz"] = None
        self._save(d)
