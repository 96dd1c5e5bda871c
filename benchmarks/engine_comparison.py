"""Our decoder against transformers' own engines, on the CLCA role-play's work (the engine decision of #14).

Candidates, all on the same loaded model (the embedded SmolLM2-135M-Instruct unless --model), in one process:

* ``ours``: :class:`~culture_align.backends.TransformersBackend`, the library's engine (continuous batching,
  cross-call prefix KV cache, per-request seeds, xgrammar constraints row by row);
* ``hf_generate``: ``model.generate`` over left-padded batches of at most ``--batch-size`` prompts (longest
  first), the default dynamic cache, xgrammar's transformers logits processor for JSON schemas; multi-step work
  runs in waves (one call per wave, as any backend without continuous batching);
* ``hf_generate_static``: the same with ``cache_implementation="static"``;
* ``hf_generate_batch``: ``model.generate_batch``, transformers' continuous batching (paged KV cache). Its
  logits processors are temperature/top-k/top-p only (transformers 5.24), so it cannot constrain decoding to
  a JSON schema: it runs only the unconstrained workload.

Two workloads:

1. ``roleplay``: ``run_roleplay`` on 16 scenarios x ``--max-turns`` turns exactly as the recipe runs it (every
   turn constrained to the ``TurnReply`` JSON schema, sampled at temperature 0.7 / top-p 0.7);
2. ``free``: the prompts the role-play sent in workload 1 (recorded from ``ours``), each answered once without
   a constraint, in one ``generate`` call.

Sampled lengths differ between engines (each has its own randomness), so the comparison is generated tokens
per wall-clock second; dialogues per minute are reported beside it for workload 1. ``best_hf_ratio`` is ours'
tokens/s over the best transformers path's, per workload (the #14 rule: keep ours only where it is >= 1.3).

Writes benchmarks/results/engine_comparison.json (or --out). Reproduce with:
    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/engine_comparison.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList

from culture_align.backends.base import (
    Conversation,
    GenerationBackend,
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    OnCompletion,
)
from culture_align.backends.transformers import TransformersBackend
from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.recipes.clca.roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay

sys.path.insert(0, str(Path(__file__).parent))
from clca_generation import seed_scenarios_as_adapted  # noqa: E402
from eval_throughput import device_description  # noqa: E402


class HFGenerateBackend(GenerationBackend):
    """``model.generate`` over left-padded batches (waves for multi-step work); prompts, stop tokens, the
    compiled grammars and the final text come from ``ours`` so that only the decoding engine differs."""

    def __init__(self, ours: TransformersBackend, cache_implementation: str | None = None) -> None:
        self.ours, self.cache_implementation = ours, cache_implementation
        self.model_id, self.stats = ours.model_id, GenerationStats()
        self.supports_json_schema = True

    @torch.inference_mode()
    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        from xgrammar.contrib.hf import LogitsProcessor as GrammarLogitsProcessor

        ours, model = self.ours, self.ours.model
        start = time.perf_counter()
        encoded = [ours.encode(c) for c in conversations]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        stop_ids, pad = ours.stop_token_ids(), ours.tokenizer.pad_token_id
        pad = stop_ids[0] if pad is None else pad
        texts: list[str] = [""] * (len(encoded) * params.n)
        for b in range(0, len(order), max(1, ours.batch_size // params.n)):
            members = order[b: b + max(1, ours.batch_size // params.n)]
            width = max(len(encoded[i]) for i in members)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in members], device=ours.device)
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in members],
                                device=ours.device)
            processors = LogitsProcessorList()
            if params.json_schema is not None:
                processors.append(GrammarLogitsProcessor(ours._compiled_grammar(params.json_schema)))
            torch.manual_seed(params.seed)
            sampled = params.temperature > 0
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens, do_sample=sampled,
                temperature=params.temperature if sampled else None, top_p=params.top_p if sampled else None,
                top_k=None, num_return_sequences=params.n, eos_token_id=stop_ids, pad_token_id=pad,
                logits_processor=processors, cache_implementation=self.cache_implementation,
                stop_strings=list(params.stop) or None, tokenizer=ours.tokenizer if params.stop else None)
            self.stats.prompt_tokens += sum(len(encoded[i]) for i in members)
            for r, row in enumerate(out[:, width:].tolist()):
                ends = [k for k, t in enumerate(row) if t in stop_ids]
                tokens = row[: ends[0] + 1] if ends else row
                self.stats.generated_tokens += len(tokens)
                texts[members[r // params.n] * params.n + r % params.n] = ours._finish_text(tokens, params.stop)
        self.stats.requests += len(texts)
        self.stats.seconds += time.perf_counter() - start
        return texts


class HFGenerateBatchBackend(HFGenerateBackend):
    """``model.generate_batch`` (transformers' continuous batching, paged KV cache), one call per wave."""

    @torch.inference_mode()
    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        if params.json_schema is not None:
            raise NotImplementedError("generate_batch's logits processors cannot constrain to a JSON schema")
        ours = self.ours
        start = time.perf_counter()
        encoded = [ours.encode(c) for c in conversations]
        sampled = params.temperature > 0
        config = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=sampled,
                                  temperature=params.temperature if sampled else None,
                                  top_p=params.top_p if sampled else None, top_k=None,
                                  num_return_sequences=params.n, eos_token_id=ours.stop_token_ids(),
                                  pad_token_id=ours.tokenizer.pad_token_id)
        torch.manual_seed(params.seed)
        outputs = list(ours.model.generate_batch(encoded, generation_config=config, warmup=False).values())
        if len(outputs) != len(encoded) * params.n:
            raise RuntimeError(f"generate_batch returned {len(outputs)} of {len(encoded) * params.n} completions")
        texts = []
        for output in outputs:
            tokens = list(output.generated_tokens)
            self.stats.generated_tokens += len(tokens)
            texts.append(ours._finish_text(tokens, params.stop))
        self.stats.prompt_tokens += sum(map(len, encoded))
        self.stats.requests += len(texts)
        self.stats.seconds += time.perf_counter() - start
        return texts


class Recorder(GenerationBackend):
    """Passes every request to ``inner`` and keeps the conversations it was asked to answer."""

    def __init__(self, inner: GenerationBackend) -> None:
        self.inner, self.model_id, self.conversations = inner, inner.model_id, []
        self.continuous_batching = inner.continuous_batching
        self.supports_json_schema = inner.supports_json_schema

    def generate_continuous(self, requests: Iterable[GenerationRequest], on_completion: OnCompletion) -> None:
        def keep(request: GenerationRequest, text: str):
            self.conversations.append(request.conversation)
            return on_completion(request, text)

        self.inner.generate_continuous(requests, keep)

    def _generate(self, conversations: list[Conversation], params: GenerationParams) -> list[str]:
        self.conversations.extend(conversations)
        return self.inner.generate(conversations, params)


def measure(backend: GenerationBackend, work) -> dict[str, Any]:
    """Run ``work()`` once on ``backend`` and report wall/CPU seconds and the tokens it generated."""
    if isinstance(backend, TransformersBackend):
        backend.clear_prefix_cache()
    before = backend.stats.generated_tokens
    wall, cpu = time.perf_counter(), time.process_time()
    extra = work() or {}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    generated = backend.stats.generated_tokens - before
    return {"seconds": wall, "cpu_seconds": cpu, "generated_tokens": generated,
            "tokens_per_second": generated / wall, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--cultures", default="GBR,CHN")
    parser.add_argument("--scenarios-per-culture", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--engines", default="ours,hf_generate,hf_generate_static,hf_generate_batch",
                        help="comma-separated engines to run (ours always runs: it records the prompts)")
    parser.add_argument("--free-prompts", type=int, default=None,
                        help="workload 2 on the first N recorded prompts only (default: all)")
    parser.add_argument("--free-only", action="store_true",
                        help="workload 1 for ours only (it records the prompts of workload 2)")
    parser.add_argument("--out", default="benchmarks/results/engine_comparison.json")
    args = parser.parse_args()

    scenarios = seed_scenarios_as_adapted(args.cultures.split(","), args.scenarios_per_culture)
    ours = TransformersBackend(args.model, batch_size=args.batch_size)
    engines: dict[str, GenerationBackend] = {
        "ours": ours, "hf_generate": HFGenerateBackend(ours),
        "hf_generate_static": HFGenerateBackend(ours, cache_implementation="static"),
        "hf_generate_batch": HFGenerateBatchBackend(ours)}
    wanted = {"ours", *args.engines.split(",")}
    engines = {name: engine for name, engine in engines.items() if name in wanted}
    params = replace(DEFAULT_ROLEPLAY_PARAMS, max_new_tokens=args.max_new_tokens)
    free_params = replace(params, json_schema=None)
    kw = dict(params=params, max_turns=args.max_turns, show_progress=False)
    warm = [[{"role": "user", "content": "Say hello."}]] * 2
    for name, engine in engines.items():  # warm-up: grammar compilation, first-call allocations
        engine.generate(warm, replace(free_params, max_new_tokens=8))
        if name == "ours" or (name != "hf_generate_batch" and not args.free_only):
            run_roleplay(scenarios.select([0]), engine, max_turns=1, params=params, show_progress=False)

    recorder = Recorder(ours)
    runs: dict[str, dict[str, dict[str, Any]]] = {"roleplay": {}, "free": {}}

    def roleplay(engine: GenerationBackend):
        def work():
            result = run_roleplay(scenarios, engine, **kw)
            return {"kept_dialogues": len(result.dataset), "turns_played": sum(d["num_turns"] for d in result.dataset),
                    "scheduling": result.stats["scheduling"]}
        return work

    for name, engine in engines.items():
        if name == "hf_generate_batch":
            runs["roleplay"][name] = {"skipped": "no JSON-schema constraint in generate_batch (transformers "
                                                 "5.24 continuous-batching logits processors)"}
            continue
        if args.free_only and name != "ours":
            continue
        run = runs["roleplay"][name] = measure(engine, roleplay(recorder if name == "ours" else engine))
        run["dialogues_per_min"] = 60 * len(scenarios) / run["seconds"]
        print(f"roleplay {name}: {json.dumps(runs['roleplay'][name])}", flush=True)

    prompts = recorder.conversations[: args.free_prompts]
    for name, engine in engines.items():
        runs["free"][name] = measure(engine, lambda e=engine: e.generate(prompts, free_params) and None)
        print(f"free {name}: {json.dumps(runs['free'][name])}", flush=True)

    ratios = {}
    for workload, by_engine in runs.items():
        hf = {n: r["tokens_per_second"] for n, r in by_engine.items() if n != "ours" and "tokens_per_second" in r}
        if not hf:
            continue
        best = max(hf, key=hf.get)
        ratios[workload] = {"best_hf": best, "best_hf_ratio": by_engine["ours"]["tokens_per_second"] / hf[best]}
    result = {
        "model": args.model, "dtype": str(ours.model.dtype), "dialogues": len(scenarios),
        "max_turns": args.max_turns, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "free_prompts": len(prompts), "runs": runs, "ratios": ratios,
        "device": device_description(), "command": " ".join(["python"] + sys.argv),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
