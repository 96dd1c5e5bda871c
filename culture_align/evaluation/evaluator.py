"""`WVSEvaluator`: how closely a model's answers match the human answer distributions of each culture.

For every (prompt setting, culture, item) the evaluator obtains the model's answer distribution over the
item's legal codes, either exactly (``mode="logprob"``: the backend's :meth:`~culture_align.backends.GenerationBackend.score`, one batched forward
pass locally) or by sampling (``mode="sampling"``: its ``generate`` with ``n`` answers per prompt), then scores it
against the human distribution with the ``wvs_alignment`` evaluate metric. Identical prompts are scored
once: in the culture-unaware setting every culture shares the same model answers.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..backends.base import GenerationBackend, GenerationParams, generate_samples
from ..backends.factory import as_backend
from ..cultures import Culture, resolve_cultures
from ..metric import alignment_math
from ..prompts.wvs import SurveyPromptTemplate, build_conversation, get_setting
from ..wvs.data import WVSData
from ..wvs.personas import describe_persona, sample_personas
from ..wvs.questions import SurveyQuestion, is_evaluation_item
from .report import WVSReport
from .scoring import parse_answer_code

logger = logging.get_logger(__name__)

__all__ = ["WVSEvaluator", "EvaluationConfig", "scored_items"]

Mode = Literal["logprob", "sampling"]

DEFAULT_SAMPLING = GenerationParams(n=10, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
"""Sampling mode's default: 10 answers per prompt at temperature 1 (the model's own distribution), 8 new tokens."""


@dataclass
class EvaluationConfig:
    """What :class:`WVSEvaluator` measures. Each field's meaning is its ``help`` (also ``culture-align eval
    --help``, which parses these fields)."""

    settings: Sequence[str | SurveyPromptTemplate] = field(default=("culture-unaware", "culture-aware"), metadata={
        "aliases": ["--setting"],
        "help": "Prompt settings: names from culture_align.prompts.wvs.SETTINGS (culture-unaware, culture-aware, "
                "persona), template file paths, or templates; on the command line several comma-separated."})
    mode: Mode = field(default="logprob", metadata={
        "help": "logprob (the exact distribution from the options' log-probabilities; default) or sampling."})
    items: Sequence[str] | None = field(default=None, metadata={
        "help": "Item ids to score (default: every WVS alignment item the data has); on the command line Q1,Q2 "
                "or a file (a JSON list, or one id per line)."})
    exclude_items: Sequence[str] = field(default=(), metadata={
        "help": "Item ids never scored, e.g. the items a model was trained on (a held-out guard); on the command "
                "line Q1,Q2 or a file, as items."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per forward pass."})
    num_personas: int = field(default=50, metadata={
        "help": "Respondents sampled per culture in the persona setting."})
    seed: int = field(default=0, metadata={
        "help": "Seed for persona sampling and reference draws; sampling mode's is sampling.seed (culture-align "
                "eval sets that to this seed too)."})
    sampling: GenerationParams = field(default_factory=lambda: DEFAULT_SAMPLING, metadata={
        "help": "Generation parameters of sampling mode (default: n=10 answers per prompt, temperature 1.0, "
                "top_p 1.0, 8 new tokens, seed 0)."})
    adapters: dict[str, str] | None = field(default=None, metadata={
        "cli": False,
        "help": "{ISO3: adapter name}: activate that PEFT adapter while scoring the culture (\"*\" as key: the "
                "adapter for every culture without its own). None: the model as given."})
    random_answer_draws: int = field(default=200, metadata={
        "help": "Draws of uniformly random answers for the random-answer alignment score."})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = [s if isinstance(s, str) else s.to_dict() for s in self.settings]
        return out

    def validate(self) -> EvaluationConfig:
        """Check the settings before any model is loaded; returns ``self``.

        Raises:
            ValueError: no prompt setting, an unknown mode, a batch size, persona count or number of random
                draws below 1, or ``sampling`` that is not :class:`~culture_align.backends.GenerationParams`.
        """
        if isinstance(self.settings, str):
            raise ValueError(f"settings must be a list of prompt settings, got the string {self.settings!r}")
        if not list(self.settings):
            raise ValueError("no prompt setting to evaluate: settings must list at least one "
                             "(culture-unaware, culture-aware, persona or a template file); got "
                             f"{self.settings!r}")
        if self.mode not in ("logprob", "sampling"):
            raise ValueError(f"mode must be 'logprob' or 'sampling', not {self.mode!r}")
        for name in ("batch_size", "num_personas", "random_answer_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.sampling, GenerationParams):
            raise ValueError(f"sampling must be GenerationParams, got {type(self.sampling).__name__}")
        return self


def _item_ids(wvs: WVSData, config: EvaluationConfig) -> list[str]:
    """``config.items`` (or all alignment items of the data) minus the excluded ones; unknown ids raise."""
    wanted = list(config.items) if config.items is not None else [
        q for q in wvs.questions if not q.startswith("Q") or is_evaluation_item(q)]
    unknown = [q for q in wanted if q not in wvs.questions]
    if unknown:
        raise ValueError(f"items not in the WVS data: {', '.join(unknown[:10])}")
    excluded = set(config.exclude_items)
    return [q for q in wanted if q not in excluded]


def scored_items(wvs: WVSData, cultures: Iterable[str | Culture] | str | None,
                 config: EvaluationConfig) -> list[str]:
    """The items :meth:`WVSEvaluator.evaluate` scores, checked before any model is loaded.

    Args:
        wvs: The human data.
        cultures: The cultures to evaluate (None: every culture of ``wvs``).
        config: What to measure.

    Returns:
        The item ids scored (each culture is scored on those it has human data for).

    Raises:
        ValueError: when the run would score nothing: no culture, a culture without human data, no item
            (an empty ``items``, every item excluded, or no alignment item in the data), or no (culture,
            item) cell with human data; and for item ids that are not in the data.
    """
    config.validate()
    source = wvs.source or "the WVS data"
    chosen = resolve_cultures(cultures) if cultures is not None else resolve_cultures(wvs.cultures)
    if not chosen:
        why = "the culture list is empty" if cultures is not None else f"{source} has no distribution"
        raise ValueError(f"no culture to evaluate: {why}")
    missing = [c.iso3 for c in chosen if c.iso3 not in wvs.cultures]
    if missing:
        raise ValueError(f"no human data for {', '.join(missing)} in {source}; it has "
                         f"{', '.join(wvs.cultures) or 'none'}")
    qids = _item_ids(wvs, config)
    if not qids:
        if config.items is not None and not list(config.items):
            why = "the item list is empty"
        elif config.exclude_items:
            why = f"all {len(set(config.items or wvs.questions))} item(s) are excluded"
        else:
            why = f"{source} has no WVS alignment item"
        raise ValueError(f"no item to score: {why}")
    if not any(wvs.distribution(c.iso3, q) is not None for c in chosen for q in qids):
        raise ValueError(f"nothing to score: none of the {len(qids)} item(s) has human data for "
                         f"{', '.join(c.iso3 for c in chosen)} in {source}")
    return qids


@dataclass
class _ModelAnswers:
    """The model's answers to one item in one setting and culture."""

    probs: np.ndarray | None  # over the item's codes; None when no valid answer was obtained
    n_valid: int = -1  # sampling: parsed samples; logprob: -1
    n_invalid: int = 0
    persona_hits: list[bool] | None = None  # persona setting: argmax == respondent's own answer, per persona


class WVSEvaluator:
    """Evaluate a model against human WVS answer distributions.

    Args:
        model: A causal LM, optionally a PEFT model; or any :class:`~culture_align.backends.GenerationBackend`
            (a vLLM engine, an OpenAI-compatible server: log-prob mode needs its ``score``), then ``tokenizer``
            is None.
        tokenizer: The model's tokenizer (with a chat template); None with a backend.
        wvs: Human data from any loader (:func:`culture_align.wvs.load_wvs`).
        cultures: ISO3 codes to evaluate (default: every culture in ``wvs``).
        config: What to measure (:class:`EvaluationConfig`); keyword overrides are accepted too.
        model_name: Name shown in reports (default: ``model.name_or_path``, or the backend's ``model_id``).

    Example:
        >>> report = WVSEvaluator(model, tok, wvs, cultures=["GBR", "CHN"]).evaluate("eval-out")
        >>> print(report.to_markdown())
        >>> WVSEvaluator(OpenAICompatibleBackend("http://127.0.0.1:8000/v1", "my-model"), None, wvs)
    """

    def __init__(self, model: PreTrainedModel | GenerationBackend, tokenizer: PreTrainedTokenizerBase | None,
                 wvs: WVSData,
                 cultures: Iterable[str | Culture] | str | None = None, config: EvaluationConfig | None = None,
                 *, model_name: str | None = None, show_progress: bool = True, **overrides: Any) -> None:
        config = config or EvaluationConfig()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise TypeError(f"unknown evaluation option {key!r}")
            setattr(config, key, value)
        self.config = config.validate()
        # A local backend decodes `batch_size` prompts' samples together in sampling mode (batch_size x n rows)
        rows = config.batch_size * (config.sampling.n if config.mode == "sampling" else 1)
        self.backend = as_backend(model, tokenizer, batch_size=rows)
        self.model = getattr(self.backend, "model", None)
        """The local model (None behind a server or vLLM): culture adapters are switched on it."""
        if config.adapters and not hasattr(self.model, "set_adapter"):
            raise ValueError(f"adapters {config.adapters} need a local PEFT model; {self.backend!r} has none")
        self.wvs = wvs
        self.cultures = resolve_cultures(cultures) if cultures is not None else resolve_cultures(wvs.cultures)
        self.settings = [get_setting(s) for s in config.settings]
        self.model_name = model_name or (self.backend.model_id if model is self.backend else
                                         getattr(model, "name_or_path", None) or type(model).__name__)
        self.show_progress = show_progress
        self._math = alignment_math()
        self._answer_cache: dict[tuple, tuple[np.ndarray | None, int, int]] = {}

    # ------------------------------------------------------------------------------------------ items
    def item_ids(self) -> list[str]:
        """The items scored: ``config.items`` (or all alignment items of the data) minus excluded ones."""
        return _item_ids(self.wvs, self.config)

    # ---------------------------------------------------------------------------------- model answers
    def _activate_adapter(self, culture: Culture) -> str:
        adapters = self.config.adapters
        if not adapters:
            return ""
        name = adapters.get(culture.iso3, adapters.get("*"))
        if name is None:
            raise ValueError(f"no adapter for {culture.iso3} in {adapters}")
        self.model.set_adapter(name)
        return name

    def _answer(self, conversations: list[list[dict]], questions: list[SurveyQuestion], adapter: str,
                desc: str) -> list[tuple[np.ndarray | None, int, int]]:
        """Model answers for each conversation, from the cache when the same prompt was already answered."""
        keys = [(adapter, self.config.mode, self.backend.prompt_text(c), q.codes)
                for c, q in zip(conversations, questions)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._answer_cache))
        if todo:
            index = {k: i for i, k in enumerate(keys)}
            convs = [conversations[index[k]] for k in todo]
            qs = [questions[index[k]] for k in todo]
            with tqdm(total=len(todo), desc=desc, disable=not self.show_progress, leave=False) as bar:
                if self.config.mode == "logprob":
                    scores = self.backend.score(convs, [[str(c) for c in q.codes] for q in qs], progress=bar.update)
                    for k, s in zip(todo, scores):
                        p = np.exp(s)
                        self._answer_cache[k] = (p / p.sum(), -1, 0)
                else:
                    samples = generate_samples(self.backend, convs, self.config.sampling, self.config.batch_size,
                                               bar.update)
                    for k, q, texts in zip(todo, qs, samples):
                        parsed = [parse_answer_code(t, q.codes) for t in texts]
                        valid = [c for c in parsed if c is not None]
                        counts = np.zeros(len(q.codes))
                        for c in valid:
                            counts[q.index_of(c)] += 1
                        probs = counts / counts.sum() if valid else None
                        self._answer_cache[k] = (probs, len(valid), len(texts) - len(valid))
        return [self._answer_cache[k] for k in keys]

    def _answers_for(self, template: SurveyPromptTemplate, culture: Culture,
                     questions: list[SurveyQuestion]) -> list[_ModelAnswers]:
        adapter = self._activate_adapter(culture)
        desc = f"{template.name} {culture.iso3}"
        if not template.uses_persona:
            convs = [build_conversation(template, q, culture) for q in questions]
            return [_ModelAnswers(p, nv, ni) for p, nv, ni in self._answer(convs, questions, adapter, desc)]
        if self.wvs.personas is None:
            raise ValueError(f"setting {template.name!r} needs respondent-level data (personas): load the WVS "
                             "CSV with culture_align.wvs.load_wvs_csv")
        personas = sample_personas(self.wvs.personas, culture.iso3, self.config.num_personas, self.config.seed)
        if len(personas) == 0:
            raise ValueError(f"no personas for {culture.iso3} in {self.wvs.source}")
        convs, qs = [], []
        for row in personas:
            description = describe_persona(row)
            for q in questions:
                convs.append(build_conversation(template, q, culture, persona=description))
                qs.append(q)
        answers = self._answer(convs, qs, adapter, desc)
        out = []
        for j, q in enumerate(questions):
            per_persona = [answers[i * len(questions) + j] for i in range(len(personas))]
            valid = [p for p, _, _ in per_persona if p is not None]
            probs = np.mean(valid, axis=0) if valid else None
            hits = []
            for row, (p, _, _) in zip(personas, per_persona):
                own = (row["answers"] or {}).get(q.qid)
                if p is not None and own is not None and own in q.codes:
                    hits.append(q.codes[int(np.argmax(p))] == own)
            n_valid = sum(v for _, v, _ in per_persona) if self.config.mode == "sampling" else -1
            out.append(_ModelAnswers(probs, n_valid, sum(i for _, _, i in per_persona), hits))
        return out

    # ------------------------------------------------------------------------------------- references
    def _reference_rows(self, culture: Culture, qids: list[str]) -> list[dict[str, Any]]:
        """Scores of the uniform distribution, random answers, and the other cultures' humans."""
        questions = [self.wvs.questions[q] for q in qids]
        human = [self.wvs.distribution(culture.iso3, q) for q in qids]
        gold = [self.wvs.modal_code(culture.iso3, q) for q in qids]
        n_opts = [q.num_options for q in questions]
        firsts = [min(q.codes) for q in questions]
        uniform = [np.full(q.num_options, 1.0 / q.num_options) for q in questions]
        dist = self._math.distribution_scores(uniform, human)
        # Answers drawn uniformly at random: the chance level of the argmax-based scores.
        rng = np.random.default_rng(self.config.seed)
        scores, hits = [], []
        for _ in range(self.config.random_answer_draws):
            answers = [int(rng.choice(q.codes)) for q in questions]
            scores.append(self._math.alignment_score(answers, gold, n_opts, firsts)["alignment_score"])
            hits.append(np.mean([a == g for a, g in zip(answers, gold)]))
        rows = [dict(reference="uniform", culture=culture.iso3, n_items=len(qids),
                     kl_divergence=dist["kl_divergence"], js_distance=dist["js_distance"],
                     similarity=dist["similarity"], accuracy=float(np.mean(hits)),
                     alignment_score=float(np.mean(scores)))]
        others = []
        for other in self.wvs.cultures:
            if other == culture.iso3:
                continue
            shared = [i for i, q in enumerate(qids) if self.wvs.distribution(other, q) is not None]
            if not shared:
                continue
            pred = [self.wvs.distribution(other, qids[i]) for i in shared]
            d = self._math.distribution_scores(pred, [human[i] for i in shared])
            a = self._math.alignment_score([self.wvs.modal_code(other, qids[i]) for i in shared],
                                           [gold[i] for i in shared], [n_opts[i] for i in shared],
                                           [firsts[i] for i in shared])
            others.append(dict(other=other, n_items=len(shared), kl_divergence=d["kl_divergence"],
                               js_distance=d["js_distance"], similarity=d["similarity"], accuracy=d["accuracy"],
                               alignment_score=a["alignment_score"]))
        if others:
            keys = ("kl_divergence", "js_distance", "similarity", "accuracy", "alignment_score")
            rows.append(dict(reference="other cultures' humans (mean)", culture=culture.iso3,
                             n_items=len(qids), **{k: float(np.mean([o[k] for o in others])) for k in keys},
                             pairs=others))
        return rows

    # ----------------------------------------------------------------------------------------- public
    def model_answers(self) -> datasets.Dataset:
        """The model's answer distribution for every (setting, culture, item), human data or not.

        Returns:
            A Dataset with ``setting``, ``culture``, ``qid``, ``codes``, ``model_probs`` (aligned with codes;
            empty when sampling gave no valid answer) and ``model_code`` (argmax; -1 when none).
        """
        questions = [self.wvs.questions[q] for q in self.item_ids()]
        rows = []
        for template in self.settings:
            for culture in self.cultures:
                for q, a in zip(questions, self._answers_for(template, culture, questions)):
                    rows.append(dict(setting=template.name, culture=culture.iso3, qid=q.qid, codes=list(q.codes),
                                     model_probs=[] if a.probs is None else a.probs.tolist(),
                                     model_code=-1 if a.probs is None else q.codes[int(np.argmax(a.probs))]))
        return datasets.Dataset.from_list(rows)

    def evaluate(self, output_dir: str | Path | None = None, plot_item: str | None = None) -> WVSReport:
        """Score every (setting, culture, item); write the report to ``output_dir`` when given.

        Args:
            output_dir: Folder for ``results.json``, ``items.parquet``, ``summary.md`` and ``plots/``.
            plot_item: Item whose model vs. human distributions are plotted (default: the first item).

        Returns:
            A :class:`WVSReport`.

        Raises:
            ValueError: before any model call, when nothing would be scored (see :func:`scored_items`).
        """
        start = time.perf_counter()
        qids = scored_items(self.wvs, self.cultures, self.config)
        rows: list[dict[str, Any]] = []
        summary: list[dict[str, Any]] = []
        references: list[dict[str, Any]] = []
        for culture in self.cultures:
            with_data = [q for q in qids if self.wvs.distribution(culture.iso3, q) is not None]
            references.extend(self._reference_rows(culture, with_data))
        for template in self.settings:
            for culture in self.cultures:
                with_data = [q for q in qids if self.wvs.distribution(culture.iso3, q) is not None]
                questions = [self.wvs.questions[q] for q in with_data]
                answers = self._answers_for(template, culture, questions)
                summary.append(self._score_culture(template, culture, questions, answers, rows,
                                                   skipped_no_human=len(qids) - len(with_data)))
        for template in self.settings:
            per = [s for s in summary if s["setting"] == template.name]
            summary.append(self._mean_row(template.name, per))
        features = datasets.Features({
            "setting": datasets.Value("string"), "culture": datasets.Value("string"),
            "qid": datasets.Value("string"), "topic": datasets.Value("string"),
            "codes": datasets.List(datasets.Value("int32")),
            "model_probs": datasets.List(datasets.Value("float64")),
            "human_probs": datasets.List(datasets.Value("float64")),
            "kl_divergence": datasets.Value("float64"), "js_distance": datasets.Value("float64"),
            "model_code": datasets.Value("int32"), "human_code": datasets.Value("int32"),
            "n_valid": datasets.Value("int32"), "n_invalid": datasets.Value("int32"),
            "persona_accuracy": datasets.Value("float64"),
        })
        items = datasets.Dataset.from_list(rows, features=features) if rows else datasets.Dataset.from_dict(
            {k: [] for k in features}, features=features)
        report = WVSReport(
            items=items, summary=summary, references=references, model_name=self.model_name,
            data_source=self.wvs.source, config=self.config.to_dict(),
            cultures=[c.iso3 for c in self.cultures], settings=[t.name for t in self.settings],
            seconds=time.perf_counter() - start,
        )
        if output_dir is not None:
            report.save(output_dir, plot_item=plot_item)
        return report

    def _score_culture(self, template: SurveyPromptTemplate, culture: Culture, questions: list[SurveyQuestion],
                       answers: list[_ModelAnswers], rows: list[dict[str, Any]], skipped_no_human: int
                       ) -> dict[str, Any]:
        scored = [(q, a) for q, a in zip(questions, answers) if a.probs is not None]
        human = [self.wvs.distribution(culture.iso3, q.qid) for q, _ in scored]
        model_codes = [q.codes[int(np.argmax(a.probs))] for q, a in scored]
        gold = [self.wvs.modal_code(culture.iso3, q.qid) for q, _ in scored]
        result: dict[str, Any] = dict(setting=template.name, culture=culture.iso3, n_items=len(scored),
                                      skipped_no_human_data=skipped_no_human,
                                      skipped_no_valid_answer=len(questions) - len(scored))
        if scored:
            dist = self._math.distribution_scores([a.probs for _, a in scored], human)
            align = self._math.alignment_score(model_codes, gold, [q.num_options for q, _ in scored],
                                               [min(q.codes) for q, _ in scored])
            result.update(kl_divergence=dist["kl_divergence"], js_distance=dist["js_distance"],
                          similarity=dist["similarity"], accuracy=dist["accuracy"],
                          alignment_score=align["alignment_score"])
            kl_items, js_items = dist["kl_per_item"], dist["js_per_item"]
        else:
            result.update(kl_divergence=float("nan"), js_distance=float("nan"), similarity=float("nan"),
                          accuracy=float("nan"), alignment_score=float("nan"))
            kl_items = js_items = []
        if self.config.mode == "sampling":
            result["sampling_parse_failures"] = int(sum(a.n_invalid for a in answers))
            result["samples"] = int(sum(a.n_invalid + max(a.n_valid, 0) for a in answers))
        if template.uses_persona:
            hits = [h for _, a in scored for h in (a.persona_hits or [])]
            result["persona_accuracy"] = float(np.mean(hits)) if hits else float("nan")
        for k, ((q, a), h) in enumerate(zip(scored, human)):
            rows.append(dict(setting=template.name, culture=culture.iso3, qid=q.qid, topic=q.topic,
                             codes=list(q.codes), model_probs=a.probs.tolist(), human_probs=list(map(float, h)),
                             kl_divergence=kl_items[k], js_distance=js_items[k], model_code=model_codes[k],
                             human_code=gold[k], n_valid=a.n_valid, n_invalid=a.n_invalid,
                             persona_accuracy=float(np.mean(a.persona_hits)) if a.persona_hits else None))
        return result

    @staticmethod
    def _mean_row(setting: str, per_culture: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ("kl_divergence", "js_distance", "similarity", "accuracy", "alignment_score")
        row = dict(setting=setting, culture="mean", n_items=int(sum(r["n_items"] for r in per_culture)))
        for k in keys:
            vals = [r[k] for r in per_culture if not np.isnan(r[k])]
            row[k] = float(np.mean(vals)) if vals else float("nan")
        return row
