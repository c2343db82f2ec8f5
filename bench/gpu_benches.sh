#!/usr/bin/env bash
# Every throughput benchmark of docs/benchmarks.md in one go, on one CUDA GPU, within a time budget:
#   bench/gpu_benches.sh OUTDIR [SECONDS]
# Each bench gets what is left of the budget (default 570 s), so the last ones may be cut short; each writes
# OUTDIR/<name>.log and OUTDIR/<name>.json. Needs trl, datasets and unsloth on PYTHONPATH (docs/gpu.md).
set -uo pipefail
out=${1:?usage: gpu_benches.sh OUTDIR [SECONDS]}
budget=${2:-570}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RULEBOUND_BENCH_DIR=${RULEBOUND_BENCH_DIR:-/tmp/rulebound-bench}
mkdir -p "$RULEBOUND_BENCH_DIR"
start=$(date +%s)
run() {  # name, command...
  local name=$1; shift
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -lt 30 ]; then echo "skip $name: budget spent" | tee -a "$out/skipped.log"; return; fi
  echo "=== $name ($left s left): $*"
  timeout "$left" "$@" --json "$out/$name.json" > "$out/$name.log" 2> "$out/$name.err"
  echo "rc $? after $(($(date +%s) - start)) s"; tail -n 25 "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
run sft-qwen0.5b python3 bench/sft_throughput.py --steps 15 --warmup 5
RULEBOUND_PROFILE_OUT="$out/orpo-profile.txt" \
  run orpo-short python3 bench/orpo_throughput.py --shape short-prompt --steps 12 --warmup 4 --profile 3 \
  --contenders unsloth,rulebound,rulebound-offload --losses
run grpo-smollm2-shape python3 bench/grpo_throughput.py --shape smollm2-135m --steps 4 --warmup 1 \
  --contenders trl,rulebound
run orpo-anchor python3 bench/orpo_throughput.py --shape anchor --steps 12 --warmup 4 \
  --contenders unsloth,rulebound-offload --losses
run grpo-qwen0.5b python3 bench/grpo_throughput.py --steps 4 --warmup 1
echo "done after $(($(date +%s) - start)) s"
