"""Reading sampled survey answers: :func:`parse_answer_code`.

Exact option scoring lives with the model interface (:meth:`GenerationBackend.score
<culture_align.backends.GenerationBackend.score>`; the local implementation is
:class:`culture_align.backends.option_scoring.OptionScorer`); sampling is :meth:`GenerationBackend.generate` with
``GenerationParams(n=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["parse_answer_code"]

_ANSWER = re.compile(r"^\s*\(?(-?\d+)(?:$|[\s.):,;\-])")


def parse_answer_code(text: str, codes: Sequence[int]) -> int | None:
    """Strictly parse a sampled answer: it must start with one of ``codes`` as a whole number.

    ``"3"``, ``" 3."``, ``"3) Agree"`` parse to 3; ``"I think 3"``, ``"33"`` (when 33 is not a code) and
    refusals parse to None.
    """
    m = _ANSWER.match(text)
    if not m:
        return None
    code = int(m.group(1))
    return code if code in codes else None
