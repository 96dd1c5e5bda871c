"""The CLCA data pipeline: seed scenarios -> culture-adapted scenarios -> role-played dialogues -> judged
dialogues -> intent annotations -> training conversations.

```python
from culture_align.recipes.clca import CLCAPipeline

corpus = CLCAPipeline(teacher, cultures=["GBR", "CHN"]).run("clca-data")   # DatasetDict, resumable
corpus["train"]        # messages, task ("dialogue" | "intent"), culture, id, dialogue_id, provenance
```

Resuming: every backend is wrapped in a :class:`CachedBackend` over one shared completion cache,
``<output_dir>/cache.jsonl``. Every stage is a deterministic function of its inputs and of the completions,
and the backends seed each request from the request itself, so a run killed at any point and started again
asks the cache first: nothing generated is lost or generated twice, and the final dataset is the one an
uninterrupted run gives. Re-running a finished pipeline makes no backend call at all.

Outputs in ``output_dir``: ``dataset/`` (``DatasetDict.save_to_disk``: ``dialogues``, ``train``,
``rejections``; replaced atomically), ``stats.json`` (counts per stage, drop reasons, turns per dialogue,
malformed / impersonation counts, cache hits and misses, tokens generated when the backend counts them, wall
time per stage) and ``cache.jsonl``.

Sharding (``num_shards`` > 1): the run covers shard ``shard_index`` of the seed scenarios (see
:mod:`culture_align.recipes.sharding`), writes ``shard.json`` and names its cache ``cache-<index>-of-<n>.jsonl``;
:func:`~culture_align.recipes.sharding.merge_shards` joins the N finished folders.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
from transformers.utils import logging

from ...backends.base import GenerationBackend, GenerationParams
from ...backends.cache import CachedBackend, CompletionCache
from ...culture_profiles import CultureProfile, get_culture_profile, load_culture_profiles
from ...cultures import Culture, resolve_cultures
from ...prompts.clca import PROMPT_VERSION
from ..sharding import ShardManifest, shard_dataset
from ..stages import config_to_dict, split_commas
from ..storage import save_dataset_atomically, write_json_atomically
from .intents import DEFAULT_INTENT_PARAMS, annotate_intents
from .judge import DEFAULT_JUDGE_PARAMS, DropRule, DropRuleLike, judge_dialogues
from .roleplay import DEFAULT_ROLEPLAY_PARAMS, run_roleplay
from .scenarios import DEFAULT_SCENARIO_PARAMS, adapt_scenarios, load_seed_scenarios
from .schemas import DIALOGUE_FEATURES, StageResult, count_by
from .training_data import build_training_set

logger = logging.get_logger(__name__)

__all__ = ["CLCAPipelineConfig", "CLCAPipeline", "PAPER_CULTURES"]

PAPER_CULTURES = ("CHN", "DEU", "JPN", "MEX", "GBR")
"""The cultures of the CLCA paper."""


@dataclass
class CLCAPipelineConfig:
    """Configuration of :class:`CLCAPipeline` (defaults follow the CLCA reference where it has one)."""

    cultures: Sequence[str] = field(default=PAPER_CULTURES, metadata={
        "help": "ISO3 codes of the target cultures (each needs a culture profile). The `cultures` argument of "
                "CLCAPipeline overrides it."})
    scenario_file: str | None = field(default=None, metadata={
        "help": "Seed scenarios (.jsonl or .yaml). None: the 20 bundled scenarios."})
    num_scenarios: int | None = field(default=None, metadata={
        "help": "Use the first N seed scenarios (None: all). Each is adapted to every culture."})
    culture_profiles_file: str | None = field(default=None, metadata={
        "help": "A culture profiles JSON file shaped like culture_align/data/culture_profiles.json "
                "(None: the bundled profiles)."})
    max_turns: int = field(default=10, metadata={"help": "Turns at most per dialogue (reference: 10)."})
    min_turns: int = field(default=2, metadata={
        "help": "Dialogues with fewer turns are rejected (both participants must have acted)."})
    scenario_params: GenerationParams = field(default=DEFAULT_SCENARIO_PARAMS, metadata={
        "help": "Teacher sampling for scenario adaptation."})
    roleplay_params: GenerationParams = field(default=DEFAULT_ROLEPLAY_PARAMS, metadata={
        "help": "Role-play sampling (reference: top_p 0.7, 500 new tokens; temperature 0.7)."})
    judge_params: GenerationParams = field(default=DEFAULT_JUDGE_PARAMS, metadata={
        "help": "Judge sampling (reference: temperature 0, 200 new tokens)."})
    intent_params: GenerationParams = field(default=DEFAULT_INTENT_PARAMS, metadata={
        "help": "Intent annotator sampling (greedy, 96 new tokens)."})
    drop_rule: DropRuleLike = field(default_factory=DropRule, metadata={
        "help": "Which judged dialogues to drop: a DropRule (default: the reference's rule, quality bad or "
                "meta bad with 'very confident') or a callable(dialogue record) -> reason | None."})
    max_attempts: int = field(default=3, metadata={
        "help": "Attempts per LLM answer (first try + retries with seed + attempt) before it counts as invalid."})
    retry_temperature: float = field(default=0.7, metadata={
        "help": "Temperature of the retries of greedy stages (a new seed alone would repeat the greedy text)."})
    seed: int = field(default=0, metadata={
        "help": "Base seed of every stage (replaces the seed of each stage's params)."})
    prompt_version: str = field(default=PROMPT_VERSION, metadata={
        "help": "Recorded in ids and provenance; bump it when changing prompts."})
    include_intents: bool = field(default=True, metadata={
        "help": "Annotate intents and add intent conversations to the training set."})
    cache_chunk_size: int = field(default=256, metadata={
        "help": "Cache misses go to a backend in chunks of this many requests (a killed run loses at most one "
                "chunk); each role-play turn is one call as long as fewer dialogues are running."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar per stage."})
    num_shards: int = field(default=1, metadata={
        "help": "Split the seed scenarios over this many workers (each runs one shard in its own folder; "
                "`culture-align merge-shards` joins them)."})
    shard_index: int = field(default=0, metadata={"help": "The shard this run generates, in [0, num_shards)."})

    def __post_init__(self) -> None:
        self.cultures = split_commas(self.cultures)
        if self.max_turns < 1 or self.min_turns < 0:
            raise ValueError(f"need max_turns >= 1 and min_turns >= 0, got {self.max_turns}, {self.min_turns}")
        if self.num_scenarios is not None and self.num_scenarios < 1:
            raise ValueError(f"num_scenarios must be >= 1 or None, got {self.num_scenarios}")
        for name in ("max_attempts", "cache_chunk_size"):  # a chunk size below 1 would send nothing, silently
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"need num_shards >= 1 and 0 <= shard_index < num_shards, got {self.num_shards}, "
                             f"{self.shard_index}")

    def stage_params(self, params: GenerationParams) -> GenerationParams:
        return replace(params, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (:func:`~culture_align.recipes.stages.config_to_dict`; the drop rule as its
        repr)."""
        return {**config_to_dict(self), "drop_rule": repr(self.drop_rule)}


class CLCAPipeline:
    """Generate a CLCA corpus with a teacher (and optionally other role-play, judge and annotator backends).

    Args:
        teacher: Adapts the scenarios; also plays, judges and annotates unless told otherwise.
        cultures: ISO3 codes (overrides ``config.cultures``).
        roleplay: Backend playing both participants, or a pair ``(participant 1, participant 2)``
            (default: the teacher).
        judge: Judge backend (default: the teacher).
        annotator: Intent annotator backend (default: the teacher).
        config: :class:`CLCAPipelineConfig` (default: its defaults).
    """

    def __init__(self, teacher: GenerationBackend, cultures: Sequence[str | Culture] | str | None = None,
                 roleplay: GenerationBackend | tuple[GenerationBackend, GenerationBackend] | None = None,
                 judge: GenerationBackend | None = None, annotator: GenerationBackend | None = None,
                 config: CLCAPipelineConfig | None = None) -> None:
        self.config = config or CLCAPipelineConfig()
        self.teacher = teacher
        agents = roleplay if isinstance(roleplay, (tuple, list)) else (roleplay or teacher,) * 2
        if len(agents) != 2:
            raise ValueError("roleplay must be one backend or a pair (participant 1, participant 2)")
        self.agents: tuple[GenerationBackend, GenerationBackend] = (agents[0], agents[1])
        self.judge = judge or teacher
        self.annotator = annotator or teacher
        self.cultures = resolve_cultures(cultures if cultures is not None else self.config.cultures)
        if not self.cultures:
            raise ValueError("no cultures given")
        self.profiles: dict[str, CultureProfile] = load_culture_profiles(self.config.culture_profiles_file)
        for culture in self.cultures:  # fail before any generation
            get_culture_profile(culture, self.profiles)

    def run(self, output_dir: str | os.PathLike) -> datasets.DatasetDict:
        """Run (or resume) every stage; write ``dataset/``, ``stats.json`` and ``cache.jsonl`` in
        ``output_dir``.

        Returns:
            ``DatasetDict`` with ``dialogues`` (kept dialogues with judge verdicts and intents), ``train``
            (training conversations) and ``rejections`` (everything dropped, from every stage).
        """
        cfg = self.config
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        seeds = load_seed_scenarios(cfg.scenario_file)
        if cfg.num_scenarios is not None:
            seeds = seeds.select(range(min(cfg.num_scenarios, len(seeds))))
        cache_file = "cache.jsonl"
        if cfg.num_shards > 1:
            manifest = ShardManifest.for_shard("clca", seeds["id"], cfg.num_shards, cfg.shard_index,
                                               self._shard_settings())
            manifest.save(out)  # claims the folder (refuses one holding another shard) before any generation
            seeds, cache_file = shard_dataset(seeds, cfg.num_shards, cfg.shard_index), manifest.cache_file
        cache = CompletionCache(out / cache_file)
        wrapped: dict[int, CachedBackend] = {}

        def cached(backend: GenerationBackend) -> CachedBackend:
            if id(backend) not in wrapped:
                wrapped[id(backend)] = CachedBackend(backend, cache, chunk_size=cfg.cache_chunk_size)
            return wrapped[id(backend)]

        teacher, judge, annotator = cached(self.teacher), cached(self.judge), cached(self.annotator)
        agent1, agent2 = cached(self.agents[0]), cached(self.agents[1])
        common = dict(profiles=self.profiles, max_attempts=cfg.max_attempts, retry_temperature=cfg.retry_temperature,
                      prompt_version=cfg.prompt_version, show_progress=cfg.show_progress)
        stats: dict[str, Any] = {"config": cfg.to_dict(), "cultures": [c.iso3 for c in self.cultures],
                                 "models": {"teacher": teacher.model_id, "agents": [agent1.model_id, agent2.model_id],
                                            "judge": judge.model_id, "annotator": annotator.model_id},
                                 "stages": {}}
        backends = {"teacher": self.teacher, "agent1": self.agents[0], "agent2": self.agents[1],
                    "judge": self.judge, "annotator": self.annotator}
        run_start = time.perf_counter()

        def stage(name: str, fn, *args, **kwargs) -> StageResult:
            hits, misses = cache.hits, cache.misses
            before = {role: _backend_stats(b) for role, b in backends.items()}
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            entry = {**result.stats, "seconds": round(time.perf_counter() - start, 3),
                     "cache_hits": cache.hits - hits, "backend_requests": cache.misses - misses}
            generated = _stats_delta(before, backends)
            if generated:
                entry["backend_stats"] = generated
            stats["stages"][name] = entry
            logger.info(f"CLCA {name}: {result.stats}")
            return result

        scenarios = stage("scenarios", adapt_scenarios, seeds, self.cultures, teacher,
                          cfg.stage_params(cfg.scenario_params), **common)
        dialogues = stage("roleplay", run_roleplay, scenarios.dataset, agent1, agent2,
                          cfg.stage_params(cfg.roleplay_params), max_turns=cfg.max_turns, min_turns=cfg.min_turns,
                          **common)
        judged = stage("judge", judge_dialogues, dialogues.dataset, judge, cfg.stage_params(cfg.judge_params),
                       drop_rule=cfg.drop_rule, **common)
        results = [scenarios, dialogues, judged]
        final = judged.dataset
        if cfg.include_intents:
            annotated = stage("intents", annotate_intents, judged.dataset, annotator,
                              cfg.stage_params(cfg.intent_params), **common)
            results.append(annotated)
            final = annotated.dataset
        start = time.perf_counter()
        train = build_training_set(final, profiles=self.profiles, include_intents=cfg.include_intents,
                                   prompt_version=cfg.prompt_version)
        stats["stages"]["training_data"] = {
            "conversations": len(train), "by_task": count_by(train["task"]),
            "seconds": round(time.perf_counter() - start, 3)}

        rejections = datasets.concatenate_datasets([r.rejections for r in results])
        if final.features != DIALOGUE_FEATURES:  # without intents: the corpus table, its intents None
            final = final.cast(DIALOGUE_FEATURES)
        corpus = datasets.DatasetDict({"dialogues": final, "train": train, "rejections": rejections})
        stats.update(_summary(seeds, final, train, rejections, dialogues))
        generated = [role.get("generated_tokens") for entry in stats["stages"].values()
                     for role in entry.get("backend_stats", {}).values()]
        if any(g is not None for g in generated):  # only when the backends count tokens
            stats["tokens_generated"] = sum(g for g in generated if g is not None)
        stats["seconds"] = round(time.perf_counter() - run_start, 3)
        save_dataset_atomically(corpus, out / "dataset")
        write_json_atomically(stats, out / "stats.json")
        self.stats = stats
        return corpus

    def _shard_settings(self) -> dict[str, Any]:
        """What every shard of a run must share: the config (but the shard index and settings that do not change
        the data), the cultures and the backends' model ids."""
        config = {k: v for k, v in self.config.to_dict().items()
                  if k not in ("shard_index", "show_progress", "cache_chunk_size")}
        rule = self.config.drop_rule
        if not isinstance(rule, DropRule):  # a function's repr holds its address, which differs between workers
            config["drop_rule"] = f"{getattr(rule, '__module__', '')}.{getattr(rule, '__qualname__', type(rule))}"
        models = {"teacher": self.teacher.model_id, "agents": [a.model_id for a in self.agents],
                  "judge": self.judge.model_id, "annotator": self.annotator.model_id}
        return {"config": config, "cultures": [c.iso3 for c in self.cultures], "models": models}


def _summary(seeds, final, train, rejections, roleplay: StageResult) -> dict[str, Any]:
    return {
        "counts": {"seed_scenarios": len(seeds), "dialogues": len(final), "train": len(train),
                   "train_by_task": count_by(train["task"]), "rejections": len(rejections),
                   "rejections_by_stage": count_by(rejections["stage"])},
        "drop_reasons": count_by(f"{s}:{r}" for s, r in zip(rejections["stage"], rejections["reason"])),
        "turns_per_dialogue": roleplay.stats["turns_histogram"],
        "turns_per_kept_dialogue": count_by(final["num_turns"]),
        "end_reasons": roleplay.stats["end_reasons"],
        "malformed_attempts": roleplay.stats["malformed_attempts"],
        "impersonations": roleplay.stats["impersonations"],
    }


def _backend_stats(backend: GenerationBackend) -> dict[str, Any] | None:
    """The backend's own counters when it keeps any (``stats.to_dict()`` or a mapping), else None."""
    stats = getattr(backend, "stats", None)
    if stats is None:
        return None
    if hasattr(stats, "to_dict"):
        stats = stats.to_dict()
    elif dataclasses.is_dataclass(stats):
        stats = dataclasses.asdict(stats)
    return dict(stats) if isinstance(stats, dict) else None


def _stats_delta(before: dict[str, dict | None], backends: dict[str, GenerationBackend]) -> dict[str, Any]:
    """Per distinct backend: the change of its numeric counters during a stage (zero changes left out)."""
    out, seen = {}, set()
    for role, backend in backends.items():
        if id(backend) in seen or before[role] is None:
            continue
        seen.add(id(backend))
        after = _backend_stats(backend) or {}
        delta = {k: round(v - before[role].get(k, 0), 3) for k, v in after.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v != before[role].get(k, 0)}
        if delta:
            out[role] = delta
    return out
