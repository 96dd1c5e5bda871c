"""What the recipe experiments share: evaluate base, prompting and adapters alike, and tabulate the result.

Every condition is scored by the same :class:`~culture_align.WVSEvaluator` (log-prob answer distributions, the
``wvs_alignment`` metric) on the same items and cultures, on one loaded base model that holds every adapter
(PEFT switches them without reloading). Used by ``culturespa_experiment.py`` and ``culturellm_experiment.py``.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from culture_align import WVSEvaluator
from culture_align.evaluation import EvaluationConfig

METRICS = (("kl_divergence", "KL ↓"), ("similarity", "1-JSD ↑"), ("alignment_score", "align ↑"))


@dataclass
class Condition:
    """One row group of the table: a prompt setting, optionally with adapters (``{ISO3 or "*": name}``)."""

    name: str
    setting: str
    adapters: dict[str, str] | None = None


def train_adapters(trainer_class, config_class, mode: str, model_path: str, dataset, output_dir: Path, *,
                   batch_size: int, epochs: float, learning_rate: float, dtype: str, seed: int,
                   max_length: int = 512) -> float:
    """Train and save culture adapters (``mode`` "joint" or "specific") with a recipe's trainer; seconds taken.

    bfloat16 autocast on CPU when ``dtype="bfloat16"`` (about 2x faster where the CPU has AVX512-BF16).
    """
    import torch

    start = time.perf_counter()
    config = config_class(
        output_dir=str(output_dir), mode=mode, per_device_train_batch_size=batch_size, num_train_epochs=epochs,
        learning_rate=learning_rate, max_length=max_length, logging_steps=10, save_strategy="no", report_to="none",
        bf16=dtype == "bfloat16", use_cpu=not torch.cuda.is_available(), seed=seed)
    trainer = trainer_class(model=model_path, args=config, train_dataset=dataset)
    trainer.train()
    trainer.save_model()  # the adapter(s), their cards and the culture_adapters.json index
    return round(time.perf_counter() - start, 1)


def evaluate_conditions(model, tokenizer, wvs, cultures: list[str], conditions: list[Condition],
                        exclude_items: list[str], batch_size: int, output_dir: Path,
                        model_name: str) -> dict[str, Any]:
    """Score every condition; ``model`` is a ``PeftModel`` holding every adapter the conditions name.

    Returns:
        ``{"conditions": {name: {"per_culture": {ISO3: {metric: value}}, "mean": {...}, "n_items": ...}},
        "references": {...}, "seconds": ...}``.
    """
    results: dict[str, Any] = {"conditions": {}}
    start = time.perf_counter()
    for condition in conditions:
        config = EvaluationConfig(settings=[condition.setting], exclude_items=exclude_items, batch_size=batch_size,
                                  adapters=condition.adapters)
        context = model.disable_adapter() if condition.adapters is None and hasattr(model, "disable_adapter") \
            else contextlib.nullcontext()
        with context:
            report = WVSEvaluator(model, tokenizer, wvs, cultures=cultures, config=config,
                                  model_name=f"{model_name} [{condition.name}]", show_progress=False).evaluate(
                output_dir / condition.name.replace(" ", "_"))
        per_culture = {c: {m: report.row(condition.setting, c).get(m) for m, _ in METRICS} for c in cultures}
        mean = {m: report.row(condition.setting).get(m) for m, _ in METRICS}
        results["conditions"][condition.name] = {
            "setting": condition.setting, "adapters": condition.adapters, "per_culture": per_culture, "mean": mean,
            "n_items": report.row(condition.setting)["n_items"]}
        if "references" not in results:
            results["references"] = {r["reference"]: {m: r.get(m) for m, _ in METRICS}
                                     for r in report.references if r["culture"] == "mean"}
        print(f"  {condition.name}: " + ", ".join(f"{label} {mean[m]:.3f}" for m, label in METRICS), flush=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def markdown_table(results: dict[str, Any], cultures: list[str]) -> str:
    """Per culture and condition: KL, 1-JSD, alignment score; then the means and the reference rows."""
    conditions = results["conditions"]
    head = "| culture | " + " | ".join(f"{name}: {label}" for name in conditions for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (1 + len(conditions) * len(METRICS))]

    def fmt(value: Any) -> str:
        return "–" if value is None else (f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}")

    for culture in cultures + ["mean"]:
        cells = [fmt((c["mean"] if culture == "mean" else c["per_culture"][culture])[m])
                 for c in conditions.values() for m, _ in METRICS]
        lines.append(f"| {'**mean**' if culture == 'mean' else culture} | " + " | ".join(cells) + " |")
    for name, ref in results.get("references", {}).items():
        lines.append(f"\nReference, *{name}* (mean): " + ", ".join(f"{label} {fmt(ref[m])}" for m, label in METRICS))
    return "\n".join(lines)


def write_results(path: Path, payload: dict[str, Any], table: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(table + "\n")
    print(f"\nWritten {path} and {path.with_suffix('.md')}")
