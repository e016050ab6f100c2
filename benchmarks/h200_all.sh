#!/bin/bash
# Every H200 benchmark in one go (one GPU for accuracy and overhead, two for the DDP job).
# Usage: bash benchmarks/h200_all.sh RESULTS_DIR     (from the repository root)
# ONLY="accuracy ddp" runs a subset. Without a GPU every script falls back to its dry run.
set -u
R=${1:-h200-results}
ONLY=${ONLY:-"doctor probe accuracy accuracy_margin accuracy_abrupt overhead overhead_bound overhead_peers ddp"}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export GREENTRACK_DB=$R/greentrack.db
step() {
  local name=$1 t=$SECONDS; shift
  case " $ONLY " in *" $name "*) ;; *) return ;; esac
  echo "=== $name start $(date -u +%T)"
  timeout "${TMO:-240}" "$@" > "$R/$name.log" 2>&1
  echo "=== $name rc=$? $((SECONDS - t)) s"
  tail -n 4 "$R/$name.log"
}
G0="env CUDA_VISIBLE_DEVICES=0"
nvidia-smi > "$R/nvidia-smi.txt" 2>&1
step doctor python3 -m greentrack doctor
step probe python3 benchmarks/h200_probe.py --out "$R/probe.json"
# phases separated by 0.3 s of idle: bounds where the 10 Hz counter can be interpolated
step accuracy $G0 python3 benchmarks/h200_accuracy.py --peers --guard 0.3 --out "$R/accuracy.json" --trace "$R/trace"
# 0.3 s of idle opening and closing each phase: the power is steady at every phase bound
step accuracy_margin $G0 python3 benchmarks/h200_accuracy.py --peers --margin 0.3 --out "$R/accuracy_margin.json" \
  --trace "$R/trace"
# phases back to back: power steps right at the bounds
step accuracy_abrupt $G0 python3 benchmarks/h200_accuracy.py --out "$R/accuracy_abrupt.json"
step overhead $G0 python3 benchmarks/h200_overhead.py --conditions none,greentrack --reps 40 --block-s 1 --bound-s 20 \
  --out "$R/overhead.json"
step overhead_bound $G0 python3 benchmarks/h200_overhead.py --conditions none,greentrack --reps 4 --block-s 1 \
  --bound-s 20 --out "$R/overhead_bound.json"
step overhead_peers $G0 python3 benchmarks/h200_overhead.py --conditions none,codecarbon,codecarbon_1s,zeus \
  --reps 5 --block-s 3 --out "$R/overhead_peers.json"
step ddp python3 benchmarks/h200_ddp.py --seconds 12 --codecarbon --out "$R/ddp.json"
