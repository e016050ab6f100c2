"""Cost of one ``greentrack_samples`` call on the sampler thread: 8 devices x 100 samples per flush.

Run with the plugin importable: ``PYTHONPATH=src python benchmarks/bench_samples_hook.py``.
"""

import os
import tempfile
import time
import types

path = os.path.join(tempfile.mkdtemp(), "bench.jsonl")
os.environ["GREENTRACK_JSONL"] = path
import greentrack_jsonl as gj  # noqa: E402  (reads the path at the first event)

t0 = time.time()
session = types.SimpleNamespace(id="bench", live_energy_j=lambda: 1.0)
batch = [(f"gpu{i}", [t0 + k * 0.02 for k in range(100)], [300.123 + k for k in range(100)]) for i in range(8)]
n = 200
a = time.perf_counter()
for _ in range(n):
    gj.greentrack_samples(session, batch)
per = (time.perf_counter() - a) / n
print(f"greentrack_samples, 8 devices x 100 samples: {per * 1e3:.2f} ms per flush, "
      f"{os.path.getsize(path) // n} bytes per line")
os.remove(path)
