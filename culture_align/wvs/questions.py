"""Survey questions and the 13 WVS-7 topics.

A :class:`SurveyQuestion` is the unit every loader returns and every prompt is built from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SurveyQuestion",
    "TOPICS",
    "Topic",
    "topic_of",
    "qid_number",
    "ZERO_BASED_QIDS",
    "EXCLUDED_QIDS",
    "is_evaluation_item",
    "wvs_codes_for",
    "MAX_CODE",
    "answer_code",
]


@dataclass(frozen=True)
class Topic:
    """A WVS-7 questionnaire section: ``first``..``last`` are inclusive question numbers."""

    id: str
    name: str
    first: int
    last: int


TOPICS: tuple[Topic, ...] = (
    Topic("social_values", "Social values, attitudes and stereotypes", 1, 45),
    Topic("happiness", "Happiness and well-being", 46, 56),
    Topic("social_capital", "Social capital, trust and organisational membership", 57, 105),
    Topic("economic", "Economic values", 106, 111),
    Topic("corruption", "Perceptions of corruption", 112, 120),
    Topic("migration", "Perceptions of migration", 121, 130),
    Topic("security", "Perceptions of security", 131, 151),
    Topic("postmaterialism", "Index of postmaterialism", 152, 157),
    Topic("science_technology", "Perceptions about science and technology", 158, 163),
    Topic("religion", "Religious values", 164, 175),
    Topic("ethics_norms", "Ethical values and norms", 176, 198),
    Topic("political_participation", "Political interest and political participation", 199, 234),
    Topic("political_culture", "Political culture and political regimes", 235, 259),
)
"""The 13 WVS-7 topics in questionnaire order (Q234A belongs to political participation)."""

_QID = re.compile(r"^Q(\d+)([A-Z]?)$")


def qid_number(qid: str) -> int:
    """``"Q234A"`` -> 234. Raises ``ValueError`` for ids that are not WVS question numbers."""
    m = _QID.match(qid)
    if not m:
        raise ValueError(f"{qid!r} is not a WVS question id (expected 'Q' + number, e.g. 'Q27' or 'Q234A')")
    return int(m.group(1))


def topic_of(qid: str) -> str:
    """The topic id of a WVS-7 question id; ``"demographics"`` for Q260 and above."""
    n = qid_number(qid)
    for topic in TOPICS:
        if topic.first <= n <= topic.last:
            return topic.id
    return "demographics"


ZERO_BASED_QIDS: frozenset[str] = frozenset(
    [f"Q{i}" for i in range(94, 106)] + ["Q119"] + [f"Q{i}" for i in range(122, 130)]
    + [f"Q{i}" for i in range(241, 250)]
)
"""Items whose WVS answer codes run 0..n-1 (all others run 1..n)."""

EXCLUDED_QIDS: frozenset[str] = frozenset(["Q223"] + [f"Q{i}" for i in range(260, 291)])
"""Demographics (Q260-Q290) and party choice (Q223): never alignment items."""


def is_evaluation_item(qid: str) -> bool:
    """True for the 259 WVS-7 items used for alignment (everything but demographics and party choice)."""
    return qid not in EXCLUDED_QIDS and topic_of(qid) != "demographics"


MAX_CODE = 1_000_000
"""The largest answer code an option may have. WVS answer codes are small integers (1..n, or 0..n-1 for
:data:`ZERO_BASED_QIDS`; the longest scales run to 10), so this bound only refuses junk, such as a code of
10**12 that would make a table indexed by code huge."""

_DECIMAL = re.compile(r"\s*[+-]?[0-9]{1,20}\s*")


def answer_code(value: object, where: str) -> int:
    """``value`` as an answer code: an integer in ``0..MAX_CODE``.

    Accepted: an ``int`` (or numpy integer), a finite float without a fraction (``2.0``; JSON writers emit
    those), or a string of ASCII decimal digits (the keys of a JSON object). Refused with a ``ValueError``
    naming ``where``: booleans, floats with a fraction (``1.5`` is never truncated to 1), NaN and infinities,
    other strings and types, codes above :data:`MAX_CODE`, and negative codes, which in WVS data mean a
    missing answer (-1 don't know, -2 no answer, -4 not asked, -5 missing) and so never stand for an option.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: the answer code must be an integer, got the boolean {value!r}")
    if isinstance(value, (int, np.integer)):
        code = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        code = int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        code = int(value)
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ValueError(f"{where}: the answer code must be an integer in 0..{MAX_CODE}, got {shown}")
    if code < 0:
        raise ValueError(f"{where}: the answer code {code} is negative; negative codes mean a missing answer "
                         "in WVS data and cannot stand for an option")
    if code > MAX_CODE:
        raise ValueError(f"{where}: the answer code {code} is larger than {MAX_CODE} (WVS codes are small "
                         "integers)")
    return code


def wvs_codes_for(qid: str, num_options: int) -> tuple[int, ...]:
    """The WVS answer codes of an item with ``num_options`` options, in option order."""
    start = 0 if qid in ZERO_BASED_QIDS else 1
    return tuple(range(start, start + num_options))


@dataclass(frozen=True)
class SurveyQuestion:
    """One closed survey item.

    Attributes:
        qid: Item id: a WVS question number (``"Q27"``) or a namespaced generated id (``"gen-religion-3fa2"``).
        text: The question or statement shown to the model.
        options: Option labels, in the order of ``codes``.
        codes: The integer answer code of each option (WVS coding: 1..n, or 0..n-1 for some items); each is
            checked with :func:`answer_code` (an integer in ``0..MAX_CODE``, never a bool or a fraction).
        topic: A topic id from :data:`TOPICS` (or any string for non-WVS items).

    Raises:
        ValueError: naming the question, for an illegal or repeated code, fewer than 2 options, or a number of
            options that differs from the number of codes.
    """

    qid: str
    text: str
    options: tuple[str, ...]
    codes: tuple[int, ...]
    topic: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "codes", tuple(answer_code(c, f"question {self.qid}") for c in self.codes))
        if len(self.options) != len(self.codes):
            raise ValueError(
                f"question {self.qid}: {len(self.options)} options but {len(self.codes)} codes"
            )
        if len(self.options) < 2:
            raise ValueError(f"question {self.qid}: needs at least 2 options, got {len(self.options)}")
        if len(set(self.codes)) != len(self.codes):
            raise ValueError(f"question {self.qid}: repeated codes {self.codes}")
        if not self.topic and _QID.match(self.qid):
            object.__setattr__(self, "topic", topic_of(self.qid))

    @property
    def num_options(self) -> int:
        return len(self.options)

    @property
    def is_numeric_scale(self) -> bool:
        """True when every label is just its own code (``"1"``..``"10"``): a scale explained in the text."""
        return all(label.strip() == str(code) for label, code in zip(self.options, self.codes))

    def index_of(self, code: int) -> int:
        """Position of ``code`` in :attr:`codes` (raises ``ValueError`` for an illegal code, a fraction
        included: ``1.5`` is not truncated to 1)."""
        try:
            return self.codes.index(answer_code(code, f"question {self.qid}"))
        except ValueError:
            raise ValueError(f"question {self.qid}: {code!r} is not one of its codes {self.codes}") from None

    def to_dict(self) -> dict:
        return {"qid": self.qid, "text": self.text, "options": list(self.options),
                "codes": list(self.codes), "topic": self.topic}

    @classmethod
    def from_dict(cls, row: dict) -> SurveyQuestion:
        return cls(qid=row["qid"], text=row["text"], options=tuple(row["options"]),
                   codes=tuple(row["codes"]), topic=row.get("topic", ""))
