"""The training worker of ``tests/test_distributed.py`` (not a test module: pytest does not collect it).

Trains :class:`~culture_align.trainers.CLCATrainer` with LoRA on a small mixed dialogue + intent dataset for a few
optimizer steps, then saves the adapter and the model card. Run alone (one process) or under ``torchrun``
(DDP over gloo on CPU)::

    python tests/distributed_worker.py MODEL_DIR OUT --per-device-batch-size 2
    torchrun --nproc_per_node 2 --master_port PORT tests/distributed_worker.py MODEL_DIR OUT --per-device-batch-size 1

Each process trains with ``output_dir = OUT/rank-<rank>`` (so that whatever a rank writes is visible apart) and
writes its log history to ``OUT/log-rank-<rank>.json``. Sampling is sequential, so the global batch of step k is
examples ``[k * B, (k + 1) * B)`` whatever the number of processes (accelerate gives process r the r-th of every
``world_size`` per-device batches).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from datasets import Dataset
from peft import LoraConfig
from transformers import set_seed

from culture_align.trainers import CLCAConfig, CLCATrainer, end_distributed_run

SYSTEM = {"role": "system", "content": "You are a real person with your own values, a British cultural background."}


def _dialogue(user: str, reply: str, more: tuple[str, str] | None = None) -> list[dict[str, str]]:
    messages = [SYSTEM, {"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    if more:
        messages += [{"role": "user", "content": more[0]}, {"role": "assistant", "content": more[1]}]
    return messages


def _intent(turn: str, intent: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Turn: {turn} What is the intent of the speaker?"},
            {"role": "assistant", "content": f"Intent: {intent}"}]


def mixed_examples() -> list[dict]:
    """Eight conversations of both tasks and of different lengths. With a global batch of 2 the steps hold
    (dialogue, intent), (intent, dialogue), (dialogue, dialogue), (intent, intent)."""
    rows = [
        (_dialogue("How important is family in your life?", "Very important.",
                   ("Agree or disagree?", "Agree strongly, yes.")), "dialogue"),
        (_intent("Agree strongly.", "to agree."), "intent"),
        (_intent("Not very important.", "to answer the survey question politely, and to disagree."), "intent"),
        (_dialogue("Can most people be trusted?", "Need to be very careful, I would say."), "dialogue"),
        (_dialogue("Are you interested in politics?", "Somewhat interested."), "dialogue"),
        (_dialogue("Is homosexuality justifiable, from 1 to 10?", "10: always justifiable.",
                   ("Why?", "Family is rather important, and so is everyone's freedom.")), "dialogue"),
        (_intent("Neither agree nor disagree.", "to avoid taking sides."), "intent"),
        (_intent("Yes, I am a member.", "to state a fact about themselves."), "intent"),
    ]
    return [{"messages": messages, "task": task, "culture": "GBR", "id": f"ex-{k}"}
            for k, (messages, task) in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("out")
    parser.add_argument("--per-device-batch-size", type=int, required=True)
    parser.add_argument("--max-steps", type=int, default=4)
    args = parser.parse_args()

    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    out = Path(args.out)
    set_seed(0)  # the LoRA initialisation; DDP also broadcasts rank 0's parameters
    config = CLCAConfig(
        output_dir=str(out / f"rank-{rank}"), per_device_train_batch_size=args.per_device_batch_size,
        max_steps=args.max_steps, learning_rate=5e-3, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
        ddp_backend="gloo" if world_size > 1 else None,
        train_sampling_strategy="sequential", dataloader_num_workers=0, disable_tqdm=True, seed=0,
        activation_checkpointing=False, intent_loss_weight=0.5,
    )
    peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                             task_type="CAUSAL_LM")
    trainer = CLCATrainer(args.model_dir, args=config, train_dataset=Dataset.from_list(mixed_examples()),
                          peft_config=peft_config)
    trainer.train()
    trainer.save_model(config.output_dir)
    trainer.create_model_card(model_name="clca-distributed-test")  # TRL writes it on the main process only
    log = {"rank": rank, "world_size": trainer.args.world_size, "log_history": trainer.state.log_history}
    (out / f"log-rank-{rank}.json").write_text(json.dumps(log, indent=2))
    accelerator = trainer.accelerator
    del trainer
    end_distributed_run(accelerator)


if __name__ == "__main__":
    main()
