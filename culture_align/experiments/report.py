"""An experiment's outputs: ``results.json``, ``report.md`` and plots (KL per culture with CIs and the baselines,
culture-swap heatmaps, a reliability diagram). Aggregates only: no human figure is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..evaluation.report import format_cell
from .baselines import HUMAN_BASELINES
from .config import untrained_row
from .controls import culture_controls
from .statistics import CellTable, ClusterBootstrap

if TYPE_CHECKING:
    from .baselines import Calibration
    from .runner import ConditionResult, ExperimentRunner
    from .splits import ExperimentSplit

__all__ = ["build_results", "write_report"]

#: What each kind of condition is compared with (those present in the run): every model row with the no-model
#: baselines; trained rows also with the untrained model rows and their own shuffled-label control; the
#: expected-code rows (alignment score only) with the answer baselines.
NO_MODEL = HUMAN_BASELINES + ("random_answers", "middle_option")
MODEL_ROWS = ("base", "culture_prompt", "calibrated_base", "calibrated_culture_prompt")


def _compared_with(name: str, row: ConditionResult, results: dict[str, ConditionResult]) -> list[str]:
    if name.endswith("_expected_code"):
        wanted = ["random_answers", "middle_option"]
    elif row.kind == "trained":
        untrained = untrained_row((row.info or {}).get("setting", "culture-aware"))  # prompt_<name>: a template's
        wanted = list(dict.fromkeys(NO_MODEL + MODEL_ROWS + (untrained, f"{name}_shuffled_labels")))
    else:
        wanted = list(NO_MODEL) + (["base"] if name == "culture_prompt" else []) + (
            ["culture_prompt"] if name.startswith("prompt_") else [])
    return [w for w in wanted if w in results and w != name]
_LABELS = {"kl_divergence": "KL ↓", "one_minus_js_distance": "1 - JS dist ↑", "similarity": "1 - JSD ↑",
           "accuracy": "mode acc ↑", "alignment_score": "align ↑", "js_distance": "JS dist ↓"}


def _reliability(cells: CellTable, predictions: dict, bins: int = 10) -> list[dict[str, float]]:
    """Predicted option probability vs. the humans' share of that option, in ``bins`` equal-width bins."""
    pred, human = [], []
    for c, q, p in zip(cells.cultures, cells.qids, cells.human):
        qd = predictions.get((c, q))
        if qd is not None:
            pred.extend(qd)
            human.extend(p)
    pred, human = np.asarray(pred), np.asarray(human)
    which = np.minimum((pred * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append({"bin": [b / bins, (b + 1) / bins], "predicted": float(pred[mask].mean()),
                        "human": float(human[mask].mean()), "n": int(mask.sum())})
    return out


def build_results(runner: ExperimentRunner, split: ExperimentSplit, cells: CellTable,
                  results: dict[str, ConditionResult], calibrations: dict[str, Calibration]) -> dict[str, Any]:
    """The ``results.json`` payload (see the module docstring of :mod:`culture_align.experiments`)."""

    config = runner.config
    bootstrap = ClusterBootstrap(cells, unit=config.bootstrap_unit, n_resamples=config.bootstrap_resamples,
                                 seed=config.bootstrap_seed, resample_cultures=split.culture_split)
    conditions: dict[str, Any] = {}
    for name, row in results.items():
        summary = bootstrap.summarize(row.scores)
        conditions[name] = {"kind": row.kind, "seeds": row.seeds, **summary,
                            **({"info": row.info} if row.info else {})}
    comparisons = []
    for name, row in results.items():
        if row.kind == "baseline":
            continue
        for other in _compared_with(name, row, results):
            comparisons.append({"condition": name, "baseline": other,
                                **bootstrap.compare(row.scores, results[other].scores)})
    specificity = {name: culture_controls(cells, row.predictions or [], bootstrap)
                   for name, row in results.items() if row.culture_conditioned}
    wvs = runner.wvs  # the humans themselves (Q_c = P_c): the scale of the specificity index
    humans = {(c, q): wvs.distribution(c, q) for c, q in zip(cells.cultures, cells.qids)}
    specificity["humans"] = culture_controls(cells, [humans], bootstrap)
    for name, entry in list(specificity.items()):  # a trained condition against its shuffled-label control
        control = specificity.get(f"{name}_shuffled_labels")
        if control is not None:
            diff = bootstrap.compare(entry["scores"], control["scores"])["kl_divergence"]
            entry["minus_shuffled_labels"] = diff["difference"]
            entry["minus_shuffled_labels_ci95"] = diff["ci95"]
    for entry in specificity.values():
        entry.pop("scores")
    reliability = {name: _reliability(cells, row.predictions[0]) for name, row in results.items()
                   if row.predictions and row.kind != "baseline"}
    return {
        "protocol": {
            "experiment": config.name, "model": config.model, "dtype": config.dtype, "data": runner.wvs.source,
            "split_protocol": split.protocol, "split_seed": split.seed, "split_params": split.params,
            "elicitation": "exact option distribution from one forward pass: the probability of each legal answer "
                           "code after the chat prompt, renormalised over the legal codes (multi-token codes scored "
                           "as sequences); prompts culture_align.prompts.wvs SETTINGS (culture-unaware = base, "
                           "culture-aware = culture_prompt)",
            "metric": "wvs_alignment evaluate module: KL(P_human || Q_model) in nats with Q smoothed by eps=1e-6; "
                      "js_distance = scipy's jensenshannon (natural log); one_minus_js_distance = 1 - js_distance "
                      "(the field's convention, Cao et al. 2025); similarity = 1 - JS divergence (ours, "
                      "GlobalOpinionQA-style); accuracy = argmax Q equals the human mode",
            "mean": "over test cells (culture x item with human data); alignment_score: mean over cultures of the "
                    "per-culture score",
            "ci": f"paired percentile bootstrap, {config.bootstrap_resamples} draws of {bootstrap.unit} clusters "
                  f"(seed {config.bootstrap_seed})" + (", test cultures resampled too" if bootstrap.resample_cultures
                                                         else "") + ", seeds resampled too where there are several",
            "n_test_cells": len(cells), "n_clusters": bootstrap.n_clusters,
            "min_optimizer_steps": config.min_steps, "allow_short_training": config.allow_short_training,
        },
        "split": {"train_items": split.train_items, "test_items": split.test_items,
                  "train_cultures": split.train_cultures, "test_cultures": split.test_cultures},
        "conditions": conditions,
        "comparisons": comparisons,
        "specificity": specificity,
        "calibration": {setting: {"temperature": c.temperature, "alpha": c.alpha, "train_kl_before": c.train_kl_before,
                                  "train_kl_after": c.train_kl_after, "n_train_cells": c.n_train_cells}
                        for setting, c in calibrations.items()},
        "reliability": reliability,
    }


def _ci(entry: dict[str, Any], metric: str) -> str:
    value, ci = entry.get(metric), entry.get(f"{metric}_ci95") or [None, None]
    if value is None:
        return "–"
    if ci[0] is None:
        return format_cell(value)
    return f"{format_cell(value)} [{format_cell(ci[0])}, {format_cell(ci[1])}]"


def to_markdown(payload: dict[str, Any]) -> str:
    p, conds = payload["protocol"], payload["conditions"]
    lines = [f"# Experiment `{p['experiment']}`", "",
             f"Model `{p['model']}` ({p['dtype'] or 'default dtype'}), data `{p['data']}`; split "
             f"`{p['split_protocol']}` (seed {p['split_seed']}, {p['split_params']}): "
             f"{len(payload['split']['train_items'])} training / {len(payload['split']['test_items'])} test items, "
             f"{len(payload['split']['test_cultures'])} test cultures, {p['n_test_cells']} test cells, "
             f"{p['n_clusters']} bootstrap clusters.", "",
             f"Elicitation: {p['elicitation']}.", "", f"Metric: {p['metric']}.", "",
             f"Means: {p['mean']}. CIs: {p['ci']}.", "",
             "## All conditions (mean over test cells, 95 % CI)", "",
             "| condition | kind | seeds | KL ↓ | 1 - JS dist ↑ | 1 - JSD ↑ | mode acc ↑ | align ↑ |",
             "|---|---|---|---|---|---|---|---|"]
    order = sorted(conds, key=lambda n: (conds[n]["mean"].get("kl_divergence") is None,
                                          conds[n]["mean"].get("kl_divergence") or 0))
    for name in order:
        c = conds[name]
        mark = " (short training)" if c.get("info", {}).get("short") else ""
        lines.append(f"| {name}{mark} | {c['kind']} | {len(c['seeds'])} | " + " | ".join(
            _ci(c["mean"], m) for m in ("kl_divergence", "one_minus_js_distance", "similarity", "accuracy",
                                        "alignment_score")) + " |")
    shown = [n for n in ("base", "culture_prompt", "calibrated_base", "calibrated_culture_prompt", "uniform",
                         "position_prior", "loo_human_mean", "other_culture_humans") if n in conds]
    shown += [n for n, c in conds.items() if c["kind"] == "trained"]
    cultures = payload["split"]["test_cultures"]
    lines += ["", "## KL per culture (95 % CI)", "", "| culture | " + " | ".join(shown) + " |",
              "|---|" + "---|" * len(shown)]
    for culture in cultures:
        lines.append(f"| {culture} | " + " | ".join(_ci(conds[n]["per_culture"].get(culture, {}), "kl_divergence")
                                                    for n in shown) + " |")
    lines.append("| **mean** | " + " | ".join(_ci(conds[n]["mean"], "kl_divergence") for n in shown) + " |")
    lines += ["", "## Paired differences (condition - baseline, 95 % CI; negative KL = closer to the humans)", "",
              "| condition | baseline | ΔKL | Δ(1 - JS dist) | Δalign | cells |", "|---|---|---|---|---|---|"]
    for comp in payload["comparisons"]:
        d = {m: _ci({"x": comp[m]["difference"], "x_ci95": comp[m]["ci95"]}, "x")
             for m in ("kl_divergence", "one_minus_js_distance", "alignment_score")}
        lines.append(f"| {comp['condition']} | {comp['baseline']} | {d['kl_divergence']} | "
                     f"{d['one_minus_js_distance']} | {d['alignment_score']} | {comp['n_cells']} |")
    if payload["specificity"]:
        lines += ["", "## Culture specificity (mean over cells of [KL with the other cultures' condition - KL with "
                  "the own], nats, 95 % CI; the humans' own index gives the scale)", "",
                  "| condition | specificity index | minus its shuffled-label control |", "|---|---|---|"]
        for name, s in payload["specificity"].items():
            versus = (_ci({"x": s["minus_shuffled_labels"], "x_ci95": s["minus_shuffled_labels_ci95"]}, "x")
                      if "minus_shuffled_labels" in s else "")
            lines.append(f"| {name} | {_ci({'x': s['specificity_index'], 'x_ci95': s['specificity_index_ci95']}, 'x')}"
                         f" | {versus} |")
    corpora: dict[str, tuple[dict[str, Any], list[str]]] = {}  # folder -> (summary, the conditions trained on it)
    for name, c in conds.items():
        if c.get("info", {}).get("corpus"):
            corpora.setdefault(c["info"]["corpus"]["folder"], (c["info"]["corpus"], []))[1].append(name)
    if corpora:
        lines += ["", "## Recipe corpora (made by the experiment's model on the training cells; `data/` stays local)",
                  "", "| corpus folder | conditions | training records | pipeline counts | pipeline seconds |",
                  "|---|---|---|---|---|"]
        for folder, (corpus, names) in corpora.items():
            counts = ", ".join(f"{k} {v}" for k, v in corpus["counts"].items() if isinstance(v, int | float))
            lines.append(f"| `{folder}` | {', '.join(names)} | {corpus['counts'].get('train', '–')} | {counts} | "
                         f"{corpus['seconds']} |")
    if payload["calibration"]:
        lines += ["", "## Calibration (fitted on training cells only)", "",
                  "| setting | T | alpha | train KL before | train KL after | training cells |", "|---|---|---|---|---|---|"]
        for setting, c in payload["calibration"].items():
            lines.append(f"| {setting} | {c['temperature']:.3f} | {c['alpha']:.3f} | {c['train_kl_before']:.3f} | "
                         f"{c['train_kl_after']:.3f} | {c['n_train_cells']} |")
    if "timings_seconds" in payload:
        lines += ["", "Seconds per stage (this invocation): " + ", ".join(
            f"{k} {v}" for k, v in payload["timings_seconds"].items())]
    if payload.get("reused_from_earlier_run"):
        lines += ["", "Reused from an earlier invocation in this folder: "
                  + ", ".join(f"`{p}`" for p in payload["reused_from_earlier_run"])]
    return "\n".join(lines) + "\n"


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _plots(folder: Path, payload: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    conds, cultures = payload["conditions"], payload["split"]["test_cultures"]
    written = []
    models = [n for n, c in conds.items() if c["kind"] in ("model", "trained") and
              c["mean"].get("kl_divergence") is not None]
    lines_for = [n for n in ("uniform", "loo_human_mean", "other_culture_humans", "position_prior") if n in conds]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(cultures) + 3), 4.5))
    x = np.arange(len(cultures))
    for k, name in enumerate(models):
        per = [conds[name]["per_culture"].get(c, {}) for c in cultures]
        y = np.array([_or_nan(p.get("kl_divergence")) for p in per])
        lo = np.array([_or_nan((p.get("kl_divergence_ci95") or [None, None])[0]) for p in per])
        hi = np.array([_or_nan((p.get("kl_divergence_ci95") or [None, None])[1]) for p in per])
        off = (k - (len(models) - 1) / 2) * 0.8 / max(len(models), 1)
        ax.errorbar(x + off, y, yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)], fmt="o", ms=4,
                    capsize=2, label=name)
    for name, style, color in zip(lines_for, ("--", ":", "-.", (0, (1, 3))), ("0.2", "0.35", "0.5", "0.65")):
        y = [_or_nan(conds[name]["per_culture"].get(c, {}).get("kl_divergence")) for c in cultures]
        ax.step(np.r_[x - 0.5, x[-1] + 0.5], np.r_[y, y[-1]], where="post", linestyle=style, color=color,
                label=f"{name} (no model)")
    ax.set_xticks(x, cultures, rotation=60)
    ax.set_ylabel("KL(human ‖ model), nats")
    ax.set_title(f"{payload['protocol']['experiment']}: KL per test culture (95 % CI)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "kl_per_culture.png", dpi=120)
    plt.close(fig)
    written.append("kl_per_culture.png")
    for name, spec in payload["specificity"].items():
        matrix = spec["swap_matrix"]
        rows = list(matrix)
        cols = list(next(iter(matrix.values()))) if matrix else []
        data = np.array([[matrix[r][c] if matrix[r][c] is not None else np.nan for c in cols] for r in rows])
        fig, ax = plt.subplots(figsize=(0.4 * len(cols) + 3, 0.4 * len(rows) + 2))
        im = ax.imshow(data, cmap="viridis_r")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("humans of culture c'")
        ax.set_ylabel("condition for culture c")
        ax.set_title(f"{name}: culture-swap KL (index {format_cell(spec['specificity_index'])})", fontsize=9)
        fig.colorbar(im, ax=ax, label="mean KL, nats")
        fig.tight_layout()
        fig.savefig(folder / f"swap_{name}.png", dpi=110)
        plt.close(fig)
        written.append(f"swap_{name}.png")
    if payload["reliability"]:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
        for name, bins in payload["reliability"].items():
            ax.plot([b["predicted"] for b in bins], [b["human"] for b in bins], marker="o", ms=3, label=name)
        ax.set_xlabel("model probability of an option")
        ax.set_ylabel("human share of that option")
        ax.set_title("Reliability on the test cells")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "reliability.png", dpi=120)
        plt.close(fig)
        written.append("reliability.png")
    return written


def write_report(output_dir: Path, payload: dict[str, Any], cells: CellTable, results: dict) -> None:
    """Write ``results.json``, ``report.md`` and ``plots/`` into ``output_dir``."""
    save_json(output_dir / "results.json", payload)  # first: a plotting error must not lose the numbers
    (output_dir / "report.md").write_text(to_markdown(payload))
    payload["plots"] = _plots(output_dir / "plots", payload)
    save_json(output_dir / "results.json", payload)


def save_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(path)
