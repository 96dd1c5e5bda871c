"""The ``culture-align`` command line: ``eval``, ``eval-tasks``, ``generate <recipe>``, ``train <recipe>``,
``merge-shards`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .embedded_models import DEFAULT_MODEL

__all__ = ["main", "build_parser"]


# (command, recipe) -> "module:function" taking the recipe's own argv.
_RECIPE_ENTRIES = {
    ("generate", "clca"): "culture_align.scripts.clca:generate_main",
    ("train", "clca"): "culture_align.scripts.clca:train_main",
    ("train", "culturespa"): "culture_align.scripts.adapter_training:train_culturespa_main",
    ("train", "culturellm"): "culture_align.scripts.adapter_training:train_culturellm_main",
    ("train", "distribution"): "culture_align.scripts.adapter_training:train_distribution_main",
    ("generate", "culturellm"): "culture_align.scripts.culturellm:generate_main",
    ("generate", "culturespa"): "culture_align.scripts.culturespa:generate_main",
}
_RECIPES = sorted({recipe for _, recipe in _RECIPE_ENTRIES})


def _recipe_entry(recipe: str, command: str):
    import importlib

    target = _RECIPE_ENTRIES.get((command, recipe))
    if target is None:
        raise ValueError(f"`{command} {recipe}` does not exist: {command} supports "
                         f"{', '.join(r for c, r in _RECIPE_ENTRIES if c == command)}")
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _items(value: str) -> list[str]:
    """``Q1,Q2`` or a path to a JSON list / text file with one id per line."""
    path = Path(value)
    if path.is_file():
        text = path.read_text()
        return json.loads(text) if text.lstrip().startswith("[") else [ln.strip() for ln in text.splitlines()
                                                                        if ln.strip()]
    return _csv(value)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("human data (one of)")
    g.add_argument("--wvs", help="a WVS source: folder (questions + distributions), CSV, JSON or Parquet, or "
                   "hf://owner/name for a GlobalOpinionQA-shaped Hub dataset (a path without hf:// is always local)")
    g.add_argument("--distributions", help="per-country distributions JSON ({ISO3: {qid: {code: p}}})")
    g.add_argument("--wvs-csv", help="the official WVS Wave 7 respondent-level CSV (enables personas)")
    g.add_argument("--questions", help="questions JSON (default: the bundled catalog, or the one beside the data)")


def _load_data(args: argparse.Namespace):
    from .wvs import load_distributions, load_questions, load_wvs, load_wvs_csv

    questions = load_questions(args.questions) if args.questions else None
    if args.wvs_csv:
        return load_wvs_csv(args.wvs_csv, questions)
    if args.distributions:
        if questions is None:
            beside = Path(args.distributions).with_name("wvs_questions.json")
            questions = load_questions(beside) if beside.is_file() else None
        if questions is None:
            from .wvs import bundled_questions

            questions = bundled_questions()
        return load_distributions(args.distributions, questions)
    if args.wvs:
        return load_wvs(args.wvs, questions)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="culture-align", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="score a model against human WVS answer distributions")
    ev.add_argument("--model", default=DEFAULT_MODEL, help="HF id, local path or embedded alias")
    ev.add_argument("--adapter", help="a PEFT adapter folder or Hub id to load on the model")
    ev.add_argument("--adapters-dir", help="a folder of culture adapters (output of `train culturespa|culturellm`):"
                    " each culture is scored with its own adapter, switched without reloading the model")
    ev.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                    help="weights dtype (default: bfloat16 on GPU, float32 on CPU)")
    _add_data_args(ev)
    ev.add_argument("--cultures", type=_csv, help="ISO3 codes, comma-separated (default: all in the data)")
    ev.add_argument("--setting", type=_csv, default=["culture-unaware", "culture-aware"],
                    help="comma-separated: culture-unaware, culture-aware, persona, or template files")
    ev.add_argument("--mode", choices=["logprob", "sampling"], default="logprob")
    ev.add_argument("--items", type=_items, help="item ids to score (Q1,Q2 or a file)")
    ev.add_argument("--exclude-items", type=_items, default=[], help="held-out guard: ids never scored")
    ev.add_argument("--num-personas", type=int, default=50)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--samples", type=int, default=10, help="sampling mode: answers per prompt")
    ev.add_argument("--temperature", type=float, default=1.0)
    ev.add_argument("--top-p", type=float, default=1.0)
    ev.add_argument("--max-new-tokens", type=int, default=8)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--plot-item", help="item whose distributions are plotted")
    ev.add_argument("--out", default="eval-output", help="output folder")

    et = sub.add_parser("eval-tasks", help="macro-F1 on downstream culture classification tasks")
    et.add_argument("--tasks", required=True, help="a tasks.json index or a YAML file declaring the tasks")
    et.add_argument("--task", type=_csv, help="task names to run, comma-separated (default: all)")
    et.add_argument("--model", default=DEFAULT_MODEL, help="HF id, local path or embedded alias")
    et.add_argument("--adapter", action="append", default=[], metavar="[ISO3=]PATH",
                    help="a PEFT adapter for every task (PATH) or for one culture's tasks (ISO3=PATH); repeatable")
    et.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                    help="weights dtype (default: bfloat16 on GPU, float32 on CPU)")
    et.add_argument("--setting", type=_csv, default=["plain", "culture-aware"],
                    help="comma-separated: plain, culture-aware, or template files")
    et.add_argument("--max-examples", type=int, help="examples per task at most (default: all)")
    et.add_argument("--subsample", choices=["stratified", "random"], default="stratified")
    et.add_argument("--seed", type=int, default=0)
    et.add_argument("--batch-size", type=int, default=16)
    et.add_argument("--out", default="eval-tasks-output", help="output folder")

    for command, what in (("generate", "generate a recipe's training corpus"), ("train", "train an adapter")):
        recipes = sorted(r for c, r in _RECIPE_ENTRIES if c == command)
        recipe = sub.add_parser(command, help=f"{what} ({', '.join(recipes)}); see `culture-align {command} "
                                f"<recipe> --help`", add_help=False)
        recipe.add_argument("recipe", choices=recipes)
        recipe.add_argument("args", nargs=argparse.REMAINDER, help="the recipe's own flags (--config FILE, ...)")

    merge = sub.add_parser("merge-shards", help="join the run folders of a sharded `generate` (all N shards) into "
                           "one dataset: no row lost, none repeated")
    merge.add_argument("folders", nargs="+", help="one run folder per shard (with shard.json and dataset/)")
    merge.add_argument("--out", required=True, help="output folder: dataset/, stats.json, cache.jsonl "
                       "(not one of the shard folders; their parent is fine)")

    push = sub.add_parser("push", help="publish on the Hub; see `culture-align push dataset|adapter|metric --help`",
                          add_help=False)
    push.add_argument("what", choices=["dataset", "adapter", "metric"])
    push.add_argument("args", nargs=argparse.REMAINDER, help="its own arguments")
    build = sub.add_parser("build-dataset", help="build a corpus into a folder in Hub layout (Parquet + card); see "
                           "`culture-align build-dataset <builder> --help`", add_help=False)
    build.add_argument("builder", help="wvs, clca_dialogues, culturespa_qa, culturellm_augmented or "
                       "answer_distributions")
    build.add_argument("args", nargs=argparse.REMAINDER, help="its own arguments (--source, --out, ...)")

    ex = sub.add_parser("experiment", help="held-out splits, baselines, culture controls, seeds and CIs from one "
                        "YAML config (examples/experiments/)")
    ex.add_argument("--config", required=True, help="an experiment YAML (see culture_align.experiments.config)")
    ex.add_argument("--out", help="run folder (default: the config's output_dir, or runs/experiments/<name>)")
    ex.add_argument("--wvs", help="human data, overriding the config's `wvs`")
    ex.add_argument("--dry-run", action="store_true", help="print the plan (splits, sizes, optimizer steps) and stop")
    ex.add_argument("--conditions", type=_csv, help="run only these trained conditions (comma-separated names); "
                    "processes given disjoint sets can share one run folder, and a last run without the flag "
                    "reuses what they trained and reports every condition")

    demo = sub.add_parser("demo", help="the embedded model on the bundled catalog, unaware vs. aware")
    demo.add_argument("--model", default=DEFAULT_MODEL)
    _add_data_args(demo)
    demo.add_argument("--cultures", type=_csv, default=["USA", "CHN", "DEU"])
    demo.add_argument("--batch-size", type=int, default=16)
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--skip-clca", action="store_true", help="only the WVS part (no CLCA generation/training)")
    return parser


def _check_eval_args(args: argparse.Namespace) -> None:
    """Refuse, before any data or model is loaded, flags that leave nothing to score or cannot run: empty lists,
    counts below 1, prompt templates with unknown placeholders, missing adapters, an output folder that cannot be
    written."""
    from .prompts.wvs import get_setting
    from .scripts.checks import check_at_least, check_model_reference, check_output_dir

    for flag, value in (("--cultures", args.cultures), ("--setting", args.setting), ("--items", args.items)):
        if value is not None and not value:
            raise ValueError(f"{flag} lists nothing (got an empty or comma-only value): a run that scores "
                             "nothing is an error")
    check_at_least("--samples", args.samples)
    check_at_least("--batch-size", args.batch_size)
    check_at_least("--num-personas", args.num_personas)
    if args.adapter and args.adapters_dir:
        raise ValueError("use either --adapter or --adapters-dir")
    for setting in args.setting:
        get_setting(setting)  # a template file: read, and its placeholders checked
    if args.adapter:
        check_model_reference(args.adapter, "--adapter", marker="adapter_config.json")
    if args.adapters_dir and not Path(args.adapters_dir).is_dir():
        raise ValueError(f"--adapters-dir {args.adapters_dir}: no such folder")
    check_output_dir(args.out)


def _check_eval_tasks_args(args: argparse.Namespace) -> None:
    """Refuse, before the tasks or the model are loaded, flags that cannot run (see :func:`_check_eval_args`)."""
    from .prompts.tasks import get_task_setting
    from .scripts.checks import check_at_least, check_output_dir

    if not args.setting:
        raise ValueError("--setting lists nothing (got an empty or comma-only value)")
    check_at_least("--batch-size", args.batch_size)
    check_at_least("--max-examples", args.max_examples)
    for setting in args.setting:
        get_task_setting(setting)  # a template file: read, and its placeholders checked
    check_output_dir(args.out)


def _load_checked_model(name: str, **kwargs):
    """:func:`~culture_align.models.load_model_and_tokenizer` once the model reference is checked (a missing
    folder, or a Hub id not in the cache while offline, fail here in one line)."""
    from .models import load_model_and_tokenizer
    from .scripts.checks import check_model_reference

    check_model_reference(name, "--model")
    return load_model_and_tokenizer(name, **kwargs)


def _run_eval(args: argparse.Namespace) -> int:
    from .backends import GenerationParams
    from .evaluation import EvaluationConfig, WVSEvaluator, scored_items
    from .models import load_culture_adapters

    _check_eval_args(args)
    wvs = _load_data(args)
    if wvs is None:
        raise ValueError("eval needs human data: --wvs, --distributions or --wvs-csv")
    config = EvaluationConfig(
        settings=args.setting, mode=args.mode, items=args.items, exclude_items=args.exclude_items,
        batch_size=args.batch_size, num_personas=args.num_personas, seed=args.seed,
        sampling=GenerationParams(n=args.samples, temperature=args.temperature, top_p=args.top_p,
                                  max_new_tokens=args.max_new_tokens, seed=args.seed),
    )
    config.validate()
    if not args.adapters_dir or args.cultures is not None:  # otherwise the cultures come from the adapters
        scored_items(wvs, args.cultures, config)  # nothing to score: an error before the model is loaded
    model, tokenizer = _load_checked_model(args.model, adapter=args.adapter, dtype=args.dtype)
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


def _run_eval_tasks(args: argparse.Namespace) -> int:
    from .cultures import CULTURES
    from .evaluation import TaskEvaluationConfig, TaskEvaluator, attach_adapters, load_tasks
    from .scripts.checks import check_model_reference

    _check_eval_tasks_args(args)
    tasks = load_tasks(args.tasks, names=args.task)
    adapter_dirs = {}
    for spec in args.adapter:
        key, sep, folder = spec.partition("=")
        key, folder = (key.strip().upper(), folder) if sep and key.strip().upper() in CULTURES else ("*", spec)
        check_model_reference(folder, "--adapter", marker="adapter_config.json")
        adapter_dirs[key] = folder
    model, tokenizer = _load_checked_model(args.model, dtype=args.dtype)
    adapters = None
    if adapter_dirs:
        model, adapters = attach_adapters(model, adapter_dirs)
    config = TaskEvaluationConfig(settings=args.setting, max_examples=args.max_examples, subsample=args.subsample,
                                  seed=args.seed, batch_size=args.batch_size, adapters=adapters)
    name = args.model + "".join(f" + {k}={v}" for k, v in adapter_dirs.items())
    report = TaskEvaluator(model, tokenizer, tasks, config, model_name=name).evaluate(args.out)
    print(report.to_markdown())
    print(f"Written to {args.out} ({report.seconds:.1f} s)")
    return 0


def _run_experiment(args: argparse.Namespace) -> int:
    from .experiments import ExperimentConfig, ExperimentRunner

    config = ExperimentConfig.from_yaml(args.config)
    if args.wvs:
        config.wvs = args.wvs
    if args.conditions:
        config = config.only_conditions(args.conditions)
    runner = ExperimentRunner(config, output_dir=args.out)
    from .scripts.checks import check_output_dir

    check_output_dir(runner.output_dir, "the run folder (--out or output_dir)")  # before any model is loaded
    if args.dry_run:
        print("\n".join(runner.plan()))
        return 0
    payload = runner.run()
    print((runner.output_dir / "report.md").read_text())
    print(f"Written to {runner.output_dir} ({payload['timings_seconds']['total']:.0f} s)")
    return 0


def _check_demo_args(args: argparse.Namespace) -> None:
    """Refuse, before the model is loaded, demo flags that cannot run."""
    from .cultures import get_culture
    from .scripts.checks import check_at_least, check_model_reference, check_output_dir

    check_at_least("--batch-size", args.batch_size)
    if not args.cultures:
        raise ValueError("--cultures lists nothing (got an empty or comma-only value)")
    for culture in args.cultures:
        get_culture(culture)
    check_output_dir(args.out)
    check_model_reference(args.model, "--model")


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The failures a user's input causes (bad flags, configs, paths, models, network): reported in one line.

    ``OSError`` covers missing files, folders that are files, permissions, and the Hub's HTTP and offline errors;
    ``KeyError`` a missing key of a config or data file; ``yaml.YAMLError`` a config that is not YAML. Anything
    else is a bug and keeps its traceback.
    """
    import yaml
    from huggingface_hub.errors import EntryNotFoundError, HTTPError

    return ValueError, OSError, KeyError, ImportError, yaml.YAMLError, HTTPError, EntryNotFoundError


def _one_line(err: BaseException) -> str:
    """The cause of ``err`` on one line (a ``KeyError`` of a bare key names it as missing; a network failure says
    that it is one)."""
    from huggingface_hub.errors import HTTPError

    text = str(err) or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0] if " " in err.args[0].strip() else f"missing key {err.args[0]!r}"
    elif isinstance(err, HTTPError) and not isinstance(err, OSError):  # a transport error: no host, refused, ...
        text = f"network error ({type(err).__name__}): {text}"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``culture-align`` command; an expected failure prints ``culture-align <command>: error: <cause>``
    on one line and returns 2, a bug raises with its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except _expected_errors() as err:  # anything else is a bug and keeps its traceback
        print(f"culture-align {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` names."""
    if args.command == "eval":
        return _run_eval(args)
    if args.command == "eval-tasks":
        return _run_eval_tasks(args)
    if args.command in ("generate", "train"):
        return _recipe_entry(args.recipe, args.command)(args.args)
    if args.command == "experiment":
        return _run_experiment(args)
    if args.command == "merge-shards":
        return _run_merge_shards(args)
    if args.command == "push":
        from .scripts.hub import push_main

        return push_main([args.what, *args.args])
    if args.command == "build-dataset":
        from .scripts.hub import build_dataset_main

        return build_dataset_main([args.builder, *args.args])
    if args.command == "demo":
        return _run_demo(args)
    return 1


def _run_merge_shards(args: argparse.Namespace) -> int:
    """`merge-shards`: the output folder is checked before any shard is read."""
    from .recipes.sharding import merge_shards
    from .scripts.checks import check_output_dir

    check_output_dir(args.out)
    corpus = merge_shards(args.folders, output_dir=args.out)
    rows = ", ".join(f"{name}: {len(split)}" for name, split in corpus.items())
    print(f"merged {len(args.folders)} shards ({rows}) -> {Path(args.out) / 'dataset'}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    """`demo`: its flags are checked before the model is loaded."""
    from .demo import run_demo

    _check_demo_args(args)
    run_demo(args.out, model_name=args.model, cultures=tuple(args.cultures), wvs=_load_data(args),
             batch_size=args.batch_size, clca=not args.skip_clca)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
