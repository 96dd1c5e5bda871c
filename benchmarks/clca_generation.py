"""CLCA role-play throughput: all dialogues advancing together vs. one dialogue at a time.

The same model (the embedded SmolLM2-135M-Instruct unless --model), the same scenarios and the same turn limit.
``run_roleplay`` over the whole set makes one batched backend call per turn; the baseline, as the CLCA
reference does it, plays each dialogue on its own (one request at a time). The backend seeds each request
from the request itself, so both runs produce the same dialogues: the benchmark checks that and reports
dialogues per minute for each, and their ratio.

Writes benchmarks/results/clca_generation.json. Reproduce with:
    .venv/bin/python benchmarks/clca_generation.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets

from culture_align.backends.transformers import TransformersBackend
from culture_align.recipes.clca.roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay
from culture_align.recipes.clca.scenarios import load_seed_scenarios
from culture_align.recipes.clca.schemas import SCENARIO_FEATURES

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
                         "person2": seed["person2"], "provenance": "{}"})
    return datasets.Dataset.from_list(rows, features=SCENARIO_FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--cultures", default="GBR,CHN")
    parser.add_argument("--scenarios-per-culture", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/clca_generation.json")
    args = parser.parse_args()

    scenarios = seed_scenarios_as_adapted(args.cultures.split(","), args.scenarios_per_culture)
    backend = TransformersBackend(args.model, batch_size=args.batch_size)
    params = DEFAULT_ROLEPLAY_PARAMS.__class__(**{**DEFAULT_ROLEPLAY_PARAMS.to_dict(),
                                                  "max_new_tokens": args.max_new_tokens})
    kw = dict(max_turns=args.max_turns, show_progress=False)
    run_roleplay(scenarios.select([0]), backend, params=params, max_turns=1, show_progress=False)  # warm-up

    start = time.perf_counter()
    batched = run_roleplay(scenarios, backend, params=params, **kw)
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    sequential = [run_roleplay(scenarios.select([i]), backend, params=params, **kw) for i in range(len(scenarios))]
    sequential_s = time.perf_counter() - start

    def turns(results) -> list:
        return [[(t["speaker"], t["action"], t["text"]) for t in d["turns"]] for r in results for d in r.dataset]

    def rejected(results) -> int:
        return sum(len(r.rejections) for r in results)

    n = len(scenarios)
    result = {
        "model": args.model,
        "dialogues": n,
        "max_turns": args.max_turns,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "turns_played": sum(len(t) for t in turns([batched])),
        "kept_dialogues": len(batched.dataset),
        "rejected_dialogues": rejected([batched]),
        "same_dialogues_in_both_runs": turns([batched]) == turns(sequential),
        "batched_seconds": batched_s,
        "sequential_seconds": sequential_s,
        "batched_dialogues_per_min": 60 * n / batched_s,
        "sequential_dialogues_per_min": 60 * n / sequential_s,
        "speedup": sequential_s / batched_s,
        "device": device_description(),
        "command": " ".join(["python"] + sys.argv),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
