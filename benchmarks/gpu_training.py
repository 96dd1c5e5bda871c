"""Training throughput (tokens/s) and peak GPU memory of the CLCA and CultureSPA trainers, LoRA in bf16.

Per recipe, a fresh trainer trains ``--warmup-steps + --steps`` optimizer steps (batch ``--batch-size``, no
accumulation, LoRA r=16 / alpha=32 on every linear layer but ``lm_head``, base weights in bf16) on records shaped
like the recipe's own:

- ``clca``: :class:`~culture_align.trainers.CLCATrainer` on multi-turn chats, half dialogue and half intent
  examples (about 220 tokens each with the embedded model's tokenizer);
- ``culturespa``: :class:`~culture_align.trainers.CultureSPATrainer` (joint mode) on CultureSPA training records
  (culture-aware survey prompt, question with options, the option number) built from the bundled WVS catalog.

Throughput = input tokens of the measured steps (non-padding, as the trainers count them in ``num_tokens``) over
their wall time; each step end is synchronised with the GPU and every step is logged (``logging_steps=1``, as a
run that watches its loss would). Peak memory = ``torch.cuda.max_memory_allocated`` from just before the model is
loaded to the end of training (weights, LoRA, optimizer state, activations). A recipe whose trainer cannot be
imported is skipped with a message.

On a machine without CUDA it refuses ("no GPU: nothing measured") and writes nothing. ``--device cpu`` runs the
same code on the CPU as a smoke test (no memory figure; results only printed unless ``--out`` is given).

Reproduce (GPU):
    python benchmarks/gpu_training.py                                   # embedded SmolLM2-135M-Instruct
    python benchmarks/gpu_training.py --model Qwen/Qwen2.5-0.5B-Instruct --batch-size 16
Smoke test (CPU):
    python benchmarks/gpu_training.py --device cpu --model tiny --steps 2 --warmup-steps 1 --batch-size 2
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from clca_trainer_overhead import conversations, tiny_model_dir  # noqa: E402
from eval_throughput import device_description  # noqa: E402

from culture_align.embedded_models import DEFAULT_MODEL

DEFAULT_OUT = "benchmarks/results/gpu_training.json"
NO_GPU = "no GPU: nothing measured"
RECIPES = ("clca", "culturespa")


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step, after waiting for the device."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self.synchronize = synchronize
        self.step_ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.synchronize()
        self.step_ends.append(time.perf_counter())


def clca_setup(num_examples: int) -> tuple[type, type, Dataset]:
    from culture_align.trainers import CLCAConfig, CLCATrainer

    return CLCATrainer, CLCAConfig, Dataset.from_list(conversations(num_examples))


def culturespa_setup(num_examples: int) -> tuple[type, type, Dataset]:
    from culture_align.cultures import resolve_cultures
    from culture_align.recipes.culturespa import training_messages
    from culture_align.trainers import CultureSPAConfig, CultureSPATrainer
    from culture_align.wvs import bundled_questions

    questions = list(bundled_questions().values())
    cultures = resolve_cultures(["USA", "CHN", "DEU", "BRA", "IND", "NGA"])
    rows = []
    for k in range(num_examples):
        question, culture = questions[k % len(questions)], cultures[(k // len(questions)) % len(cultures)]
        answer = question.codes[k % len(question.codes)]
        rows.append({"messages": training_messages(question, culture, answer), "culture": culture.iso3})
    return CultureSPATrainer, CultureSPAConfig, Dataset.from_list(rows)


SETUPS = {"clca": clca_setup, "culturespa": culturespa_setup}


def measure(recipe: str, model_path: str, device: str, bf16: bool, steps: int, warmup_steps: int,
            batch_size: int) -> dict[str, Any]:
    """Train one recipe's trainer and time it; returns the measurements (see the module docstring)."""
    trainer_class, config_class, dataset = SETUPS[recipe](batch_size * (steps + warmup_steps))
    on_gpu = device == "cuda"
    synchronize = torch.cuda.synchronize if on_gpu else (lambda: None)
    clock = StepClock(synchronize)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as tmp:
        args = config_class(
            output_dir=tmp, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
            max_steps=steps + warmup_steps, learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none",
            bf16=bf16, use_cpu=not on_gpu, activation_checkpointing=False, dataloader_num_workers=0,
            disable_tqdm=True, seed=0, model_init_kwargs={"dtype": "bfloat16" if bf16 else "float32"},
        )
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = trainer_class(model_path, args=args, train_dataset=dataset, peft_config=lora, callbacks=[clock])
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if on_gpu else None
        tokens = [entry["num_tokens"] for entry in trainer.state.log_history if "loss" in entry]
        trainable, total = trainer.model.get_nb_trainable_parameters()
        del trainer
    if len(clock.step_ends) != steps + warmup_steps or len(tokens) != steps + warmup_steps:
        raise RuntimeError(f"{recipe}: expected {steps + warmup_steps} timed and logged steps, got "
                           f"{len(clock.step_ends)} and {len(tokens)}")
    begin = clock.step_ends[warmup_steps - 1] if warmup_steps else clock.start
    measured_tokens = tokens[-1] - (tokens[warmup_steps - 1] if warmup_steps else 0)
    seconds = clock.step_ends[-1] - begin
    step_ms = [1000 * (b - a) for a, b in zip([begin, *clock.step_ends[warmup_steps:-1]], clock.step_ends[warmup_steps:])]
    return {
        "trainer": trainer_class.__name__, "steps": steps, "warmup_steps": warmup_steps, "batch_size": batch_size,
        "tokens": int(measured_tokens), "mean_tokens_per_example": round(measured_tokens / (steps * batch_size), 1),
        "seconds": round(seconds, 4), "tokens_per_second": round(measured_tokens / seconds, 1),
        "examples_per_second": round(steps * batch_size / seconds, 2),
        "median_step_ms": round(statistics.median(step_ms), 2),
        "peak_memory_allocated_mib": round(peak / 2**20, 1) if peak is not None else None,
        "trainable_parameters": int(trainable), "parameters": int(total),
    }


def gpu_description() -> str:
    props = torch.cuda.get_device_properties(0)
    return (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"torch {torch.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, among {', '.join(RECIPES)}")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="HF id, local path, the embedded alias, or `tiny` (a 2-layer Llama, random weights)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 weights and autocast (default: on for cuda, off for cpu)")
    parser.add_argument("--steps", type=int, default=20, help="measured optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps run first and not measured")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help=f"results JSON (default on cuda: {DEFAULT_OUT}; on cpu: print only)")
    args = parser.parse_args(argv)

    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown or not recipes:
        parser.error(f"unknown recipe(s) {unknown}: use some of {', '.join(RECIPES)}")
    if args.steps < 1 or args.warmup_steps < 0 or args.batch_size < 1:
        parser.error("need --steps >= 1, --warmup-steps >= 0 and --batch-size >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 1
    bf16 = args.bf16 if args.bf16 is not None else args.device == "cuda"
    out = args.out or (DEFAULT_OUT if args.device == "cuda" else None)

    from culture_align.models import resolve_model_path

    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = (tiny_model_dir(Path(tmp), resolve_model_path(DEFAULT_MODEL))
                      if args.model == "tiny" else resolve_model_path(args.model))
        for recipe in recipes:
            try:  # the trainers' modules import lazily: a recipe whose trainer is missing is skipped
                importlib.import_module("culture_align.trainers")
                SETUPS[recipe](0)
            except ImportError as err:
                skipped[recipe] = f"trainer not importable: {err}"
                print(f"{recipe}: skipped ({skipped[recipe]})", file=sys.stderr)
                continue
            results[recipe] = measure(recipe, model_path, args.device, bf16, args.steps, args.warmup_steps,
                                      args.batch_size)
            print(recipe, json.dumps(results[recipe]))
    report = {
        "model": args.model, "device": gpu_description() if args.device == "cuda" else device_description(),
        "bf16": bf16, "lora": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
        "recipes": results, "skipped": skipped, "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(report, indent=2))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}")
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
