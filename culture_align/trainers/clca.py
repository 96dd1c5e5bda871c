"""CLCA joint training: dialogue imitation plus intent understanding, on TRL's `SFTTrainer`.

CLCA (Liu, Korhonen & Gurevych, ACL 2025) fine-tunes a model on two kinds of chat examples generated from the
same culture-adapted role-play dialogues: ``"dialogue"`` examples (the model plays one participant) and
``"intent"`` examples (the model states what a speaker meant by a turn). The reference concatenated both and ran
plain SFT; here the joint objective is explicit,

    L = dialogue_loss_weight * L_dialogue + intent_loss_weight * L_intent   (both weights 1 by default),

each term a token-mean of the cross-entropy over its own task's assistant tokens, in one forward pass over
batches that mix both tasks. Only `_prepare_dataset` (tokenisation with assistant masks and task ids), the
collator (one more tensor), `get_batch_samples` (per-task token counts), `compute_loss` and `log` differ from
`SFTTrainer`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging
from trl import SFTConfig, SFTTrainer
from trl.data_utils import get_dataset_column_names, pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import global_then_local_main_first, pad

from ..cards import training_summary, write_trainer_model_card
from ..models import TRAINING_INFO_NAME
from ..redaction import SecretFreePickleMixin
from .utils import default_bf16, parse_resume_from_checkpoint, tokenize_conversation, trainer_config

logger = logging.get_logger(__name__)

__all__ = ["CLCA_TASKS", "CLCAConfig", "CLCATrainer", "DataCollatorForCLCA", "tokenize_conversation"]

#: The CLCA tasks, in the order of the per-task vectors (token counts, losses); the task id of a token is its index.
CLCA_TASKS = ("dialogue", "intent")


@dataclass
class CLCAConfig(SecretFreePickleMixin, SFTConfig):
    r"""
    Configuration class for the [`CLCATrainer`].

    Adds the CLCA objective to [`~trl.SFTConfig`]; every other field keeps TRL's meaning and default. The loss is
    always computed on the assistant turns' tokens only (the trainer builds the masks itself, for any chat template),
    so `assistant_only_loss`, `completion_only_loss` and `dataset_text_field` play no role. Its pickled form (the
    `training_args.bin` the trainer saves and uploads) leaves `hub_token` out ([`SecretFreePickleMixin`]).

    Parameters:
        > Parameters that control the CLCA objective

        intent_loss_weight (`float`, *optional*, defaults to `1.0`):
            Weight lambda of the intent loss in `L = w * L_dialogue + lambda * L_intent`, where each term is the mean
            cross-entropy over the assistant tokens of its task in the (accumulated, global) batch.
        dialogue_loss_weight (`float`, *optional*, defaults to `1.0`):
            Weight w of the dialogue loss (the paper's objective has 1). [`CLCAConfig.task_weights`] gives both by
            task.
        tasks (`list[str]`, *optional*, defaults to `["dialogue", "intent"]`):
            Tasks to train on, among `"dialogue"` and `"intent"`. Examples of other tasks are dropped from the
            datasets (the count is logged): `["dialogue"]` and `["intent"]` are the paper's ablations (the
            latter trains on `intent_loss_weight * L_intent`).
        task_column (`str`, *optional*, defaults to `"task"`):
            Name of the dataset column holding each example's task.

        > Parameters whose default differs from TRL's

        bf16 (`bool` or `None`, *optional*, defaults to `None`):
            `None`: bf16 mixed precision (TRL's default, unless `fp16`) where transformers accepts it (a GPU or other
            accelerator with bf16 support, XLA, or `use_cpu=True`), 32-bit otherwise, so that a config without it
            trains on a CPU-only machine. An explicit value is kept.
        resume_from_checkpoint (`str`, `bool` or `None`, *optional*, defaults to `None`):
            As in TRL; the strings `"true"`/`"false"` (from a flag) are read as booleans.

    Reference hyper-parameters (the CLCA code release), exposed but not the defaults, which stay TRL's and PEFT's:
    QLoRA on a 4-bit base model; LoRA `r=4`, `lora_alpha=0.1` (a scaling of 0.025), `lora_dropout=0.5` on
    `q_proj`/`v_proj`, with `modules_to_save=["lm_head", "embed_tokens"]` (about 1B fully trained parameters on an 8B
    model, after adding a `[PAD]` token); `learning_rate=1e-4`, `num_train_epochs=3`,
    `per_device_train_batch_size=2`, `gradient_accumulation_steps=4`, `max_length=2048`, fp16; loss on every
    assistant turn. To reproduce it:

    ```python
    >>> from peft import LoraConfig
    >>> from transformers import BitsAndBytesConfig

    >>> args = CLCAConfig(learning_rate=1e-4, num_train_epochs=3, per_device_train_batch_size=2,
    ...                   gradient_accumulation_steps=4, max_length=2048, fp16=True)
    >>> peft_config = LoraConfig(r=4, lora_alpha=0.1, lora_dropout=0.5, target_modules=["q_proj", "v_proj"],
    ...                          modules_to_save=["lm_head", "embed_tokens"], task_type="CAUSAL_LM")
    >>> quantization_config = BitsAndBytesConfig(load_in_4bit=True)
    ```
    """

    intent_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight lambda of the intent loss in `L = w * L_dialogue + lambda * L_intent`, where each term is the "
            "mean cross-entropy over the assistant tokens of its task in the (accumulated, global) batch."
        },
    )
    tasks: list[str] = field(
        default_factory=lambda: list(CLCA_TASKS),
        metadata={
            "help": "Tasks to train on, among `'dialogue'` and `'intent'`. Examples of other tasks are dropped from "
            "the datasets (the count is logged): `['dialogue']` and `['intent']` are the paper's ablations."
        },
    )
    dialogue_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight w of the dialogue loss in `L = w * L_dialogue + lambda * L_intent` (the paper: 1)."},
    )
    task_column: str = field(
        default="task",
        metadata={"help": "Name of the dataset column holding each example's task."},
    )

    def __post_init__(self):
        if isinstance(self.tasks, str):  # a single task from a CLI flag or a YAML scalar
            self.tasks = [self.tasks]
        self.tasks = list(dict.fromkeys(self.tasks))  # drop repeats, keep the order
        if not self.tasks:
            raise ValueError(f"`tasks` must name at least one of {list(CLCA_TASKS)}.")
        unknown = [task for task in self.tasks if task not in CLCA_TASKS]
        if unknown:
            raise ValueError(f"Unknown CLCA task(s) {unknown} in `tasks`; valid tasks are {list(CLCA_TASKS)}.")
        for name in ("intent_loss_weight", "dialogue_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.assistant_only_loss:
            # The loss is assistant-only by construction. Left on, `SFTTrainer` would try to swap in a training chat
            # template, which TRL ships for a fixed list of models only.
            logger.info("CLCATrainer always trains on assistant tokens only; ignoring `assistant_only_loss=True`.")
            self.assistant_only_loss = False
        self.resume_from_checkpoint = parse_resume_from_checkpoint(self.resume_from_checkpoint)
        if self.bf16 is None:
            self.bf16 = default_bf16(self.fp16, self.use_cpu)
        super().__post_init__()

    @property
    def task_weights(self) -> dict[str, float]:
        """The loss weight of each task in `CLCA_TASKS`: `{"dialogue": w, "intent": lambda}`."""
        return {"dialogue": self.dialogue_loss_weight, "intent": self.intent_loss_weight}


def _tokenize_example(
    example: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    task_column: str,
    truncation: slice | None,
) -> dict[str, list[int]]:
    processed = tokenize_conversation(tokenizer, example["messages"])
    input_ids, mask = processed["input_ids"], processed["assistant_masks"]
    if 1 not in mask:
        raise ValueError(
            "A CLCA example has no assistant tokens to train on (no assistant message, or a chat template that "
            f"renders none): {example['messages']!r}"
        )
    labels = [token if bit else -100 for token, bit in zip(input_ids, mask)]
    task_ids = [CLCA_TASKS.index(example[task_column])] * len(input_ids)
    if truncation is not None:
        input_ids, labels, task_ids = input_ids[truncation], labels[truncation], task_ids[truncation]
    return {"input_ids": input_ids, "labels": labels, "task_ids": task_ids}


@dataclass
class DataCollatorForCLCA(DataCollatorForLanguageModeling):
    """
    TRL's [`~trl.trainer.sft_trainer.DataCollatorForLanguageModeling`], plus a `task_ids` tensor shaped like `labels`:
    the task id (index in `CLCA_TASKS`) of every token, `-1` on padding. Examples need a per-token `"task_ids"` list,
    which makes packing and padding-free batches work unchanged.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        task_ids = [torch.tensor(example["task_ids"]) for example in examples]
        if self.padding_free:
            task_ids = [torch.cat(task_ids, dim=0)]
        output["task_ids"] = pad(
            task_ids, padding_value=-1, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of
        )
        return output


class CLCATrainer(SFTTrainer):
    """
    Trainer for CLCA: SFT on dialogue and intent conversations with the joint loss
    `L = dialogue_loss_weight * L_dialogue + intent_loss_weight * L_intent` (`CLCAConfig.task_weights`).

    Each term is the mean token cross-entropy over the assistant tokens of its task. Under gradient accumulation and
    data parallelism both means are taken over the whole optimizer step: `get_batch_samples` counts each task's
    assistant tokens over all micro-batches of the step (summed over processes when
    `average_tokens_across_devices=True`, as `transformers` does for `num_items_in_batch`), keeps them in
    `step_task_tokens` and returns their sum, the scalar `num_items_in_batch` `Trainer` expects; `compute_loss`
    divides each task's loss by its own count. A batch without one task adds 0 for it. `loss_dialogue` and
    `loss_intent` are logged (train and eval) next to TRL's metrics: in training, the per-task token mean of each
    optimizer step, averaged over the steps since the last log; in evaluation, the per-task mean of each eval batch,
    averaged over the batches.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from peft import LoraConfig
    >>> from culture_align.trainers import CLCAConfig, CLCATrainer

    >>> dataset = Dataset.from_list([
    ...     {"messages": [{"role": "system", "content": "You are Li Wei, ..."},
    ...                   {"role": "user", "content": "Shall we split the bill?"},
    ...                   {"role": "assistant", "content": "Please, let me treat you this time."}],
    ...      "task": "dialogue", "culture": "CHN"},
    ...     {"messages": [{"role": "user", "content": "... What is Li Wei's intent in turn 2?"},
    ...                   {"role": "assistant", "content": "Intent: to show generosity and build guanxi."}],
    ...      "task": "intent", "culture": "CHN"},
    ... ])
    >>> trainer = CLCATrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=CLCAConfig("clca-out", intent_loss_weight=1.0),
    ...                       train_dataset=dataset, peft_config=LoraConfig(task_type="CAUSAL_LM"))
    >>> trainer.train()
    ```

    Args:
        model (`str`, [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            Model to train, as for [`~trl.SFTTrainer`].
        args ([`CLCAConfig`], *optional*):
            Configuration; a plain [`~trl.SFTConfig`] or `TrainingArguments` is converted with the CLCA defaults.
        data_collator (*optional*):
            Defaults to [`DataCollatorForCLCA`]. A custom collator must also return `task_ids`.
        train_dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            Conversational dataset with a `messages` column (multi-turn allowed; the loss covers every assistant
            turn) and a task column (`CLCAConfig.task_column`, `"dialogue"` or `"intent"`); other columns (culture,
            id, provenance, ...) are dropped. An already tokenised dataset needs `input_ids`, `labels` and a
            per-token `task_ids`.
        eval_dataset (*optional*):
            Same format as `train_dataset`, or a dict of such datasets.
        processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Tokenizer with a chat template; loaded from the model when not given.
        peft_config ([`~peft.PeftConfig`], *optional*):
            PEFT configuration (e.g. `LoraConfig`) to wrap the model with.
        **kwargs:
            Passed on to [`~trl.SFTTrainer`] (`callbacks`, `optimizers`, `quantization_config`, ...);
            `compute_loss_func` and `formatting_func` are not supported.
    """

    _tag_names = ["trl", "sft", "clca", "culture-align"]
    _name = "CLCA"
    _paper = {
        "title": "Cultural Learning-Based Culture Adaptation of Language Models",
        "id": "2504.02953",
        "citation": "@inproceedings{liu2025clca,\n  title     = {Cultural Learning-Based Culture Adaptation of Language "
        "Models},\n  author    = {Chen Cecilia Liu and Anna Korhonen and Iryna Gurevych},\n  booktitle = {Proceedings "
        "of the 63rd Annual Meeting of the Association for Computational Linguistics},\n  year      = {2025}\n}",
    }
    # `compute_loss` normalises by the token counts of the whole accumulated batch: `Trainer` must not also divide by
    # the number of accumulation steps (TRL's base trainer maps this onto older transformers).
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model,
        args: CLCAConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        *,
        peft_config=None,
        **kwargs,
    ):
        args = trainer_config(model, args, CLCAConfig, self._name)
        for unsupported in ("compute_loss_func", "formatting_func"):
            if kwargs.get(unsupported) is not None:
                raise ValueError(f"CLCATrainer does not support `{unsupported}`; subclass it and override instead.")
        if args.label_smoothing_factor > 0:
            raise ValueError("CLCATrainer does not support `label_smoothing_factor`.")
        # For the model card: the cultures trained for (read before tokenisation drops the column)
        self.cultures = (sorted(set(train_dataset["culture"])) if isinstance(train_dataset, Dataset)
                         and "culture" in train_dataset.column_names else [])

        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            **kwargs,
        )

        parallelism_config = self.accelerator.parallelism_config
        if parallelism_config is not None and (parallelism_config.cp_enabled or parallelism_config.sp_enabled):
            raise NotImplementedError("CLCATrainer does not support context or sequence parallelism yet.")
        # SFTTrainer builds its collator (pad token, padding-free, position ids); add the task ids to it
        if type(self.data_collator) is DataCollatorForLanguageModeling:
            collator = self.data_collator
            self.data_collator = DataCollatorForCLCA(**{f.name: getattr(collator, f.name) for f in fields(collator)})

        # Per-task loss sums and token counts of the current optimizer step, over its micro-batches and processes
        self._logged_task_loss = [0.0] * len(CLCA_TASKS)
        self._logged_task_tokens = [0.0] * len(CLCA_TASKS)
        #: Per-task scored tokens of the current optimizer step, (len(CLCA_TASKS),), over all processes.
        self.step_task_tokens: torch.Tensor | None = None

    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class,
        args: CLCAConfig,
        packing: bool,
        formatting_func,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        column_names = get_dataset_column_names(dataset)
        if "input_ids" in column_names:  # already prepared (by the user, or by `evaluate` at init)
            missing = {"labels", "task_ids"} - set(column_names)
            if missing:
                raise ValueError(f"The tokenised {dataset_name} dataset lacks the column(s) {sorted(missing)}.")
            return dataset
        missing = {"messages", args.task_column} - set(column_names)
        if missing:
            raise ValueError(
                f"The {dataset_name} dataset needs a `messages` column and a task column `{args.task_column}`; "
                f"missing: {sorted(missing)} (columns: {column_names})."
            )

        map_kwargs: dict[str, Any] = {}
        if isinstance(dataset, Dataset):  # `IterableDataset.map` does not support `num_proc` nor `desc`
            map_kwargs["num_proc"] = args.dataset_num_proc
        truncation = None
        if args.max_length is not None and not packing:  # packing cuts sequences to `max_length` itself
            keep_end = args.truncation_mode == "keep_end"
            truncation = slice(-args.max_length, None) if keep_end else slice(None, args.max_length)

        with global_then_local_main_first():
            dataset = self._select_tasks(dataset, args, dataset_name, map_kwargs)

            if isinstance(dataset, Dataset):
                map_kwargs["desc"] = f"Tokenizing {dataset_name} dataset"
            dataset = dataset.map(
                _tokenize_example,
                fn_kwargs={"tokenizer": self._tokenizer, "task_column": args.task_column, "truncation": truncation},
                remove_columns=column_names,
                **map_kwargs,
            )

            if truncation is not None:
                # Drop examples whose assistant tokens were all cut off, since they contribute no loss
                if isinstance(dataset, Dataset):
                    map_kwargs["desc"] = f"Dropping fully masked examples from {dataset_name} dataset"
                dataset = dataset.filter(lambda labels: any(label != -100 for label in labels),
                                         input_columns="labels", **map_kwargs)

            if packing:
                if args.max_length is None:
                    raise ValueError("When packing is enabled, `max_length` can't be `None`.")
                if isinstance(dataset, Dataset):
                    map_kwargs["desc"] = f"Packing {dataset_name} dataset"
                dataset = dataset.select_columns(["input_ids", "labels", "task_ids"])
                if args.shuffle_dataset:
                    dataset = dataset.shuffle(seed=args.seed)
                dataset = pack_dataset(dataset, args.max_length, args.packing_strategy, map_kwargs)

        if args.shuffle_dataset:
            dataset = dataset.shuffle(seed=args.seed)
        return dataset

    @staticmethod
    def _select_tasks(dataset, args: CLCAConfig, dataset_name: str, map_kwargs: dict[str, Any]):
        """Drop the examples whose task is not in `args.tasks`, logging how many of each task."""
        keep = set(args.tasks)
        if isinstance(dataset, Dataset):
            counts = Counter(dataset[args.task_column])
            dropped = {task: n for task, n in counts.items() if task not in keep}
            if not dropped:
                return dataset
            unknown = {task: n for task, n in dropped.items() if task not in CLCA_TASKS}
            if unknown:
                logger.warning(f"Dropping {unknown} examples of tasks CLCA does not know from the {dataset_name} "
                               f"dataset (known tasks: {list(CLCA_TASKS)}).")
            logger.info(f"Dropping {sum(dropped.values())} of {len(dataset)} examples from the {dataset_name} "
                        f"dataset, by task: {dropped} (tasks={args.tasks}).")
            if sum(dropped.values()) == len(dataset):
                raise ValueError(f"No example of the tasks {args.tasks} in the {dataset_name} dataset.")
            map_kwargs = {**map_kwargs, "desc": f"Selecting tasks {args.tasks} in {dataset_name} dataset"}
        else:
            logger.info(f"Keeping only the examples of tasks {args.tasks} in the {dataset_name} dataset.")
        return dataset.filter(lambda task: task in keep, input_columns=args.task_column, **map_kwargs)

    def _set_signature_columns_if_needed(self):
        # `remove_unused_columns` keeps only these; `task_ids` feeds the loss, not the model
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "labels", "task_ids", "seq_lengths"]

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """
        Fetch the micro-batches of one optimizer step and count each task's assistant tokens over all of them.

        Returns the batches and `Trainer`'s scalar `num_items_in_batch` (the step's scored tokens, summed over
        processes when `average_tokens_across_devices`); the per-task counts it adds up (indexed like `CLCA_TASKS`)
        are kept in `self.step_task_tokens` for `compute_loss`.
        """
        self._flush_step_task_losses()  # this is the start of a new optimizer step
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = torch.zeros(len(CLCA_TASKS), dtype=torch.long, device=device)
        for batch in batch_samples:
            scored = batch["labels"][..., 1:] != -100  # the loss predicts token t + 1 from position t
            task_ids = batch["task_ids"][..., 1:][scored]
            counts += torch.bincount(task_ids, minlength=len(CLCA_TASKS)).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(dim=0)
            # Tensor-parallel ranks share their batch, so the gather counts it once per rank of the group
            counts = counts // self.get_tp_size()
        self.step_task_tokens = counts
        return batch_samples, counts.sum()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """
        `L = mean CE over dialogue tokens + intent_loss_weight * mean CE over intent tokens`, from one forward pass.

        Given `num_items_in_batch` (a training step, see `get_batch_samples`), each mean is over the task's tokens in
        the whole optimizer step (`self.step_task_tokens`); without it (evaluation, or a direct call before any step),
        over this batch alone. The terms are weighted by `args.task_weights`.
        """
        mode = "train" if self.model.training else "eval"
        model_inputs = {key: value for key, value in inputs.items() if key != "task_ids"}
        model_inputs["use_cache"] = False
        if self.aux_loss_enabled:
            model_inputs["output_router_logits"] = True

        outputs = model(**model_inputs, fused_lm_head=True)
        per_token_loss = -outputs.log_probs  # (batch, seq_len - 1), zero where the label is -100
        if self.args.loss_type == "dft":  # Dynamic Fine-Tuning, https://huggingface.co/papers/2508.05629
            per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
        task_ids = inputs["task_ids"][:, 1:]  # aligned with the shifted labels
        if task_ids.shape != per_token_loss.shape:
            raise ValueError("CLCATrainer does not support PEFT prompt-learning methods (virtual tokens).")
        task_range = torch.arange(len(CLCA_TASKS), device=task_ids.device)
        in_task = (task_ids[..., None] == task_range) & outputs.label_mask[..., None]  # (batch, seq_len - 1, tasks)
        task_loss_sum = (per_token_loss[..., None] * in_task).sum(dim=(0, 1))
        task_tokens = in_task.sum(dim=(0, 1))

        step_counts = self.step_task_tokens if num_items_in_batch is not None else None
        num_items = task_tokens if step_counts is None else step_counts  # a direct call: this batch's counts
        weights = torch.tensor([self.args.task_weights[task] for task in CLCA_TASKS], device=per_token_loss.device)
        # Clamped so that a task absent from the batch adds a finite zero rather than 0 / 0
        loss = (weights * task_loss_sum / num_items.to(per_token_loss.device).clamp(min=1)).sum()
        # Like `Trainer.compute_loss`: the counts cover every rank, and DDP averages the gradients across ranks
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if self.aux_loss_enabled:  # a per-micro-batch mean, so averaged over the accumulation steps
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss / steps

        self._record_metrics(mode, inputs, outputs, task_loss_sum.detach(), task_tokens)

        if return_outputs:  # the fused head builds no logits; recompute them, as `SFTTrainer` does
            with torch.no_grad():
                outputs = model(**{key: value for key, value in model_inputs.items() if key != "labels"})
            return loss, outputs
        return loss

    def _record_metrics(self, mode: str, inputs, outputs, task_loss_sum: torch.Tensor, task_tokens: torch.Tensor):
        """Store TRL's metrics (entropy, token accuracy, tokens seen) and the per-task losses, in one gather."""
        if "attention_mask" in inputs:
            num_input_tokens = inputs["attention_mask"].sum()
        else:  # padding-free: one flattened row
            num_input_tokens = torch.tensor(inputs["position_ids"].size(1), device=task_tokens.device)
        local = torch.stack(
            [
                outputs.entropy.detach().sum().float(),
                outputs.is_top1.sum().float(),
                outputs.label_mask.sum().float(),
                num_input_tokens.float(),
                *task_loss_sum.float(),
                *task_tokens.float(),
            ]
        )
        # `gather`, not `gather_for_metrics`: these are per-rank sums, not per-sample rows to de-duplicate
        totals = self.accelerator.gather(local[None]).sum(dim=0).tolist()
        entropy_sum, num_correct, num_valid, num_input_tokens = totals[:4]
        n = len(CLCA_TASKS)
        loss_sums, token_counts = totals[4 : 4 + n], totals[4 + n :]

        self._metrics[mode]["entropy"].append(entropy_sum / num_valid if num_valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(num_correct / num_valid if num_valid > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += int(num_input_tokens) // self._tp_size
            for k in range(n):  # completed into a per-step mean by `_flush_step_task_losses`
                self._logged_task_loss[k] += loss_sums[k]
                self._logged_task_tokens[k] += token_counts[k]
        else:
            for k, task in enumerate(CLCA_TASKS):
                if token_counts[k] > 0:
                    self._metrics[mode][f"loss_{task}"].append(loss_sums[k] / token_counts[k])
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

        if self.aux_loss_enabled:
            aux_loss = self.accelerator.gather(outputs.aux_loss.detach()[None]).mean().item()
            self._metrics[mode]["aux_loss"].append(aux_loss)

    def _flush_step_task_losses(self):
        """Store the per-task token-mean losses of the optimizer step that just ended (tasks it had tokens of)."""
        for k, task in enumerate(CLCA_TASKS):
            if self._logged_task_tokens[k] > 0:
                self._metrics["train"][f"loss_{task}"].append(self._logged_task_loss[k] / self._logged_task_tokens[k])
        self._logged_task_loss = [0.0] * len(CLCA_TASKS)
        self._logged_task_tokens = [0.0] * len(CLCA_TASKS)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, report=None, **kwargs):
        """
        Write the culture-align model card (base model, data, CLCA settings, LoRA settings and, given a `report` from
        `WVSEvaluator`, the per-culture WVS results as model-index metadata) to `args.output_dir/README.md`, in place
        of TRL's. `trainer.push_to_hub(report=report)` passes the report through.
        """
        write_trainer_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags, report=report,
                                 cultures=self.cultures)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save the model (PEFT writes its generic card), its `training_info.json` (recipe, cultures, settings: what
        its card is rendered from again when the folder is pushed) and our model card beside it."""
        super().save_model(output_dir, _internal_call)
        if not _internal_call and self.is_world_process_zero():  # `push_to_hub` and checkpoints write their card
            folder = Path(output_dir or self.args.output_dir)
            info = {"recipe": self._name, "cultures": self.cultures, "training": training_summary(self.args),
                    "paper": dict(self._paper)}
            (folder / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=1, default=str) + "\n")
            write_trainer_model_card(self, output_dir=folder, cultures=self.cultures)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:  # `Trainer` logs after the last micro-batch of a step
            self._flush_step_task_losses()
        super().log(logs, start_time)
