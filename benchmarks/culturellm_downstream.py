"""CultureLLM downstream benchmark: macro-F1 on the nine culture classification tasks.

On the tasks of ../shared/data/culture_tasks (one per culture and language: offensive language, hate speech,
gender bias, aggression), the embedded model answers with the number of a label and predicts the label with
the highest log-probability (culture_align.evaluation.TaskEvaluator). Runs:
  base / plain           the model as is, no culture in the prompt;
  base / culture-aware   the task's culture in the system prompt;
  specific               with --adapters-dir DIR (a CultureLLM specific-mode output, one adapter folder per
                         culture, DIR/<ISO3>/): each task with the adapter of its culture, plain prompt; a task
                         culture without its own folder uses --adapter-alias (default JOR=IRQ, MEX=ARG: the
                         Arabic task's Jordan can use an Iraq adapter, the Mexican Spanish one an Argentina
                         adapter), otherwise it is reported as having no adapter;
  one                    with --one-adapter DIR (a CultureLLM-One adapter over all cultures), plain prompt.
Every run scores the same stratified subsample of --max-examples examples per task (seed 0). Each cell gives
macro-F1 of the plain argmax / of the debiased argmax (each label's log-probability centred on its mean over
the task's examples: removes the small model's constant preference for one answer number, no gold used).

Writes benchmarks/results/culturellm_downstream.json and prints a markdown table. Reproduce with:
    nice -n 19 .venv/bin/python benchmarks/culturellm_downstream.py --max-examples 200 \\
        [--adapters-dir culturellm-out/adapters --one-adapter culturellm-out/adapters/one]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from culture_align.cultures import get_culture
from culture_align.evaluation import (
    TaskEvaluationConfig,
    TaskEvaluator,
    TaskReport,
    attach_adapters,
    load_tasks,
)
from culture_align.evaluation.report import format_cell
from culture_align.models import DEFAULT_MODEL, load_model_and_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import device_description  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _device() -> str:
    """The GPU when there is one, else the CPU as the other benchmarks describe it."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return device_description()


def _aliases(value: str) -> dict[str, str]:
    """``"JOR=IRQ,MEX=ARG"`` -> {"JOR": "IRQ", "MEX": "ARG"} (ISO3 codes checked against the registry)."""
    pairs = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        task_culture, sep, adapter_culture = item.partition("=")
        if not sep:
            raise SystemExit(f"--adapter-alias: expected TASK_ISO3=ADAPTER_ISO3, got {item!r}")
        pairs[get_culture(task_culture).iso3] = get_culture(adapter_culture).iso3
    return pairs


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def find_specific_adapters(adapters_dir: Path, cultures: list[str], aliases: dict[str, str]
                           ) -> tuple[dict[str, Path], dict[str, str]]:
    """For each task culture, its adapter folder (own or through an alias).

    Returns:
        ``({task ISO3: folder}, {task ISO3: adapter ISO3 used})``; cultures without a folder are absent.
    """
    folders, used = {}, {}
    for culture in cultures:
        for candidate in (culture, aliases.get(culture)):
            if candidate and _is_adapter(adapters_dir / candidate):
                folders[culture], used[culture] = adapters_dir / candidate, candidate
                break
    return folders, used


def _run(name: str, model, tok, tasks, setting: str, args, adapters: dict[str, str] | None,
         save_dir: Path | None) -> tuple[TaskReport, float]:
    config = TaskEvaluationConfig(settings=[setting], max_examples=args.max_examples, subsample="stratified",
                                  seed=args.seed, batch_size=args.batch_size, adapters=adapters)
    t0 = time.perf_counter()
    report = TaskEvaluator(model, tok, tasks, config, model_name=f"{args.model} ({name})").evaluate(
        save_dir / name if save_dir else None)
    seconds = time.perf_counter() - t0
    print(f"{name}: mean macro-F1 {report.mean_macro_f1(setting):.3f} over {len(tasks)} tasks, {seconds:.0f} s",
          file=sys.stderr)
    return report, seconds


def _missing_note(run: dict[str, Any], task: str) -> str:
    return "no adapter" if task in run.get("tasks_without_adapter", []) else "–"


def markdown_table(result: dict[str, Any]) -> str:
    """Macro-F1 per task and run, as ``argmax / debiased`` (label prior removed); means over the run's tasks."""
    runs = list(result["runs"])
    lines = ["| task | culture | lang | n | majority | " + " | ".join(runs) + " |",
             "|---|---|---|---|---|" + "---|" * len(runs)]
    for task in result["tasks"]:
        cells = []
        for run in runs:
            row = result["runs"][run]["tasks"].get(task["task"])
            cells.append(f"{format_cell(row['macro_f1'])} / {format_cell(row['debiased_macro_f1'])}" if row
                         else _missing_note(result["runs"][run], task["task"]))
        lines.append(f"| {task['task']} | {task['culture']} | {task['language']} | {task['n_scored']} | "
                     f"{format_cell(task['majority_macro_f1'])} | " + " | ".join(cells) + " |")
    means = [f"{format_cell(result['runs'][r]['mean_macro_f1'])} / {format_cell(result['runs'][r]['mean_debiased_macro_f1'])} "
             f"({result['runs'][r]['n_tasks']})" for r in runs]
    lines.append("| **mean macro-F1 (tasks)** | | | | "
                 f"{format_cell(result['majority_mean_macro_f1'])} | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks-dir", default=str(REPO / "../shared/data/culture_tasks"),
                        help="folder with tasks.json and the task files (default: ../shared/data/culture_tasks)")
    parser.add_argument("--task", help="comma-separated task names (default: all)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-examples", type=int, default=200, help="stratified subsample per task (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--adapters-dir", type=Path, help="CultureLLM specific-mode adapters: DIR/<ISO3>/")
    parser.add_argument("--one-adapter", type=Path, help="the CultureLLM-One adapter folder")
    parser.add_argument("--adapter-alias", type=_aliases, default="JOR=IRQ,MEX=ARG",
                        help="TASK_ISO3=ADAPTER_ISO3 pairs used when a task culture has no adapter of its own")
    parser.add_argument("--adapter-setting", default="plain", help="prompt setting of the adapter runs")
    parser.add_argument("--save-reports", type=Path, help="also write each run's full report (predictions) here")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/culturellm_downstream.json"))
    args = parser.parse_args()
    if args.max_examples == 0:
        args.max_examples = None

    start = time.perf_counter()
    tasks = load_tasks(Path(args.tasks_dir) / "tasks.json",
                       names=[t.strip() for t in args.task.split(",")] if args.task else None)
    model, tok = load_model_and_tokenizer(args.model, dtype=args.dtype)
    reports: dict[str, tuple[TaskReport, float, str]] = {}
    for setting in ("plain", "culture-aware"):
        report, seconds = _run(f"base/{setting}", model, tok, tasks, setting, args, None, args.save_reports)
        reports[f"base/{setting}"] = (report, seconds, setting)

    extra: dict[str, dict[str, Any]] = {}
    if args.adapters_dir is not None:
        folders, used = find_specific_adapters(args.adapters_dir, sorted({t.culture for t in tasks}),
                                               args.adapter_alias)
        covered = [t for t in tasks if t.culture in folders]
        extra["specific"] = dict(adapters={c: str(f) for c, f in folders.items()}, adapter_culture=used,
                                 tasks_without_adapter=[t.name for t in tasks if t.culture not in folders])
        if covered:
            model, adapters = attach_adapters(model, folders)
            report, seconds = _run("specific", model, tok, covered, args.adapter_setting, args, adapters,
                                   args.save_reports)
            reports["specific"] = (report, seconds, args.adapter_setting)
    if args.one_adapter is not None:
        model, adapters = attach_adapters(model, {"*": args.one_adapter})
        report, seconds = _run("one", model, tok, tasks, args.adapter_setting, args, adapters, args.save_reports)
        reports["one"] = (report, seconds, args.adapter_setting)
        extra["one"] = dict(adapters={"*": str(args.one_adapter)})

    first = reports["base/plain"][0]
    task_rows = []
    for task in tasks:
        row = first.row(task.name, "plain")
        task_rows.append(dict(task=task.name, culture=task.culture, language=task.language,
                              phenomenon=task.phenomenon, labels=task.labels, n_total=row["sample"]["n_total"],
                              n_scored=row["n"], gold_counts=row["gold_counts"],
                              majority_macro_f1=row["majority_macro_f1"]))
    runs = {}
    for name, (report, seconds, setting) in reports.items():
        per_task = {r["task"]: {k: r[k] for k in ("macro_f1", "accuracy", "f1_per_label", "predicted_counts",
                                                  "confusion", "debiased_macro_f1", "debiased_predicted_counts",
                                                  "adapter")} for r in report.summary}
        same_tasks_base = [first.row(t, "plain")["macro_f1"] for t in per_task]
        runs[name] = dict(setting=setting, seconds=seconds, n_tasks=len(per_task),
                          examples_per_s=sum(r["n"] for r in report.summary) / seconds,
                          mean_macro_f1=report.mean_macro_f1(setting),
                          mean_debiased_macro_f1=report.mean_debiased_macro_f1(setting),
                          base_plain_mean_macro_f1_same_tasks=sum(same_tasks_base) / len(same_tasks_base),
                          tasks=per_task, **extra.get(name, {}))
    result = dict(
        model=args.model, dtype=args.dtype, tasks_dir=str(Path(args.tasks_dir).resolve()),
        max_examples=args.max_examples, subsample="stratified", seed=args.seed, batch_size=args.batch_size,
        answer_format="the label's number (1-based, in the task's label order); prediction = argmax of the "
                      "exact log-probabilities of the label numbers",
        metric="macro-F1 over the task's label set (scikit-learn f1_score, zero_division=0); mean over tasks "
               "unweighted; debiased_*: argmax of label log-probs centred on their mean over the task's examples",
        tasks=task_rows,
        majority_mean_macro_f1=sum(t["majority_macro_f1"] for t in task_rows) / len(task_rows),
        runs=runs,
        device=_device(),
        command=" ".join(["python"] + sys.argv),
        seconds=time.perf_counter() - start,
    )
    table = markdown_table(result)
    result["markdown"] = table
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table)
    print(f"written to {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
