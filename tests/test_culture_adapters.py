"""Culture adapters (CultureSPA / CultureLLM trainers): answer-only labels, joint and specific LoRA training on one
base model, resuming by culture, loading by culture for evaluation, and the train entry points.

Every model is the tiny Llama of `conftest.py` loaded from its folder, so all start from the same base weights.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from datasets import Dataset, DatasetDict
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from culture_align.evaluation import WVSEvaluator
from culture_align.models import CULTURE_ADAPTERS_INDEX, TRAINING_INFO_NAME, load_culture_adapters
from culture_align.trainers import CultureLLMConfig, CultureLLMTrainer, CultureSPAConfig, CultureSPATrainer

# Each culture answers every question with its own option, so that the two adapters learn different things
ANSWERS = {"USA": "1", "CHN": "4"}
QUESTIONS = ["How important is family in your life? 1. Very important 2. Rather important 3. Not very important "
             "4. Not at all important",
             "Making my parents proud is a main goal. 1. Agree strongly 2. Agree 3. Disagree 4. Strongly disagree",
             "Can most people be trusted? 1. yes 2. no 3. Need to be very careful 4. Neither agree nor disagree"]
ADJECTIVES = {"USA": "an American", "CHN": "a Chinese"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and far faster than two on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _records(cultures=("USA", "CHN")):
    return [{"messages": [{"role": "system", "content": f"You are a real person with {ADJECTIVES[c]} cultural "
                                                        "background, taking part in the World Values Survey."},
                          {"role": "user", "content": question + " Answer with the number only."},
                          {"role": "assistant", "content": ANSWERS[c]}],
             "culture": c, "id": f"{c}-{i}"} for c in cultures for i, question in enumerate(QUESTIONS)]


def _args(config_class, output_dir, **overrides):
    values = dict(output_dir=str(output_dir), report_to="none", use_cpu=True, save_strategy="no", bf16=False,
                  activation_checkpointing=False, dataloader_num_workers=0, max_steps=3, logging_steps=1,
                  disable_tqdm=True, per_device_train_batch_size=3, learning_rate=5e-2, warmup_steps=0, seed=0)
    values.update(overrides)
    return config_class(**values)


def _lora_weights(model, adapter):
    return {name: p.detach().clone() for name, p in model.named_parameters() if f".{adapter}." in name}


def _base_weights(model):
    return {name.replace("base_model.model.", "").replace(".base_layer", ""): p.detach().clone()
            for name, p in model.named_parameters() if "lora_" not in name}


@pytest.fixture(scope="module")
def specific_run(tiny_model_dir, tmp_path_factory):
    """One specific-mode CultureSPA run on USA and CHN: (output folder, trainer, base weights before training)."""
    out = tmp_path_factory.mktemp("spa-specific")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base = _base_weights(model)
    trainer = CultureSPATrainer(model, args=_args(CultureSPAConfig, out, mode="specific"),
                                train_dataset=Dataset.from_list(_records()),
                                processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))
    output = trainer.train()
    trainer.save_model()
    return out, trainer, output, base


def test_labels_cover_only_the_answer(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path),
                                train_dataset=Dataset.from_list(_records()), processing_class=tokenizer)
    assert set(trainer.train_dataset.column_names) >= {"input_ids", "labels"}
    assert "messages" not in trainer.train_dataset.column_names
    for example in trainer.train_dataset:
        labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
        assert tokenizer.decode(labelled) in {"1<|im_end|>\n", "4<|im_end|>\n"}
        assert len(labelled) < len(example["input_ids"]) / 4
    assert trainer.cultures == ["CHN", "USA"] and trainer.culture_counts == {"CHN": 3, "USA": 3}


def test_config_defaults_are_the_references():
    spa = CultureSPAConfig("out", use_cpu=True)
    assert (spa.mode, spa.learning_rate, spa.lr_scheduler_type, spa.warmup_steps, spa.num_train_epochs) == (
        "joint", 1e-4, "cosine", 0.1, 1.0)
    lora = spa.default_peft_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (8, 16, 0.0, "all-linear")
    llm = CultureLLMConfig("out", use_cpu=True)
    assert (llm.mode, llm.learning_rate, llm.lr_scheduler_type, llm.num_train_epochs) == (
        "specific", 2e-4, "constant", 6.0)
    assert (llm.default_peft_config().r, llm.default_peft_config().lora_alpha) == (64, 16)
    with pytest.raises(ValueError, match="mode"):
        CultureSPAConfig("out", use_cpu=True, mode="both")
    with pytest.raises(ValueError, match="Unknown culture"):
        CultureSPAConfig("out", use_cpu=True, cultures=["XYZ"])


def test_bad_culture_values_and_missing_columns_are_named(tiny_model_dir, tmp_path):
    rows = _records()
    rows[0]["culture"] = "usa"
    with pytest.raises(ValueError, match="'usa', not an ISO3 code"):
        CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path, mode="specific"),
                          train_dataset=Dataset.from_list(rows))
    no_culture = Dataset.from_list(_records()).remove_columns("culture")
    with pytest.raises(ValueError, match="missing: \\['culture'\\]"):
        CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path, mode="specific"),
                          train_dataset=no_culture)
    no_answer = _records()
    no_answer[2]["messages"] = no_answer[2]["messages"][:2]
    with pytest.raises(ValueError, match="Row 2 has no assistant tokens"):
        CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path),
                          train_dataset=Dataset.from_list(no_answer))


def test_joint_mode_trains_and_saves_one_adapter(tiny_model_dir, tmp_path):
    trainer = CultureLLMTrainer(str(tiny_model_dir), args=_args(CultureLLMConfig, tmp_path, mode="joint"),
                                train_dataset=Dataset.from_list(_records()))
    assert list(trainer.peft_model.peft_config) == ["default"]
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "adapter_model.safetensors").is_file()
    index = json.loads((tmp_path / CULTURE_ADAPTERS_INDEX).read_text())
    assert index["mode"] == "joint" and index["adapters"] == {"*": ".", "CHN": ".", "USA": "."}
    info = json.loads((tmp_path / TRAINING_INFO_NAME).read_text())
    assert info["recipe"] == "CultureLLM" and info["culture_counts"] == {"CHN": 3, "USA": 3}
    assert info["settings"]["peft_config"]["r"] == 64 and info["train_metrics"]["train_loss"] > 0
    lora_b = [p for name, p in trainer.peft_model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # moved from PEFT's zero init
    card = ModelCard.load(tmp_path / "README.md")  # our card, not PEFT's generic one
    assert card.data.library_name == "peft" and {"culture-align", "culturellm", "lora"} <= set(card.data.tags)


def test_specific_mode_trains_one_adapter_per_culture_on_one_base(specific_run, tiny_model_dir):
    out, trainer, output, base = specific_run
    model = trainer.peft_model
    assert sorted(model.peft_config) == ["CHN", "USA"]  # the placeholder adapter is gone
    usa, chn = _lora_weights(model, "USA"), _lora_weights(model, "CHN")
    assert usa and usa.keys() == {k.replace(".CHN.", ".USA.") for k in chn}
    assert all(p.abs().sum() > 0 for name, p in usa.items() if "lora_B" in name)  # moved from the zero init
    assert any(not torch.equal(p, chn[name.replace(".USA.", ".CHN.")]) for name, p in usa.items())
    after = _base_weights(model)
    assert after.keys() == base.keys() and all(torch.equal(after[k], base[k]) for k in base)
    assert output.global_step == 6 and {"train_loss_USA", "train_loss_CHN"} <= set(output.metrics)
    for culture in ("USA", "CHN"):
        assert (out / culture / "adapter_model.safetensors").is_file()
        info = json.loads((out / culture / TRAINING_INFO_NAME).read_text())
        assert info["cultures"] == [culture] and info["settings"]["num_examples"] == 3
        card = ModelCard.load(out / culture / "README.md")
        assert {"culture-align", "culturespa", "lora"} <= set(card.data.tags) and culture in card.text
    index = json.loads((out / CULTURE_ADAPTERS_INDEX).read_text())
    assert index == {"recipe": "CultureSPA", "mode": "specific", "base_model": str(tiny_model_dir),
                     "adapters": {"CHN": "CHN", "USA": "USA"}}


def test_specific_mode_loads_the_base_model_once(tiny_model_dir, tmp_path, monkeypatch):
    loads = []
    original = LlamaForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", classmethod(counting))
    records = Dataset.from_list(_records())
    trainer = CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path, mode="specific",
                                                                max_steps=1),
                                train_dataset=records, eval_dataset=records.select([0, 3]))
    trainer.train()
    assert len(loads) == 1 and sorted(trainer.peft_model.peft_config) == ["CHN", "USA"]
    # Each culture's adapter is evaluated on its own rows
    metrics = trainer.evaluate()
    assert {"eval_USA_loss", "eval_CHN_loss"} <= set(metrics) and metrics["eval_USA_loss"] != metrics["eval_CHN_loss"]


def test_specific_mode_hands_its_callbacks_and_metrics_to_every_culture(tiny_model_dir, tmp_path):
    """Each culture's own trainer gets the callbacks the coordinator holds when training starts (one added with
    `add_callback` after construction included, never transformers' defaults twice) and never pushes on its own;
    `optimizers` is refused, since every culture builds its own."""
    from transformers import TrainerCallback

    class CountSteps(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append((args.output_dir, state.global_step))

    counter = CountSteps()
    trainer = CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path, mode="specific"),
                                train_dataset=Dataset.from_list(_records()))
    trainer.add_callback(counter)
    output = trainer.train()
    assert len(counter.steps) == output.global_step == 6
    assert {folder for folder, _ in counter.steps} == {str(tmp_path / "USA"), str(tmp_path / "CHN")}
    from culture_align.trainers.culture_specific import culture_trainer

    child = culture_trainer(trainer, "USA")
    kinds = [type(c).__name__ for c in child.callback_handler.callbacks]
    assert kinds.count("DefaultFlowCallback") == 1 and kinds.count("CountSteps") == 1
    assert child.args.push_to_hub is False and child.args.output_dir == str(tmp_path / "USA")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="pass `optimizer_cls_and_kwargs`"):
        CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, tmp_path / "b", mode="specific"),
                          train_dataset=Dataset.from_list(_records()), optimizers=(optimizer, None))


def test_rerun_skips_finished_cultures_and_refuses_other_settings(specific_run, tiny_model_dir, tmp_path):
    out, trainer, _, _ = specific_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    shutil.rmtree(run / "CHN")  # as if killed after USA
    usa_file = run / "USA" / "adapter_model.safetensors"
    usa_bytes, usa_mtime = usa_file.read_bytes(), usa_file.stat().st_mtime_ns

    rerun = CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, run, mode="specific"),
                              train_dataset=Dataset.from_list(_records()))
    output = rerun.train()
    assert set(output.metrics) == {"train_runtime", "train_loss", "train_loss_CHN"} and output.global_step == 3
    assert usa_file.stat().st_mtime_ns == usa_mtime and usa_file.read_bytes() == usa_bytes
    assert (run / "CHN" / TRAINING_INFO_NAME).is_file()
    # Same seed, data and settings: the retrained CHN adapter and the reloaded USA adapter equal the first run's
    for culture in ("USA", "CHN"):
        first, second = _lora_weights(trainer.peft_model, culture), _lora_weights(rerun.peft_model, culture)
        assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)
    assert json.loads((run / CULTURE_ADAPTERS_INDEX).read_text())["adapters"] == {"CHN": "CHN", "USA": "USA"}

    other = CultureSPATrainer(str(tiny_model_dir), args=_args(CultureSPAConfig, run, mode="specific",
                                                              learning_rate=1e-3),
                              train_dataset=Dataset.from_list(_records()))
    with pytest.raises(ValueError, match="other settings or data \\(differing: training_args\\)"):
        other.train()


def test_specific_mode_resumes_a_culture_from_its_checkpoint(tiny_model_dir, tmp_path, specific_run):
    args = _args(CultureSPAConfig, tmp_path, mode="specific", cultures=["CHN"], save_strategy="steps", save_steps=2)
    trainer = CultureSPATrainer(str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(_records()))
    trainer.train()
    assert (tmp_path / "CHN" / "checkpoint-2" / "CHN" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "CHN" / "checkpoint-2" / "USA").exists() and not (tmp_path / "USA").exists()
    for name in ("adapter_model.safetensors", "adapter_config.json", TRAINING_INFO_NAME):
        (tmp_path / "CHN" / name).unlink()  # killed after the checkpoint at step 2
    shutil.rmtree(tmp_path / "CHN" / "checkpoint-3")
    resumed = CultureSPATrainer(str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(_records()))
    output = resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3 and output.global_step == 3
    first, second = _lora_weights(trainer.peft_model, "CHN"), _lora_weights(resumed.peft_model, "CHN")
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)


def test_culture_adapters_switch_in_the_evaluator(specific_run, tiny_model_dir, tiny_wvs):
    out = specific_run[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def answers(model, **kwargs):
        evaluator = WVSEvaluator(model, tokenizer, tiny_wvs, cultures=["USA", "CHN"], settings=["culture-aware"],
                                 show_progress=False, **kwargs)
        return {(r["culture"], r["qid"]): r["model_probs"] for r in evaluator.model_answers()}

    base = answers(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval())
    model, adapters = load_culture_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)
    assert adapters == {"CHN": "CHN", "USA": "USA"} and sorted(model.peft_config) == ["CHN", "USA"]
    adapted = answers(model, adapters=adapters)
    assert all(not torch.allclose(torch.tensor(adapted[k]), torch.tensor(base[k]), atol=1e-4) for k in base)
    for culture in ("USA", "CHN"):
        alone = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out / culture))
        single = answers(alone.eval())
        for (c, qid), probs in adapted.items():
            if c == culture:
                assert torch.allclose(torch.tensor(probs), torch.tensor(single[c, qid]), atol=1e-5)
    # A subset, and a joint folder (one adapter for every culture)
    _, only_usa = load_culture_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out, cultures=["USA"])
    assert only_usa == {"USA": "USA"}
    with pytest.raises(ValueError, match="no adapter for DEU"):
        load_culture_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out, cultures=["DEU"])


def _write_run(tmp_path):
    run = tmp_path / "run"
    DatasetDict({"train": Dataset.from_list(_records())}).save_to_disk(str(run / "dataset"))
    return run


def test_train_entry_points_and_eval_with_adapters_dir(tiny_model_dir, tmp_path, tiny_wvs):
    from culture_align.cli import main

    run = _write_run(tmp_path)
    config = tmp_path / "adapters.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset_path: {run}\nmax_steps: 1\n"
        "per_device_train_batch_size: 3\nreport_to: none\nsave_strategy: 'no'\nbf16: false\n"
        "use_cpu: true\nactivation_checkpointing: false\ndisable_tqdm: true\n")
    spa = tmp_path / "spa"
    assert main(["train", "culturespa", "--config", str(config), "--mode", "specific", "--output_dir", str(spa),
                 "--lora_r", "4"]) == 0
    assert json.loads((spa / CULTURE_ADAPTERS_INDEX).read_text())["adapters"] == {"CHN": "CHN", "USA": "USA"}
    lora = json.loads((spa / "USA" / "adapter_config.json").read_text())
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (4, 16, 0.0)  # flag over the recipe default

    llm = tmp_path / "llm"
    assert main(["train", "culturellm", "--config", str(config), "--mode", "joint", "--output_dir", str(llm),
                 "--eval_fraction", "0.3", "--eval_strategy", "steps", "--eval_steps", "1"]) == 0
    info = json.loads((llm / TRAINING_INFO_NAME).read_text())
    assert info["mode"] == "joint" and info["culture_counts"] == {"CHN": 2, "USA": 2}  # 1 of 3 held out each
    assert json.loads((llm / "adapter_config.json").read_text())["r"] == 64

    (tmp_path / "wvs").mkdir()
    distributions = {c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
                         for q, probs in tiny_wvs.distributions[c].items()} for c in ("USA", "CHN")}
    data = tmp_path / "wvs" / "distributions.json"
    data.write_text(json.dumps(distributions))
    questions = tmp_path / "wvs" / "wvs_questions.json"
    questions.write_text(json.dumps([{"qid": q.qid, "text": q.text, "options": list(q.options),
                                      "codes": list(q.codes), "topic": q.topic} for q in tiny_wvs.questions.values()]))
    eval_out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_model_dir), "--adapters-dir", str(spa), "--distributions", str(data),
                 "--questions", str(questions), "--setting", "culture-aware", "--out", str(eval_out)]) == 0
    assert eval_out.is_dir()
