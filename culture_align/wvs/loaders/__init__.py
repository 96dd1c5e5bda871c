"""Loaders: every source of human survey data becomes one :class:`~culture_align.wvs.data.WVSData`.

Supported sources (the user brings the data; none is shipped):

- a question list (:func:`load_questions`): the WVS-7 shape ``{"Q_id", "question", "option_lst"}`` or ours
  ``{"qid", "text", "options", "codes", "topic"}``;
- a distributions file ``{ISO3: {qid: {code: proportion}}}`` (:func:`load_distributions`), with an optional
  ``<name>.counts.json`` sidecar giving the number of valid answers;
- the official respondent-level WVS Wave 7 CSV (:func:`load_wvs_csv`), which also yields personas;
- GlobalOpinionQA (the Hub dataset ``Anthropic/llm_global_opinions``) exported to Parquet, JSON, JSON lines
  or CSV (:func:`load_global_opinions`);
- :func:`load_wvs` picks the right one from a path, or reads a GlobalOpinionQA-shaped Hub dataset named
  explicitly as ``hf://owner/name`` (``load_wvs("hf://Anthropic/llm_global_opinions")``); a source without
  ``hf://`` is always a local path.

Every file is read through :mod:`culture_align.input_files` (strict UTF-8, no repeated JSON key or CSV
column); every answer code is checked with :func:`~culture_align.wvs.questions.answer_code`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import datasets

from ...input_files import read_json
from ..data import WVSData
from .distributions import load_distributions
from .global_opinions import _GOQA_COLUMNS, _global_opinions, load_global_opinions
from .question_files import PathLike, Questions, bundled_questions, load_questions
from .survey_csv import _read_csv_header, load_wvs_csv, persona_features

__all__ = [
    "load_questions",
    "load_distributions",
    "load_wvs_csv",
    "load_global_opinions",
    "load_wvs",
    "bundled_questions",
    "persona_features",
    "HUB_PREFIX",
    "hub_dataset_id",
]

logger = logging.getLogger(__name__)

_FOLDER_FILES = ("wvs_questions.json", "proportions_group_by_country.json")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

HUB_PREFIX = "hf://"
"""How a Hub dataset is named where a WVS source is expected: ``hf://owner/name``. A source without it is
always a local path, so a mistyped path is reported as missing instead of being downloaded from the Hub."""


def hub_dataset_id(source: PathLike) -> str | None:
    """The Hub dataset id of an explicit Hub source (``"hf://owner/name"`` or the ``huggingface_hub`` form
    ``"hf://datasets/owner/name"`` -> ``"owner/name"``); ``None`` for anything else (a local path).

    Raises:
        ValueError: for an ``hf://`` source that does not name a dataset as ``owner/name``.
    """
    if not isinstance(source, str) or not source.startswith(HUB_PREFIX):
        return None
    repo_id = source[len(HUB_PREFIX):]
    if repo_id.startswith("datasets/") and repo_id.count("/") == 2:
        repo_id = repo_id[len("datasets/"):]
    if not _HUB_ID.fullmatch(repo_id):
        raise ValueError(f"{source}: a Hub dataset is written {HUB_PREFIX}owner/name "
                         f"(e.g. {HUB_PREFIX}Anthropic/llm_global_opinions)")
    return repo_id


def _missing_source(path: Path) -> FileNotFoundError:
    """The error for a source that is neither an existing path nor an explicit Hub dataset."""
    text = str(path)
    hint = (f"; if you meant the Hub dataset {text}, write {HUB_PREFIX}{text}" if _HUB_ID.fullmatch(text)
            else f"; a Hub dataset is written {HUB_PREFIX}owner/name")
    return FileNotFoundError(f"{path}: no such file or folder{hint}")


def load_wvs(source: PathLike, questions: Questions | PathLike | None = None, **kwargs: Any) -> WVSData:
    """Load human survey data from whatever ``source`` is.

    - a folder with ``wvs_questions.json`` and ``proportions_group_by_country.json``: questions (unless
      given) + distributions;
    - a ``.csv``: :func:`load_wvs_csv` (or :func:`load_global_opinions` when the header has ``selections``);
    - a ``.json`` object ``{ISO3: {qid: {code: proportion}}}``: :func:`load_distributions`, with
      ``questions`` or the ``wvs_questions.json`` beside the file; a ``.json`` list of GlobalOpinionQA rows:
      :func:`load_global_opinions`;
    - a ``.parquet`` or ``.jsonl``: :func:`load_global_opinions`;
    - a Hub dataset named explicitly, ``"hf://owner/name"`` (e.g. ``"hf://Anthropic/llm_global_opinions"``):
      read with :func:`datasets.load_dataset` (``split`` defaults to ``"train"``; other ``kwargs`` go to it)
      and loaded as GlobalOpinionQA. Without the ``hf://`` prefix a source is always a local path: a path
      that does not exist is an error, never a download (a mistyped ``shared/wvs`` must not fetch a
      stranger's dataset ``shared/wvs`` and use it as the human figures).

    ``kwargs`` go to the chosen loader.

    Raises:
        FileNotFoundError: for a local path that does not exist (naming it, and how to write a Hub dataset).
        ValueError: naming the file, for anything else it cannot read.
    """
    repo_id = hub_dataset_id(source)
    if repo_id is not None:
        return _load_hub(repo_id, questions, **kwargs)
    path = Path(source)
    if not path.exists():
        raise _missing_source(path)
    if path.is_dir():
        question_file, distribution_file = (path / name for name in _FOLDER_FILES)
        if not (question_file.is_file() and distribution_file.is_file()):
            raise ValueError(f"{path}: a WVS data folder must hold {' and '.join(_FOLDER_FILES)}")
        return load_distributions(distribution_file, questions if questions is not None else question_file,
                                  **kwargs)
    if not path.is_file():
        raise ValueError(f"{path}: neither a file nor a folder")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if "selections" in _read_csv_header(path)[0]:
            return load_global_opinions(path, questions, **kwargs)
        return load_wvs_csv(path, questions, **kwargs)
    if suffix in (".parquet", ".jsonl"):
        return load_global_opinions(path, questions, **kwargs)
    if suffix == ".json":
        return _load_json_source(path, questions, **kwargs)
    raise ValueError(f"{path}: cannot tell what this is; load_wvs reads a WVS data folder, a WVS-7 CSV, a "
                     ".json distributions file, or GlobalOpinionQA as .parquet/.jsonl/.json/.csv")


def _load_json_source(path: Path, questions: Questions | PathLike | None, **kwargs: Any) -> WVSData:
    data = read_json(path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "selections" in data[0]:
        return load_global_opinions(path, questions, **kwargs)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a distributions object {{ISO3: {{qid: {{code: p}}}}}} or "
                         "a list of GlobalOpinionQA rows (a question list goes in questions=...)")
    if questions is None:
        beside = path.parent / _FOLDER_FILES[0]
        if not beside.is_file():
            raise ValueError(f"{path}: a distributions file needs its questions: pass questions=... (a path, "
                             f"a dict, or bundled_questions()) or put {_FOLDER_FILES[0]} beside it")
        questions = beside
    return load_distributions(path, questions, **kwargs)


def _load_hub(repo_id: str, questions: Questions | PathLike | None, split: str = "train",
              **kwargs: Any) -> WVSData:
    """A GlobalOpinionQA-shaped dataset from the Hub (or the local ``datasets`` cache); ``repo_id`` is
    ``owner/name``, without the ``hf://`` of :func:`load_wvs`. The data's ``source`` is ``hf://owner/name[split]``
    (what :func:`hub_dataset_id` reads back, so a local path is never taken for a Hub id)."""
    table = datasets.load_dataset(repo_id, split=split, **kwargs)
    if not set(_GOQA_COLUMNS) <= set(table.column_names):
        raise ValueError(f"{repo_id}: load_wvs reads Hub datasets in the GlobalOpinionQA layout (columns "
                         f"{', '.join(_GOQA_COLUMNS)}); this one has {', '.join(table.column_names)}")
    return _global_opinions(table.to_list(), f"{HUB_PREFIX}{repo_id}[{split}]", questions)
