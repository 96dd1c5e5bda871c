"""Prompts for the CultureSPA data pipeline: the one place where its wording lives.

Two jobs:

- **question generation** (self-instruct): the model sees five survey questions of one WVS topic (three seed
  items of the topic and two questions it wrote before; seeds fill in while fewer have been written) and
  writes one new, clearly different question on the topic, with its options, as JSON
  ``{"question": str, "options": [str, ...]}``;
- **answering** a generated question. Plain answering uses the survey settings of
  :mod:`culture_align.prompts.wvs` unchanged (``culture-unaware`` and ``culture-aware``: the very prompts the
  evaluator scores with). Two culture-aware variants exist: *cross-culture thinking* (the system prompt
  also names the three most and the three least similar cultures) and *self-alignment* (k WVS items
  answered as the target culture's people mostly answer them come first, as earlier turns of the chat).

Changing any wording here should bump :data:`PROMPT_VERSION`: it is part of the ids and the provenance of
the generated records, so old and new data never mix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..chat import Conversation
from ..cultures import Culture
from ..wvs.questions import SurveyQuestion
from .wvs import SETTINGS, SurveyPromptTemplate, build_conversation

__all__ = [
    "PROMPT_VERSION",
    "QUESTION_SYSTEM",
    "QUESTION_USER",
    "UNAWARE_SETTING",
    "AWARE_SETTING",
    "format_question_example",
    "build_question_generation_conversation",
    "cross_culture_setting",
    "build_answer_conversation",
    "build_self_alignment_conversation",
]

PROMPT_VERSION = "culturespa-v1"
"""Version of the wording below; part of every generated question's id and of the provenance."""


# ----------------------------------------------------------------------------------------------------------
# Question generation
# ----------------------------------------------------------------------------------------------------------

QUESTION_SYSTEM = (
    "You write questions for an international survey of people's values and beliefs, in the style of the "
    "World Values Survey. You answer with JSON only."
)

QUESTION_USER = """Below are {num_examples} questions of the survey section "{topic_name}", each with its answer \
options.

{examples}

Write one new question for the section "{topic_name}". It must ask about something clearly different from \
every question above (not a rewording of one of them), make sense to people in any country, and come with \
2 to 11 answer options that cover the possible answers. If the options are the numbers of a scale, the \
question must say what its lowest and highest numbers mean.

Answer with one JSON object: {{"question": "...", "options": ["...", "..."]}}."""


def format_question_example(text: str, options: Sequence[str]) -> str:
    """One example as the model should answer: ``{"question": ..., "options": [...]}`` on one line."""
    return json.dumps({"question": text, "options": list(options)}, ensure_ascii=False)


def build_question_generation_conversation(topic_name: str, examples: Sequence[Mapping[str, Any]]
                                           ) -> Conversation:
    """The chat asking for one new question of ``topic_name``.

    Args:
        topic_name: The WVS section's name (``"Religious values"``).
        examples: Records with ``text`` and ``options`` (seed items first, then generated questions), shown
            numbered in this order.
    """
    if not examples:
        raise ValueError(f"question generation for {topic_name!r} needs at least one example")
    lines = "\n".join(f"Question {i}: {format_question_example(ex['text'], ex['options'])}"
                      for i, ex in enumerate(examples, start=1))
    user = QUESTION_USER.format(num_examples=len(examples), topic_name=topic_name, examples=lines)
    return [{"role": "system", "content": QUESTION_SYSTEM}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------------------------------------
# Answering
# ----------------------------------------------------------------------------------------------------------

UNAWARE_SETTING: SurveyPromptTemplate = SETTINGS["culture-unaware"]
"""Culture-unaware answering: the evaluator's ``culture-unaware`` setting, unchanged."""

AWARE_SETTING: SurveyPromptTemplate = SETTINGS["culture-aware"]
"""Culture-aware answering (and the system prompt of every training record): the evaluator's setting."""

CROSS_CULTURE_SENTENCE = (
    " People from {most_similar} tend to share many of your values; people from {least_similar} tend to see "
    "things most differently from you. Keep in mind what sets your own culture apart when you answer."
)


def _join_names(cultures: Sequence[Culture]) -> str:
    names = [c.name for c in cultures]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def cross_culture_setting(most_similar: Sequence[Culture], least_similar: Sequence[Culture]
                          ) -> SurveyPromptTemplate:
    """The culture-aware setting whose system prompt also names the most and least similar cultures.

    The culture itself stays a placeholder (``{culture_phrase}``), so the template is used like any other
    with :func:`~culture_align.prompts.wvs.build_conversation`.
    """
    if not most_similar or not least_similar:
        raise ValueError("cross-culture thinking needs at least one most similar and one least similar culture")
    sentence = CROSS_CULTURE_SENTENCE.format(most_similar=_join_names(most_similar),
                                             least_similar=_join_names(least_similar))
    return SurveyPromptTemplate(name="culture-aware-cross-culture", system=AWARE_SETTING.system + sentence,
                                user=AWARE_SETTING.user)


def build_answer_conversation(question: SurveyQuestion, culture: Culture | None = None,
                              template: SurveyPromptTemplate | None = None) -> Conversation:
    """The chat asking ``question``: culture-unaware without a culture, culture-aware with one (or under
    ``template``)."""
    if template is None:
        template = AWARE_SETTING if culture is not None else UNAWARE_SETTING
    return build_conversation(template, question, culture)


def build_self_alignment_conversation(question: SurveyQuestion, culture: Culture,
                                      examples: Sequence[tuple[SurveyQuestion, int]]) -> Conversation:
    """Culture-aware chat where ``examples`` come first as answered turns.

    Args:
        question: The question to answer (last user turn).
        culture: The target culture (system prompt).
        examples: ``(item, code)`` pairs: each item asked like ``question`` and answered with ``code`` (e.g.
            the culture's modal WVS answer), in this order.
    """
    messages = build_conversation(AWARE_SETTING, question, culture)
    turns: Conversation = []
    for item, code in examples:
        if int(code) not in item.codes:
            raise ValueError(f"self-alignment example {item.qid}: {code!r} is not one of its codes {item.codes}")
        turns.append(build_conversation(AWARE_SETTING, item, culture)[-1])
        turns.append({"role": "assistant", "content": str(int(code))})
    return messages[:-1] + turns + messages[-1:]
