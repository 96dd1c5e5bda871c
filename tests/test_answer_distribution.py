"""AnswerDistributionTrainer: the forward-KL loss on the evaluator's own answer distribution (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from culture_align.backends.option_scoring import OptionScorer
from culture_align.recipes.distribution import wvs_distribution_rows
from culture_align.trainers import AnswerDistributionConfig, AnswerDistributionTrainer


def _trainer(model_dir, rows, tmp_path, **overrides):
    args = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=3, learning_rate=1e-2,
                logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0)
    args.update(overrides)
    return AnswerDistributionTrainer(model=str(model_dir), args=AnswerDistributionConfig(**args), train_dataset=rows)


def _evaluator_q(trainer, rows) -> list[np.ndarray]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    scorer = OptionScorer(model, trainer.processing_class)
    model.eval()
    return [np.exp(s) for s in scorer.score(rows["prompt"], rows["choices"])]


def _trainer_q(trainer, rows) -> list[np.ndarray]:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model = trainer.model
    model.eval()
    with torch.no_grad():
        return [lq.exp().double().numpy() for lq in trainer.answer_log_probs(model, batch)]


def test_q_equals_the_evaluators_distribution_and_the_loss_is_the_kl(tiny_model_dir, tiny_wvs, tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA"])  # 4-, 2-, 3- (0-based) and 10-option items
    assert "Q182" in rows["qid"]  # "1" vs "10": the end-of-turn disambiguation
    trainer = _trainer(tiny_model_dir, rows, tmp_path)
    ours, theirs = _trainer_q(trainer, rows), _evaluator_q(trainer, rows)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert a.sum() == pytest.approx(1.0, abs=1e-6)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    by_hand = np.mean([np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0))
                       for p, q in zip(map(np.asarray, rows["target"]), theirs)])
    assert loss == pytest.approx(by_hand, rel=1e-4, abs=1e-5)


def test_gradient_is_finite_with_zeros_in_the_target(tiny_model_dir, tiny_wvs, tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA"]).select([0])
    rows = rows.map(lambda r: {"target": [1.0] + [0.0] * (len(r["target"]) - 1)})
    trainer = _trainer(tiny_model_dir, rows, tmp_path)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer.data_collator([trainer.train_dataset[0]]))
    loss.backward()
    grads = [p.grad for p in trainer.model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_few_steps_move_q_toward_the_target(tiny_model_dir, tiny_wvs, tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA"]).select([0])
    rows = rows.map(lambda r: {"target": [0.7, 0.1, 0.1, 0.1]})
    trainer = _trainer(tiny_model_dir, rows, tmp_path, per_device_train_batch_size=1, max_steps=10,
                       learning_rate=5e-3)
    target = np.array([0.7, 0.1, 0.1, 0.1])

    def kl() -> float:
        q = _trainer_q(trainer, rows)[0]
        return float(np.sum(target * np.log(target / q)))

    before = kl()
    trainer.train()
    after = kl()
    assert after < before * 0.5
    logged = [h for h in trainer.state.log_history if "kl" in h]
    assert logged and "entropy" in logged[0] and "kl_USA" in logged[0]


def test_gradient_accumulation_equals_the_larger_batch(tiny_model_dir, tiny_wvs, tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA", "DEU"]).select(range(6))

    def lora_after(batch: int, accumulation: int, folder: str) -> dict[str, torch.Tensor]:
        trainer = _trainer(tiny_model_dir, rows, tmp_path / folder, per_device_train_batch_size=batch,
                           gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=0.5,
                           lr_scheduler_type="constant", model_init_kwargs={"dtype": torch.float64})
        trainer.train()
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}

    one, two = lora_after(2, 1, "a"), lora_after(1, 2, "b")
    assert one.keys() == two.keys()
    moved = False
    for name in one:
        torch.testing.assert_close(one[name], two[name], atol=1e-10, rtol=1e-8)
        moved |= bool(one[name].abs().sum() > 0)
    assert moved


def test_bad_rows_name_the_row(tiny_model_dir, tiny_wvs, tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA"])
    bad = rows.map(lambda r, i: {"target": r["target"][:-1]} if i == 2 else {}, with_indices=True)
    with pytest.raises(ValueError, match="Row 2: `target` has"):
        _trainer(tiny_model_dir, bad, tmp_path)
    bad = rows.map(lambda r, i: {"target": [float("nan")] * len(r["target"])} if i == 1 else {}, with_indices=True)
    with pytest.raises(ValueError, match="Row 1: `target` must be finite"):
        _trainer(tiny_model_dir, bad, tmp_path)


def test_specific_mode_and_saved_adapters_load(tiny_model_dir, tiny_wvs, tmp_path):
    from culture_align.models import load_culture_adapters, load_model_and_tokenizer

    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA", "DEU"])
    trainer = _trainer(tiny_model_dir, rows, tmp_path, mode="specific", max_steps=2)
    trainer.train()
    trainer.save_model()
    model, _ = load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
    _, adapters = load_culture_adapters(model, tmp_path / "out")
    assert set(adapters) == {"USA", "DEU"}
    card = (tmp_path / "out" / "USA" / "README.md").read_text()
    assert "2502.07068" in card


def test_train_distribution_cli_on_a_split(tiny_model_dir, tiny_wvs, tmp_path, capsys):
    import json

    from culture_align.cli import main
    from culture_align.experiments import make_split

    data = tmp_path / "wvs.json"
    data.write_text(json.dumps({c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
                                    for q, probs in cells.items()} for c, cells in tiny_wvs.distributions.items()}))
    questions = tmp_path / "wvs_questions.json"
    questions.write_text(json.dumps([{"Q_id": q, "question": s.text, "option_lst": list(s.options)}
                                     for q, s in tiny_wvs.questions.items()]))
    from culture_align.wvs import load_wvs

    split = make_split(load_wvs(data), seed=0, test_share=0.4)
    split_file = split.save(tmp_path / "split.json")
    config = tmp_path / "distribution.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\nwvs: {data}\noutput_dir: {tmp_path / 'out'}\n"
                      "max_steps: 2\nper_device_train_batch_size: 4\nreport_to: none\nsave_strategy: 'no'\n"
                      "use_cpu: true\n")
    assert main(["train", "distribution", "--config", str(config), "--split", str(split_file)]) == 0
    info = json.loads((tmp_path / "out" / "training_info.json").read_text())
    assert info["recipe"] == "answer_distribution" and info["paper"]["id"] == "2502.07068"
    n_train = len(split.training_cells(load_wvs(data)))
    assert sum(info["culture_counts"].values()) == n_train  # training cells only, never a test cell


def test_answer_distributions_builder_keeps_training_cells_and_documents_them(tiny_wvs, tmp_path):
    import json

    import datasets
    from huggingface_hub import DatasetCard

    from culture_align.builders import build_corpus
    from culture_align.experiments import make_split
    from culture_align.wvs import load_wvs

    folder = tmp_path / "wvs"
    folder.mkdir()
    (folder / "proportions_group_by_country.json").write_text(json.dumps(
        {c: {q: {str(code): float(p) for code, p in zip(tiny_wvs.questions[q].codes, probs)}
             for q, probs in cells.items()} for c, cells in tiny_wvs.distributions.items()}))
    (folder / "wvs_questions.json").write_text(json.dumps([{"Q_id": q, "question": s.text, "option_lst": list(s.options)}
                                                           for q, s in tiny_wvs.questions.items()]))
    wvs = load_wvs(folder)
    split = make_split(wvs, seed=1, test_share=0.4)
    out = build_corpus("answer_distributions", folder, tmp_path / "hub", split=str(split.save(tmp_path / "s.json")))
    rows = datasets.load_dataset(str(out), split="train")
    assert len(rows) == len(split.training_cells(wvs))
    assert not set(rows["qid"]) & set(split.test_items)
    assert all(abs(sum(t) - 1) < 1e-9 and len(t) == len(c) for t, c in zip(rows["target"], rows["choices"]))
    card = DatasetCard.load(out / "README.md")
    assert "does not ship or redistribute any WVS data" in " ".join(card.text.split())
    assert "`prompt.content`" in card.text


def test_culture_contrast_is_the_squared_error_of_the_deviations_from_the_group_mean():
    q = [np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.4]), np.array([0.1, 0.9])]
    p = [np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7]), np.array([0.5, 0.5]), np.array([0.3, 0.7])]
    log_q = [torch.tensor(np.log(x)) for x in q]
    targets = [torch.tensor(x) for x in p]
    got = AnswerDistributionTrainer.culture_contrast(log_q, targets, ["Q1", "Q1", "Q2", "Q3"],
                                                     ["USA", "DEU", "USA", "USA"]).numpy()
    qm, pm = (q[0] + q[1]) / 2, (p[0] + p[1]) / 2
    expected = [np.sum(((q[i] - qm) - (p[i] - pm)) ** 2) for i in (0, 1)] + [0.0, 0.0]  # Q2, Q3: no second row
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got[0] > 0
    # what the rows share does not count: Q = 0.5 P + c has half the humans' differences, a quarter of their error
    shifted = [torch.tensor(np.log(x)) for x in (p[0] * 0.5 + np.array([0.1, 0.2, 0.2]),
                                                  p[1] * 0.5 + np.array([0.1, 0.2, 0.2]))]
    same = AnswerDistributionTrainer.culture_contrast(shifted, targets[:2], ["Q1", "Q1"], ["USA", "DEU"])
    np.testing.assert_allclose(same.numpy(), [0.25 * np.sum((p[i] - pm) ** 2) for i in (0, 1)], atol=1e-12)
    one_culture = AnswerDistributionTrainer.culture_contrast(log_q[:2], targets[:2], ["Q1", "Q1"], ["USA", "USA"])
    assert one_culture.abs().sum() == 0


def test_item_grouped_sampler_keeps_an_items_rows_together_and_is_seeded():
    from culture_align.trainers.answer_distribution import ItemGroupedSampler

    items = ["a", "b", "a", "c", "b", "a", "c", "d"]
    sampler = ItemGroupedSampler(items, seed=3)
    first, second = list(sampler), list(sampler)
    for order in (first, second):
        assert sorted(order) == list(range(len(items))) and len(sampler) == len(items)
        runs = [items[i] for i in order]
        assert [k for k, n in zip(runs, [None] + runs[:-1]) if k != n] == list(dict.fromkeys(runs))  # contiguous
    assert list(ItemGroupedSampler(items, seed=3)) == first
    assert any(list(ItemGroupedSampler(items, seed=s)) != first for s in range(4, 10))


def test_culture_contrast_in_the_loss_and_training_reproduces_the_humans_differences(tiny_model_dir, tiny_wvs,
                                                                                      tmp_path):
    rows = wvs_distribution_rows(tiny_wvs, cultures=["USA", "DEU"])
    rows = rows.filter(lambda q: q == rows[0]["qid"], input_columns="qid")
    assert sorted(rows["culture"]) == ["DEU", "USA"]
    wanted = {"USA": [0.7, 0.1, 0.1, 0.1], "DEU": [0.1, 0.1, 0.1, 0.7]}
    rows = rows.map(lambda r: {"target": wanted[r["culture"]]})
    trainer = _trainer(tiny_model_dir, rows, tmp_path, per_device_train_batch_size=2, max_steps=12,
                       learning_rate=5e-3, culture_contrast_weight=4.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["item"] == [rows[0]["qid"]] * 2

    def loss_parts():
        trainer.model.eval()
        with torch.no_grad():
            log_q = trainer.answer_log_probs(trainer.model, batch)
            targets = [t.double() for t in batch["target"]]
            kl = np.mean([float(torch.sum(p * (p.log() - lq.double()))) for p, lq in zip(targets, log_q)])
            contrast = AnswerDistributionTrainer.culture_contrast(log_q, batch["target"], batch["item"],
                                                                  batch["culture"]).mean().item()
            return kl, contrast, trainer.compute_loss(trainer.model, batch).item()

    kl, contrast, loss = loss_parts()
    assert loss == pytest.approx(kl + 4.0 * contrast, rel=1e-4)
    assert contrast > 0.05  # an untrained model answers both cultures alike
    trainer.train()
    assert loss_parts()[1] < contrast * 0.5
    assert any("contrast" in h for h in trainer.state.log_history)


def test_culture_contrast_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs mode='joint'"):
        AnswerDistributionConfig(str(tmp_path), mode="specific", culture_contrast_weight=1.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        AnswerDistributionConfig(str(tmp_path), culture_contrast_weight=-1.0)
