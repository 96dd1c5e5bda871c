"""`culture-align generate culturespa` (also `examples/generate_culturespa.py`).

``generate`` reads the ``generate:`` section of a YAML config::

    generate:
      model: smollm2-135m-instruct          # answers (log-probs), and writes the questions by default
      dtype: bfloat16
      question_backend: null                # or {backend: openai, base_url: ..., model: ...}
      wvs: path/to/wvs                      # seeds + contamination guard; null: the bundled catalog
      split: runs/experiments/x/split.json  # optional: read human figures of its training cells only
      output_dir: runs/culturespa-data
      cultures: [USA, CHN, DEU]
      questions_per_topic: 10
      question_params: {max_new_tokens: 160}
      answer_mode: logprob                  # or sampling (temperature 0.6, top_p 0.9)

Every other key is a field of :class:`~culture_align.recipes.culturespa.CultureSPAPipelineConfig`
(``question_params`` and ``answer_sampling`` as mappings). Command-line flags override the file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checks import check_backend_spec, check_model_reference, check_output_dir
from .config import dataclass_from_dict, load_config_section

__all__ = ["generate_main", "pipeline_config_from_dict"]


def pipeline_config_from_dict(values: dict[str, Any]):
    """A :class:`CultureSPAPipelineConfig` from plain values (``question_params`` / ``answer_sampling`` as
    dicts of ``GenerationParams`` fields)."""
    from ..recipes.culturespa import CultureSPAPipelineConfig

    return dataclass_from_dict(CultureSPAPipelineConfig, values, "CultureSPA pipeline")


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CultureSPA data pipeline from a YAML config; flags override it."""
    parser = argparse.ArgumentParser(prog="culture-align generate culturespa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with a `generate:` section")
    parser.add_argument("--model", help="local model that answers (HF id, folder or embedded alias)")
    parser.add_argument("--wvs", help="WVS source for seeds and the contamination guard (default: bundled catalog)")
    parser.add_argument("--split", help="an experiment's split.json: seeds, similarity and self-alignment examples "
                        "come from its training cells only, and generated questions stay away from every item")
    parser.add_argument("--output-dir", help="output folder (resumes when it exists)")
    parser.add_argument("--cultures", help="comma-separated ISO3 codes")
    parser.add_argument("--topics", help="comma-separated WVS topic ids (default: all 13)")
    parser.add_argument("--questions-per-topic", type=int)
    parser.add_argument("--answer-mode", choices=["logprob", "sampling"])
    parser.add_argument("--answer-variant", choices=["plain", "cross_culture", "self_alignment"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)

    from ..backends.factory import backend_from_config
    from ..embedded_models import DEFAULT_MODEL
    from ..recipes.culturespa import CultureSPAPipeline

    section = dict(load_config_section(args.config, "generate"))
    model = args.model or section.pop("model", DEFAULT_MODEL)
    section.pop("model", None)
    question_spec = section.pop("question_backend", None)
    output_dir = args.output_dir or section.pop("output_dir", "runs/culturespa-data")
    section.pop("output_dir", None)
    if "wvs" in section:
        section["wvs_path"] = section.pop("wvs")
    for flag, key in (("wvs", "wvs_path"), ("cultures", "cultures"), ("topics", "topics"),
                      ("questions_per_topic", "questions_per_topic"), ("answer_mode", "answer_mode"),
                      ("answer_variant", "answer_variant"), ("dtype", "dtype"), ("batch_size", "batch_size"),
                      ("seed", "seed")):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    split_file = args.split or section.pop("split", None)
    section.pop("split", None)
    config = pipeline_config_from_dict(section)
    check_model_reference(model, "model")
    check_backend_spec("question_backend", question_spec)
    check_output_dir(output_dir, "output_dir")
    question_backend = backend_from_config(question_spec) if question_spec else None
    wvs = guard = None
    if split_file:
        from ..experiments import ExperimentSplit
        from ..wvs import load_wvs

        if not config.wvs_path:
            raise ValueError("--split needs the WVS data it splits (--wvs or `wvs:`)")
        full = load_wvs(config.wvs_path)
        wvs, guard = ExperimentSplit.load(split_file).training_view(full), full.questions
    corpus = CultureSPAPipeline(model, config=config, question_backend=question_backend, wvs=wvs,
                                guard_questions=guard).run(output_dir)
    stats = json.loads((Path(output_dir) / "stats.json").read_text())
    print(json.dumps({"counts": stats["counts"], "changed_share": stats["changed_share"]}, indent=2))
    print(f"{len(corpus['questions'])} questions, {len(corpus['answers'])} answers, {len(corpus['train'])} training "
          f"conversations, {len(corpus['rejections'])} rejections -> {Path(output_dir) / 'dataset'}")
    return 0
