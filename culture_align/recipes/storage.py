"""Writing a recipe run's outputs so that a kill at any moment leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import datasets

__all__ = ["save_dataset_atomically", "write_json_atomically"]


def save_dataset_atomically(corpus: datasets.DatasetDict, target: str | os.PathLike) -> None:
    """``corpus.save_to_disk(target)``, written to a temporary folder and swapped in.

    Empty splits are saved with one (empty) shard: with none, ``datasets`` cannot load them back.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    corpus.save_to_disk(str(tmp), num_shards={name: 1 for name, split in corpus.items() if len(split) == 0})
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_json_atomically(data: Any, path: str | os.PathLike) -> None:
    """``data`` as indented UTF-8 JSON at ``path`` (written beside it, then renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
