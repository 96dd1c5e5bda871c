"""`culture-align build-dataset` and `culture-align push dataset|adapter|metric`.

::

    culture-align build-dataset clca_dialogues --source runs/clca-data --out hub/clca-dialogues [--overwrite]
    culture-align push dataset clca_dialogues --source runs/clca-data me/clca-dialogues [--local-dir DIR]
    culture-align push dataset wvs --source WVS_Cross-National_Wave_7.csv me/wvs-private      # private by default
    culture-align push adapter runs/clca-adapter me/clca-qwen --recipe clca --report eval-output
    culture-align push adapter runs/spa-specific me/spa-qwen --per-culture-repos     # <ISO3>/ subfolders
    culture-align push metric me/wvs_alignment

Each command reads a flat YAML file of its options (``--config FILE``; positional arguments are given on the
command line), and flags override it. Its list options take one value per flag, comma-separated (``--configs
train,test``) or repeated (``--dataset a --dataset b``).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..builders import BUILDER_NAMES
from .config import parse_command, split_list

__all__ = ["build_dataset_main", "push_main", "parse_push_args", "BuildArguments", "BuildOutputArguments",
           "PushDatasetArguments", "PushAdapterArguments", "PushMetricArguments", "PushOptions"]


@dataclass
class BuildArguments:
    """What ``build-dataset`` and ``push dataset`` build."""

    builder: str = field(metadata={"positional": True, "choices": BUILDER_NAMES, "help": "The corpus to build."})
    source: str = field(metadata={
        "help": "The recipe run folder (<run>/dataset + stats.json), or for wvs any WVS source (required)."})
    configs: Sequence[str] | None = field(default=None, metadata={
        "help": "Configs to build, comma-separated (default: all)."})
    questions: str | None = field(default=None, metadata={
        "help": "wvs, answer_distributions: a questions file for sources without their own."})
    cultures: str | None = field(default=None, metadata={
        "help": "wvs only: ISO3 codes to keep, comma-separated."})
    split: str | None = field(default=None, metadata={
        "help": "answer_distributions only: an experiment's split.json (training cells only)."})
    setting: str | None = field(default=None, metadata={
        "help": "answer_distributions only: the prompt setting (default culture-aware)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Write into a non-empty output folder that is not an earlier build (README.md and the Parquet "
                "files are written over files of the same name; nothing else is removed)."})


@dataclass
class BuildOutputArguments:
    """Where ``build-dataset`` writes."""

    out: str = field(metadata={"help": "Output folder (required)."})


@dataclass
class PushOptions:
    """The options every ``push`` shares."""

    private: bool | None = field(default=None, metadata={
        "help": "Create the repo(s) private (default: the Hub's default; a wvs dataset is private unless "
                "--public)."})
    commit_message: str | None = field(default=None, metadata={
        "help": "Commit message (default: says what is uploaded)."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})


@dataclass
class PushDatasetArguments:
    """Where ``push dataset`` uploads (after :class:`BuildArguments`)."""

    repo_id: str = field(metadata={"positional": True, "help": "Dataset repo, e.g. me/clca-dialogues."})
    local_dir: str | None = field(default=None, metadata={
        "help": "Keep the built folder here (default: a temporary folder)."})
    public: bool = field(default=False, metadata={
        "help": "Create the repo public (wvs is private unless --public: check the WVS conditions of use first)."})


@dataclass
class PushAdapterArguments:
    """What ``push adapter`` uploads."""

    folder: str = field(metadata={
        "positional": True, "help": "An adapter folder, or a folder of <ISO3>/ adapters (specific mode)."})
    repo_id: str = field(metadata={
        "positional": True, "help": "Model repo; with --per-culture-repos a prefix or a template with {culture}."})
    per_culture_repos: bool = field(default=False, metadata={
        "help": "Specific mode: one repo per culture instead of one repo with a subfolder each."})
    recipe: str | None = field(default=None, metadata={
        "help": "The recipe: clca, culturespa, culturellm, answer_distribution or a trainer subclass's _name "
                "(default: the folder's training_info.json or culture-align card)."})
    report: str | None = field(default=None, metadata={
        "help": "WVS evaluation results (culture-align eval --out folder, or its results.json)."})
    dataset: Sequence[str] = field(default=(), metadata={
        "help": "Hub id of the training data (repeatable)."})


@dataclass
class PushMetricArguments:
    """Where ``push metric`` publishes."""

    repo_id: str = field(metadata={"positional": True, "help": "Space repo, e.g. me/wvs_alignment."})


def _build(args: BuildArguments, out: str | Path) -> Path:
    from ..builders import build_corpus

    extra = {k: getattr(args, k) for k in ("questions", "cultures", "split", "setting") if getattr(args, k)}
    allowed = {"wvs": {"questions", "cultures"}, "answer_distributions": {"questions", "split", "setting"}}
    wrong = sorted(set(extra) - allowed.get(args.builder, set()))
    if wrong:
        raise ValueError(f"--{' --'.join(wrong)} do(es) not apply to the {args.builder} builder")
    return build_corpus(args.builder, args.source, out, configs=split_list(args.configs), overwrite=args.overwrite,
                        **extra)


def build_dataset_main(argv: Sequence[str] | None = None) -> int:
    """Build a corpus into a local folder in Hub layout (Parquet + dataset card)."""
    from .checks import check_output_dir

    args, output = parse_command((BuildArguments, BuildOutputArguments), argv, prog="culture-align build-dataset",
                                 description="Build a corpus into a folder in Hub layout: Parquet + dataset card. "
                                             "Options from a flat YAML file (--config FILE) or flags.")
    check_output_dir(output.out)  # a file, or a folder that cannot be written: said before anything is built
    out = _build(args, output.out)
    print(f"{args.builder}: Parquet files and README.md in {out}; "
          f"load with datasets.load_dataset({str(out)!r}, <config>)")
    return 0


_PUSH = {"dataset": ((BuildArguments, PushDatasetArguments, PushOptions),
                     "build a corpus and upload its Parquet files and card"),
         "adapter": ((PushAdapterArguments, PushOptions), "upload an adapter folder with its model card"),
         "metric": ((PushMetricArguments, PushOptions), "publish the wvs_alignment metric as an evaluate Space")}


def _push_overview() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="culture-align push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for what, (_, help_text) in _PUSH.items():
        sub.add_parser(what, help=f"{help_text}; see `culture-align push {what} --help`", add_help=False)
    return parser


def parse_push_args(argv: Sequence[str]) -> tuple[str, tuple, PushOptions]:
    """``(what, its dataclasses, PushOptions)`` from ``push``'s command line (``argv[0]``: dataset, adapter or
    metric; ``--help`` or another word: argparse's help or error, which exit)."""
    argv = list(argv)
    if not argv or argv[0] not in _PUSH:
        _push_overview().parse_args(argv)  # --help, or the error naming dataset, adapter and metric: exits
        raise SystemExit(2)
    what = argv[0]
    types, help_text = _PUSH[what]
    *parsed, options = parse_command(types, argv[1:], prog=f"culture-align push {what}",
                                     description=f"{help_text[0].upper()}{help_text[1:]}. Options from a flat YAML "
                                                 "file (--config FILE) or flags; list options take one value "
                                                 "per flag (comma-separated, or the flag repeated).")
    return what, tuple(parsed), options


def push_main(argv: Sequence[str] | None = None) -> int:
    """Publish a corpus, an adapter or the metric on the Hub."""
    from .. import hub

    what, parsed, options = parse_push_args(argv or [])

    if what == "dataset":
        from ..builders import load_builder_class

        build, target = parsed
        if options.private and target.public:
            raise ValueError("use either --private or --public")
        private = False if target.public else options.private
        if private is None and load_builder_class(build.builder).PRIVATE_BY_DEFAULT:
            private = True
        if target.local_dir:
            from .checks import check_output_dir

            check_output_dir(target.local_dir, "--local-dir")
        with tempfile.TemporaryDirectory(prefix="culture-align-push-") as tmp:
            folder = _build(build, target.local_dir or tmp)
            commit = hub.push_dataset(folder, target.repo_id, private=private, token=options.token,
                                      commit_message=options.commit_message)
        print(f"pushed {build.builder} to https://huggingface.co/datasets/{target.repo_id} "
              f"({'private' if private else 'default visibility'}): {getattr(commit, 'commit_url', commit)}")
    elif what == "adapter":
        (args,) = parsed
        datasets_used = [args.dataset] if isinstance(args.dataset, str) else list(args.dataset)
        pushed = hub.push_adapter(args.folder, args.repo_id, per_culture_repos=args.per_culture_repos,
                                  recipe=args.recipe, report=args.report, datasets_used=datasets_used,
                                  private=options.private, token=options.token,
                                  commit_message=options.commit_message)
        print("pushed to " + ", ".join(f"https://huggingface.co/{r}" for r in pushed))
    else:
        (args,) = parsed
        hub.push_metric(args.repo_id, private=options.private, token=options.token,
                        commit_message=options.commit_message)
        print(f"pushed the metric to https://huggingface.co/spaces/{args.repo_id}; "
              f"evaluate.load({args.repo_id!r}) now works")
    return 0
