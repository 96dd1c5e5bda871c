"""Prompts for the CultureLLM recipe: the one place where its wording lives.

Three kinds of prompt:

- **training records**: system = an assistant that knows the culture well; user = a survey item (a seed or
  one of its augmented rewordings) with its numbered options, asking for one option; assistant = the
  option's number (its WVS code). The options are rendered by :func:`culture_align.prompts.wvs.format_options`,
  so a trained model sees the same option layout as the WVS evaluator.
- **paraphrasing** (augmentation step 1): the teacher rewrites a seed ``n`` times with a different sentence
  structure and the same meaning; the answer is JSON ``{"rewrites": [str, ...]}``. A worked example (a
  user turn and the answer) comes first.
- **synonyms** (augmentation step 2): the teacher proposes synonyms for the content words of a sentence
  (nouns, verbs, adjectives, adverbs; the candidates are listed for it); the answer is JSON
  ``{"words": [{"word": str, "synonyms": [str, ...]}, ...]}``, again after a worked example.

Changing any wording here should bump :data:`PROMPT_VERSION`: it is part of every record id and of the
provenance, so old and new data never mix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ..cultures import Culture
from ..wvs.questions import SurveyQuestion
from .wvs import format_options

__all__ = [
    "PROMPT_VERSION",
    "build_training_messages",
    "build_paraphrase_conversation",
    "build_synonym_conversation",
    "render_item",
]

PROMPT_VERSION = "culturellm-v1"
"""Version of the wording below; part of every record id and of the provenance."""

# ----------------------------------------------------------------------------------------------------------
# Training records
# ----------------------------------------------------------------------------------------------------------

TRAIN_SYSTEM = (
    "You are an assistant who knows {adjective} culture deeply: the values, beliefs and ways of life of its "
    "people. You answer the way a typical {adjective} person would."
)

TRAIN_USER = """{text}
{options}
Choose exactly one option and reply with its number only."""

# ----------------------------------------------------------------------------------------------------------
# Augmentation step 1: structural rewrites
# ----------------------------------------------------------------------------------------------------------

PARAPHRASE_SYSTEM = (
    "You are a careful editor of survey questionnaires. You reword survey items without changing what they "
    "ask. You answer with JSON only."
)

PARAPHRASE_USER = """Here is a survey item and the answers people can give to it:

Item: {text}
Answers: {options}

Write {n} new versions of the item. Each version must:
- ask exactly the same thing, so that every answer above still fits it;
- use a clearly different sentence structure from the item and from the other versions (for example turn \
a question into a statement to agree or disagree with, reorder the clauses, or use the passive voice);
- be one sentence in English, without the answers.

Answer with one JSON object whose key "rewrites" holds the list of your {n} versions."""

PARAPHRASE_EXAMPLE_ITEM = "How important is work in your life?"
PARAPHRASE_EXAMPLE_OPTIONS = "1. Very important; 2. Rather important; 3. Not very important; 4. Not at all important"
PARAPHRASE_EXAMPLE_REWRITES = (
    "In your life, how much importance do you give to work?",
    "Would you say that work is important in your life?",
    "Work is important in my life: how far is that true for you?",
    "How much does work matter to you in your life?",
    "To what degree is work an important part of your life?",
)
"""A worked example shown before the real item (one user turn, one assistant turn): small teachers copy the
format far more reliably from an example than from a description."""

# ----------------------------------------------------------------------------------------------------------
# Augmentation step 2: synonyms of content words
# ----------------------------------------------------------------------------------------------------------

SYNONYM_SYSTEM = "You are a lexicographer. You answer with JSON only."

SYNONYM_USER = """Sentence: {text}

For each of these words of the sentence: {words}
give up to {k} synonyms that could replace the word in this very sentence without changing its meaning \
(same part of speech and the same grammatical form: plural for a plural noun, past tense for a past verb). \
Skip a word that has no good synonym here.

Answer with one JSON object whose key "words" holds a list of objects, each with the keys "word" (a word \
from the list) and "synonyms" (its synonyms)."""

SYNONYM_EXAMPLE_TEXT = "How important is work in your life?"
SYNONYM_EXAMPLE_WORDS = ("important", "work", "life")
SYNONYM_EXAMPLE_ANSWER = (
    ("important", ("significant", "essential", "valuable")),
    ("work", ("employment", "your job", "labour")),
    ("life", ("existence", "daily life")),
)
"""The worked example of the synonym prompt."""

def _options_line(question: SurveyQuestion) -> str:
    """The options on one line, for teacher prompts (``1. Agree; 2. Disagree``)."""
    if question.is_numeric_scale:
        return f"a number from {min(question.codes)} to {max(question.codes)}"
    return "; ".join(f"{code}. {label}" for code, label in zip(question.codes, question.options))


def render_item(question: SurveyQuestion, text: str | None = None) -> str:
    """The user turn of a training record: ``text`` (default: the question's own text) with the question's
    numbered options and the instruction to answer with one number."""
    shown = question if text is None else replace(question, text=text)
    return TRAIN_USER.format(text=shown.text, options=format_options(shown))


def build_training_messages(culture: Culture, question: SurveyQuestion, text: str,
                            answer_code: int) -> list[dict[str, str]]:
    """A training conversation: system (knows ``culture``), user (``text`` with ``question``'s options),
    assistant (``answer_code`` as a bare number)."""
    return [
        {"role": "system", "content": TRAIN_SYSTEM.format(adjective=culture.adjective)},
        {"role": "user", "content": render_item(question, text)},
        {"role": "assistant", "content": str(int(answer_code))},
    ]


def _example_json(key: str, value) -> str:
    return json.dumps({key: value}, ensure_ascii=False)


def build_paraphrase_conversation(question: SurveyQuestion, num_rewrites: int) -> list[dict[str, str]]:
    """The teacher prompt asking for ``num_rewrites`` structural rewrites of ``question.text``: the system
    turn, a worked example (user + assistant) and the item."""
    shown = min(num_rewrites, len(PARAPHRASE_EXAMPLE_REWRITES))
    example = PARAPHRASE_USER.format(text=PARAPHRASE_EXAMPLE_ITEM, options=PARAPHRASE_EXAMPLE_OPTIONS, n=shown)
    user = PARAPHRASE_USER.format(text=question.text, options=_options_line(question), n=num_rewrites)
    return [{"role": "system", "content": PARAPHRASE_SYSTEM},
            {"role": "user", "content": example},
            {"role": "assistant", "content": _example_json("rewrites", list(PARAPHRASE_EXAMPLE_REWRITES[:shown]))},
            {"role": "user", "content": user}]


def build_synonym_conversation(text: str, words: Sequence[str], synonyms_per_word: int) -> list[dict[str, str]]:
    """The teacher prompt asking for up to ``synonyms_per_word`` in-context synonyms of each of ``words``: the
    system turn, a worked example (user + assistant) and the sentence."""
    example = SYNONYM_USER.format(text=SYNONYM_EXAMPLE_TEXT, words=", ".join(f'"{w}"' for w in SYNONYM_EXAMPLE_WORDS),
                                  k=synonyms_per_word)
    answer = [{"word": w, "synonyms": list(s[:synonyms_per_word])} for w, s in SYNONYM_EXAMPLE_ANSWER]
    user = SYNONYM_USER.format(text=text, words=", ".join(f'"{w}"' for w in words), k=synonyms_per_word)
    return [{"role": "system", "content": SYNONYM_SYSTEM},
            {"role": "user", "content": example},
            {"role": "assistant", "content": _example_json("words", answer)},
            {"role": "user", "content": user}]
