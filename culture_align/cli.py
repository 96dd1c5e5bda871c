"""The ``culture-align`` command line: ``eval``, ``eval-tasks``, ``generate <recipe>``, ``train <recipe>``,
``experiment``, ``merge-shards``, ``demo``, ``push dataset|adapter|metric`` and ``build-dataset <builder>``.

Every command parses its options from dataclasses with one parser (``scripts.config.CommandParser``, a
``TrlParser``): ``culture-align <command> --help`` lists them with their help, and ``--config FILE`` reads a flat
YAML file of them that flags override (``experiment --config`` is the experiment YAML).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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

# command -> ("module:function" taking the command's own argv, its one-line help).
_COMMANDS = {
    "eval": ("culture_align.scripts.evaluation:eval_main",
             "score a model against human WVS answer distributions"),
    "eval-tasks": ("culture_align.scripts.evaluation:eval_tasks_main",
                   "macro-F1 on downstream culture classification tasks"),
    "merge-shards": ("culture_align.scripts.demo:merge_shards_main",
                     "join the run folders of a sharded `generate` (all N shards) into one dataset: no row lost, "
                     "none repeated"),
    "push": ("culture_align.scripts.hub:push_main",
             "publish on the Hub; see `culture-align push dataset|adapter|metric --help`"),
    "build-dataset": ("culture_align.scripts.hub:build_dataset_main",
                      "build a corpus into a folder in Hub layout (Parquet + card); see `culture-align build-dataset "
                      "<builder> --help`"),
    "experiment": ("culture_align.scripts.experiment:experiment_main",
                   "held-out splits, baselines, culture controls, seeds and CIs from one YAML config "
                   "(examples/experiments/)"),
    "demo": ("culture_align.scripts.demo:demo_main", "the embedded model on the bundled catalog, unaware vs. aware"),
}


def _load(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: the commands and their one-line help (``culture-align --help``). Each command parses
    its own options (``culture-align <command> --help``)."""
    parser = argparse.ArgumentParser(prog="culture-align", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (_, what) in _COMMANDS.items():
        sub.add_parser(command, help=what, add_help=False).add_argument("args", nargs=argparse.REMAINDER)
    for command, what in (("generate", "generate a recipe's training corpus"), ("train", "train an adapter")):
        recipes = sorted(r for c, r in _RECIPE_ENTRIES if c == command)
        recipe = sub.add_parser(command, help=f"{what} ({', '.join(recipes)}); see `culture-align {command} "
                                f"<recipe> --help`", add_help=False)
        recipe.add_argument("recipe", choices=recipes)
        recipe.add_argument("args", nargs=argparse.REMAINDER, help="the recipe's own flags (--config FILE, ...)")
    return parser


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
    on one line and returns 2, a bug raises with its traceback. Bad flags exit with argparse's usage and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    if command not in _COMMANDS and command not in ("generate", "train"):
        build_parser().parse_args(argv)  # --help, or the error naming the commands: exits
        return 2
    if command in ("generate", "train"):  # the recipe is checked by the top-level parser (its choices)
        args = build_parser().parse_args(argv)
        target, rest = _RECIPE_ENTRIES[(command, args.recipe)], args.args
    else:
        target, rest = _COMMANDS[command][0], argv[1:]
    try:
        return _load(target)(rest)
    except _expected_errors() as err:  # anything else is a bug and keeps its traceback
        print(f"culture-align {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
