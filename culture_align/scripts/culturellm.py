"""`culture-align generate culturellm` (also `examples/generate_culturellm.py`).

Reads one flat YAML file (``--config``; the TRL convention) whose keys are the command's options, and flags override
the file (``--help`` lists them all): :class:`CultureLLMGenerateArguments` (the teacher, the WVS data, an experiment
split, the output folder) and every field of :class:`~culture_align.recipes.culturellm.CultureLLMPipelineConfig`::

    teacher: {backend: transformers, model: smollm2-135m-instruct}   # or {backend: openai, base_url: ..., model: ...}
    wvs: path/to/distributions.json     # any source `load_wvs` reads (a WVS-7 CSV, a distributions JSON, ...)
    questions: null                     # optional question catalog for the WVS source
    output_dir: runs/culturellm-data
    cultures: [USA, DEU]                # default: every culture of the data
    num_seeds: 10                       # default: all 50 seed items (or `items: [Q27, ...]`)
    num_rewrites: 5
    paraphrase_params: {temperature: 0.7, max_new_tokens: 384}

The run resumes when the output folder exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..embedded_models import DEFAULT_MODEL
from .checks import check_backend_spec, check_output_dir
from .clca import BACKEND_HELP, backend_spec
from .config import parse_command

__all__ = ["generate_main", "CultureLLMGenerateArguments"]


@dataclass
class CultureLLMGenerateArguments:
    """The teacher, the data and the output folder of ``culture-align generate culturellm``."""

    teacher: Any = field(default=DEFAULT_MODEL, metadata={"json": True, "help": f"The teacher: {BACKEND_HELP}."})
    wvs: str | None = field(default=None, metadata={
        "help": "The user's WVS data (required): a WVS-7 CSV, a distributions JSON, a folder, ..."})
    questions: str | None = field(default=None, metadata={
        "help": "Question catalog for the WVS data (default: beside it, or the bundled one)."})
    split: str | None = field(default=None, metadata={
        "help": "An experiment's split.json: seeds and labels from its training cells only (a seed item that is a "
                "test item is an error)."})
    output_dir: str = field(default="runs/culturellm-data", metadata={
        "help": "Output folder (resumes when it exists)."})


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CultureLLM data pipeline from a flat YAML config; flags override it."""
    from ..backends.factory import backend_from_config
    from ..recipes.culturellm import CultureLLMPipeline, CultureLLMPipelineConfig
    from ..wvs import load_wvs

    args, config = parse_command((CultureLLMGenerateArguments, CultureLLMPipelineConfig), argv,
                                 prog="culture-align generate culturellm", description=__doc__)
    if not args.wvs:
        raise ValueError("CultureLLM needs the user's WVS data: pass --wvs PATH or set `wvs:` in the config")
    teacher_spec = backend_spec(args.teacher)
    check_backend_spec("teacher", teacher_spec)
    check_output_dir(args.output_dir, "output_dir")
    wvs = load_wvs(args.wvs, args.questions)
    if args.split:
        from ..experiments import ExperimentSplit

        wvs = ExperimentSplit.load(args.split).training_view(wvs)
    teacher = backend_from_config(teacher_spec)
    corpus = CultureLLMPipeline(teacher, wvs, config=config).run(args.output_dir)
    stats = json.loads((Path(args.output_dir) / "stats.json").read_text())
    print(json.dumps(stats.get("counts", {}), indent=2))
    print(f"{len(corpus['seeds'])} seeds, {len(corpus['augmented'])} augmented samples, {len(corpus['train'])} "
          f"training records, {len(corpus['rejections'])} rejections -> {Path(args.output_dir) / 'dataset'}")
    print(f"training items (exclude them from evaluation): {','.join(stats['train_items'])}")
    return 0
