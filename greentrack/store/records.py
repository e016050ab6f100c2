"""The shapes of stored rows, shared by the store and its readers."""

from __future__ import annotations


def summarise_devices(names: list[str]) -> str:
    """``["NVIDIA H200", "NVIDIA H200", "cpu"]`` -> ``"2x NVIDIA H200, cpu"``."""
    if not names:
        return ""
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return ", ".join(f"{c}x {n}" if c > 1 else n for n, c in out.items())
