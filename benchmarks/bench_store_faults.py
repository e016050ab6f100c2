"""How long does ``stop()`` take while another process holds the database's write lock, and is anything lost?

A second process opens the database and holds ``BEGIN IMMEDIATE`` for ``--lock-s`` seconds.
Meanwhile a session (mock GPU, a constant 250 W, flushes every ``--flush-s`` seconds) runs for
``--run-s`` seconds, marking steps, and stops while the lock is still held. The script prints:

- the time ``stop()`` took (target: under 5 s, whatever the lock's length; the default
  GREENTRACK_LOCK_TIMEOUT is 3 s), over ``--reps`` repetitions (median and max);
- where the run went (the spool file) and the one line greentrack printed;
- after the lock is released, whether the next session delivered the run: its status, its
  energy against the session's own result, and whether its power series covers the run
  from start to end (no chunk lost while the lock was held).

    python benchmarks/bench_store_faults.py                 # lock held 30 s (short run)
    python benchmarks/bench_store_faults.py --lock-s 300    # the full figure: a 5-minute lock
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    c.execute("ROLLBACK")
""")

SESSION = textwrap.dedent("""
    import json, sys, time, greentrack
    run_s, flush_s = float(sys.argv[1]), float(sys.argv[2])
    s = greentrack.Session("locked-out", flush_interval_s=flush_s, exact_edges=False).start()
    end = time.time() + run_s
    while time.time() < end:
        time.sleep(0.01)
        s.step()
    t = time.perf_counter()
    s.stop()
    took = time.perf_counter() - t
    print(json.dumps({"id": s.id, "stop_s": took, "energy_j": s.result.energy_j, "steps": s.result.steps,
                      "started_at": s.result.started_at, "ended_at": s.result.ended_at,
                      "spooled": str(s.writer.spooled or "")}))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock-s", type=float, default=30.0, help="how long the other process holds the lock")
    ap.add_argument("--run-s", type=float, default=3.0, help="how long each session runs before stop()")
    ap.add_argument("--flush-s", type=float, default=0.5, help="the session's flush interval")
    ap.add_argument("--reps", type=int, default=3, help="sessions stopped while the lock is held")
    args = ap.parse_args()
    needed = args.reps * (args.run_s + 5.0) + 2.0
    if args.lock_s < needed:
        sys.exit(f"--lock-s must cover {args.reps} sessions of {args.run_s} s and their stops: at least {needed:.0f} s")

    work = Path(tempfile.mkdtemp(prefix="gt-faults-"))
    db = work / "gt.db"
    env = dict(os.environ, GREENTRACK_DB=str(db), GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:250",
               XDG_STATE_HOME=str(work / "state"), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GREENTRACK_SPOOL", None)
    (work / "locker.py").write_text(LOCKER)
    (work / "session.py").write_text(SESSION)
    subprocess.run([sys.executable, "-c", "import greentrack.store as s; s.open_store()"], env=env, check=True)

    print(f"database {db}; another process holds its write lock for {args.lock_s:.0f} s; "
          f"GREENTRACK_LOCK_TIMEOUT={os.environ.get('GREENTRACK_LOCK_TIMEOUT', '3 (default)')}")
    t_lock = time.time()
    locker = subprocess.Popen([sys.executable, str(work / "locker.py"), str(db), str(args.lock_s)],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    runs, lines = [], []
    for i in range(args.reps):
        p = subprocess.run([sys.executable, str(work / "session.py"), str(args.run_s), str(args.flush_s)],
                           capture_output=True, text=True, env=env, timeout=args.lock_s + 60)
        if p.returncode != 0:
            sys.exit(f"session {i} failed: {p.stderr}")
        runs.append(json.loads(p.stdout))
        lines += [x for x in p.stderr.splitlines() if x.startswith("greentrack:")]
        print(f"  session {i + 1}: stop() took {runs[-1]['stop_s']:.2f} s while locked "
              f"({time.time() - t_lock:.0f} s into the lock); spooled: {runs[-1]['spooled'] or 'no'}")
    stops = [r["stop_s"] for r in runs]
    print(f"stop() with the database locked by another process: median {statistics.median(stops):.2f} s, "
          f"max {max(stops):.2f} s over {len(stops)} sessions (target < 5 s)")
    print(f"what greentrack said ({len(lines)} line(s) for {len(runs)} runs):")
    for x in lines[:3]:
        print(f"  {x}")

    print(f"waiting for the lock to be released ({max(0.0, t_lock + args.lock_s - time.time()):.0f} s)...")
    locker.wait()
    t = time.perf_counter()
    nxt = "import greentrack\nwith greentrack.session('after-the-lock'):\n    pass"
    p = subprocess.run([sys.executable, "-c", nxt], capture_output=True, text=True, env=env, check=True)
    took = time.perf_counter() - t
    print(f"next session (start to exit, delivery included): {took:.2f} s; it said: "
          + "; ".join(x for x in p.stderr.splitlines() if x.startswith("greentrack:")))

    check = textwrap.dedent("""
        import json, sys
        from greentrack.store import open_store
        st = open_store(write=False)
        out = []
        for rid in json.loads(sys.argv[1]):
            run = st.get_run(rid)
            series = st.read_series(rid)
            t = series["gpu0"][0] if "gpu0" in series else []
            out.append({"id": rid, "status": run["status"], "energy_j": run["energy_j"], "steps": run["steps"],
                        "first_s": (t[0] - run["started_at"]) if t else None,
                        "last_s": (run["ended_at"] - t[-1]) if t else None, "points": len(t)})
        print(json.dumps(out))
    """)
    got = json.loads(subprocess.run([sys.executable, "-c", check, json.dumps([r["id"] for r in runs])],
                                    capture_output=True, text=True, env=env, check=True).stdout)
    lost = 0
    for r, g in zip(runs, got):
        ok = (g["status"] == "finished" and g["steps"] == r["steps"] and g["energy_j"] is not None
              and abs(g["energy_j"] - r["energy_j"]) <= 1e-6 * max(1.0, r["energy_j"])
              and g["first_s"] is not None and g["first_s"] < 2 * args.flush_s and g["last_s"] < 2 * args.flush_s)
        lost += not ok
        print(f"  run {g['id']}: {g['status']}, {g['steps']} steps, {g['energy_j']:.1f} J (session said "
              f"{r['energy_j']:.1f} J), series {g['points']} points from +{g['first_s']:.2f} s to "
              f"{g['last_s']:.2f} s before the end: {'complete' if ok else 'INCOMPLETE'}")
    left = list((work / "state" / "greentrack" / "spool").glob("*.json"))
    print(f"delivered: {len(runs) - lost} of {len(runs)} runs complete; {len(left)} file(s) left in the spool")
    print(f"(files in {work})")


if __name__ == "__main__":
    main()
