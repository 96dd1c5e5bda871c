#!/usr/bin/env bash
# Every GPU measurement of the project in one go, on one CUDA machine (one H100/H200 took about 5 min for 1-2,
# and 3 is budgeted at under 8 min more):
#   bash benchmarks/gpu_benchmarks.sh [OUT_DIR]      # default OUT_DIR: benchmarks/results
# 1. trainer throughput and peak memory (CLCA, CultureSPA; LoRA, bf16)      -> gpu_training.json
# 2. CLCA role-play: continuous batching vs. waves vs. one dialogue at a time,
#    16 dialogues x 4 turns (as on the CPU) and x 10 turns (the recipe's default) -> clca_generation_gpu*.json
# 3. a Llama-3.1-8B-shaped model (random weights): WVS evaluation (259 items x 19 cultures), the trainers'
#    tokens/s, memory and MFU, the accelerate configs, role-play vs. plain generate -> gpu_realistic.json
# A benchmark that fails is reported and the next one still runs.
set -uo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
status=0
run() {
  echo "== $*"
  "$@" || { echo "FAILED ($?): $*"; status=1; }
}
run python3 benchmarks/gpu_training.py --out "$out/gpu_training.json"
run python3 benchmarks/clca_generation.py --out "$out/clca_generation_gpu.json"
run python3 benchmarks/forward_latency.py
run python3 benchmarks/clca_generation.py --max-turns 10 --no-sequential-prefix-cache \
  --out "$out/clca_generation_10turns_gpu.json"
run python3 benchmarks/gpu_realistic.py --out "$out/gpu_realistic.json"
exit $status
