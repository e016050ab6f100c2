#!/bin/bash
# Every H200 benchmark in one go (one GPU for accuracy and overhead, two for the DDP job).
# Usage: bash benchmarks/h200_all.sh RESULTS_DIR     (from the repository root)
# Without a GPU every script falls back to its dry run on the mock backend.
set -u
R=${1:-h200-results}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export GREENTRACK_DB=$R/greentrack.db
step() {
  local name=$1 t=$SECONDS; shift
  echo "=== $name start $(date -u +%T)"
  timeout "${TMO:-240}" "$@" > "$R/$name.log" 2>&1
  echo "=== $name rc=$? $((SECONDS - t)) s"
  tail -n 4 "$R/$name.log"
}
nvidia-smi > "$R/nvidia-smi.txt" 2>&1
step doctor python3 -m greentrack doctor
step probe python3 benchmarks/h200_probe.py --out "$R/probe.json"
step accuracy env CUDA_VISIBLE_DEVICES=0 python3 benchmarks/h200_accuracy.py --peers --out "$R/accuracy.json" --trace "$R/trace"
step overhead env CUDA_VISIBLE_DEVICES=0 python3 benchmarks/h200_overhead.py --reps "${REPS:-7}" --out "$R/overhead.json"
step ddp python3 benchmarks/h200_ddp.py --seconds 12 --codecarbon --out "$R/ddp.json"
