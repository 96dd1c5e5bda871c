"""`culture-align eval` and `culture-align eval-tasks`.

Each command reads one flat YAML file (``--config FILE``; the TRL convention) whose keys are its options, and flags
override the file (``--help`` lists them all, with their help). ``eval``: :class:`EvalArguments` (the model, the
adapters, the output folder, sampling shortcuts), :class:`HumanDataArguments` and every field of
:class:`~culture_align.evaluation.EvaluationConfig` but ``adapters``::

    model: smollm2-135m-instruct
    wvs: path/to/wvs
    cultures: [USA, CHN]
    settings: [culture-unaware, culture-aware]     # --setting culture-unaware,culture-aware
    exclude_items: seed_ids.txt                    # ids, Q1,Q2 or a file
    mode: sampling
    sampling: {n: 5, temperature: 0.7}             # or --samples 5 --temperature 0.7
    out: runs/eval

``eval-tasks``: :class:`EvalTasksArguments` and every field of
:class:`~culture_align.evaluation.TaskEvaluationConfig` but ``adapters``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from ..embedded_models import DEFAULT_MODEL
from .config import parse_command, split_list

__all__ = ["eval_main", "eval_tasks_main", "parse_eval_args", "parse_eval_tasks_args", "EvalArguments",
           "EvalTasksArguments", "HumanDataArguments", "split_list", "item_list"]

Dtype = Literal["float32", "bfloat16", "float16"]
MODEL_HELP = "The model: a Hub id, a local folder or an embedded alias."
DTYPE_HELP = "Weights dtype (default: bfloat16 on GPU, float32 on CPU)."


def item_list(values: str | Sequence[str] | None) -> list[str] | None:
    """Item ids: ``Q1,Q2``, or a path to a JSON list or a text file with one id per line (each value either)."""
    if values is None:
        return None
    out: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        path = Path(value)
        if path.is_file():
            text = path.read_text()
            out += json.loads(text) if text.lstrip().startswith("[") else [line.strip() for line in
                                                                           text.splitlines() if line.strip()]
        else:
            out += split_list(value)
    return out


@dataclass
class HumanDataArguments:
    """The human answers (one of these)."""

    _argument_group_name: ClassVar[str] = "human data (one of)"

    wvs: str | None = field(default=None, metadata={
        "help": "A WVS source: folder (questions + distributions), CSV, JSON or Parquet, or hf://owner/name for a "
                "GlobalOpinionQA-shaped Hub dataset (a path without hf:// is always local)."})
    distributions: str | None = field(default=None, metadata={
        "help": "Per-country distributions JSON ({ISO3: {qid: {code: p}}})."})
    wvs_csv: str | None = field(default=None, metadata={
        "help": "The official WVS Wave 7 respondent-level CSV (enables personas)."})
    questions: str | None = field(default=None, metadata={
        "help": "Questions JSON (default: the bundled catalog, or the one beside the data)."})

    def load(self):
        """The :class:`~culture_align.wvs.WVSData` these name, or None when none is given."""
        from ..wvs import load_distributions, load_questions, load_wvs, load_wvs_csv

        questions = load_questions(self.questions) if self.questions else None
        if self.wvs_csv:
            return load_wvs_csv(self.wvs_csv, questions)
        if self.distributions:
            if questions is None:
                beside = Path(self.distributions).with_name("wvs_questions.json")
                questions = load_questions(beside) if beside.is_file() else None
            if questions is None:
                from ..wvs import bundled_questions

                questions = bundled_questions()
            return load_distributions(self.distributions, questions)
        if self.wvs:
            return load_wvs(self.wvs, questions)
        return None


@dataclass
class EvalArguments:
    """The model, its adapters, the cultures and the output folder of ``culture-align eval``; the sampling
    shortcuts set fields of ``sampling``."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": MODEL_HELP})
    adapter: str | None = field(default=None, metadata={
        "help": "A PEFT adapter folder or Hub id to load on the model."})
    adapters_dir: str | None = field(default=None, metadata={
        "help": "A folder of culture adapters (output of `train culturespa|culturellm`): each culture is scored "
                "with its own adapter, switched without reloading the model."})
    dtype: Dtype | None = field(default=None, metadata={"help": DTYPE_HELP})
    cultures: Sequence[str] | None = field(default=None, metadata={
        "help": "ISO3 codes, comma-separated (default: all in the data; with --adapters-dir, those with an "
                "adapter)."})
    samples: int | None = field(default=None, metadata={
        "help": "Sampling mode: answers per prompt (sampling.n; default 10)."})
    temperature: float | None = field(default=None, metadata={
        "help": "Sampling mode: temperature (sampling.temperature; default 1.0)."})
    top_p: float | None = field(default=None, metadata={"help": "Sampling mode: top-p (sampling.top_p; default 1.0)."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Sampling mode: new tokens per answer (sampling.max_new_tokens; default 8)."})
    plot_item: str | None = field(default=None, metadata={"help": "Item whose distributions are plotted."})
    out: str = field(default="eval-output", metadata={"help": "Output folder."})


def parse_eval_args(argv: Sequence[str] | None):
    """``(EvalArguments, HumanDataArguments, EvaluationConfig)`` from ``eval``'s command line: list values split,
    item files read, the sampling shortcuts and ``seed`` applied to ``sampling``. Raises ``ValueError`` naming the
    option for a count below 1."""
    from ..evaluation import EvaluationConfig
    from .checks import check_at_least

    args, data, config = parse_command((EvalArguments, HumanDataArguments, EvaluationConfig), argv,
                                       prog="culture-align eval", description=__doc__)
    args.cultures = split_list(args.cultures)
    config.settings = split_list(config.settings)
    config.items = item_list(config.items)
    config.exclude_items = item_list(config.exclude_items)
    check_at_least("--samples", args.samples)
    shortcuts = {"n": args.samples, "temperature": args.temperature, "top_p": args.top_p,
                 "max_new_tokens": args.max_new_tokens}
    if dataclasses.is_dataclass(config.sampling):
        config.sampling = dataclasses.replace(config.sampling, seed=config.seed,
                                              **{k: v for k, v in shortcuts.items() if v is not None})
    return args, data, config


def _check_eval_args(args: EvalArguments, config) -> None:
    """Refuse, before any data or model is loaded, options that leave nothing to score or cannot run: empty lists,
    counts below 1, prompt templates with unknown placeholders, missing adapters, an output folder that cannot be
    written."""
    from ..prompts.wvs import get_setting
    from .checks import check_at_least, check_model_reference, check_output_dir

    for flag, value in (("--cultures", args.cultures), ("--setting", config.settings), ("--items", config.items)):
        if value is not None and not value:
            raise ValueError(f"{flag} lists nothing (got an empty or comma-only value): a run that scores "
                             "nothing is an error")
    check_at_least("--batch-size", config.batch_size)
    check_at_least("--num-personas", config.num_personas)
    if args.adapter and args.adapters_dir:
        raise ValueError("use either --adapter or --adapters-dir")
    for setting in config.settings:
        get_setting(setting)  # a template file: read, and its placeholders checked
    if args.adapter:
        check_model_reference(args.adapter, "--adapter", marker="adapter_config.json")
    if args.adapters_dir and not Path(args.adapters_dir).is_dir():
        raise ValueError(f"--adapters-dir {args.adapters_dir}: no such folder")
    check_output_dir(args.out)


def load_checked_model(name: str, **kwargs):
    """:func:`~culture_align.models.load_model_and_tokenizer` once the model reference is checked (a missing
    folder, or a Hub id not in the cache while offline, fail here in one line)."""
    from ..models import load_model_and_tokenizer
    from .checks import check_model_reference

    check_model_reference(name, "--model")
    return load_model_and_tokenizer(name, **kwargs)


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Score a model against human WVS answer distributions."""
    from ..evaluation import WVSEvaluator, scored_items
    from ..models import load_culture_adapters

    args, data, config = parse_eval_args(argv)
    _check_eval_args(args, config)
    wvs = data.load()
    if wvs is None:
        raise ValueError("eval needs human data: --wvs, --distributions or --wvs-csv")
    config.validate()
    if not args.adapters_dir or args.cultures is not None:  # otherwise the cultures come from the adapters
        scored_items(wvs, args.cultures, config)  # nothing to score: an error before the model is loaded
    model, tokenizer = load_checked_model(args.model, adapter=args.adapter, dtype=args.dtype)
    if args.adapters_dir:
        model, config.adapters = load_culture_adapters(model, args.adapters_dir, cultures=args.cultures)
        if args.cultures is None and "*" not in config.adapters:  # default: the cultures that have an adapter
            args.cultures = sorted(c for c in config.adapters if c in wvs.cultures)
            if not args.cultures:
                raise ValueError(f"no culture has both an adapter in {args.adapters_dir} and human data in "
                                 f"{wvs.source}")
    name = args.model + (f" + {args.adapter or args.adapters_dir}" if args.adapter or args.adapters_dir else "")
    report = WVSEvaluator(model, tokenizer, wvs, cultures=args.cultures, config=config,
                          model_name=name).evaluate(args.out, plot_item=args.plot_item)
    print(report.to_markdown())
    print(f"Written to {args.out} ({report.seconds:.1f} s)")
    return 0


@dataclass
class EvalTasksArguments:
    """The tasks, the model, its adapters and the output folder of ``culture-align eval-tasks``."""

    tasks: str = field(metadata={"help": "A tasks.json index or a YAML file declaring the tasks (required)."})
    task: Sequence[str] | None = field(default=None, metadata={
        "help": "Task names to run, comma-separated (default: all)."})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": MODEL_HELP})
    adapter: Sequence[str] = field(default=(), metadata={
        "metavar": "[ISO3=]PATH",
        "help": "A PEFT adapter for every task (PATH) or for one culture's tasks (ISO3=PATH); repeatable."})
    dtype: Dtype | None = field(default=None, metadata={"help": DTYPE_HELP})
    out: str = field(default="eval-tasks-output", metadata={"help": "Output folder."})


def parse_eval_tasks_args(argv: Sequence[str] | None):
    """``(EvalTasksArguments, TaskEvaluationConfig)`` from ``eval-tasks``' command line, list values split (the
    adapters are not: a path may hold a comma)."""
    from ..evaluation import TaskEvaluationConfig

    args, config = parse_command((EvalTasksArguments, TaskEvaluationConfig), argv, prog="culture-align eval-tasks",
                                 description=__doc__)
    args.task = split_list(args.task)
    args.adapter = [args.adapter] if isinstance(args.adapter, str) else list(args.adapter)
    config.settings = split_list(config.settings)
    return args, config


def _check_eval_tasks_args(args: EvalTasksArguments, config) -> None:
    """Refuse, before the tasks or the model are loaded, options that cannot run (see :func:`_check_eval_args`)."""
    from ..prompts.tasks import get_task_setting
    from .checks import check_at_least, check_output_dir

    if not config.settings:
        raise ValueError("--setting lists nothing (got an empty or comma-only value)")
    check_at_least("--batch-size", config.batch_size)
    check_at_least("--max-examples", config.max_examples)
    for setting in config.settings:
        get_task_setting(setting)  # a template file: read, and its placeholders checked
    check_output_dir(args.out)


def eval_tasks_main(argv: Sequence[str] | None = None) -> int:
    """Macro-F1 on downstream culture classification tasks."""
    from ..cultures import CULTURES
    from ..evaluation import TaskEvaluator, attach_adapters, load_tasks
    from .checks import check_model_reference

    args, config = parse_eval_tasks_args(argv)
    _check_eval_tasks_args(args, config)
    tasks = load_tasks(args.tasks, names=args.task)
    adapter_dirs = {}
    for spec in args.adapter:
        key, sep, folder = spec.partition("=")
        key, folder = (key.strip().upper(), folder) if sep and key.strip().upper() in CULTURES else ("*", spec)
        check_model_reference(folder, "--adapter", marker="adapter_config.json")
        adapter_dirs[key] = folder
    model, tokenizer = load_checked_model(args.model, dtype=args.dtype)
    if adapter_dirs:
        model, config.adapters = attach_adapters(model, adapter_dirs)
    name = args.model + "".join(f" + {k}={v}" for k, v in adapter_dirs.items())
    report = TaskEvaluator(model, tokenizer, tasks, config, model_name=name).evaluate(args.out)
    print(report.to_markdown())
    print(f"Written to {args.out} ({report.seconds:.1f} s)")
    return 0
