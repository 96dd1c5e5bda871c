"""Classification scores (macro-F1, accuracy, counts, confusion) and `TaskReport`, the results of a task run.

Macro-F1 comes from scikit-learn's ``f1_score(average="macro")`` over the task's **whole** label set: a
label that is never predicted counts with F1 = 0 (``zero_division=0``), as in the CultureLLM evaluation.
(``evaluate.load("f1")`` fetches its script from the Hub and does not load offline; it wraps the same
scikit-learn function.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .report import format_cell, json_default

__all__ = ["classification_scores", "TaskReport"]


def classification_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Scores of predicted labels against gold labels.

    Args:
        gold: Gold label of each example.
        predicted: Predicted label of each example (same length).
        labels: The task's label set, in its declared order; every gold and predicted label must be in it.

    Returns:
        ``macro_f1`` (mean of the per-label F1 over ``labels``, 0 to 1), ``accuracy``, ``f1_per_label``
        ({label: F1}), ``gold_counts`` and ``predicted_counts`` ({label: n}, every label present),
        ``confusion`` ({gold label: {predicted label: n}}) and ``n``.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    labels = list(labels)
    unknown = sorted({str(x) for x in [*gold, *predicted]} - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the label set {labels}")
    if not gold:
        nan = float("nan")
        zeros = dict.fromkeys(labels, 0)
        return dict(n=0, macro_f1=nan, accuracy=nan, f1_per_label=dict.fromkeys(labels, nan),
                    gold_counts=zeros, predicted_counts=dict(zeros),
                    confusion={g: dict.fromkeys(labels, 0) for g in labels})
    per_label = f1_score(gold, predicted, labels=labels, average=None, zero_division=0)
    macro = f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)
    matrix = confusion_matrix(gold, predicted, labels=labels)
    return dict(
        n=len(gold),
        macro_f1=float(macro),
        accuracy=float(np.mean([g == p for g, p in zip(gold, predicted)])),
        f1_per_label={label: float(v) for label, v in zip(labels, per_label)},
        gold_counts={label: int(matrix[i].sum()) for i, label in enumerate(labels)},
        predicted_counts={label: int(matrix[:, i].sum()) for i, label in enumerate(labels)},
        confusion={g: {p: int(matrix[i, j]) for j, p in enumerate(labels)} for i, g in enumerate(labels)},
    )


@dataclass
class TaskReport:
    """What :meth:`~culture_align.evaluation.tasks.TaskEvaluator.evaluate` returns.

    Attributes:
        predictions: One row per (task, setting, example): ``task``, ``setting``, ``culture``, ``adapter``
            ("" for none), ``row`` (0-based position of the example in its source), ``text``, ``label``
            (gold key), ``prediction`` (predicted key), ``label_logprobs`` (log-probability of each label's
            answer, in the task's label order; ``exp`` sums to 1), ``correct`` and ``debiased_prediction``
            (after removing the label prior, see :func:`~culture_align.evaluation.tasks.debiased_predictions`).
        summary: One dict per (task, setting): ``task``, ``setting``, ``culture``, ``language``,
            ``phenomenon``, ``adapter``, ``labels`` (key order), the :func:`classification_scores` fields,
            ``majority_macro_f1`` (always answering the most frequent gold label), ``debiased_macro_f1`` and
            ``debiased_predicted_counts`` (the same for the debiased predictions) and ``sample``
            (``n_total``, ``n_selected``, ``strategy``, ``seed``).
        model_name: Shown in the markdown table.
        config: The evaluation config as a dict.
        seconds: Wall time of the evaluation.
    """

    predictions: datasets.Dataset
    summary: list[dict[str, Any]]
    model_name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, task: str, setting: str) -> dict[str, Any]:
        """The summary of one task in one setting."""
        for r in self.summary:
            if r["task"] == task and r["setting"] == setting:
                return r
        raise KeyError(f"no summary row for task={task!r}, setting={setting!r}")

    def mean_macro_f1(self, setting: str) -> float:
        """Unweighted mean of the tasks' macro-F1 in one setting (NaN when none)."""
        return self._mean(setting, "macro_f1")

    def mean_debiased_macro_f1(self, setting: str) -> float:
        """Unweighted mean of the tasks' debiased macro-F1 in one setting (NaN when none)."""
        return self._mean(setting, "debiased_macro_f1")

    def _mean(self, setting: str, key: str) -> float:
        vals = [r[key] for r in self.summary if r["setting"] == setting and not math.isnan(r[key])]
        return float(np.mean(vals)) if vals else float("nan")

    def to_markdown(self) -> str:
        """One line per (task, setting): macro-F1, accuracy, the majority baseline and the predicted counts."""
        lines = [f"Model: `{self.model_name}`", "",
                 "| task | culture | setting | adapter | n | macro-F1 ↑ | accuracy | debiased macro-F1 | "
                 "majority macro-F1 | predicted (gold) counts |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.summary:
            counts = ", ".join(f"{k}: {r['predicted_counts'][k]} ({r['gold_counts'][k]})" for k in r["labels"])
            lines.append(f"| {r['task']} | {r['culture']} | {r['setting']} | {r['adapter'] or '–'} | {r['n']} | "
                         f"{format_cell(r['macro_f1'])} | {format_cell(r['accuracy'])} | {format_cell(r['debiased_macro_f1'])} | "
                         f"{format_cell(r['majority_macro_f1'])} | "
                         f"{counts} |")
        for setting in dict.fromkeys(r["setting"] for r in self.summary):
            n_tasks = sum(r["setting"] == setting for r in self.summary)
            lines.append(f"| **mean of {n_tasks}** | | {setting} | | | {format_cell(self.mean_macro_f1(setting))} | | "
                         f"{format_cell(self.mean_debiased_macro_f1(setting))} | | |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        settings = list(dict.fromkeys(r["setting"] for r in self.summary))
        return dict(model=self.model_name, config=self.config, seconds=self.seconds, summary=self.summary,
                    mean_macro_f1={s: self.mean_macro_f1(s) for s in settings},
                    mean_debiased_macro_f1={s: self.mean_debiased_macro_f1(s) for s in settings})

    def save(self, output_dir: str | Path) -> Path:
        """Write ``results.json``, ``predictions.parquet`` and ``summary.md`` to ``output_dir``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.to_dict(), indent=2, default=json_default) + "\n")
        self.predictions.to_parquet(str(out / "predictions.parquet"))
        (out / "summary.md").write_text(self.to_markdown())
        return out
