"""`culture-align generate culturespa` (also `examples/generate_culturespa.py`).

Reads one flat YAML file (``--config``; the TRL convention) whose keys are the command's options, and flags override
the file (``--help`` lists them all): :class:`CultureSPAGenerateArguments` (the model, the question writer, an
experiment split, the output folder) and every field of
:class:`~culture_align.recipes.culturespa.CultureSPAPipelineConfig`::

    model: smollm2-135m-instruct          # answers (log-probs), and writes the questions by default
    dtype: bfloat16
    question_backend: null                # or {backend: openai, base_url: ..., model: ...}
    wvs_path: path/to/wvs                 # seeds + contamination guard; null: the bundled catalog
    split: runs/experiments/x/split.json  # optional: read human figures of its training cells only
    output_dir: runs/culturespa-data
    cultures: [USA, CHN, DEU]
    questions_per_topic: 10
    question_params: {max_new_tokens: 160}
    answer_mode: logprob                  # or sampling (temperature 0.6, top_p 0.9)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..embedded_models import DEFAULT_MODEL
from .checks import check_backend_spec, check_model_reference, check_output_dir
from .clca import BACKEND_HELP, backend_spec
from .config import parse_command

__all__ = ["generate_main", "CultureSPAGenerateArguments"]


@dataclass
class CultureSPAGenerateArguments:
    """The models, the experiment split and the output folder of ``culture-align generate culturespa``."""

    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Local model that answers (Hub id, folder or embedded alias), loaded with `dtype`; it writes the "
                "questions too unless `question_backend` is set."})
    question_backend: Any = field(default=None, metadata={
        "json": True, "help": f"The model that writes the questions (default: `model`): {BACKEND_HELP}."})
    split: str | None = field(default=None, metadata={
        "help": "An experiment's split.json: seeds, similarity and self-alignment examples come from its training "
                "cells only, and generated questions stay away from every item (needs `wvs_path`)."})
    output_dir: str = field(default="runs/culturespa-data", metadata={
        "help": "Output folder (resumes when it exists)."})


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CultureSPA data pipeline from a flat YAML config; flags override it."""
    from ..backends.factory import backend_from_config
    from ..recipes.culturespa import CultureSPAPipeline, CultureSPAPipelineConfig

    args, config = parse_command((CultureSPAGenerateArguments, CultureSPAPipelineConfig), argv,
                                 prog="culture-align generate culturespa", description=__doc__)
    question_spec = backend_spec(args.question_backend)
    check_model_reference(args.model, "model")
    check_backend_spec("question_backend", question_spec)
    check_output_dir(args.output_dir, "output_dir")
    question_backend = backend_from_config(question_spec) if question_spec else None
    wvs = guard = None
    if args.split:
        from ..experiments import ExperimentSplit
        from ..wvs import load_wvs

        if not config.wvs_path:
            raise ValueError("--split needs the WVS data it splits (--wvs_path or `wvs_path:`)")
        full = load_wvs(config.wvs_path)
        wvs, guard = ExperimentSplit.load(args.split).training_view(full), full.questions
    corpus = CultureSPAPipeline(args.model, config=config, question_backend=question_backend, wvs=wvs,
                                guard_questions=guard).run(args.output_dir)
    stats = json.loads((Path(args.output_dir) / "stats.json").read_text())
    print(json.dumps({"counts": stats["counts"], "changed_share": stats["changed_share"]}, indent=2))
    print(f"{len(corpus['questions'])} questions, {len(corpus['answers'])} answers, {len(corpus['train'])} training "
          f"conversations, {len(corpus['rejections'])} rejections -> {Path(args.output_dir) / 'dataset'}")
    return 0
