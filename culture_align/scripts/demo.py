"""`culture-align demo`: the embedded model on the bundled catalog, culture-unaware vs. culture-aware (and, unless
``--skip-clca``, a small CLCA generation and training run); and `culture-align merge-shards`, which joins the run
folders of a sharded ``generate`` into one dataset.

Each reads a flat YAML file of its options (``--config FILE``); flags override it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..embedded_models import DEFAULT_MODEL
from .config import parse_command, split_list
from .evaluation import MODEL_HELP, HumanDataArguments

__all__ = ["demo_main", "merge_shards_main", "parse_demo_args", "DemoArguments", "MergeShardsArguments"]

DEMO_DESCRIPTION = ("The embedded model on the bundled catalog (or the human data given), culture-unaware vs. "
                    "culture-aware, then a small CLCA generation and training run (unless --skip-clca).")


@dataclass
class DemoArguments:
    """The options of ``culture-align demo`` besides the human data."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": MODEL_HELP})
    cultures: Sequence[str] = field(default=("USA", "CHN", "DEU"), metadata={
        "help": "ISO3 codes, comma-separated."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per forward pass."})
    out: str = field(default="demo-output", metadata={"help": "Output folder."})
    skip_clca: bool = field(default=False, metadata={"help": "Only the WVS part (no CLCA generation/training)."})


def parse_demo_args(argv: Sequence[str] | None) -> tuple[DemoArguments, HumanDataArguments]:
    """``demo``'s options, cultures split at commas."""
    args, data = parse_command((DemoArguments, HumanDataArguments), argv, prog="culture-align demo",
                               description=DEMO_DESCRIPTION)
    args.cultures = split_list(args.cultures)
    return args, data


def _check_demo_args(args: DemoArguments) -> None:
    """Refuse, before the model is loaded, demo options that cannot run."""
    from ..cultures import get_culture
    from .checks import check_at_least, check_model_reference, check_output_dir

    check_at_least("--batch-size", args.batch_size)
    if not args.cultures:
        raise ValueError("--cultures lists nothing (got an empty or comma-only value)")
    for culture in args.cultures:
        get_culture(culture)
    check_output_dir(args.out)
    check_model_reference(args.model, "--model")


def demo_main(argv: Sequence[str] | None = None) -> int:
    """`demo`: its options are checked before the model is loaded."""
    from ..demo import run_demo

    args, data = parse_demo_args(argv)
    _check_demo_args(args)
    run_demo(args.out, model_name=args.model, cultures=tuple(args.cultures), wvs=data.load(),
             batch_size=args.batch_size, clca=not args.skip_clca)
    return 0


@dataclass
class MergeShardsArguments:
    """The options of ``culture-align merge-shards``."""

    folders: Sequence[str] = field(metadata={
        "positional": True, "help": "One run folder per shard (with shard.json and dataset/)."})
    out: str = field(metadata={
        "help": "Output folder: dataset/, stats.json, cache.jsonl (not one of the shard folders; their parent is "
                "fine) (required)."})


def merge_shards_main(argv: Sequence[str] | None = None) -> int:
    """`merge-shards`: the output folder is checked before any shard is read."""
    from ..recipes.sharding import merge_shards
    from .checks import check_output_dir

    (args,) = parse_command((MergeShardsArguments,), argv, prog="culture-align merge-shards",
                            description="Join the run folders of a sharded `generate` (all N shards) into one "
                                        "dataset: no row lost, none repeated.")
    check_output_dir(args.out)
    corpus = merge_shards(args.folders, output_dir=args.out)
    rows = ", ".join(f"{name}: {len(split)}" for name, split in corpus.items())
    print(f"merged {len(args.folders)} shards ({rows}) -> {Path(args.out) / 'dataset'}")
    return 0
