#!/bin/bash
# The technique study and the power-limit tuning on a GPU machine, everything into one folder.
# Usage (repository root): bash benchmarks/gpu_study.sh OUT_DIR [study|tune|all]
# Needs torch and peft (torchao for fp8) and nvidia-ml-py; root for tune (power limits).
set -u
R=${1:-gpu-study}; WHAT=${2:-all}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} GREENTRACK_DB=$R/greentrack.db
{ nvidia-smi; nvidia-smi -q -d POWER,CLOCK | head -80; python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); print(sys.version)"; } > "$R/env.txt" 2>&1
if [ "$WHAT" = study ] || [ "$WHAT" = all ]; then
  echo "=== study $(date -u +%T)"
  python3 -m greentrack study --size small --batch-size 16 --reps 3 --seconds 10 --json "$R/study.json" \
    > "$R/study.txt" 2> "$R/study.log"; echo "rc=$?"
  cat "$R/study.txt"
  python3 -m greentrack diff --study "$(python3 -c "import json; print(json.load(open('$R/study.json'))['study_id'])")" \
    > "$R/study_diff.txt" 2>&1
fi
if [ "$WHAT" = tune ] || [ "$WHAT" = all ]; then
  echo "=== tune $(date -u +%T)"
  python3 -m greentrack tune --workload bf16 --size small --batch-size 16 --reps 3 --seconds 10 --max-slowdown 10 \
    --clocks "${CLOCKS:-1410}" --json "$R/tune.json" > "$R/tune.txt" 2> "$R/tune.log"; echo "rc=$?"
  cat "$R/tune.txt"; tail -3 "$R/tune.log"
  nvidia-smi -q -d POWER | grep -i "power limit" > "$R/after_tune_limits.txt"
fi
