"""Similarity between cultures, for CultureSPA's cross-culture thinking prompt.

A similarity table is ``{ISO3: {other ISO3: score}}`` (higher = more alike). It is computed from the WVS
modal answers (:func:`culture_similarity`) or read from a file of that shape (:func:`load_culture_similarity`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ...cultures import Culture, get_culture
from ...input_files import parse_json, read_text
from ...metric import alignment_math
from ...wvs.data import WVSData

__all__ = ["CultureSimilarity", "culture_similarity", "load_culture_similarity", "most_and_least_similar"]

CultureSimilarity = dict[str, dict[str, float]]
"""``{ISO3: {other ISO3: score}}``; higher means more alike."""


def culture_similarity(wvs: WVSData, cultures: list[str] | None = None) -> CultureSimilarity:
    """Similarity of every pair of cultures from their modal WVS answers (0-100, symmetric).

    The score of cultures a and b is the CultureSPA alignment score of a's modal answers against b's, over
    the items both answered: ``100 * (1 - ||m_a - m_b||_2 / sqrt(sum_q (n_q - 1)^2))`` (computed by the
    alignment metric, :func:`culture_align.metric.alignment_math`). This is how CultureSPA's
    ``country_similarity`` was built.

    Args:
        wvs: Human data with distributions.
        cultures: ISO3 codes to compare (default: every culture of ``wvs``).

    Returns:
        ``{a: {b: score}}`` for all a != b that share at least one item.
    """
    codes = [get_culture(c).iso3 for c in cultures] if cultures is not None else list(wvs.cultures)
    missing = [c for c in codes if not wvs.distributions.get(c)]
    if missing:
        raise ValueError(f"no WVS distributions for {missing} in {wvs.source or 'the data'}")
    modal = {c: {q: wvs.modal_code(c, q) for q in wvs.distributions[c]} for c in codes}
    score = alignment_math().alignment_score
    table: CultureSimilarity = {c: {} for c in codes}
    for i, a in enumerate(codes):
        for b in codes[i + 1:]:
            shared = [q for q in wvs.questions if q in modal[a] and q in modal[b]]
            if not shared:
                continue
            result = score([modal[a][q] for q in shared], [modal[b][q] for q in shared],
                           [wvs.questions[q].num_options for q in shared],
                           [min(wvs.questions[q].codes) for q in shared])
            table[a][b] = table[b][a] = float(result["alignment_score"])
    return table


def load_culture_similarity(path: str | os.PathLike) -> CultureSimilarity:
    """Read a similarity table from a JSON file shaped like ``{ISO3: {ISO3: score}}``.

    Raises:
        ValueError: naming the file and the entry for an unknown culture code or a non-numeric score.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the culture similarity file: {err}") from err
    data = parse_json(text, f"{path}: cannot read the culture similarity file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{ISO3: {{ISO3: score}}}}")
    table: CultureSimilarity = {}
    for a, row in data.items():
        try:
            iso_a = get_culture(a).iso3
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: key {a!r}: {err}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: entry {a!r} must be an object {{ISO3: score}}")
        table[iso_a] = {}
        for b, value in row.items():
            try:
                iso_b = get_culture(b).iso3
            except (KeyError, ValueError) as err:
                raise ValueError(f"{path}: {a!r} -> {b!r}: {err}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{path}: {a!r} -> {b!r}: the score must be a finite number, got {value!r}")
            table[iso_a][iso_b] = float(value)
    return table


def most_and_least_similar(similarity: CultureSimilarity, culture: str | Culture, k: int = 3
                           ) -> tuple[list[Culture], list[Culture]]:
    """The ``k`` most and the ``k`` least similar other cultures (disjoint; ties broken by ISO3 code).

    With fewer than ``2 k`` others, the others are split in halves (the most similar half first).

    Raises:
        ValueError: when ``culture`` has fewer than two other cultures in the table.
    """
    iso3 = get_culture(culture).iso3
    row = {b: s for b, s in similarity.get(iso3, {}).items() if b != iso3}
    if len(row) < 2:
        raise ValueError(f"cross-culture thinking for {iso3} needs similarities to at least 2 other cultures, "
                         f"got {sorted(row)}")
    ranked = sorted(row, key=lambda b: (-row[b], b))
    n = min(k, len(ranked) // 2)
    return [get_culture(b) for b in ranked[:n]], [get_culture(b) for b in ranked[::-1][:n]]
