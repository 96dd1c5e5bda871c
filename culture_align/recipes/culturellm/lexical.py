"""Content words and word substitution for the lexical step of CultureLLM augmentation, without a tagger.

Content words (nouns, verbs, adjectives, adverbs) are found by elimination: every word of the sentence that
is not an English function word (:data:`FUNCTION_WORDS`: articles, pronouns, prepositions, conjunctions,
auxiliary and modal verbs, negations, question words, quantifiers) and is at least three letters long. The
teacher is then asked for synonyms of those words only, and told to skip any that has no synonym in context,
so a function word that slips through costs nothing. No NLTK or spaCy model is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["FUNCTION_WORDS", "content_words", "substitute", "normalize_text", "lexical_variants_of"]

FUNCTION_WORDS: frozenset[str] = frozenset("""
a an the this that these those there here such
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves one ones someone anyone everyone nobody
something anything everything nothing who whom whose which what whatever whoever when where why how
whether if then than so as because since while although though unless until till once
and or but nor yet either neither both not no yes
of in on at by for with without within about above below under over into onto upon from to toward towards
through throughout across along among amongst around before after behind beside besides between beyond
during except inside outside near off out up down against via per
be am is are was were been being have has had having do does did done doing
will would shall should can could may might must ought
all any each every few more most other some own same many much several very too also just only even
still again ever never always often sometimes rather quite
let lets it's don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't cannot couldn't
shouldn't i'm you're they're we're
""".split())
"""English function words (lower case): never offered for substitution."""

_WORD = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*")
_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.?!;:,]+$")


def content_words(text: str, max_words: int | None = None, min_length: int = 3) -> list[str]:
    """The distinct content words of ``text`` in order of appearance (lower case), at most ``max_words``.

    A word is kept unless it is in :data:`FUNCTION_WORDS` or shorter than ``min_length`` letters.
    """
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = match.group(0).lower().replace("\u2019", "'")
        if len(word) >= min_length and word not in FUNCTION_WORDS and word not in seen:
            seen[word] = None
            if max_words is not None and len(seen) >= max_words:
                break
    return list(seen)


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def substitute(text: str, word: str, replacement: str) -> str:
    """``text`` with every whole-word, case-insensitive occurrence of ``word`` replaced by ``replacement``
    (capitalised where the original was). Returns ``text`` unchanged when ``word`` does not occur."""
    pattern = re.compile(rf"(?<![A-Za-z'\u2019-]){re.escape(word)}(?![A-Za-z'\u2019-])", re.IGNORECASE)
    return pattern.sub(lambda m: _match_case(m.group(0), replacement), text)


def normalize_text(text: str) -> str:
    """The form used to detect duplicates: case-folded, spaces collapsed, trailing punctuation dropped."""
    return _TRAILING.sub("", _SPACES.sub(" ", text.strip().casefold()))


def lexical_variants_of(text: str, synonyms: Mapping[str, Sequence[str]],
                        max_variants: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """Variants of ``text`` made by synonym substitution, in a fixed order, at most ``max_variants``.

    First one word at a time, round-robin over the words (each word's first synonym, then each word's
    second, ...), then, when two or more words have synonyms, all words at once with their k-th synonym.
    Variants equal to ``text`` (a word that does not occur) or to an earlier variant are skipped.

    Returns:
        ``[(variant, [(word, synonym), ...])]``.
    """
    out: list[tuple[str, list[tuple[str, str]]]] = []
    words = [w for w in synonyms if synonyms[w]]
    depth = max((len(synonyms[w]) for w in words), default=0)
    plans: list[list[tuple[str, str]]] = [[(w, synonyms[w][k])] for k in range(depth) for w in words
                                          if k < len(synonyms[w])]
    if len(words) > 1:
        plans += [[(w, synonyms[w][k]) for w in words if k < len(synonyms[w])] for k in range(depth)]
    seen = {normalize_text(text)}
    for plan in plans:
        if len(out) >= max_variants:
            break
        variant = text
        for word, synonym in plan:
            variant = substitute(variant, word, synonym)
        if normalize_text(variant) not in seen:
            seen.add(normalize_text(variant))
            out.append((variant, plan))
    return out
