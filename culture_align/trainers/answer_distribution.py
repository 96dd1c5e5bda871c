"""Training on whole human answer distributions: LoRA with a forward-KL loss on the model's answer distribution.

The three seed recipes train on one answer per question, so the most they can teach a model is where the mode lies;
the WVS metric compares whole distributions. Cao et al. (NAACL 2025, arXiv 2502.07068) fine-tune LoRA adapters with
KL(P_human || Q_model) on WVS-7 country distributions (KL beat cross-entropy, JS and Wasserstein there); SubPOP (Suh
et al., ACL 2025, arXiv 2502.16761) does the same on survey subpopulations. [`AnswerDistributionTrainer`] is that
method as a TRL trainer, joint (one adapter, culture in the prompt) or one adapter per culture.

Q_model is exactly the distribution the evaluator reads: the probability of each legal answer after the chat prompt
under a decoder constrained to write one legal answer (multi-token codes scored as sequences, "1" vs "10" told apart
by the end-of-turn token), computed by the same function
([`~culture_align.backends.option_scoring.constrained_choice_log_probs`]) from one forward pass over the prompt and the
few answer tokens where legal answers branch. Only those positions go through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase
from trl.data_utils import get_dataset_column_names

from ..backends.option_scoring import OptionScorer, branching_nodes, constrained_choice_log_probs, node_chains
from ..cultures import get_culture
from .culture_adapters import CultureAdapterConfig, CultureAdapterTrainer

__all__ = ["AnswerDistributionCollator", "AnswerDistributionConfig", "AnswerDistributionTrainer", "ItemGroupedSampler"]


@dataclass
class AnswerDistributionConfig(CultureAdapterConfig):
    r"""
    Configuration class for the [`AnswerDistributionTrainer`]: [`CultureAdapterConfig`] (joint or specific adapters)
    with the distribution loss's settings and Cao et al.'s hyper-parameters as defaults.

    Parameters:
        prompt_column (`str`, *optional*, defaults to `"prompt"`):
            Column of the chat prompt: a list of messages (system and user turns), as the evaluator asks the item.
        choices_column (`str`, *optional*, defaults to `"choices"`):
            Column of the legal answers, as strings (the option codes, e.g. `["1", "2", "3", "4"]`).
        target_column (`str`, *optional*, defaults to `"target"`):
            Column of the target distribution over the choices (non-negative, renormalised; zeros allowed).
        label_smoothing (`float`, *optional*, defaults to `0.0`):
            Mix the target with the uniform distribution: `(1 - s) * P + s / n`.
        culture_contrast_weight (`float`, *optional*, defaults to `0.0`):
            Weight lambda of the culture-contrast term (joint mode; 0 turns it off). The rows of one item asked for
            different cultures are drawn together (one item's rows are consecutive in the sampling order, items in
            random order), and for each such group in a batch the term is the squared error between how the model's
            distributions and the humans' differ from the group's mean: `sum_k ((Q_ck - mean_c' Q_c'k) - (P_ck -
            mean_c' P_c'k))^2` per row, in probability units, averaged like the KL. Forward KL alone is dominated by
            what every culture shares (the item's average answer); this term sees only where the cultures differ, and
            is 0 for a model that reproduces the humans' differences whatever its shared part. Logged as `contrast`.
        item_column (`str`, *optional*, defaults to `"qid"`):
            Column naming the item a row asks (rows of one item are grouped for the culture-contrast term).

    > Parameters whose defaults differ from [`~trl.SFTConfig`] (Cao et al., NAACL 2025):

        learning_rate (`float`, *optional*, defaults to `1e-4`):
            Initial learning rate of AdamW.
        per_device_train_batch_size (`int`, *optional*, defaults to `16`):
            Prompts per device and step.
        gradient_checkpointing (`bool`, *optional*, defaults to `False`):
            Survey prompts are short; recomputation costs more than it saves here.

    LoRA defaults (used when the trainer gets no `peft_config`; `reference_lora`): Cao et al.'s `r=8`, `lora_alpha=32`,
    on every linear layer but `lm_head`. The loss is the mean over prompts of KL(P || Q) in nats (exact, no smoothing
    of Q: log Q comes from a log-softmax); logged as `kl`, with the mean entropy of Q as `entropy` and `kl_<ISO3>`
    per culture present in the batch.
    """

    reference_lora: ClassVar[dict[str, Any]] = {
        "r": 8, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear", "bias": "none",
    }

    prompt_column: str = field(default="prompt", metadata={"help": "Column of the chat prompt (list of messages)."})
    choices_column: str = field(default="choices", metadata={"help": "Column of the legal answers (strings)."})
    target_column: str = field(default="target", metadata={"help": "Column of the target distribution."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Mix the target with uniform: (1 - s) P + s / n."})
    culture_contrast_weight: float = field(default=0.0, metadata={
        "help": "Weight of the culture-contrast term (joint mode): squared error between the model's and the humans' "
                "deviations from the mean distribution of the item's rows in the batch; 0 turns it off."})
    item_column: str = field(default="qid", metadata={
        "help": "Column naming a row's item (rows of one item are drawn together for the culture-contrast term)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate of AdamW."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Prompts per device and step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}.")
        if not (self.culture_contrast_weight >= 0.0 and np.isfinite(self.culture_contrast_weight)):
            raise ValueError(f"`culture_contrast_weight` must be a finite number >= 0, got "
                             f"{self.culture_contrast_weight}.")
        if self.culture_contrast_weight > 0 and self.mode == "specific":
            raise ValueError("`culture_contrast_weight` compares cultures within a batch, so it needs mode='joint' "
                             "(a specific adapter sees one culture).")
        super().__post_init__()


class AnswerDistributionCollator:
    """Batch rows of (prompt ids, choice token sequences, target) for the distribution loss.

    Each example becomes one row per chain of branching nodes (``prompt + path``; one row for single-token answers),
    right-padded. The batch carries, per example, where each branching node's next-token distribution is read:
    ``answers[i] = {"sequences", "branches", "nodes": {node: (row, position)}}``; ``culture`` and ``item`` (the
    values of ``item_column``) per example when every feature has them.
    """

    def __init__(self, pad_token_id: int, item_column: str = "qid") -> None:
        self.pad_token_id = pad_token_id
        self.item_column = item_column

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        rows: list[list[int]] = []
        answers = []
        for feature in features:
            prompt = list(feature["input_ids"])
            sequences = [tuple(s) for s in feature["choice_ids"]]
            branches = branching_nodes(sequences)
            nodes = {}
            for chain in node_chains(branches):
                row = len(rows)
                rows.append(prompt + list(chain))
                for node in branches:
                    if chain[: len(node)] == node:
                        nodes.setdefault(node, (row, len(prompt) - 1 + len(node)))
            answers.append({"sequences": sequences, "branches": branches, "nodes": nodes})
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention_mask[i, : len(r)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "answers": answers,
                 "target": [torch.tensor(f["target"], dtype=torch.float32) for f in features]}
        if all("culture" in f for f in features):
            batch["culture"] = [f["culture"] for f in features]
        if all(self.item_column in f for f in features):
            batch["item"] = [f[self.item_column] for f in features]
        return batch


class ItemGroupedSampler(torch.utils.data.Sampler[int]):
    """Row indices with the rows of one item consecutive: items in a random order, each item's rows shuffled.

    Used for the culture-contrast term, which compares the cultures of one item within a batch. Each pass (epoch)
    draws a new order from one generator seeded once, so a run is reproducible from its seed.

    Args:
        items: The item of each row (length = number of rows).
        seed: Seed of the generator.
    """

    def __init__(self, items: Sequence[Any], seed: int = 0) -> None:
        groups: dict[Any, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(item, []).append(index)
        self.groups = list(groups.values())
        self.num_rows = len(items)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self):
        for g in torch.randperm(len(self.groups), generator=self.generator).tolist():
            group = self.groups[g]
            yield from (group[k] for k in torch.randperm(len(group), generator=self.generator).tolist())


def _encode_example(example: dict[str, Any], index: int, scorer: OptionScorer, prompt_column: str,
                    choices_column: str, target_column: str, label_smoothing: float) -> dict[str, Any]:
    prompt, choices, target = example[prompt_column], example[choices_column], example[target_column]
    if not isinstance(prompt, list) or not prompt or prompt[-1].get("role") != "user":
        raise ValueError(f"Row {index}: `{prompt_column}` must be a list of chat messages ending with the user turn, "
                         f"got {prompt!r}.")
    choices = [str(c) for c in (choices or [])]
    if len(choices) < 2 or len(set(choices)) != len(choices):
        raise ValueError(f"Row {index}: `{choices_column}` needs at least two distinct answers, got {choices!r}.")
    p = np.asarray(target if target is not None else [], dtype=np.float64)
    if p.shape != (len(choices),):
        raise ValueError(f"Row {index}: `{target_column}` has {p.size} values for {len(choices)} choices.")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"Row {index}: `{target_column}` must be finite, non-negative and not all zero: {p.tolist()}.")
    p = p / p.sum()
    p = (1.0 - label_smoothing) * p + label_smoothing / len(p)
    return {"input_ids": scorer.encode(prompt),
            "choice_ids": [list(s) for s in scorer.choice_sequences(prompt, choices)], "target": p.tolist()}


class AnswerDistributionTrainer(CultureAdapterTrainer):
    """
    LoRA adapters trained to answer survey items with the humans' whole answer distribution (forward KL).

    Example:

    ```python
    >>> from culture_align.trainers import AnswerDistributionConfig, AnswerDistributionTrainer
    >>> from culture_align.recipes.distribution import wvs_distribution_rows

    >>> rows = wvs_distribution_rows(split.training_view(wvs))  # prompt, choices, target, culture
    >>> trainer = AnswerDistributionTrainer(model="HuggingFaceTB/SmolLM2-135M-Instruct", train_dataset=rows,
    ...                                     args=AnswerDistributionConfig("wvs-distribution", mode="joint"))
    >>> trainer.train(); trainer.save_model()
    ```

    Args:
        model, args, train_dataset, eval_dataset, processing_class, peft_config, **kwargs:
            As for [`CultureAdapterTrainer`]; rows hold a prompt, its legal answers and a target distribution over
            them (see [`AnswerDistributionConfig`]), and a culture column in specific mode (and for per-culture
            logging).
    """

    config_class: ClassVar[type[CultureAdapterConfig]] = AnswerDistributionConfig
    _tag_names = ["trl", "culture-align", "answer-distribution"]
    _name = "answer_distribution"
    _paper = {
        "title": "Specializing Large Language Models to Simulate Survey Response Distributions for Global Populations",
        "id": "2502.07068",
        "citation": "@inproceedings{cao2025specializing,\n  title     = {Specializing Large Language Models to Simulate "
        "Survey Response Distributions for Global Populations},\n  author    = {Yong Cao and Haijiang Liu and Arnav "
        "Arora and Isabelle Augenstein and Paul R{\\\"o}ttger and Daniel Hershcovich},\n  booktitle = {Proceedings of "
        "the 2025 Conference of the Nations of the Americas Chapter of the Association for Computational "
        "Linguistics},\n  year      = {2025}\n}\n@inproceedings{suh2025subpop,\n  title     = {Language Model "
        "Fine-Tuning on Scaled Survey Data for Predicting Distributions of Public Opinions},\n  author    = {Joseph "
        "Suh and Erfan Jahanparast and Suhong Moon and Minwoo Kang and Serina Chang},\n  booktitle = {Proceedings of "
        "the 63rd Annual Meeting of the Association for Computational Linguistics},\n  year      = {2025}\n}",
    }

    def __init__(self, model, args: AnswerDistributionConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class: PreTrainedTokenizerBase | None = None, **kwargs):
        if data_collator is None:
            data_collator = _LazyCollator()
        super().__init__(model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        if isinstance(self.data_collator, _LazyCollator):
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            self.data_collator = AnswerDistributionCollator(int(pad), item_column=self.args.item_column)
        self.loss_is_scaled_for_ga = True  # compute_loss divides by the examples of the whole optimizer step

    # ------------------------------------------------------------------------------------------- datasets
    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class, args: AnswerDistributionConfig,
                         packing: bool, formatting_func, dataset_name: str) -> Dataset | IterableDataset:
        column_names = get_dataset_column_names(dataset)
        if "choice_ids" in column_names:
            return self._select_cultures(dataset, args, dataset_name)
        needed = {args.prompt_column, args.choices_column, args.target_column} | (
            {args.culture_column} if args.mode == "specific" else set())
        missing = needed - set(column_names)
        if missing:
            raise ValueError(f"The {dataset_name} dataset needs the column(s) {sorted(needed)}; missing: "
                             f"{sorted(missing)} (columns: {column_names}).")
        if packing:
            raise ValueError("AnswerDistributionTrainer does not pack: each prompt is scored on its own.")
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        scorer = OptionScorer(None, tokenizer)  # its encoding only: the evaluator's prompts and answer tokens
        map_kwargs: dict[str, Any] = {}
        if isinstance(dataset, Dataset):
            map_kwargs = {"desc": f"Encoding {dataset_name} dataset"}
        dataset = dataset.map(
            _encode_example, with_indices=True,
            fn_kwargs={"scorer": scorer, "prompt_column": args.prompt_column, "choices_column": args.choices_column,
                       "target_column": args.target_column, "label_smoothing": args.label_smoothing},
            remove_columns=[c for c in column_names if c not in (args.culture_column, args.item_column)],
            **map_kwargs)
        return self._select_cultures(dataset, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "choice_ids", "target", self.args.culture_column,
                                       self.args.item_column]

    def _get_train_sampler(self, train_dataset=None):
        """With the culture-contrast term on, an [`ItemGroupedSampler`] over the item column; else the Trainer's."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.culture_contrast_weight <= 0 or dataset is None or not isinstance(dataset, Dataset):
            return super()._get_train_sampler(train_dataset)
        if self.args.item_column not in dataset.column_names:
            raise ValueError(f"culture_contrast_weight > 0 needs the item column `{self.args.item_column}` in the "
                             f"training dataset (columns: {dataset.column_names}).")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return ItemGroupedSampler(dataset[self.args.item_column], seed=seed)

    # ----------------------------------------------------------------------------------------------- loss
    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """The micro-batches of one optimizer step and their number of prompts (over every process)."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        count = torch.tensor(sum(len(b["answers"]) for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count[None]).sum() // self.get_tp_size()
        return batch_samples, count

    def answer_log_probs(self, model, inputs: dict[str, Any]) -> list[torch.Tensor]:
        """log Q_model per example ([n_choices] tensors), from one forward pass: the evaluator's distribution."""
        answers = inputs["answers"]
        pairs = sorted({pos for a in answers for pos in a["nodes"].values()})
        positions = sorted({p for _, p in pairs})
        column = {p: k for k, p in enumerate(positions)}
        keep = torch.tensor(positions, device=inputs["input_ids"].device)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep,
                        use_cache=False)
        rows = torch.tensor([r for r, _ in pairs], device=keep.device)
        cols = torch.tensor([column[p] for _, p in pairs], device=keep.device)
        log_probs = torch.log_softmax(outputs.logits[rows, cols].float(), dim=-1)  # (nodes, V)
        where = {pair: k for k, pair in enumerate(pairs)}
        return [constrained_choice_log_probs({node: log_probs[where[pos]] for node, pos in a["nodes"].items()},
                                             a["sequences"], a["branches"]) for a in answers]

    @staticmethod
    def culture_contrast(log_q: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], items: Sequence[Any],
                         cultures: Sequence[str] | None = None) -> torch.Tensor:
        """Per row, the squared error between the model's and the humans' deviations from their item group's mean.

        Args:
            log_q: log Q_model per row, `[n_choices]` tensors.
            targets: P per row, aligned with `log_q`.
            items: The item of each row; rows of one item (with the same number of choices and, when `cultures` is
                given, at least two distinct cultures) form a group.
            cultures: The culture of each row (optional).

        Returns:
            `[rows]` tensor: `sum_k ((Q_ik - mean_G Q_k) - (P_ik - mean_G P_k))^2` for rows in a group, 0 elsewhere.
        """
        values = [torch.zeros((), device=lq.device) for lq in log_q]
        groups: dict[tuple[Any, int], list[int]] = {}
        for i, (item, lq) in enumerate(zip(items, log_q)):
            groups.setdefault((item, lq.numel()), []).append(i)
        for members in groups.values():
            if len(members) < 2 or (cultures is not None and len({cultures[i] for i in members}) < 2):
                continue
            q = torch.stack([log_q[i].exp() for i in members])
            p = torch.stack([targets[i].to(q.device, q.dtype) for i in members])
            errors = ((q - q.mean(0)) - (p - p.mean(0))).pow(2).sum(-1)
            for k, i in enumerate(members):
                values[i] = errors[k]
        return torch.stack(values)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean over the step's prompts of KL(P_target || Q_model), in nats (plus `culture_contrast_weight` times the
        culture-contrast term, when set)."""
        mode = "train" if self.model.training else "eval"
        log_q = self.answer_log_probs(model, inputs)
        kls, entropies = [], []
        for lq, p in zip(log_q, inputs["target"]):
            p = p.to(lq.device)
            kls.append(torch.sum(torch.xlogy(p, p) - torch.where(p > 0, p * lq, torch.zeros_like(lq))))
            entropies.append(-(lq.exp() * lq).sum().detach())
        kl = torch.stack(kls)
        total = kl.sum()
        weight = self.args.culture_contrast_weight
        if weight > 0:
            if "item" not in inputs:
                raise ValueError(f"culture_contrast_weight > 0 needs the item column `{self.args.item_column}` in "
                                 "every row.")
            contrast = self.culture_contrast(log_q, inputs["target"], inputs["item"], inputs.get("culture"))
            total = total + weight * contrast.sum()
            self._metrics[mode]["contrast"].append(contrast.detach().mean().item())
        denominator = len(kls) if num_items_in_batch is None else num_items_in_batch
        loss = total / torch.as_tensor(denominator, device=kl.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._metrics[mode]["kl"].append(kl.detach().mean().item())
        self._metrics[mode]["entropy"].append(torch.stack(entropies).mean().item())
        for culture in sorted(set(inputs.get("culture") or [])):
            values = [k for k, c in zip(kl.detach(), inputs["culture"]) if c == culture]
            self._metrics[mode][f"kl_{get_culture(culture).iso3}"].append(torch.stack(values).mean().item())
        return (loss, {"kl": kl.detach()}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


class _LazyCollator:
    """Placeholder until the tokenizer is known (`SFTTrainer` resolves `processing_class` in its init)."""

    def __call__(self, features):  # pragma: no cover - replaced before any batch is drawn
        raise RuntimeError("AnswerDistributionTrainer's collator was not set up")
