"""Hostile command lines: every expected failure is one line, ``culture-align <command>: error: <cause>``, with exit
status 2, found before any model is loaded; a bug keeps its traceback.

Model loading is replaced by a tripwire (``no_model_loads``), so a check that comes too late fails the test instead of
loading a model. The few runs that must succeed (resuming in specific mode, a config without ``bf16`` on a CPU-only
machine) train the tiny model of ``conftest.py`` for one step.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from datasets import Dataset, DatasetDict

from culture_align.cli import main


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load (``from_pretrained`` of any transformers model class) fails the test."""
    from transformers import PreTrainedModel

    def tripwire(cls, *args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(tripwire))


def _fails(argv: list[str], capsys, cause: str) -> str:
    """Run ``culture-align argv``: exit status 2 and one line ``culture-align <command>: error: ...`` matching
    ``cause``. Returns the line."""
    code = main(argv)
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == 2, (argv, err)
    assert err.endswith("\n") and err.count("\n") == 1, (argv, err)
    assert line.startswith(f"culture-align {argv[0]}: error: "), (argv, err)
    assert re.search(cause, line), (argv, line)
    return line


@pytest.fixture
def wvs_files(tmp_path, tiny_wvs):
    """The tiny WVS data as ``--distributions`` / ``--questions`` flags."""
    questions = [q.to_dict() for q in tiny_wvs.questions.values()]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    dists = {c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
                 for q, probs in cells.items()} for c, cells in tiny_wvs.distributions.items()}
    (tmp_path / "dists.json").write_text(json.dumps(dists))
    return ["--distributions", str(tmp_path / "dists.json"), "--questions", str(tmp_path / "questions.json")]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _records():
    return [{"messages": [{"role": "system", "content": f"You are {adjective} person."},
                          {"role": "user", "content": "How important is family in your life? 1. Very 2. Not"},
                          {"role": "assistant", "content": answer}], "culture": culture}
            for culture, adjective, answer in (("USA", "an American", "1"), ("CHN", "a Chinese", "2"))
            for _ in range(2)]


@pytest.fixture
def adapter_run(tmp_path):
    """A recipe run folder with a `dataset/` of chat records for USA and CHN."""
    run = tmp_path / "run"
    DatasetDict({"train": Dataset.from_list(_records())}).save_to_disk(str(run / "dataset"))
    return run


# ---------------------------------------------------------------------------------------------------- eval
def test_eval_output_folder_that_cannot_be_written_fails_before_the_model(tmp_path, tiny_model_dir, wvs_files,
                                                                          a_file, capsys, no_model_loads):
    base = ["eval", "--model", str(tiny_model_dir), *wvs_files, "--setting", "culture-unaware"]
    _fails([*base, "--out", str(a_file)], capsys, rf"--out {re.escape(str(a_file))}: exists and is not a folder")
    _fails([*base, "--out", str(a_file / "sub")], capsys, "is a file, not a folder")


def test_eval_output_folder_without_write_permission(tmp_path, tiny_model_dir, wvs_files, capsys, no_model_loads,
                                                     monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permission bits: deny this one folder as the kernel would
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if os.fspath(path) == str(locked)
                                else real_access(path, mode, **kw))
        _fails(["eval", "--model", str(tiny_model_dir), *wvs_files, "--out", str(locked / "new" / "out")], capsys,
               rf"{re.escape(str(locked))} is not writable")
    finally:
        locked.chmod(0o700)


def test_eval_missing_model_is_one_line(tmp_path, wvs_files, capsys, no_model_loads):
    _fails(["eval", "--model", str(tmp_path / "no-such-model"), *wvs_files, "--out", str(tmp_path / "o")], capsys,
           "--model .*no-such-model: no such folder")
    # conftest.py sets HF_HUB_OFFLINE: a Hub id that is not in the cache cannot be loaded
    _fails(["eval", "--model", "nobody/no-such-model", *wvs_files, "--out", str(tmp_path / "o")], capsys,
           "--model nobody/no-such-model: not a local folder, and not in the Hub cache while the Hub is offline")
    (tmp_path / "empty").mkdir()
    _fails(["eval", "--model", str(tmp_path / "empty"), *wvs_files, "--out", str(tmp_path / "o")], capsys,
           "no config.json in this folder")


def test_eval_counts_below_one_and_missing_adapters_fail_before_the_model(tmp_path, tiny_model_dir, wvs_files,
                                                                          capsys, no_model_loads):
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    base = ["eval", "--model", str(tiny_model_dir), *wvs_files, "--out", str(tmp_path / "o")]
    # with --adapters-dir and no --cultures the cultures come from the adapters: the data checks cannot run first
    _fails([*base, "--adapters-dir", str(adapters), "--batch-size", "-3"], capsys, "--batch-size must be >= 1, got -3")
    _fails([*base, "--adapters-dir", str(adapters), "--num-personas", "0"], capsys, "--num-personas must be >= 1")
    _fails([*base, "--adapter", str(tmp_path / "no-adapter")], capsys, "--adapter .*no-adapter: no such folder")
    _fails([*base, "--adapters-dir", str(tmp_path / "none")], capsys, "--adapters-dir .*none: no such folder")


def test_eval_template_with_an_unknown_placeholder_fails_before_the_model(tmp_path, tiny_model_dir, wvs_files,
                                                                          capsys, no_model_loads):
    template = tmp_path / "mine.yaml"
    template.write_text("system: You are {culture_adjective} person.\n")
    line = _fails(["eval", "--model", str(tiny_model_dir), *wvs_files, "--setting", str(template), "--out",
                   str(tmp_path / "o")], capsys, r"mine.yaml: .*unknown placeholder\(s\) \{culture_adjective\}")
    assert "{culture_phrase}" in line  # the placeholders it may use are named
    template.write_text("system: 'You are {culture_phrase} person.'\nuser: 'Q: {question} {'\n")
    _fails(["eval", "--model", str(tiny_model_dir), *wvs_files, "--setting", str(template), "--out",
            str(tmp_path / "o")], capsys, "mine.yaml: .*user: Single '{' encountered")


def test_eval_without_human_data_is_an_error_line(tmp_path, tiny_model_dir, capsys, no_model_loads):
    _fails(["eval", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o")], capsys, "eval needs human data")


# ---------------------------------------------------------------------------------------------- eval-tasks
@pytest.fixture
def tasks_index(tmp_path):
    (tmp_path / "hate.csv").write_text("text,label\nyou are great,0\nyou are awful,1\n")
    index = [{"task": "hate", "file": "hate.csv", "culture": "USA", "phenomenon": "hate speech",
              "labels": {"0": "not hateful", "1": "hateful"}}]
    (tmp_path / "tasks.json").write_text(json.dumps(index))
    return tmp_path / "tasks.json"


def test_eval_tasks_bad_flags_fail_before_the_model(tmp_path, tiny_model_dir, tasks_index, a_file, capsys,
                                                    no_model_loads):
    base = ["eval-tasks", "--tasks", str(tasks_index), "--model", str(tiny_model_dir)]
    out = ["--out", str(tmp_path / "o")]
    _fails([*base, "--batch-size", "-3", *out], capsys, "--batch-size must be >= 1, got -3")
    _fails([*base, "--max-examples", "0", *out], capsys, "--max-examples must be >= 1, got 0")
    _fails([*base, "--out", str(a_file)], capsys, "exists and is not a folder")
    template = tmp_path / "task-template.json"
    template.write_text(json.dumps({"system": "You read {langauge} texts."}))
    _fails([*base, "--setting", str(template), *out], capsys, r"unknown placeholder\(s\) \{langauge\}")
    _fails([*base, "--adapter", f"USA={tmp_path / 'none'}", *out], capsys, "--adapter .*none: no such folder")


# ------------------------------------------------------------------------------------------------ generate
def test_generate_config_values_of_the_wrong_type_or_range_are_one_line(tmp_path, tiny_model_dir, capsys,
                                                                        no_model_loads):
    config = tmp_path / "clca.yaml"
    config.write_text("num_scenarios: many\n")
    _fails(["generate", "clca", "--config", str(config)], capsys,
           "config key 'num_scenarios': expected an integer, got 'many'")
    config.write_text("roleplay_params: {max_new_tokens: [1, 2]}\n")
    _fails(["generate", "clca", "--config", str(config)], capsys,
           "setting roleplay_params.max_new_tokens: expected int, got \\[1, 2\\]")
    for recipe, flag in (("clca", "--teacher"), ("culturespa", "--model")):
        config.write_text("cache_chunk_size: -3\n")  # would send no request at all
        _fails(["generate", recipe, "--config", str(config), flag, str(tiny_model_dir), "--output-dir",
                str(tmp_path / "g")], capsys, "cache_chunk_size must be >= 1, got -3")


def test_generate_output_folder_and_teacher_are_checked_before_the_model(tmp_path, tiny_model_dir, wvs_files, a_file,
                                                                         capsys, no_model_loads):
    _fails(["generate", "clca", "--teacher", str(tiny_model_dir), "--output-dir", str(a_file)], capsys,
           "output_dir .*a-file: exists and is not a folder")
    _fails(["generate", "culturellm", "--wvs", wvs_files[1], "--questions", wvs_files[3], "--teacher",
            str(tiny_model_dir), "--output-dir", str(a_file)], capsys, "exists and is not a folder")
    _fails(["generate", "culturespa", "--model", str(tiny_model_dir), "--output-dir", str(a_file)], capsys,
           "exists and is not a folder")
    _fails(["generate", "clca", "--teacher", "nobody/no-teacher", "--output-dir", str(tmp_path / "g")], capsys,
           "`teacher` model nobody/no-teacher: not a local folder, and not in the Hub cache")
    config = tmp_path / "openai.yaml"
    config.write_text("teacher: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: m, "
                      "max_concurency: 4}\n")
    _fails(["generate", "clca", "--config", str(config), "--output-dir", str(tmp_path / "g")], capsys,
           "`teacher` backend settings .*unexpected keyword argument 'max_concurency'")


def test_generate_clca_help_names_shard_folders_as_they_are_made(capsys):
    from culture_align.recipes.sharding import shard_folder_name

    with pytest.raises(SystemExit):
        main(["generate", "clca", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert shard_folder_name(1, 4) in help_text  # shard-00001-of-00004


# --------------------------------------------------------------------------------------------------- train
def test_train_config_values_of_the_wrong_type_are_one_line(tmp_path, tiny_model_dir, adapter_run, capsys,
                                                            no_model_loads):
    config = tmp_path / "train.yaml"
    head = f"model_name_or_path: {tiny_model_dir}\ndataset_path: {adapter_run}\nuse_cpu: true\n"
    config.write_text(head + "per_device_train_batch_size: [1, 2]\n")
    _fails(["train", "culturespa", "--config", str(config)], capsys,
           "config key 'per_device_train_batch_size': expected an integer, got \\[1, 2\\]")
    config.write_text(head + "per_device_train_batch_size: three\n")
    _fails(["train", "culturespa", "--config", str(config)], capsys,
           "config key 'per_device_train_batch_size': expected an integer, got 'three'")
    config.write_text(head + "learning_rate: {value: 1}\n")
    _fails(["train", "clca", "--config", str(config)], capsys, "config key 'learning_rate': expected a number")


def test_train_bad_settings_fail_before_the_model(tmp_path, tiny_model_dir, adapter_run, a_file, capsys,
                                                  no_model_loads):
    base = ["train", "culturespa", "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(adapter_run),
            "--use_cpu", "true", "--report_to", "none"]
    _fails([*base, "--per_device_train_batch_size", "-3", "--output_dir", str(tmp_path / "t")], capsys,
           "per_device_train_batch_size must be >= 1, got -3")
    _fails([*base, "--output_dir", str(a_file)], capsys, "output_dir .*a-file: exists and is not a folder")
    _fails([*base, "--mode", "specific", "--resume_from_checkpoint", str(tmp_path), "--output_dir",
            str(tmp_path / "t")], capsys, "In specific mode `resume_from_checkpoint` is true or false, not a path")
    _fails(["train", "clca", "--model_name_or_path", "nobody/no-model", "--dataset_path", str(adapter_run),
            "--use_cpu", "true", "--output_dir", str(tmp_path / "t")], capsys,
           "model_name_or_path nobody/no-model: not a local folder")


def _train_config(tmp_path, tiny_model_dir, adapter_run, *extra: str):
    config = tmp_path / "train.yaml"
    config.write_text("\n".join([
        f"model_name_or_path: {tiny_model_dir}", f"dataset_path: {adapter_run}", "max_steps: 1",
        "per_device_train_batch_size: 2", "report_to: none", "disable_tqdm: true", *extra]) + "\n")
    return config


def test_train_resume_true_from_a_flag_in_specific_mode(tmp_path, tiny_model_dir, adapter_run, capsys):
    torch.set_num_threads(1)
    config = _train_config(tmp_path, tiny_model_dir, adapter_run, "use_cpu: true", "bf16: false",
                           "activation_checkpointing: false")
    out = tmp_path / "spa"
    argv = ["train", "culturespa", "--config", str(config), "--mode", "specific", "--cultures", "USA",
            "--output_dir", str(out), "--lora_r", "2", "--resume_from_checkpoint", "true"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (out / "USA" / "adapter_config.json").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only default is what is tested")
def test_train_config_without_bf16_trains_on_a_cpu_only_machine(tmp_path, tiny_model_dir, adapter_run, capsys):
    torch.set_num_threads(1)
    config = _train_config(tmp_path, tiny_model_dir, adapter_run, "activation_checkpointing: false")
    out = tmp_path / "adapter"
    assert main(["train", "culturellm", "--config", str(config), "--mode", "joint", "--lora_r", "2", "--output_dir",
                 str(out)]) == 0, capsys.readouterr().err
    assert (out / "adapter_config.json").is_file()


# -------------------------------------------------------------------------------------- demo, push, bugs
def test_demo_bad_flags_fail_before_the_model(tmp_path, tiny_model_dir, a_file, capsys, no_model_loads):
    base = ["demo", "--model", str(tiny_model_dir), "--skip-clca"]
    _fails([*base, "--batch-size", "-3", "--out", str(tmp_path / "d")], capsys, "--batch-size must be >= 1")
    _fails([*base, "--out", str(a_file)], capsys, "exists and is not a folder")
    _fails([*base, "--cultures", "USA,XYZ", "--out", str(tmp_path / "d")], capsys, "XYZ")


def test_hub_errors_are_one_line_and_bugs_keep_their_traceback(capsys, monkeypatch):
    # conftest.py sets HF_HUB_OFFLINE: the Hub's offline error is expected, not a bug
    _fails(["push", "metric", "nobody/wvs_alignment"], capsys, "offline mode is enabled")

    import culture_align.scripts.evaluation as evaluation

    def bug(argv):
        raise TypeError("a bug")

    monkeypatch.setattr(evaluation, "eval_main", bug)
    with pytest.raises(TypeError, match="a bug"):
        main(["eval", "--wvs", "x"])


def test_build_dataset_experiment_and_push_outputs_are_checked_first(tmp_path, capsys):
    from culture_align.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    assert main(["build-dataset", "wvs", "--source", str(tmp_path / "nowhere"), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "Traceback" not in err and a_file.read_text() == "keep me"
    config = tmp_path / "exp.yaml"
    config.write_text("name: x\nwvs: somewhere\n")
    assert main(["experiment", "--config", str(config), "--out", str(a_file / "run")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_per_culture_repo_template_is_checked_before_any_upload(tmp_path):
    from unittest import mock

    from culture_align.hub import push_adapter

    (tmp_path / "USA").mkdir()
    (tmp_path / "USA" / "adapter_config.json").write_text("{}")
    api = mock.MagicMock()
    with pytest.raises(ValueError, match="repo_id"):
        push_adapter(tmp_path, "me/adapter-{country}", per_culture_repos=True, api=api)
    assert not api.create_repo.called and not api.upload_folder.called


def test_train_data_is_checked_before_the_model_and_never_fetched_from_the_hub(tmp_path, capsys):
    from culture_align.cli import main

    Dataset.from_list([{"text": "no messages here", "culture": "USA"}]).save_to_disk(str(tmp_path / "corpus"))
    assert main(["train", "culturellm", "--dataset_path", str(tmp_path / "corpus"),
                 "--output_dir", str(tmp_path / "out"), "--max_steps", "1"]) == 2
    assert "no column messages" in capsys.readouterr().err
    assert main(["train", "clca", "--dataset_path", "someone/corpus", "--output_dir", str(tmp_path / "o2")]) == 2
    assert "hf://owner/name" in capsys.readouterr().err


@pytest.mark.parametrize("command,recipe", [("generate", "clca"), ("generate", "culturespa"), ("generate", "culturellm"),
                                            ("train", "clca"), ("train", "culturespa"), ("train", "culturellm"),
                                            ("train", "distribution")])
def test_every_command_help_lists_its_options_from_the_dataclasses(command, recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, recipe, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert ("--output_dir" in out) and ("--seed" in out), out[:500]


@pytest.mark.parametrize("argv,options", [
    (["eval"], ["--setting", "--exclude-items", "--sampling", "--samples", "--top-p", "--wvs-csv", "Prompts per "
                                                                                                 "forward pass"]),
    (["eval-tasks"], ["--tasks", "--adapter [ISO3=]PATH", "--max-examples", "--subsample", "Seed of the subsample"]),
    (["experiment"], ["--config", "not a flat file of these options", "--dry-run", "--conditions"]),
    (["demo"], ["--skip-clca", "--cultures", "--wvs", "human data (one of)"]),
    (["merge-shards"], ["folders", "--out"]),
    (["push"], ["dataset", "adapter", "metric"]),
    (["push", "dataset"], ["repo_id", "--source", "--configs", "--local-dir", "--public", "--private", "--token"]),
    (["push", "adapter"], ["folder", "repo_id", "--per-culture-repos", "--dataset", "--commit-message"]),
    (["push", "metric"], ["repo_id", "--private"]),
    (["build-dataset"], ["clca_dialogues", "--source", "--out", "--overwrite"]),
    ([], ["eval-tasks", "merge-shards", "build-dataset", "experiment"]),
])
def test_every_other_command_help_renders_with_its_options(argv, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in options), [o for o in options if o not in out]
    if argv not in (["push"], [], ["experiment"]):
        assert "--config FILE" in out
