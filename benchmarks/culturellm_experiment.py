"""CultureLLM end to end on real WVS figures: the 50 seed items with each culture's modal answer → semantic
augmentation by the model itself → culture-specific adapters and one CultureLLM-One adapter → evaluation of
base, culture-aware prompting, specific and One on the WVS items **not** among the seeds.

Training labels come from ``distributions_50items_12countries.json`` (all nine downstream-task cultures);
the WVS evaluation uses the 19-country file, so it covers the trained cultures that file has. The seed items
are excluded from the evaluation (the held-out guard). Adapters are evaluated with the culture-aware prompt.
The adapters are then ready for ``culturellm_downstream.py`` (``--adapters-dir <work>/specific
--one-adapter <work>/one``).

Writes benchmarks/results/culturellm_experiment.json (+ .md). Reproduce with (about 35 min on 2 CPU cores):
    .venv/bin/python benchmarks/culturellm_experiment.py --wvs-dir ../shared/data/wvs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
import torch

from culture_align.backends import TransformersBackend
from culture_align.models import load_culture_adapters, load_model_and_tokenizer, resolve_model_path
from culture_align.recipes.culturellm import CultureLLMPipeline, CultureLLMPipelineConfig
from culture_align.trainers import CultureLLMConfig, CultureLLMTrainer
from culture_align.wvs import load_wvs

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402
from recipe_experiment import Condition, evaluate_conditions, markdown_table, train_adapters, write_results  # noqa: E402

TASK_CULTURES = "USA,DEU,CHN,BRA,MEX,KOR,JOR,BGD,TUR"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wvs-dir", default="../shared/data/wvs")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--cultures", default=TASK_CULTURES, help="cultures to train (labels from the 50-item file)")
    parser.add_argument("--num-seeds", type=int, default=None, help="first N of the 50 seed items (default: all)")
    parser.add_argument("--max-samples-per-seed", type=int, default=10)
    parser.add_argument("--paraphrase-retries", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--records-per-culture", type=int, default=None,
                        help="train on a seeded sample of this many records per culture (CPU budget; default: all)")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="runs/culturellm-experiment")
    parser.add_argument("--out", default="benchmarks/results/culturellm_experiment.json")
    args = parser.parse_args()
    cultures = [c.strip() for c in args.cultures.split(",")]
    wvs_dir, work = Path(args.wvs_dir), Path(args.work_dir)
    timings: dict[str, float] = {}

    print(f"1/3 data: seeds + augmentation, labels for {', '.join(cultures)}", flush=True)
    start = time.perf_counter()
    labels = load_wvs(wvs_dir / "distributions_50items_12countries.json")
    config = CultureLLMPipelineConfig(num_seeds=args.num_seeds, max_samples_per_seed=args.max_samples_per_seed,
                                      paraphrase_retries=args.paraphrase_retries, seed=args.seed,
                                      show_progress=False)
    if (work / "data" / "dataset" / "dataset_dict.json").is_file() and (work / "data" / "stats.json").is_file():
        corpus = datasets.load_from_disk(str(work / "data" / "dataset"))  # a finished data stage: reuse it
        stats = json.loads((work / "data" / "stats.json").read_text())
    else:
        teacher = TransformersBackend(args.model, batch_size=args.batch_size, dtype=args.dtype)
        pipeline = CultureLLMPipeline(teacher, labels, cultures, config)
        corpus = pipeline.run(work / "data")
        stats = pipeline.stats
        del pipeline, teacher
    timings["data"] = stats.get("seconds", round(time.perf_counter() - start, 1))
    seed_ids = list(stats["train_items"])
    print(f"   {len(corpus['augmented'])} augmented samples, {len(corpus['train'])} training records, "
          f"{len(seed_ids)} seed items held out", flush=True)

    train_set = corpus["train"].filter(lambda c: c in cultures, input_columns="culture")
    if args.records_per_culture:
        train_set = datasets.concatenate_datasets([
            train_set.filter(lambda c, culture=culture: c == culture, input_columns="culture").shuffle(seed=args.seed)
            .select(range(min(args.records_per_culture, sum(c == culture for c in train_set["culture"]))))
            for culture in cultures])
    print(f"2/3 training: specific adapters and CultureLLM-One on {len(train_set)} records", flush=True)
    model_path = resolve_model_path(args.model)
    train_kwargs = dict(batch_size=args.train_batch_size, epochs=args.epochs, learning_rate=args.learning_rate,
                        dtype=args.dtype, seed=args.seed, max_length=256)
    timings["train_specific"] = train_adapters(CultureLLMTrainer, CultureLLMConfig, "specific", model_path,
                                               train_set, work / "specific", **train_kwargs)
    timings["train_one"] = train_adapters(CultureLLMTrainer, CultureLLMConfig, "joint", model_path, train_set,
                                          work / "one", **train_kwargs)

    wvs = load_wvs(wvs_dir)
    evaluated = [c for c in cultures if c in wvs.cultures]
    print(f"3/3 evaluation on the WVS items not among the seeds, for {', '.join(evaluated)}", flush=True)
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype)
    model, specific = load_culture_adapters(model, work / "specific", evaluated)
    model, one = load_culture_adapters(model, work / "one")
    conditions = [Condition("base", "culture-unaware"), Condition("culture-aware prompting", "culture-aware"),
                  Condition("specific adapters", "culture-aware", specific),
                  Condition("One adapter", "culture-aware", one)]
    results = evaluate_conditions(model, tokenizer, wvs, evaluated, conditions, exclude_items=seed_ids,
                                  batch_size=args.batch_size, output_dir=work / "eval", model_name=args.model)
    timings["evaluation"] = results.pop("seconds")
    table = markdown_table(results, evaluated)
    print("\n" + table)
    payload = {
        "benchmark": "culturellm_experiment", "device": device_description(), "torch_threads": torch.get_num_threads(),
        "command": "python " + " ".join(sys.argv), "model": args.model, "dtype": args.dtype,
        "label_source": str(wvs_dir / "distributions_50items_12countries.json"), "eval_source": str(wvs_dir),
        "trained_cultures": cultures, "evaluated_cultures": evaluated, "held_out_seed_items": seed_ids,
        "data": {"augmented": len(corpus["augmented"]), "train_records": len(corpus["train"]),
                 "rejections": len(corpus["rejections"]), "counts": stats.get("counts"),
                 "similarity": stats.get("similarity")},
        "training": {"records": len(train_set), "records_per_culture": args.records_per_culture, "epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.train_batch_size},
        "adapters": {"specific": str(work / "specific"), "one": str(work / "one")},
        **results, "seconds": timings}
    write_results(Path(args.out), payload, table)


if __name__ == "__main__":
    main()
