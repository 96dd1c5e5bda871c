#!/usr/bin/env bash
# The verdict experiments on a CUDA machine with 10x the CPU budget (600 optimizer steps x batch 8 per run instead
# of 60), results beside the CPU ones in *-gpu folders (their results.json records the device's dtype and model):
#   [WVS_DIR=path/to/wvs] [SCALE=10] bash benchmarks/gpu_experiment.sh [CONDITIONS]   # default: answer_distribution
# SCALE multiplies every condition's max_steps (default 10, into *-gpu; any other value into *-gpu-x<SCALE>: SCALE=1
# runs the CPU budget on the GPU, e.g. `SCALE=1 bash benchmarks/gpu_experiment.sh clca`, CLCA's long dialogues
# taking about 50 s a step on one CPU core).
# CONDITIONS is a comma-separated subset of recipes-held-out-items.yaml's conditions; the recipe corpora made on
# the CPU (benchmarks/results/experiments/recipes-held-out-items/data, carried to the device) are reused, so the
# GPU time goes to training and scoring. Budget on one H200 (135M model, bf16): about 30 s per run of 600 steps
# plus 10 s of scoring, so the default (2 splits x 6 runs) fits in under 10 minutes.
set -euo pipefail
conditions=${1:-answer_distribution}
scale=${SCALE:-10}
suffix=-gpu; [ "$scale" = 10 ] || suffix=-gpu-x$scale
results=benchmarks/results/experiments
scaled() {  # CONFIG OUT_DIR -> a copy of CONFIG with SCALE x max_steps and output_dir OUT_DIR, on stdout
  python3 - "$1" "$2" "$scale" "$suffix" <<'EOF'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config = {k: v for k, v in config.items() if not k.startswith("x-")}  # anchors already resolved by the loader
for condition in config["conditions"]:
    condition["training"] = {**condition["training"], "max_steps": int(sys.argv[3]) * condition["training"]["max_steps"]}
config["output_dir"] = sys.argv[2]
config["name"] = config["name"] + sys.argv[4]
print(yaml.safe_dump(config, sort_keys=False))
EOF
}
for name in recipes-held-out-items recipes-held-out-cultures; do
  out=$results/$name$suffix
  mkdir -p "$out"
  [ -d "$results/$name/data" ] && cp -rn "$results/$name/data" "$out/"
  [ -f "$results/$name/split.json" ] && cp -n "$results/$name/split.json" "$out/"
  scaled "examples/experiments/$name.yaml" "$out" > "$out/config.yaml"
  only=$(python3 -c "import sys, yaml; names = [c['name'] for c in yaml.safe_load(open(sys.argv[1]))['conditions']]; \
print(','.join(n for n in sys.argv[2].split(',') if n in names))" "$out/config.yaml" "$conditions")
  echo "== $name on $(python3 -c 'import torch; print(torch.cuda.get_device_name())'): ${only:-every condition}"
  culture-align experiment --config "$out/config.yaml" ${only:+--conditions "$only"} ${WVS_DIR:+--wvs "$WVS_DIR"}
done
