"""Reading append-only JSON Lines files (the completion and answer caches) that a kill may have cut anywhere.

The caches append one JSON object per line, UTF-8 with non-ASCII characters kept as they are
(``ensure_ascii=False``). A process killed mid-write (or a full disk) leaves a last line cut at any byte,
possibly inside a multi-byte character, and the next run starts its appends on a fresh line, so such a torn
line can also sit in the middle of the file. :func:`iter_append_only_jsonl` reads the file as bytes, splits it
on ``\\n`` only (a byte that never occurs inside a UTF-8 multi-byte character), decodes each line strictly and
parses it on its own: a line that is not valid UTF-8, not valid JSON or not a JSON object is skipped and
counted, never fatal. It is the one reader of these files; the caches and ``merge-shards`` use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["iter_append_only_jsonl"]


def iter_append_only_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any] | None]:
    """Per non-blank line of ``path``: its JSON object, or ``None`` when the line is torn or damaged.

    The file is read as bytes and split on ``\\n``; each line is decoded as strict UTF-8 and parsed as JSON on
    its own, so a line cut at any byte (inside a multi-byte character too) never affects the others. A line
    that is valid JSON but not an object (a number, a list, ...) is damaged too; callers count the ``None``
    lines.
    """
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                yield None
                continue
            yield row if isinstance(row, dict) else None
