"""Train a CLCA adapter: `python examples/train_clca.py --config examples/configs/clca_train.yaml`.

Multi-GPU: `accelerate launch --config_file <accelerate config> examples/train_clca.py --config ...`.
"""

import sys

from culture_align.scripts.clca import train_main

if __name__ == "__main__":
    raise SystemExit(train_main(sys.argv[1:]))
