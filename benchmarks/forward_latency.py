"""Decode latency of the embedded model on a CUDA machine: is it launch-bound or compute-bound?

Measures ``TransformersBackend.generate`` at 1 and 16 rows (free text, then JSON-constrained like a role-play
turn; 64 new tokens at most), and one plain forward pass of one new token over a 600-token cache at batch 1
and 16 (20 passes each, synchronised, autograd on). Prints only.

    python3 benchmarks/forward_latency.py

On the H200 lent on 2026-11-27 (first version of this script, same measurements) it printed:
    free 1 rows 4.65 s 64 tokens      free 16 rows 6.41 s 1011 tokens
    schema 1 rows 0.57 s 26 tokens    schema 16 rows 2.31 s 452 tokens
    raw forward bs 1 89.5 ms/step     raw forward bs 16 90.7 ms/step
i.e. launch-bound: a step costs the same with 1 or 16 rows.
"""

from __future__ import annotations

import time

import torch
from transformers.cache_utils import DynamicCache

from culture_align.backends.base import GenerationParams
from culture_align.backends.transformers import TransformersBackend
from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.recipes.clca.schemas import TurnReply, json_schema_for


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no GPU: nothing measured")
    backend = TransformersBackend(DEFAULT_MODEL, batch_size=16)
    conversations = [[{"role": "user", "content": f"Tell me about topic {i} " * 40}] for i in range(16)]
    for schema in (None, json_schema_for(TurnReply)):
        params = GenerationParams(temperature=0.7, top_p=0.7, max_new_tokens=64, json_schema=schema)
        backend.generate(conversations[:2], params)  # warm-up
        for rows in (1, 16):
            backend.clear_prefix_cache()
            generated = backend.stats.generated_tokens
            torch.cuda.synchronize()
            start = time.perf_counter()
            backend.generate(conversations[:rows], params)
            torch.cuda.synchronize()
            print("schema" if schema else "free", rows, "rows", round(time.perf_counter() - start, 2), "s",
                  backend.stats.generated_tokens - generated, "tokens", flush=True)
    model = backend.model
    new_token = torch.randint(0, 1000, (16, 1), device="cuda")
    for rows in (1, 16):  # autograd left on, as in the run quoted above
        cache = DynamicCache(config=model.config)
        model(input_ids=torch.randint(0, 1000, (rows, 600), device="cuda"), past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            model(input_ids=new_token[:rows], past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
        print("raw forward bs", rows, round((time.perf_counter() - start) / 20 * 1000, 1), "ms/step", flush=True)


if __name__ == "__main__":
    main()
