"""Hub cards and uploads, without network: the cards are parsed back with huggingface_hub's card classes, and
every upload is checked against a mocked ``HfApi`` (repo ids, repo types, the exact files and commit messages)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import HfApi, ModelCard, SpaceCard
from test_dataset_builders import write_clca_run

from culture_align import cli, hub
from culture_align.builders import build_corpus
from culture_align.evaluation import WVSEvaluator
from culture_align.metric import alignment_metric_path


@pytest.fixture(scope="module")
def report(tiny_model_dir):
    """A real WVSReport of the tiny model on made-up data (2 cultures, 2 prompt settings)."""
    from culture_align.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
    wvs = _tiny_wvs()
    return WVSEvaluator(model, tok, wvs, cultures=["USA", "CHN"], show_progress=False).evaluate()


def _tiny_wvs():
    import numpy as np

    from culture_align.wvs.data import WVSData
    from culture_align.wvs.questions import SurveyQuestion

    questions = {
        "Q1": SurveyQuestion("Q1", "How important is family in your life?",
                             ("Very important", "Rather important", "Not very important", "Not at all important"),
                             (1, 2, 3, 4)),
        "Q57": SurveyQuestion("Q57", "Can most people be trusted?",
                              ("Most people can be trusted", "Need to be very careful"), (1, 2)),
    }
    dists = {"USA": {"Q1": np.array([0.6, 0.3, 0.1, 0.0]), "Q57": np.array([0.4, 0.6])},
             "CHN": {"Q1": np.array([0.8, 0.1, 0.05, 0.05]), "Q57": np.array([0.6, 0.4])}}
    return WVSData(questions=questions, distributions=dists, source="tests:hub")


def mock_api(existing: list[str] | None = None) -> mock.MagicMock:
    """A mocked ``HfApi`` whose ``upload_folder`` records what the real one would commit: the files of the folder
    it is given (read at call time, through huggingface_hub's own pattern filter) and the files of ``existing`` its
    ``delete_patterns`` would delete, in ``api.uploads``."""
    from huggingface_hub.utils import filter_repo_objects

    api = mock.create_autospec(HfApi, instance=True)
    api.uploads = []

    def upload_folder(*, repo_id, folder_path, repo_type=None, commit_message=None, delete_patterns=None,
                      allow_patterns=None, ignore_patterns=None, **kwargs):
        root = Path(folder_path)
        paths = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
        kept = list(filter_repo_objects(paths, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        deleted = [p for p in filter_repo_objects(existing or [], allow_patterns=delete_patterns)
                   if delete_patterns and p not in kept]
        api.uploads.append({"repo_id": repo_id, "repo_type": repo_type, "message": commit_message,
                            "files": {p: (root / p).read_bytes() for p in kept}, "deleted": sorted(deleted)})

    api.upload_folder.side_effect = upload_folder
    return api


def committed(api: mock.MagicMock) -> list[tuple[str, str, list[str], list[str], str]]:
    """Per upload: (repo_id, repo_type, uploaded paths, deleted paths, commit message)."""
    return [(u["repo_id"], u["repo_type"], sorted(u["files"]), u["deleted"], u["message"]) for u in api.uploads]


def save_adapter(folder: Path, base_dir: Path, seed: int = 0) -> Path:
    """A real (tiny) LoRA adapter folder, plus the clutter a training run leaves next to it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)
    (folder / "checkpoint-1").mkdir()
    (folder / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    (folder / "runs").mkdir()
    (folder / "runs" / "events").write_text("log")
    return folder


# ---------------------------------------------------------------------------------------------- model cards

def test_eval_results_carry_the_reports_per_culture_numbers(report):
    results = hub.eval_results_from_report(report)
    rows = {(r["culture"], r["setting"]): r for r in report.summary if r["culture"] != "mean"}
    assert {(e.dataset_config, e.metric_config) for e in results} == set(rows)
    for e in results:
        assert e.metric_value == pytest.approx(rows[e.dataset_config, e.metric_config][e.metric_type], abs=1e-4)
    assert {e.metric_type for e in results} == {"kl_divergence", "similarity", "alignment_score"}
    only_chn = hub.eval_results_from_report(report.to_dict(), cultures=["CHN"])
    assert {e.dataset_config for e in only_chn} == {"CHN"}


def test_adapter_card_metadata_and_model_index(report, tmp_path):
    card = hub.adapter_model_card(
        recipe=hub.get_recipe("culturespa"), base_model="Qwen/Qwen2.5-0.5B-Instruct", cultures=["CHN", "USA"],
        datasets_used=["me/culturespa-qa"], training_config={"learning_rate": 1e-4},
        adapter_config={"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": {"q_proj", "v_proj"}},
        report=report, repo_id="me/spa-qwen")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.library_name == "peft" and data.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert data.datasets == ["me/culturespa-qa"]
    assert {"culture-align", "culturespa", "lora"} <= set(data.tags)
    assert data.eval_results and data.model_name == "spa-qwen"
    index = {(e.dataset_config, e.metric_config, e.metric_type): e.metric_value for e in data.eval_results}
    chn_aware = report.row("culture-aware", "CHN")
    assert index["CHN", "culture-aware", "similarity"] == pytest.approx(chn_aware["similarity"], abs=1e-4)
    assert index["CHN", "culture-aware", "kl_divergence"] == pytest.approx(chn_aware["kl_divergence"], abs=1e-4)
    text = loaded.text
    assert 'PeftModel.from_pretrained(base, "me/spa-qwen")' in text
    assert '"learning_rate": 0.0001' in text and "2410.12971" in text
    with pytest.raises(ValueError, match="unknown recipe 'nope'; choose one of answer_distribution, clca, "
                                         "culturellm, culturespa"):
        hub.get_recipe("nope")


def test_the_recipe_registry_comes_from_the_trainers_and_their_subclasses(tiny_model_dir, tmp_path):
    from culture_align.trainers import CLCATrainer, CultureSPATrainer

    registry = hub.recipe_registry()
    assert registry["culturespa"].trainer is CultureSPATrainer and registry["clca"].arxiv_id == "2504.02953"
    assert registry["clca"].citation == CLCATrainer._paper["citation"]  # one place: the trainer

    class MyRecipeTrainer(CultureSPATrainer):  # a user's recipe: its own name and paper
        _name = "MyRecipe"
        _paper = {"title": "My recipe", "id": "2501.00001", "citation": "@misc{mine,\n  title = {My recipe}\n}"}

    class Tweaked(CultureSPATrainer):  # keeps its parent's name: its parent's recipe
        pass

    registry = hub.recipe_registry()
    assert registry["myrecipe"].trainer is MyRecipeTrainer and registry["culturespa"].trainer is CultureSPATrainer
    folder = save_adapter(tmp_path / "mine", tiny_model_dir)
    (folder / "training_info.json").write_text(json.dumps({"recipe": "MyRecipe", "cultures": ["JPN"]}))
    card = hub.adapter_card_from_folder(folder)
    assert "myrecipe" in card.data.tags and "@misc{mine," in card.text and "2501.00001" in card.text
    assert Tweaked._name == "CultureSPA"


def test_folder_cards_come_from_what_the_trainer_recorded_never_a_local_path(tiny_model_dir, tmp_path):
    folder = save_adapter(tmp_path / "GBR", tiny_model_dir)
    cache = "/home/me/.cache/culture-align/models/smollm2-135m-instruct-0.1.2"
    info = {"recipe": "CultureSPA", "mode": "specific", "cultures": ["GBR"],
            "settings": {"base_model": cache, "peft_config": {"base_model_name_or_path": cache}, "num_examples": 3},
            "training": {"learning_rate": 0.0003, "config_class": "CultureSPAConfig"}}
    (folder / "training_info.json").write_text(json.dumps(info))
    card = hub.adapter_card_from_folder(folder)
    assert cache not in str(card) and '"learning_rate": 0.0003' in card.text and "num_examples" not in card.text
    del info["training"]  # written before the trainers recorded their card settings: the fingerprint, no paths
    (folder / "training_info.json").write_text(json.dumps(info))
    card = hub.adapter_card_from_folder(folder)
    assert cache not in str(card) and '"num_examples": 3' in card.text
    # what only the card held (the training data a trainer was told, an earlier push's) is kept on a push
    api = mock_api()
    hub.push_adapter(folder, "me/spa-gbr", datasets_used=["me/culturespa-qa"], api=api)
    hub.push_adapter(folder, "me/spa-gbr", api=api)
    assert ModelCard.load(folder / "README.md").data.datasets == ["me/culturespa-qa"]
    # a trainer subclass that is not imported here: the name and paper it recorded
    info = {"recipe": "Elsewhere", "cultures": ["GBR"], "paper": {"title": "Elsewhere", "id": "",
                                                                   "citation": "@misc{elsewhere}"}}
    (folder / "training_info.json").write_text(json.dumps(info))
    card = hub.adapter_card_from_folder(folder)
    assert "elsewhere" in card.data.tags and "@misc{elsewhere}" in card.text and "arxiv.org/abs/)" not in card.text


def test_report_from_results_json(report, tmp_path):
    report.save(tmp_path / "eval")
    from_file = hub.eval_results_from_report(tmp_path / "eval")
    assert [(e.dataset_config, e.metric_type, e.metric_value) for e in from_file] == [
        (e.dataset_config, e.metric_type, e.metric_value) for e in hub.eval_results_from_report(report)]
    with pytest.raises(FileNotFoundError, match="results.json"):
        hub.eval_results_from_report(tmp_path)


def test_clca_trainer_writes_our_card(tiny_model_dir, report, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig

    from culture_align.trainers import CLCAConfig, CLCATrainer

    rows = [{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Very important."}],
             "task": task, "culture": culture} for task, culture in (("dialogue", "GBR"), ("intent", "CHN"))]
    args = CLCAConfig(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to="none",
                      save_strategy="no", logging_steps=1, intent_loss_weight=0.5, use_cpu=True)
    trainer = CLCATrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(rows),
                          peft_config=LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert {"culture-align", "clca", "lora"} <= set(card.data.tags) and card.data.library_name == "peft"
    assert "intent_loss_weight" in card.text and "Cultures: CHN, GBR" in card.text
    assert card.data.base_model is None and str(tiny_model_dir) in card.text  # a local base: named, not in YAML
    # what push_to_hub(report=...) does after saving: the evaluation goes into model-index
    trainer.create_model_card(model_name="clca-tiny", report=report)
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.model_name == "clca-tiny"
    assert {e.dataset_config for e in card.data.eval_results} == {"CHN"}  # cultures it was trained for
    # pushing the saved adapter with a report keeps what the trainer recorded and adds the evaluation
    api = mock_api()
    hub.push_adapter(tmp_path / "adapter", "me/clca-tiny", report=report, datasets_used=["me/clca"], api=api)
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert "intent_loss_weight" in card.text and 'PeftModel.from_pretrained(base, "me/clca-tiny")' in card.text
    assert {e.dataset_config for e in card.data.eval_results} == {"CHN"} and card.data.datasets == ["me/clca"]
    assert "| CHN | culture-aware |" in card.text and "Not evaluated yet" not in card.text
    assert committed(api)[0][4] == "Upload culture-align clca adapter"


# ---------------------------------------------------------------------------------------------- uploads

def test_push_adapter_single(tiny_model_dir, report, tmp_path):
    folder = save_adapter(tmp_path / "adapter", tiny_model_dir)
    api = mock_api()
    with pytest.raises(ValueError, match="which recipe"):  # PEFT's own card does not say
        hub.push_adapter(folder, "me/clca-tiny", api=api)
    assert hub.push_adapter(folder, "me/clca-tiny", recipe="clca", report=report, private=True, api=api) == [
        "me/clca-tiny"]
    api.create_repo.assert_called_once_with("me/clca-tiny", repo_type="model", private=True, exist_ok=True,
                                            token=None)
    assert committed(api) == [("me/clca-tiny", "model",
                               ["README.md", "adapter_config.json", "adapter_model.safetensors"], [],
                               "Upload culture-align clca adapter")]
    assert ModelCard.load(folder / "README.md").data.eval_results


def test_push_adapter_specific_mode(tiny_model_dir, tmp_path):
    folder = tmp_path / "specific"
    for seed, culture in enumerate(["CHN", "GBR"]):
        save_adapter(folder / culture, tiny_model_dir, seed)
    # CHN: a culture-align card already there; GBR: PEFT's card and the trainer's training_info.json
    hub.adapter_card_from_folder(folder / "CHN", recipe="culturespa").save(folder / "CHN" / "README.md")
    (folder / "GBR" / "training_info.json").write_text(json.dumps({
        "recipe": "CultureSPA", "mode": "specific", "cultures": ["GBR"], "settings": {"learning_rate": 3e-4}}))
    (folder / "culture_adapters.json").write_text(json.dumps({"CHN": "CHN", "GBR": "GBR"}))
    api = mock_api()
    hub.push_adapter(folder, "me/spa", api=api)
    (repo, kind, added, deleted, message), = committed(api)
    assert (repo, kind) == ("me/spa", "model") and not deleted
    assert added == ["CHN/README.md", "CHN/adapter_config.json", "CHN/adapter_model.safetensors", "GBR/README.md",
                     "GBR/adapter_config.json", "GBR/adapter_model.safetensors", "GBR/training_info.json",
                     "README.md", "culture_adapters.json"]
    gbr = ModelCard.load(folder / "GBR" / "README.md")
    assert "culturespa" in gbr.data.tags and '"learning_rate": 0.0003' in gbr.text and "Cultures: GBR" in gbr.text
    assert message == "Upload culture-align culturespa adapters for CHN, GBR (one subfolder per culture)"
    root = ModelCard.load(folder / "README.md")
    assert 'subfolder="CHN"' in root.text and "`GBR/`" in root.text
    assert 'subfolder="GBR"' in ModelCard.load(folder / "GBR" / "README.md").text

    api = mock_api()
    assert hub.push_adapter(folder, "me/spa", per_culture_repos=True, api=api) == ["me/spa-chn", "me/spa-gbr"]
    assert [(c[0], c[2]) for c in committed(api)] == [
        ("me/spa-chn", ["README.md", "adapter_config.json", "adapter_model.safetensors"]),
        ("me/spa-gbr", ["README.md", "adapter_config.json", "adapter_model.safetensors", "training_info.json"])]
    assert [c[4] for c in committed(api)] == ["Upload culture-align culturespa adapter for CHN",
                                              "Upload culture-align culturespa adapter for GBR"]
    api = mock_api()
    assert hub.push_adapter(folder, "me/{culture}-spa", per_culture_repos=True, api=api) == ["me/CHN-spa",
                                                                                             "me/GBR-spa"]
    with pytest.raises(FileNotFoundError, match="neither an adapter"):
        hub.push_adapter(tmp_path, "me/x", api=api)


def test_push_dataset_uploads_card_and_parquet_and_drops_stale_files(tmp_path):
    run = tmp_path / "run"
    write_clca_run(run)
    folder = build_corpus("clca_dialogues", run, tmp_path / "hub")
    api = mock_api(existing=["README.md", "train/train-00000-of-00002.parquet", "old/notes.txt"])
    hub.push_dataset(folder, "me/clca-dialogues", api=api)
    api.create_repo.assert_called_once_with("me/clca-dialogues", repo_type="dataset", private=None, exist_ok=True,
                                            token=None)
    assert committed(api) == [(
        "me/clca-dialogues", "dataset",
        ["README.md", "dialogues/train-00000-of-00001.parquet", "rejections/train-00000-of-00001.parquet",
         "train/train-00000-of-00001.parquet"],
        ["train/train-00000-of-00002.parquet"],
        "Upload CLCA culture-adapted role-play dialogues (configs: dialogues, rejections, train) built with "
        "culture-align")]


def test_push_dataset_uploads_only_the_files_its_card_lists(tmp_path):
    run = tmp_path / "run"
    write_clca_run(run)
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "notes.txt").write_text("a user's file")
    build_corpus("clca_dialogues", run, folder, configs=["train"], overwrite=True)
    (folder / "train" / "train-00000-of-00002.parquet").write_bytes(b"a stray file, not this build's")
    api = mock_api()
    hub.push_dataset(folder, "me/clca", api=api)
    assert committed(api)[0][2] == ["README.md", "train/train-00000-of-00001.parquet"]


def test_cli_build_and_push_refuse_a_folder_of_user_files_unless_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    write_clca_run(run)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("# my own readme\n")
    (out / "data.csv").write_text("a,b\n")
    capsys.readouterr()
    args = ["build-dataset", "clca_dialogues", "--source", str(run), "--out", str(out), "--configs", "train"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("culture-align build-dataset: error: ") and err.count("\n") == 1
    assert "mine: the output folder is not empty" in err and "--overwrite" in err
    assert (out / "README.md").read_text() == "# my own readme\n" and not (out / "train").exists()
    api = mock_api()
    with mock.patch.object(hub.upload, "HfApi", return_value=api):
        push = ["push", "dataset", "clca_dialogues", "--source", str(run), "me/clca", "--local-dir", str(out)]
        assert cli.main(push) == 2
        assert "not an earlier build" in capsys.readouterr().err
        api.upload_folder.assert_not_called()
        assert cli.main([*push, "--overwrite"]) == 0
    assert (out / "data.csv").read_text() == "a,b\n" and (out / "train").is_dir()
    assert cli.main([*args, "--overwrite"]) == 0 and (out / "data.csv").is_file()


def test_push_metric_as_an_evaluate_space():
    folder = alignment_metric_path()
    space = SpaceCard.load(folder / "README.md").data
    assert space.sdk == "gradio" and space.app_file == "app.py" and "evaluate" in space.tags
    api = mock_api()
    hub.push_metric("me/wvs_alignment", api=api)
    api.create_repo.assert_called_once_with("me/wvs_alignment", repo_type="space", space_sdk="gradio",
                                            private=None, exist_ok=True, token=None)
    assert committed(api) == [("me/wvs_alignment", "space",
                               ["README.md", "app.py", "requirements.txt", "wvs_alignment.py"], [],
                               "Upload the wvs_alignment evaluate metric (culture-align)")]
    assert all(content == (folder / name).read_bytes() for name, content in api.uploads[0]["files"].items())


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_build_and_push(tmp_path, tiny_model_dir, capsys):
    run = tmp_path / "run"
    write_clca_run(run)
    out = tmp_path / "built"
    assert cli.main(["build-dataset", "clca_dialogues", "--source", str(run), "--out", str(out),
                     "--configs", "train"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "train/train-00000-of-00001.parquet"]

    api = mock_api()
    with mock.patch.object(hub.upload, "HfApi", return_value=api):
        assert cli.main(["push", "dataset", "clca_dialogues", "--source", str(run), "me/clca",
                         "--local-dir", str(tmp_path / "local"), "--commit-message", "first corpus"]) == 0
        assert committed(api)[0][0::4] == ("me/clca", "first corpus")
        assert (tmp_path / "local" / "README.md").is_file()

        folder = save_adapter(tmp_path / "adapter", tiny_model_dir)
        assert cli.main(["push", "adapter", str(folder), "me/adapter", "--recipe", "culturellm",
                         "--dataset", "me/culturellm-augmented"]) == 0
        assert committed(api)[-1][0] == "me/adapter"
        assert ModelCard.load(folder / "README.md").data.datasets == ["me/culturellm-augmented"]

        assert cli.main(["push", "metric", "me/wvs_alignment", "--private"]) == 0
        assert api.create_repo.call_args.kwargs["private"] is True
    assert "evaluate.load('me/wvs_alignment')" in capsys.readouterr().out


def test_cli_push_wvs_is_private_unless_public(tmp_path):
    from test_dataset_builders import write_wvs_csv

    source, questions = write_wvs_csv(tmp_path / "src")
    for flags, private in (([], True), (["--public"], False)):
        api = mock_api()
        with mock.patch.object(hub.upload, "HfApi", return_value=api):
            assert cli.main(["push", "dataset", "wvs", "--source", str(source), "--questions", str(questions),
                             "--configs", "questions", "me/wvs", *flags]) == 0
        assert api.create_repo.call_args.kwargs["private"] is private
