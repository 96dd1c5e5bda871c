"""The README's verdict table, built from experiment runs' ``results.json`` (nothing is typed in by hand).

For each trained condition of each run: its held-out KL with the 95 % CI, and the paired KL difference (condition
minus reference, negative = the condition is closer to the humans) against the calibrated base, the position
prior, the strongest no-model baseline, the culture prompt and its own shuffled-label control, each with its CI and a verdict in words
("beats" only when the whole CI is below zero); its specificity index against the shuffled control's. A culture
split adds KL / ``loo_human_mean`` KL on the same cells.

    python benchmarks/verdict_table.py benchmarks/results/experiments/recipes-held-out-items \
        benchmarks/results/experiments/recipes-held-out-cultures --readme README.md

``--readme`` rewrites the block between ``<!-- verdicts:start -->`` and ``<!-- verdicts:end -->`` of that file;
without it the table goes to standard output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: The no-model baselines a trained condition must beat to show it read the question (lowest KL first wins).
NO_MODEL = ("uniform", "position_prior", "other_culture_humans", "loo_human_mean")


def _comparison(payload: dict[str, Any], condition: str, baseline: str) -> dict[str, Any] | None:
    for row in payload["comparisons"]:
        if row["condition"] == condition and row["baseline"] == baseline:
            return row["kl_divergence"]
    return None


def _verdict(diff: dict[str, Any] | None, name: str) -> str:
    if diff is None:
        return "–"
    lo, hi = diff["ci95"]
    words = "**beats**" if hi < 0 else ("worse than" if lo > 0 else "no different from")
    return f"{words} {name}: {diff['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _strongest_no_model(payload: dict[str, Any]) -> str:
    """The no-model baseline with the lowest mean KL in this run (``loo_human_mean`` excluded in an item split:
    it is the humans' own item average, the ceiling rather than a baseline)."""
    conds = payload["conditions"]
    culture_split = payload["protocol"]["split_protocol"] == "held_out_cultures"
    names = [n for n in NO_MODEL if n in conds and (culture_split or n != "loo_human_mean")]
    return min(names, key=lambda n: conds[n]["mean"]["kl_divergence"])


def verdict_rows(run: Path) -> list[str]:
    """Markdown table rows for every trained (non-control) condition of the run in ``run``."""
    payload = json.loads((run / "results.json").read_text())
    conds = payload["conditions"]
    strongest = _strongest_no_model(payload)
    culture_split = payload["protocol"]["split_protocol"] == "held_out_cultures"
    rows = []
    for name, row in conds.items():
        if row["kind"] != "trained" or row["info"].get("shuffled_labels"):
            continue
        mean = row["mean"]
        lo, hi = mean["kl_divergence_ci95"]
        spec = payload["specificity"].get(name, {})
        spec_text = (f"{spec['specificity_index']:.4f} [{spec['specificity_index_ci95'][0]:.4f}, "
                     f"{spec['specificity_index_ci95'][1]:.4f}]") if spec else "–"
        if "minus_shuffled_labels" in spec:
            a, b = spec["minus_shuffled_labels_ci95"]
            spec_text += f"; minus shuffled {spec['minus_shuffled_labels']:+.4f} [{a:+.4f}, {b:+.4f}]"
        ratio = ""
        if culture_split and "loo_human_mean" in conds:
            ratio = f" (KL / loo_human_mean = {mean['kl_divergence'] / conds['loo_human_mean']['mean']['kl_divergence']:.2f})"
        steps = sorted({r.get("optimizer_steps") for r in row["info"]["runs"]})
        rows.append(" | ".join([
            f"| {run.name}", f"`{name}` ({row['info']['recipe']}, {len(row['seeds'])} seeds x {steps[0]} steps)",
            f"{mean['kl_divergence']:.3f} [{lo:.3f}, {hi:.3f}]{ratio}",
            _verdict(_comparison(payload, name, "calibrated_base"), "calibrated base"),
            _verdict(_comparison(payload, name, "position_prior"), "position prior"),
            _verdict(_comparison(payload, name, strongest), strongest),
            _verdict(_comparison(payload, name, "culture_prompt"), "culture prompt"),
            _verdict(_comparison(payload, name, f"{name}_shuffled_labels"), "its shuffled labels"),
            spec_text + " |"]))
    return rows


def baseline_line(run: Path) -> str:
    """One line with the run's no-model and untrained-model KLs (mean [CI]), the reference every row needs."""
    payload = json.loads((run / "results.json").read_text())
    conds = payload["conditions"]
    parts = []
    for name in ("uniform", "position_prior", "other_culture_humans", "loo_human_mean", "base", "culture_prompt",
                 "calibrated_base"):
        if name in conds:
            m = conds[name]["mean"]
            parts.append(f"{name} {m['kl_divergence']:.3f} [{m['kl_divergence_ci95'][0]:.3f}, "
                         f"{m['kl_divergence_ci95'][1]:.3f}]")
    humans = payload["specificity"].get("humans", {}).get("specificity_index")
    tail = f"; the humans' own specificity index {humans:.3f}" if humans is not None else ""
    split, protocol = payload["split"], payload["protocol"]
    where = (f"{protocol['split_protocol']}: {len(split['test_items'])} test items x {len(split['test_cultures'])} "
             f"test cultures, {protocol['n_test_cells']} cells, {protocol['n_clusters']} bootstrap clusters")
    return f"- `{run.name}` ({where}): " + ", ".join(parts) + tail


def render(runs: list[Path]) -> str:
    """The verdict table and the baseline lines of ``runs``, as Markdown."""
    lines = ["| run | condition | held-out KL [95 % CI] | vs calibrated base | vs position prior | "
             "vs strongest no-model baseline | vs culture prompt | vs its shuffled-label control | specificity index |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines += verdict_rows(run)
    lines += ["", "Baselines on the same cells (KL, mean [95 % CI]):", ""]
    lines += [baseline_line(run) for run in runs]
    return "\n".join(lines)


def replace_block(readme: Path, text: str, start: str = "<!-- verdicts:start -->",
                  end: str = "<!-- verdicts:end -->") -> None:
    """Put ``text`` between the ``start`` and ``end`` markers of ``readme``.

    Raises:
        ValueError: naming the file, when a marker is missing.
    """
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme}: needs the markers {start} and {end}")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="experiment run folders (with results.json)")
    parser.add_argument("--readme", type=Path, help="rewrite this file's verdict block instead of printing")
    args = parser.parse_args()
    text = render(args.runs)
    if args.readme:
        replace_block(args.readme, text)
    else:
        print(text)


if __name__ == "__main__":
    main()
