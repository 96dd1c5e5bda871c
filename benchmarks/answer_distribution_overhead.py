"""AnswerDistributionTrainer's cost against TRL's SFTTrainer: median training-step time on the same prompts.

The same survey prompts (WVS items of the bundled catalog, culture-aware system prompt, batch of 16) go to both
trainers with the same LoRA configuration (r=16, all linear layers): `AnswerDistributionTrainer` with a target
distribution over the item's codes (forward KL on the evaluator's constrained answer distribution), `SFTTrainer`
with the modal code as the assistant answer (cross-entropy on the answer tokens). A step is `get_batch_samples` +
`training_step` (forward, loss, backward); the optimizer step is the same for both and left out. Steps alternate
between the trainers to share any drift of the machine.

Writes benchmarks/results/answer_distribution_overhead.json. Reproduce with (one core, one thread):
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/answer_distribution_overhead.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from culture_align.cultures import resolve_cultures
from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.models import resolve_model_path
from culture_align.prompts.wvs import SETTINGS, build_conversation
from culture_align.trainers import AnswerDistributionConfig, AnswerDistributionTrainer
from culture_align.wvs import bundled_questions, is_evaluation_item

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402


def survey_rows(n: int, seed: int = 0) -> list[dict]:
    """n culture-aware prompts over WVS items (10-point items included), each with a random target."""
    rng = np.random.default_rng(seed)
    questions = [q for qid, q in bundled_questions().items() if is_evaluation_item(qid)]
    cultures = resolve_cultures(["USA", "CHN", "DEU", "NGA", "BRA"])
    rows = []
    for i in range(n):
        q, culture = questions[(7 * i) % len(questions)], cultures[i % len(cultures)]
        target = rng.dirichlet(np.ones(q.num_options))
        prompt = build_conversation(SETTINGS["culture-aware"], q, culture)
        rows.append({"prompt": prompt, "choices": [str(c) for c in q.codes], "target": target.tolist(),
                     "culture": culture.iso3,
                     "messages": prompt + [{"role": "assistant", "content": str(q.codes[int(np.argmax(target))])}]})
    return rows


def step_times(model_path: str, steps: int, batch_size: int, bf16: bool) -> dict:
    rows = survey_rows(batch_size)
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(report_to="none", use_cpu=True, save_strategy="no", bf16=bf16, gradient_checkpointing=False,
                  dataloader_num_workers=0, per_device_train_batch_size=batch_size, max_steps=1, disable_tqdm=True)
    with tempfile.TemporaryDirectory() as tmp:
        ours = AnswerDistributionTrainer(
            AutoModelForCausalLM.from_pretrained(model_path), args=AnswerDistributionConfig(output_dir=tmp, **common),
            train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "choices", "target", "culture")}
                                             for r in rows]),
            processing_class=AutoTokenizer.from_pretrained(model_path), peft_config=LoraConfig(**lora))
        sft = SFTTrainer(AutoModelForCausalLM.from_pretrained(model_path),
                         args=SFTConfig(output_dir=tmp, assistant_only_loss=False, completion_only_loss=False,
                                        **common),
                         train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
                         processing_class=AutoTokenizer.from_pretrained(model_path), peft_config=LoraConfig(**lora))
        batches = {"answer_distribution": ours.data_collator([ours.train_dataset[i] for i in range(batch_size)]),
                   "sft": sft.data_collator([sft.train_dataset[i] for i in range(batch_size)])}
        device = ours.accelerator.device
        timings: dict[str, list[float]] = {name: [] for name in batches}
        for trainer in (ours, sft):
            trainer.model.train()
            trainer.create_optimizer()
        for step in range(steps + 2):
            for trainer, name in ((ours, "answer_distribution"), (sft, "sft")):
                start = time.perf_counter()
                samples, num_items = trainer.get_batch_samples(iter([dict(batches[name])]), 1, device)
                trainer.training_step(trainer.model, samples[0], num_items)
                elapsed = time.perf_counter() - start
                trainer.model.zero_grad(set_to_none=True)
                if step >= 2:  # warm-up steps are not counted
                    timings[name].append(elapsed)
        tokens = {name: int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
                  for name, b in batches.items()}
    ours_ms, sft_ms = (1000 * statistics.median(timings[k]) for k in ("answer_distribution", "sft"))
    return {"steps": steps, "batch_size": batch_size, "bf16_autocast": bf16, "tokens_per_batch": tokens,
            "answer_distribution_median_ms": round(ours_ms, 1), "sft_median_ms": round(sft_ms, 1),
            "ratio": round(ours_ms / sft_ms, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", default="benchmarks/results/answer_distribution_overhead.json")
    args = parser.parse_args()
    path = resolve_model_path(args.model)
    runs = {f"bf16={bf16}": step_times(path, args.steps, args.batch_size, bf16) for bf16 in (True, False)}
    for name, run in runs.items():
        print(name, json.dumps(run))
    result = {"model": args.model, "runs": runs, "ratio": max(r["ratio"] for r in runs.values()), "target": 1.10,
              "device": f"{device_description()}, torch threads {torch.get_num_threads()}",
              "command": " ".join(["python"] + sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
