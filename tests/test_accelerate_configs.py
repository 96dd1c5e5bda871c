"""The accelerate configs of ``examples/accelerate`` go through accelerate's own loader and launcher logic (no GPU
needed): ``load_config_from_file``, then ``accelerate launch --config_file ...`` up to the point where processes
would start, then the DeepSpeed / FSDP plugins built from the environment the launcher would pass on. Checked:
every key is one accelerate knows (an unknown nested key would be silently ignored), bf16 everywhere, and the
settings our trainers rely on (adapter saving, LoRA wrapping, trainer-driven accumulation)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands import launch as launch_module
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

CONFIG_DIR = Path(__file__).resolve().parent.parent / "examples" / "accelerate"
EXPECTED = {
    "multi_gpu.yaml": DistributedType.MULTI_GPU,
    "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    "fsdp.yaml": DistributedType.FSDP,
}
SCRIPT = ["examples/train_clca.py", "--config", "examples/configs/clca_train.yaml"]


def launch_environment(config_file: Path, *extra: str) -> tuple[str, dict[str, str]]:
    """What `accelerate launch --config_file <config_file> <extra> examples/train_clca.py ...` would start:
    the launcher's kind and the ACCELERATE_* / FSDP_* variables of the processes' environment."""
    args = launch_module.launch_command_parser().parse_args(["--config_file", str(config_file), *extra, *SCRIPT])
    launched = {}
    launchers = {name: (lambda a, name=name: launched.update({name: a}))
                 for name in ("deepspeed_launcher", "multi_gpu_launcher", "simple_launcher")}
    with mock.patch.multiple(launch_module, **launchers):
        launch_module.launch_command(args)
    (kind, launch_args), = launched.items()
    if kind == "deepspeed_launcher":
        _, env = prepare_deepspeed_cmd_env(launch_args)
    else:
        env = prepare_multi_gpu_env(launch_args)
    assert int(launch_args.num_processes) == int(launch_args.nproc_per_node)
    env = {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}
    return kind, {**env, "NUM_PROCESSES": str(launch_args.num_processes)}


def test_the_folder_holds_the_documented_configs():
    assert sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)
    readme = (CONFIG_DIR / "README.md").read_text()
    for name in EXPECTED:
        assert f"examples/accelerate/{name}" in readme
    assert "vllm serve" in readme and "--enable-prefix-caching" in readme and "merge-shards" in readme


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate_and_uses_only_known_keys(name):
    config = load_config_from_file(str(CONFIG_DIR / name))  # raises on unknown top-level keys
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == EXPECTED[name]
    assert config.mixed_precision == "bf16" and config.downcast_bf16 == "no"
    assert not config.use_cpu and config.num_machines == 1 and config.num_processes == 8
    # nested keys become `accelerate launch` flags: each must be one, or accelerate would ignore it silently
    flags = set(vars(launch_module.launch_command_parser().parse_args(SCRIPT)))
    for key in config.deepspeed_config:
        assert key in flags, f"{name}: deepspeed_config.{key} is not an accelerate launch option"
    for key in config.fsdp_config:
        assert (key if key.startswith("fsdp_") else f"fsdp_{key}") in flags, f"{name}: fsdp_config.{key}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launcher_environment(name):
    kind, env = launch_environment(CONFIG_DIR / name)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16" and env["NUM_PROCESSES"] == "8"
    if EXPECTED[name] == DistributedType.DEEPSPEED:
        assert kind == "deepspeed_launcher" and env["ACCELERATE_USE_DEEPSPEED"] == "true"
    else:
        assert kind == "multi_gpu_launcher" and "ACCELERATE_USE_DEEPSPEED" not in env
        assert ("ACCELERATE_USE_FSDP" in env) == (name == "fsdp.yaml")
    # the GPU count is a launch flag away
    assert launch_environment(CONFIG_DIR / name, "--num_processes", "2")[1]["NUM_PROCESSES"] == "2"


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_plugin(name, stage):
    _, env = launch_environment(CONFIG_DIR / name)
    with mock.patch.dict(os.environ, env):
        plugin = DeepSpeedPlugin()
    ds = plugin.deepspeed_config
    assert ds["zero_optimization"]["stage"] == stage
    # accumulation, clipping and batch sizes are filled from the trainer's config, not fixed here
    assert ds["gradient_accumulation_steps"] == ds["gradient_clipping"] == "auto"
    assert ds["train_micro_batch_size_per_gpu"] == ds["train_batch_size"] == "auto"
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"
    # ZeRO-3 + LoRA: shard at load time, and gather 16-bit weights so that save_model writes the adapter
    assert plugin.zero3_init_flag is (stage == 3)
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_fsdp_plugin_wraps_our_models_with_lora(tiny_model_and_tokenizer):
    from peft import LoraConfig, get_peft_model
    from peft.utils.other import fsdp_auto_wrap_policy
    from torch.distributed.fsdp import ShardingStrategy, StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    _, env = launch_environment(CONFIG_DIR / "fsdp.yaml")
    # sync_module_states asks for the current accelerator device; stand one in, nothing else touches it
    with mock.patch.dict(os.environ, env), \
            mock.patch("accelerate.utils.dataclasses.is_cuda_available", return_value=True), \
            mock.patch("torch.cuda.current_device", return_value=0):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.use_orig_params and plugin.sync_module_states and plugin.cpu_ram_efficient_loading
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.transformer_cls_names_to_wrap is None  # taken from the model's `_no_split_modules`
    # FULL_STATE_DICT: `Trainer.save_model` writes the adapter only with it
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT

    model, _ = tiny_model_and_tokenizer
    plugin.set_auto_wrap_policy(model)  # resolves `_no_split_modules` to the decoder layer class
    assert [cls.__name__ for cls in plugin.auto_wrap_policy.keywords["transformer_layer_cls"]] == ["LlamaDecoderLayer"]
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    policy = fsdp_auto_wrap_policy(peft_model)  # what the Trainer installs for a PEFT model under FSDP
    wrapped = [name for name, module in peft_model.named_modules()
               if policy(module=module, recurse=False, nonwrapped_numel=0)]
    assert any(name.endswith("layers.0") for name in wrapped)  # each decoder layer
    assert any("lora_A" in name for name in wrapped)  # and each trainable LoRA layer, apart
