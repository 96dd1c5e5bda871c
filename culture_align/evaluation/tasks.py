"""Downstream culture tasks: classification sets scored by label log-probabilities, reported as macro-F1.

A :class:`CultureTask` is declared, not coded: a name, its examples (a JSONL/CSV file or a
``datasets.Dataset`` of ``text`` + ``label``), the label set with a verbal description per label, the
culture (ISO3, through the registry) and language, the phenomenon (``"hate speech"``) and optional prompt
templates. Tasks are usually read with :func:`load_tasks` from a ``tasks.json`` index or a YAML file::

    [{"task": "eng_olid_offense", "file": "eng_olid_offense.jsonl", "culture": "USA", "language": "en",
      "phenomenon": "offensive language", "labels": {"OFF": "offensive", "NOT": "not offensive"}, "n": 1000}]

:class:`TaskEvaluator` asks the model for the number of the label that fits each text (prompts in
:mod:`culture_align.prompts.tasks`) and predicts the label whose answer has the highest log-probability,
exactly, with the backend's :meth:`~culture_align.backends.GenerationBackend.score` (one batched forward pass per
batch for a local model; a vLLM engine or a server that returns log-probabilities works too).
Scores: macro-F1 over the task's label set, accuracy, per-label counts and the confusion counts
(:func:`~culture_align.evaluation.task_report.classification_scores`); beside them, the macro-F1 of
predictions with the model's label prior removed (:func:`debiased_predictions`), since a small model's plain
argmax is often one label for every text.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..backends.base import GenerationBackend
from ..backends.factory import as_backend
from ..cultures import get_culture
from ..input_files import parse_json, read_csv, read_json_lines, read_text
from ..models import attach_adapters  # re-exported: the adapters of a task culture
from ..prompts.tasks import (
    TaskPromptTemplate,
    build_task_conversation,
    get_task_setting,
    label_choices,
)
from .task_report import TaskReport, classification_scores

logger = logging.get_logger(__name__)

__all__ = [
    "CultureTask",
    "TaskEvaluationConfig",
    "TaskEvaluator",
    "load_tasks",
    "read_task_examples",
    "subsample_indices",
    "task_conversations",
    "attach_adapters",
    "debiased_predictions",
]

Subsample = Literal["stratified", "random"]
_INDEX_KEYS = {"task", "name", "file", "data", "culture", "language", "phenomenon", "labels", "n",
               "text_column", "label_column", "templates"}


# --------------------------------------------------------------------------------------------- tasks
@dataclass
class CultureTask:
    """One downstream classification task.

    Attributes:
        name: Task name (``"eng_olid_offense"``).
        data: A JSONL (``.jsonl``/``.json``, one object per line), CSV or TSV file, or a ``datasets.Dataset``,
            with a text column and a label column.
        labels: ``{label key: verbal description}``, in the order the prompt numbers them (from 1); every
            example's label must be a key. Keys are compared as strings (a JSON ``1`` matches the key ``"1"``).
        culture: ISO3 code of the task's culture (resolved through the registry, so names work too).
        phenomenon: What is classified, used in the prompt (``"offensive language"``).
        language: ISO 639-1 code of the texts (``"en"``); informational, and ``{language}`` in templates.
        text_column: Name of the text column (default ``"text"``).
        label_column: Name of the label column (default ``"label"``).
        templates: ``{setting name: template}``: this task's own wording for a setting (default: the built-in
            wording of :data:`~culture_align.prompts.tasks.TASK_SETTINGS`).
        n: Declared number of examples (from an index); a mismatch with the data is logged, not fatal.
    """

    name: str
    data: str | Path | datasets.Dataset
    labels: dict[str, str]
    culture: str
    phenomenon: str
    language: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    templates: dict[str, TaskPromptTemplate] = field(default_factory=dict)
    n: int | None = None

    def __post_init__(self) -> None:
        try:
            self.culture = get_culture(self.culture).iso3
        except ValueError as err:
            raise ValueError(f"task {self.name!r}: {err}") from None
        if not isinstance(self.labels, Mapping) or len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: 'labels' must map at least two label keys to descriptions, "
                             f"got {self.labels!r}")
        self.labels = {str(k): str(v).strip() for k, v in self.labels.items()}
        empty = [k for k, v in self.labels.items() if not v]
        if empty:
            raise ValueError(f"task {self.name!r}: labels {empty} have an empty description")
        if len(set(self.labels.values())) != len(self.labels):
            raise ValueError(f"task {self.name!r}: label descriptions must differ, got {self.labels}")
        if not str(self.phenomenon).strip():
            raise ValueError(f"task {self.name!r}: 'phenomenon' is empty")
        if not isinstance(self.data, datasets.Dataset):
            self.data = Path(self.data)

    @property
    def label_keys(self) -> list[str]:
        """Label keys in prompt order (label ``label_keys[i]`` is answered with ``str(i + 1)``)."""
        return list(self.labels)

    @property
    def source(self) -> str:
        """Where the examples come from, for messages."""
        return str(self.data) if isinstance(self.data, Path) else f"the Dataset of task {self.name!r}"

    def load(self) -> datasets.Dataset:
        """The validated examples: ``row`` (0-based position in the source), ``text``, ``label`` (a key)."""
        examples = read_task_examples(self.data, self.labels, self.text_column, self.label_column)
        if self.n is not None and self.n != len(examples):
            logger.warning(f"task {self.name}: {self.source} has {len(examples)} examples, the index says {self.n}")
        return examples


def _check_example(where: str, record: Any, labels: Mapping[str, str], text_column: str,
                   label_column: str) -> tuple[str, str]:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected an object with {text_column!r} and {label_column!r}, "
                         f"got {type(record).__name__}")
    for column in (text_column, label_column):
        if column not in record:
            raise ValueError(f"{where}: no {column!r} field (fields: {', '.join(map(str, record)) or 'none'})")
    text, label = record[text_column], record[label_column]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: {text_column!r} must be a non-empty string, got {text!r}")
    if label is None or str(label) not in labels:
        raise ValueError(f"{where}: label {label!r} is not one of the task's labels {list(labels)}")
    return text, str(label)


def read_task_examples(data: str | Path | datasets.Dataset, labels: Mapping[str, str], text_column: str = "text",
                       label_column: str = "label") -> datasets.Dataset:
    """Read and validate a task's examples.

    Args:
        data: A ``.jsonl``/``.json`` file (one JSON object per line), a ``.csv``/``.tsv`` file with a header,
            or a ``datasets.Dataset``.
        labels: The task's label keys (a mapping; only its keys are used).
        text_column: Column holding the text.
        label_column: Column holding the gold label.

    Returns:
        A Dataset with ``row`` (int, 0-based position among the examples), ``text`` and ``label`` (str).

    Raises:
        ValueError: naming the file and line (or Dataset row) of a malformed example, an unknown label, a
            missing column, or a source without examples. FileNotFoundError: for a missing file.
    """
    records: list[tuple[str, str]] = []
    if isinstance(data, datasets.Dataset):
        missing = [c for c in (text_column, label_column) if c not in data.column_names]
        if missing:
            raise ValueError(f"the task Dataset has no column {missing[0]!r} (columns: {data.column_names})")
        for i, record in enumerate(data):
            records.append(_check_example(f"Dataset row {i}", record, labels, text_column, label_column))
        source = "the task Dataset"
    else:
        path = Path(data)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"task data file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            for line_no, record in read_json_lines(path):
                records.append(_check_example(f"{path}, line {line_no}", record, labels, text_column,
                                              label_column))
        elif suffix in (".csv", ".tsv"):
            header, rows = read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
            missing = [c for c in (text_column, label_column) if c not in header]
            if header and missing:
                raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
            for line_no, record in rows:
                if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                    continue
                records.append(_check_example(f"{path}, line {line_no}", record, labels, text_column,
                                              label_column))
        else:
            raise ValueError(f"{path}: unsupported task file type {path.suffix!r} (use .jsonl, .json, .csv, .tsv)")
    if not records:
        raise ValueError(f"{source}: no examples")
    features = datasets.Features({"row": datasets.Value("int64"), "text": datasets.Value("string"),
                                  "label": datasets.Value("string")})
    return datasets.Dataset.from_dict({"row": list(range(len(records))), "text": [t for t, _ in records],
                                       "label": [lab for _, lab in records]}, features=features)


def _read_index(path: Path) -> list[Any]:
    """The task entries of an index file (JSON, or YAML for ``.yaml``/``.yml``), read as UTF-8 by
    :mod:`culture_align.input_files` (a JSON object may not repeat a key)."""
    try:
        text = read_text(path)
    except OSError as err:
        raise FileNotFoundError(f"task index {path} cannot be read: {err}") from None
    import yaml

    if path.suffix.lower() not in (".yaml", ".yml"):
        data = parse_json(text, f"{path}: cannot parse the task index")
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: cannot parse the task index: {err}") from None
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: a task index is a non-empty list of tasks (or {{'tasks': [...]}})")
    return data


def load_tasks(path: str | Path, names: Iterable[str] | None = None) -> list[CultureTask]:
    """Read tasks from a ``tasks.json`` index or a YAML file.

    Each entry has ``task`` (or ``name``), ``file`` (relative to the index's folder), ``culture``,
    ``phenomenon``, ``labels`` ({key: description}) and optionally ``language``, ``n``, ``text_column``,
    ``label_column`` and ``templates`` ({setting: {"system": ..., "user": ...} or a template file}).
    The top level is a list of entries, or ``{"tasks": [...]}``.

    Args:
        path: The index file.
        names: Keep only these tasks, in this order (default: all, in file order).

    Raises:
        ValueError: naming the file and entry for a malformed entry or an unknown task name.
    """
    path = Path(path)
    tasks: list[CultureTask] = []
    for i, entry in enumerate(_read_index(path)):
        where = f"{path}, task #{i + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
        name = entry.get("task", entry.get("name"))
        where += f" ({name})" if name else ""
        unknown = set(entry) - _INDEX_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_INDEX_KEYS)})")
        for key in ("culture", "phenomenon", "labels"):
            if key not in entry:
                raise ValueError(f"{where}: missing {key!r}")
        file = entry.get("file", entry.get("data"))
        if not name or not file:
            raise ValueError(f"{where}: needs 'task' (its name) and 'file'")
        templates: dict[str, TaskPromptTemplate] = {}
        for setting, spec in (entry.get("templates") or {}).items():
            if isinstance(spec, str):
                template = TaskPromptTemplate.from_file(path.parent / spec)
            else:
                template = TaskPromptTemplate.from_dict(dict(spec, name=setting), source=f"{where}, templates")
            templates[setting] = TaskPromptTemplate(name=setting, system=template.system, user=template.user)
        try:
            task = CultureTask(name=str(name), data=path.parent / str(file), labels=entry["labels"],
                               culture=entry["culture"], phenomenon=entry["phenomenon"],
                               language=entry.get("language"), text_column=entry.get("text_column", "text"),
                               label_column=entry.get("label_column", "label"), templates=templates,
                               n=entry.get("n"))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        tasks.append(task)
    by_name = {t.name: t for t in tasks}
    if len(by_name) != len(tasks):
        raise ValueError(f"{path}: task names must be unique")
    if names is None:
        return tasks
    names = list(names)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"{path}: no task named {', '.join(unknown)} (tasks: {', '.join(by_name)})")
    return [by_name[n] for n in names]


def task_conversations(task: CultureTask, texts: Sequence[str], setting: str | TaskPromptTemplate
                       ) -> list[list[dict[str, str]]]:
    """The chats asking for the label of each text under a setting (the task's own wording if it has one)."""
    template = get_task_setting(setting)
    template = task.templates.get(template.name, template)
    culture = get_culture(task.culture)
    descriptions = list(task.labels.values())
    return [build_task_conversation(template, t, descriptions, task.phenomenon, culture, task.language)
            for t in texts]


# ------------------------------------------------------------------------------------------ sampling
def subsample_indices(labels: Sequence[str], max_examples: int | None, strategy: Subsample = "stratified",
                      seed: int = 0) -> list[int]:
    """Positions of a seeded subsample of at most ``max_examples`` examples, in ascending order.

    ``"stratified"`` keeps each label's share (largest-remainder rounding, at least one example of every
    label when ``max_examples`` allows) and draws within labels at random; ``"random"`` draws uniformly.
    The same labels, size, strategy and seed always give the same positions. ``None`` or a size at least
    the number of examples: every position.
    """
    n = len(labels)
    if max_examples is None or max_examples >= n:
        return list(range(n))
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return sorted(int(i) for i in rng.choice(n, size=max_examples, replace=False))
    if strategy != "stratified":
        raise ValueError(f"subsample strategy must be 'stratified' or 'random', not {strategy!r}")
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    keys = sorted(groups)
    exact = np.array([max_examples * len(groups[k]) / n for k in keys])
    quota = np.floor(exact).astype(int)
    for j in np.argsort(-(exact - quota), kind="stable")[: max_examples - int(quota.sum())]:
        quota[j] += 1
    if max_examples >= len(keys):  # every label represented: move one from the largest quota to each empty one
        for j in np.flatnonzero(quota == 0):
            quota[int(np.argmax(quota))] -= 1
            quota[j] = 1
    chosen: list[int] = []
    for key, q in zip(keys, quota):
        chosen.extend(int(i) for i in rng.permutation(groups[key])[:q])
    return sorted(chosen)


def debiased_predictions(scores: Sequence[np.ndarray], keys: Sequence[str]) -> list[str]:
    """Predictions after removing the model's label prior: ``argmax_k (s_k - mean over examples of s_k)``.

    Small models tend to answer one position (often ``"1"``) whatever the text; centring each label's
    log-probability on its mean over the scored examples removes that constant preference without using
    any gold label (a transductive form of contextual calibration, Zhao et al. 2021). Reported beside, never
    instead of, the plain argmax.

    Args:
        scores: Per example, the log-probabilities of the labels' answers, in ``keys`` order.
        keys: Label keys.
    """
    if not scores:
        return []
    matrix = np.stack(scores)
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    return [keys[int(i)] for i in np.argmax(centred, axis=1)]


# ------------------------------------------------------------------------------------------ adapters
# ---------------------------------------------------------------------------------------- evaluation
@dataclass
class TaskEvaluationConfig:
    """What :class:`TaskEvaluator` measures. Each field's meaning is its ``help`` (also ``culture-align
    eval-tasks --help``, which parses these fields)."""

    settings: Sequence[str | TaskPromptTemplate] = field(default=("plain", "culture-aware"), metadata={
        "aliases": ["--setting"],
        "help": "Prompt settings: names from culture_align.prompts.tasks.TASK_SETTINGS (plain, culture-aware), "
                "template file paths, or templates; a task's own templates[name] replaces the wording of the "
                "setting of that name. On the command line several comma-separated."})
    max_examples: int | None = field(default=None, metadata={
        "help": "Examples scored per task at most (default: all); the subsample is the same in every setting and "
                "is recorded in the summary."})
    subsample: Subsample = field(default="stratified", metadata={
        "help": "stratified (keep label shares; default) or random."})
    seed: int = field(default=0, metadata={"help": "Seed of the subsample."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per forward pass."})
    adapters: dict[str, str] | None = field(default=None, metadata={
        "cli": False,
        "help": "{ISO3: adapter name}: activate that PEFT adapter for the tasks of the culture (\"*\": for every "
                "culture without its own); None: the model as given."})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = [s if isinstance(s, str) else s.to_dict() for s in self.settings]
        return out


_PREDICTION_FEATURES = datasets.Features({
    "task": datasets.Value("string"), "setting": datasets.Value("string"), "culture": datasets.Value("string"),
    "adapter": datasets.Value("string"), "row": datasets.Value("int64"), "text": datasets.Value("string"),
    "label": datasets.Value("string"), "prediction": datasets.Value("string"),
    "label_logprobs": datasets.List(datasets.Value("float64")), "correct": datasets.Value("bool"),
    "debiased_prediction": datasets.Value("string"),
})


class TaskEvaluator:
    """Evaluate a model on downstream culture tasks.

    Args:
        model: A causal LM, optionally a PEFT model (see :func:`attach_adapters`); or any
            :class:`~culture_align.backends.GenerationBackend` whose ``score`` works, then ``tokenizer`` is None.
        tokenizer: The model's tokenizer (with a chat template); None with a backend.
        tasks: The tasks (:class:`CultureTask`, e.g. from :func:`load_tasks`).
        config: What to measure (:class:`TaskEvaluationConfig`); keyword overrides are accepted too.
        model_name: Name shown in reports (default: ``model.name_or_path``, or the backend's ``model_id``).
        show_progress: Show a tqdm bar per (task, setting).

    Example:
        >>> tasks = load_tasks("culture_tasks/tasks.json", names=["eng_olid_offense"])
        >>> report = TaskEvaluator(model, tok, tasks, max_examples=200).evaluate("tasks-out")
        >>> print(report.to_markdown())
    """

    def __init__(self, model: PreTrainedModel | GenerationBackend, tokenizer: PreTrainedTokenizerBase | None,
                 tasks: Sequence[CultureTask],
                 config: TaskEvaluationConfig | None = None, *, model_name: str | None = None,
                 show_progress: bool = True, **overrides: Any) -> None:
        config = config or TaskEvaluationConfig()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise TypeError(f"unknown task evaluation option {key!r}")
            setattr(config, key, value)
        if not tasks:
            raise ValueError("no tasks to evaluate")
        self.config = config
        self.backend = as_backend(model, tokenizer, batch_size=config.batch_size)
        self.model = getattr(self.backend, "model", None)
        """The local model (None behind a server or vLLM): culture adapters are switched on it."""
        if config.adapters and not hasattr(self.model, "set_adapter"):
            raise ValueError(f"adapters {config.adapters} need a local PEFT model; {self.backend!r} has none")
        self.tasks = list(tasks)
        self.settings = [get_task_setting(s) for s in config.settings]
        self.model_name = model_name or (self.backend.model_id if model is self.backend else
                                         getattr(model, "name_or_path", None) or type(model).__name__)
        self.show_progress = show_progress

    def _activate_adapter(self, culture: str) -> str:
        adapters = self.config.adapters
        if not adapters:
            return ""
        name = adapters.get(culture, adapters.get("*"))
        if name is None:
            raise ValueError(f"no adapter for {culture} in {adapters}")
        self.model.set_adapter(name)
        return name

    def select_examples(self, task: CultureTask) -> tuple[datasets.Dataset, dict[str, Any]]:
        """The task's examples after subsampling, and a record of the subsample."""
        examples = task.load()
        keep = subsample_indices(list(examples["label"]), self.config.max_examples, self.config.subsample,
                                 self.config.seed)
        info = dict(n_total=len(examples), n_selected=len(keep), strategy=self.config.subsample,
                    seed=self.config.seed, max_examples=self.config.max_examples)
        return (examples if len(keep) == len(examples) else examples.select(keep)), info

    def evaluate(self, output_dir: str | Path | None = None) -> TaskReport:
        """Score every (task, setting); write the report to ``output_dir`` when given.

        Returns:
            A :class:`~culture_align.evaluation.task_report.TaskReport`.
        """
        start = time.perf_counter()
        rows: list[dict[str, Any]] = []
        summary: list[dict[str, Any]] = []
        for task in self.tasks:
            examples, sample = self.select_examples(task)
            keys = task.label_keys
            choices = label_choices(len(keys))
            gold = list(examples["label"])
            texts = list(examples["text"])
            majority = max(keys, key=lambda k: (gold.count(k), -keys.index(k)))
            majority_f1 = classification_scores(gold, [majority] * len(gold), keys)["macro_f1"]
            adapter = self._activate_adapter(task.culture)
            for setting in self.settings:
                convs = task_conversations(task, texts, setting)
                with tqdm(total=len(convs), desc=f"{task.name} {setting.name}", disable=not self.show_progress,
                          leave=False) as bar:
                    scores = self.backend.score(convs, [choices] * len(convs), progress=bar.update)
                predicted = [keys[int(np.argmax(s))] for s in scores]
                calibrated = debiased_predictions(scores, keys)
                scored = classification_scores(gold, predicted, keys)
                debiased = classification_scores(gold, calibrated, keys)
                summary.append(dict(task=task.name, setting=setting.name, culture=task.culture,
                                    language=task.language, phenomenon=task.phenomenon, adapter=adapter,
                                    labels=keys, **scored, majority_macro_f1=majority_f1,
                                    debiased_macro_f1=debiased["macro_f1"],
                                    debiased_predicted_counts=debiased["predicted_counts"], sample=sample))
                for ex, s, p, c in zip(examples, scores, predicted, calibrated):
                    rows.append(dict(task=task.name, setting=setting.name, culture=task.culture, adapter=adapter,
                                     row=ex["row"], text=ex["text"], label=ex["label"], prediction=p,
                                     label_logprobs=s.tolist(), correct=p == ex["label"],
                                     debiased_prediction=c))
        predictions = datasets.Dataset.from_list(rows, features=_PREDICTION_FEATURES)
        report = TaskReport(predictions=predictions, summary=summary, model_name=self.model_name,
                            config=self.config.to_dict(), seconds=time.perf_counter() - start)
        if output_dir is not None:
            report.save(output_dir)
        return report
