"""Shared fixtures: a tiny Llama with a small byte-level BPE tokenizer and a ChatML template.

Everything is built from a config on the fly (no network, no Hub); the model has random weights, so tests
check mechanics and exact equalities, not answer quality.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "You are a real person with your own values and beliefs, taking part in the World Values Survey.",
    "Answer the survey question below with the number of the option you choose, and nothing else.",
    "How important is family in your life? Very important Rather important Not very important",
    "Agree strongly Agree Disagree Strongly disagree Neither agree nor disagree",
    "On a scale from 1 to 10 where 1 means never justifiable and 10 means always justifiable",
    "an American a British a Chinese a German cultural background persona woman man years old married",
    "0 1 2 3 4 5 6 7 8 9 10 11 . , : ; ? ! ( ) - yes no",
]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tk.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None)
    tok.chat_template = CHATML
    return tok


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=0, eos_token_id=2)
    model = LlamaForCausalLM(config)
    # Larger random logits than the default init, so answer distributions are far from uniform.
    with torch.no_grad():
        model.lm_head.weight.mul_(8)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with a saved tiny Llama + tokenizer, loadable like any Hub checkpoint."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = build_tiny_tokenizer()
    model = build_tiny_llama(len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_model_and_tokenizer(tiny_model_dir):
    from culture_align.models import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_dir), device="cpu")


@pytest.fixture()
def tiny_wvs():
    """WVS-shaped human data made up for tests: 3 cultures x 6 items (incl. a 10-point and a 0-based item)."""
    from culture_align.wvs.data import WVSData
    from culture_align.wvs.questions import SurveyQuestion

    questions = {
        "Q1": SurveyQuestion("Q1", "How important is family in your life?",
                             ("Very important", "Rather important", "Not very important", "Not at all important"),
                             (1, 2, 3, 4)),
        "Q27": SurveyQuestion("Q27", "Making my parents proud is a main goal of my life.",
                              ("Agree strongly", "Agree", "Disagree", "Strongly disagree"), (1, 2, 3, 4)),
        "Q57": SurveyQuestion("Q57", "Can most people be trusted?",
                              ("Most people can be trusted", "Need to be very careful"), (1, 2)),
        "Q94": SurveyQuestion("Q94", "Are you a member of a religious organisation?",
                              ("Not a member", "Inactive member", "Active member"), (0, 1, 2)),
        "Q182": SurveyQuestion("Q182", "On a scale from 1 (never justifiable) to 10 (always justifiable): "
                               "is homosexuality justifiable?", tuple(str(i) for i in range(1, 11)),
                               tuple(range(1, 11))),
        "Q199": SurveyQuestion("Q199", "How interested are you in politics?",
                               ("Very interested", "Somewhat interested", "Not very interested",
                                "Not at all interested"), (1, 2, 3, 4)),
    }
    rng = np.random.default_rng(0)
    dists = {}
    for culture in ("USA", "CHN", "DEU"):
        dists[culture] = {}
        for qid, q in questions.items():
            if culture == "CHN" and qid == "Q182":
                continue  # a missing cell: skipped, never uniform
            p = rng.dirichlet(np.ones(q.num_options))
            dists[culture][qid] = p
    return WVSData(questions=questions, distributions=dists, counts={}, source="tests:tiny_wvs")


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def import_benchmark():
    """Load a script of ``benchmarks/`` as a module: ``import_benchmark("gpu_training.py")`` (the benchmarks folder
    it puts on ``sys.path`` for its own imports is taken off again afterwards)."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parent.parent / "benchmarks"

    def load(filename: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{Path(filename).stem}", folder / filename)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    sys.path[:] = [p for p in sys.path if p != str(folder)]
