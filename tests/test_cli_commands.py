"""`eval`, `eval-tasks`, `experiment`, `demo`, `merge-shards`, `push` and `build-dataset` on the dataclass parser:
the command lines of the hand-written argparse parsers they replace parse to the same values, each command takes a
flat YAML file of its options (flags over it), and bad files are refused naming the key."""

from __future__ import annotations

import json

import pytest

from culture_align.backends import GenerationParams
from culture_align.cli import main
from culture_align.scripts.config import parse_command
from culture_align.scripts.demo import MergeShardsArguments, parse_demo_args
from culture_align.scripts.evaluation import parse_eval_args, parse_eval_tasks_args
from culture_align.scripts.experiment import parse_experiment_args
from culture_align.scripts.hub import BuildArguments, BuildOutputArguments, parse_push_args


def _fails(argv, capsys, *causes: str) -> str:
    """``main(argv)`` returns 2 and prints one line ``culture-align <command>: error: ...`` naming ``causes``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"culture-align {argv[0]}: error: "), (argv, err)
    assert all(cause in err for cause in causes), (argv, err)
    return err


# ---------------------------------------------------------------------------- the old command lines, same values
def test_eval_old_command_lines_parse_to_what_argparse_gave(tmp_path):
    # the hand-written parser gave: cultures [USA, CHN], setting [culture-aware], items [Q1, Q2], batch_size 4,
    # mode sampling, samples 3, temperature 1.0, top_p 1.0, max_new_tokens 8, seed 0, exclude_items [], ...
    args, data, config = parse_eval_args(["--cultures", "USA,CHN", "--setting", "culture-aware", "--items", "Q1,Q2",
                                          "--batch-size", "4", "--mode", "sampling", "--samples", "3"])
    assert args.cultures == ["USA", "CHN"] and config.settings == ["culture-aware"] and config.items == ["Q1", "Q2"]
    assert config.batch_size == 4 and config.mode == "sampling" and config.exclude_items == []
    assert config.sampling == GenerationParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    assert (config.num_personas, config.seed, args.model, args.out) == (50, 0, "smollm2-135m-instruct",
                                                                         "eval-output")
    assert (args.adapter, args.adapters_dir, args.dtype, args.plot_item, data.wvs) == (None,) * 5
    # defaults: both settings, every item, the sampling defaults of the old flags
    args, data, config = parse_eval_args([])
    assert args.cultures is None and config.items is None and config.mode == "logprob"
    assert config.settings == ["culture-unaware", "culture-aware"] and config.batch_size == 16
    assert config.sampling == GenerationParams(n=10, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    # dash and underscore spellings, items files, the seed of sampling mode
    (tmp_path / "items.txt").write_text("Q1\nQ57\n")
    (tmp_path / "held.json").write_text('["Q27"]')
    args, data, config = parse_eval_args([
        "--items", str(tmp_path / "items.txt"), "--exclude-items", str(tmp_path / "held.json"), "--top-p", "0.9",
        "--max_new_tokens", "4", "--temperature", "0.5", "--seed", "7", "--wvs-csv", "w.csv", "--adapters-dir", "a",
        "--num-personas", "3", "--plot-item", "Q1", "--dtype", "bfloat16", "--settings", "persona"])
    assert config.items == ["Q1", "Q57"] and config.exclude_items == ["Q27"] and config.settings == ["persona"]
    assert config.sampling == GenerationParams(n=10, temperature=0.5, top_p=0.9, max_new_tokens=4, seed=7)
    assert (data.wvs_csv, args.adapters_dir, config.num_personas, args.plot_item, args.dtype) == (
        "w.csv", "a", 3, "Q1", "bfloat16")


def test_other_old_command_lines_parse_to_what_argparse_gave():
    args, config = parse_eval_tasks_args(["--tasks", "t.json", "--adapter", "a", "--adapter", "USA=b", "--task",
                                          "x,y", "--max-examples", "4"])
    assert (args.tasks, args.task, args.adapter, args.model, args.dtype, args.out) == (
        "t.json", ["x", "y"], ["a", "USA=b"], "smollm2-135m-instruct", None, "eval-tasks-output")
    assert (config.settings, config.max_examples, config.subsample, config.seed, config.batch_size) == (
        ["plain", "culture-aware"], 4, "stratified", 0, 16)
    args, _ = parse_eval_tasks_args(["--tasks", "t.json"])
    assert args.adapter == [] and args.task is None
    args = parse_experiment_args(["--config", "e.yaml", "--wvs", "w", "--dry-run", "--conditions", "a,b"])
    assert (args.experiment_config, args.out, args.wvs, args.dry_run, args.conditions) == (
        "e.yaml", None, "w", True, ["a", "b"])
    args = parse_experiment_args(["--config", "e.yaml"])
    assert args.dry_run is False and args.conditions is None
    args, data = parse_demo_args(["--cultures", "USA,JPN", "--skip-clca", "--batch-size", "2"])
    assert (args.cultures, args.skip_clca, args.batch_size, args.out, data.wvs) == (["USA", "JPN"], True, 2,
                                                                                     "demo-output", None)
    (args,) = parse_command((MergeShardsArguments,), ["a", "b", "--out", "o"])
    assert list(args.folders) == ["a", "b"] and args.out == "o"


def test_push_and_build_old_command_lines_parse_to_what_argparse_gave():
    # a list option or a switch before a positional argument does not swallow it
    what, (build, target), options = parse_push_args([
        "dataset", "wvs", "--source", "S", "--questions", "Q", "--configs", "questions", "me/wvs", "--public"])
    assert (what, build.builder, build.source, build.questions, build.configs, target.repo_id) == (
        "dataset", "wvs", "S", "Q", ["questions"], "me/wvs")
    assert target.public is True and options.private is None and build.overwrite is False
    what, (args,), options = parse_push_args(["adapter", "--per-culture-repos", "folder", "me/a", "--dataset", "d1",
                                              "--dataset", "d2", "--private", "--commit-message", "m"])
    assert (args.folder, args.repo_id, args.per_culture_repos, list(args.dataset)) == ("folder", "me/a", True,
                                                                                         ["d1", "d2"])
    assert options.private is True and options.commit_message == "m" and options.token is None
    _, (args,), options = parse_push_args(["metric", "me/m"])
    assert args.repo_id == "me/m" and options.private is None
    build, out = parse_command((BuildArguments, BuildOutputArguments), [
        "clca_dialogues", "--source", "run", "--out", "o", "--configs", "train,test", "--overwrite"])
    assert (build.builder, build.configs, build.overwrite, out.out) == ("clca_dialogues", ["train,test"], True, "o")
    with pytest.raises(SystemExit):
        parse_command((BuildArguments, BuildOutputArguments), ["no_such_builder", "--source", "s", "--out", "o"])


# -------------------------------------------------------------------------------- flat YAML files, flags over them
def test_eval_takes_a_flat_config_with_flags_over_it(tmp_path):
    config_file = tmp_path / "eval.yaml"
    config_file.write_text("cultures: USA,CHN\nsettings: [culture-aware]\nbatch_size: 4\nmode: sampling\n"
                           "sampling: {n: 5, temperature: 0.7}\nwvs: data/wvs\nout: runs/eval\nitems: [Q1, Q2]\n")
    args, data, config = parse_eval_args(["--config", str(config_file), "--batch-size", "8", "--samples", "2"])
    assert args.cultures == ["USA", "CHN"] and config.settings == ["culture-aware"] and config.items == ["Q1", "Q2"]
    assert config.batch_size == 8 and config.mode == "sampling" and data.wvs == "data/wvs" and args.out == "runs/eval"
    assert config.sampling == GenerationParams(n=2, temperature=0.7, top_p=1.0, max_new_tokens=8, seed=0)
    _, _, config = parse_eval_args(["--config", str(config_file), "--setting", "persona,culture-unaware",
                                    "--sampling", '{"top_p": 0.5}'])
    assert config.settings == ["persona", "culture-unaware"]  # the flag replaces the file's list
    assert (config.sampling.n, config.sampling.top_p, config.sampling.temperature) == (5, 0.5, 0.7)


def test_other_commands_take_a_flat_config_with_flags_over_it(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("tasks: t.json\nadapter: [a, USA=b]\nsettings: plain\nmax_examples: 3\n")
    args, config = parse_eval_tasks_args(["--config", str(config_file), "--max-examples", "5"])
    assert (args.tasks, args.adapter, config.settings, config.max_examples) == ("t.json", ["a", "USA=b"], ["plain"],
                                                                                5)
    args, _ = parse_eval_tasks_args(["--config", str(config_file), "--adapter", "c", "--adapter", "DEU=d"])
    assert args.adapter == ["c", "DEU=d"]  # the flags replace the file's list, and add to each other
    config_file.write_text("cultures: [USA, JPN]\nskip_clca: true\nbatch_size: 2\nwvs: w\n")
    args, data = parse_demo_args(["--config", str(config_file), "--batch-size", "3"])
    assert (args.cultures, args.skip_clca, args.batch_size, data.wvs) == (["USA", "JPN"], True, 3, "w")
    config_file.write_text("out: merged\n")
    (args,) = parse_command((MergeShardsArguments,), ["a", "--config", str(config_file)])
    assert args.out == "merged"
    config_file.write_text("source: run\nout: built\nconfigs: train\noverwrite: true\n")
    build, out = parse_command((BuildArguments, BuildOutputArguments), ["clca_dialogues", "--config",
                                                                        str(config_file), "--out", "elsewhere"])
    assert (build.source, build.configs, build.overwrite, out.out) == ("run", "train", True, "elsewhere")
    config_file.write_text("source: run\nprivate: true\nlocal_dir: keep\ncommit_message: hi\n")
    _, (build, target), options = parse_push_args(["dataset", "clca_dialogues", "me/c", "--config",
                                                   str(config_file)])
    assert (build.source, target.local_dir, options.private, options.commit_message) == ("run", "keep", True, "hi")


def test_experiment_config_is_the_experiment_yaml_not_a_flags_file(tmp_path):
    flags = tmp_path / "flags.yaml"
    flags.write_text("dry_run: true\n")
    args = parse_experiment_args(["--config", str(flags)])
    assert args.experiment_config == str(flags) and args.dry_run is False


# ------------------------------------------------------------------------------------- bad files, one line each
def test_unknown_wrong_typed_and_positional_config_keys_are_refused_by_name(tmp_path, capsys):
    config_file = tmp_path / "c.yaml"
    for argv, text, causes in [
        (["eval"], "batch_sise: 4\n", ["unknown config keys: batch_sise"]),
        (["eval"], "adapters: {USA: x}\n", ["unknown config keys: adapters"]),  # set from --adapters-dir only
        (["eval"], "batch_size: many\n", ["config key 'batch_size': expected an integer, got 'many'"]),
        (["eval"], "mode: exact\n", ["config key 'mode': expected one of"]),
        (["eval"], "sampling: {n: [1]}\n", ["sampling.n"]),
        (["eval-tasks"], "tasks: t.json\nmax_examples: [1]\n", ["config key 'max_examples'"]),
        (["demo"], "skip_clca: maybe\n", ["config key 'skip_clca': expected true or false"]),
        (["demo"], "cultures_list: [USA]\n", ["unknown config keys: cultures_list"]),
        (["merge-shards", "a"], "out: o\nfolders: [a, b]\n", ["config key 'folders': a positional argument"]),
        (["build-dataset", "wvs"], "source: s\nout: o\nforce: true\n", ["unknown config keys: force"]),
        (["push", "metric", "me/m"], "private: sure\n", ["config key 'private': expected true or false"]),
        (["push", "adapter", "f", "me/a"], "repo: me/a\n", ["unknown config keys: repo"]),
    ]:
        config_file.write_text(text)
        _fails([*argv, "--config", str(config_file)], capsys, *causes)


def test_bad_values_are_refused_naming_the_option(tmp_path, capsys, monkeypatch):
    import culture_align.models

    monkeypatch.setattr(culture_align.models, "load_model_and_tokenizer", lambda *a, **k: 1 / 0)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("samples: 0\n")
    _fails(["eval", "--config", str(config_file)], capsys, "--samples must be >= 1, got 0")
    with pytest.raises(SystemExit) as exit_info:  # a flag argparse cannot convert: its usage and error, as before
        main(["eval", "--sampling", '{"n": 0}'])
    assert exit_info.value.code == 2 and "argument --sampling: n must be an integer >= 1" in capsys.readouterr().err
    _fails(["eval-tasks", "--tasks", "t.json", "--setting", ","], capsys, "--setting lists nothing")
    _fails(["demo", "--cultures", ",", "--out", str(tmp_path / "d")], capsys, "--cultures lists nothing")
    _fails(["push", "dataset", "wvs", "--source", "s", "me/w", "--private", "--public"], capsys,
           "use either --private or --public")
    _fails(["eval", "--bogus", "1"], capsys, "--bogus")


def test_experiment_reads_its_yaml_through_the_new_parser(tmp_path, capsys):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("name: x\nsplit: {protocol: nope}\n")
    _fails(["experiment", "--config", str(config_file), "--dry-run"], capsys, "split.protocol")
    with pytest.raises(SystemExit) as exit_info:  # the experiment YAML is required, as before
        main(["experiment", "--dry-run"])
    assert exit_info.value.code == 2
    assert "--experiment_config" in capsys.readouterr().err


def test_a_required_option_may_come_from_the_file_or_the_flags_but_not_neither(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_command((BuildArguments, BuildOutputArguments), ["wvs", "--out", "o"])
    assert "--source" in capsys.readouterr().err
    config_file = tmp_path / "c.yaml"
    config_file.write_text(json.dumps({"source": "s"}))
    build, out = parse_command((BuildArguments, BuildOutputArguments), ["wvs", "--out", "o", "--config",
                                                                        str(config_file)])
    assert build.source == "s" and out.out == "o"
