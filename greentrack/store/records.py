"""The shapes of stored rows, shared by the store and its readers."""

from __future__ import annotations

from typing import Iterable


def summarise_devices(names: list[str]) -> str:
    """``["NVIDIA H200", "NVIDIA H200", "cpu"]`` -> ``"2x NVIDIA H200, cpu"``."""
    if not names:
        return ""
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return ", ".join(f"{c}x {n}" if c > 1 else n for n, c in out.items())


def energy_method(methods: Iterable[str | None]) -> str | None:
    """What a run's energy is made of, from its devices' methods: ``measured``, ``model`` (estimated
    from CPU time by the cpu-model source, not measured), ``mixed``, or None when nothing was."""
    kinds = {"model" if m == "model" else "measured" for m in methods if m and m != "none"}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"
