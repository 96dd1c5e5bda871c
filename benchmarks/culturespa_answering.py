"""CultureSPA answering: exact log-prob answers vs. the reference's sampled answers, on the same questions.

On the embedded model, the generated questions of a CultureSPA run are answered for one culture, culture-unaware
and culture-aware (the two answers CRQPC compares):
  (a) log-prob mode: the exact answer distribution of each prompt, one batched forward pass per prompt batch;
  (b) sampling mode as the reference does it: 1 sample per prompt, temperature 0.6, top_p 0.9, parsed strictly;
      run twice with different seeds.
Reported: wall time of each mode and the `speedup` (sampling seconds / log-prob seconds), the unparsable samples
(`sampling_parse_failures`), and `sampling_self_disagreement`: the share of prompts (among those whose two
samples both parse) whose sampled answer differs between the two seeds. That is noise the reference's CRQPC
counts as a cultural difference (the unaware answer of one run vs. the aware answer of another); in log-prob
mode it is 0 by construction. Also the CRQPC changed share of each mode, and the share of sampled "changes"
that the second seed alone would produce for the unaware prompt.

The questions come from `--questions` (a `dataset/` folder of a previous `culture-align generate culturespa` run,
or its `questions` split) or are generated here with the pipeline on the same model (`--per-topic` per topic,
resumable in `--work-dir`).

Writes benchmarks/results/culturespa_answering.json. Reproduce with:
    .venv/bin/python benchmarks/culturespa_answering.py --per-topic 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from culture_align.models import DEFAULT_MODEL, load_model_and_tokenizer
from culture_align.recipes.culturespa import (
    DEFAULT_ANSWER_SAMPLING,
    CultureSPAPipeline,
    CultureSPAPipelineConfig,
    SurveyAnswerer,
    answer_questions,
    collect_pairs,
)

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402


def load_questions(path: str) -> datasets.Dataset:
    """The ``questions`` split of a saved DatasetDict folder, or a saved questions Dataset."""
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(folder))["questions"]
    if (folder / "dataset" / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(folder / "dataset"))["questions"]
    return datasets.load_from_disk(str(folder))


def disagreement(a: list[int | None], b: list[int | None]) -> tuple[float | None, int]:
    """Share of positions where both parsed and differ, among those where both parsed; and that count."""
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return (sum(x != y for x, y in both) / len(both) if both else None), len(both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--culture", default="USA")
    parser.add_argument("--questions", help="dataset/ folder of a previous CultureSPA run (default: generate here)")
    parser.add_argument("--per-topic", type=int, default=10, help="questions generated per topic (no --questions)")
    parser.add_argument("--topics", help="comma-separated topic ids to generate for (default: all 13)")
    parser.add_argument("--wvs", help="WVS source of the seed items (default: the bundled catalog)")
    parser.add_argument("--work-dir", default="runs/culturespa-benchmark", help="generation run folder (resumable)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-questions", type=int, help="answer only the first N questions")
    parser.add_argument("--out", default="benchmarks/results/culturespa_answering.json")
    args = parser.parse_args()

    model, tok = load_model_and_tokenizer(args.model, dtype=args.dtype)
    generation = None
    if args.questions:
        questions = load_questions(args.questions)
        source = args.questions
    else:
        config = CultureSPAPipelineConfig(wvs_path=args.wvs, topics=args.topics, questions_per_topic=args.per_topic,
                                          requests_per_round=max(args.per_topic, 4), batch_size=args.batch_size,
                                          show_progress=False)
        t0 = time.perf_counter()
        pipeline = CultureSPAPipeline(model, [args.culture], config, tokenizer=tok)
        questions = pipeline.run(args.work_dir)["questions"]
        stage = pipeline.stats["stages"]["questions"]
        generation = {"seconds": round(time.perf_counter() - t0, 1), "requests": stage["requests"],
                      "kept": stage["kept"], "rejections_by_reason": stage["rejections_by_reason"],
                      "work_dir": args.work_dir}
        source = f"generated here: {args.per_topic} per topic on {args.model}"
    if args.max_questions:
        questions = questions.select(range(min(args.max_questions, len(questions))))
    if len(questions) == 0:
        raise SystemExit("no questions to answer")
    culture = [args.culture]

    SurveyAnswerer(model, tok, batch_size=args.batch_size).answer([[{"role": "user", "content": "Hi"}]],
                                                                  [_warmup_question()])  # warm-up
    logprob = SurveyAnswerer(model, tok, batch_size=args.batch_size)
    t0 = time.perf_counter()
    exact = answer_questions(questions, culture, logprob, show_progress=False).dataset
    logprob_s = time.perf_counter() - t0

    runs, seconds = [], []
    for seed in (0, 1):
        params = dataclasses.replace(DEFAULT_ANSWER_SAMPLING, seed=seed)
        sampler = SurveyAnswerer(model, tok, mode="sampling", sampling=params, batch_size=args.batch_size)
        t0 = time.perf_counter()
        runs.append(answer_questions(questions, culture, sampler, show_progress=False).dataset)
        seconds.append(time.perf_counter() - t0)

    first, second = runs
    failures = [sum(run["unaware_invalid"]) + sum(run["aware_invalid"]) for run in runs]
    unaware = list(first["unaware_answer"]), list(second["unaware_answer"])
    aware = list(first["aware_answer"]), list(second["aware_answer"])
    unaware_dis, unaware_n = disagreement(*unaware)
    aware_dis, aware_n = disagreement(*aware)
    all_dis, all_n = disagreement(unaware[0] + aware[0], unaware[1] + aware[1])
    sampled_pairs = collect_pairs(first, questions).stats
    exact_pairs = collect_pairs(exact, questions).stats
    result = {
        "model": args.model,
        "dtype": args.dtype,
        "culture": args.culture,
        "questions": len(questions),
        "questions_source": source,
        "prompts_per_mode": 2 * len(questions),
        "batch_size": args.batch_size,
        "sampling_params": dataclasses.asdict(DEFAULT_ANSWER_SAMPLING),
        "logprob_seconds": logprob_s,
        "sampling_seconds": seconds[0],
        "sampling_seconds_second_seed": seconds[1],
        "speedup": seconds[0] / logprob_s,
        "sampling_parse_failures": failures[0],
        "sampling_parse_failures_second_seed": failures[1],
        "sampling_total_samples": 2 * len(questions),
        "sampling_self_disagreement": all_dis,
        "sampling_self_disagreement_pairs": all_n,
        "sampling_self_disagreement_unaware": unaware_dis,
        "sampling_self_disagreement_aware": aware_dis,
        "sampling_self_disagreement_counts": {"unaware": unaware_n, "aware": aware_n},
        "logprob_self_disagreement": 0.0,
        "crqpc_changed_share_sampling": sampled_pairs["changed_share"],
        "crqpc_changed_share_logprob": exact_pairs["changed_share"],
        "mean_exact_prob_of_sampled_answer": _mean_prob_of(first, exact),
        "note": "self-disagreement: share of prompts, among those whose two 1-sample answers (seeds 0 and 1) both "
                "parse, whose answers differ; the unaware part is pure sampling noise that the reference's CRQPC "
                "(1 sample each for unaware and aware) would count as a cultural change",
        "generation": generation,
        "device": device_description(),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(["python"] + sys.argv),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


def _warmup_question():
    from culture_align.wvs.questions import SurveyQuestion

    return SurveyQuestion("warmup", "Warm-up?", ("Yes", "No"), (1, 2))


def _mean_prob_of(sampled: datasets.Dataset, exact: datasets.Dataset) -> float | None:
    """Mean exact probability (log-prob mode) of the code each sampled aware answer chose."""
    values = []
    for s, e in zip(sampled.to_list(), exact.to_list()):
        if s["aware_answer"] is not None:
            values.append(e["aware_probs"][e["codes"].index(s["aware_answer"])])
    return float(np.mean(values)) if values else None


if __name__ == "__main__":
    main()
