"""Stage 3: CRQPC (culture-related question-answer pair collection) and the training conversations.

For every (generated question, culture), the culture-aware answer counts as a cultural difference when it
differs from the culture-unaware answer:

- ``criterion="argmax"`` (default, the reference's rule): both answers are valid and their codes differ
  (in log-prob mode the codes are the argmax of each distribution);
- ``criterion="js"``: both are valid and the Jensen-Shannon distance between the two distributions (natural
  log, in [0, sqrt(ln 2)], computed by the alignment metric) is at least ``js_threshold``: a shift of
  belief counts even when the top answer stays.

Each kept pair becomes a training conversation: system = the culture-aware survey prompt for the culture,
user = the question with its numbered options (exactly as :func:`~culture_align.prompts.wvs.build_conversation`
renders them for evaluation), assistant = the code of the culture-aware answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets

from ...cultures import Culture, get_culture
from ...prompts.culturespa import build_answer_conversation
from ...wvs.questions import SurveyQuestion
from .schemas import ANSWER_FEATURES, TRAIN_FEATURES, stable_id, survey_question, to_dataset

__all__ = ["CRQPCCriterion", "CRQPCResult", "is_changed", "training_messages", "collect_pairs"]

CRQPCCriterion = Literal["argmax", "js"]


def is_changed(answer: dict[str, Any], criterion: CRQPCCriterion = "argmax", js_threshold: float = 0.1) -> bool:
    """Whether one answers-table row counts as a cultural difference (see the module docstring)."""
    if answer["aware_answer"] is None or answer["unaware_answer"] is None:
        return False
    if criterion == "argmax":
        return answer["aware_answer"] != answer["unaware_answer"]
    if criterion == "js":
        return answer["js_distance"] is not None and answer["js_distance"] >= js_threshold
    raise ValueError(f"unknown CRQPC criterion {criterion!r}: use 'argmax' or 'js'")


def training_messages(question: SurveyQuestion, culture: str | Culture, answer: int) -> list[dict[str, str]]:
    """The training conversation: culture-aware system prompt, the question with numbered options, the code."""
    if int(answer) not in question.codes:
        raise ValueError(f"question {question.qid}: {answer!r} is not one of its codes {question.codes}")
    return build_answer_conversation(question, get_culture(culture)) + [
        {"role": "assistant", "content": str(int(answer))}]


@dataclass
class CRQPCResult:
    """Output of :func:`collect_pairs`.

    Attributes:
        answers: The answers table with ``changed`` set.
        train: The training conversations (:data:`TRAIN_FEATURES`), one per changed pair.
        stats: Per culture: pairs, valid pairs, changed, changed share (of valid pairs); and totals.
    """

    answers: datasets.Dataset
    train: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)


def collect_pairs(answers: datasets.Dataset, questions: datasets.Dataset, *, criterion: CRQPCCriterion = "argmax",
                  js_threshold: float = 0.1, cultures: Sequence[str] | None = None) -> CRQPCResult:
    """Mark the changed (question, culture) pairs and build their training conversations.

    Args:
        answers: The answers table (:data:`ANSWER_FEATURES`).
        questions: The generated questions the answers refer to.
        criterion: ``"argmax"`` (default) or ``"js"``.
        js_threshold: Jensen-Shannon distance from which a pair counts as changed (``js`` criterion).
        cultures: Cultures to report in ``stats`` even without answers (default: those in ``answers``).

    Raises:
        ValueError: for an unknown criterion, or an answer whose question is not in ``questions``.
    """
    if criterion not in ("argmax", "js"):
        raise ValueError(f"unknown CRQPC criterion {criterion!r}: use 'argmax' or 'js'")
    if criterion == "js" and not js_threshold > 0:
        raise ValueError(f"js_threshold must be > 0, got {js_threshold}")
    by_id = {row["id"]: survey_question(row) for row in questions.to_list()}
    marked, train = [], []
    per_culture: dict[str, dict[str, Any]] = {c: {"pairs": 0, "valid_pairs": 0, "changed": 0}
                                              for c in (cultures or [])}
    for row in answers.to_list():
        if row["question_id"] not in by_id:
            raise ValueError(f"answer {row['id']}: question {row['question_id']!r} is not in the questions table")
        changed = is_changed(row, criterion, js_threshold)
        marked.append({**row, "changed": changed})
        counts = per_culture.setdefault(row["culture"], {"pairs": 0, "valid_pairs": 0, "changed": 0})
        counts["pairs"] += 1
        counts["valid_pairs"] += row["aware_answer"] is not None and row["unaware_answer"] is not None
        counts["changed"] += changed
        if not changed:
            continue
        question = by_id[row["question_id"]]
        train.append({
            "id": stable_id("culturespa-train", row["id"], criterion, js_threshold if criterion == "js" else None),
            "messages": training_messages(question, row["culture"], row["aware_answer"]), "task": "survey",
            "culture": row["culture"], "question_id": row["question_id"], "topic": row["topic"],
            "answer": row["aware_answer"], "unaware_answer": row["unaware_answer"],
            "aware_probs": row["aware_probs"], "unaware_probs": row["unaware_probs"],
            "js_distance": row["js_distance"]})
    for counts in per_culture.values():
        counts["changed_share"] = round(counts["changed"] / counts["valid_pairs"], 4) if counts["valid_pairs"] else None
    valid = sum(c["valid_pairs"] for c in per_culture.values())
    stats = {"criterion": criterion, "js_threshold": js_threshold if criterion == "js" else None,
             "pairs": len(marked), "valid_pairs": valid, "changed": len(train),
             "changed_share": round(len(train) / valid, 4) if valid else None, "per_culture": per_culture}
    return CRQPCResult(to_dataset(marked, ANSWER_FEATURES), to_dataset(train, TRAIN_FEATURES), stats)
