"""CLCA role-play throughput: all dialogues advancing together vs. one dialogue at a time.

The same model (the embedded SmolLM2-135M-Instruct unless --model), the same scenarios and the same turn limit.
Three runs, each on a fresh prefix cache:

* ``batched``: ``run_roleplay`` over the whole set as the recipe runs it: continuous batching (each finished
  turn's follow-up joins the running batch at once) with the backend's prefix KV cache (the default): each
  agent's prompt at turn t reuses the KV of its prompt at turn t-2, and the rules, the culture and the
  scenario are computed once for all the prompts that share them;
* ``batched_waves``: the same in waves (one batched call per turn, each waiting for the turn's longest
  reply), to show what continuous batching adds (skip it with --no-waves);
* ``sequential_reference``: the baseline, as the CLCA reference does it: each dialogue played on its own,
  one request at a time, and no prefix cache (the reference re-encodes the whole prompt at every turn);
* ``sequential_prefix_cache``: one dialogue at a time again, but with the prefix cache (what batching adds
  on top of prefix caching; skip it with --no-sequential-prefix-cache).

``speedup`` is ``sequential_reference`` time / ``batched`` time (the issue's target: >= 4);
``speedup_vs_sequential_prefix_cache`` and ``speedup_vs_waves`` are the other ratios. The backend seeds each request from the request
itself, so the runs produce the same dialogues up to float rounding of differently shaped batches (a near-tie
in sampling can then flip a token, and the rest of that dialogue differs): ``same_dialogues`` says whether
they did. Each run reports its backend counters: prompt tokens, tokens reused from the prefix cache
(``prefix_cache_hit_rate``), tokens actually prefilled, tokens generated. CPU seconds of the process are
reported beside wall-clock seconds: on a shared machine they are less noisy.

Writes benchmarks/results/clca_generation.json (or --out). Reproduce with:
    .venv/bin/python benchmarks/clca_generation.py
(the README quotes the runs and their exact commands, with the thread count and the device).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import datasets

from culture_align.backends.base import GenerationParams
from culture_align.backends.transformers import TransformersBackend
from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.recipes.clca.roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay
from culture_align.recipes.clca.scenarios import load_seed_scenarios
from culture_align.recipes.clca.schemas import SCENARIO_FEATURES, StageResult

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402


def seed_scenarios_as_adapted(cultures: list[str], per_culture: int) -> datasets.Dataset:
    """The bundled seed scenarios, labelled with each culture (adaptation is not what is measured here)."""
    seeds = load_seed_scenarios().select(range(per_culture))
    rows = []
    for culture in cultures:
        for seed in seeds:
            rows.append({"id": f"{seed['id']}-{culture}", "seed_id": seed["id"], "culture": culture,
                         "social_goal": seed["social_goal"], "setting": seed["setting"],
                         "relationship": seed["relationship"], "person1": seed["person1"],
                         "person2": seed["person2"], "provenance": None})
    return datasets.Dataset.from_list(rows, features=SCENARIO_FEATURES)


def timed_run(backend: TransformersBackend, scenarios: datasets.Dataset, params: GenerationParams,
              one_at_a_time: bool, continuous: bool = True, **kwargs: Any) -> tuple[list[StageResult], dict[str, Any]]:
    """Role-play all scenarios (together, or one dialogue after the other) on a fresh prefix cache.

    Returns (results, measures: wall and CPU seconds, dialogues per minute, the backend's counters).
    """
    backend.clear_prefix_cache()
    before = backend.stats.to_dict()
    wall, cpu = time.perf_counter(), time.process_time()
    if one_at_a_time:
        results = [run_roleplay(scenarios.select([i]), backend, params=params, continuous=continuous, **kwargs)
                   for i in range(len(scenarios))]
    else:
        results = [run_roleplay(scenarios, backend, params=params, continuous=continuous, **kwargs)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = backend.stats.to_dict()
    counters = {k: after[k] - before[k] for k in ("requests", "prompt_tokens", "cached_prompt_tokens",
                                                  "prefilled_tokens", "generated_tokens")}
    counters["prefix_cache_hit_rate"] = (counters["cached_prompt_tokens"] / counters["prompt_tokens"]
                                         if counters["prompt_tokens"] else 0.0)
    measures = {"seconds": wall, "cpu_seconds": cpu, "dialogues_per_min": 60 * len(scenarios) / wall,
                "prefix_cache": backend.prefix_cache is not None, **counters,
                "turns_played": sum(len(d["turns"]) for r in results for d in r.dataset),
                "scheduling": results[0].stats["scheduling"],
                "backend_calls": sum(r.stats["backend_calls"] for r in results)}
    return results, measures


def dialogue_turns(results: list[StageResult]) -> list:
    return [[(t["speaker"], t["action"], t["text"]) for t in d["turns"]] for r in results for d in r.dataset]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dtype", default=None, help="weights dtype (default: the backend's, float32 on CPU)")
    parser.add_argument("--cultures", default="GBR,CHN")
    parser.add_argument("--scenarios-per-culture", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prefix-cache-tokens", type=int, default=None,
                        help="prefix cache budget of the batched run (default: the backend's)")
    parser.add_argument("--no-sequential-prefix-cache", action="store_true",
                        help="skip the one-dialogue-at-a-time run with the prefix cache")
    parser.add_argument("--no-waves", action="store_true", help="skip the run in waves (one call per turn)")
    parser.add_argument("--admit-ratio", type=float, default=0.5,
                        help="continuous batching: join when the joining group >= this x running rows (0: at once)")
    parser.add_argument("--max-waiting-steps", type=int, default=8,
                        help="continuous batching: or when the oldest waiting request waited this many steps")
    parser.add_argument("--out", default="benchmarks/results/clca_generation.json")
    args = parser.parse_args()

    scenarios = seed_scenarios_as_adapted(args.cultures.split(","), args.scenarios_per_culture)
    cached = TransformersBackend(args.model, batch_size=args.batch_size, dtype=args.dtype,
                                 prefix_cache_tokens=args.prefix_cache_tokens, admit_ratio=args.admit_ratio,
                                 max_waiting_steps=args.max_waiting_steps)
    reference = TransformersBackend.from_model(cached.model, cached.tokenizer, model_id=cached.model_id,
                                               batch_size=args.batch_size, prefix_cache_tokens=0)
    params = GenerationParams(**{**DEFAULT_ROLEPLAY_PARAMS.to_dict(), "max_new_tokens": args.max_new_tokens})
    kw = dict(max_turns=args.max_turns, show_progress=False)
    for backend in (cached, reference):  # warm-up (grammar compilation, first-call allocations)
        run_roleplay(scenarios.select([0]), backend, params=params, max_turns=1, show_progress=False)

    runs: dict[str, dict[str, Any]] = {}

    def run(name: str, backend: TransformersBackend, one_at_a_time: bool, continuous: bool = True) -> list[StageResult]:
        results, runs[name] = timed_run(backend, scenarios, params, one_at_a_time, continuous, **kw)
        print(f"{name}: {json.dumps(runs[name])}", flush=True)
        return results

    batched = run("batched", cached, one_at_a_time=False)
    if not args.no_waves:
        waves = run("batched_waves", cached, one_at_a_time=False, continuous=False)
    sequential = run("sequential_reference", reference, one_at_a_time=True)
    if not args.no_sequential_prefix_cache:
        sequential_cached = run("sequential_prefix_cache", cached, one_at_a_time=True)

    batched_s = runs["batched"]["seconds"]
    result = {
        "model": args.model,
        "dtype": str(cached.model.dtype),
        "dialogues": len(scenarios),
        "max_turns": args.max_turns,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "admit_ratio": args.admit_ratio,
        "max_waiting_steps": args.max_waiting_steps,
        "prefix_cache_tokens": cached.prefix_cache.max_tokens if cached.prefix_cache is not None else 0,
        "kept_dialogues": len(batched[0].dataset),
        "rejected_dialogues": len(batched[0].rejections),
        "runs": runs,
        "same_dialogues": {"sequential_reference": dialogue_turns(batched) == dialogue_turns(sequential)},
        "batched_dialogues_per_min": runs["batched"]["dialogues_per_min"],
        "sequential_dialogues_per_min": runs["sequential_reference"]["dialogues_per_min"],
        "speedup": runs["sequential_reference"]["seconds"] / batched_s,
        "speedup_cpu_seconds": runs["sequential_reference"]["cpu_seconds"] / runs["batched"]["cpu_seconds"],
        "device": device_description(),
        "command": " ".join(["python"] + sys.argv),
    }
    if "sequential_prefix_cache" in runs:
        result["same_dialogues"]["sequential_prefix_cache"] = dialogue_turns(batched) == dialogue_turns(
            sequential_cached)
        result["speedup_vs_sequential_prefix_cache"] = runs["sequential_prefix_cache"]["seconds"] / batched_s
    if "batched_waves" in runs:
        result["same_dialogues"]["batched_waves"] = dialogue_turns(batched) == dialogue_turns(waves)
        result["speedup_vs_waves"] = runs["batched_waves"]["seconds"] / batched_s
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
