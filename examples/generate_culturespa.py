"""Generate a CultureSPA corpus: `python examples/generate_culturespa.py --config examples/configs/culturespa_generate.yaml`.

Resumable: run it again with the same output folder after an interruption (questions come from the completion
cache, answers from the answer cache).
"""

import sys

from culture_align.scripts.culturespa import generate_main

if __name__ == "__main__":
    raise SystemExit(generate_main(sys.argv[1:]))
