"""CLCATrainer: assistant masks, the joint loss and its normalisation, logging, ablations, PEFT and resuming.

Every test builds the tiny Llama of `conftest.py` from its saved folder, so models in one test start from the same
weights; sampling is sequential so that batches can be compared exactly.
"""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from culture_align.trainers import CLCAConfig, CLCATrainer
from culture_align.trainers.clca import CLCA_TASKS, DataCollatorForCLCA
from culture_align.trainers.utils import tokenize_conversation

# conftest's ChatML template, with `{% generation %}` markers around what an assistant turn adds
CHATML_WITH_GENERATION = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ message['content'] }}<|im_end|>\n{% endgeneration %}{% else %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _message(role, content):
    return {"role": role, "content": content}


SYSTEM = _message("system", "You are a real person with your own values, a British cultural background.")
# Four examples, two per task, each with a different number of assistant tokens; both dialogues are multi-turn
DIALOGUE_A = [SYSTEM, _message("user", "How important is family in your life?"),
              _message("assistant", "Very important."), _message("user", "Agree or disagree?"),
              _message("assistant", "Agree strongly, yes.")]
DIALOGUE_B = [SYSTEM, _message("assistant", "Can most people be trusted? I am not very interested in politics."),
              _message("user", "Neither agree nor disagree."),
              _message("assistant", "On a scale from 1 to 10, family is 10: always, rather important!")]
INTENT_C = [_message("user", "Turn 2: Agree strongly. What is the intent of the speaker?"),
            _message("assistant", "Intent: to agree.")]
INTENT_D = [SYSTEM, _message("user", "Turn 3: Not very important. What is the intent?"),
            _message("assistant", "Intent: to answer the survey question, politely, and to disagree.")]


def _rows(*examples):
    return [{"messages": messages, "task": task, "culture": "GBR", "id": f"ex-{i}",
             "provenance": {"model": "teacher", "seed": i}} for i, (messages, task) in enumerate(examples)]


MIXED = _rows((DIALOGUE_A, "dialogue"), (INTENT_C, "intent"), (DIALOGUE_B, "dialogue"), (INTENT_D, "intent"))


def _args(tmp_path, config_class=CLCAConfig, **overrides):
    values = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", bf16=False,
                  activation_checkpointing=False, dataloader_num_workers=0, train_sampling_strategy="sequential",
                  max_steps=1, logging_steps=1, disable_tqdm=True, per_device_train_batch_size=2, seed=0)
    values.update(overrides)
    return config_class(**values)


@pytest.fixture()
def load(tiny_model_dir):
    def _load(chat_template=None):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer

    return _load


def _trainer(load, tmp_path, rows=MIXED, eval_rows=None, peft_config=None, **overrides):
    model, tokenizer = load()
    return CLCATrainer(model, args=_args(tmp_path, **overrides), train_dataset=Dataset.from_list(rows),
                       eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                       processing_class=tokenizer, peft_config=peft_config)


def _assistant_text(messages):
    return "".join(m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant")


# --- assistant masks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [DIALOGUE_A, DIALOGUE_B, INTENT_C, INTENT_D])
def test_assistant_masks_match_generation_markers(load, messages):
    """Prefix rendering of a plain template marks exactly what `{% generation %}` markers would."""
    _, tokenizer = load()
    ours = tokenize_conversation(tokenizer, messages)
    reference = tokenize_conversation(tokenizer, messages, chat_template=CHATML_WITH_GENERATION)
    assert ours == reference
    masked = [t for t, bit in zip(ours["input_ids"], ours["assistant_masks"]) if bit]
    assert tokenizer.decode(masked) == _assistant_text(messages)


def test_dataset_preparation_drops_extra_columns_and_rejects_conversations_without_assistant(load, tmp_path):
    trainer = _trainer(load, tmp_path)
    assert trainer.train_dataset.column_names == ["input_ids", "labels", "task_ids"]
    for row, example in zip(MIXED, trainer.train_dataset):
        assert set(example["task_ids"]) == {CLCA_TASKS.index(row["task"])}
        labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
        assert trainer.processing_class.decode(labelled) == _assistant_text(row["messages"])
    with pytest.raises(ValueError, match="no assistant tokens"):
        _trainer(load, tmp_path, rows=_rows(([SYSTEM, _message("user", "Agree?")], "dialogue")))


def test_collator_task_ids_follow_padding_and_padding_free():
    examples = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "task_ids": [0, 0, 0]},
                {"input_ids": [8, 9], "labels": [-100, 9], "task_ids": [1, 1]}]
    padded = DataCollatorForCLCA(pad_token_id=0)(examples)
    assert padded["task_ids"].tolist() == [[0, 0, 0], [1, 1, -1]]
    flat = DataCollatorForCLCA(pad_token_id=0, padding_free=True)(examples)
    assert flat["task_ids"].tolist() == [[0, 0, 0, 1, 1]]
    assert flat["task_ids"].shape == flat["labels"].shape


def test_packing_keeps_each_documents_task(load, tmp_path):
    trainer = _trainer(load, tmp_path, packing=True, max_length=300)
    assert len(trainer.train_dataset) < len(MIXED)  # some examples share a row
    task_of_text = {_assistant_text(row["messages"]): CLCA_TASKS.index(row["task"]) for row in MIXED}
    seen = []
    for row in trainer.train_dataset:
        start = 0
        for length in row["seq_lengths"]:
            document = slice(start, start + length)
            labelled = [t for t, label in zip(row["input_ids"][document], row["labels"][document]) if label != -100]
            text = trainer.processing_class.decode(labelled)
            assert set(row["task_ids"][document]) == {task_of_text[text]}
            seen.append(text)
            start += length
    assert sorted(seen) == sorted(task_of_text)


# --- the loss ----------------------------------------------------------------------------------------------------


def test_dialogue_only_with_zero_intent_weight_matches_sft_trainer(load, tmp_path):
    rows = _rows((DIALOGUE_A, "dialogue"), (DIALOGUE_B, "dialogue"), (DIALOGUE_A[:3], "dialogue"),
                 (DIALOGUE_B[:2], "dialogue"))
    overrides = dict(max_steps=2, gradient_accumulation_steps=2, learning_rate=1e-2)
    clca = _trainer(load, tmp_path / "clca", rows=rows, intent_loss_weight=0.0, **overrides)
    # TRL's own assistant-only loss needs `{% generation %}` markers in the template
    sft_model, sft_tokenizer = load(chat_template=CHATML_WITH_GENERATION)
    sft = SFTTrainer(sft_model, args=_args(tmp_path / "sft", SFTConfig, assistant_only_loss=True, **overrides),
                     train_dataset=Dataset.from_list([{"messages": row["messages"]} for row in rows]),
                     processing_class=sft_tokenizer)
    assert clca.train_dataset["input_ids"] == sft.train_dataset["input_ids"]
    assert clca.train_dataset["labels"] == sft.train_dataset["labels"]

    batch = clca.data_collator([clca.train_dataset[i] for i in range(len(rows))])
    sft_batch = {key: value for key, value in batch.items() if key != "task_ids"}
    with torch.no_grad():
        clca_loss = clca.compute_loss(clca.model.eval(), dict(batch))
        sft_loss = sft.compute_loss(sft.model.eval(), sft_batch)
    assert clca_loss.item() == pytest.approx(sft_loss.item(), abs=1e-5)

    # The same training run, gradient accumulation included
    clca.train()
    sft.train()
    clca_losses = [log["loss"] for log in clca.state.log_history if "loss" in log]
    sft_losses = [log["loss"] for log in sft.state.log_history if "loss" in log]
    assert len(clca_losses) == 2
    assert clca_losses == pytest.approx(sft_losses, abs=1e-5)


def test_joint_loss_is_sum_of_per_task_token_means(load, tmp_path):
    trainer = _trainer(load, tmp_path, rows=MIXED[:2], intent_loss_weight=0.5)  # one dialogue, one intent
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    nll = -log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    dialogue_mean, intent_mean = nll[0][scored[0]].mean(), nll[1][scored[1]].mean()
    expected = (dialogue_mean + 0.5 * intent_mean).item()
    assert expected != pytest.approx(nll[scored].mean().item(), abs=1e-3)  # not the plain token mean

    with torch.no_grad():
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(expected, abs=1e-5)
        # With the step's per-task counts, as `get_batch_samples` computes them: the scalar `Trainer` expects
        _, num_items = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))
        assert trainer.step_task_tokens.tolist() == [scored[0].sum().item(), scored[1].sum().item()]
        assert num_items.item() == scored.sum().item()
        model.train()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    # the task weights are config fields: w x dialogue + lambda x intent
    trainer.args.dialogue_loss_weight = 2.0
    assert trainer.args.task_weights == {"dialogue": 2.0, "intent": 0.5}
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    assert loss.item() == pytest.approx((2 * dialogue_mean + 0.5 * intent_mean).item(), abs=1e-5)


def _params_after_one_sgd_step(load, tmp_path, batch_size, accumulation, model_accepts_loss_kwargs=True):
    trainer = _trainer(load, tmp_path, intent_loss_weight=0.5, optim="sgd", learning_rate=0.1,
                       lr_scheduler_type="constant", max_grad_norm=0.0,
                       per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation)
    # `Trainer` would otherwise decide from this flag whether to divide the loss by the accumulation steps
    trainer.model_accepts_loss_kwargs = model_accepts_loss_kwargs
    trainer.train()
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def test_gradient_accumulation_matches_the_full_batch(load, tmp_path):
    """Batch 4 == 2 x 2 == 4 x 1 micro-batches: each task's mean is over the tokens of the whole step."""
    counts = [sum(label != -100 for label in ex["labels"]) for ex in _trainer(load, tmp_path).train_dataset]
    assert len(set(counts)) == 4  # different numbers of assistant tokens everywhere
    full = _params_after_one_sgd_step(load, tmp_path / "full", 4, 1)
    initial, _ = load()
    assert any(not torch.equal(full[n], p) for n, p in initial.named_parameters())  # it did move
    for batch_size, accumulation, accepts_loss_kwargs in ((2, 2, True), (1, 4, True), (1, 4, False)):
        accumulated = _params_after_one_sgd_step(load, tmp_path / f"ga{accumulation}-{accepts_loss_kwargs}",
                                                 batch_size, accumulation, accepts_loss_kwargs)
        for name, value in full.items():
            torch.testing.assert_close(accumulated[name], value, rtol=0, atol=1e-6, msg=name)


# --- logging and ablations ---------------------------------------------------------------------------------------


def test_per_task_losses_are_logged_in_training_and_evaluation(load, tmp_path):
    trainer = _trainer(load, tmp_path, eval_rows=MIXED, intent_loss_weight=0.5, max_steps=2,
                       eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=4)
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(train_logs) == 2
    for log in train_logs:  # every step mixes both tasks
        assert log["loss"] == pytest.approx(log["loss_dialogue"] + 0.5 * log["loss_intent"], rel=1e-5)
    eval_log = next(log for log in trainer.state.log_history if "eval_loss" in log)
    assert eval_log["eval_loss"] == pytest.approx(
        eval_log["eval_loss_dialogue"] + 0.5 * eval_log["eval_loss_intent"], rel=1e-5)
    assert {"entropy", "mean_token_accuracy", "num_tokens"} <= set(train_logs[0])


def test_logged_train_loss_is_the_token_mean_over_the_accumulated_step(load, tmp_path):
    trainer = _trainer(load, tmp_path, eval_rows=MIXED, per_device_train_batch_size=1,
                       gradient_accumulation_steps=4, per_device_eval_batch_size=4)
    before = trainer.evaluate()  # one batch of all four examples, same weights as the first step
    trainer.train()
    step = next(log for log in trainer.state.log_history if "loss" in log)
    assert step["loss_dialogue"] == pytest.approx(before["eval_loss_dialogue"], rel=1e-5)
    assert step["loss_intent"] == pytest.approx(before["eval_loss_intent"], rel=1e-5)
    assert step["loss"] == pytest.approx(before["eval_loss"], rel=1e-5)


@pytest.mark.parametrize("task", CLCA_TASKS)
def test_single_task_ablation_drops_the_other_task(load, tmp_path, caplog, task):
    rows = MIXED + _rows((INTENT_C, "survey"))
    with caplog.at_level(logging.INFO, logger="culture_align.trainers.clca"):
        trainer = _trainer(load, tmp_path, rows=rows, tasks=[task])
    kept = [row for row in rows if row["task"] == task]
    assert len(trainer.train_dataset) == len(kept) == 2
    assert all(set(ids) == {CLCA_TASKS.index(task)} for ids in trainer.train_dataset["task_ids"])
    assert "Dropping 3 of 5 examples from the train dataset" in caplog.text
    assert "survey" in caplog.text
    trainer.train()
    logged = next(log for log in trainer.state.log_history if "loss" in log)
    assert f"loss_{task}" in logged and not {f"loss_{other}" for other in CLCA_TASKS if other != task} & set(logged)


def test_config_validates_tasks_and_weight(tmp_path):
    with pytest.raises(ValueError, match="Unknown CLCA task"):
        _args(tmp_path, tasks=["dialog"])
    with pytest.raises(ValueError, match="intent_loss_weight"):
        _args(tmp_path, intent_loss_weight=-1.0)
    with pytest.raises(ValueError, match="dialogue_loss_weight"):
        _args(tmp_path, dialogue_loss_weight=-1.0)
    assert _args(tmp_path, tasks="intent").tasks == ["intent"]
    assert _args(tmp_path).tasks == ["dialogue", "intent"]


# --- PEFT, saving and resuming -----------------------------------------------------------------------------------


def test_lora_training_saves_an_adapter_and_resumes_from_a_checkpoint(load, tmp_path):
    from peft import LoraConfig

    def lora():
        return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")

    overrides = dict(max_steps=4, save_strategy="steps", save_steps=2, learning_rate=1e-2)
    trainer = _trainer(load, tmp_path / "run", peft_config=lora(), **overrides)
    trainer.train()
    assert (tmp_path / "run" / "checkpoint-2").is_dir() and (tmp_path / "run" / "checkpoint-4").is_dir()
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    final = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert any(p.abs().sum() > 0 for n, p in final.items() if "lora_B" in n)  # the adapter trained

    resumed = _trainer(load, tmp_path / "run", peft_config=lora(), **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    assert any("loss_intent" in log for log in resumed.state.log_history if log.get("step", 0) > 2)
    for name, value in final.items():
        torch.testing.assert_close(dict(resumed.model.named_parameters())[name].detach(), value, msg=name)
