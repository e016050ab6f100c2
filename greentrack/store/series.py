"""Fast decoding of stored power series as numpy arrays (the store's ``read_series(..., arrays=True)``).

The store's own :func:`greentrack.store.codec.decode` is pure Python (fine for a short run); a 24-hour
10 Hz run of 8 GPUs holds about 7 million points, which this module decodes with numpy in well
under a second. numpy is imported inside the functions, never at ``import greentrack``. No SQL here:
the chunks come from the store.
"""

from __future__ import annotations

import zlib
from typing import Any


def decode_np(blob: bytes, base_t: float) -> tuple[Any, Any]:
    """numpy twin of :func:`greentrack.store.codec.decode`: ``(times_s, powers_w)`` float64 arrays."""
    import numpy as np

    raw = np.frombuffer(zlib.decompress(blob), dtype=np.int32)
    n = int(raw[0])
    if n < 0 or len(raw) < 1 + 2 * n:
        raise ValueError("series chunk shorter than its header says")
    t = np.cumsum(raw[1:1 + n], dtype=np.int64).astype(np.float64) / 1000.0 + base_t
    p = np.cumsum(raw[1 + n:1 + 2 * n], dtype=np.int64).astype(np.float64) / 10.0
    return t, p


def read_series_np(store: Any, run_id: str) -> dict[str, tuple[Any, Any]]:
    """``{device_key: (times, powers)}`` for one run, as numpy arrays, time-ordered per device."""
    return store.read_series(run_id, arrays=True)
