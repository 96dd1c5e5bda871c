"""Generation at scale: N workers each run a recipe on a shard of its inputs, and the shards merge back exactly.

```python
from culture_align.recipes.clca import CLCAPipeline, CLCAPipelineConfig
from culture_align.recipes.sharding import merge_shards

# worker i of 3 (each with its own teacher, e.g. one vLLM server per GPU), in its own run folder
CLCAPipeline(teacher, config=CLCAPipelineConfig(num_shards=3, shard_index=i)).run(f"runs/clca/shard-{i}")
# once the three are done, anywhere they are readable
corpus = merge_shards([f"runs/clca/shard-{i}" for i in range(3)], output_dir="runs/clca")
```

Assignment: the inputs (records with a unique ``id``) are ordered by a stable hash of their id and dealt round
robin, so shard sizes differ by at most one and a record's shard depends on the set of input ids only, not on
their order in a file. A sharded run writes a :class:`ShardManifest` (``shard.json``: which shard of how many,
its input ids, a fingerprint of all input ids, the settings that must agree between shards) and names its
completion cache ``cache-<index>-of-<n>.jsonl``.

:func:`merge_shards` checks that the shards are complete and belong together (one of each index, the same
settings, input ids disjoint and adding up to the fingerprinted set), concatenates each split, drops rows that a
shard repeats identically from another, raises on rows that share an id but differ, and orders every split by id.
The merged folder gets the union of the shard caches as ``cache.jsonl``, so an unsharded run there resumes with no
backend call and gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers.utils import logging

from .storage import save_dataset_atomically, write_json_atomically

logger = logging.get_logger(__name__)

__all__ = [
    "SHARD_MANIFEST",
    "ShardManifest",
    "shard_positions",
    "shard_dataset",
    "shard_folder_name",
    "shard_file_name",
    "merge_shards",
]

SHARD_MANIFEST = "shard.json"
"""File name of a shard's :class:`ShardManifest` in its run folder."""


def _id_hash(record_id: str) -> str:
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()


def _fingerprint(ids: Sequence[str]) -> str:
    """sha256 over the sorted ids (one per line): the same set of ids gives the same fingerprint."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def _check_shard(num_shards: int, index: int) -> None:
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index must be in [0, {num_shards}), got {index}")


def _check_ids(ids: Sequence[Any], what: str) -> None:
    seen: dict[str, int] = {}
    for row, record_id in enumerate(ids):
        if not isinstance(record_id, str) or not record_id:
            raise ValueError(f"{what}: row {row} has no id (got {record_id!r}); sharding needs a unique string id")
        if record_id in seen:
            raise ValueError(f"{what}: rows {seen[record_id]} and {row} share the id {record_id!r}")
        seen[record_id] = row


def shard_positions(ids: Sequence[str], num_shards: int, index: int) -> list[int]:
    """Positions (ascending, so in input order) of the inputs that fall in shard ``index`` of ``num_shards``.

    Args:
        ids: The unique ids of all inputs.
        num_shards: Number of shards N (>= 1; at most ``len(ids)``, so that no shard is empty).
        index: The shard, in ``[0, N)``.
    """
    _check_shard(num_shards, index)
    _check_ids(ids, "inputs")
    if num_shards > len(ids):
        raise ValueError(f"{num_shards} shards for {len(ids)} inputs: some shard would be empty; use at most "
                         f"{len(ids)} shards")
    by_hash = sorted(range(len(ids)), key=lambda k: (_id_hash(ids[k]), ids[k]))
    return sorted(by_hash[index::num_shards])


def shard_dataset(dataset: datasets.Dataset, num_shards: int, index: int, id_column: str = "id") -> datasets.Dataset:
    """The rows of ``dataset`` in shard ``index`` of ``num_shards``, in their original order (see
    :func:`shard_positions`). The shards of all indices partition the dataset."""
    if id_column not in dataset.column_names:
        raise ValueError(f"cannot shard a dataset without an {id_column!r} column (columns: {dataset.column_names})")
    return dataset.select(shard_positions(list(dataset[id_column]), num_shards, index))


def shard_folder_name(index: int, num_shards: int) -> str:
    """``"shard-00001-of-00003"``: a shard's run folder inside a run's output folder."""
    _check_shard(num_shards, index)
    return f"shard-{index:05d}-of-{num_shards:05d}"


def shard_file_name(stem: str, index: int, num_shards: int, suffix: str) -> str:
    """``shard_file_name("cache", 1, 3, ".jsonl") == "cache-00001-of-00003.jsonl"`` (the Hub's shard naming)."""
    _check_shard(num_shards, index)
    return f"{stem}-{index:05d}-of-{num_shards:05d}{suffix}"


@dataclass
class ShardManifest:
    """What a sharded run is: written as ``shard.json`` in its run folder before any generation.

    Attributes:
        recipe: The recipe (``"clca"``, ...).
        num_shards: N.
        shard_index: This shard, in ``[0, N)``.
        input_ids: The ids of this shard's inputs, in input order.
        num_inputs: Number of inputs over all shards.
        inputs_fingerprint: sha256 of all input ids (sorted): the shards of one run share it.
        settings: JSON-serialisable settings that every shard of a run must share (config without the shard
            index, models, cultures, ...).
    """

    recipe: str
    num_shards: int
    shard_index: int
    input_ids: list[str]
    num_inputs: int
    inputs_fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_shard(cls, recipe: str, all_input_ids: Sequence[str], num_shards: int, shard_index: int,
                  settings: dict[str, Any] | None = None) -> ShardManifest:
        """The manifest of shard ``shard_index`` of ``num_shards`` over inputs with ids ``all_input_ids``."""
        ids = list(all_input_ids)
        positions = shard_positions(ids, num_shards, shard_index)
        # through JSON, so that a manifest compares equal to itself read back (tuples become lists, ...)
        settings = json.loads(json.dumps(settings or {}, default=str))
        return cls(recipe, num_shards, shard_index, [ids[p] for p in positions], len(ids), _fingerprint(ids),
                   settings)

    @property
    def cache_file(self) -> str:
        """File name of this shard's completion cache."""
        return shard_file_name("cache", self.shard_index, self.num_shards, ".jsonl")

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``folder/shard.json``. A folder already holding another shard (or other inputs) is refused, so
        that two workers never share a run folder."""
        folder = Path(folder)
        if (folder / SHARD_MANIFEST).is_file():
            existing = ShardManifest.load(folder)
            if existing != self:
                raise ValueError(
                    f"{folder} holds shard {existing.shard_index} of {existing.num_shards} of a {existing.recipe} run"
                    f"{' with other inputs or settings' if existing.shard_index == self.shard_index else ''}, not "
                    f"shard {self.shard_index} of {self.num_shards} of this one: give each shard its own folder")
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomically(asdict(self), folder / SHARD_MANIFEST)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ShardManifest:
        """Read ``folder/shard.json``; errors name the folder."""
        path = Path(folder) / SHARD_MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a shard's run folder (no {SHARD_MANIFEST}); shards are runs "
                                    "made with num_shards > 1")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}: not a valid shard manifest: {err}") from err


# ----------------------------------------------------------------------------------------------------------
# Merging
# ----------------------------------------------------------------------------------------------------------


def _check_belong_together(manifests: list[ShardManifest], folders: list[Path]) -> None:
    first, where = manifests[0], folders[0]
    for manifest, folder in zip(manifests[1:], folders[1:]):
        for key in ("recipe", "num_shards", "num_inputs", "inputs_fingerprint"):
            if getattr(manifest, key) != getattr(first, key):
                raise ValueError(f"{folder} and {where} are not shards of one run: {key} "
                                 f"{getattr(manifest, key)!r} != {getattr(first, key)!r}")
        if manifest.settings != first.settings:
            keys = sorted(k for k in set(manifest.settings) | set(first.settings)
                          if manifest.settings.get(k) != first.settings.get(k))
            raise ValueError(f"{folder} and {where} are not shards of one run: their settings differ in {keys}")
    by_index: dict[int, Path] = {}
    for manifest, folder in zip(manifests, folders):
        if manifest.shard_index in by_index:
            raise ValueError(f"shard {manifest.shard_index} is given twice: {by_index[manifest.shard_index]} and "
                             f"{folder}")
        by_index[manifest.shard_index] = folder
    missing = sorted(set(range(first.num_shards)) - set(by_index))
    if missing:
        raise ValueError(f"shard(s) {missing} of {first.num_shards} missing: got {len(folders)} folder(s)")
    owner: dict[str, int] = {}
    for manifest in manifests:
        for record_id in manifest.input_ids:
            if record_id in owner:
                raise ValueError(f"input {record_id!r} is in shards {owner[record_id]} and {manifest.shard_index}")
            owner[record_id] = manifest.shard_index
    if len(owner) != first.num_inputs or _fingerprint(list(owner)) != first.inputs_fingerprint:
        raise ValueError(f"the shards' inputs ({len(owner)} ids) are not the run's {first.num_inputs} inputs")


def _load_shard_dataset(folder: Path, manifest: ShardManifest) -> datasets.DatasetDict:
    path = folder / "dataset"
    if not (path / "dataset_dict.json").is_file():
        raise FileNotFoundError(f"shard {manifest.shard_index} in {folder} has not finished (no dataset/): run it "
                                "again, it resumes from its cache")
    return datasets.load_from_disk(str(path))


def _merge_split(name: str, parts: list[datasets.Dataset], folders: list[Path], id_column: str) -> datasets.Dataset:
    """Concatenate, drop rows repeated identically by a later shard, raise on conflicts, order by id."""
    for part, folder in zip(parts, folders):
        if id_column not in part.column_names:
            raise ValueError(f"{folder}: split {name!r} has no {id_column!r} column; cannot merge it exactly")
        if part.features != parts[0].features:
            raise ValueError(f"{folder}: split {name!r} has features {part.features}, {folders[0]} has "
                             f"{parts[0].features}")
    first_seen: dict[str, tuple[int, int]] = {}  # id -> (part, row) where a shard first has it
    drop: list[set[int]] = [set() for _ in parts]
    for p, part in enumerate(parts):
        for row, record_id in enumerate(list(part[id_column])):
            seen = first_seen.get(record_id)
            if seen is None:
                first_seen[record_id] = (p, row)
            elif seen[0] != p:  # rows repeated within one shard are that shard's own output: kept as they are
                if parts[seen[0]][seen[1]] != part[row]:
                    raise ValueError(f"split {name!r}: id {record_id!r} has different rows in {folders[seen[0]]} "
                                     f"and {folders[p]}")
                drop[p].add(row)
    kept = [part.select([r for r in range(len(part)) if r not in drop[p]]) if drop[p] else part
            for p, part in enumerate(parts)]
    if any(drop):
        logger.info(f"split {name!r}: dropped {sum(map(len, drop))} row(s) repeated identically across shards")
    merged = datasets.concatenate_datasets(kept)
    ids = list(merged[id_column])
    return merged.select(sorted(range(len(ids)), key=ids.__getitem__)).flatten_indices()


def _merge_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers summed (nested mappings merged key by key); other values kept when all shards agree, else listed
    per shard."""
    keys = list(dict.fromkeys(k for s in stats for k in s))
    out: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in stats if key in s]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = round(sum(values), 6)
        elif all(isinstance(v, dict) for v in values):
            out[key] = _merge_stats(values)
        elif all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            out[key] = values
    return out


def _merge_caches(folders: list[Path], manifests: list[ShardManifest], target: Path) -> int:
    """Append every shard cache's completions to ``target`` (a key once); returns the number of lines written.

    The shard caches are read like any cache (:func:`~culture_align.backends.cache.read_completions`): torn or
    damaged lines are skipped and counted in a warning, never fatal."""
    from ..backends.cache import CompletionCache, read_completions

    cache = CompletionCache(target)
    before = len(cache)
    for folder, manifest in zip(folders, manifests):
        path = folder / manifest.cache_file
        if not path.is_file():
            continue
        rows, skipped = read_completions(path)
        if skipped:
            logger.warning(f"{path}: skipped {skipped} incomplete or damaged cache line(s)")
        cache.put_many(rows)
    return len(cache) - before


def _check_output_is_not_a_shard(out: Path, folders: list[Path]) -> None:
    """Refuse an output folder that is one of the shard folders: the merge would overwrite that shard's
    ``dataset/`` and ``stats.json`` with the merged ones (a parent of the shards is fine)."""
    resolved = out.resolve()
    for folder in folders:
        if folder.resolve() == resolved:
            raise ValueError(f"the output folder {out} is the shard folder {folder}: merging into one "
                             "of the inputs would overwrite its dataset/ and stats.json; choose another "
                             "folder (e.g. the shards' parent)")


def merge_shards(folders: Sequence[str | os.PathLike], output_dir: str | os.PathLike | None = None, *,
                 id_column: str = "id") -> datasets.DatasetDict:
    """Merge the finished run folders of all N shards of a run into one ``DatasetDict``.

    Args:
        folders: One run folder per shard (any order), each with ``shard.json`` and ``dataset/``.
        output_dir: When given, written there like a recipe run: ``dataset/`` (atomically), ``stats.json`` (the
            shards' stats, counts summed, plus ``shards``: folder and index of each) and ``cache.jsonl`` (every
            shard's completions). May be the parent folder of the shards, never one of them.
        id_column: The column identifying a row in every split.

    Returns:
        Every split of the shards concatenated, without rows repeated identically across shards, ordered by id.

    Raises:
        FileNotFoundError: a folder is not a shard, or a shard has not finished.
        ValueError: ``output_dir`` is one of the shard folders, the shards do not belong to one run
            (settings, inputs), an index is missing or repeated, an input is in two shards, splits or features
            differ, or one id has different rows in two shards.
    """
    paths = [Path(f) for f in folders]
    if not paths:
        raise ValueError("no shard folders given")
    if output_dir is not None:
        _check_output_is_not_a_shard(Path(output_dir), paths)
    manifests = [ShardManifest.load(p) for p in paths]
    _check_belong_together(manifests, paths)
    order = sorted(range(len(paths)), key=lambda k: manifests[k].shard_index)
    paths, manifests = [paths[k] for k in order], [manifests[k] for k in order]
    shards = [_load_shard_dataset(p, m) for p, m in zip(paths, manifests)]
    names = list(shards[0])
    for shard, path in zip(shards[1:], paths[1:]):
        if sorted(shard) != sorted(names):
            raise ValueError(f"{path} has splits {sorted(shard)}, {paths[0]} has {sorted(names)}")
    corpus = datasets.DatasetDict({name: _merge_split(name, [s[name] for s in shards], paths, id_column)
                                   for name in names})
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_dataset_atomically(corpus, out / "dataset")
        stats = []
        for path in paths:
            stats_file = path / "stats.json"
            stats.append(json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {})
        merged_stats = {**_merge_stats(stats), "rows": {name: len(split) for name, split in corpus.items()},
                        "shards": [{"folder": str(p), "shard_index": m.shard_index}
                                   for p, m in zip(paths, manifests)]}
        merged_stats.get("config", {}).pop("shard_index", None)
        write_json_atomically(merged_stats, out / "stats.json")
        added = _merge_caches(paths, manifests, out / "cache.jsonl")
        logger.info(f"merged {len(paths)} shards into {out}: {merged_stats['rows']}; {added} cached completions")
    return corpus
