"""Recipe config defaults resolved for the machine at hand: `bf16` only where transformers accepts it, and
`resume_from_checkpoint` words read as booleans."""

from __future__ import annotations

import pytest
from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

from culture_align.trainers import CLCAConfig, CultureLLMConfig, CultureSPAConfig

CONFIGS = [CLCAConfig, CultureSPAConfig, CultureLLMConfig]


@pytest.mark.parametrize("config_class", CONFIGS)
def test_bf16_defaults_to_what_the_hardware_has(config_class, tmp_path):
    has_bf16 = is_torch_bf16_gpu_available() or is_torch_xla_available()
    assert config_class(str(tmp_path)).bf16 is has_bf16  # TRL's default would refuse to build on a CPU-only machine
    assert config_class(str(tmp_path), use_cpu=True).bf16 is True  # transformers accepts CPU bf16: TRL's default
    assert config_class(str(tmp_path), use_cpu=True, bf16=False).bf16 is False  # an explicit value is kept


@pytest.mark.parametrize("config_class", CONFIGS)
def test_resume_from_checkpoint_words_are_booleans(config_class, tmp_path):
    joint = {} if config_class is CLCAConfig else {"mode": "joint"}  # specific mode takes no path (below)

    def resume(value):
        return config_class(str(tmp_path), use_cpu=True, bf16=False, resume_from_checkpoint=value, **joint
                            ).resume_from_checkpoint

    assert resume("true") is True and resume("True") is True and resume("1") is True
    assert resume("false") is False and resume("no") is False
    assert resume(str(tmp_path / "checkpoint-2")) == str(tmp_path / "checkpoint-2")
    assert resume(None) is None


def test_specific_mode_refuses_a_checkpoint_path_when_configured(tmp_path):
    with pytest.raises(ValueError, match="In specific mode `resume_from_checkpoint` is true or false"):
        CultureSPAConfig(str(tmp_path), use_cpu=True, bf16=False, mode="specific",
                         resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert CultureSPAConfig(str(tmp_path), use_cpu=True, bf16=False, mode="specific",
                            resume_from_checkpoint="true").resume_from_checkpoint is True


def test_lora_defaults_are_in_the_saved_config_and_survive_a_conversion(tmp_path):
    """`reference_lora` shows in `to_dict()` (what is logged and saved); another recipe's config converts cleanly."""
    from culture_align.trainers import CultureLLMConfig, CultureSPAConfig
    from culture_align.trainers.utils import trainer_config

    spa = CultureSPAConfig(str(tmp_path / "a"), learning_rate=3e-4, report_to="none")
    assert spa.to_dict()["reference_lora"] == CultureSPAConfig.reference_lora
    assert spa.default_peft_config().r == CultureSPAConfig.reference_lora["r"]
    assert CultureSPAConfig.default_peft_config().lora_alpha == CultureSPAConfig.reference_lora["lora_alpha"]
    llm = trainer_config("m", spa, CultureLLMConfig, "CultureLLM")
    assert isinstance(llm, CultureLLMConfig) and llm.learning_rate == 3e-4
    assert llm.to_dict()["reference_lora"] == CultureLLMConfig.reference_lora != CultureSPAConfig.reference_lora


def test_a_plain_sft_config_converts_with_its_raw_token_fields(tmp_path):
    """`to_dict()` masks every `*_token` field; the conversion reads the raw values (eos/pad tokens, the Hub token)."""
    from trl import SFTConfig

    from culture_align.trainers.utils import trainer_config

    plain = SFTConfig(str(tmp_path), report_to="none", use_cpu=True, bf16=False, hub_token="hf_secret", max_steps=3)
    converted = trainer_config("m", plain, CultureSPAConfig, "CultureSPA")
    assert isinstance(converted, CultureSPAConfig) and converted.max_steps == 3
    assert converted.eos_token == plain.eos_token and converted.pad_token == plain.pad_token
    assert converted.hub_token == "hf_secret"


def test_specific_mode_refuses_settings_it_cannot_honour(tmp_path):
    with pytest.raises(ValueError, match="`load_best_model_at_end` is not supported in specific mode"):
        CultureSPAConfig(str(tmp_path), use_cpu=True, bf16=False, mode="specific", load_best_model_at_end=True,
                         eval_strategy="steps", save_strategy="steps")
