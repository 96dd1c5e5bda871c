"""Held-out splits of (culture, item) cells, saved with every run, and the guard that keeps them apart.

A split says which items and cultures a run may learn from (the *training cells*: training items x training
cultures) and which it is scored on (the *test cells*). Four protocols, as in the field's evaluations (Cao et
al., NAACL 2025; SubPOP, ACL 2025):

- ``held_out_items``: a seeded random share of the items (default 30 %), stratified by WVS topic, are test items;
  every culture's cells on them are test cells.
- ``held_out_topics``: every item of the named topics is a test item.
- ``held_out_cultures``: the named cultures are test cultures, on all items, or (with ``test_share`` or
  ``test_topics`` given as well) on the test items of that item split only.
- ``items_file``: explicit lists from a JSON file (``train_items``, ``test_items``; optionally
  ``train_cultures``, ``test_cultures``).

:class:`ExperimentSplit` is a plain record (JSON round-trip, equality), so a rerun reuses the saved split and a
changed config is caught. The guard has two sides: :meth:`ExperimentSplit.check_scored` refuses to score a
training item (or, in a culture split, a training culture), and :meth:`ExperimentSplit.training_view` hands a
recipe's data stage a :class:`~culture_align.wvs.WVSData` that holds training cells only and raises
:class:`HeldOutError` when asked for the human figures of a test cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..cultures import get_culture
from ..wvs.data import WVSData
from ..wvs.questions import is_evaluation_item

__all__ = ["PROTOCOLS", "ExperimentSplit", "HeldOutError", "TrainingView", "make_split"]

Protocol = Literal["held_out_items", "held_out_topics", "held_out_cultures", "items_file"]
PROTOCOLS: tuple[str, ...] = ("held_out_items", "held_out_topics", "held_out_cultures", "items_file")


class HeldOutError(ValueError):
    """A training item or culture was about to be scored, or a test cell's human figures were about to be read
    by something that learns from them."""


@dataclass
class ExperimentSplit:
    """Which cells a run learns from and which it is scored on.

    Attributes:
        protocol: One of :data:`PROTOCOLS`.
        seed: Seed of the random draw (``held_out_items``; recorded for every protocol).
        train_items, test_items: Item ids, in catalog order. Disjoint in an item split; in a pure culture split
            both are every item.
        train_cultures, test_cultures: ISO3 codes. Disjoint in a culture split; equal otherwise.
        item_split: True when items are held out (training items are never scored).
        culture_split: True when cultures are held out (training cultures are never scored).
        params: What the split was made from (``test_share``, ``test_topics``, ``test_cultures``, ``items_file``).
    """

    protocol: str
    seed: int
    train_items: list[str]
    test_items: list[str]
    train_cultures: list[str]
    test_cultures: list[str]
    item_split: bool
    culture_split: bool
    params: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ cells
    def is_training_cell(self, culture: str, qid: str) -> bool:
        return culture in self.train_cultures and qid in self.train_items

    def is_test_cell(self, culture: str, qid: str) -> bool:
        return culture in self.test_cultures and qid in self.test_items

    def training_cells(self, wvs: WVSData) -> list[tuple[str, str]]:
        """(culture, item) pairs with human data that a run may learn from, in culture then item order."""
        return [(c, q) for c in self.train_cultures for q in self.train_items if wvs.distribution(c, q) is not None]

    def test_cells(self, wvs: WVSData) -> list[tuple[str, str]]:
        """(culture, item) pairs with human data that a run is scored on, in culture then item order."""
        return [(c, q) for c in self.test_cultures for q in self.test_items if wvs.distribution(c, q) is not None]

    # ------------------------------------------------------------------------------------------ guard
    def check_scored(self, cultures: Iterable[str], items: Iterable[str]) -> None:
        """Raise :class:`HeldOutError` if scoring ``cultures`` x ``items`` would score a training item (item
        split) or a training culture (culture split), or anything outside the split."""
        cultures, items = list(cultures), list(items)
        if self.item_split:
            leaked = [q for q in items if q in set(self.train_items)]
            if leaked:
                raise HeldOutError(f"{len(leaked)} training item(s) would be scored ({', '.join(leaked[:8])}): "
                                   f"a {self.protocol} split scores its test items only")
        if self.culture_split:
            leaked = [c for c in cultures if c in set(self.train_cultures)]
            if leaked:
                raise HeldOutError(f"training culture(s) {', '.join(leaked)} would be scored: a {self.protocol} "
                                   "split scores its test cultures only")
        unknown = [q for q in items if q not in set(self.test_items)] + \
            [c for c in cultures if c not in set(self.test_cultures)]
        if unknown:
            raise HeldOutError(f"not test cells of this split: {', '.join(unknown[:8])}")

    def training_view(self, wvs: WVSData) -> TrainingView:
        """``wvs`` restricted to the training cells, for a recipe's data stage (see :class:`TrainingView`)."""
        base = wvs.select(self.train_items, self.train_cultures)
        # No personas: a respondent's row holds their answers to every item, held-out ones included
        return TrainingView(questions=base.questions, distributions=base.distributions, counts=base.counts,
                            personas=None, source=base.source, split=self)

    # ------------------------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "split") -> ExperimentSplit:
        missing = [k for k in ("protocol", "train_items", "test_items", "train_cultures", "test_cultures")
                   if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
        return cls(protocol=data["protocol"], seed=int(data.get("seed", 0)),
                   train_items=list(data["train_items"]), test_items=list(data["test_items"]),
                   train_cultures=list(data["train_cultures"]), test_cultures=list(data["test_cultures"]),
                   item_split=bool(data.get("item_split", True)),
                   culture_split=bool(data.get("culture_split", False)), params=dict(data.get("params", {})))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ExperimentSplit:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable split file ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a split file holds a JSON object")
        return cls.from_dict(data, str(path))

    def summary(self) -> str:
        return (f"{self.protocol} (seed {self.seed}): {len(self.train_items)} training / {len(self.test_items)} "
                f"test items, {len(self.train_cultures)} training / {len(self.test_cultures)} test cultures")


class TrainingView(WVSData):
    """A :class:`WVSData` holding only a split's training cells.

    Its ``questions`` are the training items and its cultures the training cultures, so a data stage that walks
    the data sees nothing else; asking for the human figures of a test cell (``distribution`` / ``modal_code``)
    raises :class:`HeldOutError` instead of quietly returning them or ``None``.
    """

    def __init__(self, *, split: ExperimentSplit, **fields: Any) -> None:
        super().__init__(**fields)
        self.split = split

    def distribution(self, culture: str, qid: str) -> np.ndarray | None:
        iso3 = get_culture(culture).iso3
        if self.split.is_test_cell(iso3, qid) and not self.split.is_training_cell(iso3, qid):
            raise HeldOutError(f"the human figures of {iso3} on {qid} are a test cell of the {self.split.protocol} "
                               "split: a data stage may read training cells only")
        return super().distribution(iso3, qid)


def _topic_strata(qids: Sequence[str], topics: dict[str, str]) -> dict[str, list[str]]:
    strata: dict[str, list[str]] = {}
    for q in qids:
        strata.setdefault(topics[q], []).append(q)
    return strata


def _held_out_share(qids: list[str], topics: dict[str, str], share: float, seed: int) -> list[str]:
    """A seeded ``share`` of ``qids`` drawn per topic (at least one test and one training item per topic of 2+)."""
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for topic in sorted(_topic_strata(qids, topics)):
        members = _topic_strata(qids, topics)[topic]
        k = int(round(share * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        test.update(rng.permutation(members)[:k].tolist())
    return [q for q in qids if q in test]


def make_split(wvs: WVSData, protocol: str = "held_out_items", *, seed: int = 0, test_share: float | None = None,
               test_topics: Sequence[str] | None = None, test_cultures: Sequence[str] | None = None,
               items_file: str | Path | None = None, cultures: Sequence[str] | None = None,
               items: Sequence[str] | None = None) -> ExperimentSplit:
    """Build a split of ``wvs``'s cells.

    Args:
        wvs: The human data (its items and cultures are split).
        protocol: One of :data:`PROTOCOLS`.
        seed: Seed of the random item draw.
        test_share: ``held_out_items`` (and optionally ``held_out_cultures``): share of items per topic held out
            (default 0.3 for ``held_out_items``).
        test_topics: ``held_out_topics`` (and optionally ``held_out_cultures``): topic ids (see
            :data:`culture_align.wvs.TOPICS`) whose items are test items.
        test_cultures: ``held_out_cultures``: ISO3 codes of the test cultures.
        items_file: ``items_file``: a JSON file with ``train_items`` and ``test_items`` (and optionally
            ``train_cultures``, ``test_cultures``).
        cultures: Cultures taking part (default: every culture of ``wvs``).
        items: Items taking part (default: every alignment item of ``wvs``).

    Raises:
        ValueError: an unknown protocol, topic, culture or item, an empty side, or overlapping lists.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    all_items = list(items) if items is not None else [
        q for q in wvs.questions if not q.startswith("Q") or is_evaluation_item(q)]
    unknown = [q for q in all_items if q not in wvs.questions]
    if unknown:
        raise ValueError(f"items not in {wvs.source or 'the WVS data'}: {', '.join(unknown[:10])}")
    all_cultures = [get_culture(c).iso3 for c in (cultures if cultures is not None else wvs.cultures)]
    if not all_items or not all_cultures:
        raise ValueError(f"nothing to split: {len(all_items)} items and {len(all_cultures)} cultures")
    topics = {q: wvs.questions[q].topic or "other" for q in all_items}
    params: dict[str, Any] = {}

    def item_side(share: float | None, named_topics: Sequence[str] | None) -> list[str] | None:
        if named_topics:
            known = set(topics.values())
            bad = [t for t in named_topics if t not in known]
            if bad:
                raise ValueError(f"unknown topic(s) {', '.join(bad)}: the items have {', '.join(sorted(known))}")
            params["test_topics"] = list(named_topics)
            return [q for q in all_items if topics[q] in set(named_topics)]
        if share is not None:
            if not 0.0 < share < 1.0:
                raise ValueError(f"test_share must be in (0, 1), got {share}")
            params["test_share"] = share
            return _held_out_share(all_items, topics, share, seed)
        return None

    item_split, culture_split = True, False
    train_cultures = test_cults = all_cultures
    if protocol == "held_out_items":
        test_items = item_side(0.3 if test_share is None else test_share, None)
    elif protocol == "held_out_topics":
        if not test_topics:
            raise ValueError("held_out_topics needs test_topics")
        test_items = item_side(None, test_topics)
    elif protocol == "held_out_cultures":
        if not test_cultures:
            raise ValueError("held_out_cultures needs test_cultures")
        test_cults = [get_culture(c).iso3 for c in test_cultures]
        absent = [c for c in test_cults if c not in all_cultures]
        if absent:
            raise ValueError(f"test cultures not in the data: {', '.join(absent)}")
        train_cultures = [c for c in all_cultures if c not in set(test_cults)]
        params["test_cultures"] = test_cults
        culture_split = True
        test_items = item_side(test_share, test_topics)
        if test_items is None:
            item_split, test_items = False, list(all_items)
    else:
        if items_file is None:
            raise ValueError("items_file protocol needs items_file")
        explicit = ExperimentSplit.from_dict({"protocol": protocol, "train_cultures": all_cultures,
                                              "test_cultures": all_cultures,
                                              **json.loads(Path(items_file).read_text())}, str(items_file))
        params["items_file"] = str(items_file)
        overlap = sorted(set(explicit.train_items) & set(explicit.test_items))
        if overlap:
            raise ValueError(f"{items_file}: items both in train_items and test_items: {', '.join(overlap[:10])}")
        for name in ("train_items", "test_items"):
            bad = [q for q in getattr(explicit, name) if q not in wvs.questions]
            if bad:
                raise ValueError(f"{items_file}: {name} not in the WVS data: {', '.join(bad[:10])}")
        test_items = explicit.test_items
        all_items = [q for q in all_items if q in set(explicit.train_items) | set(test_items)]
        train_cultures = [get_culture(c).iso3 for c in explicit.train_cultures]
        test_cults = [get_culture(c).iso3 for c in explicit.test_cultures]
        culture_split = set(train_cultures) != set(test_cults)
        if culture_split and set(train_cultures) & set(test_cults):
            raise ValueError(f"{items_file}: train_cultures and test_cultures overlap")
    assert test_items is not None
    train_items = [q for q in all_items if q not in set(test_items)] if item_split else list(all_items)
    if not test_items or not train_items or not train_cultures or not test_cults:
        raise ValueError(f"{protocol}: a side of the split is empty ({len(train_items)} training / {len(test_items)} "
                         f"test items, {len(train_cultures)} / {len(test_cults)} cultures)")
    return ExperimentSplit(protocol=protocol, seed=seed, train_items=train_items, test_items=list(test_items),
                           train_cultures=list(train_cultures), test_cultures=list(test_cults),
                           item_split=item_split, culture_split=culture_split, params=params)
