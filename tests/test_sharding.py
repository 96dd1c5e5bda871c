"""Sharded generation: N workers each run the CLCA pipeline on a shard of the seeds; the merged shards equal
the unsharded run exactly (same ids, same rows), and merging refuses shards that are incomplete or do not belong
together. The scripted fake backend of ``test_clca_pipeline`` answers deterministically from each request."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, DatasetDict, load_from_disk
from test_clca_pipeline import SEEDS, FakeBackend, RaisingBackend, as_lists, pipeline_config

from culture_align.backends import CompletionCache
from culture_align.cli import main as cli_main
from culture_align.recipes.clca import CLCAPipeline
from culture_align.recipes.sharding import (
    SHARD_MANIFEST,
    ShardManifest,
    merge_shards,
    shard_dataset,
    shard_folder_name,
    shard_positions,
)
from culture_align.recipes.storage import save_dataset_atomically

NUM_SHARDS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The unsharded reference run and the three shard runs (folders, corpora, backends) over the same seeds."""
    root = tmp_path_factory.mktemp("sharding")
    seed_file = root / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    reference_backend = FakeBackend()
    reference = CLCAPipeline(reference_backend, config=pipeline_config(seed_file)).run(root / "reference")
    folders, backends = [], []
    for index in range(NUM_SHARDS):
        backend = FakeBackend()
        folder = root / "clca" / shard_folder_name(index, NUM_SHARDS)
        CLCAPipeline(backend, config=pipeline_config(seed_file, num_shards=NUM_SHARDS, shard_index=index)).run(folder)
        folders.append(folder)
        backends.append(backend)
    return {"root": root, "seed_file": seed_file, "reference": reference, "reference_backend": reference_backend,
            "folders": folders, "backends": backends}


def by_id(corpus: DatasetDict) -> dict:
    return {name: sorted(split.to_list(), key=lambda row: row["id"]) for name, split in corpus.items()}


def copy_shards(runs, tmp_path) -> list[Path]:
    copies = [tmp_path / folder.name for folder in runs["folders"]]
    for folder, copy in zip(runs["folders"], copies):
        shutil.copytree(folder, copy)
    return copies


# ------------------------------------------------------------------------------------------------------
# Assignment
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_partition_the_inputs_evenly_whatever_their_order(num_shards):
    ids = [f"seed-{k}" for k in range(20)]
    shards = [shard_positions(ids, num_shards, i) for i in range(num_shards)]
    assert sorted(p for shard in shards for p in shard) == list(range(20))  # each input in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(shard == sorted(shard) for shard in shards)  # input order is kept within a shard
    shuffled = random.Random(0).sample(ids, len(ids))
    for i, shard in enumerate(shards):
        assert {shuffled[p] for p in shard_positions(shuffled, num_shards, i)} == {ids[p] for p in shard}


def test_shard_dataset_and_bad_inputs():
    dataset = Dataset.from_dict({"id": ["a", "b", "c", "d"], "x": [1, 2, 3, 4]})
    parts = [shard_dataset(dataset, 2, i) for i in range(2)]
    assert sorted([*parts[0]["id"], *parts[1]["id"]]) == ["a", "b", "c", "d"]
    assert all(part.column_names == ["id", "x"] for part in parts)
    with pytest.raises(ValueError, match="rows 0 and 2 share the id 'a'"):
        shard_positions(["a", "b", "a"], 2, 0)
    with pytest.raises(ValueError, match="row 1 has no id"):
        shard_positions(["a", ""], 2, 0)
    with pytest.raises(ValueError, match="shard index must be in"):
        shard_positions(["a", "b"], 2, 2)
    with pytest.raises(ValueError, match="some shard would be empty"):
        shard_positions(["a", "b"], 3, 0)
    with pytest.raises(ValueError, match="without an 'id' column"):
        shard_dataset(Dataset.from_dict({"x": [1]}), 1, 0)


# ------------------------------------------------------------------------------------------------------
# Sharded CLCA runs and their merge
# ------------------------------------------------------------------------------------------------------


def test_shard_runs_split_the_work(runs):
    seed_ids = [s["id"] for s in SEEDS]
    manifests = [ShardManifest.load(folder) for folder in runs["folders"]]
    assert [m.shard_index for m in manifests] == [0, 1, 2]
    assert sorted(i for m in manifests for i in m.input_ids) == sorted(seed_ids)
    assert all(len(m.input_ids) == 4 for m in manifests)
    for folder, manifest in zip(runs["folders"], manifests):
        assert (folder / manifest.cache_file).is_file() and not (folder / "cache.jsonl").exists()
        assert manifest.cache_file == f"cache-0000{manifest.shard_index}-of-00003.jsonl"
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["counts"]["seed_scenarios"] == 4
        dialogues = load_from_disk(str(folder / "dataset"))["dialogues"]
        assert set(dialogues["seed_id"]) <= set(manifest.input_ids)
    # nothing is generated twice: the shards together make exactly the unsharded run's requests
    requests = [sum(c["size"] for c in backend.calls) for backend in runs["backends"]]
    assert all(n > 0 for n in requests)
    assert sum(requests) == sum(c["size"] for c in runs["reference_backend"].calls)


def test_merged_shards_equal_the_unsharded_run(runs, tmp_path):
    out = tmp_path / "merged"
    merged = merge_shards(list(reversed(runs["folders"])), output_dir=out)  # any order of the folders
    reference = runs["reference"]
    assert list(merged) == list(reference)
    assert by_id(merged) == by_id(reference)  # same ids, same rows, no row lost or repeated
    for name, split in merged.items():
        assert split.features == reference[name].features
        assert list(split["id"]) == sorted(split["id"])  # ordered by id
    assert as_lists(load_from_disk(str(out / "dataset"))) == as_lists(merged)
    stats = json.loads((out / "stats.json").read_text())
    reference_stats = json.loads((runs["root"] / "reference" / "stats.json").read_text())
    assert stats["counts"] == reference_stats["counts"]
    assert stats["drop_reasons"] == reference_stats["drop_reasons"]
    assert stats["rows"] == {name: len(split) for name, split in reference.items()}
    assert [s["shard_index"] for s in stats["shards"]] == [0, 1, 2]
    # the merged cache holds every completion: an unsharded run there makes no backend call, same rows
    again = CLCAPipeline(RaisingBackend(), config=pipeline_config(runs["seed_file"])).run(out)
    assert by_id(again) == by_id(reference)
    # merging is deterministic
    assert as_lists(merge_shards(runs["folders"])) == as_lists(merged)


def test_merge_drops_identical_repeats_and_refuses_conflicts(runs, tmp_path):
    folders = copy_shards(runs, tmp_path)
    shard0 = load_from_disk(str(folders[0] / "dataset"))
    shard1 = load_from_disk(str(folders[1] / "dataset"))
    row = shard0["train"][0]
    repeated = DatasetDict({**shard1, "train": Dataset.from_list(shard1["train"].to_list() + [row],
                                                                  features=shard1["train"].features)})
    save_dataset_atomically(repeated, folders[1] / "dataset")
    assert by_id(merge_shards(folders)) == by_id(runs["reference"])

    conflicting = dict(row, culture="XXX")
    changed = DatasetDict({**shard1, "train": Dataset.from_list(shard1["train"].to_list() + [conflicting],
                                                                 features=shard1["train"].features)})
    save_dataset_atomically(changed, folders[1] / "dataset")
    with pytest.raises(ValueError, match=f"split 'train': id '{row['id']}' has different rows"):
        merge_shards(folders)


def test_merge_refuses_shards_that_do_not_make_one_complete_run(runs, tmp_path):
    folders = runs["folders"]
    with pytest.raises(ValueError, match=r"shard\(s\) \[2\] of 3 missing"):
        merge_shards(folders[:2])
    with pytest.raises(ValueError, match="shard 0 is given twice"):
        merge_shards([folders[0], folders[0], folders[1], folders[2]])
    with pytest.raises(FileNotFoundError, match="is not a shard's run folder"):
        merge_shards([runs["root"] / "reference"])

    copies = copy_shards(runs, tmp_path)
    shutil.rmtree(copies[2] / "dataset")  # a worker that has not finished
    with pytest.raises(FileNotFoundError, match="shard 2 .* has not finished"):
        merge_shards(copies)

    other = tmp_path / "other-seed"  # shard 2 of a run with another seed
    CLCAPipeline(FakeBackend(), config=pipeline_config(runs["seed_file"], num_shards=3, shard_index=2,
                                                       seed=1)).run(other)
    with pytest.raises(ValueError, match=r"settings differ in \['config'\]"):
        merge_shards([folders[0], folders[1], other])

    manifest = json.loads((copies[1] / SHARD_MANIFEST).read_text())  # a manifest tampered with: inputs overlap
    manifest["input_ids"].append(ShardManifest.load(copies[0]).input_ids[0])
    (copies[1] / SHARD_MANIFEST).write_text(json.dumps(manifest))
    shutil.copytree(folders[2], copies[2], dirs_exist_ok=True)
    with pytest.raises(ValueError, match="is in shards 0 and 1"):
        merge_shards(copies)


def test_merge_reads_torn_shard_caches_and_keeps_every_complete_line(runs, tmp_path):
    """A shard killed mid-write leaves a cache line cut inside a multi-byte character: merging skips it and
    keeps every complete completion, non-ASCII ones included."""
    folders = copy_shards(runs, tmp_path)
    cache = folders[0] / ShardManifest.load(folders[0]).cache_file
    extra = json.dumps({"key": "extra", "model": "m", "text": "家庭 ✓"}, ensure_ascii=False).encode("utf-8")
    torn = json.dumps({"key": "torn", "model": "m", "text": "尊重"}, ensure_ascii=False).encode("utf-8")
    with open(cache, "ab") as f:
        f.write(extra + b"\n" + torn[:torn.index("重".encode()) + 1])
    out = tmp_path / "merged"
    assert by_id(merge_shards(folders, output_dir=out)) == by_id(runs["reference"])
    merged = CompletionCache(out / "cache.jsonl")
    assert merged.get("extra") == "家庭 ✓" and "torn" not in merged and merged.skipped == 0
    caches = [folder / ShardManifest.load(folder).cache_file for folder in runs["folders"]]
    shard_keys = {json.loads(line)["key"] for c in caches for line in c.read_text("utf-8").splitlines()}
    assert len(merged) == len(shard_keys | {"extra"}) and all(k in merged for k in shard_keys)


def test_merge_refuses_an_output_folder_that_is_one_of_the_shards(runs, tmp_path, capsys):
    folders = copy_shards(runs, tmp_path)
    before = {p: p.read_bytes() for p in folders[1].rglob("*") if p.is_file()}
    for out in (folders[1], tmp_path / "." / folders[1].name):
        with pytest.raises(ValueError, match="is the shard folder .* choose another folder"):
            merge_shards(folders, output_dir=out)
    assert cli_main(["merge-shards", *map(str, folders), "--out", str(folders[1])]) == 2
    assert "is the shard folder" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in folders[1].rglob("*") if p.is_file()} == before  # nothing touched
    merge_shards(folders, output_dir=tmp_path)  # their parent is fine


def test_a_run_folder_holds_one_shard(runs):
    with pytest.raises(ValueError, match="holds shard 0 of 3 .* give each shard its own folder"):
        CLCAPipeline(FakeBackend(), config=pipeline_config(runs["seed_file"], num_shards=3, shard_index=1)).run(
            runs["folders"][0])


# ------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------


def test_cli_generate_shard_and_merge_shards(runs, tmp_path, tiny_model_dir, capsys):
    """`generate clca --num-shards/--shard-index` runs in <output-dir>/shard-i-of-n with a real (tiny) teacher;
    `merge-shards` joins folders. The tiny model cannot write a scenario in 8 tokens, so every scenario is
    rejected: only the wiring is checked here."""
    config = tmp_path / "clca.yaml"
    config.write_text(yaml.safe_dump({
        "teacher": {"backend": "transformers", "model": str(tiny_model_dir), "device": "cpu"},
        "cultures": ["GBR"], "scenario_file": str(runs["seed_file"]), "num_scenarios": 3, "max_attempts": 1,
        "show_progress": False, "scenario_params": {"max_new_tokens": 8}}))
    out = tmp_path / "run"
    assert cli_main(["generate", "clca", "--config", str(config), "--output-dir", str(out),
                     "--num-shards", "3", "--shard-index", "1"]) == 0
    shard = out / "shard-00001-of-00003"
    assert ShardManifest.load(shard).shard_index == 1 and (shard / "cache-00001-of-00003.jsonl").is_file()
    assert len(load_from_disk(str(shard / "dataset"))["rejections"]) == 1
    assert "culture-align merge-shards" in capsys.readouterr().out

    merged = tmp_path / "merged"
    assert cli_main(["merge-shards", *map(str, runs["folders"]), "--out", str(merged)]) == 0
    assert by_id(load_from_disk(str(merged / "dataset"))) == by_id(runs["reference"])
    assert cli_main(["merge-shards", str(runs["folders"][0]), "--out", str(merged)]) == 2  # clear error, no trace
    assert "missing" in capsys.readouterr().err
