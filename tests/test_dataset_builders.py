"""Dataset builders: each corpus builds from small data made here into Parquet + a dataset card (Hub layout),
and ``load_dataset(<that folder>)`` gives back the builder's splits and features. The last test installs the
wheel into a fresh venv and builds a corpus from the installed package."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from culture_align.builders import (
    BUILDER_NAMES,
    CorpusBase,
    RunFolderBuilder,
    build_corpus,
    dataset_builders_path,
    load_builder_class,
)
from culture_align.recipes.clca.schemas import (
    DIALOGUE_FEATURES,
    REJECTION_FEATURES,
    TRAIN_FEATURES,
    make_rejection,
    to_dataset,
)

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- WVS source

QUESTIONS = [
    {"qid": "Q1", "text": "How important is family in your life?",
     "options": ["Very important", "Rather important", "Not very important", "Not at all important"],
     "codes": [1, 2, 3, 4], "topic": "social_values"},
    {"qid": "Q57", "text": "Can most people be trusted?",
     "options": ["Most people can be trusted", "Need to be very careful"], "codes": [1, 2],
     "topic": "social_capital"},
    {"qid": "Q94", "text": "Are you a member of a religious organisation?",
     "options": ["Not a member", "Inactive member", "Active member"], "codes": [0, 1, 2],
     "topic": "social_capital"},
]
# respondent rows: country, weight, interview id, Q1, Q57, Q94, sex (Q260), age (Q262), education (Q275)
ROWS = [
    ("USA", 1.0, "840001", 1, 2, 0, 1, 34, 6),
    ("USA", 2.0, "840002", 2, 2, -1, 2, 51, 3),
    ("USA", 1.0, "840003", 1, 1, 2, 2, 27, 7),
    ("CHN", 1.0, "156001", 1, 1, 0, 1, 45, 2),
    ("CHN", 1.0, "156002", 3, -2, 0, 2, 62, 1),
]


def write_wvs_csv(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    questions = folder / "questions.json"
    questions.write_text(json.dumps(QUESTIONS))
    path = folder / "wvs7.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["B_COUNTRY_ALPHA", "W_WEIGHT", "D_INTERVIEW", "Q1", "Q57", "Q94", "Q260", "Q262", "Q275"])
        writer.writerows(ROWS)
    return path, questions


# ---------------------------------------------------------------------------------------------- CLCA run

def _person(name: str) -> dict:
    return {"name": name, "occupation": "teacher", "background": "grew up in a small town", "goal": "borrow a book",
            "secrets": "lost the last one"}


def write_clca_run(run: Path, *, empty_rejections: bool = False, json_text_provenance: bool = False
                   ) -> datasets.DatasetDict:
    """A run folder shaped like CLCAPipeline.run's output: dataset/ (dialogues, train, rejections) + stats.json.
    ``json_text_provenance``: provenance saved as JSON text, as corpora were before it became a struct."""
    verdict = {"verdict": "good", "confidence": "confident", "rationale": "natural"}
    dialogues = [{
        "id": f"d{k}", "scenario_id": f"s{k}", "seed_id": "seed-1", "culture": culture, "social_goal": "negotiation",
        "setting": "a library", "relationship": "neighbours", "person1": _person("Li Wei"), "person2": _person("Mei"),
        "turns": [{"participant": 1, "speaker": "Li Wei", "action": "speak", "text": "May I borrow it?",
                   "intent": "to ask politely"},
                  {"participant": 2, "speaker": "Mei", "action": "leave", "text": "", "intent": None}],
        "num_turns": 2, "end_reason": "leave", "end_detail": "",
        "counts": {"malformed": 0, "impersonation": k, "retries": 0},
        "judge": {"quality": verdict, "alignment": {**verdict, "verdict": "aligned"},
                  "meta": {"verdict": "good", "confidence": "not sure", "critique": "fine"}} if k else None,
        "provenance": {"scenario": {"stage": "scenarios", "teacher": "tiny", "attempts": 1},
                       "roleplay": {"agents": ["tiny", "tiny"], "max_turns": 4}},
    } for k, culture in enumerate(["CHN", "GBR"])]
    train = [{"messages": [{"role": "system", "content": "You are Li Wei."}, {"role": "user", "content": "Hello"},
                           {"role": "assistant", "content": "May I borrow it?"}],
              "task": task, "culture": "CHN", "id": f"t{k}", "dialogue_id": "d0",
              "provenance": {"seed": 0, "participant": k or None}}
             for k, task in enumerate(["dialogue", "intent", "dialogue"])]
    rejections = [] if empty_rejections else [
        make_rejection("s9", "scenarios", "malformed", "GBR", {"raw": ["{"]}),
        make_rejection("s9", "scenarios", "malformed", "GBR", {"raw": ["{{"]}),  # the same id twice
        make_rejection("d7", "judge", "quality bad (very confident)", "CHN", {"verdicts": {}}),
    ]
    corpus = datasets.DatasetDict({"dialogues": to_dataset(dialogues, DIALOGUE_FEATURES),
                                   "train": to_dataset(train, TRAIN_FEATURES),
                                   "rejections": to_dataset(rejections, REJECTION_FEATURES)})
    saved = corpus
    if json_text_provenance:
        saved = datasets.DatasetDict({name: _as_json_text_provenance(split) if "provenance" in split.column_names
                                      else split for name, split in corpus.items()})
    saved.save_to_disk(str(run / "dataset"))
    stats = {"config": {"max_turns": 4, "seed": 0}, "cultures": ["CHN", "GBR"],
             "models": {"teacher": "teacher-model-x", "agents": ["agent-a", "agent-b"], "judge": "judge-model-y",
                        "annotator": "teacher-model-x"},
             "counts": {"dialogues": 2, "train": 3, "rejections": len(rejections)}, "seconds": 1.5}
    (run / "stats.json").write_text(json.dumps(stats))
    return corpus


# ---------------------------------------------------------------------------------------------- helpers

def assert_round_trip(folder: Path, builder_cls, source: Path, configs, **config_kwargs) -> None:
    """load_dataset(folder, config) equals the builder's own as_dataset, split by split, features included."""
    for config in configs:
        builder = builder_cls(config_name=config, source=str(source), cache_dir=str(folder.parent / "cache"),
                              **config_kwargs)
        builder.download_and_prepare()
        expected = builder.as_dataset()
        loaded = datasets.load_dataset(str(folder), config)
        assert set(loaded) == set(expected), config
        for split in expected:
            assert loaded[split].features == expected[split].features, (config, split)
            assert loaded[split].to_list() == expected[split].to_list(), (config, split)


def test_builders_are_found_and_declare_their_configs():
    assert dataset_builders_path().is_dir()
    for name in BUILDER_NAMES:
        cls = load_builder_class(name)
        # a recipe run's tables go out as Arrow tables; the WVS corpora are made row by row
        base = datasets.ArrowBasedBuilder if issubclass(cls, RunFolderBuilder) else datasets.GeneratorBasedBuilder
        assert issubclass(cls, base) and issubclass(cls, CorpusBase), name
        assert cls.BUILDER_CONFIGS and all(c.description for c in cls.BUILDER_CONFIGS), name
        assert cls.CARD.license and cls.CARD.task_categories and cls.CARD.limitations
    with pytest.raises(ValueError, match="unknown dataset builder"):
        load_builder_class("nope")


def test_wvs_builder_round_trip_and_card(tmp_path):
    source, questions = write_wvs_csv(tmp_path / "src")
    out = build_corpus("wvs", source, tmp_path / "hub", questions=str(questions))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "distributions/train-00000-of-00001.parquet", "personas/train-00000-of-00001.parquet",
        "questions/train-00000-of-00001.parquet"]
    assert_round_trip(out, load_builder_class("wvs"), source, ["distributions", "questions", "personas"],
                      questions=str(questions))

    dist = datasets.load_dataset(str(out), "distributions", split="train")
    usa_q1 = next(r for r in dist if r["culture"] == "USA" and r["qid"] == "Q1")
    assert usa_q1["codes"] == [1, 2, 3, 4]
    assert usa_q1["probabilities"] == pytest.approx([0.5, 0.5, 0.0, 0.0])  # weights 1+1 on code 1, 2 on code 2
    assert usa_q1["n"] == 3
    personas = datasets.load_dataset(str(out), "personas", split="train")
    row = next(r for r in personas if r["respondent_id"] == "840002")
    assert row["sex"] == "female" and row["age"] == "51"
    assert row["answers"] == [{"qid": "Q1", "code": 2}, {"qid": "Q57", "code": 2}, {"qid": "Q94", "code": None}]
    # the default config is the first one published
    assert datasets.load_dataset(str(out), split="train").features == dist.features

    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other" and card.data.license_name == "wvs-conditions-of-use"
    assert card.data.size_categories == ["n<1K"] and "multiple-choice" in card.data.task_categories
    assert {c["config_name"] for c in card.data.configs} == {"distributions", "questions", "personas"}
    assert "does not ship or redistribute any WVS data" in card.text
    assert "`wvs7.csv`" in card.text and str(tmp_path) not in card.text  # the file name, not the user's path
    for field in ("answers.code", "probabilities", "topic_name", "respondent_id"):
        assert f"`{field}`" in card.text


def test_wvs_personas_need_respondent_rows(tmp_path):
    folder = tmp_path / "wvsdir"
    folder.mkdir()
    (folder / "wvs_questions.json").write_text(json.dumps(QUESTIONS))
    (folder / "proportions_group_by_country.json").write_text(json.dumps({"USA": {"Q1": {"1": 0.7, "2": 0.3}}}))
    out = build_corpus("wvs", folder, tmp_path / "hub", configs=["distributions", "questions"])
    assert datasets.load_dataset(str(out), "distributions", split="train")["n"] == [-1.0]
    with pytest.raises(ValueError, match="no respondent rows"):
        build_corpus("wvs", folder, tmp_path / "hub2", configs=["personas"])


def test_wvs_build_refuses_shares_whose_sum_overflows(tmp_path):
    folder = tmp_path / "wvsdir"
    folder.mkdir()
    (folder / "wvs_questions.json").write_text(json.dumps(QUESTIONS))
    huge = {"USA": {"Q1": {"1": 1e308, "2": 1e308}}}
    (folder / "proportions_group_by_country.json").write_text(json.dumps(huge))
    with pytest.raises(ValueError, match=r"country\.json: USA/Q1: the proportions sum to inf"):
        build_corpus("wvs", folder, tmp_path / "hub", configs=["distributions"])
    assert not any((tmp_path / "hub").rglob("*.parquet"))


def _as_json_text_provenance(table: datasets.Dataset) -> datasets.Dataset:
    features = table.features.copy()
    features["provenance"] = datasets.Value("string")
    return table.map(lambda row: {"provenance": json.dumps(row["provenance"], sort_keys=True)}, features=features)


def test_builder_reads_json_text_provenance_as_the_struct(tmp_path):
    """A run saved before provenance was a struct (JSON text) builds the same corpus as the struct form."""
    run = tmp_path / "run"
    corpus = write_clca_run(run, json_text_provenance=True)
    assert datasets.load_from_disk(str(run / "dataset"))["train"].features["provenance"] == datasets.Value("string")
    out = build_corpus("clca_dialogues", run, tmp_path / "hub")
    for split in ("dialogues", "train"):
        loaded = datasets.load_dataset(str(out), split, split="train")
        assert loaded.features == corpus[split].features
        assert loaded.to_list() == corpus[split].to_list()
    assert loaded[1]["provenance"] == {"models": None, "seed": 0, "prompt_version": None, "participant": 1}
    bad = datasets.DatasetDict({"train": corpus["train"].map(
        lambda row: {"provenance": "{not json"},
        features=datasets.Features({**corpus["train"].features, "provenance": datasets.Value("string")}))})
    bad.save_to_disk(str(tmp_path / "bad" / "dataset"))
    with pytest.raises(ValueError, match=r"train, row 0: provenance is not JSON"):
        build_corpus("clca_dialogues", tmp_path / "bad", tmp_path / "hub2", configs=["train"])


def test_clca_builder_round_trip_card_and_keys(tmp_path):
    run = tmp_path / "run"
    corpus = write_clca_run(run)
    out = build_corpus("clca_dialogues", run, tmp_path / "hub")
    cls = load_builder_class("clca_dialogues")
    assert_round_trip(out, cls, run, ["train", "dialogues", "rejections"])
    # the published tables are the run's tables, features and rows
    for split in ("dialogues", "train", "rejections"):
        loaded = datasets.load_dataset(str(out), split, split="train")
        assert loaded.features == corpus[split].features
        assert loaded.to_list() == corpus[split].to_list()
    # the run's Arrow table goes out as it is, in record batches (never row by row)
    builder = cls(config_name="rejections", source=str(run))
    builder.BATCH_ROWS = 2
    batches = [t for _, t in builder._generate_tables(builder.load_table())]
    assert [t.num_rows for t in batches] == [2, 1] and batches[0].column("id").to_pylist() == ["s9", "s9"]

    card = DatasetCard.load(out / "README.md")
    default = next(c for c in card.data.configs if c.get("default"))
    assert default == {"config_name": "train", "default": True,
                       "data_files": [{"split": "train", "path": ["train/train-00000-of-00001.parquet"]}]}
    assert card.data.task_categories == ["text-generation"] and "culture-align" in card.data.tags
    for model in ("teacher-model-x", "agent-b", "judge-model-y"):
        assert model in card.text  # how it was made, from stats.json
    for field in ("judge.meta.critique", "turns.intent", "person2.goal", "messages.role", "detail",
                  "provenance.roleplay.params.temperature", "provenance.judge.drop_rule", "provenance.models.agents"):
        assert f"`{field}`" in card.text
    assert "## Limitations" in card.text


def test_empty_split_is_left_out_and_named(tmp_path):
    run = tmp_path / "run"
    write_clca_run(run, empty_rejections=True)
    out = build_corpus("clca_dialogues", run, tmp_path / "hub")
    card = DatasetCard.load(out / "README.md")
    assert sorted(c["config_name"] for c in card.data.configs) == ["dialogues", "train"]
    assert "Empty in this build, so not published." in card.text
    assert not (out / "rejections").exists()


def test_builder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a clca run folder"):
        build_corpus("clca_dialogues", tmp_path, tmp_path / "hub")
    run = tmp_path / "run"
    corpus = write_clca_run(run)
    bad = datasets.DatasetDict({"train": corpus["train"].remove_columns("provenance")})
    bad.save_to_disk(str(tmp_path / "bad2" / "dataset"))
    with pytest.raises(ValueError, match=r"missing columns \['provenance'\]"):
        build_corpus("clca_dialogues", tmp_path / "bad2", tmp_path / "hub", configs=["train"])
    with pytest.raises(ValueError, match="no 'dialogues' split"):
        build_corpus("clca_dialogues", tmp_path / "bad2", tmp_path / "hub", configs=["dialogues"])
    with pytest.raises(ValueError, match="has no config"):
        build_corpus("clca_dialogues", run, tmp_path / "hub", configs=["nope"])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_of_user_files_is_refused_unless_overwrite_and_never_emptied(tmp_path):
    run = tmp_path / "run"
    corpus = write_clca_run(run)
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "README.md").write_text("# my notes\n")
    (out / "notes.txt").write_text("keep me")
    (out / "train" / "draft.txt").write_text("keep me too")
    before = _files(out)
    refused = r"mine: the output folder is not empty \(README.md, notes.txt, train\) and is not an earlier"
    with pytest.raises(ValueError, match=refused + ".* --overwrite"):
        build_corpus("clca_dialogues", run, out)
    assert _files(out) == before  # nothing removed or written
    build_corpus("clca_dialogues", run, out, overwrite=True)
    after = _files(out)
    assert after["notes.txt"] == b"keep me" and after["train/draft.txt"] == b"keep me too"
    assert "train/train-00000-of-00001.parquet" in after
    assert "culture-align" in DatasetCard.load(out / "README.md").data.tags
    assert len(datasets.load_dataset(str(out), "train", split="train")) == len(corpus["train"])
    # the folder now holds user files beside a build: still refused without --overwrite
    with pytest.raises(ValueError, match="not an earlier build"):
        build_corpus("clca_dialogues", run, out)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="a-file: the output folder is a file"):
        build_corpus("clca_dialogues", run, tmp_path / "a-file", overwrite=True)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "train").write_text("a file where a config folder goes")
    with pytest.raises(ValueError, match="would have to be replaced"):
        build_corpus("clca_dialogues", run, taken, overwrite=True)


def test_an_earlier_build_is_rebuilt_in_place_without_stale_files(tmp_path):
    run = tmp_path / "run"
    corpus = write_clca_run(run)
    out = build_corpus("clca_dialogues", run, tmp_path / "hub")
    stale = out / "train" / "train-00001-of-00002.parquet"  # a shard of an earlier, larger build
    shutil.copy(out / "train" / "train-00000-of-00001.parquet", stale)
    build_corpus("clca_dialogues", run, out, configs=["train", "dialogues"])
    assert not stale.exists() and (out / "train" / "train-00000-of-00001.parquet").is_file()
    assert len(datasets.load_dataset(str(out), "train", split="train")) == len(corpus["train"])


def test_undocumented_field_is_refused(tmp_path):
    import dataclasses

    run = tmp_path / "run"
    write_clca_run(run)
    cls = load_builder_class("clca_dialogues")
    fields = {**cls.CARD.fields, "train": {k: v for k, v in cls.CARD.fields["train"].items() if k != "task"}}
    partial = type("Partial", (cls,), {"CARD": dataclasses.replace(cls.CARD, fields=fields),
                                       "__module__": cls.__module__})
    with pytest.raises(ValueError, match="does not describe: train: task"):
        build_corpus(partial, run, tmp_path / "hub", configs=["train"])


def _example(feature, k: int):
    """A value of any feature (ids unique per row), to build a run folder of any recipe from its Features."""
    if isinstance(feature, dict):
        return {name: _example(sub, k) for name, sub in feature.items()}
    if isinstance(feature, datasets.List):
        return [_example(feature.feature, k)]
    return {"string": f"v{k}", "int32": k, "int64": k, "float64": 0.25 * k, "bool": k % 2 == 0}[feature.dtype]


@pytest.mark.parametrize("name", ["culturespa_qa", "culturellm_augmented"])
def test_recipe_run_builders_round_trip(tmp_path, name):
    cls = load_builder_class(name)
    run = tmp_path / "run"
    corpus = datasets.DatasetDict({
        split: datasets.Dataset.from_list([_example(features, k) for k in range(2)], features=features)
        for split, features in cls.SPLIT_FEATURES.items()})
    corpus.save_to_disk(str(run / "dataset"))
    (run / "stats.json").write_text(json.dumps({"models": {"teacher": "teacher-model-z"}, "cultures": ["JPN"]}))
    out = build_corpus(name, run, tmp_path / "hub")
    assert_round_trip(out, cls, run, list(cls.SPLIT_FEATURES))
    card = DatasetCard.load(out / "README.md")
    assert "teacher-model-z" in card.text and "Cultures (ISO3): JPN" in card.text
    assert next(c for c in card.data.configs if c.get("default"))["config_name"] == "train"


@pytest.mark.slow
def test_installed_wheel_builds_a_corpus(tmp_path):
    """Build the wheel, install it (no deps, no network) into a fresh venv that sees this environment's
    packages through a .pth file, and build the CLCA corpus from the installed package."""
    # build from a copy, so that setuptools' build/ and egg-info never land in the working tree
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "runs", "*-output", ".*cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, cwd=tmp_path, env={**os.environ, "PIP_NO_INDEX": "1"})
    wheel = next(wheels.glob("culture_align-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "host_env.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True)
    run = tmp_path / "run"
    write_clca_run(run)
    script = (
        "import sys, datasets, culture_align.builders as b\n"
        "assert 'site-packages' in b.__file__ and '/work/' not in str(b.dataset_builders_path()), b.__file__\n"
        f"out = b.build_corpus('clca_dialogues', {str(run)!r}, {str(tmp_path / 'hub')!r})\n"
        "print(b.dataset_builders_path())\n"
        "print(len(datasets.load_dataset(str(out), 'train', split='train')))\n"
    )
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].endswith("culture_align/_dataset_builders") and lines[-1] == "3"
