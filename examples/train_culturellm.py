"""Train CultureLLM adapters from a YAML config and flags:

    python examples/train_culturellm.py --config examples/configs/culturellm_train.yaml --mode specific

`--mode specific` trains one LoRA adapter per culture on one loaded base model (`<output_dir>/<ISO3>/`; a rerun
skips the cultures already done), `--mode joint` one adapter for all cultures. Flags override the YAML `train:`
section. Multi-GPU:

    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train_culturellm.py --config ...
"""

import sys

from culture_align.scripts.adapter_training import train_culturellm_main

if __name__ == "__main__":
    raise SystemExit(train_culturellm_main(sys.argv[1:]))
