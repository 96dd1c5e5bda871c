"""`culture-align build-dataset` and `culture-align push dataset|adapter|metric`.

::

    culture-align build-dataset clca_dialogues --source runs/clca-data --out hub/clca-dialogues [--overwrite]
    culture-align push dataset clca_dialogues --source runs/clca-data me/clca-dialogues [--local-dir DIR]
    culture-align push dataset wvs --source WVS_Cross-National_Wave_7.csv me/wvs-private      # private by default
    culture-align push adapter runs/clca-adapter me/clca-qwen --recipe clca --report eval-output
    culture-align push adapter runs/spa-specific me/spa-qwen --per-culture-repos     # <ISO3>/ subfolders
    culture-align push metric me/wvs_alignment
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_dataset_main", "push_main"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_build_args(parser: argparse.ArgumentParser) -> None:
    from ..builders import BUILDER_NAMES

    parser.add_argument("builder", choices=BUILDER_NAMES, help="the corpus to build")
    parser.add_argument("--source", required=True,
                        help="the recipe run folder (<run>/dataset + stats.json), or for wvs any WVS source")
    parser.add_argument("--configs", type=_csv, help="configs to build, comma-separated (default: all)")
    parser.add_argument("--questions", help="wvs, answer_distributions: a questions file for sources without their "
                        "own")
    parser.add_argument("--cultures", help="wvs only: ISO3 codes to keep, comma-separated")
    parser.add_argument("--split", help="answer_distributions only: an experiment's split.json (training cells only)")
    parser.add_argument("--setting", help="answer_distributions only: the prompt setting (default culture-aware)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty output folder that is not an earlier build (README.md "
                        "and the Parquet files are written over files of the same name; nothing else is "
                        "removed)")


def _build(args: argparse.Namespace, out: str | Path) -> Path:
    from ..builders import build_corpus

    extra = {k: getattr(args, k) for k in ("questions", "cultures", "split", "setting") if getattr(args, k)}
    allowed = {"wvs": {"questions", "cultures"}, "answer_distributions": {"questions", "split", "setting"}}
    wrong = sorted(set(extra) - allowed.get(args.builder, set()))
    if wrong:
        raise ValueError(f"--{' --'.join(wrong)} do(es) not apply to the {args.builder} builder")
    return build_corpus(args.builder, args.source, out, configs=args.configs, overwrite=args.overwrite,
                        **extra)


def build_dataset_main(argv: Sequence[str] | None = None) -> int:
    """Build a corpus into a local folder in Hub layout (Parquet + dataset card)."""
    parser = argparse.ArgumentParser(prog="culture-align build-dataset",
                                     description="Build a corpus into a folder in Hub layout: Parquet + dataset card.")
    _add_build_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    from .checks import check_output_dir

    check_output_dir(args.out)  # a file, or a folder that cannot be written: said before anything is built
    out = _build(args, args.out)
    print(f"{args.builder}: Parquet files and README.md in {out}; "
          f"load with datasets.load_dataset({str(out)!r}, <config>)")
    return 0


def push_main(argv: Sequence[str] | None = None) -> int:
    """Publish a corpus, an adapter or the metric on the Hub."""
    parser = argparse.ArgumentParser(prog="culture-align push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)

    ds = sub.add_parser("dataset", help="build a corpus and upload its Parquet files and card")
    _add_build_args(ds)
    ds.add_argument("repo_id", help="dataset repo, e.g. me/clca-dialogues")
    ds.add_argument("--local-dir", help="keep the built folder here (default: a temporary folder)")
    visibility = ds.add_mutually_exclusive_group()
    visibility.add_argument("--private", action="store_true", default=None, help="create the repo private")
    visibility.add_argument("--public", action="store_true", help="create the repo public (wvs is private "
                            "unless --public: check the WVS conditions of use first)")

    ad = sub.add_parser("adapter", help="upload an adapter folder with its model card")
    ad.add_argument("folder", help="an adapter folder, or a folder of <ISO3>/ adapters (specific mode)")
    ad.add_argument("repo_id", help="model repo; with --per-culture-repos a prefix or a template with {culture}")
    ad.add_argument("--per-culture-repos", action="store_true",
                    help="specific mode: one repo per culture instead of one repo with a subfolder each")
    ad.add_argument("--recipe", help="the recipe: clca, culturespa, culturellm, answer_distribution or a trainer "
                                     "subclass's _name (default: the folder's training_info.json or culture-align card)")
    ad.add_argument("--report", help="WVS evaluation results (culture-align eval --out folder, or its results.json)")
    ad.add_argument("--dataset", action="append", default=[], help="Hub id of the training data (repeatable)")
    ad.add_argument("--private", action="store_true", default=None, help="create the repo(s) private")

    mt = sub.add_parser("metric", help="publish the wvs_alignment metric as an evaluate Space")
    mt.add_argument("repo_id", help="Space repo, e.g. me/wvs_alignment")
    mt.add_argument("--private", action="store_true", default=None)

    for p in (ds, ad, mt):
        p.add_argument("--commit-message", help="commit message (default: says what is uploaded)")
        p.add_argument("--token", help="Hub token (default: the logged-in one)")
    args = parser.parse_args(argv)

    from .. import hub

    if args.what == "dataset":
        from ..builders import load_builder_class

        private = False if args.public else args.private
        if private is None and load_builder_class(args.builder).PRIVATE_BY_DEFAULT:
            private = True
        if args.local_dir:
            from .checks import check_output_dir

            check_output_dir(args.local_dir, "--local-dir")
        with tempfile.TemporaryDirectory(prefix="culture-align-push-") as tmp:
            folder = _build(args, args.local_dir or tmp)
            commit = hub.push_dataset(folder, args.repo_id, private=private, token=args.token,
                                      commit_message=args.commit_message)
        print(f"pushed {args.builder} to https://huggingface.co/datasets/{args.repo_id} "
              f"({'private' if private else 'default visibility'}): {getattr(commit, 'commit_url', commit)}")
    elif args.what == "adapter":
        pushed = hub.push_adapter(args.folder, args.repo_id, per_culture_repos=args.per_culture_repos,
                                  recipe=args.recipe, report=args.report, datasets_used=args.dataset,
                                  private=args.private, token=args.token, commit_message=args.commit_message)
        print("pushed to " + ", ".join(f"https://huggingface.co/{r}" for r in pushed))
    else:
        hub.push_metric(args.repo_id, private=args.private, token=args.token, commit_message=args.commit_message)
        print(f"pushed the metric to https://huggingface.co/spaces/{args.repo_id}; "
              f"evaluate.load({args.repo_id!r}) now works")
    return 0
