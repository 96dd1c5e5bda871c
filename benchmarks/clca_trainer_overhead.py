"""CLCATrainer's cost over TRL's SFTTrainer: median training-step time on identical tokenised batches.

Both trainers get the same model weights and the same collated batch (8 conversations, every assistant turn
labelled; CLCA's batch also carries its per-token task ids). A step is what `Trainer` does per micro-batch:
`get_batch_samples` (token counting) + `training_step` (forward, loss, backward); the optimizer step is the
same for both and left out. Steps alternate between the two trainers to share any drift of the machine.

Writes benchmarks/results/clca_trainer_overhead.json. Reproduce with:
    .venv/bin/python benchmarks/clca_trainer_overhead.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from culture_align.embedded_models import DEFAULT_MODEL
from culture_align.models import resolve_model_path
from culture_align.trainers import CLCAConfig, CLCATrainer

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402


def conversations(n: int) -> list[dict]:
    """Multi-turn chats mixing both tasks (task labels only matter to CLCA)."""
    rows = []
    for i in range(n):
        turns = [{"role": "system", "content": f"You are Mei, a teacher in Chengdu. Scenario {i}: a neighbour "
                                               "asks you to lend money for a family wedding."}]
        for t in range(3):
            turns.append({"role": "user", "content": f"Turn {2 * t + 1}: I hope this is not too much to ask, "
                                                     f"but could you help us this time? ({i}, {t})"})
            turns.append({"role": "assistant", "content": "I understand how important this is for your family. "
                                                          f"Let me talk with my husband first. ({i}, {t})"})
        rows.append({"messages": turns, "task": "dialogue" if i % 2 == 0 else "intent"})
    return rows


def tiny_model_dir(folder: Path, tokenizer_source: str) -> str:
    """A 2-layer Llama with the embedded model's tokenizer (random weights), saved to ``folder``."""
    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def step_times(model_path: str, steps: int, batch_size: int) -> dict:
    rows = conversations(batch_size)
    common = dict(report_to="none", use_cpu=True, save_strategy="no", bf16=False, activation_checkpointing=False,
                  dataloader_num_workers=0, per_device_train_batch_size=batch_size, max_steps=1, disable_tqdm=True)
    with tempfile.TemporaryDirectory() as tmp:
        clca = CLCATrainer(AutoModelForCausalLM.from_pretrained(model_path),
                           args=CLCAConfig(output_dir=tmp, **common), train_dataset=Dataset.from_list(rows),
                           processing_class=AutoTokenizer.from_pretrained(model_path))
        sft = SFTTrainer(AutoModelForCausalLM.from_pretrained(model_path), args=SFTConfig(output_dir=tmp, **common),
                         train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
                         processing_class=AutoTokenizer.from_pretrained(model_path))
        batch = clca.data_collator([clca.train_dataset[i] for i in range(batch_size)])
        sft_batch = {k: v for k, v in batch.items() if k != "task_ids"}  # same ids, same labels
        device = clca.accelerator.device
        timings: dict[str, list[float]] = {"clca": [], "sft": []}
        for trainer in (clca, sft):
            trainer.model.train()
            trainer.create_optimizer()
        for step in range(steps + 3):
            for trainer, name, b in ((clca, "clca", batch), (sft, "sft", sft_batch)):
                start = time.perf_counter()
                samples, num_items = trainer.get_batch_samples(iter([dict(b)]), 1, device)
                trainer.training_step(trainer.model, samples[0], num_items)
                elapsed = time.perf_counter() - start
                trainer.model.zero_grad(set_to_none=True)
                if step >= 3:  # warm-up steps are not counted
                    timings[name].append(elapsed)
        tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
    clca_ms, sft_ms = (1000 * statistics.median(timings[k]) for k in ("clca", "sft"))
    return {"steps": steps, "batch_size": batch_size, "tokens_per_batch": tokens,
            "clca_median_ms": clca_ms, "sft_median_ms": sft_ms, "ratio": clca_ms / sft_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--embedded-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/clca_trainer_overhead.json")
    args = parser.parse_args()
    embedded = resolve_model_path(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = step_times(tiny_model_dir(Path(tmp), embedded), args.steps, args.batch_size)
        print("tiny", json.dumps(tiny))
    full = step_times(embedded, args.embedded_steps, args.batch_size)
    print("embedded", json.dumps(full))
    result = {"tiny_llama_2_layers": tiny, "smollm2_135m": full,
              "ratio": max(tiny["ratio"], full["ratio"]),
              "device": device_description(), "command": " ".join(["python"] + sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
