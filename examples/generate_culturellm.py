"""Generate a CultureLLM corpus:
`python examples/generate_culturellm.py --config examples/configs/culturellm_generate.yaml --wvs path/to/wvs-data`.

Resumable: run it again with the same output folder after an interruption. The seed ids it prints are the
training items: leave them out when evaluating (`culture-align eval --exclude-items ...`).
"""

import sys

from culture_align.scripts.culturellm import generate_main

if __name__ == "__main__":
    raise SystemExit(generate_main(sys.argv[1:]))
