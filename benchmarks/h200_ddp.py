"""A real torchrun DDP job on two GPUs: do the ranks' runs add up to the counters' total?

The launcher reads both GPUs' energy counters continuously (the independent reference), starts
``torchrun --standalone --nproc_per_node N`` on this same file in worker mode, and compares:

- the sum of the ranks' greentrack runs (each rank measures only its own GPU, and records
  rank, world size and torchrun's job id) with the counters' total over the same windows;
- with ``--codecarbon``, the sum of one CodeCarbon tracker per rank (each sees every GPU).

    python3 benchmarks/h200_ddp.py --seconds 12 --codecarbon --out ddp.json
    python3 benchmarks/h200_ddp.py --dry-run        # mock backend, plain processes, no torch
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from h200_common import ROOT, dump, env_info, has_gpu, mock_reference, nvml_reference, pct  # noqa: E402


def worker(args: argparse.Namespace) -> int:
    """One rank: DDP training inside a greentrack session (and a CodeCarbon tracker)."""
    from greentrack.measure.tracker import Session

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = torch = None
    if not args.dry_run:
        import torch
        import torch.distributed as dist

        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        dev = torch.device("cuda", local)
        torch.manual_seed(rank)
        width = 8192
        net = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(3)]).to(dev)
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local])
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        x = torch.randn(4096, width, device=dev)

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()

        train_step()
        torch.cuda.synchronize()
        dist.barrier()
    else:
        def train_step() -> None:
            time.sleep(0.02)
    cc = None
    if args.codecarbon:
        from codecarbon import OfflineEmissionsTracker

        cc = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error",
                                     measure_power_secs=1)
    out: dict[str, Any] = {"rank": rank, "local_rank": local, "world_size": world}
    s = Session("h200-ddp", region="FR", db=args.db, backend="mock" if args.dry_run else "nvml")
    out["gt_window"] = [time.time()]
    s.start()
    out["gt_window"].append(time.time())
    if cc is not None:
        out["cc_window"] = [time.time()]
        cc.start()
        out["cc_window"].append(time.time())
    end = time.time() + args.seconds
    n = 0
    while True:
        train_step()
        s.step(samples=4096)
        n += 1
        if dist is not None:  # every rank stops after the same step, or DDP's collectives hang
            flag = torch.tensor([1.0 if time.time() >= end else 0.0], device=dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() > 0:
                break
        elif time.time() >= end:
            break
    if dist is not None:
        torch.cuda.synchronize()
        dist.barrier()
    if cc is not None:
        out["cc_window"].append(time.time())
        cc.stop()
        out["cc_window"].append(time.time())
        d = cc.final_emissions_data
        out["codecarbon"] = {"gpu_j": float(d.gpu_energy) * 3.6e6, "gpu_count": getattr(d, "gpu_count", None),
                             "gpu_model": getattr(d, "gpu_model", None)}
    out["gt_window"].append(time.time())
    r = s.stop()
    out["gt_window"].append(time.time())
    out["steps"] = n
    out["greentrack"] = {"run_id": r.run_id, "energy_j": r.energy_j, "started_at": r.started_at,
                         "ended_at": r.ended_at, "job_id": s.job_id, "rank": s.rank, "world_size": s.world_size,
                         "devices": [{"key": d.key, "uuid": d.uuid, "method": d.method, "energy_j": d.energy_j}
                                     for d in r.devices]}
    Path(args.outdir, f"rank{rank}.json").write_text(json.dumps(out))
    if dist is not None:
        dist.destroy_process_group()
    return 0


def launch(args: argparse.Namespace) -> int:
    dry = args.dry_run
    tmp = Path(tempfile.mkdtemp())
    db = str(tmp / "ddp.db")
    outdir = tmp / "ranks"
    outdir.mkdir()
    n = args.nproc
    if dry:
        from greentrack.measure.sources.mock import MockSource

        ref = mock_reference(MockSource(trace="load:70,600", gpus=n))
    else:
        ref, _nv = nvml_reference(list(range(n)))
    ref.start()
    time.sleep(0.5)
    extra = ["--worker", "--db", db, "--outdir", str(outdir), "--seconds", str(args.seconds)]
    if args.codecarbon:
        extra.append("--codecarbon")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    t0 = time.time()
    if dry:
        procs = []
        for r in range(n):
            e = dict(env, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), TORCHELASTIC_RUN_ID="dry-run-job",
                     GREENTRACK_BACKEND="mock", GREENTRACK_MOCK_GPUS=str(n))
            procs.append(subprocess.Popen([sys.executable, __file__, "--dry-run", *extra], env=e))
        rc = max(p.wait() for p in procs)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               __file__, *extra]
        rc = subprocess.call(cmd, env=env)
    wall = time.time() - t0
    time.sleep(0.3)
    ref.stop()
    files = [outdir / f"rank{r}.json" for r in range(n)]
    ranks = [json.loads(f.read_text()) for f in files if f.exists()]
    res: dict[str, Any] = {"env": env_info(), "dry_run": dry, "rc": rc, "job_wall_s": wall, "nproc": n,
                           "seconds": args.seconds, "ranks": ranks}
    if len(ranks) == n:
        gt_sum = sum(r["greentrack"]["energy_j"] or 0.0 for r in ranks)
        # truth: every GPU's counter over the window of the rank that measured it
        truth = 0.0
        for r in ranks:
            a, b = r["greentrack"]["started_at"], r["greentrack"]["ended_at"]
            for d in r["greentrack"]["devices"]:
                truth += ref.delta(a, b, int(d["key"][3:]))
        # and all GPUs over the union of the ranks' windows
        a = min(r["greentrack"]["started_at"] for r in ranks)
        b = max(r["greentrack"]["ended_at"] for r in ranks)
        all_gpus = sum(ref.delta(a, b, i) for i in range(n))
        res["greentrack"] = {"sum_of_ranks_j": gt_sum, "counters_own_windows_j": truth,
                             "err_pct": pct(gt_sum, truth), "counters_all_gpus_union_j": all_gpus,
                             "ratio_to_all_gpus": gt_sum / all_gpus if all_gpus else None,
                             "devices_per_rank": {r["rank"]: [d["key"] for d in r["greentrack"]["devices"]]
                                                  for r in ranks},
                             "job_ids": sorted({str(r["greentrack"]["job_id"]) for r in ranks})}
        if all("codecarbon" in r for r in ranks):
            cc_sum = sum(r["codecarbon"]["gpu_j"] for r in ranks)
            cc_truth = 0.0
            for r in ranks:
                _a, a2, b1, _b = r["cc_window"]
                cc_truth += ref.delta(a2, b1, r["local_rank"])
            all_cc = sum(ref.delta(max(r["cc_window"][1] for r in ranks), min(r["cc_window"][2] for r in ranks), i)
                         for i in range(n))
            res["codecarbon"] = {"sum_of_ranks_j": cc_sum, "counters_own_gpu_windows_j": cc_truth,
                                 "ratio_to_counters": cc_sum / cc_truth if cc_truth else None,
                                 "counters_all_gpus_common_window_j": all_cc,
                                 "gpu_count_per_rank": [r["codecarbon"]["gpu_count"] for r in ranks]}
        with sqlite3.connect(db) as con:
            con.row_factory = sqlite3.Row
            rows = [dict(x) for x in con.execute(
                "select id, name, status, job_id, rank, world_size, energy_j from runs order by rank")]
        res["store_rows"] = rows
        res["store_sum_by_job_j"] = {}
        for row in rows:
            res["store_sum_by_job_j"][row["job_id"]] = res["store_sum_by_job_j"].get(row["job_id"], 0.0) + (
                row["energy_j"] or 0.0)
    dump(res, args.out)
    return 0 if rc == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--outdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--codecarbon", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not args.dry_run and not args.worker and not has_gpu():
        print("no GPU: running the dry run on the mock backend", file=sys.stderr)
        args.dry_run = True
    return worker(args) if args.worker else launch(args)


if __name__ == "__main__":
    raise SystemExit(main())
