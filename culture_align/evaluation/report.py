"""`WVSReport`: evaluation results as tables, JSON and PNG plots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

__all__ = ["WVSReport", "plot_kl_bars", "plot_item_distributions"]

_METRICS = ("kl_divergence", "similarity", "js_distance", "accuracy", "alignment_score")
_HEADERS = {"kl_divergence": "KL(human‖model) ↓", "similarity": "1-JSD ↑", "js_distance": "JS dist ↓",
            "accuracy": "mode acc ↑", "alignment_score": "align score ↑"}


def format_cell(value: Any, digits: int = 3) -> str:
    """A markdown table cell: ``"–"`` for None/NaN, a float with ``digits`` decimals (one from 10 up), else
    ``str(value)``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


@dataclass
class WVSReport:
    """What :meth:`WVSEvaluator.evaluate` returns.

    Attributes:
        items: One row per (setting, culture, item): codes, model and human distributions, per-item KL and
            JS distance, the model's argmax code and the human modal code (a ``datasets.Dataset``).
        summary: One dict per (setting, culture) plus a ``culture="mean"`` row per setting, with
            ``kl_divergence``, ``js_distance``, ``similarity`` (1 - JSD), ``accuracy`` (argmax = human mode),
            ``alignment_score`` (0-100), ``n_items`` and skip counts.
        references: The same scores on the same items for reference answers: ``"uniform"`` (the uniform
            distribution; its accuracy and alignment score are the means over uniformly random answers) and
            ``"other cultures' humans (mean)"`` (each other loaded culture's human data used as the
            prediction, averaged; the pairs are kept under ``pairs``).
    """

    items: datasets.Dataset
    summary: list[dict[str, Any]]
    references: list[dict[str, Any]]
    model_name: str = ""
    data_source: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cultures: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, setting: str, culture: str = "mean") -> dict[str, Any]:
        """The summary row of one setting and culture (``"mean"``: the average over cultures)."""
        for r in self.summary:
            if r["setting"] == setting and r["culture"] == culture:
                return r
        raise KeyError(f"no summary row for setting={setting!r}, culture={culture!r}")

    def to_markdown(self) -> str:
        """A table: one line per culture, columns per metric and setting, with the reference rows."""
        lines = [f"Model: `{self.model_name}` · data: `{self.data_source}` · "
                 f"mode: {self.config.get('mode', '?')}", ""]
        head = "| culture | setting | items | " + " | ".join(_HEADERS[m] for m in _METRICS) + " |"
        lines += [head, "|" + "---|" * (3 + len(_METRICS))]
        for culture in self.cultures + ["mean"]:
            for r in self.summary:
                if r["culture"] == culture:
                    lines.append(f"| {culture} | {r['setting']} | {r['n_items']} | "
                                 + " | ".join(format_cell(r.get(m)) for m in _METRICS) + " |")
            refs = [r for r in self.references if r["culture"] == culture]
            for r in refs:
                lines.append(f"| {culture} | *{r['reference']}* | {r['n_items']} | "
                             + " | ".join(format_cell(r.get(m)) for m in _METRICS) + " |")
        if self.references:
            means = {}
            for r in self.references:
                means.setdefault(r["reference"], []).append(r)
            for name, rs in means.items():
                vals = [float(np.nanmean([x[m] for x in rs])) for m in _METRICS]
                lines.append(f"| mean | *{name}* | {sum(x['n_items'] for x in rs)} | "
                             + " | ".join(format_cell(v) for v in vals) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return dict(model=self.model_name, data_source=self.data_source, cultures=self.cultures,
                    settings=self.settings, config=self.config, seconds=self.seconds, summary=self.summary,
                    references=self.references)

    def save(self, output_dir: str | Path, plot_item: str | None = None) -> Path:
        """Write ``results.json``, ``items.parquet``, ``summary.md`` and ``plots/*.png`` to ``output_dir``."""
        out = Path(output_dir)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.to_dict(), indent=2, default=json_default) + "\n")
        self.items.to_parquet(str(out / "items.parquet"))
        (out / "summary.md").write_text(self.to_markdown())
        plot_kl_bars(self, out / "plots" / "kl_by_culture.png")
        if len(self.items):
            qid = plot_item or self.items[0]["qid"]
            plot_item_distributions(self, qid, out / "plots" / f"item_{qid}.png")
        return out


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` of the reports: numpy scalars and arrays as Python values, anything else as
    its ``str``."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def plot_kl_bars(report: WVSReport, path: str | Path) -> None:
    """Grouped bars: KL(human‖model) per culture for each setting, beside the reference rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cultures = report.cultures
    series: list[tuple[str, list[float], dict[str, Any]]] = []
    for setting in report.settings:
        vals = [next((r["kl_divergence"] for r in report.summary
                      if r["setting"] == setting and r["culture"] == c), np.nan) for c in cultures]
        series.append((setting, vals, {}))
    for name in dict.fromkeys(r["reference"] for r in report.references):
        vals = [next((r["kl_divergence"] for r in report.references
                      if r["reference"] == name and r["culture"] == c), np.nan) for c in cultures]
        series.append((name, vals, {"hatch": "//", "alpha": 0.6}))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(cultures) * max(len(series), 1) / 2 + 2), 4))
    x = np.arange(len(cultures))
    for k, (name, vals, style) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name, **style)
    ax.set_xticks(x, cultures)
    ax.set_ylabel("KL(human ‖ model), nats (lower is better)")
    ax.set_title(f"WVS alignment of {report.model_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_item_distributions(report: WVSReport, qid: str, path: str | Path) -> None:
    """For one item: the human distribution and each setting's model distribution, one panel per culture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.items if r["qid"] == qid]
    if not rows:
        raise ValueError(f"item {qid} was not scored")
    cultures = list(dict.fromkeys(r["culture"] for r in rows))
    cols = min(3, len(cultures))
    nrows = math.ceil(len(cultures) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, culture in zip(axes.flat, cultures):
        sub = [r for r in rows if r["culture"] == culture]
        codes = sub[0]["codes"]
        series = [("human", sub[0]["human_probs"])] + [(r["setting"], r["model_probs"]) for r in sub]
        width = 0.8 / len(series)
        x = np.arange(len(codes))
        for k, (name, probs) in enumerate(series):
            ax.bar(x + (k - (len(series) - 1) / 2) * width, probs, width, label=name)
        ax.set_xticks(x, [str(c) for c in codes])
        ax.set_title(f"{qid} · {culture}")
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(cultures):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("answer code")
    fig.supylabel("probability")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
