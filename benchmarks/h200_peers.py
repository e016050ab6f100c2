"""CodeCarbon's and Zeus's totals on the H200, under both definitions the reports use.

    python3 benchmarks/h200_peers.py reports/h200/run*_accuracy*.json

Reads the JSON that ``benchmarks/h200_accuracy.py --peers`` wrote and prints, per run and peer, its
energy against the NVML counter over two windows (see docs/accuracy.md):

- ``vs inner``: the window the peer measured, from its ``start()`` returning to its ``stop()`` being
  called (what the README quotes: "CodeCarbon +0.02 to +0.06 %");
- ``err_pct``: the script's own field, against the mean of that window and the outer one, from the
  ``start()`` call to the ``stop()`` return. CodeCarbon's ``start()`` takes 1.8-2.1 s, so the outer
  window holds ~2 % more (idle) energy and ``err_pct`` comes out near -1 %.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(paths: list[str]) -> list[tuple[str, str, float, float, float, float, float, float]]:
    out = []
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, p in sorted((data.get("peers") or {}).items()):
            a, b, _c, _e = p["window"]
            e, inner, outer = p["energy_j"], p["ref_inner_j"], p["ref_outer_j"]
            out.append((Path(path).stem, name, e, inner, outer, (e / inner - 1) * 100, p["err_pct"], b - a))
    return out


def main() -> int:
    paths = sys.argv[1:]
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(f"{'run':<40} {'peer':<10} {'peer J':>9} {'inner J':>9} {'outer J':>9} {'vs inner':>9} {'err_pct':>8} "
          f"{'start() s':>9}")
    for run, name, e, inner, outer, vs_inner, err, start_s in rows(paths):
        print(f"{run:<40} {name:<10} {e:>9.1f} {inner:>9.1f} {outer:>9.1f} {vs_inner:>+8.3f}% {err:>+7.3f}% "
              f"{start_s:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
