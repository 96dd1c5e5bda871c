"""A Llama-3.1-8B-shaped model (random weights) on one GPU: evaluation, training, accelerate and role-play.

Speed does not depend on the weights, so a causal LM built from an 8B config with random weights measures what
users of 7-8B models get, with no download. ``--shape 8b`` (default): hidden 4096, 32 layers, 32 heads / 8 KV
heads (head dim 128), intermediate 14336, Llama-3 RoPE, vocabulary 128256, bf16, built directly on the GPU
(8.03e9 parameters). The tokenizer is the embedded SmolLM2-135M-Instruct's (49152 tokens, with a chat
template): the model keeps the real 128256-token LM head (its cost and its logits' memory are part of what is
measured) and is only ever fed ids < 49152. ``--shape tiny``: the same code paths on a 2-layer Llama (hidden
64, the tokenizer's 49152 words) with fewer items, cultures, steps and dialogues, which runs on a CPU in
seconds (the test).

Sections (each a ratio against the obvious alternative, run in the same process, and absolute figures; a
section that fails is recorded with its error and the next one still runs; the JSON is rewritten after each):

1. ``wvs_evaluation``: :class:`~culture_align.evaluation.WVSEvaluator` in log-prob mode over the full table,
   259 WVS-7 items x 19 cultures, culture-aware prompts (``evaluate()`` wall time, metric and reference rows
   included; target <= 60 s), against ``model.generate`` sampling 10 answers per item (up to 8 new tokens, the
   evaluator's sampling defaults) on a subset of those prompts. The survey data are synthetic and WVS-shaped:
   the bundled catalog's questions cycled over the 259 item ids (each prompt distinct) and a Dirichlet(1)
   distribution per culture and item; no real data are needed for speed.
2. ``training``: ``CLCATrainer``, ``CultureSPATrainer`` and ``AnswerDistributionTrainer``, LoRA r=16 / alpha
   32 on every linear layer but ``lm_head``, bf16, no activation checkpointing: tokens/s (non-padding tokens),
   peak memory, the step split into forward+backward / optimizer / the rest, and MFU against the H200's dense
   bf16 peak (989 TFLOP/s, ``--peak-tflops``). Model FLOPs of a step (written in the results file too)::

       4 * N_body * T  +  4 * N_head * P  +  6 * N_lora * T  +  6 * L * d_attn * sum_i(s_i^2)

   N_body: weights of the decoder's linear layers, N_head: the LM head's, N_lora: the LoRA parameters; T:
   non-padding tokens, P: positions that go through the LM head (T for the SFT-style trainers, branching
   answer positions for AnswerDistributionTrainer), s_i: each sequence's length, L layers, d_attn = heads x
   head dim. Forward 2N per token; backward through the activations 2N (the frozen base gets no weight
   gradients, which would be another 2N); LoRA 6 per parameter (forward, activation and weight gradients);
   causal attention 2 * d_attn * s^2 per layer forward and twice that backward. A batch that OOMs is halved
   and retried. Variants on CLCA (``--train-variants``): ``batch_x2`` (not retried smaller: an OOM is its
   answer), ``liger`` (TRL's ``use_liger_kernel``; skipped when liger-kernel is not installed) and ``compile``
   (``torch_compile``; opt-in: compiling takes minutes).
3. ``accelerate``: ``accelerate launch`` with each of ``examples/accelerate/``'s configs (DDP, ZeRO-2, ZeRO-3,
   FSDP), one process on the one device, for a few ``CLCATrainer`` steps on the same shape (the launched
   process builds its own model); each must exit cleanly, and the adapter it saved must load onto this
   process's model with every tensor equal to the file and trained (``lora_B`` non-zero). DeepSpeed configs
   are skipped, with the reason, where ``deepspeed`` is not installed; on ``--device cpu`` only the DDP config
   runs. Multi-GPU (NCCL, sharding across ranks) stays unverified: no multi-GPU machine has run these.
4. ``roleplay``: CLCA role-play, 64 dialogues x 4 turns (``benchmarks/clca_generation.py``'s scenarios and
   timing), with our ``TransformersBackend`` (continuous batching, prefix KV cache) and with plain
   ``model.generate`` in waves (one batched call per turn, xgrammar's HF logits processor for the JSON
   schema), with a dynamic and with a static cache (on CUDA transformers then compiles the forward, here with
   dynamic shapes; the compilation falls in the untimed warm-up, reported as ``warmup_seconds``, and the path
   runs last, only within the time budget). Random weights never close a JSON string by themselves, so during
   this section the LM head's weight is swapped for zeros and a bias that makes the sampler close the reply
   after ``--roleplay-reply-tokens`` tokens on average and never pick ``leave`` (dialogues then run their
   turns); both paths run the full 8B forward pass all the same. Generated tokens/s.

Budgets (``--shape 8b`` defaults; estimated at 6-8 min of device time on an H200, not yet measured there):
evaluation: one pass over 4921 prompts + 64 sampled items; training: 3 + 10 steps per run, 3 trainers at batch
32 and CLCA at 64; accelerate: 3 steps per config, 240 s timeout per launch; role-play: 3 runs of 64 dialogues
x 4 turns (160 new tokens at most per turn). A section, config or generation path that would start after
``--time-budget-s`` (450 s, counted from the model build on) is skipped; the static-cache path needs
``--static-reserve-s`` (150 s) of it left, and a plain-``generate`` run stops between two calls once the
budget is spent.

Writes benchmarks/results/gpu_realistic.json (``--shape tiny``: gpu_realistic_tiny.json; or ``--out``) with
the device, library versions, the command, the budgets and each section. Without CUDA, ``--device cuda``
refuses ("no GPU: nothing measured") and writes nothing; ``--shape 8b`` needs ``--device cuda``.

Reproduce (one GPU):
    python benchmarks/gpu_realistic.py
Smoke run (CPU, about 30 s):
    python benchmarks/gpu_realistic.py --shape tiny --device cpu --out /tmp/gpu_realistic_tiny.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from culture_align.backends.base import GenerationBackend, GenerationParams, GenerationStats
from culture_align.embedded_models import DEFAULT_MODEL

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = "benchmarks/results/gpu_realistic.json"
DEFAULT_OUT_TINY = "benchmarks/results/gpu_realistic_tiny.json"  # a smoke run leaves the GPU figures alone
NO_GPU = "no GPU: nothing measured (run `--shape tiny --device cpu` for the CPU smoke run)"
SECTIONS = ("wvs_evaluation", "training", "accelerate", "roleplay")
TRAINERS = ("clca", "culturespa", "answer_distribution")
TRAIN_VARIANTS = ("batch_x2", "liger", "compile")
ACCELERATE_CONFIGS = {"ddp": "multi_gpu.yaml", "deepspeed_zero2": "deepspeed_zero2.yaml",
                      "deepspeed_zero3": "deepspeed_zero3.yaml", "fsdp": "fsdp.yaml"}
HF_PATHS = ("dynamic", "static")
H200_DENSE_BF16_TFLOPS = 989.0
TOKENIZER_MODEL = DEFAULT_MODEL
VOCAB_SIZE = 128256
# The 19 countries of CultureSPA's evaluation.
CULTURES_19 = ["AUS", "BOL", "BRA", "CAN", "CHN", "DEU", "ETH", "GBR", "IND", "KEN", "MEX", "NGA", "NLD",
               "NZL", "RUS", "THA", "UKR", "USA", "ZWE"]
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
SHAPES: dict[str, dict[str, Any]] = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
}
# Per-shape defaults of every budget flag (None in argparse means: take these).
SHAPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "8b": dict(eval_items=259, eval_cultures=19, eval_batch_size=64, generate_items=64,
               generate_batch_size=16, train_batch_size=32, train_steps=10, train_warmup_steps=3,
               train_variants="batch_x2,liger",
               accelerate_steps=3, accelerate_batch_size=8, accelerate_timeout_s=240,
               roleplay_cultures="GBR,CHN,USA,IND", roleplay_scenarios_per_culture=16, roleplay_turns=4,
               roleplay_max_new_tokens=160, roleplay_reply_tokens=48, roleplay_batch_size=64,
               hf_paths="dynamic,static", time_budget_s=450.0, static_reserve_s=150.0, vocab_size=VOCAB_SIZE),
    "tiny": dict(eval_items=12, eval_cultures=2, eval_batch_size=8, generate_items=4, generate_batch_size=4,
                 train_batch_size=2, train_steps=2, train_warmup_steps=1, train_variants="batch_x2",
                 accelerate_steps=2, accelerate_batch_size=2, accelerate_timeout_s=180,
                 roleplay_cultures="GBR", roleplay_scenarios_per_culture=2, roleplay_turns=2,
                 roleplay_max_new_tokens=40, roleplay_reply_tokens=6, roleplay_batch_size=4,
                 hf_paths="dynamic,static", time_budget_s=300.0, static_reserve_s=0.0, vocab_size=49152),
}
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}


class Skipped(Exception):
    """A section or a part of it that cannot run here; the message is the reason."""


# ------------------------------------------------------------------------------------------------- model
def load_tokenizer():
    """The embedded model's tokenizer (49152 tokens, chat template), padding on the right."""
    from transformers import AutoTokenizer

    from culture_align.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(TOKENIZER_MODEL))


def build_model(shape: str, vocab_size: int, tokenizer, device: str | torch.device | None,
                dtype: torch.dtype) -> nn.Module:
    """A Llama of the given shape with random weights (initialised where it lives: on ``device``)."""
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    config = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=131072, rms_norm_eps=1e-5,
                         rope_parameters=dict(LLAMA3_ROPE), tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.config.name_or_path = f"llama-3.1-{shape}-shaped-random"
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def linear_parameters(model: nn.Module) -> tuple[int, int]:
    """(weights of the decoder's linear layers, weights of the LM head): the N of the FLOPs formula."""
    head = model.get_output_embeddings()
    body = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head)
    return int(body), int(head.weight.numel())


def strip_lora(model: nn.Module) -> int:
    """Put every LoRA-wrapped layer's base layer back in place (what ``PeftModel.unload`` does, also after a
    trainer failed halfway); returns the number of layers unwrapped."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in vars(model):
            delattr(model, attr)
    return len(wrapped)


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Device:
    """Synchronisation and peak-memory readings that are no-ops on the CPU."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cuda = name == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            release_memory()
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None


# ------------------------------------------------------------------------------------ 1. WVS evaluation
def synthetic_wvs(num_items: int, cultures: Sequence[str], seed: int = 0):
    """WVS-shaped data: the first ``num_items`` of the 259 WVS-7 alignment item ids, each with a bundled
    question (its own where the catalog has it, else one cycled from the catalog, marked with the item id so
    that every prompt differs) and a Dirichlet(1) answer distribution per culture."""
    from culture_align.wvs import SurveyQuestion, WVSData, bundled_questions, is_evaluation_item

    bundled = list(bundled_questions().values())
    by_id = {q.qid: q for q in bundled}
    qids = [f"Q{i}" for i in range(1, 260) if is_evaluation_item(f"Q{i}")]
    qids.insert(qids.index("Q234") + 1, "Q234A")
    questions = {}
    for k, qid in enumerate(qids[:num_items]):
        if qid in by_id:
            questions[qid] = by_id[qid]
        else:
            t = bundled[k % len(bundled)]
            questions[qid] = SurveyQuestion(qid, f"{t.text} (item {qid})", t.options, t.codes)
    rng = np.random.default_rng(seed)
    distributions = {c: {qid: rng.dirichlet(np.ones(q.num_options)) for qid, q in questions.items()}
                     for c in cultures}
    return WVSData(questions=questions, distributions=distributions,
                   source="synthetic: Dirichlet(1) per cell")


def wvs_evaluation(model: nn.Module, tokenizer, args: argparse.Namespace, dev: Device) -> dict[str, Any]:
    """Section 1: the full table in log-prob mode, against ``model.generate`` sampling on a subset."""
    from culture_align.cultures import get_culture
    from culture_align.evaluation import WVSEvaluator
    from culture_align.prompts.wvs import build_conversation, get_setting

    cultures = CULTURES_19[: args.eval_cultures]
    wvs = synthetic_wvs(args.eval_items, cultures)
    model.eval()
    evaluator = WVSEvaluator(model, tokenizer, wvs, cultures=cultures, settings=["culture-aware"],
                             batch_size=args.eval_batch_size, show_progress=False)
    template = get_setting("culture-aware")
    questions = list(wvs.questions.values())
    convs = [build_conversation(template, q, get_culture(cultures[i % len(cultures)]))
             for i, q in enumerate(questions)]
    evaluator.backend.option_scorer.score(convs[:2], [[str(c) for c in q.codes] for q in questions[:2]])  # warm-up
    reference_s = [0.0]  # reference rows (uniform, random answers, other cultures) are CPU work: timed apart
    reference_rows = evaluator._reference_rows

    def timed_reference_rows(*a: Any, **kw: Any) -> list[dict[str, Any]]:
        start = time.perf_counter()
        try:
            return reference_rows(*a, **kw)
        finally:
            reference_s[0] += time.perf_counter() - start

    evaluator._reference_rows = timed_reference_rows
    dev.reset_peak()
    dev.sync()
    start = time.perf_counter()
    report = evaluator.evaluate()
    dev.sync()
    logprob_s = time.perf_counter() - start
    cells = len(report.items)
    peak = dev.peak_mib()

    # The alternative: sample 10 answers per item with `generate` (each sample re-reads its prompt).
    subset = convs[: args.generate_items]
    previous_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts = [evaluator.backend.option_scorer.render(c) for c in subset]

    def generate(batch_texts: list[str], new_tokens: int) -> None:
        batch = tokenizer(batch_texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            model.generate(**batch.to(model.device), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                           max_new_tokens=new_tokens, num_return_sequences=args.samples,
                           pad_token_id=tokenizer.pad_token_id)

    try:
        generate(texts[:1], 2)  # warm-up
        torch.manual_seed(0)
        dev.sync()
        start = time.perf_counter()
        for s in range(0, len(texts), args.generate_batch_size):
            generate(texts[s: s + args.generate_batch_size], args.sample_tokens)
        dev.sync()
        generate_s = time.perf_counter() - start
    finally:
        tokenizer.padding_side = previous_side
    prompt_tokens = [len(evaluator.backend.option_scorer.encode(c)) for c in convs]
    return {
        "items": len(questions), "cultures": len(cultures), "setting": "culture-aware", "cells": cells,
        "batch_size": args.eval_batch_size, "mean_prompt_tokens": round(float(np.mean(prompt_tokens)), 1),
        "logprob_seconds": round(logprob_s, 3), "logprob_items_per_s": round(cells / logprob_s, 2),
        "of_which_reference_rows_seconds": round(reference_s[0], 3),
        "target_seconds": 60, "meets_target": logprob_s <= 60,
        "generate_items": len(subset), "generate_samples_per_item": args.samples,
        "generate_max_new_tokens": args.sample_tokens, "generate_batch_prompts": args.generate_batch_size,
        "generate_seconds": round(generate_s, 3), "generate_items_per_s": round(len(subset) / generate_s, 2),
        "speedup_items_per_s": round((cells / logprob_s) / (len(subset) / generate_s), 2),
        "peak_memory_mib": peak,
        "notes": "log-prob: WVSEvaluator.evaluate() wall time (exact distributions, metric and reference "
                 f"rows included); generate: model.generate(num_return_sequences={args.samples}, do_sample) "
                 "on the first prompts "
                 "(cultures cycled), no parsing. Random weights never stop early, so every sample runs the "
                 "max_new_tokens; a trained model writing '3<end of turn>' stops after 2-3 tokens.",
    }


# ----------------------------------------------------------------------------------------- 2. training
class PhaseClock(TrainerCallback):
    """Device-synchronised times of every optimizer step's phases."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.begin: list[float] = []
        self.pre_optimizer: list[float] = []
        self.optimizer: list[float] = []
        self.end: list[float] = []

    def _now(self) -> float:
        self.dev.sync()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self._now()

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin.append(self._now())

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.pre_optimizer.append(self._now())

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.optimizer.append(self._now())

    def on_step_end(self, args, state, control, **kwargs):
        self.end.append(self._now())


class BatchRecorder:
    """Wraps a trainer's data collator and records each batch's token counts (in the order they are drawn)."""

    def __init__(self, collator: Callable) -> None:
        self.collator = collator
        self.batches: list[dict[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collator, name)

    def __call__(self, features):
        batch = self.collator(features)
        self.batches.append(batch_counts(batch))
        return batch


def batch_counts(batch: dict[str, Any]) -> dict[str, int]:
    """Non-padding tokens, computed tokens, sum of squared sequence lengths, LM-head positions of a batch."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    if mask is not None:
        lengths = mask.sum(dim=1).tolist()
    elif batch.get("position_ids") is not None:  # padding-free: sequences restart at position 0
        lengths = []
        for row in batch["position_ids"].tolist():
            starts = [i for i, p in enumerate(row) if p == 0] + [len(row)]
            lengths += [b - a for a, b in zip(starts, starts[1:])]
    else:
        lengths = [ids.shape[1]] * ids.shape[0]
    tokens = int(sum(lengths))
    head_positions = tokens
    if "answers" in batch:  # AnswerDistributionTrainer: the LM head runs at the branching positions only
        positions = {p for a in batch["answers"] for _, p in a["nodes"].values()}
        head_positions = ids.shape[0] * len(positions)
    return {"tokens": tokens, "computed_tokens": int(ids.numel()), "sequences": len(lengths),
            "sum_sq_lengths": int(sum(s * s for s in lengths)), "head_positions": int(head_positions)}


def trainer_setup(name: str, num_examples: int) -> tuple[type, type, Any]:
    """(Trainer class, Config class, dataset) with records shaped like the recipe's own."""
    from datasets import Dataset

    if name in ("clca", "culturespa"):
        from gpu_training import SETUPS

        return SETUPS[name](num_examples)
    from answer_distribution_overhead import survey_rows

    from culture_align.trainers import AnswerDistributionConfig, AnswerDistributionTrainer

    rows = [{k: r[k] for k in ("prompt", "choices", "target", "culture")} for r in survey_rows(num_examples)]
    return AnswerDistributionTrainer, AnswerDistributionConfig, Dataset.from_list(rows)


def step_flops(counts: dict[str, int], shape: dict[str, int]) -> float:
    """Model FLOPs of one LoRA training step (the formula of the module docstring)."""
    return (4 * shape["n_body"] * counts["tokens"] + 4 * shape["n_head"] * counts["head_positions"]
            + 6 * shape["n_lora"] * counts["tokens"]
            + 6 * shape["layers"] * shape["d_attn"] * counts["sum_sq_lengths"])


def train_once(name: str, model: nn.Module, tokenizer, args: argparse.Namespace, dev: Device, batch_size: int,
               extra: dict[str, Any]) -> dict[str, Any]:
    """Train one trainer for warm-up + measured steps on ``model`` (LoRA added, then removed again)."""
    from peft import LoraConfig

    steps, warmup = args.train_steps, args.train_warmup_steps
    trainer_class, config_class, dataset = trainer_setup(name, batch_size * (steps + warmup))
    clock = PhaseClock(dev)
    trainer = None
    with tempfile.TemporaryDirectory() as tmp:
        config = config_class(
            output_dir=tmp, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
            max_steps=steps + warmup, learning_rate=1e-4, logging_steps=1, save_strategy="no",
            report_to="none", bf16=dev.cuda, use_cpu=not dev.cuda, activation_checkpointing=False,
            dataloader_num_workers=0, disable_tqdm=True, seed=0, **extra)
        dev.reset_peak()
        try:
            trainer = trainer_class(model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                    peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA), callbacks=[clock])
            recorder = BatchRecorder(trainer.data_collator)
            trainer.data_collator = recorder
            trainer.train()
            peak = dev.peak_mib()
            trainable, _ = trainer.model.get_nb_trainable_parameters()
            checkpointing = bool(getattr(trainer.model, "is_gradient_checkpointing", False))
        finally:
            if trainer is not None:
                trainer.model_wrapped = trainer.model = trainer.optimizer = trainer.lr_scheduler = None
            del trainer
            strip_lora(model)
            release_memory()
    total = steps + warmup
    if len(clock.end) != total or len(recorder.batches) < total:
        raise RuntimeError(f"{name}: expected {total} timed steps and batches, got {len(clock.end)} and "
                           f"{len(recorder.batches)}")
    measured = recorder.batches[warmup:total]
    begin = clock.end[warmup - 1] if warmup else clock.start
    seconds = clock.end[-1] - begin
    step_s = [b - a for a, b in zip([begin, *clock.end[warmup:-1]], clock.end[warmup:])]
    fwd_bwd = [p - b for b, p in zip(clock.begin[warmup:], clock.pre_optimizer[warmup:])]
    optim = [o - p for p, o in zip(clock.pre_optimizer[warmup:], clock.optimizer[warmup:])]
    shape = dict(args.model_shape, n_lora=int(trainable))
    flops = sum(step_flops(c, shape) for c in measured)
    tokens = sum(c["tokens"] for c in measured)
    computed = sum(c["computed_tokens"] for c in measured)
    fwd_bwd_flops_per_s = flops / sum(fwd_bwd) if sum(fwd_bwd) > 0 else 0.0
    return {
        "trainer": trainer_class.__name__, "batch_size": batch_size, "steps": steps, "warmup_steps": warmup,
        "activation_checkpointing": checkpointing,
        "tokens": tokens, "computed_tokens": computed, "padding_fraction": round(1 - tokens / computed, 4),
        "mean_sequence_tokens": round(tokens / sum(c["sequences"] for c in measured), 1),
        "seconds": round(seconds, 4), "tokens_per_second": round(tokens / seconds, 1),
        "median_step_ms": round(1000 * statistics.median(step_s), 2),
        "median_phase_ms": {"forward_backward_clip": round(1000 * statistics.median(fwd_bwd), 2),
                            "optimizer": round(1000 * statistics.median(optim), 2),
                            "rest": round(1000 * statistics.median(
                                [s - f - o for s, f, o in zip(step_s, fwd_bwd, optim)]), 2)},
        "share_outside_forward_backward": round(1 - sum(fwd_bwd) / seconds, 4),
        "model_flops_per_token": round(flops / tokens),
        "achieved_tflops": sig(flops / seconds / 1e12),
        "mfu": sig(flops / seconds / (args.peak_tflops * 1e12)),
        "mfu_forward_backward_only": sig(fwd_bwd_flops_per_s / (args.peak_tflops * 1e12)),
        "peak_memory_mib": peak, "trainable_parameters": int(trainable),
    }


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (MFU on a CPU is tiny, not zero)."""
    return float(f"{x:.{digits}g}")


def train_with_fallback(name: str, model: nn.Module, tokenizer, args: argparse.Namespace, dev: Device,
                        batch_size: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`train_once`, halving the batch after an out-of-memory error (the failed sizes are reported)."""
    oom: list[int] = []
    while True:
        try:
            result = train_once(name, model, tokenizer, args, dev, batch_size, extra or {})
            return {**result, "out_of_memory_at_batch_sizes": oom}
        except torch.OutOfMemoryError:
            oom.append(batch_size)
            release_memory()
            if batch_size == 1:
                raise
            batch_size //= 2


def training(model: nn.Module, tokenizer, args: argparse.Namespace, dev: Device) -> dict[str, Any]:
    """Section 2: tokens/s, peak memory and MFU of each trainer, plus the CLCA variants."""
    runs: dict[str, Any] = {}
    for name in args.trainer_list:
        try:
            runs[name] = train_with_fallback(name, model, tokenizer, args, dev, args.train_batch_size)
        except Exception as err:  # one trainer failing does not stop the others
            runs[name] = failure(err)
        print(f"training {name}: {json.dumps(runs[name])}", flush=True)
    variants: dict[str, Any] = {}
    for variant in args.variant_list:
        try:
            if variant == "batch_x2":  # no fallback: running out of memory is the answer then
                batch = 2 * args.train_batch_size
                try:
                    variants[variant] = train_once("clca", model, tokenizer, args, dev, batch, {})
                except torch.OutOfMemoryError as err:
                    release_memory()
                    variants[variant] = {"status": "out_of_memory", "batch_size": batch,
                                         "error": str(err)[:500]}
            elif variant == "liger":
                if importlib.util.find_spec("liger_kernel") is None:
                    raise Skipped("liger-kernel is not installed (pip install liger-kernel)")
                variants[variant] = train_with_fallback("clca", model, tokenizer, args, dev,
                                                        args.train_batch_size, {"use_liger_kernel": True})
            elif variant == "compile":
                variants[variant] = train_with_fallback("clca", model, tokenizer, args, dev,
                                                        args.train_batch_size, {"torch_compile": True})
        except Skipped as why:
            variants[variant] = {"status": "skipped", "reason": str(why)}
        except Exception as err:
            variants[variant] = failure(err)
        print(f"training clca {variant}: {json.dumps(variants[variant])}", flush=True)
    # Every run took its LoRA layers off again: the later sections must see the bare base model.
    base_model_clean = strip_lora(model) == 0 and not any("lora_" in n for n, _ in model.named_parameters())
    shape = args.model_shape
    flash = "installed" if importlib.util.find_spec("flash_attn") else "not installed"
    return {
        "lora": {**LORA, "bias": "none", "base_weights": str(args.dtype).replace("torch.", "")},
        "batch_choice": f"{args.train_batch_size} sequences per step (8b default 32: ~7k tokens of CLCA's "
                        "~220-token chats, so every GEMM is ~7k rows tall, while the activations kept "
                        "without checkpointing, ~7-10 MB per token for 32 layers at hidden 4096 with the "
                        "float32 logits, stay near 70 GB of the H200's 141 GB); a batch that runs out of "
                        "memory is halved (`out_of_memory_at_batch_sizes`). TRL's padding-free / packing "
                        f"needs flash-attention (not used; flash-attn {flash}): the padding share is "
                        "reported instead.",
        "flops_formula": "per step: 4*N_body*T + 4*N_head*P + 6*N_lora*T + 6*L*d_attn*sum(s_i^2); "
                         f"N_body = {shape['n_body']:.4g} (decoder linear weights), N_head = "
                         f"{shape['n_head']:.4g} (LM head), N_lora = trainable LoRA parameters, T = "
                         "non-padding tokens, P = positions through the LM head (T for CLCA/CultureSPA, the "
                         "branching answer positions for AnswerDistribution), s_i = sequence lengths, L = "
                         f"{shape['layers']}, d_attn = {shape['d_attn']}. Forward 2N, backward through "
                         "activations 2N (no weight gradients for the frozen base), LoRA 6 per parameter, "
                         "causal attention 2*d*s^2 per layer forward + 4*d*s^2 backward.",
        "peak_tflops": args.peak_tflops,
        "target_mfu_sft": 0.40,
        "runs": runs, "clca_variants": variants, "base_model_clean_afterwards": base_model_clean,
        "limits": mfu_limits(runs, variants, args.vocab_size),
    }


def mfu_limits(runs: dict[str, Any], variants: dict[str, Any], vocab_size: int) -> list[str]:
    """What holds MFU down: the structural reasons of every LoRA step, then the measurements."""
    notes = ["LoRA on a frozen base does 4N FLOPs per token instead of full fine-tuning's 6N while still "
             "reading every weight twice; the 7 x layers rank-16 adapter matmuls (forward, and two in "
             "backward) are thin, memory-bound kernels, each a launch of its own.",
             f"The LM head over {vocab_size} words and the cross-entropy upcast to float32 are memory-bound "
             "on the SFT-style trainers (every position goes through them)."]
    for name, run in {**runs, **{f"clca {k}": v for k, v in variants.items()}}.items():
        if "mfu" not in run:
            continue
        notes.append(f"{name}: MFU {run['mfu']:.1%} ({run['mfu_forward_backward_only']:.1%} within "
                     f"forward+backward alone); padding {run['padding_fraction']:.0%} of computed tokens; "
                     f"{run['share_outside_forward_backward']:.0%} of the step outside forward+backward "
                     f"(optimizer, logging, data); mean sequence {run['mean_sequence_tokens']:.0f} tokens.")
    base, larger, liger = runs.get("clca", {}), variants.get("batch_x2", {}), variants.get("liger", {})
    on_gpu = base.get("peak_memory_mib") is not None
    if "mfu" in base and "mfu" in larger:
        memory = (f" and peak memory from {base['peak_memory_mib']} to {larger['peak_memory_mib']} MiB"
                  if on_gpu else "")
        notes.append(f"Doubling CLCA's batch ({base['batch_size']} -> {larger['batch_size']}) moves MFU from "
                     f"{base['mfu']:.1%} to {larger['mfu']:.1%}{memory}.")
    elif larger.get("status") == "out_of_memory":
        notes.append(f"CLCA at batch {larger['batch_size']} runs out of memory: a larger batch needs "
                     "activation checkpointing (about a third more compute) or Liger's fused cross-entropy.")
    if "mfu" in base and "mfu" in liger:
        notes.append(f"Liger kernels (fused RMSNorm/SwiGLU/RoPE/linear cross-entropy): MFU {base['mfu']:.1%} "
                     f"-> {liger['mfu']:.1%}, peak memory {base['peak_memory_mib']} -> "
                     f"{liger['peak_memory_mib']} MiB.")
    return notes


# -------------------------------------------------------------------------------------- 3. accelerate
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_worker(args: argparse.Namespace) -> int:
    """The launched process: a few CLCATrainer steps on a freshly built model, then ``save_model``."""
    from accelerate import PartialState
    from clca_trainer_overhead import conversations
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from culture_align.trainers import CLCAConfig, CLCATrainer

    out = Path(args.accelerate_worker)
    on_gpu = args.device == "cuda"
    batch, steps = args.accelerate_batch_size, args.accelerate_steps
    config = CLCAConfig(output_dir=str(out / "run"), per_device_train_batch_size=batch,
                        gradient_accumulation_steps=1, max_steps=steps, learning_rate=1e-3, logging_steps=1,
                        save_strategy="no", report_to="none", bf16=on_gpu, use_cpu=not on_gpu,
                        activation_checkpointing=False, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    state = PartialState()
    tokenizer = load_tokenizer()
    # Under ZeRO-3 (config made first) `from_config` builds the model sharded, where zero.Init puts it.
    device = None if is_deepspeed_zero3_enabled() else state.device
    dtype = torch.bfloat16 if on_gpu else torch.float32
    model = build_model(args.shape, args.vocab_size, tokenizer, device, dtype)
    trainer = CLCATrainer(model, args=config, processing_class=tokenizer,
                          train_dataset=Dataset.from_list(conversations(batch * steps * state.num_processes)),
                          peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    if on_gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train()
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    trainer.save_model(str(out / "adapter"))
    if state.is_main_process:
        (out / "worker.json").write_text(json.dumps({
            "distributed_type": str(getattr(trainer.accelerator.distributed_type, "value",
                                            trainer.accelerator.distributed_type)),
            "num_processes": state.num_processes, "steps": trainer.state.global_step,
            "train_seconds": round(seconds, 3),
            "losses": [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
            "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_gpu else None,
        }))
    return 0


def check_adapter(model: nn.Module, adapter_dir: Path) -> dict[str, Any]:
    """Load a saved adapter onto ``model``: every tensor must equal the file's, and ``lora_B`` be trained."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name="check")
    try:
        loaded = get_peft_model_state_dict(peft_model, adapter_name="check")
        same = set(saved) == set(loaded) and all(
            torch.equal(saved[k].float().cpu(), loaded[k].detach().float().cpu()) for k in saved)
        trained = any(bool(v.abs().sum() > 0) for k, v in saved.items() if "lora_B" in k)
    finally:
        peft_model.unload()
        strip_lora(model)
        release_memory()
    return {"adapter_tensors": len(saved), "adapter_loads": same, "adapter_trained": trained,
            "adapter_bytes": (adapter_dir / "adapter_model.safetensors").stat().st_size}


def accelerate_section(model: nn.Module, args: argparse.Namespace, dev: Device, clock: Callable[[], float]
                       ) -> dict[str, Any]:
    """Section 3: `accelerate launch` with each config, one process, then the adapter's load check."""
    has_deepspeed = importlib.util.find_spec("deepspeed") is not None
    results: dict[str, Any] = {}
    for key in args.accelerate_list:
        config_file = ROOT / "examples" / "accelerate" / ACCELERATE_CONFIGS[key]
        if key.startswith("deepspeed") and not has_deepspeed:
            results[key] = {"status": "skipped", "config": config_file.name,
                            "reason": "deepspeed is not installed here (pip install deepspeed on the GPU "
                                      "machine)"}
        elif not dev.cuda and key != "ddp":
            results[key] = {"status": "skipped", "config": config_file.name,
                            "reason": "DeepSpeed and FSDP need CUDA: on --device cpu only the DDP config "
                                      "runs"}
        elif clock() > args.time_budget_s:
            results[key] = {"status": "skipped", "config": config_file.name,
                            "reason": f"time budget of {args.time_budget_s:.0f} s spent"}
        else:
            try:
                results[key] = {"status": "ok", "config": config_file.name,
                                **launch_one(model, config_file, args, dev)}
            except Exception as err:
                results[key] = {"config": config_file.name, **failure(err)}
        print(f"accelerate {key}: {json.dumps(results[key])}", flush=True)
    return {"configs": results, "processes": 1,
            "multi_gpu": "unverified: one process on one device; NCCL all-reduce and sharding across ranks "
                         "have not run on a multi-GPU machine"}


def launch_one(model: nn.Module, config_file: Path, args: argparse.Namespace, dev: Device) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                   "--num_processes", "1", "--main_process_port", str(free_port())]
        if not dev.cuda:
            command += ["--cpu", "--mixed_precision", "no"]
        command += [str(Path(__file__).resolve()), "--accelerate-worker", str(out), "--shape", args.shape,
                    "--device", args.device, "--vocab-size", str(args.vocab_size),
                    "--accelerate-steps", str(args.accelerate_steps),
                    "--accelerate-batch-size", str(args.accelerate_batch_size)]
        log = out / "launch.log"
        release_memory()  # the launched process needs the memory this one keeps cached
        start = time.perf_counter()
        with open(log, "w") as handle:
            # Its own session: on a timeout the launcher, torchrun and the worker are killed (by group id).
            proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)
            try:
                returncode = proc.wait(timeout=args.accelerate_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"accelerate launch ran past {args.accelerate_timeout_s} s and was "
                                   f"killed: ...{log.read_text()[-1500:]}") from None
        seconds = time.perf_counter() - start
        if returncode != 0 or not (out / "worker.json").exists():
            raise RuntimeError(f"accelerate launch exited with {returncode}: ...{log.read_text()[-1500:]}")
        worker = json.loads((out / "worker.json").read_text())
        check = check_adapter(model, out / "adapter")
        if not (check["adapter_loads"] and check["adapter_trained"]):
            raise RuntimeError(f"the saved adapter does not load back as saved, or is untrained: {check}")
    return {"launch_seconds": round(seconds, 2), **worker, **check,
            "command": "accelerate launch --config_file examples/accelerate/" + config_file.name
                       + " --num_processes 1 benchmarks/gpu_realistic.py --accelerate-worker DIR ..."}


# ---------------------------------------------------------------------------------------- 4. role-play
def _closes_string(piece: str) -> bool:
    """True for a token that can end the JSON string of a reply (``"``, ``."`` or ``"}``)."""
    if '"' not in piece:
        return False
    before, _, after = piece.partition('"')
    return after in ("", "}") and "\\" not in before and all(ch >= " " for ch in before)


def _spells_leave(piece: str) -> bool:
    text = piece.strip().strip('"').strip()
    return bool(text) and ("leave".startswith(text) or text.startswith("leave"))


@contextlib.contextmanager
def reply_steering(model: nn.Module, tokenizer, temperature: float, top_p: float, mean_reply_tokens: int
                   ) -> Iterator[dict[str, Any]]:
    """Swap the LM head for zeros plus a bias: inside a JSON string the sampler then closes it with
    probability about 1 / ``mean_reply_tokens`` per token (uniform logits, temperature and top-p accounted
    for), ``leave`` is never written and ids past the tokenizer never picked. The forward pass is as before.
    """
    head = model.get_output_embeddings()
    vocab, known = head.weight.shape[0], len(tokenizer)
    pieces = tokenizer.batch_decode([[i] for i in range(known)])
    closers = [i for i, p in enumerate(pieces) if _closes_string(p)]
    leave = [i for i, p in enumerate(pieces) if _spells_leave(p)]
    temperature = temperature or 1.0
    mass = (top_p if top_p < 1 else 1.0) / mean_reply_tokens  # closers' share before the top-p cut
    others = known - len(closers) - len(leave)
    bias_value = temperature * math.log(others * mass / (1 - mass) / len(closers))
    bias = torch.zeros(vocab, dtype=head.weight.dtype, device=head.weight.device)
    bias[closers] = bias_value
    bias[leave] = -30.0
    bias[known:] = -30.0
    weight, old_bias = head.weight, head.bias
    head.weight = nn.Parameter(torch.zeros_like(weight), requires_grad=False)
    head.bias = nn.Parameter(bias, requires_grad=False)
    try:
        yield {"closing_tokens": len(closers), "closing_bias": round(bias_value, 4),
               "blocked_leave_tokens": len(leave), "target_mean_reply_tokens": mean_reply_tokens}
    finally:
        head.weight, head.bias = weight, old_bias


class BudgetSpent(Exception):
    """The time budget ran out between two ``generate`` calls of a plain-transformers run."""


class HFGenerateBackend(GenerationBackend):
    """Plain transformers generation as a backend: batched ``model.generate`` calls (left padding), the JSON
    schema enforced by xgrammar's HF logits processor ahead of temperature and top-p. No prefix cache and no
    continuous batching: the role-play runs in waves (one call per turn and params).

    Args:
        ours: Our backend on the same model: its prompts, stop ids and compiled grammars are reused.
        cache_implementation: ``None`` (dynamic cache) or ``"static"`` (on CUDA, transformers then compiles
            the forward; here with ``CompileConfig(dynamic=True)``, so that new shapes do not recompile).
        batch_size: Rows per ``generate`` call.
        over_budget: Called before each ``generate`` call; True stops the run (:class:`BudgetSpent`).
    """

    supports_json_schema = True
    continuous_batching = False
    prefix_cache = None

    def __init__(self, ours, cache_implementation: str | None, batch_size: int,
                 over_budget: Callable[[], bool] = lambda: False) -> None:
        from transformers import CompileConfig

        self.ours = ours
        self.model, self.tokenizer = ours.model, ours.tokenizer
        self.model_id = ours.model_id
        self.cache_implementation = cache_implementation
        self.batch_size = batch_size
        self.over_budget = over_budget
        self.compile_config = CompileConfig(dynamic=True) if cache_implementation == "static" else None
        self.stats = GenerationStats()

    def clear_prefix_cache(self) -> None:
        """Nothing to clear (for ``clca_generation.timed_run``)."""

    def _generate(self, conversations: list, params: GenerationParams) -> list[str]:
        start = time.perf_counter()
        rows = [c for c in conversations for _ in range(params.n)]
        texts: list[str] = []
        for s in range(0, len(rows), self.batch_size):
            if self.over_budget():
                raise BudgetSpent("time budget spent during the run")
            texts += self._generate_batch(rows[s: s + self.batch_size], params)
        self.stats.requests += len(texts)
        self.stats.seconds += time.perf_counter() - start
        return texts

    def _generate_batch(self, conversations, params) -> list[str]:
        import xgrammar.contrib.hf
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        prompts = [self.ours.encode(c) for c in conversations]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        processors = LogitsProcessorList()
        if params.json_schema is not None:
            grammar = self.ours._compiled_grammar(params.json_schema)
            processors.append(xgrammar.contrib.hf.LogitsProcessor(grammar))
        sample = params.temperature > 0
        if sample and params.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(params.temperature))
        if sample and params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
        stop_ids = self.ours.stop_token_ids()
        torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.model.device),
                                      attention_mask=mask.to(self.model.device), logits_processor=processors,
                                      do_sample=sample, temperature=1.0, top_p=1.0, top_k=0,
                                      max_new_tokens=params.max_new_tokens, eos_token_id=stop_ids,
                                      pad_token_id=pad, cache_implementation=self.cache_implementation,
                                      compile_config=self.compile_config)
        texts = []
        for row in out[:, width:].tolist():
            end = next((k for k, t in enumerate(row) if t in stop_ids), None)
            self.stats.generated_tokens += len(row) if end is None else end + 1
            texts.append(self.tokenizer.decode(row[:end], skip_special_tokens=True))
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        self.stats.prefilled_tokens += sum(len(p) for p in prompts)
        return texts


def roleplay(model: nn.Module, tokenizer, args: argparse.Namespace, dev: Device, clock: Callable[[], float]
             ) -> dict[str, Any]:
    """Section 4: our backend (continuous batching, prefix cache) against plain ``generate`` in waves."""
    from clca_generation import seed_scenarios_as_adapted, timed_run

    from culture_align.backends.transformers import TransformersBackend
    from culture_align.recipes.clca.roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay

    scenarios = seed_scenarios_as_adapted(args.roleplay_cultures.split(","),
                                          args.roleplay_scenarios_per_culture)
    params = GenerationParams(**{**DEFAULT_ROLEPLAY_PARAMS.to_dict(),
                                 "max_new_tokens": args.roleplay_max_new_tokens})
    kw = dict(max_turns=args.roleplay_turns, show_progress=False)
    runs: dict[str, Any] = {}
    model.eval()
    steer = reply_steering(model, tokenizer, params.temperature, params.top_p, args.roleplay_reply_tokens)
    with steer as steering:
        ours = TransformersBackend.from_model(model, tokenizer, model_id=model.config.name_or_path,
                                              batch_size=args.roleplay_batch_size,
                                              prefix_cache_tokens=len(scenarios) * 2048)
        backends: list[tuple[str, Any]] = [("ours_continuous", ours)]
        backends += [(f"hf_generate_{path}_cache",
                      HFGenerateBackend(ours, None if path == "dynamic" else path, args.roleplay_batch_size,
                                        over_budget=lambda: clock() > args.time_budget_s))
                     for path in args.hf_path_list]
        dev.reset_peak()
        for name, backend in backends:
            reserve = args.static_reserve_s if name == "hf_generate_static_cache" else 0.0
            if name != "ours_continuous" and clock() + reserve > args.time_budget_s:
                runs[name] = {"status": "skipped", "reason": f"less than {reserve:.0f} s left of the time "
                                                             f"budget ({args.time_budget_s:.0f} s)"}
                print(f"roleplay {name}: {json.dumps(runs[name])}", flush=True)
                continue
            try:
                start = time.perf_counter()  # warm-up: grammar compilation, first allocations, torch.compile
                run_roleplay(scenarios.select([0]), backend, params=params, max_turns=1, show_progress=False)
                warmup_s = time.perf_counter() - start
                results, measures = timed_run(backend, scenarios, params, one_at_a_time=False,
                                              continuous=True, **kw)
                dialogues = results[0].dataset
                per_s = measures["generated_tokens"] / measures["seconds"]
                runs[name] = {**measures, "warmup_seconds": round(warmup_s, 2),
                              "tokens_per_second": round(per_s, 1),
                              "mean_generated_tokens_per_request": round(measures["generated_tokens"]
                                                                         / max(1, measures["requests"]), 1),
                              "kept_dialogues": len(dialogues),
                              "rejected_dialogues": len(results[0].rejections)}
            except BudgetSpent as why:
                runs[name] = {"status": "stopped", "reason": str(why)}
            except Exception as err:
                runs[name] = failure(err)
            print(f"roleplay {name}: {json.dumps(runs[name], default=str)}", flush=True)
        peak = dev.peak_mib()
        ours.clear_prefix_cache()
    hf = {k: v for k, v in runs.items() if k.startswith("hf_") and "tokens_per_second" in v}
    best = max(hf, key=lambda k: hf[k]["tokens_per_second"]) if hf else None
    result: dict[str, Any] = {
        "dialogues": len(scenarios), "max_turns": args.roleplay_turns,
        "max_new_tokens": params.max_new_tokens,
        "temperature": params.temperature, "top_p": params.top_p, "batch_size": args.roleplay_batch_size,
        "reply_steering": steering, "runs": runs, "best_transformers_path": best, "peak_memory_mib": peak,
    }
    if best is not None and "tokens_per_second" in runs.get("ours_continuous", {}):
        result["speedup_tokens_per_s"] = round(runs["ours_continuous"]["tokens_per_second"]
                                               / hf[best]["tokens_per_second"], 2)
        result["speedup_seconds"] = round(hf[best]["seconds"] / runs["ours_continuous"]["seconds"], 2)
    return result


# --------------------------------------------------------------------------------------------- driver
def failure(err: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{type(err).__name__}: {err}"[:2000],
            "traceback": traceback.format_exc()[-3000:]}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "xgrammar", "deepspeed",
                    "liger-kernel", "flash-attn"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def device_description(dev: Device) -> str:
    if dev.cuda:
        from gpu_training import gpu_description

        return gpu_description()
    from eval_throughput import device_description as cpu_description

    return cpu_description()


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(flag: str, **kwargs: Any) -> None:
        """An argument; a per-shape budget gets its defaults appended to its help."""
        key = flag.lstrip("-").replace("-", "_")
        if key in SHAPE_DEFAULTS["8b"]:
            kwargs["help"] += " (default: 8b {}, tiny {})".format(
                *(repr(SHAPE_DEFAULTS[shape][key]) for shape in ("8b", "tiny")))
        parser.add_argument(flag, **kwargs)

    add("--shape", choices=sorted(SHAPES), default="8b", help="model shape (default 8b)")
    add("--device", choices=["cuda", "cpu"], default="cuda", help="default cuda; the 8b shape needs it")
    add("--out", help=f"results JSON (default {DEFAULT_OUT}; with --shape tiny {DEFAULT_OUT_TINY})")
    add("--sections", default=",".join(SECTIONS), help=f"comma-separated, among {', '.join(SECTIONS)}")
    add("--vocab-size", type=int, help="LM head size")
    add("--peak-tflops", type=float, default=H200_DENSE_BF16_TFLOPS,
        help="dense bf16 peak for MFU, TFLOP/s (default 989: H200 SXM)")
    add("--time-budget-s", type=float, help="sections/configs/paths starting later are skipped")
    add("--eval-items", type=int, help="WVS items, <= 259")
    add("--eval-cultures", type=int, help="cultures, <= 19")
    add("--eval-batch-size", type=int, help="prompts per forward pass")
    add("--generate-items", type=int, help="prompts sampled with generate")
    add("--generate-batch-size", type=int, help="prompts per generate call, x samples rows")
    add("--samples", type=int, default=10, help="answers sampled per item (default 10)")
    add("--sample-tokens", type=int, default=8, help="new tokens per sampled answer (default 8)")
    add("--trainers", default=",".join(TRAINERS), help=f"comma-separated, among {', '.join(TRAINERS)}")
    add("--train-batch-size", type=int, help="sequences per step")
    add("--train-steps", type=int, help="measured steps per run")
    add("--train-warmup-steps", type=int, help="unmeasured steps first")
    add("--train-variants", help=f"CLCA variants, among {', '.join(TRAIN_VARIANTS)}; '' for none")
    add("--accelerate-configs", default=",".join(ACCELERATE_CONFIGS),
        help=f"comma-separated, among {', '.join(ACCELERATE_CONFIGS)}")
    add("--accelerate-steps", type=int, help="CLCATrainer steps per launch")
    add("--accelerate-batch-size", type=int, help="per-device batch of a launch")
    add("--accelerate-timeout-s", type=int, help="seconds per launch before it is killed")
    add("--roleplay-cultures", help="comma-separated ISO3")
    add("--roleplay-scenarios-per-culture", type=int, help="seed scenarios per culture, <= 20")
    add("--roleplay-turns", type=int, help="turns per dialogue")
    add("--roleplay-max-new-tokens", type=int, help="new tokens per turn at most")
    add("--roleplay-reply-tokens", type=int, help="mean reply length the steering aims at")
    add("--roleplay-batch-size", type=int, help="rows decoded together")
    add("--hf-paths", help=f"plain generate paths, among {', '.join(HF_PATHS)}")
    add("--static-reserve-s", type=float, help="budget seconds the static-cache path needs left to start "
                                                "(its compilation)")
    add("--accelerate-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in SHAPE_DEFAULTS[args.shape].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or (DEFAULT_OUT_TINY if args.shape == "tiny" else DEFAULT_OUT)
    args.section_list = split(parser, args.sections, SECTIONS, "--sections")
    args.trainer_list = split(parser, args.trainers, TRAINERS, "--trainers")
    args.variant_list = split(parser, args.train_variants, TRAIN_VARIANTS, "--train-variants")
    args.accelerate_list = split(parser, args.accelerate_configs, tuple(ACCELERATE_CONFIGS),
                                 "--accelerate-configs")
    args.hf_path_list = split(parser, args.hf_paths, HF_PATHS, "--hf-paths")
    if not 1 <= args.eval_items <= 259 or not 1 <= args.eval_cultures <= len(CULTURES_19):
        parser.error("need 1 <= --eval-items <= 259 and 1 <= --eval-cultures <= 19")
    if args.train_steps < 1 or args.train_warmup_steps < 0 or args.train_batch_size < 1:
        parser.error("need --train-steps >= 1, --train-warmup-steps >= 0 and --train-batch-size >= 1")
    if args.roleplay_reply_tokens < 2:
        parser.error("need --roleplay-reply-tokens >= 2")
    return parser, args


def split(parser: argparse.ArgumentParser, value: str, allowed: Sequence[str], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown:
        parser.error(f"{flag}: unknown {unknown}; use some of {', '.join(allowed)}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    if args.accelerate_worker:
        return accelerate_worker(args)
    if args.shape == "8b" and args.device != "cuda":
        parser.error("--shape 8b runs on --device cuda only (use --shape tiny on the CPU)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 1
    if args.device == "cuda":  # trainers of different batch sizes in turn: fragmentation would cost memory
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    started = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - started

    dev = Device(args.device)
    args.dtype = torch.bfloat16 if dev.cuda else torch.float32
    tokenizer = load_tokenizer()
    start = time.perf_counter()
    model = build_model(args.shape, args.vocab_size, tokenizer, args.device, args.dtype)
    dev.sync()
    build_s = time.perf_counter() - start
    n_body, n_head = linear_parameters(model)
    config = model.config
    args.model_shape = {"n_body": n_body, "n_head": n_head, "layers": config.num_hidden_layers,
                        "d_attn": config.num_attention_heads * config.head_dim}
    budgets = {k: getattr(args, k) for k in SHAPE_DEFAULTS[args.shape]}
    report: dict[str, Any] = {
        "shape": args.shape,
        "model": {"config": {k: getattr(config, k) for k in (*SHAPES[args.shape], "vocab_size")},
                  "rope": LLAMA3_ROPE, "dtype": str(args.dtype).replace("torch.", ""),
                  "attn_implementation": config._attn_implementation,
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "decoder_linear_parameters": n_body, "lm_head_parameters": n_head,
                  "weights": "random (seed 0), initialised on the device", "build_seconds": round(build_s, 2),
                  "tokenizer": f"{TOKENIZER_MODEL} ({len(tokenizer)} tokens)",
                  "vocabulary": f"LM head of {args.vocab_size} words (its cost and memory are measured); "
                                f"only ids < {len(tokenizer)} (the tokenizer's) are fed"},
        "device": device_description(dev), "versions": versions(),
        "command": " ".join(["python", "benchmarks/gpu_realistic.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "budgets": budgets, "sections": {},
    }
    out = Path(args.out)

    def write() -> None:
        report["seconds_total"] = round(clock(), 2)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "wvs_evaluation": lambda: wvs_evaluation(model, tokenizer, args, dev),
        "training": lambda: training(model, tokenizer, args, dev),
        "accelerate": lambda: accelerate_section(model, args, dev, clock),
        "roleplay": lambda: roleplay(model, tokenizer, args, dev, clock),
    }
    for name in SECTIONS:
        if name not in args.section_list:
            continue
        if clock() > args.time_budget_s:
            report["sections"][name] = {"status": "skipped",
                                        "reason": f"time budget of {args.time_budget_s:.0f} s spent"}
            continue
        start = time.perf_counter()
        release_memory()
        try:
            report["sections"][name] = {"status": "ok", **runners[name]()}
        except Exception as err:  # a failed section is recorded and the next one runs
            report["sections"][name] = failure(err)
            strip_lora(model)
            release_memory()
        report["sections"][name]["section_seconds"] = round(time.perf_counter() - start, 2)
        print(f"== {name}: {json.dumps(report['sections'][name], default=str)}", flush=True)
        write()
    write()
    print(f"written to {out} ({clock():.0f} s)")
    return 0 if all(s.get("status") != "failed" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
