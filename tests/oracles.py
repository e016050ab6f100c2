"""Reference calculations the tests check greentrack against (written out by hand, no greentrack code)."""

from __future__ import annotations

from typing import Sequence


def trapezoid_j(times: Sequence[float], powers: Sequence[float]) -> float:
    """Energy of point samples by the trapezoid rule. Needs sorted *times*."""
    if len(times) != len(powers):
        raise ValueError("times and powers differ in length")
    total = 0.0
    for i in range(1, len(times)):
        dt = times[i] - times[i - 1]
        if dt > 0:
            total += 0.5 * (powers[i] + powers[i - 1]) * dt
    return total
