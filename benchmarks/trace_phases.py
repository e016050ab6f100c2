"""Each phase of a recorded accuracy trace: the driver's power samples integrated over it against the
energy counter's change points interpolated over it, beside greentrack's figure for the phase.

    python3 benchmarks/trace_phases.py reports/h200/run9_trace.json   # the CSV beside it is read too

The trace is what ``h200_accuracy.py --trace DIR`` writes (``h200_trace.json`` and ``h200_trace.csv``,
renamed in ``reports/h200/``). A phase's error that the raw samples share is the samples' (the
driver's power readings against its own energy counter), not greentrack's attribution.
"""

from __future__ import annotations

import bisect
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h200_accuracy import raw_buffer_j  # noqa: E402


def main() -> int:
    meta_path = Path(sys.argv[1])
    meta = json.loads(meta_path.read_text())
    with open(meta_path.with_suffix(".csv"), newline="") as fh:
        samples = [(float(t), float(p)) for t, p in list(csv.reader(fh))[1:]]
    ct = [c[0] for c in meta["counter"]]
    cj = [c[1] for c in meta["counter"]]

    def counter_at(t: float) -> float:
        k = bisect.bisect_left(ct, t)
        if k <= 0:
            return cj[0]
        if k >= len(ct):
            return cj[-1]
        return cj[k - 1] + (cj[k] - cj[k - 1]) * (t - ct[k - 1]) / (ct[k] - ct[k - 1])

    ours = {p["name"]: p["energy_j"] for p in meta["greentrack"]["phases"]}
    print(f"{'phase':<12} {'counter J':>10} {'samples J':>10} {'samples':>9} {'greentrack J':>13} {'greentrack':>11}")
    for ph in meta["phases"]:
        ref = counter_at(ph["t1"]) - counter_at(ph["t0"])
        raw = raw_buffer_j(samples, ph["t0"], ph["t1"])
        mine = ours.get(ph["name"])
        raw_s = f"{raw:10.1f} {(raw / ref - 1) * 100:+8.2f}%" if raw is not None else f"{'-':>10} {'-':>9}"
        mine_s = f"{mine:13.1f} {(mine / ref - 1) * 100:+10.2f}%" if mine is not None else ""
        print(f"{ph['name']:<12} {ref:10.1f} {raw_s} {mine_s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
