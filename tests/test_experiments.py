"""The experiment harness: splits and their guard, baselines, bootstrap CIs, culture controls, training gates, and
the runner end to end on the tiny model (synthetic survey data, no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from culture_align.experiments import (
    CellTable,
    ClusterBootstrap,
    ExperimentConfig,
    ExperimentRunner,
    ExperimentSplit,
    HeldOutError,
    TrainingGateError,
    check_adapter_changed,
    check_training_length,
    culture_derangement,
    first_step_learning_rate_schedule,
    fit_calibration,
    make_split,
    optimizer_steps,
    score_cells,
    specificity_scores,
    swap_kl,
    swap_matrix,
)
from culture_align.wvs.data import WVSData
from culture_align.wvs.questions import SurveyQuestion

# Four WVS topics (social values, happiness, social capital, religion), items with 3 or 4 options.
QIDS = [f"Q{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 46, 47, 48, 49, 57, 58, 59, 60, 164, 165, 166, 167)]
CULTURES = ("USA", "CHN", "DEU", "BRA")


def synthetic_wvs(seed: int = 0, cultures=CULTURES) -> WVSData:
    rng = np.random.default_rng(seed)
    questions = {}
    for q in QIDS:
        n = 4 if int(q[1:]) % 2 else 3
        questions[q] = SurveyQuestion(q, f"Question {q}?", tuple(f"option {k}" for k in range(1, n + 1)),
                                      tuple(range(1, n + 1)))
    dists = {c: {q: rng.dirichlet(np.ones(questions[q].num_options)) for q in QIDS} for c in cultures}
    del dists["CHN"]["Q3"]  # a cell without data
    return WVSData(questions=questions, distributions=dists, source="tests:synthetic")


# ------------------------------------------------------------------------------------------------- splits
def test_held_out_items_split_is_disjoint_stratified_and_reproducible():
    wvs = synthetic_wvs()
    a, b = make_split(wvs, seed=3), make_split(wvs, seed=3)
    assert a == b
    assert not set(a.train_items) & set(a.test_items)
    assert set(a.train_items) | set(a.test_items) == set(QIDS)
    topics = {wvs.questions[q].topic for q in a.test_items}
    assert topics == {wvs.questions[q].topic for q in QIDS}  # every topic has test items
    assert len(a.test_items) == 5  # 30 % of 8/4/4/4 items per topic, rounded: 2 + 1 + 1 + 1
    other = [make_split(wvs, seed=s).test_items for s in range(5)]
    assert len({tuple(t) for t in other}) > 1  # the seed matters
    assert a.test_cultures == a.train_cultures == list(CULTURES)
    assert ("CHN", "Q3") not in a.test_cells(wvs) + a.training_cells(wvs)


def test_other_protocols_and_round_trip(tmp_path):
    wvs = synthetic_wvs()
    topics = make_split(wvs, "held_out_topics", test_topics=["religion"])
    assert topics.test_items == ["Q164", "Q165", "Q166", "Q167"]
    cultures = make_split(wvs, "held_out_cultures", test_cultures=["BRA"])
    assert cultures.test_cultures == ["BRA"] and "BRA" not in cultures.train_cultures
    assert cultures.test_items == cultures.train_items and not cultures.item_split
    both = make_split(wvs, "held_out_cultures", test_cultures=["BRA"], test_share=0.3, seed=1)
    assert both.item_split and both.culture_split and not set(both.train_items) & set(both.test_items)
    listed = tmp_path / "items.json"
    listed.write_text(json.dumps({"train_items": QIDS[:15], "test_items": QIDS[15:]}))
    explicit = make_split(wvs, "items_file", items_file=listed)
    assert explicit.test_items == QIDS[15:]
    saved = explicit.save(tmp_path / "split.json")
    assert ExperimentSplit.load(saved) == explicit
    with pytest.raises(ValueError, match="unknown topic"):
        make_split(wvs, "held_out_topics", test_topics=["astrology"])
    with pytest.raises(ValueError, match="test cultures not in the data"):
        make_split(wvs, "held_out_cultures", test_cultures=["JPN"])


def test_guard_refuses_training_cells_and_hides_test_figures():
    wvs = synthetic_wvs()
    split = make_split(wvs, seed=0)
    split.check_scored(CULTURES, split.test_items)
    with pytest.raises(HeldOutError, match="training item"):
        split.check_scored(CULTURES, split.test_items + split.train_items[:1])
    view = split.training_view(wvs)
    assert list(view.questions) == split.train_items
    q = split.train_items[0]
    np.testing.assert_array_equal(view.distribution("USA", q), wvs.distribution("USA", q))
    with pytest.raises(HeldOutError, match="test cell"):
        view.distribution("USA", split.test_items[0])
    culture_split = make_split(wvs, "held_out_cultures", test_cultures=["BRA"])
    with pytest.raises(HeldOutError, match="training culture"):
        culture_split.check_scored(["USA"], culture_split.test_items)
    with pytest.raises(HeldOutError):
        culture_split.training_view(wvs).distribution("BRA", QIDS[0])


def test_recipe_data_stages_take_the_training_view():
    """CultureSPA's self-alignment examples and CultureLLM's seeds can only read training cells."""
    from culture_align.recipes.culturellm.seeds import build_seeds
    from culture_align.recipes.culturespa.answering import self_alignment_examples

    wvs = synthetic_wvs()
    split = make_split(wvs, seed=0)
    view = split.training_view(wvs)
    examples = self_alignment_examples(view, "USA", k=5, seed=0)
    assert {q.qid for q, _ in examples} <= set(split.train_items)
    build_seeds(view, ["USA"], split.train_items[:3])  # training items: fine
    with pytest.raises(KeyError):  # a test item is not even in the view's catalog
        view.questions[split.test_items[0]]
    with pytest.raises((HeldOutError, ValueError)):
        build_seeds(view, ["USA"], split.test_items[:1])


# ------------------------------------------------------------------------------------------- baselines
def test_calibration_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    humans = [rng.dirichlet(np.ones(4)) for _ in range(300)]
    # A model that is the humans sharpened by T = 1/3 (over-confident): calibration must find T close to 3.
    sharp = [np.exp(np.log(p) * 3) / np.exp(np.log(p) * 3).sum() for p in humans]
    fit = fit_calibration(sharp, humans)
    assert fit.temperature == pytest.approx(3.0, rel=0.05)
    assert fit.alpha < 0.02
    assert fit.train_kl_after < 0.01 < fit.train_kl_before


# ------------------------------------------------------------------------------------------- statistics
def _simulated_cells(rng, n_topics: int, per_topic: int, true_mean: float):
    topics = [f"t{k}" for k in range(n_topics) for _ in range(per_topic)]
    n = len(topics)
    cells = CellTable(cultures=["USA"] * n, qids=[f"Q{i}" for i in range(n)], topics=topics,
                      codes=[(1, 2)] * n, human=[np.array([0.5, 0.5])] * n, gold=[1] * n)
    effect = rng.normal(0, 0.3, n_topics)  # topic clusters share an effect: cells are not independent
    values = true_mean + np.repeat(effect, per_topic) + rng.normal(0, 0.2, n)
    nan = np.full(n, np.nan)
    return cells, {"kl_divergence": values[None], "js_distance": nan[None], "one_minus_js_distance": nan[None],
                   "similarity": nan[None], "accuracy": nan[None], "squared_error": nan[None],
                   "max_squared_error": nan[None]}


def test_cluster_bootstrap_ci_covers_the_true_value():
    rng = np.random.default_rng(0)
    covered, runs = 0, 150
    for i in range(runs):
        cells, scores = _simulated_cells(rng, n_topics=25, per_topic=6, true_mean=0.5)
        ci = ClusterBootstrap(cells, n_resamples=400, seed=i).summarize(scores)["mean"]["kl_divergence_ci95"]
        covered += ci[0] <= 0.5 <= ci[1]
    assert 0.87 <= covered / runs <= 0.995  # nominal 95 %


def test_cell_bootstrap_undercovers_clustered_data():
    """Why topic clusters: resampling single cells ignores the shared topic effect and its CI is too narrow."""
    rng = np.random.default_rng(1)
    covered, runs = 0, 100
    for i in range(runs):
        cells, scores = _simulated_cells(rng, n_topics=25, per_topic=6, true_mean=0.5)
        ci = ClusterBootstrap(cells, unit="cell", n_resamples=300, seed=i).summarize(scores)["mean"][
            "kl_divergence_ci95"]
        covered += ci[0] <= 0.5 <= ci[1]
    assert covered / runs < 0.8


def test_paired_difference_and_alignment_from_the_metric():
    from culture_align.metric import alignment_math

    wvs = synthetic_wvs()
    split = make_split(wvs, seed=0)
    cells = CellTable.from_cells(wvs, split.test_cells(wvs))
    uniform = score_cells(cells, [np.full(len(c), 1 / len(c)) for c in cells.codes])
    humans = score_cells(cells, list(cells.human))
    boot = ClusterBootstrap(cells, n_resamples=300)
    diff = boot.compare(humans, uniform)["kl_divergence"]
    assert diff["difference"] < 0 and diff["ci95"][1] < 0  # the humans themselves beat uniform, surely
    point = boot.summarize(humans)["per_culture"]["USA"]["alignment_score"]
    usa = [i for i, c in enumerate(cells.cultures) if c == "USA"]
    expected = alignment_math().alignment_score([cells.gold[i] for i in usa], [cells.gold[i] for i in usa],
                                                [len(cells.codes[i]) for i in usa])["alignment_score"]
    assert point == pytest.approx(expected) == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------- controls
def test_swap_matrix_and_specificity_find_a_planted_culture_effect():
    wvs = synthetic_wvs()
    split = make_split(wvs, seed=0)
    cells = CellTable.from_cells(wvs, split.test_cells(wvs))
    cultures = cells.culture_names
    rng = np.random.default_rng(0)

    def planted(c, q):  # knows each culture: its humans plus a little noise
        p = wvs.distribution(c, q)
        return None if p is None else 0.9 * p + 0.1 * rng.dirichlet(np.ones(len(p)))

    flat = {q: rng.dirichlet(np.ones(wvs.questions[q].num_options)) for q in split.test_items}
    kl_planted = swap_kl(cells, planted, cultures)
    kl_flat = swap_kl(cells, lambda c, q: flat[q], cultures)
    matrix = swap_matrix(cells, kl_planted, cultures)
    for c in cultures:  # the diagonal is each row's smallest entry
        assert min(matrix[c], key=lambda h: matrix[c][h]) == c
    spec = specificity_scores(cells, kl_planted, cultures)
    assert np.nanmean(spec) > 0.1
    np.testing.assert_allclose(specificity_scores(cells, kl_flat, cultures)[~np.isnan(spec)], 0.0, atol=1e-12)
    nan = np.full_like(spec, np.nan)[None]
    scores = {"kl_divergence": spec[None], **{m: nan for m in ("js_distance", "one_minus_js_distance", "similarity",
                                                               "accuracy", "squared_error", "max_squared_error")}}
    ci = ClusterBootstrap(cells, n_resamples=300).summarize(scores)["mean"]["kl_divergence_ci95"]
    assert ci[0] > 0


def test_culture_derangement_moves_every_culture():
    for seed in range(20):
        mapping = culture_derangement(list(CULTURES), seed)
        assert sorted(mapping.values()) == sorted(CULTURES)
        assert all(k != v for k, v in mapping.items())
    with pytest.raises(ValueError):
        culture_derangement(["USA"], 0)


# ------------------------------------------------------------------------------------------------- gates
def test_training_gates():
    assert optimizer_steps(100, 8, 2, 3.0) == 21  # ceil(100 / 8) = 13 batches -> 7 steps per epoch -> 21
    assert optimizer_steps(100, 8, max_steps=7) == 7
    with pytest.raises(TrainingGateError, match="allow_short_training"):
        check_training_length(49, "c")
    assert check_training_length(49, "c", allow_short_training=True) is True
    assert check_training_length(50, "c") is False
    warmup, lr = first_step_learning_rate_schedule(1, warmup_ratio=0.1)  # the bug: 1 step at lr 0
    assert warmup == 0 and lr(0) > 0
    warmup, lr = first_step_learning_rate_schedule(100, warmup_ratio=0.1)
    assert warmup == 10 and 0 < lr(0) < lr(5) < lr(10) == 1.0
    assert all(lr(s) > 0 for s in range(100))
    base = [np.array([0.5, 0.5]), None]
    with pytest.raises(TrainingGateError, match="changes no test distribution"):
        check_adapter_changed(base, [np.array([0.50005, 0.49995]), np.array([1.0, 0.0])], "c")
    assert check_adapter_changed(base, [np.array([0.6, 0.4]), None], "c") == pytest.approx(0.1)


def test_config_validation_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsplit: {protocol: held_out_everything}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: `split.protocol`"):
        ExperimentConfig.from_yaml(bad)
    bad.write_text("name: x\nbaslines: [uniform]\n")
    with pytest.raises(ValueError, match="unknown key"):
        ExperimentConfig.from_yaml(bad)
    bad.write_text("name: x\nconditions: [{name: a, data: {source: wvs_answers}, seeds: [0]}]\n")
    with pytest.raises(ValueError, match="at least 3"):
        ExperimentConfig.from_yaml(bad)


# ------------------------------------------------------------------------------------------------- runner
def _config(model_dir: Path, **overrides) -> ExperimentConfig:
    data = {"name": "tiny", "model": str(model_dir), "split": {"seed": 0}, "bootstrap_resamples": 200}
    data.update(overrides)
    return ExperimentConfig.from_dict(data)


def test_runner_baselines_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    payload = ExperimentRunner(_config(tiny_model_dir), output_dir=out, wvs=synthetic_wvs(),
                               show_progress=False).run()
    names = {"uniform", "position_prior", "loo_human_mean", "other_culture_humans", "base", "culture_prompt",
             "calibrated_base", "random_answers", "middle_option"}
    assert names <= set(payload["conditions"])
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) >= {"protocol", "split", "conditions", "comparisons", "specificity"}
    assert not set(saved["split"]["train_items"]) & set(saved["split"]["test_items"])
    base = saved["conditions"]["base"]
    assert base["kind"] == "model" and base["seeds"] == [0]
    lo, hi = base["mean"]["kl_divergence_ci95"]
    assert lo <= base["mean"]["kl_divergence"] <= hi
    assert set(base["per_culture"]) == set(CULTURES)
    assert base["mean"]["one_minus_js_distance"] == pytest.approx(1 - base["mean"]["js_distance"])
    assert saved["specificity"]["humans"]["specificity_index"] > 0
    assert "culture_prompt" in saved["specificity"]
    assert {"kl_per_culture.png", "reliability.png", "swap_culture_prompt.png"} <= set(saved["plots"])
    assert all((out / "plots" / p).is_file() for p in saved["plots"])
    assert "loo_human_mean" in (out / "report.md").read_text()
    import datasets

    table = datasets.Dataset.from_parquet(str(out / "predictions" / "base" / "seed0.parquet"))
    assert "human_probs" not in table.column_names and "model_probs" in table.column_names
    # The uniform row equals the metric on uniform distributions.
    assert saved["conditions"]["uniform"]["mean"]["kl_divergence"] == pytest.approx(np.mean([
        np.sum(p * np.log(p * len(p))) for c in CULTURES for q, p in synthetic_wvs().distributions[c].items()
        if q in saved["split"]["test_items"]]), rel=1e-4)
    # A rerun reuses the split; a config that makes another split is refused.
    ExperimentRunner(_config(tiny_model_dir), output_dir=out, wvs=synthetic_wvs(), show_progress=False).plan()
    with pytest.raises(ValueError, match="another split"):
        ExperimentRunner(_config(tiny_model_dir, split={"seed": 1}), output_dir=out, wvs=synthetic_wvs(),
                         show_progress=False).split()


def test_calibrated_baseline_never_sees_a_test_cell(tiny_model_dir, tmp_path):
    wvs = synthetic_wvs()
    split = make_split(wvs, seed=0)
    poisoned = synthetic_wvs()
    for c, q in split.test_cells(wvs):  # the test cells' human figures turned upside down
        poisoned.distributions[c][q] = np.eye(len(wvs.distribution(c, q)))[-1] * 0.97 + 0.01
    cfg = {"baselines": ["base", "calibrated_base"]}
    clean = ExperimentRunner(_config(tiny_model_dir, **cfg), output_dir=tmp_path / "a", wvs=wvs,
                             show_progress=False).run()
    dirty = ExperimentRunner(_config(tiny_model_dir, **cfg), output_dir=tmp_path / "b", wvs=poisoned,
                             show_progress=False).run()
    assert clean["calibration"] == dirty["calibration"]  # T and alpha come from training cells only
    assert clean["conditions"]["calibrated_base"]["mean"]["kl_divergence"] != \
        dirty["conditions"]["calibrated_base"]["mean"]["kl_divergence"]  # while the scores do use the test cells


def test_runner_trains_seeds_with_shuffled_control_and_gates(tiny_model_dir, tmp_path):
    condition = {"name": "answers", "data": {"source": "wvs_answers", "label": "mode"}, "mode": "joint",
                 "seeds": [0, 1, 2], "training": {"max_steps": 4, "per_device_train_batch_size": 8,
                                                  "learning_rate": 5e-3, "warmup_ratio": 0.5}}
    wvs = synthetic_wvs()
    with pytest.raises(TrainingGateError, match="allow_short_training"):
        ExperimentRunner(_config(tiny_model_dir, baselines=["base", "culture_prompt"], conditions=[condition]),
                         output_dir=tmp_path / "short", wvs=wvs, show_progress=False).run()
    cfg = _config(tiny_model_dir, baselines=["uniform", "culture_prompt"], conditions=[condition],
                  allow_short_training=True)
    runner = ExperimentRunner(cfg, output_dir=tmp_path / "run", wvs=wvs, show_progress=False)
    assert any("4 optimizer steps" in line for line in runner.plan())
    payload = runner.run()
    trained = payload["conditions"]["answers"]
    assert trained["kind"] == "trained" and trained["seeds"] == [0, 1, 2] and trained["info"]["short"]
    assert all(r["max_abs_dp"] > 1e-4 for r in trained["info"]["runs"])
    shuffled = payload["conditions"]["answers_shuffled_labels"]
    assert shuffled["seeds"] == [0, 1, 2]
    assert all(set(r["label_mapping"]) == set(CULTURES) for r in shuffled["info"]["runs"])
    pairs = {(c["condition"], c["baseline"]) for c in payload["comparisons"]}
    assert ("answers", "answers_shuffled_labels") in pairs and ("answers", "culture_prompt") in pairs
    assert "answers" in payload["specificity"]
    # Resumable per (condition, seed): a rerun trains nothing.
    before = sorted(p.stat().st_mtime for p in (tmp_path / "run" / "adapters").rglob("experiment_training.json"))
    ExperimentRunner(cfg, output_dir=tmp_path / "run", wvs=wvs, show_progress=False).run()
    after = sorted(p.stat().st_mtime for p in (tmp_path / "run" / "adapters").rglob("experiment_training.json"))
    assert before == after
    # A learning rate of 0 trains nothing, and the run says so.
    frozen = {**condition, "name": "frozen", "shuffled_control": False,
              "training": {**condition["training"], "learning_rate": 0.0}}
    with pytest.raises(TrainingGateError, match="changes no test distribution"):
        ExperimentRunner(_config(tiny_model_dir, baselines=["culture_prompt"], conditions=[frozen],
                                 allow_short_training=True), output_dir=tmp_path / "frozen", wvs=wvs,
                         show_progress=False).run()


def test_cli_experiment_dry_run_and_errors(tiny_model_dir, tmp_path, capsys):
    from culture_align.cli import main

    data = tmp_path / "wvs.json"
    wvs = synthetic_wvs()
    data.write_text(json.dumps({c: {q: {str(code): float(p) for code, p in zip(wvs.questions[q].codes, probs)}
                                    for q, probs in cells.items()} for c, cells in wvs.distributions.items()}))
    questions = tmp_path / "wvs_questions.json"
    questions.write_text(json.dumps([{"Q_id": q, "question": s.text, "option_lst": list(s.options)}
                                     for q, s in wvs.questions.items()]))
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: cli\nmodel: {tiny_model_dir}\nwvs: {data}\nsplit: {{seed: 2}}\n")
    assert main(["experiment", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "held_out_items (seed 2)" in out and "test cells:" in out
    config.write_text("name: cli\nsplit: {protocol: nope}\n")
    assert main(["experiment", "--config", str(config)]) == 2
    assert "split.protocol" in capsys.readouterr().err


def test_runner_trains_the_answer_distribution_recipe(tiny_model_dir, tmp_path):
    condition = {"name": "distribution", "recipe": "answer_distribution", "data": {"source": "wvs_answers"},
                 "mode": "joint", "seeds": [0, 1, 2], "training": {"max_steps": 3, "per_device_train_batch_size": 8,
                                                                   "learning_rate": 5e-3}}
    payload = ExperimentRunner(_config(tiny_model_dir, baselines=["uniform", "culture_prompt"], conditions=[condition],
                                       allow_short_training=True), output_dir=tmp_path / "run",
                               wvs=synthetic_wvs(), show_progress=False).run()
    row = payload["conditions"]["distribution"]
    assert row["kind"] == "trained" and row["info"]["recipe"] == "answer_distribution" and row["seeds"] == [0, 1, 2]
    assert "distribution_shuffled_labels" in payload["conditions"]
    with pytest.raises(ValueError, match="does not apply"):
        _config(tiny_model_dir, conditions=[{**condition, "data": {"source": "wvs_answers", "label": "mode"}}])


def test_a_condition_trained_and_scored_with_its_own_prompt_template(tiny_model_dir, tmp_path):
    template = tmp_path / "named.yaml"
    template.write_text("name: named\nsystem: 'You live in {culture_name}.'\n"
                        "user: 'In {culture_name}: {question}\n{options}'\n")
    condition = {"name": "named", "recipe": "answer_distribution", "setting": str(template),
                 "data": {"source": "wvs_answers", "setting": str(template)}, "seeds": [0], "shuffled_control": False,
                 "training": {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 5e-3}}
    runner = ExperimentRunner(_config(tiny_model_dir, baselines=["uniform", "culture_prompt"], conditions=[condition],
                                      allow_short_training=True), output_dir=tmp_path / "run", wvs=synthetic_wvs(),
                              show_progress=False)
    payload = runner.run()
    untrained = payload["conditions"]["prompt_named"]  # the untrained model asked with the template
    assert untrained["kind"] == "model" and untrained["info"]["setting"] == str(template)
    assert {"uniform", "culture_prompt"} <= {c["baseline"] for c in payload["comparisons"]
                                             if c["condition"] == "prompt_named"}
    assert "prompt_named" in {c["baseline"] for c in payload["comparisons"] if c["condition"] == "named"}
    assert "prompt_named" in payload["specificity"] and "named" in payload["specificity"]
    sidecar = json.loads((tmp_path / "run" / "predictions" / "prompt_named" / "seed0.json").read_text())
    assert sidecar["setting"]["user"].startswith("In {culture_name}")  # the cache knows what the file says
    with pytest.raises(ValueError, match=r"conditions\[0\] \(named\)\.setting.*template file"):
        _config(tiny_model_dir, conditions=[{**condition, "setting": str(tmp_path / "missing.yaml")}])
    (tmp_path / "unnamed.yaml").write_text("system: 'You are a person.'\n")
    with pytest.raises(ValueError, match="does not name the culture"):
        _config(tiny_model_dir, conditions=[{**condition, "setting": str(tmp_path / "unnamed.yaml")}])


def test_shuffled_labels_of_a_corpus_keep_every_row_and_swap_the_culture_named():
    from culture_align.cultures import get_culture
    from culture_align.experiments.training import _shuffle_corpus_labels
    from culture_align.recipes.distribution import wvs_distribution_rows

    wvs = synthetic_wvs()
    rows = wvs_distribution_rows(wvs)  # culture-aware: the system turn names the culture
    mapping = culture_derangement(list(CULTURES), 0)
    shuffled = _shuffle_corpus_labels(rows, mapping)
    assert len(shuffled) == len(rows) and shuffled["target"] == rows["target"]  # same data, same steps
    for before, after in zip(rows, shuffled):
        assert after["culture"] == mapping[before["culture"]]
        system = after["prompt"][0]["content"]
        assert get_culture(after["culture"]).adjective_phrase in system
        assert get_culture(before["culture"]).adjective_phrase not in system
        assert after["prompt"][1] == before["prompt"][1]
    with pytest.raises(ValueError, match="does not name its culture"):
        _shuffle_corpus_labels(wvs_distribution_rows(wvs, setting="culture-unaware"), mapping)


def test_distribution_demo_prints_before_after_and_controls(tiny_model_dir, tmp_path, capsys):
    from culture_align.demo import run_distribution_demo

    result = run_distribution_demo(tmp_path / "demo", synthetic_wvs(), model_name=str(tiny_model_dir),
                                   cultures=["USA", "CHN", "DEU"], max_steps=3)
    printed = capsys.readouterr().out
    for label in ("culture-aware prompt (before)", "answer_distribution (after)", "culture labels shuffled",
                  "uniform distribution", "position prior"):
        assert label in printed
    assert (tmp_path / "demo" / "report.md").is_file()
    assert result["results"]["conditions"]["answer_distribution"]["info"]["short"]


def _clca_corpus(folder: Path) -> Path:
    """A CLCA-shaped corpus on disk: dialogue and intent conversations whose system turn names the culture."""
    from datasets import Dataset

    from culture_align.cultures import get_culture

    rows = []
    for k, iso3 in enumerate(["USA", "DEU", "CHN", "USA", "DEU", "CHN"] * 2):
        system = f"You are a real person with your own values, {get_culture(iso3).adjective_phrase}."
        if k % 2:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": "Shall we meet at six?"},
                        {"role": "assistant", "content": f"Six is fine, see you there {k}."}]
            task = "dialogue"
        else:
            messages = [{"role": "system", "content": f"An expert on {get_culture(iso3).name}. {system}"},
                        {"role": "user", "content": "Turn: Six is fine. What is the intent of the speaker?"},
                        {"role": "assistant", "content": "Intent: to agree."}]
            task = "intent"
        rows.append({"messages": messages, "task": task, "culture": iso3, "id": f"d{k}"})
    Dataset.from_list(rows).save_to_disk(str(folder))
    return folder


def test_runner_trains_clca_on_chosen_cultures_with_their_own_shuffled_control(tiny_model_dir, tmp_path):
    corpus = _clca_corpus(tmp_path / "clca-corpus")
    condition = {"name": "clca", "recipe": "clca", "data": {"source": "dataset", "path": str(corpus),
                                                             "cultures": ["USA", "DEU"]},
                 "seeds": [0, 1, 2], "training": {"max_steps": 3, "per_device_train_batch_size": 4,
                                                  "learning_rate": 5e-3, "max_length": 128}}
    runner = ExperimentRunner(_config(tiny_model_dir, baselines=["uniform", "culture_prompt"], conditions=[condition],
                                      allow_short_training=True), output_dir=tmp_path / "run", wvs=synthetic_wvs(),
                              show_progress=False)
    payload = runner.run()
    row = payload["conditions"]["clca"]
    assert row["kind"] == "trained" and row["info"]["recipe"] == "clca" and row["seeds"] == [0, 1, 2]
    assert all(r["examples"] == 8 for r in row["info"]["runs"])  # the CHN rows are not the condition's
    shuffled = payload["conditions"]["clca_shuffled_labels"]["info"]["runs"]
    assert all(r["label_mapping"] == {"USA": "DEU", "DEU": "USA"} for r in shuffled)  # among the chosen cultures
    # Every test culture is scored, not only the trained ones.
    assert set(row["per_culture"]) == set(CULTURES)
    with pytest.raises(ValueError, match="data.cultures"):
        _config(tiny_model_dir, conditions=[{**condition, "data": {**condition["data"], "cultures": "USA"}}])
    with pytest.raises(ValueError, match="recipe clca trains one joint adapter"):
        _config(tiny_model_dir, conditions=[{**condition, "mode": "specific"}])
    with pytest.raises(ValueError, match="clca"):
        _config(tiny_model_dir, conditions=[{**condition, "recipe": "culturellm",
                                             "data": {"source": "clca", "pipeline": {}}}])
    unknown = {**condition, "data": {**condition["data"], "cultures": ["USA", "JPN"]}}
    with pytest.raises(ValueError, match="JPN not among the split's training cultures"):
        ExperimentRunner(_config(tiny_model_dir, baselines=["uniform"], conditions=[unknown],
                                 allow_short_training=True), output_dir=tmp_path / "bad", wvs=synthetic_wvs(),
                         show_progress=False).run()


def test_a_recipe_corpus_is_summarised_in_the_results_and_the_report(tiny_model_dir, tmp_path):
    from datasets import DatasetDict, load_from_disk

    condition = {"name": "clca", "recipe": "clca", "data": {"source": "clca", "cultures": ["USA", "DEU"],
                                                             "pipeline": {"num_scenarios": 1}},
                 "seeds": [0], "shuffled_control": False,
                 "training": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 128}}
    runner = ExperimentRunner(_config(tiny_model_dir, baselines=["uniform"], conditions=[condition],
                                      allow_short_training=True), output_dir=tmp_path / "run", wvs=synthetic_wvs(),
                              show_progress=False)
    folder = runner._data_dir(runner.config.conditions[0])  # a finished pipeline folder is reused as it is
    DatasetDict({"train": load_from_disk(str(_clca_corpus(tmp_path / "corpus")))}).save_to_disk(str(folder / "dataset"))
    counts = {"dialogues": 6, "train": 12, "rejections_by_stage": {"judge": 1}}
    (folder / "stats.json").write_text(json.dumps({"counts": counts, "seconds": 12.5}))
    payload = runner.run()
    corpus = payload["conditions"]["clca"]["info"]["corpus"]
    assert corpus == {"folder": f"data/{folder.name}", "counts": counts, "seconds": 12.5}
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"| `data/{folder.name}` | clca | 12 | dialogues 6, train 12 | 12.5 |" in report


def test_config_anchors_subsets_and_shared_pipeline_folders(tiny_model_dir, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"""name: anchors
model: {tiny_model_dir}
x-budget: &budget {{max_steps: 60, per_device_train_batch_size: 8}}
x-data: &spa {{source: culturespa, cultures: [USA, DEU], pipeline: {{questions_per_topic: 2}}}}
conditions:
  - {{name: spa, recipe: culturespa, data: *spa, training: *budget}}
  - {{name: spa_soft, recipe: answer_distribution, data: *spa, training: *budget}}
  - {{name: other, recipe: culturespa, data: {{source: culturespa, pipeline: {{questions_per_topic: 3}}}},
     training: *budget}}
""")
    cfg = ExperimentConfig.from_yaml(config)
    assert [c.name for c in cfg.conditions] == ["spa", "spa_soft", "other"]
    cfg.conditions[0].training["max_steps"] = 1  # each condition owns its dicts, anchors or not
    assert cfg.conditions[1].training["max_steps"] == 60
    runner = ExperimentRunner(cfg, output_dir=tmp_path / "run", wvs=synthetic_wvs(), show_progress=False)
    spa, soft, other = (runner._data_dir(c) for c in cfg.conditions)
    assert spa == soft != other and spa.name.startswith("culturespa-")  # one corpus for a recipe and its soft variant
    assert [c.name for c in cfg.only_conditions(["other", "spa"]).conditions] == ["spa", "other"]
    with pytest.raises(ValueError, match="no condition named nope"):
        cfg.only_conditions(["nope"])


@pytest.mark.parametrize("source,pipeline", [("culturespa", "culture_align.recipes.culturespa.CultureSPAPipeline"),
                                             ("culturellm", "culture_align.recipes.culturellm.CultureLLMPipeline"),
                                             ("clca", "culture_align.recipes.clca.CLCAPipeline")])
def test_recipe_pipelines_use_the_loaded_model_and_the_conditions_cultures(tiny_model_and_tokenizer, tmp_path,
                                                                           source, pipeline):
    from unittest import mock

    from culture_align.experiments.config import TrainedCondition
    from culture_align.experiments.training import _recipe_corpus

    wvs = synthetic_wvs()
    split = make_split(wvs, "held_out_items", seed=0)
    data = {"source": source, "cultures": ["USA", "DEU"],
            "pipeline": {"items": split.train_items[:3]} if source == "culturellm" else {}}
    condition = TrainedCondition(name="x", recipe="clca" if source == "clca" else "culturellm", data=data)
    with mock.patch(f"{pipeline}.run", lambda self, folder: (type(self).__name__, list(self.config.cultures))), \
            mock.patch("culture_align.models.load_model_and_tokenizer", side_effect=AssertionError("loaded again")):
        ran = _recipe_corpus(condition, wvs, split, "tiny", None, tmp_path, lambda: tiny_model_and_tokenizer)
    assert ran == (pipeline.rsplit(".", 1)[1], ["USA", "DEU"])
