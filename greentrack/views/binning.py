"""Binning power series for charts and sparklines (numpy, imported inside the functions)."""

from __future__ import annotations

from typing import Any


def bin_mean(t: Any, p: Any, t0: float, t1: float, nbins: int) -> tuple[Any, Any, Any, Any]:
    """Split ``[t0, t1]`` into *nbins* equal bins: ``(centres, mean, min, max)``; empty bins are NaN."""
    import numpy as np

    nbins = max(1, int(nbins))
    span = max(t1 - t0, 1e-9)
    edges_w = span / nbins
    centres = t0 + (np.arange(nbins) + 0.5) * edges_w
    if len(t) == 0:
        nan = np.full(nbins, np.nan)
        return centres, nan, nan.copy(), nan.copy()
    # a sample closes the interval ending at its time: one exactly on a bin edge belongs to the bin before
    idx = np.clip(np.ceil((t - t0) / edges_w).astype(np.int64) - 1, 0, nbins - 1)
    counts = np.bincount(idx, minlength=nbins)
    sums = np.bincount(idx, weights=p, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    lo = np.full(nbins, np.inf)
    hi = np.full(nbins, -np.inf)
    _reduce_sorted(idx, p, lo, np.minimum)
    _reduce_sorted(idx, p, hi, np.maximum)
    empty = counts == 0
    if empty.any():
        # a sample is the average over the interval ending at its time: a bin with no sample of
        # its own lies inside the interval of the next sample, unless that is a real gap
        spacing = float(np.median(np.diff(t))) if len(t) > 1 else edges_w
        nxt = np.searchsorted(t, centres[empty])
        ok = nxt < len(t)
        nxt_c = np.minimum(nxt, len(t) - 1)
        prev_t = np.where(nxt_c > 0, t[np.maximum(nxt_c - 1, 0)], t[0] - spacing)
        ok &= (t[nxt_c] - prev_t) <= 3 * max(spacing, 1e-9) + 1e-9
        ok &= centres[empty] >= t[0] - spacing
        fill = np.where(ok, p[nxt_c], np.nan)
        mean[empty] = fill
        lo[empty] = fill
        hi[empty] = fill
    return centres, mean, lo, hi


def _reduce_sorted(idx: Any, p: Any, out: Any, op: Any) -> None:
    """Per-bin min or max (``op.at`` is slow on millions of points; sorted bins are contiguous runs)."""
    import numpy as np

    if len(idx) > 1 and not bool(np.all(idx[1:] >= idx[:-1])):
        order = np.argsort(idx, kind="stable")
        idx, p = idx[order], p[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    out[idx[starts]] = op.reduceat(p, starts)


def total_power(means: list[Any]) -> Any:
    """Sum of per-device binned mean powers (from :func:`bin_mean`); NaN only where no device has a value."""
    import numpy as np

    stack = np.vstack(means)
    total = np.nansum(stack, axis=0)
    total[np.isnan(stack).all(axis=0)] = np.nan
    return total
