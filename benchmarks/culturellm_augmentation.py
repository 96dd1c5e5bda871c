"""CultureLLM augmentation throughput on the embedded model, and the embedding filter's throughput.

The whole augmentation (step 1 structural rewrites with retries, step 2 synonyms and lexical variants, the
similarity filter, the per-seed cap, training records) runs through ``CultureLLMPipeline`` with the embedded
SmolLM2-135M-Instruct as teacher (``TransformersBackend``, JSON-constrained decoding) and all-MiniLM-L6-v2 as
the filter, from a fresh cache, on the first N of the 50 CultureLLM seed items (``--all-seeds`` for all 50).
Reported: augmented samples per minute (and candidates per minute), kept / rejected counts per step with the
rejection reasons, seconds per step, teacher tokens, and the similarity summaries.

Embedding filter throughput: the filter's model encodes a realistic batch, the distinct texts of the run (seeds,
the WVS item texts, kept and rejected candidates) cycled up to 512 sentences, at the filter's batch size,
without the per-text cache; sentences per second of the median of three passes.

Writes benchmarks/results/culturellm_augmentation.json. Reproduce with:
    .venv/bin/python benchmarks/culturellm_augmentation.py --wvs ../shared/data/wvs/distributions_50items_12countries.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from culture_align.backends.transformers import TransformersBackend
from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.embeddings import SentenceEmbedder
from culture_align.recipes.culturellm import (
    CULTURELLM_SEED_ITEMS,
    DEFAULT_PARAPHRASE_PARAMS,
    DEFAULT_SYNONYM_PARAMS,
    CultureLLMPipeline,
    CultureLLMPipelineConfig,
)
from culture_align.wvs import load_wvs

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import _cpu_has_bf16, device_description  # noqa: E402


def _device() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return device_description()


def embedding_throughput(texts: list[str], batch_size: int, min_sentences: int = 512, repeats: int = 3) -> dict:
    """Sentences per second of the filter's model over ``texts`` (cycled up to ``min_sentences``), encoded as
    :class:`SentenceEmbedder` encodes new texts (batched, normalised), without its cache; median of
    ``repeats`` passes."""
    embedder = SentenceEmbedder(batch_size=batch_size)
    batch = [texts[i % len(texts)] for i in range(max(min_sentences, len(texts)))]
    embedder.model.encode(batch[:batch_size], batch_size=batch_size)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.model.encode(batch, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                              show_progress_bar=False)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"model": embedder.model_name, "sentences": len(batch), "distinct_sentences": len(set(batch)),
            "batch_size": batch_size, "mean_characters": round(sum(map(len, batch)) / len(batch), 1),
            "seconds_median": round(median, 4), "sentences_per_s": round(len(batch) / median, 1),
            "passes": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wvs", default="../shared/data/wvs/distributions_50items_12countries.json")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--cultures", default="USA,DEU,CHN,KOR,TUR", help="labelled cultures (labels only)")
    parser.add_argument("--num-seeds", type=int, default=10, help="the first N CultureLLM seed items")
    parser.add_argument("--all-seeds", action="store_true", help="all 50 seed items")
    parser.add_argument("--num-rewrites", type=int, default=5, help="n")
    parser.add_argument("--retries", type=int, default=3, help="k: step-1 extra rounds (reference: 10)")
    parser.add_argument("--max-samples-per-seed", type=int, default=10, help="m")
    parser.add_argument("--threshold", type=float, default=0.8, help="tau")
    parser.add_argument("--batch-size", type=int, default=16, help="teacher completions decoded together")
    parser.add_argument("--max-new-tokens", type=int,
                        help="teacher tokens per answer in both steps (default: the pipeline's, 384 and 320)")
    parser.add_argument("--embedding-batch-size", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"],
                        help="teacher weights (default: bfloat16 on GPU or a CPU with bf16 kernels, else float32)")
    parser.add_argument("--out", default="benchmarks/results/culturellm_augmentation.json")
    args = parser.parse_args()

    dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() or _cpu_has_bf16() else "float32")
    wvs = load_wvs(args.wvs)
    num_seeds = len(CULTURELLM_SEED_ITEMS) if args.all_seeds else args.num_seeds
    teacher = TransformersBackend(args.model, batch_size=args.batch_size, dtype=getattr(torch, dtype))
    embedder = SentenceEmbedder(batch_size=args.embedding_batch_size)
    embedder.model.encode(["warm-up sentence"] * 8, batch_size=8)
    lengths = {} if args.max_new_tokens is None else {
        "paraphrase_params": replace(DEFAULT_PARAPHRASE_PARAMS, max_new_tokens=args.max_new_tokens),
        "synonym_params": replace(DEFAULT_SYNONYM_PARAMS, max_new_tokens=args.max_new_tokens)}
    config = CultureLLMPipelineConfig(
        **lengths, num_seeds=num_seeds, num_rewrites=args.num_rewrites, paraphrase_retries=args.retries,
        max_samples_per_seed=args.max_samples_per_seed, similarity_threshold=args.threshold, show_progress=False)
    pipeline = CultureLLMPipeline(teacher, wvs, args.cultures.split(","), config, embedder=embedder)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = pipeline.run(tmp)
        seconds = time.perf_counter() - start
    stats = pipeline.stats
    steps = stats["steps"]
    candidates = (steps["paraphrase"]["candidates"] + steps["paraphrase"]["malformed_replies"]
                  + steps.get("lexical", {}).get("candidates", 0))
    texts = list(dict.fromkeys(list(corpus["seeds"]["text"]) + [q.text for q in wvs.questions.values()]
                               + list(corpus["augmented"]["text"])
                               + [t for t, r in zip(corpus["rejections"]["text"], corpus["rejections"]["reason"])
                                  if r != "malformed"]))
    result = {
        "teacher": args.model,
        "teacher_dtype": dtype,
        "seeds": len(corpus["seeds"]),
        "cultures": stats["cultures"],
        "settings": {"num_rewrites": args.num_rewrites, "retries": args.retries, "threshold": args.threshold,
                     "max_samples_per_seed": args.max_samples_per_seed, "teacher_batch_size": args.batch_size,
                     "paraphrase_params": stats["config"]["paraphrase_params"],
                     "synonym_params": stats["config"]["synonym_params"]},
        "seconds": round(seconds, 2),
        "augmented_samples": len(corpus["augmented"]),
        "samples_per_minute": round(60 * len(corpus["augmented"]) / seconds, 2),
        "candidates": candidates,
        "candidates_per_minute": round(60 * candidates / seconds, 2),
        "train_records": len(corpus["train"]),
        "teacher_requests": stats["cache"]["misses"],
        "teacher_generation": teacher.stats.to_dict(),
        "steps": {name: {k: v for k, v in step.items() if k not in ("unlabelled",)} for name, step in steps.items()},
        "rejections": stats["counts"]["rejection_reasons"],
        "similarity": stats["similarity"],
        "embedding_in_run": stats.get("embedding"),
        "embedding_filter_throughput": embedding_throughput(texts, args.embedding_batch_size),
        "device": _device(),
        "command": " ".join(["python"] + sys.argv),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
