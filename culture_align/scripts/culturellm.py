"""`culture-align generate culturellm` (also `examples/generate_culturellm.py`).

``generate`` reads the ``generate:`` section of a YAML config::

    generate:
      teacher: {backend: transformers, model: smollm2-135m-instruct}   # or {backend: openai, base_url: ..., model: ...}
      wvs: path/to/distributions.json     # any source `load_wvs` reads (a WVS-7 CSV, a distributions JSON, ...)
      questions: null                     # optional question catalog for the WVS source
      output_dir: runs/culturellm-data
      cultures: [USA, DEU]                # default: every culture of the data
      num_seeds: 10                       # default: all 50 seed items (or `items: [Q27, ...]`)
      num_rewrites: 5
      similarity_threshold: 0.8
      paraphrase_retries: 3
      max_samples_per_seed: 10
      paraphrase_params: {temperature: 0.7, max_new_tokens: 384}

Every other key is a field of :class:`~culture_align.recipes.culturellm.CultureLLMPipelineConfig`. Command-line
flags override the file. The run resumes when the output folder exists.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..embedded_models import DEFAULT_MODEL
from .checks import check_backend_spec, check_output_dir
from .config import dataclass_from_dict, load_config_section

__all__ = ["generate_main", "pipeline_config_from_dict"]


def pipeline_config_from_dict(values: dict[str, Any]):
    """A :class:`CultureLLMPipelineConfig` from plain values (``*_params`` as dicts of GenerationParams
    fields, applied over the defaults)."""
    from ..recipes.culturellm import CultureLLMPipelineConfig

    return dataclass_from_dict(CultureLLMPipelineConfig, values, "CultureLLM pipeline")


def generate_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the CultureLLM data pipeline from a YAML config; flags override it."""
    parser = argparse.ArgumentParser(prog="culture-align generate culturellm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with a `generate:` section")
    parser.add_argument("--wvs", help="the WVS data: a WVS-7 CSV, a distributions JSON, a folder, ...")
    parser.add_argument("--questions", help="question catalog for the WVS data (default: beside it / bundled)")
    parser.add_argument("--split", help="an experiment's split.json: seeds and labels from its training cells only "
                        "(a seed item that is a test item is an error)")
    parser.add_argument("--teacher", help="model for a transformers teacher (overrides the config)")
    parser.add_argument("--output-dir", help="output folder (resumes when it exists)")
    parser.add_argument("--cultures", help="comma-separated ISO3 codes (default: all in the data)")
    parser.add_argument("--items", help="comma-separated seed item ids (default: the 50 CultureLLM items)")
    parser.add_argument("--num-seeds", type=int, help="use the first N seed items")
    parser.add_argument("--num-rewrites", type=int, help="step 1 rewrites per seed (n)")
    parser.add_argument("--paraphrase-retries", type=int, help="step 1 extra rounds for short seeds (k)")
    parser.add_argument("--max-samples-per-seed", type=int, help="augmented samples per seed (m)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)

    from ..backends.factory import backend_from_config
    from ..recipes.culturellm import CultureLLMPipeline
    from ..wvs import load_wvs

    section = load_config_section(args.config, "generate")
    teacher_spec = section.pop("teacher", {"backend": "transformers", "model": DEFAULT_MODEL})
    if args.teacher:
        teacher_spec = {"backend": "transformers", "model": args.teacher}
    wvs_path = args.wvs or section.pop("wvs", None)
    questions = args.questions or section.pop("questions", None)
    section.pop("wvs", None)
    section.pop("questions", None)
    output_dir = args.output_dir or section.pop("output_dir", "runs/culturellm-data")
    section.pop("output_dir", None)
    if not wvs_path:
        raise ValueError("CultureLLM needs the user's WVS data: pass --wvs PATH or set `wvs:` in the config")
    for flag in ("cultures", "items", "num_seeds", "num_rewrites", "paraphrase_retries", "max_samples_per_seed",
                 "seed"):
        if getattr(args, flag) is not None:
            section[flag] = getattr(args, flag)
    split_file = args.split or section.pop("split", None)
    section.pop("split", None)
    config = pipeline_config_from_dict(section)
    check_backend_spec("teacher", teacher_spec)
    check_output_dir(output_dir, "output_dir")
    wvs = load_wvs(wvs_path, questions)
    if split_file:
        from ..experiments import ExperimentSplit

        wvs = ExperimentSplit.load(split_file).training_view(wvs)
    teacher = backend_from_config(teacher_spec)
    corpus = CultureLLMPipeline(teacher, wvs, config=config).run(output_dir)
    stats = json.loads((Path(output_dir) / "stats.json").read_text())
    print(json.dumps(stats.get("counts", {}), indent=2))
    print(f"{len(corpus['seeds'])} seeds, {len(corpus['augmented'])} augmented samples, {len(corpus['train'])} "
          f"training records, {len(corpus['rejections'])} rejections -> {Path(output_dir) / 'dataset'}")
    print(f"training items (exclude them from evaluation): {','.join(stats['train_items'])}")
    return 0
