"""Evaluation throughput: exact log-prob answer distributions vs. estimating them by sampling.

On the embedded model, for the WVS items of one culture (culture-aware prompts):
  (a) log-prob mode: the exact answer distribution from one batched forward pass per prompt batch;
  (b) sampling mode: 10 answers per item (temperature 1.0, up to 8 new tokens) from the same backend's
      `generate` (continuous batching, prefix KV cache; each prompt prefilled once for its 10 samples), parsed
      strictly, giving an estimate of the distribution; and, as a second baseline, transformers'
      `generate` with num_return_sequences=10 on every 4th item (each sample re-reads its prompt).
Then the full 18-culture run in log-prob mode (culture-unaware and culture-aware), timed end to end
through WVSEvaluator, in float32 and (where the CPU has bf16 instructions) bfloat16.

Writes benchmarks/results/eval_throughput.json. Reproduce with:
    .venv/bin/python benchmarks/eval_throughput.py --wvs ../shared/data/wvs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from culture_align.backends import GenerationParams
from culture_align.backends.transformers import TransformersBackend
from culture_align.cultures import get_culture
from culture_align.evaluation import EvaluationConfig, WVSEvaluator
from culture_align.evaluation.scoring import parse_answer_code
from culture_align.metric import alignment_math
from culture_align.models import DEFAULT_MODEL, load_model_and_tokenizer
from culture_align.prompts.wvs import build_conversation, get_setting
from culture_align.wvs import load_wvs

# The 18 countries of CultureSPA's evaluation (the 19-country file without MEX).
CULTURES_18 = ["AUS", "BOL", "BRA", "CAN", "CHN", "DEU", "ETH", "GBR", "IND", "KEN", "NGA", "NLD", "NZL",
               "RUS", "THA", "UKR", "USA", "ZWE"]


def device_description() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__} (host CPU {cpu})"
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _cpu_has_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 or AMX): bf16 then runs about 2x faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wvs", default="../shared/data/wvs", help="WVS folder (questions + distributions)")
    parser.add_argument("--culture", default="USA")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--skip-full", action="store_true", help="skip the 18-culture runs")
    parser.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = parser.parse_args()

    wvs = load_wvs(args.wvs)
    culture = get_culture(args.culture)
    qids = [q for q in wvs.questions if wvs.distribution(culture.iso3, q) is not None]
    questions = [wvs.questions[q] for q in qids]
    template = get_setting("culture-aware")
    convs = [build_conversation(template, q, culture) for q in questions]
    choices = [[str(c) for c in q.codes] for q in questions]
    model, tok = load_model_and_tokenizer(args.model, dtype=torch.float32)
    backend = TransformersBackend.from_model(model, tok, batch_size=args.batch_size)
    backend.score(convs[:4], choices[:4])  # warm-up
    prompt_tokens = [len(backend.encode(c)) for c in convs]

    t0 = time.perf_counter()
    exact_scores = backend.score(convs, choices)
    logprob_s = time.perf_counter() - t0
    exact = [np.exp(s - s.max()) / np.exp(s - s.max()).sum() for s in exact_scores]

    params = GenerationParams(n=args.samples, temperature=1.0, max_new_tokens=8, seed=0)
    # The evaluator's sampling mode: batch_size prompts' samples decoded together (batch_size x n rows)
    backend = TransformersBackend.from_model(model, tok, batch_size=args.batch_size * args.samples)
    backend.generate(convs[:2], params)  # warm-up
    backend.clear_prefix_cache()
    t0 = time.perf_counter()
    flat = backend.generate(convs, params)
    sampling_s = time.perf_counter() - t0
    samples = [flat[i: i + args.samples] for i in range(0, len(flat), args.samples)]
    failures, estimates, kept = 0, [], []
    for i, (q, texts) in enumerate(zip(questions, samples)):
        parsed = [parse_answer_code(t, q.codes) for t in texts]
        failures += sum(p is None for p in parsed)
        valid = [p for p in parsed if p is not None]
        if valid:
            counts = np.bincount([q.index_of(p) for p in valid], minlength=q.num_options)
            estimates.append(counts / counts.sum())
            kept.append(i)
    math = alignment_math()
    noise = math.distribution_scores(estimates, [exact[i] for i in kept]) if kept else None

    # A second sampling baseline: plain `model.generate` with num_return_sequences (each sample re-reads
    # its whole prompt), as a straightforward sampling evaluator would do it; on every 4th item.
    subset = convs[::4]
    tok.padding_side = "left"
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(subset), args.batch_size):
            texts = [backend.render(c) for c in subset[start: start + args.batch_size]]
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=8,
                           num_return_sequences=args.samples, pad_token_id=tok.pad_token_id)
    hf_generate_s = time.perf_counter() - t0

    result = {
        "model": args.model,
        "culture": culture.iso3,
        "setting": "culture-aware",
        "items": len(questions),
        "mean_prompt_tokens": float(np.mean(prompt_tokens)),
        "batch_size": args.batch_size,
        "logprob_seconds": logprob_s,
        "logprob_items_per_s": len(questions) / logprob_s,
        "sampling_seconds": sampling_s,
        "sampling_items_per_s": len(questions) / sampling_s,
        "speedup": sampling_s / logprob_s,
        "sampling_samples_per_item": args.samples,
        "sampling_parse_failures": failures,
        "sampling_total_samples": args.samples * len(questions),
        "sampling_items_without_valid_sample": len(questions) - len(kept),
        "sampling_vs_exact_kl": None if noise is None else noise["kl_divergence"],
        "sampling_vs_exact_js_distance": None if noise is None else noise["js_distance"],
        "hf_generate_sampling_items": len(subset),
        "hf_generate_sampling_items_per_s": len(subset) / hf_generate_s,
        "speedup_vs_hf_generate": (len(subset) / hf_generate_s) ** -1 * (len(questions) / logprob_s),
        "sampling_vs_exact_kl_note": "mean over items with >= 1 valid sample of KL(exact || 10-sample estimate), "
                                     "estimate smoothed with the metric's eps=1e-6",
        "device": device_description(),
        "command": " ".join(["python"] + sys.argv),
    }
    print(json.dumps(result, indent=2))

    if not args.skip_full:
        full = {}
        cultures = [c for c in CULTURES_18 if c in wvs.cultures]
        dtypes = ["float32"] + (["bfloat16"] if _cpu_has_bf16() else [])
        reference = {}
        for dtype in dtypes:
            model, tok = load_model_and_tokenizer(args.model, dtype=dtype)
            for setting in ("culture-unaware", "culture-aware"):
                config = EvaluationConfig(settings=[setting], batch_size=args.batch_size)
                t0 = time.perf_counter()
                report = WVSEvaluator(model, tok, wvs, cultures=cultures, config=config,
                                      show_progress=False).evaluate()
                seconds = time.perf_counter() - t0
                key = f"{setting}_{dtype}"
                full[key] = {"seconds": seconds, "cells": len(report.items),
                             "kl_divergence_mean": report.row(setting)["kl_divergence"]}
                probs = {(r["culture"], r["qid"]): r["model_probs"] for r in report.items}
                if dtype == "float32":
                    reference[setting] = probs
                else:
                    keys = sorted(probs)
                    d = math.distribution_scores([probs[k] for k in keys], [reference[setting][k] for k in keys])
                    full[key]["kl_float32_vs_this_dtype"] = d["kl_divergence"]
                print(key, json.dumps(full[key]))
        result["full_run_18_cultures"] = {"cultures": cultures, "runs": full,
                                          "note": "WVSEvaluator.evaluate() wall time incl. metric and reference "
                                                  "rows; unaware prompts are identical across cultures and "
                                                  "scored once"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
