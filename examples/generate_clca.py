"""Generate a CLCA corpus: `python examples/generate_clca.py --config examples/configs/clca_generate.yaml`.

Resumable: run it again with the same output folder after an interruption.
"""

import sys

from culture_align.scripts.clca import generate_main

if __name__ == "__main__":
    raise SystemExit(generate_main(sys.argv[1:]))
