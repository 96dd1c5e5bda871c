"""Stage 1: seed scenarios, and their adaptation to each target culture by the teacher.

Steps:

- :func:`load_seed_scenarios` - file (JSON Lines or YAML) -> ``Dataset`` (:data:`SEED_FEATURES`).
- :func:`adapt_scenarios` - seeds x cultures -> ``StageResult`` whose dataset has
  :data:`SCENARIO_FEATURES` (one row per adapted scenario) and whose rejections hold the pairs the teacher
  never answered validly (stage ``"scenarios"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
from pydantic import ValidationError
from tqdm.auto import tqdm

from ...backends.base import GenerationBackend, GenerationParams
from ...culture_profiles import CultureProfile, get_culture_profile
from ...cultures import Culture, resolve_cultures
from ...input_files import read_json_lines, read_text
from ...prompts.clca import PROMPT_VERSION, build_adaptation_conversation
from .schemas import (
    REJECTION_FEATURES,
    SCENARIO_FEATURES,
    SEED_FEATURES,
    AdaptedScenario,
    SeedScenario,
    StageResult,
    generate_validated,
    make_rejection,
    params_provenance,
    stable_id,
    to_dataset,
)

__all__ = ["DEFAULT_SEED_FILE", "DEFAULT_SCENARIO_PARAMS", "load_seed_scenarios", "adapt_scenarios"]

DEFAULT_SEED_FILE = "clca_seed_scenarios.jsonl"
"""The bundled seed scenarios (in ``culture_align/data``): 20 everyday social situations."""

DEFAULT_SCENARIO_PARAMS = GenerationParams(temperature=0.7, top_p=0.95, max_new_tokens=1024)
"""Teacher sampling for scenario adaptation (a scenario is ~250-700 tokens of JSON)."""


def _read_seed_rows(path: Path) -> list[tuple[str, Any]]:
    """``(location, raw record)`` pairs; the location names the file and line/position for errors.

    Read by :mod:`culture_align.input_files` (UTF-8; a JSON record may not repeat a key).
    """
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(read_text(path))
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: invalid YAML: {err}") from err
        if isinstance(data, dict) and "scenarios" in data:
            data = data["scenarios"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of scenarios (or a mapping with the key 'scenarios')")
        return [(f"{path}: scenario #{i + 1}", row) for i, row in enumerate(data)]
    return [(f"{path}:{lineno}", row) for lineno, row in read_json_lines(path, where="{path}:{line}")]


def load_seed_scenarios(path: str | os.PathLike | None = None) -> datasets.Dataset:
    """Read seed scenarios: the bundled file by default, or a ``.jsonl`` / ``.yaml`` file of records shaped
    like :class:`SeedScenario` (``id``, ``social_goal``, ``setting``, ``relationship``, ``person1``,
    ``person2``; each person with ``name``, ``occupation``, ``background``, ``goal``, ``secrets``).

    Returns:
        A ``Dataset`` with :data:`SEED_FEATURES`, in file order.

    Raises:
        ValueError: naming the file and line (or scenario number) of the first invalid record, or a
            repeated id.
    """
    if path is None:
        resource = resources.files("culture_align").joinpath("data", DEFAULT_SEED_FILE)
        with resources.as_file(resource) as bundled:
            return load_seed_scenarios(bundled)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed scenario file not found: {path}")
    records, seen = [], {}
    for where, raw in _read_seed_rows(path):
        try:
            seed = SeedScenario.model_validate(raw)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{where}: invalid seed scenario: {problems}") from None
        if seed.id in seen:
            raise ValueError(f"{where}: repeated scenario id {seed.id!r} (first at {seen[seed.id]})")
        seen[seed.id] = where
        records.append(seed.model_dump())
    if not records:
        raise ValueError(f"{path}: no seed scenarios")
    return to_dataset(records, SEED_FEATURES)


def adapt_scenarios(
    seeds: datasets.Dataset,
    cultures: Sequence[str | Culture],
    backend: GenerationBackend,
    params: GenerationParams = DEFAULT_SCENARIO_PARAMS,
    *,
    profiles: dict[str, CultureProfile] | None = None,
    max_attempts: int = 3,
    retry_temperature: float = 0.7,
    prompt_version: str = PROMPT_VERSION,
    show_progress: bool = True,
) -> StageResult:
    """Adapt every seed scenario to every culture with the teacher: names, places and customs change, the
    structure (setting, relationship, two participants with occupation, background, goal, secrets) stays.

    All (culture, seed) requests go in one batched call; invalid answers are re-asked (``seed + attempt``)
    up to ``max_attempts`` in all, then rejected with the errors and raw answers.

    Args:
        seeds: Seed scenarios (:data:`SEED_FEATURES`).
        cultures: ISO3 codes (each needs a culture profile).
        backend: The teacher.
        params: Sampling params (default :data:`DEFAULT_SCENARIO_PARAMS`); the JSON schema is set here.
        profiles: Culture profiles by ISO3 (default: the bundled ones).

    Returns:
        :class:`StageResult`: ``dataset`` with :data:`SCENARIO_FEATURES` (culture-major, then seed order),
        ``rejections`` (stage ``"scenarios"``, reason ``"invalid_json"``), ``stats``.
    """
    resolved = resolve_cultures(cultures)
    culture_profiles = {c.iso3: get_culture_profile(c, profiles) for c in resolved}
    seed_rows = seeds.to_list()
    jobs = [(c.iso3, seed) for c in resolved for seed in seed_rows]
    conversations = [build_adaptation_conversation(seed, culture_profiles[iso3]) for iso3, seed in jobs]
    base = params_provenance(params)
    with tqdm(total=len(jobs), desc="CLCA scenarios", unit="scenario", disable=not show_progress) as bar:
        replies = generate_validated(backend, conversations, params, AdaptedScenario, max_attempts=max_attempts,
                                     retry_temperature=retry_temperature)
        bar.update(len(jobs))
    kept, rejected = [], []
    for (iso3, seed), reply in zip(jobs, replies):
        scenario_id = stable_id("clca-scenario", seed, iso3, prompt_version, backend.model_id, base)
        if not reply.ok:
            rejected.append(make_rejection(scenario_id, "scenarios", "invalid_json", iso3,
                                           {"seed_id": seed["id"], **reply.failure()}))
            continue
        adapted = reply.value.model_dump()
        provenance = {"stage": "scenarios", "teacher": backend.model_id, "params": base,
                      "prompt_version": prompt_version, "attempts": reply.attempts}
        kept.append({"id": scenario_id, "seed_id": seed["id"], "culture": iso3, "social_goal": seed["social_goal"],
                     **{k: adapted[k] for k in ("setting", "relationship", "person1", "person2")},
                     "provenance": provenance})
    stats = {"requested": len(jobs), "adapted": len(kept), "rejected": len(rejected),
             "retried": sum(r.attempts > 1 for r in replies), "attempts": sum(r.attempts for r in replies),
             "invalid_attempts": sum(len(r.errors) for r in replies)}
    return StageResult(to_dataset(kept, SCENARIO_FEATURES),
                       to_dataset(rejected, REJECTION_FEATURES), stats)
