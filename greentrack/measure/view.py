"""The read-only view of a run that hook implementations receive (never the Session itself).

Everything here is a copy or a read of what the session already holds: no hardware is read,
nothing can be changed. Exporters and integrations build on this, so its names are stable.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .view_items import DeviceInfo, PhaseMark


def __getattr__(name: str) -> Any:
    """``DeviceInfo`` and ``PhaseMark`` live in :mod:`.view_items`, imported when first asked for."""
    if name in ("DeviceInfo", "PhaseMark"):
        from . import view_items

        return getattr(view_items, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RunView:
    """A read-only view of one running (or just ended) session.

    Attributes are plain values; :attr:`live_energy_j` and :attr:`phases` are read when asked.
    """

    __slots__ = ("_s",)
    _s: Any

    def __init__(self, session: Any) -> None:
        object.__setattr__(self, "_s", session)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RunView is read-only")

    # identity -------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self._s.id)

    @property
    def name(self) -> str:
        return str(self._s.name)

    @property
    def tags(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self._s.tags))

    @property
    def status(self) -> str:
        return str(self._s.status)

    @property
    def started_at(self) -> float | None:
        return self._s.started_at

    @property
    def ended_at(self) -> float | None:
        return self._s.ended_at

    @property
    def job_id(self) -> str | None:
        return self._s.job_id

    @property
    def rank(self) -> int | None:
        return self._s.rank

    @property
    def world_size(self) -> int | None:
        return self._s.world_size

    @property
    def backend(self) -> str:
        return str(self._s.backend)

    # carbon ---------------------------------------------------------------------------------------
    @property
    def region(self) -> str | None:
        it = self._s.intensity
        return None if it is None else it.region

    @property
    def intensity_g_per_kwh(self) -> float | None:
        it = self._s.intensity
        return None if it is None else float(it.g_per_kwh)

    @property
    def intensity_source(self) -> str | None:
        it = self._s.intensity
        return None if it is None else str(it.describe())

    @property
    def pue(self) -> float:
        return float(self._s.pue)

    # measurement ----------------------------------------------------------------------------------
    @property
    def devices(self) -> tuple["DeviceInfo", ...]:
        sampler = self._s.sampler
        from .view_items import DeviceInfo

        return tuple(DeviceInfo(st.device.key, st.device.kind, st.device.index, st.device.name, st.device.uuid,
                                st.device.method, st.device.series_method)
                     for st in (sampler.states if sampler is not None else []))

    @property
    def live_energy_j(self) -> float | None:
        """Energy of all devices so far, as of the sampler's last flush (no hardware read)."""
        return self._s.live_energy_j()

    @property
    def device_energy_j(self) -> Mapping[str, float]:
        """Energy so far per device key (as of the last flush; devices not yet read are left out)."""
        sampler = self._s.sampler
        out: dict[str, float] = {}
        for st in (sampler.states if sampler is not None else []):
            e = self._s._device_energy_so_far(st)
            if e is not None:
                out[st.device.key] = float(e)
        return MappingProxyType(out)

    @property
    def device_energy_span(self) -> Mapping[str, tuple[float, float]]:
        """The time each energy of :attr:`device_energy_j` covers, ``(from, to)`` in unix seconds.

        *to* is when it was read (the sampler's last counter reading; for a device without a
        counter, its last power sample). *from* is where it starts counting: the counter's first
        reading after the start (or the first power sample); the run's totals at its end also hold
        the energy from the run's start to then.
        """
        sampler = self._s.sampler
        out: dict[str, tuple[float, float]] = {}
        for st in (sampler.states if sampler is not None else []):
            if st.device.has_counter and not st.counter_failed and st.counter_last_t is not None:
                # the counter, as Session._device_energy_so_far prefers it
                out[st.device.key] = (float(st.counter_first_t), float(st.counter_last_t))
            elif st.acc.n_raw and st.acc.last_t is not None:
                out[st.device.key] = (float(st.acc.first_t), float(st.acc.last_t))
        return MappingProxyType(out)

    @property
    def steps(self) -> int:
        return int(self._s._steps.steps)

    @property
    def phases(self) -> tuple["PhaseMark", ...]:
        """Ended phases, then the open ones (``ended_at`` None), in start order."""
        from .view_items import PhaseMark

        done = [PhaseMark(n, a, b) for n, a, b in list(self._s._phases)]
        open_ = [PhaseMark(n, a, None) for n, a in list(self._s._open_phases)]
        return tuple(sorted(done + open_, key=lambda p: p.started_at))

    @property
    def current_phase(self) -> str | None:
        """The innermost open phase, or None."""
        open_ = list(self._s._open_phases)
        return open_[-1][0] if open_ else None

    def meter(self) -> Any:
        """A new live-figures meter on this run (:class:`greentrack.measure.live.Meter`); reads no hardware."""
        from .live import Meter

        return Meter(self._s)

    @property
    def elapsed_s(self) -> float:
        t0 = self._s.started_at
        return 0.0 if t0 is None else (self._s.ended_at or time.time()) - t0

    def __repr__(self) -> str:
        return f"<greentrack.RunView {self.name!r} {self.id} {self.status}>"
