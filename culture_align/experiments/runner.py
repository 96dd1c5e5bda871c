"""`ExperimentRunner`: one experiment, from a config to ``results.json``, ``report.md`` and plots.

Stages (each resumable; ``--dry-run`` prints them with their sizes and optimizer steps):

1. **Split**: made from the config and saved as ``split.json``; a rerun reuses it and refuses a config that would
   make a different one.
2. **Baselines** on exactly the test cells (:mod:`~culture_align.experiments.baselines`).
3. **Model answers**: the model's distributions (exact option log-probabilities, :class:`WVSEvaluator`) under the
   culture-unaware (``base``) and culture-aware (``culture_prompt``) prompts, on the training cells (to fit the
   calibration) and the test cells; kept as ``predictions/<condition>/seed<k>.parquet``.
4. **Trained conditions**, per seed, with the shuffled-label control: records from the training cells, gated
   training, scoring on the test cells, the "did it train" gate. Each (condition, seed) is reused when finished.
5. **Statistics and report**: paired cluster bootstrap, comparisons against every baseline, culture-swap matrices
   and the specificity index for culture-conditioned conditions.

Human figures are read by the scoring only; nothing the run writes holds them (predictions hold model
probabilities; the report holds aggregate scores).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from ..wvs.data import WVSData
from .baselines import HUMAN_BASELINES, Calibration, fit_calibration, human_baseline_scores
from .config import MODEL_SETTINGS, PIPELINE_SOURCES, ExperimentConfig, TrainedCondition, untrained_row
from .controls import culture_derangement
from .gates import TrainingGateError, check_adapter_changed
from .splits import ExperimentSplit, make_split
from .statistics import (
    MEAN_METRICS,
    CellTable,
    Scores,
    answer_scores,
    score_cells,
    stack_seeds,
)

logger = logging.get_logger(__name__)

__all__ = ["ConditionResult", "ExperimentRunner"]

Predictions = dict[tuple[str, str], np.ndarray]
"""(culture, qid) -> the model's distribution over the item's codes."""


@dataclass
class ConditionResult:
    """One row of the report: per-cell scores over seeds and what produced them."""

    name: str
    kind: str  # "baseline" | "model" | "trained"
    scores: Scores
    seeds: list[int] = field(default_factory=lambda: [0])
    info: dict[str, Any] = field(default_factory=dict)
    predictions: list[Predictions] | None = None  # per seed, for the culture controls and plots
    culture_conditioned: bool = False


class ExperimentRunner:
    """Run an :class:`ExperimentConfig`.

    Args:
        config: The experiment.
        output_dir: Run folder (default: ``config.output_dir`` or ``runs/experiments/<name>``).
        wvs: Human data to use instead of loading ``config.wvs``.
        show_progress: tqdm bars.
    """

    def __init__(self, config: ExperimentConfig, output_dir: str | Path | None = None, wvs: WVSData | None = None,
                 show_progress: bool = True) -> None:
        self.config = config
        self.output_dir = Path(output_dir or config.output_dir or Path("runs/experiments") / config.name)
        self.show_progress = show_progress
        self._wvs = wvs
        self._model = None
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []  # predictions and adapters taken from an earlier run of this folder

    # ------------------------------------------------------------------------------------------ data
    @property
    def wvs(self) -> WVSData:
        if self._wvs is None:
            if not self.config.wvs:
                raise ValueError("the experiment config names no human data (`wvs`)")
            from ..wvs import load_wvs

            self._wvs = load_wvs(self.config.wvs, self.config.questions)
        return self._wvs

    def split(self) -> ExperimentSplit:
        """The run's split: ``split.json`` of the run folder when present (checked against the config), else new."""
        s = self.config.split
        wanted = make_split(self.wvs, s.protocol, seed=s.seed, test_share=s.test_share, test_topics=s.test_topics,
                            test_cultures=s.test_cultures, items_file=s.items_file, cultures=self.config.cultures,
                            items=self.config.items)
        path = self.output_dir / "split.json"
        if path.is_file():
            saved = ExperimentSplit.load(path)
            if saved != wanted:
                raise ValueError(f"{path} holds another split than the config makes now (protocol, seed, share, "
                                 "items or cultures changed): use a new output folder, or delete the old run")
            return saved
        return wanted

    # ---------------------------------------------------------------------------------------- planning
    def _condition_variants(self, condition: TrainedCondition) -> list[tuple[str, int, bool]]:
        """(row name, seed, shuffled) for every training run of ``condition``."""
        runs = [(condition.name, s, False) for s in condition.seeds]
        if condition.shuffled_control:
            runs += [(f"{condition.name}_shuffled_labels", s, True) for s in condition.seeds]
        return runs

    def plan(self) -> list[str]:
        """What :meth:`run` would do, one line per stage, with sizes and optimizer steps."""
        from .training import condition_cultures, condition_optimizer_steps, condition_training_config

        split = self.split()
        cells = split.test_cells(self.wvs)
        lines = [f"experiment {self.config.name}: model {self.config.model}, data {self.wvs.source}",
                 f"split: {split.summary()}", f"test cells: {len(cells)} (culture x item with human data)",
                 f"training cells: {len(split.training_cells(self.wvs))}",
                 f"baselines: {', '.join(self.config.baselines)}"]
        for condition in self.config.conditions:
            source = condition.data["source"]
            if source in PIPELINE_SOURCES and not (self._data_dir(condition) / "dataset").is_dir():
                lines.append(f"data {condition.name}: the {source} pipeline runs first on the training cells "
                             f"(-> {self._data_dir(condition)}); record counts and steps follow it")
                continue
            for name, seed, shuffled in self._condition_variants(condition):
                mapping = culture_derangement(condition_cultures(condition, split), seed) if shuffled else None
                data = self._condition_dataset(condition, split, seed, mapping)
                config = condition_training_config(condition, self.output_dir / "plan", seed, self.config.dtype)[0]
                steps = condition_optimizer_steps(condition, data, config)
                lines.append(f"train {name} seed {seed}: {condition.recipe} {condition.mode}, {len(data)} records, "
                             f"{steps} optimizer steps" + (" per adapter (the shortest)" if condition.mode == "specific"
                                                           else "")
                             + (" -- below the gate" if steps < self.config.min_steps else ""))
        return lines

    def _condition_dataset(self, condition: TrainedCondition, split: ExperimentSplit, seed: int,
                           mapping: dict[str, str] | None) -> datasets.Dataset:
        from .training import build_condition_dataset

        return build_condition_dataset(condition, self.wvs, split, seed, mapping, model=self.config.model,
                                       dtype=self.config.dtype, data_dir=self._data_dir(condition),
                                       load_model=self._base_model)  # the pipelines' teacher: the loaded model

    def _data_dir(self, condition: TrainedCondition) -> Path:
        """Where ``condition``'s pipeline writes: ``data/<source>-<hash>/``, the hash of what makes the corpus (the
        source, its pipeline settings and cultures, the model and dtype), so conditions that train differently on
        one corpus (a recipe and its soft-label variant) generate it once."""
        spec = {key: condition.data.get(key) for key in ("source", "pipeline", "cultures")}
        spec.update(model=self.config.model, dtype=self.config.dtype)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.output_dir / "data" / f"{condition.data['source']}-{digest}"

    # ------------------------------------------------------------------------------------------ model
    def _base_model(self):
        """The experiment's model and tokenizer, loaded once per run."""
        if self._model is None:
            from ..models import load_model_and_tokenizer

            self._model = load_model_and_tokenizer(self.config.model, dtype=self.config.dtype)
        return self._model

    def _model_answers(self, name: str, seed: int, setting: str, cultures: list[str], items: list[str],
                       adapters_dir: Path | None = None, adapter_fingerprint: str | None = None) -> Predictions:
        """The model's distributions for ``cultures`` x ``items``, cached as Parquet under ``predictions/`` with a
        sidecar fingerprint (model, dtype, setting, cells, adapter): a cache made for anything else is recomputed."""
        path = self.output_dir / "predictions" / name / f"seed{seed}.parquet"
        sidecar = path.with_suffix(".json")
        if setting not in MODEL_SETTINGS.values():  # a template file: what it says, not only its path
            from ..prompts.wvs import get_setting

            setting_key: str | dict = get_setting(setting).to_dict()
        else:
            setting_key = setting
        fingerprint = {"model": self.config.model, "dtype": self.config.dtype, "setting": setting_key,
                       "cultures": sorted(cultures), "items": sorted(items), "adapter": adapter_fingerprint}
        if path.is_file():
            saved = json.loads(sidecar.read_text()) if sidecar.is_file() else None
            if saved == fingerprint:
                self.reused.append(str(path.relative_to(self.output_dir)))
                table = datasets.Dataset.from_parquet(str(path))
                return {(c, q): np.asarray(p) for c, q, p in zip(table["culture"], table["qid"], table["model_probs"])}
            logger.warning(f"{path} was made for other settings, cells or adapter: recomputing it")
        from ..evaluation import EvaluationConfig, WVSEvaluator

        model, tokenizer = self._base_model()
        adapters = None
        if adapters_dir is not None:  # on the loaded base model, removed again below (no reload per adapter)
            from ..models import load_culture_adapters

            model, adapters = load_culture_adapters(model, adapters_dir)
        config = EvaluationConfig(settings=[setting], items=items, batch_size=self.config.batch_size,
                                  adapters=adapters)
        try:
            table = WVSEvaluator(model, tokenizer, self.wvs, cultures=cultures, config=config,
                                 show_progress=self.show_progress).model_answers()
        finally:
            if adapters_dir is not None:
                self._model = (model.unload(), tokenizer)
        table = table.add_column("condition", [name] * len(table)).add_column("seed", [seed] * len(table))
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").replace(path)
        sidecar.write_text(json.dumps(fingerprint, indent=1) + "\n")
        return {(c, q): np.asarray(p) for c, q, p in zip(table["culture"], table["qid"], table["model_probs"])}

    # ------------------------------------------------------------------------------------------- run
    def run(self, dry_run: bool = False) -> dict[str, Any]:
        """Run every stage; returns the ``results.json`` payload (``{"plan": [...]}`` with ``dry_run``)."""
        start = time.perf_counter()
        if dry_run:
            return {"plan": self.plan()}
        split = self.split()
        for condition in self.config.conditions:
            if condition.mode == "specific" and split.culture_split:
                raise ValueError(f"condition {condition.name}: specific adapters cannot answer for held-out cultures "
                                 "(a culture split has no adapter for them); use mode: joint")
        split.save(self.output_dir / "split.json")
        cells = CellTable.from_cells(self.wvs, split.test_cells(self.wvs))
        if not len(cells):
            raise ValueError(f"the split has no test cell with human data in {self.wvs.source}")
        split.check_scored(set(cells.cultures), set(cells.qids))
        loaded_cultures = list(dict.fromkeys(split.train_cultures + split.test_cultures))
        results: dict[str, ConditionResult] = {}

        def timed(stage: str, fn: Callable[[], Any]) -> Any:
            t0 = time.perf_counter()
            out = fn()
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - t0, 1)
            return out

        # The humans a no-model baseline may use: in a culture split the training cultures' only (the held-out
        # cultures' humans are what is predicted); otherwise every loaded culture but the cell's own.
        donor_cultures = split.train_cultures if split.culture_split else loaded_cultures
        for name in HUMAN_BASELINES:
            if name in self.config.baselines:
                results[name] = ConditionResult(name, "baseline", timed("baselines", lambda n=name: human_baseline_scores(
                    n, cells, self.wvs, split, donor_cultures)))
        for kind in ("random_answers", "middle_option"):
            results[kind] = ConditionResult(kind, "baseline", answer_scores(cells, kind),
                                            info={"only": ["accuracy", "alignment_score"]})
        untrained: dict[str, Predictions] = {}
        calibrations: dict[str, Calibration] = {}
        want_model = {"base", "culture_prompt", "calibrated_base"} & set(self.config.baselines)
        settings_needed = {MODEL_SETTINGS[n] for n in want_model & set(MODEL_SETTINGS)}
        if "calibrated_base" in want_model:
            settings_needed |= set(MODEL_SETTINGS.values())
        settings_needed |= {c.setting for c in self.config.conditions}
        items = list(dict.fromkeys(split.train_items + split.test_items))
        for model_name, setting in MODEL_SETTINGS.items():
            if setting not in settings_needed:
                continue
            preds = timed("model answers", lambda mn=model_name, s=setting: self._model_answers(
                mn, 0, s, loaded_cultures, items))
            untrained[setting] = preds
            test_preds = [preds.get((c, q)) for c, q in zip(cells.cultures, cells.qids)]
            conditioned = setting == "culture-aware"
            if model_name in self.config.baselines:
                results[model_name] = ConditionResult(model_name, "model", score_cells(cells, test_preds),
                                                      info={"setting": setting}, predictions=[preds],
                                                      culture_conditioned=conditioned)
                expected = score_cells(cells, test_preds, answers=[
                    _expected_code(p, codes) for p, codes in zip(test_preds, cells.codes)])
                for metric in MEAN_METRICS:  # an answer-only row: the alignment score is all it has
                    expected[metric] = np.full_like(expected[metric], np.nan)
                results[f"{model_name}_expected_code"] = ConditionResult(
                    f"{model_name}_expected_code", "model", expected,
                    info={"setting": setting, "only": ["alignment_score"],
                          "answer": "the model's expected code, rounded"})
            if "calibrated_base" in want_model:
                train_cells = split.training_cells(self.wvs)
                have = [(c, q) for c, q in train_cells if (c, q) in preds]
                calibration = timed("calibration", lambda h=have, p=preds: fit_calibration(
                    [p[k] for k in h], [self.wvs.distribution(*k) for k in h]))
                calibrations[setting] = calibration
                cal_name = "calibrated_base" if model_name == "base" else f"calibrated_{model_name}"
                cal_preds = {k: calibration.apply(v) for k, v in preds.items()}
                results[cal_name] = ConditionResult(
                    cal_name, "model", score_cells(cells, [cal_preds.get(k) for k in zip(cells.cultures, cells.qids)]),
                    info={"setting": setting, "temperature": calibration.temperature, "alpha": calibration.alpha,
                          "train_kl_before": calibration.train_kl_before, "train_kl_after": calibration.train_kl_after,
                          "n_train_cells": calibration.n_train_cells}, predictions=[cal_preds],
                    culture_conditioned=conditioned)
        for setting in sorted(settings_needed - set(MODEL_SETTINGS.values())):  # a condition's own template file
            name = untrained_row(setting)
            preds = timed("model answers", lambda n=name, s=setting: self._model_answers(
                n, 0, s, loaded_cultures, split.test_items))
            untrained[setting] = preds
            results[name] = ConditionResult(name, "model", score_cells(cells, [preds.get(k) for k in zip(
                cells.cultures, cells.qids)]), info={"setting": setting}, predictions=[preds], culture_conditioned=True)
        for condition in self.config.conditions:
            for row in timed("trained conditions", lambda c=condition: self._run_condition(
                    c, split, cells, untrained[c.setting])):
                results[row.name] = row
        self._model = None
        from .report import build_results, write_report

        payload = timed("statistics", lambda: build_results(self, split, cells, results, calibrations))
        payload["timings_seconds"] = {**self.timings, "total": round(time.perf_counter() - start, 1)}
        payload["reused_from_earlier_run"] = self.reused
        write_report(self.output_dir, payload, cells, results)
        return payload

    def _run_condition(self, condition: TrainedCondition, split: ExperimentSplit, cells: CellTable,
                       untrained: Predictions) -> list[ConditionResult]:
        """Train and score every seed of ``condition`` (and its shuffled-label control)."""
        from ..models import resolve_model_path
        from .training import condition_cultures, corpus_summary, train_condition, training_fingerprint

        model_path = resolve_model_path(self.config.model)
        rows: dict[str, ConditionResult] = {}
        runs = self._condition_variants(condition)
        for name, seed, shuffled in tqdm(runs, desc=f"train {condition.name}", disable=not self.show_progress):
            mapping = culture_derangement(condition_cultures(condition, split), seed) if shuffled else None
            folder = self.output_dir / "adapters" / name / f"seed{seed}"
            dataset = self._condition_dataset(condition, split, seed, mapping)
            fingerprint = training_fingerprint(condition, dataset, self.config.model, self.config.dtype, seed)
            record = train_condition(condition, dataset, model_path, folder, seed, dtype=self.config.dtype,
                                     min_steps=self.config.min_steps,
                                     allow_short_training=self.config.allow_short_training, fingerprint=fingerprint)
            test_cultures = list(dict.fromkeys(cells.cultures))
            preds = self._model_answers(name, seed, condition.setting, test_cultures, split.test_items, folder,
                                        adapter_fingerprint=fingerprint)
            test_keys = list(zip(cells.cultures, cells.qids))
            try:
                moved = check_adapter_changed([untrained.get(k) for k in test_keys],
                                              [preds.get(k) for k in test_keys], f"condition {name} (seed {seed})")
            except TrainingGateError:  # nothing of a failed run may be reused by the next one
                (folder / "experiment_training.json").unlink(missing_ok=True)
                (self.output_dir / "predictions" / name / f"seed{seed}.parquet").unlink(missing_ok=True)
                raise
            row = rows.setdefault(name, ConditionResult(name, "trained", {}, seeds=[], predictions=[],
                                                        culture_conditioned=True,
                                                        info={"recipe": condition.recipe, "mode": condition.mode,
                                                              "setting": condition.setting, "data": condition.data,
                                                              "training": condition.training, "runs": [],
                                                              "shuffled_labels": shuffled}))
            if condition.data["source"] in PIPELINE_SOURCES and "corpus" not in row.info:
                row.info["corpus"] = corpus_summary(self._data_dir(condition), self.output_dir)
            row.seeds.append(seed)
            row.predictions.append(preds)
            row.info["runs"].append({"seed": seed, **record, "max_abs_dp": moved,
                                     **({"label_mapping": mapping} if mapping else {})})
            row.info["short"] = row.info.get("short", False) or record["short"]
            row.scores = stack_seeds(([row.scores] if row.scores else []) + [
                score_cells(cells, [preds.get(k) for k in test_keys])])
        return list(rows.values())


def _expected_code(probs: np.ndarray | None, codes: tuple[int, ...]) -> int | None:
    """The code nearest the distribution's mean code (half up): the model's expected answer, rounded."""
    if probs is None:
        return None
    mean = float(np.dot(probs, codes))
    return int(min(max(np.floor(mean + 0.5), min(codes)), max(codes)))

