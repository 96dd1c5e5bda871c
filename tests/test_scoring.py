"""The option scorer must equal a plain full forward pass per (prompt, option), whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from culture_align.backends import GenerationParams
from culture_align.backends.option_scoring import OptionScorer, choice_log_probs_from_tokens
from culture_align.backends.transformers import TransformersBackend
from culture_align.evaluation.scoring import parse_answer_code

SYSTEM = {"role": "system", "content": "You are a real person taking part in the World Values Survey."}


def _conversations():
    users = [
        "How important is family in your life?\n1. Very important\n2. Rather important\n3. Not very important",
        "On a scale from 1 to 10: is it justifiable?\nAnswer with a number from 1 to 10.",
        "Are you a member?\n0. no\n1. yes\n2. active",
        "Can most people be trusted?\n1. yes\n2. no",
        "Interest in politics, from 0 to 10?",
    ]
    choices = [["1", "2", "3"], [str(i) for i in range(1, 11)], ["0", "1", "2"], ["1", "2"],
               [str(i) for i in range(0, 11)]]
    return [[SYSTEM, {"role": "user", "content": u}] for u in users], choices


def _naive_scores(model, scorer, conversation, choices):
    """Constrained log-probs computed the slow way: one unbatched, uncached forward pass per choice.

    At each prefix where the legal choices continue with different tokens, the model's next-token
    log-probs are renormalised over those tokens; prefixes with one legal continuation contribute 0.
    """
    ids = scorer.encode(conversation)
    seqs = scorer.choice_sequences(conversation, choices)
    out = []
    for seq in seqs:
        x = torch.tensor([ids + list(seq)])
        with torch.no_grad():
            logp = torch.log_softmax(model(x).logits[0].float(), dim=-1)
        total = 0.0
        for j in range(len(seq)):
            legal = sorted({s[j] for s in seqs if len(s) > j and s[:j] == seq[:j]})
            if len(legal) > 1:
                row = logp[len(ids) - 1 + j]
                total += (row[seq[j]] - torch.logsumexp(row[legal], dim=0)).item()
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_scores_equal_naive_forward(tiny_model_and_tokenizer, batch_size):
    model, tok = tiny_model_and_tokenizer
    scorer = OptionScorer(model, tok, batch_size=batch_size)
    convs, choices = _conversations()
    got = scorer.score(convs, choices)
    for conv, ch, g in zip(convs, choices, got):
        np.testing.assert_allclose(g, _naive_scores(model, scorer, conv, ch), atol=2e-4)


def test_prefix_ambiguous_options_are_scored_with_end_of_turn(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    scorer = OptionScorer(model, tok)
    conv, _ = _conversations()
    end = scorer.end_of_answer_ids(conv[0])
    assert tok.convert_ids_to_tokens(end) == ["<|im_end|>"]
    seqs = scorer.choice_sequences(conv[1], [str(i) for i in range(1, 11)])
    assert all(s[-1] == end[0] for s in seqs) and len(seqs[-1]) == 3  # "1", "0", <|im_end|>
    # Single-digit-only items need no end token.
    assert all(len(s) == 1 for s in scorer.choice_sequences(conv[0], ["1", "2", "3"]))


def test_scores_form_a_distribution_and_differ_between_prompts(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    scorer = OptionScorer(model, tok, batch_size=4)
    convs, choices = _conversations()
    scores = scorer.score(convs, choices)
    probs = [np.exp(s) for s in scores]
    assert all(abs(p.sum() - 1) < 1e-6 for p in probs)
    assert not np.allclose(probs[2], probs[3][:2].tolist() + [0.0])


def test_single_token_choices_are_the_softmax_of_their_logits(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    scorer = OptionScorer(model, tok)
    conv = _conversations()[0][0]
    with torch.no_grad():
        logits = model(torch.tensor([scorer.encode(conv)])).logits[0, -1].float()
    ids = [tok.convert_tokens_to_ids(c) for c in ("1", "2", "3")]
    expected = torch.log_softmax(logits[ids], dim=0).numpy()
    np.testing.assert_allclose(scorer.score([conv], [["1", "2", "3"]])[0], expected, atol=1e-5)


def test_score_validates_lengths(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    with pytest.raises(ValueError, match="2 conversations but 1"):
        OptionScorer(model, tok).score(_conversations()[0][:2], [["1", "2"]])


def test_tokenizer_without_chat_template_is_refused(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        OptionScorer(model, tok)


def test_backend_score_is_the_option_scorer_and_token_log_probs_give_the_same(tiny_model_and_tokenizer):
    """TransformersBackend.score is OptionScorer.score; choice_log_probs_from_tokens (what vLLM and servers use)
    gives the same distribution from each choice's own token log-probabilities."""
    model, tok = tiny_model_and_tokenizer
    backend = TransformersBackend.from_model(model, tok, batch_size=2)
    convs, choices = _conversations()
    direct = OptionScorer(model, tok, batch_size=3).score(convs, choices)
    for a, b in zip(backend.score(convs, choices), direct):
        np.testing.assert_allclose(a, b, atol=1e-6)
    scorer = backend.option_scorer
    for conv, options, expected in zip(convs, choices, direct):
        sequences = scorer.choice_sequences(conv, options)
        prompt = scorer.encode(conv)
        token_log_probs = []
        for seq in sequences:
            ids = torch.tensor([prompt + list(seq)])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            token_log_probs.append([float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(seq)])
        np.testing.assert_allclose(choice_log_probs_from_tokens(sequences, token_log_probs), expected, atol=1e-5)
    with pytest.raises(ValueError, match="have 1 log-probabilities"):
        choice_log_probs_from_tokens([(1, 2), (3,)], [[0.0], [0.0]])


def test_backend_sampling_is_seeded_and_shaped(tiny_model_and_tokenizer):
    """Sampling goes through the backend's one decode loop: n answers per conversation, reproducible per seed."""
    model, tok = tiny_model_and_tokenizer
    backend = TransformersBackend.from_model(model, tok, batch_size=2)
    convs, _ = _conversations()
    params = GenerationParams(n=3, temperature=1.0, max_new_tokens=4, seed=7)
    a = backend.generate(convs, params)
    b = backend.generate(convs, params)
    assert a == b and len(a) == 3 * len(convs)
    assert a != backend.generate(convs, GenerationParams(n=3, temperature=1.0, max_new_tokens=4, seed=8))


@pytest.mark.parametrize("text,expected", [
    ("3", 3), (" 3.", 3), ("3) Agree", 3), ("(2)", 2), ("10", 10), ("0", 0),
    ("I think 3", None), ("33", None), ("", None), ("Sorry, I cannot answer", None), ("3.5", 3),
])
def test_parse_answer_code(text, expected):
    assert parse_answer_code(text, [0, 1, 2, 3, 10]) == expected
