"""Trained conditions: their records (from the split's training cells only) and gated adapter training.

Records are chat ``messages`` + ``culture`` (+ ``qid``), what the culture-adapter trainers take, or distribution rows
(``prompt``, ``choices``, ``target``) for the answer-distribution trainer. The ``wvs_answers``
source builds them from a :class:`~culture_align.experiments.splits.TrainingView`, so it cannot read a test cell;
the ``dataset`` source reads a recipe corpus from disk and refuses rows made from test items (``qid``, ``seed_id`` or
``question_id``) or, in a culture split, of test cultures. The shuffled-label control gives each culture the labels of another
(:func:`~culture_align.experiments.controls.culture_derangement`), everything else equal.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..cultures import get_culture
from ..prompts.wvs import build_conversation, get_setting
from ..recipes.provenance import provenance_text
from ..wvs.data import WVSData
from .config import PIPELINE_SOURCES, TrainedCondition
from .gates import check_training_length, first_step_learning_rate_schedule, optimizer_steps
from .splits import ExperimentSplit, HeldOutError

__all__ = ["build_condition_dataset", "condition_cultures", "corpus_summary", "train_condition"]


def condition_cultures(condition: TrainedCondition, split: ExperimentSplit) -> list[str]:
    """The cultures ``condition``'s records are made for: ``data.cultures`` (ISO3, in that order) or every training
    culture of ``split``.

    Raises:
        HeldOutError: a chosen culture is a test culture of a culture split.
        ValueError: a chosen culture is not a training culture of the split (unknown or not in the data).
    """
    chosen = condition.data.get("cultures")
    if chosen is None:
        return list(split.train_cultures)
    codes = [get_culture(c).iso3 for c in chosen]
    held = [c for c in codes if c in split.test_cultures and split.culture_split]
    if held:
        raise HeldOutError(f"condition {condition.name}: data.cultures names test culture(s) {', '.join(held)}")
    unknown = [c for c in codes if c not in split.train_cultures]
    if unknown:
        raise ValueError(f"condition {condition.name}: data.cultures {', '.join(unknown)} not among the split's "
                         f"training cultures ({', '.join(split.train_cultures)})")
    return list(dict.fromkeys(codes))


def _wvs_answer_rows(view: WVSData, data: dict[str, Any], seed: int, labels_from: dict[str, str]) -> list[dict]:
    label = data.get("label", "mode")
    if label not in ("mode", "sampled"):
        raise ValueError(f"data.label must be mode or sampled, got {label!r}")
    samples = int(data.get("samples_per_cell", 5))
    template = get_setting(data.get("setting", "culture-aware"))
    rng = np.random.default_rng(seed)
    rows = []
    for culture in view.cultures:
        source = labels_from.get(culture, culture)
        for qid, question in view.questions.items():
            probs = view.distribution(source, qid)
            if probs is None:
                continue
            if label == "mode":
                answers = [question.codes[int(np.argmax(probs))]]
            else:
                answers = [question.codes[int(k)] for k in rng.choice(len(probs), size=samples, p=probs)]
            conversation = build_conversation(template, question, get_culture(culture))
            for a in answers:
                rows.append({"messages": conversation + [{"role": "assistant", "content": str(a)}],
                             "culture": culture, "qid": qid})
    return rows


def _recipe_corpus(condition: TrainedCondition, wvs: WVSData, split: ExperimentSplit, model: str,
                   dtype: str | None, folder: Path, load_model: Callable[[], tuple] | None = None
                   ) -> datasets.DatasetDict:
    """Run (or reuse) a recipe's data pipeline on the split's training cells; its corpus (``train`` and the rest).

    The experiment's model writes and answers (as in the papers' self-generated settings): ``load_model()`` gives
    it already loaded (the runner's one copy), else it is loaded from ``model``. ``data.pipeline`` overrides the
    pipeline config's fields; the cultures are :func:`condition_cultures`. CLCA's corpus is made from its bundled
    social scenarios, which hold no survey item; CultureLLM's seed items are the recipe's items that are training
    items; CultureSPA's contamination guard keeps generated questions away from every item, held-out ones included.
    """
    finished = folder / "dataset"
    if finished.is_dir():
        return datasets.load_from_disk(str(finished))
    from ..backends import TransformersBackend
    from ..models import load_model_and_tokenizer

    view = split.training_view(wvs)
    overrides = dict(condition.data.get("pipeline", {}))
    overrides.setdefault("cultures", condition_cultures(condition, split))
    source = condition.data["source"]
    if source == "culturellm":
        from ..recipes.culturellm import CULTURELLM_SEED_ITEMS

        wanted = overrides.get("items", CULTURELLM_SEED_ITEMS)
        overrides["items"] = [q for q in wanted if q in view.questions]
        if not overrides["items"]:
            raise ValueError(f"condition {condition.name}: none of the CultureLLM seed items is a training item")
    from ..config_values import dataclass_from_dict

    if source == "clca":  # social scenarios, no survey item: nothing of the split to guard
        from ..recipes.clca import CLCAPipeline as pipeline_class
        from ..recipes.clca import CLCAPipelineConfig as config_class
    elif source == "culturellm":
        from ..recipes.culturellm import CultureLLMPipeline as pipeline_class
        from ..recipes.culturellm import CultureLLMPipelineConfig as config_class
    else:
        from ..recipes.culturespa import CultureSPAPipeline as pipeline_class
        from ..recipes.culturespa import CultureSPAPipelineConfig as config_class
    name = {"clca": "CLCA", "culturellm": "CultureLLM", "culturespa": "CultureSPA"}[source]
    config = dataclass_from_dict(config_class, overrides, f"{name} pipeline")
    teacher_model, tokenizer = load_model() if load_model is not None else load_model_and_tokenizer(model, dtype=dtype)
    teacher = TransformersBackend.from_model(teacher_model, tokenizer, model_id=model,
                                             batch_size=getattr(config, "batch_size", 16))  # CultureSPA sets it
    if source == "clca":
        return pipeline_class(teacher, config=config).run(folder)
    if source == "culturellm":
        return pipeline_class(teacher, view, config=config).run(folder)
    return pipeline_class(teacher, config=config, wvs=view, guard_questions=wvs.questions).run(folder)


def corpus_summary(folder: Path, run_dir: Path) -> dict[str, Any]:
    """What a recipe pipeline made in ``folder`` (its ``stats.json``): ``folder`` (relative to ``run_dir``),
    ``counts`` (records per stage, rejections by reason, ``train``: the training records) and ``seconds`` (of the
    invocation that finished it; cache hits cost nothing)."""
    stats = json.loads((folder / "stats.json").read_text())
    return {"folder": folder.relative_to(run_dir).as_posix(), "counts": stats.get("counts", {}),
            "seconds": stats.get("seconds")}


def _shuffle_corpus_labels(corpus: datasets.Dataset, mapping: dict[str, str]) -> datasets.Dataset:
    """The same rows, each naming another culture: a row of culture c keeps its label (assistant answer or target)
    while its prompt (system and user turns) and its ``culture`` become ``mapping[c]``'s. Same rows, same steps.

    Raises:
        ValueError: naming the row, when its prompt does not name its culture (nothing to swap).
    """
    turns_column = "prompt" if "prompt" in corpus.column_names else "messages"

    def forms(iso3: str) -> list[str]:
        c = get_culture(iso3)
        return [c.adjective_phrase, c.name, c.adjective]

    def swap(row: dict, index: int) -> dict:
        source = get_culture(row["culture"]).iso3
        target = mapping.get(source, source)
        replace = dict(zip(forms(source), forms(target)))
        pattern = re.compile("|".join(rf"\b{re.escape(f)}\b" for f in sorted(replace, key=len, reverse=True)))
        turns, found = [], False
        for turn in row[turns_column]:
            if turn["role"] in ("system", "user"):
                text, n = pattern.subn(lambda m: replace[m.group(0)], turn["content"])
                found |= n > 0
                turn = {**turn, "content": text}
            turns.append(turn)
        if not found:
            raise ValueError(f"shuffled-label control: row {index} of culture {source} does not name its culture in "
                             "its prompt, so there is nothing to swap (a culture-unaware corpus has no culture labels)")
        return {turns_column: turns, "culture": target}

    return corpus.map(swap, with_indices=True, desc="Swapping culture labels")


def _load_corpus(path: str) -> datasets.Dataset:
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"condition data {path}: no such file or folder")
    if folder.is_dir():
        loaded = datasets.load_from_disk(str(folder))
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(folder.suffix)
    if kind is None:
        raise ValueError(f"condition data {path}: use a saved dataset folder, .parquet or .jsonl")
    return datasets.load_dataset(kind, data_files=str(folder), split="train")


def build_condition_dataset(condition: TrainedCondition, wvs: WVSData, split: ExperimentSplit, seed: int,
                            shuffled: dict[str, str] | None = None, *, model: str | None = None,
                            dtype: str | None = None, data_dir: Path | None = None,
                            load_model: Callable[[], tuple] | None = None) -> datasets.Dataset:
    """The training records of ``condition`` for one seed (``shuffled``: culture -> culture whose labels it gets).

    Chat records (``messages``) for the SFT recipes; distribution rows (``prompt``, ``choices``, ``target``, see
    :mod:`culture_align.recipes.distribution`) for ``recipe: answer_distribution``: the training cells' human
    distributions (``wvs_answers``), or a soft-label CultureSPA / CultureLLM corpus. ``model``, ``dtype``,
    ``data_dir`` (where a recipe pipeline writes, reused when finished) and ``load_model`` (the model already
    loaded, as ``(model, tokenizer)``; else it is loaded by name) serve the pipeline sources.

    Raises:
        HeldOutError: a corpus row made from a test item, or (culture split) of a test culture.
    """
    from ..recipes.distribution import (
        culturellm_distribution_rows,
        culturespa_distribution_rows,
        wvs_distribution_rows,
    )

    distribution = condition.recipe == "answer_distribution"
    source = condition.data["source"]
    if source == "wvs_answers":
        view = split.training_view(wvs)
        if condition.data.get("cultures") is not None:
            view = view.select(cultures=condition_cultures(condition, split))
        if distribution:
            table = wvs_distribution_rows(view, setting=condition.data.get("setting", "culture-aware"),
                                          labels_from=shuffled)
        else:
            table = datasets.Dataset.from_list(_wvs_answer_rows(view, condition.data, seed, shuffled or {}))
        if not len(table):
            raise ValueError(f"condition {condition.name}: the split's training cells give no records")
        return table.shuffle(seed=seed)
    if source in PIPELINE_SOURCES:
        if model is None or data_dir is None:
            raise ValueError(f"condition {condition.name}: a recipe source needs the model and a data folder")
        corpus = _recipe_corpus(condition, wvs, split, model, dtype, data_dir, load_model)
        if distribution and source == "clca":
            raise ValueError(f"condition {condition.name}: a CLCA corpus holds dialogues, not answer distributions")
        soft = {"culturellm": culturellm_distribution_rows, "culturespa": culturespa_distribution_rows}.get(source)
        table, where = (soft(corpus) if distribution else corpus["train"]), str(data_dir)
    else:
        table, where = _load_corpus(condition.data["path"]), condition.data["path"]
    needed = ("prompt", "choices", "target", "culture") if distribution else ("messages", "culture")
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ValueError(f"condition data {where}: missing column(s) {', '.join(missing)}")
    if condition.data.get("cultures") is not None:  # a corpus on disk may hold more cultures than the condition's
        chosen = set(condition_cultures(condition, split))
        table = table.filter(lambda c: get_culture(c).iso3 in chosen, input_columns="culture")
        if not len(table):
            raise ValueError(f"condition data {where}: no row of the cultures in data.cultures")
    item_columns = [c for c in ("qid", "seed_id", "question_id") if c in table.column_names]
    if split.item_split and not item_columns and condition.recipe != "clca":  # CLCA: scenarios, not survey items
        raise HeldOutError(f"condition data {where}: no column says which item a row was made from (qid, seed_id or "
                           "question_id), so an item split cannot check it for held-out items")
    if item_columns and split.item_split:  # the WVS item a row was made from (CultureLLM: seed_id)
        leaked = sorted({q for c in item_columns for q in table[c]} & set(split.test_items))
        if leaked:
            raise HeldOutError(f"condition data {where}: rows on test items {', '.join(leaked[:8])}")
    if split.culture_split:
        leaked = sorted({get_culture(c).iso3 for c in table["culture"]} & set(split.test_cultures))
        if leaked:
            raise HeldOutError(f"condition data {where}: rows of test cultures {', '.join(leaked)}")
    if shuffled:
        table = _shuffle_corpus_labels(table, shuffled)
    return table.shuffle(seed=seed)


def _gated_trainer_class(trainer_class: type, warmup_ratio: float, decay: str) -> type:
    """``trainer_class`` whose learning-rate schedule starts above zero (see
    :func:`~culture_align.experiments.gates.first_step_learning_rate_schedule`)."""

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            _, multiplier = first_step_learning_rate_schedule(num_training_steps, warmup_ratio, decay)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, multiplier)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    return type(f"Gated{trainer_class.__name__}", (trainer_class,), {"create_scheduler": create_scheduler})


def condition_training_config(condition: TrainedCondition, output_dir: Path, seed: int, dtype: str | None):
    """``(recipe config, trainer class, warm-up ratio, decay)`` of a trained condition: the recipe's config with the
    condition's ``training`` overrides (``warmup_ratio`` and ``lr_scheduler_type`` -- ``linear`` or ``constant`` --
    drive the gated schedule instead of the trainer's)."""
    from ..trainers import ADAPTER_TRAINERS, CLCAConfig, CLCATrainer

    config_class, trainer_class = ADAPTER_TRAINERS.get(condition.recipe, (CLCAConfig, CLCATrainer))
    overrides = dict(condition.training)
    warmup_ratio = float(overrides.pop("warmup_ratio", 0.0))
    decay = overrides.pop("lr_scheduler_type", "linear")
    overrides.setdefault("logging_steps", 10)
    if condition.recipe != "clca":  # CLCATrainer trains one adapter; the culture-adapter trainers take a mode
        overrides["mode"] = condition.mode
    try:
        config = config_class(output_dir=str(output_dir), seed=seed, data_seed=seed,
                              save_strategy="no", report_to="none", bf16=dtype == "bfloat16",
                              use_cpu=not torch.cuda.is_available(), **overrides)
    except TypeError as err:
        raise ValueError(f"condition {condition.name}: training: {err}") from None
    return config, trainer_class, warmup_ratio, decay


def condition_optimizer_steps(condition: TrainedCondition, dataset: datasets.Dataset, config) -> int:
    """Optimizer steps of the shortest adapter (per culture in specific mode)."""
    cultures = dataset["culture"]
    sizes = [cultures.count(c) for c in sorted(set(cultures))] if condition.mode == "specific" else [len(dataset)]
    world = max(int(getattr(config, "world_size", 1) or 1), 1)
    return min(optimizer_steps(n, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                               config.num_train_epochs, config.max_steps, world) for n in sizes)


def training_fingerprint(condition: TrainedCondition, dataset: datasets.Dataset, model: str, dtype: str | None,
                         seed: int) -> str:
    """What an adapter depends on: the condition's recipe, mode, settings, the model, dtype, seed and the records.

    A record's ``provenance`` counts as its canonical JSON text (:func:`~culture_align.recipes.provenance.
    provenance_text`), the form corpora stored before provenance was a struct, so an adapter trained on either
    form of the same corpus is recognised."""
    records = [{**r, "provenance": provenance_text(r["provenance"])} if "provenance" in r else r
               for r in dataset.to_list()]
    spec = {"recipe": condition.recipe, "mode": condition.mode, "training": condition.training,
            "lora": condition.lora, "model": model, "dtype": dtype, "seed": seed, "records": records}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_condition(condition: TrainedCondition, dataset: datasets.Dataset, model_path: str, output_dir: Path,
                    seed: int, *, dtype: str | None, min_steps: int, allow_short_training: bool,
                    fingerprint: str) -> dict[str, Any]:
    """Train ``condition``'s adapter(s) for one seed into ``output_dir`` (after the length gate); returns a record
    of what ran (steps, short, seconds, ``fingerprint``). A finished folder (``experiment_training.json``) with the
    same ``fingerprint`` (:func:`training_fingerprint`) is reused; any other (other settings, model or records) is
    refused."""
    from peft import LoraConfig

    done = output_dir / "experiment_training.json"
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("fingerprint") != fingerprint:
            raise ValueError(f"{output_dir} holds an adapter trained with other settings, model or records than "
                             f"condition {condition.name} (seed {seed}) has now: delete that folder to retrain it, or "
                             "use another output folder")
        return {**record, "reused": True}
    config, trainer_class, warmup_ratio, decay = condition_training_config(condition, output_dir, seed, dtype)
    steps = condition_optimizer_steps(condition, dataset, config)
    short = check_training_length(steps, f"condition {condition.name} (seed {seed})", min_steps, allow_short_training)
    from ..trainers import CultureAdapterConfig

    reference = getattr(type(config), "reference_lora", CultureAdapterConfig.reference_lora)  # CLCA: the library's
    peft_config = LoraConfig(task_type="CAUSAL_LM", **{**reference, **condition.lora})
    start = time.perf_counter()
    trainer = _gated_trainer_class(trainer_class, warmup_ratio, decay)(
        model=model_path, args=config, train_dataset=dataset, peft_config=peft_config)
    trainer.train()
    trainer.save_model()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    record = {"optimizer_steps": steps, "short": short, "examples": len(dataset), "seconds": round(
        time.perf_counter() - start, 1), "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None, "warmup_ratio": warmup_ratio, "lr_schedule": decay,
        "fingerprint": fingerprint}
    done.write_text(json.dumps(record, indent=1) + "\n")
    return record
