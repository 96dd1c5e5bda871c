"""Downstream culture tasks: loading and validation, label-logprob predictions, macro-F1, subsampling, CLI."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import numpy as np
import pytest
import torch

from culture_align.cli import main
from culture_align.cultures import get_culture
from culture_align.evaluation import (
    CultureTask,
    OptionScorer,
    TaskEvaluationConfig,
    TaskEvaluator,
    attach_adapters,
    classification_scores,
    load_tasks,
)
from culture_align.evaluation.tasks import (
    debiased_predictions,
    read_task_examples,
    subsample_indices,
    task_conversations,
)
from culture_align.prompts.tasks import TASK_SETTINGS, build_task_conversation

OFFENSE_LABELS = {"OFF": "offensive", "NOT": "not offensive"}
BIAS_LABELS = {"1": "biased", "0": "not biased"}


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _write_task_files(tmp_path):
    """A JSONL task (USA, string labels), a CSV task (DEU, 0/1 labels) and a tasks.json index over both."""
    _write_jsonl(tmp_path / "eng.jsonl", [
        {"text": "you are a fool and a liar", "label": "OFF"},
        {"text": "have a nice day", "label": "NOT"},
        {"text": "what a lovely garden", "label": "NOT"},
        {"text": "shut up, idiot", "label": "OFF"},
        {"text": "see you at the market", "label": "NOT"},
        {"text": "thanks for the help", "label": "NOT"},
    ])
    (tmp_path / "deu.csv").write_text("text,label\n"
                                      "Frauen gehören in die Küche,1\n"
                                      "\"Sie ist Ingenieurin, und gut\",0\n"
                                      "Das Wetter ist schön,0\n"
                                      "Männer weinen nicht,1\n"
                                      "Wir gehen ins Kino,0\n")
    index = [
        {"task": "eng_offense", "file": "eng.jsonl", "culture": "USA", "language": "en",
         "phenomenon": "offensive language", "labels": OFFENSE_LABELS, "n": 6},
        {"task": "deu_bias", "file": "deu.csv", "culture": "DEU", "language": "de",
         "phenomenon": "gender bias", "labels": BIAS_LABELS, "n": 5},
    ]
    (tmp_path / "tasks.json").write_text(json.dumps(index))
    return tmp_path / "tasks.json"


# ------------------------------------------------------------------------------------------- loading
def test_load_index_reads_jsonl_and_csv(tmp_path):
    tasks = load_tasks(_write_task_files(tmp_path))
    assert [t.name for t in tasks] == ["eng_offense", "deu_bias"]
    eng, deu = tasks
    assert eng.culture == "USA" and eng.label_keys == ["OFF", "NOT"] and eng.language == "en"
    rows = eng.load()
    assert list(rows["label"])[:2] == ["OFF", "NOT"] and list(rows["row"]) == list(range(6))
    rows = deu.load()
    assert len(rows) == 5 and rows["text"][1] == "Sie ist Ingenieurin, und gut" and rows["label"][0] == "1"
    assert [t.name for t in load_tasks(tmp_path / "tasks.json", names=["deu_bias"])] == ["deu_bias"]


def test_yaml_index_with_own_template_and_integer_labels(tmp_path):
    _write_jsonl(tmp_path / "zh.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    (tmp_path / "tasks.yaml").write_text(
        "tasks:\n"
        "  - task: zho_bias\n"
        "    file: zh.jsonl\n"
        "    culture: China\n"
        "    phenomenon: gender bias\n"
        "    labels: {1: biased, 0: not biased}\n"
        "    templates:\n"
        "      plain: {system: 'You read Chinese forums.', user: 'Bias? {labels} Text: {text}'}\n")
    (task,) = load_tasks(tmp_path / "tasks.yaml")
    assert task.culture == "CHN" and task.label_keys == ["1", "0"]
    assert list(task.load()["label"]) == ["1", "0"]
    (conv,) = task_conversations(task, ["hello"], "plain")
    assert conv == [{"role": "system", "content": "You read Chinese forums."},
                    {"role": "user", "content": "Bias? 1. biased\n2. not biased Text: hello"}]


@pytest.mark.parametrize("write, expected", [
    (lambda p: _write_jsonl(p / "t.jsonl", [{"text": "ok", "label": "NOT"}, {"text": "x", "label": "OFF"},
                                            {"text": "y", "label": "RUDE"}]), ["t.jsonl, line 3", "'RUDE'"]),
    (lambda p: _write_jsonl(p / "t.jsonl", [{"text": "ok", "label": "NOT"}, {"txt": "x", "label": "OFF"}]),
     ["t.jsonl, line 2", "no 'text' field"]),
    (lambda p: (p / "t.jsonl").write_text('{"text": "ok", "label": "NOT"}\n{"text": "x", "label": \n'),
     ["t.jsonl, line 2", "invalid JSON"]),
    (lambda p: (p / "t.jsonl").write_text(""), ["t.jsonl", "no examples"]),
    (lambda p: (p / "t.csv").write_text("sentence,label\nhello,NOT\n"), ["t.csv", "no column 'text'"]),
    (lambda p: (p / "t.csv").write_text("text,label\nhello,NOT\n,OFF\n"), ["t.csv, line 3", "non-empty"]),
    (lambda p: (p / "t.txt").write_text("hello"), ["t.txt", "unsupported"]),
])
def test_bad_task_files_name_file_and_line(tmp_path, write, expected):
    write(tmp_path)
    (path,) = [p for p in tmp_path.iterdir() if p.name.startswith("t.")]
    with pytest.raises(ValueError) as err:
        read_task_examples(path, OFFENSE_LABELS)
    for fragment in expected:
        assert fragment in str(err.value)


def test_bad_dataset_and_declarations(tmp_path):
    with pytest.raises(ValueError, match="no column 'label'"):
        read_task_examples(datasets.Dataset.from_dict({"text": ["a"], "y": ["OFF"]}), OFFENSE_LABELS)
    with pytest.raises(ValueError, match="Dataset row 1: label 'MEH'"):
        read_task_examples(datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["OFF", "MEH"]}), OFFENSE_LABELS)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_task_examples(tmp_path / "missing.jsonl", OFFENSE_LABELS)
    with pytest.raises(ValueError, match="task 'x'.*Unknown culture 'ATLANTIS'"):
        CultureTask("x", tmp_path / "a.jsonl", OFFENSE_LABELS, "ATLANTIS", "offense")
    with pytest.raises(ValueError, match="at least two"):
        CultureTask("x", tmp_path / "a.jsonl", {"OFF": "offensive"}, "USA", "offense")
    index = _write_task_files(tmp_path)
    with pytest.raises(ValueError, match=r"no task named nope \(tasks: eng_offense, deu_bias\)"):
        load_tasks(index, names=["nope"])
    entries = json.loads(index.read_text())
    entries[1]["colour"] = "red"
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"bad.json, task #2 \(deu_bias\): unknown keys \['colour'\]"):
        load_tasks(tmp_path / "bad.json")
    del entries[1]["colour"], entries[0]["labels"]
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"task #1 \(eng_offense\): missing 'labels'"):
        load_tasks(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------- metrics
def test_macro_f1_matches_hand_computed_values():
    gold = ["A", "A", "A", "B", "B", "C"]
    pred = ["A", "A", "B", "B", "C", "C"]
    # A: P=2/2, R=2/3 -> F1=0.8; B: P=1/2, R=1/2 -> 0.5; C: P=1/2, R=1/1 -> 2/3.
    scores = classification_scores(gold, pred, ["A", "B", "C"])
    assert scores["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["f1_per_label"] == pytest.approx({"A": 0.8, "B": 0.5, "C": 2 / 3})
    assert scores["gold_counts"] == {"A": 3, "B": 2, "C": 1}
    assert scores["predicted_counts"] == {"A": 2, "B": 2, "C": 2}
    assert scores["confusion"]["A"] == {"A": 2, "B": 1, "C": 0} and scores["confusion"]["B"]["C"] == 1
    # A label of the task's set that never occurs counts with F1 = 0 in the macro average.
    assert classification_scores(gold, pred, ["A", "B", "C", "D"])["macro_f1"] == pytest.approx(
        (0.8 + 0.5 + 2 / 3) / 4)
    with pytest.raises(ValueError, match="not in the label set"):
        classification_scores(["A"], ["Z"], ["A", "B"])


def test_debiased_predictions_remove_the_label_prior():
    # The raw argmax is "A" everywhere; centred on the label means (A: -0.5, B: -1.5) the last two flip to B.
    scores = [np.array([-0.1, -2.0]), np.array([-0.4, -1.6]), np.array([-0.7, -1.2]), np.array([-0.8, -1.2])]
    assert [["A", "B"][int(np.argmax(s))] for s in scores] == ["A"] * 4
    assert debiased_predictions(scores, ["A", "B"]) == ["A", "A", "B", "B"]
    assert debiased_predictions([], ["A", "B"]) == []


def test_subsample_is_deterministic_and_stratified():
    labels = ["NOT"] * 70 + ["OFF"] * 25 + ["RARE"] * 5
    first = subsample_indices(labels, 20, "stratified", seed=3)
    assert first == subsample_indices(labels, 20, "stratified", seed=3)
    assert first != subsample_indices(labels, 20, "stratified", seed=4)
    assert first == sorted(set(first)) and len(first) == 20
    assert Counter(labels[i] for i in first) == {"NOT": 14, "OFF": 5, "RARE": 1}
    skewed = ["a"] * 98 + ["b"] * 2  # b's share rounds to 0 of 10: still drawn once
    assert Counter(skewed[i] for i in subsample_indices(skewed, 10)) == {"a": 9, "b": 1}
    drawn = subsample_indices(labels, 20, "random", seed=3)
    assert drawn == subsample_indices(labels, 20, "random", seed=3) and len(set(drawn)) == 20
    assert subsample_indices(labels, None) == list(range(100)) == subsample_indices(labels, 500)


def test_culture_aware_prompt_names_the_culture():
    usa = get_culture("USA")
    plain = build_task_conversation(TASK_SETTINGS["plain"], "hi there", ["offensive", "not offensive"],
                                    "offensive language", usa)
    aware = build_task_conversation(TASK_SETTINGS["culture-aware"], "hi there", ["offensive", "not offensive"],
                                    "offensive language", usa)
    assert aware[0]["content"].startswith("You are an American annotator")
    assert "American" not in plain[0]["content"]
    jordan = build_task_conversation(TASK_SETTINGS["culture-aware"], "x", ["a", "b"], "offense", get_culture("JOR"))
    assert "a Jordanian reader" in jordan[0]["content"]
    assert aware[1] == plain[1]
    assert "1. offensive\n2. not offensive" in plain[1]["content"] and plain[1]["content"].index("hi there") > \
        plain[1]["content"].index("2. not offensive")
    with pytest.raises(ValueError, match="needs a culture"):
        build_task_conversation(TASK_SETTINGS["culture-aware"], "x", ["a", "b"], "offense")


# ---------------------------------------------------------------------------------------- evaluation
def test_predictions_are_the_argmax_of_option_scores(tmp_path, tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    tasks = load_tasks(_write_task_files(tmp_path))
    report = TaskEvaluator(model, tok, tasks, batch_size=4, show_progress=False).evaluate(tmp_path / "out")
    assert len(report.predictions) == 2 * (6 + 5) and len(report.summary) == 4
    scorer = OptionScorer(model, tok, batch_size=3)
    for task in tasks:
        texts = list(task.load()["text"])
        for setting in ("plain", "culture-aware"):
            convs = [build_task_conversation(TASK_SETTINGS[setting], t, list(task.labels.values()),
                                             task.phenomenon, get_culture(task.culture), task.language)
                     for t in texts]
            expected = scorer.score(convs, [["1", "2"]] * len(convs))
            rows = report.predictions.filter(lambda r, n=task.name, s=setting: r["task"] == n and r["setting"] == s)
            assert list(rows["text"]) == texts
            np.testing.assert_allclose(rows["label_logprobs"], expected, atol=1e-5)
            assert list(rows["prediction"]) == [task.label_keys[int(np.argmax(e))] for e in expected]
            summary = report.row(task.name, setting)
            again = classification_scores(list(rows["label"]), list(rows["prediction"]), task.label_keys)
            assert summary["macro_f1"] == pytest.approx(again["macro_f1"])
            assert list(rows["debiased_prediction"]) == debiased_predictions(expected, task.label_keys)
            assert sum(summary["predicted_counts"].values()) == len(texts)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["task"] for r in results["summary"]] == ["eng_offense"] * 2 + ["deu_bias"] * 2
    assert set(results["mean_macro_f1"]) == {"plain", "culture-aware"}
    assert len(datasets.Dataset.from_parquet(str(tmp_path / "out" / "predictions.parquet"))) == 22
    assert "| eng_offense | USA | culture-aware |" in (tmp_path / "out" / "summary.md").read_text()


def test_subsample_is_recorded_and_shared_by_settings(tmp_path, tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    tasks = load_tasks(_write_task_files(tmp_path), names=["eng_offense"])
    config = TaskEvaluationConfig(max_examples=3, seed=1)
    report = TaskEvaluator(model, tok, tasks, config, show_progress=False).evaluate()
    plain = list(report.predictions.filter(lambda r: r["setting"] == "plain")["row"])
    aware = list(report.predictions.filter(lambda r: r["setting"] == "culture-aware")["row"])
    assert plain == aware == subsample_indices(list(tasks[0].load()["label"]), 3, "stratified", 1)
    assert report.row("eng_offense", "plain")["sample"] == dict(n_total=6, n_selected=3, strategy="stratified",
                                                              seed=1, max_examples=3)


def test_adapters_switch_per_culture(tmp_path, tiny_model_and_tokenizer):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model_and_tokenizer
    folders = {}
    for iso3, seed in (("USA", 1), ("DEU", 2)):
        torch.manual_seed(seed)
        lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folders[iso3] = tmp_path / iso3
        lora.save_pretrained(folders[iso3])
        model = lora.unload()
    tasks = load_tasks(_write_task_files(tmp_path))
    peft_model, adapters = attach_adapters(model, folders)
    assert adapters == {"USA": "USA", "DEU": "DEU"}
    report = TaskEvaluator(peft_model, tok, tasks, settings=["plain"], show_progress=False,
                           adapters=adapters).evaluate()
    assert [r["adapter"] for r in report.summary] == ["USA", "DEU"]
    scorer = OptionScorer(peft_model, tok)
    for task in tasks:
        convs = task_conversations(task, list(task.load()["text"]), "plain")
        with_own, with_other = [], []
        for name, out in ((task.culture, with_own), ({"USA": "DEU", "DEU": "USA"}[task.culture], with_other)):
            peft_model.set_adapter(name)
            out.extend(scorer.score(convs, [["1", "2"]] * len(convs)))
        got = list(report.predictions.filter(lambda r, n=task.name: r["task"] == n)["label_logprobs"])
        np.testing.assert_allclose(got, with_own, atol=1e-5)
        assert not np.allclose(got, with_other, atol=1e-3)  # the adapters really differ
    with pytest.raises(ValueError, match="no adapter for DEU"):
        TaskEvaluator(peft_model, tok, tasks, adapters={"USA": "USA"}, show_progress=False).evaluate()


def test_cli_eval_tasks(tmp_path, tiny_model_dir, capsys):
    index = _write_task_files(tmp_path)
    out = tmp_path / "out"
    code = main(["eval-tasks", "--tasks", str(index), "--task", "deu_bias", "--model", str(tiny_model_dir),
                 "--setting", "culture-aware", "--max-examples", "4", "--batch-size", "2", "--out", str(out)])
    assert code == 0
    assert "| deu_bias | DEU | culture-aware |" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    (row,) = results["summary"]
    assert row["n"] == 4 and row["sample"]["n_total"] == 5 and results["config"]["max_examples"] == 4
    code = main(["eval-tasks", "--tasks", str(index), "--task", "nope", "--model", str(tiny_model_dir),
                 "--out", str(out)])
    assert code == 2 and "no task named nope" in capsys.readouterr().err
