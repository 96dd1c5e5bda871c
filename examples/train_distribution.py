"""Train answer-distribution adapters (forward KL on whole human answer distributions) from a YAML config and flags:

    python examples/train_distribution.py --config examples/configs/distribution_train.yaml

Multi-GPU:

    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train_distribution.py --config ...
"""

import sys

from culture_align.scripts.adapter_training import train_distribution_main

if __name__ == "__main__":
    raise SystemExit(train_distribution_main(sys.argv[1:]))
