"""`culture-align generate|train clca`: YAML sections, flags over the file, and real runs on the tiny model."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from culture_align.cli import main
from culture_align.config_values import dataclass_from_dict
from culture_align.recipes.clca import CLCAPipelineConfig
from culture_align.scripts.config import CommandParser, hold_out_split, parse_command, read_config_file


def test_config_files_are_flat_and_checked(tmp_path):
    """One flat YAML mapping per command (TRL's convention); a sectioned file or a non-mapping is refused by name."""
    flat = tmp_path / "flat.yaml"
    flat.write_text("max_turns: 5\n")
    assert read_config_file(flat) == {"max_turns": 5}
    sectioned = tmp_path / "c.yaml"
    sectioned.write_text("generate:\n  max_turns: 3\ntrain:\n  learning_rate: 0.001\n")
    with pytest.raises(ValueError, match="c.yaml: a config is one flat mapping per command .*generate, train"):
        read_config_file(sectioned)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        read_config_file(bad)


def test_command_parser_takes_file_flags_and_nested_params(tmp_path):
    """Defaults < file < flags; a GenerationParams field takes a mapping (file) or JSON (flag) over its default; a
    backend field a name or a mapping; Sequence[str] fields items or comma-separated; help from the dataclasses."""
    from culture_align.recipes.clca import CLCAPipelineConfig
    from culture_align.scripts.clca import CLCAGenerateArguments

    config = tmp_path / "g.yaml"
    config.write_text("teacher: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: m}\nmax_turns: 3\n"
                      "roleplay_params: {max_new_tokens: 64}\ncultures: [GBR, CHN]\n")
    types = (CLCAGenerateArguments, CLCAPipelineConfig)
    args, cfg = parse_command(types, ["--config", str(config), "--max_turns", "4"])
    assert args.teacher == {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert cfg.max_turns == 4 and cfg.cultures == ("GBR", "CHN")
    assert cfg.roleplay_params.max_new_tokens == 64 and cfg.roleplay_params.top_p == 0.7  # over the default
    args, cfg = parse_command(types, [f"--config={config}", "--teacher", "smollm2-135m-instruct", "--cultures",
                                      "USA,DEU", "JPN", "--roleplay-params", '{"temperature": 0.2}'])
    assert args.teacher == "smollm2-135m-instruct" and cfg.cultures == ("USA", "DEU", "JPN")
    assert cfg.roleplay_params.temperature == 0.2 and cfg.roleplay_params.max_new_tokens == 64  # flag over the file
    _, cfg = parse_command(types, ["--roleplay_params", '{"temperature": 0.2}'])
    assert cfg.roleplay_params.temperature == 0.2 and cfg.roleplay_params.max_new_tokens == 500  # over the default
    config.write_text("turns: 2\n")
    with pytest.raises(ValueError, match="unknown config keys: turns"):
        parse_command(types, ["--config", str(config)])
    with pytest.raises(ValueError, match="--config needs a file"):
        parse_command(types, ["--config"])
    help_text = CommandParser(list(types)).format_help()
    assert "Which judged dialogues to drop" in help_text and "--roleplay_params" in help_text


def test_hold_out_split_keeps_groups_together_and_strata_represented():
    # 12 dialogues x 2 perspectives x 2 tasks, two cultures: every row of a dialogue on one side
    rows = [{"dialogue_id": f"d{k}", "culture": "GBR" if k < 6 else "JPN", "row": 4 * k + j}
            for k in range(12) for j in range(4)]
    data = Dataset.from_list(rows)
    train, test = hold_out_split(data, 0.25, seed=0, group_column="dialogue_id", stratify_column="culture")
    assert not set(train["dialogue_id"]) & set(test["dialogue_id"])
    assert len(train) + len(test) == len(data) and len(test) == 4 * 4  # ceil(0.25 x 6) = 2 dialogues per culture
    assert sorted(set(test["culture"])) == ["GBR", "JPN"]
    assert train["row"] == sorted(train["row"]) and test["row"] == sorted(test["row"])  # the row order is kept
    again = hold_out_split(data.shuffle(seed=3), 0.25, seed=0, group_column="dialogue_id", stratify_column="culture")
    assert set(again[1]["dialogue_id"]) == set(test["dialogue_id"])  # the draw does not depend on the row order
    other = [set(hold_out_split(data, 0.25, seed=s, group_column="dialogue_id")[1]["dialogue_id"]) for s in range(5)]
    assert len({frozenset(o) for o in other}) > 1  # the seed matters
    rows_only = hold_out_split(data, 0.25, seed=0)  # no group column: single rows
    assert len(rows_only[1]) == 12
    with pytest.raises(ValueError, match="culture 'GBR'"):
        hold_out_split(data.filter(lambda r: r["dialogue_id"] in ("d0", "d6", "d7")), 0.5, seed=0,
                       group_column="dialogue_id", stratify_column="culture")
    with pytest.raises(ValueError, match="eval_fraction"):
        hold_out_split(data, 1.0, seed=0)


def test_pipeline_config_from_dict():
    def pipeline_config_from_dict(values):
        return dataclass_from_dict(CLCAPipelineConfig, values, "CLCA pipeline")

    cfg = pipeline_config_from_dict({"cultures": ["GBR"], "max_turns": 3, "roleplay_params": {"max_new_tokens": 64}})
    assert cfg.max_turns == 3 and cfg.roleplay_params.max_new_tokens == 64
    assert cfg.roleplay_params.top_p == 0.7  # the other defaults are kept
    with pytest.raises(ValueError, match="max_turnz"):
        pipeline_config_from_dict({"max_turnz": 3})


def test_generate_clca_runs_from_a_config(tmp_path, tiny_model_dir, capsys):
    config = tmp_path / "clca.yaml"
    config.write_text(
        f"teacher: {{backend: transformers, model: {tiny_model_dir}}}\noutput_dir: {tmp_path / 'out'}\n"
        "cultures: [GBR]\nnum_scenarios: 1\nmax_turns: 2\nmax_attempts: 1\n"
        "scenario_params: {max_new_tokens: 8}\nshow_progress: false\n")
    assert main(["generate", "clca", "--config", str(config), "--seed", "3"]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["config"]["seed"] == 3 and stats["config"]["max_turns"] == 2
    assert stats["counts"]["seed_scenarios"] == 1
    # The random tiny model cannot write a scenario in 8 tokens: the rejection is recorded, not lost.
    assert stats["counts"]["rejections"] >= 1
    config.write_text("turns: 2\n")
    assert main(["generate", "clca", "--config", str(config)]) == 2
    assert "unknown config keys: turns" in capsys.readouterr().err


def test_train_clca_saves_an_adapter(tmp_path, tiny_model_dir):
    rows = [{"messages": [{"role": "user", "content": "Turn 1: hello"}, {"role": "assistant", "content": m}],
             "task": task, "culture": "GBR"} for m, task in (("Hello, nice to see you.", "dialogue"),
                                                             ("Intent: to greet politely.", "intent"))]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "data"))
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset_path: {tmp_path / 'data'}\n"
        "use_peft: true\nlora_r: 4\nlora_target_modules: [q_proj, v_proj]\nmax_steps: 2\n"
        "per_device_train_batch_size: 2\nreport_to: none\nsave_strategy: 'no'\nbf16: false\n"
        "activation_checkpointing: false\nuse_cpu: true\nintent_loss_weight: 0.5\n")
    out = tmp_path / "adapter"
    assert main(["train", "clca", "--config", str(config), "--output_dir", str(out)]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("recipe", ["clca", "culturespa", "culturellm", "distribution"])
def test_every_example_config_parses_with_its_command(recipe, monkeypatch):
    """The example configs are what the README tells users to run: every key is an option of its command."""
    from pathlib import Path

    from trl import ModelConfig

    from culture_align.scripts import adapter_training, clca, culturellm, culturespa
    from culture_align.trainers import ADAPTER_TRAINERS, CLCAConfig

    configs = Path(__file__).parents[1] / "examples" / "configs"
    generate = {"clca": (clca.CLCAGenerateArguments, "culture_align.recipes.clca:CLCAPipelineConfig"),
                "culturespa": (culturespa.CultureSPAGenerateArguments,
                               "culture_align.recipes.culturespa:CultureSPAPipelineConfig"),
                "culturellm": (culturellm.CultureLLMGenerateArguments,
                               "culture_align.recipes.culturellm:CultureLLMPipelineConfig")}
    if recipe in generate:
        import importlib

        arguments, target = generate[recipe]
        module, name = target.split(":")
        args, config = parse_command((arguments, getattr(importlib.import_module(module), name)),
                                     ["--config", str(configs / f"{recipe}_generate.yaml")])
        assert args.output_dir.startswith("runs/") and config.seed == 0
    if recipe == "clca":
        types = (clca.TrainScriptArguments, CLCAConfig, ModelConfig)
    else:
        config_class = ADAPTER_TRAINERS["answer_distribution" if recipe == "distribution" else recipe][0]
        script = (adapter_training.DistributionTrainScriptArguments if recipe == "distribution"
                  else adapter_training.AdapterTrainScriptArguments)
        types = (script, config_class, ModelConfig)
    _, training, model = parse_command(types, ["--config", str(configs / f"{recipe}_train.yaml"), "--bf16", "false",
                                               "--use_cpu", "true"])
    assert training.output_dir.startswith("runs/") and model.model_name_or_path == "smollm2-135m-instruct"
