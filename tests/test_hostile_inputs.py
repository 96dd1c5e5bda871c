"""Hostile inputs: mistyped sources, duplicate keys, foreign encodings, odd codes, huge and tiny numbers.

Every loader (and the alignment metric) must either refuse an input with a ``ValueError`` /
``FileNotFoundError`` whose message names the file (or, for the metric, the row), or return exactly the
right figures: never another exception type, never a silent wrong number. The property tests throw
generated inputs at the loaders; the targeted tests pin each reported failure (a mistyped path that became a
Hub download, a country filed twice, truncated codes, a table as large as a code, codes off the scale).
All files are made up here; no real survey figures are used.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
import tracemalloc
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from culture_align.cultures import get_culture
from culture_align.evaluation.tasks import read_task_examples
from culture_align.input_files import parse_json, read_csv, read_json_lines
from culture_align.metric import alignment_math
from culture_align.wvs import (
    MAX_CODE,
    SurveyQuestion,
    load_distributions,
    load_global_opinions,
    load_questions,
    load_wvs,
    load_wvs_csv,
)
from culture_align.wvs.loaders.survey_csv import _code_positions

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)
FOUR = ("Very", "Rather", "Not very", "Not at all")
CATALOG = {
    "Q1": SurveyQuestion("Q1", "How important is family?", FOUR, (1, 2, 3, 4)),
    "Q94": SurveyQuestion("Q94", "Member of a church?", ("Not a member", "Inactive", "Active"), (0, 1, 2)),
}
LABELS = {"OFF": "offensive", "NOT": "not offensive"}


def _refused(err: BaseException, path: Path) -> None:
    """A refusal must be a ValueError or FileNotFoundError naming the file."""
    assert isinstance(err, (ValueError, FileNotFoundError)), repr(err)
    assert path.name in str(err), str(err)


def _attempt(load: Callable[[], Any], path: Path) -> Any | None:
    """``load()``'s result, or ``None`` after checking that its error is a clear refusal naming ``path``."""
    try:
        result = load()
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions escape
        _refused(err, path)
        event("refused")
        return None
    event("loaded")
    return result


class _Raw(str):
    """JSON text to embed as it is (a value of :func:`_json_object`)."""


def _json_object(pairs: list[tuple[str, Any]]) -> _Raw:
    """A JSON object text from key-value pairs, keeping repeated keys (``json.dumps`` cannot write them)."""
    body = ", ".join(f"{json.dumps(k)}: {v if isinstance(v, _Raw) else json.dumps(v)}" for k, v in pairs)
    return _Raw("{" + body + "}")


# ------------------------------------------------------------------------------ 6: explicit Hub sources


def _goqa_rows() -> list[dict[str, str]]:
    return [{"question": "Is family important?", "options": "['Yes', 'No']",
             "selections": "{'Germany': [0.25, 0.75]}", "source": "WVS"}]


@pytest.fixture()
def hub_calls(monkeypatch) -> list[str]:
    """Record ``datasets.load_dataset`` calls (and answer them with a tiny GlobalOpinionQA table)."""
    calls: list[str] = []

    def fake_load_dataset(repo_id: str, split: str = "train", **kwargs: Any) -> datasets.Dataset:
        calls.append(repo_id)
        return datasets.Dataset.from_list(_goqa_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_a_mistyped_local_path_is_an_error_not_a_hub_download(tmp_path, monkeypatch, hub_calls):
    """``--wvs shared/wvs`` with no such folder used to download the Hub dataset ``shared/wvs``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_wvs("shared/wvs")
    assert "shared/wvs" in str(err.value) and "hf://shared/wvs" in str(err.value)
    assert hub_calls == []


def test_a_missing_path_says_how_to_name_a_hub_dataset(tmp_path, hub_calls):
    missing = tmp_path / "no" / "such" / "wvs.json"
    with pytest.raises(FileNotFoundError) as err:
        load_wvs(missing)
    assert str(missing) in str(err.value) and "hf://owner/name" in str(err.value)
    with pytest.raises(FileNotFoundError, match="hf://"):
        load_wvs(str(missing))
    assert hub_calls == []


def test_a_hub_dataset_is_read_only_when_named_with_hf(hub_calls):
    data = load_wvs("hf://someone/opinions")
    assert hub_calls == ["someone/opinions"] and data.source == "hf://someone/opinions[train]"
    np.testing.assert_allclose(next(iter(data.distributions["DEU"].values())), [0.25, 0.75])
    for bad in ("hf://", "hf://just-a-name", "hf://a/b/c", "hf://owner/na me"):
        with pytest.raises(ValueError, match="hf://owner/name"):
            load_wvs(bad)
    assert hub_calls == ["someone/opinions"]


def test_an_existing_folder_shaped_like_a_hub_id_is_read_locally(tmp_path, monkeypatch, hub_calls):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "shared" / "wvs"
    folder.mkdir(parents=True)
    (folder / "wvs_questions.json").write_text(json.dumps([{"qid": "Q1", "text": "Family?", "options": list(FOUR)}]))
    (folder / "proportions_group_by_country.json").write_text(json.dumps({"USA": {"Q1": {"2": 1}}}))
    assert load_wvs("shared/wvs").modal_code("USA", "Q1") == 2
    assert hub_calls == []


# ------------------------------------------------------------------------- 8a: duplicate keys and columns


def test_a_country_twice_in_a_distributions_file_is_refused(tmp_path):
    """json keeps the last of two equal keys: USA's first figures vanished silently."""
    path = tmp_path / "dist.json"
    path.write_text(_json_object([("USA", {"Q1": {"1": 1.0}}), ("USA", {"Q1": {"4": 1.0}})]))
    with pytest.raises(ValueError) as err:
        load_distributions(path, CATALOG)
    assert "dist.json" in str(err.value) and "'USA'" in str(err.value) and "twice" in str(err.value)


@pytest.mark.parametrize("text, key", [
    ('{"USA": {"Q1": {"1": 0.2, "1": 0.8, "2": 0.5}}}', "'1'"),
    ('{"USA": {"Q1": {"1": 1}, "Q1": {"2": 1}}}', "'Q1'"),
])
def test_a_repeated_code_or_item_is_refused(tmp_path, text, key):
    path = tmp_path / "dist.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_distributions(path, CATALOG)
    assert "dist.json" in str(err.value) and key in str(err.value)


def test_repeated_keys_in_questions_counts_tasks_and_goqa_are_refused(tmp_path):
    questions = tmp_path / "questions.json"
    questions.write_text('[{"qid": "Q1", "text": "x", "options": ["a", "b"], "codes": [1, 2], "codes": [2, 1]}]')
    with pytest.raises(ValueError, match=r"questions\.json: .*'codes' appears twice"):
        load_questions(questions)
    dist = tmp_path / "d.json"
    dist.write_text(json.dumps({"USA": {"Q1": {"1": 1}}}))
    (tmp_path / "d.counts.json").write_text('{"USA": {"Q1": 10, "Q1": 20}}')
    with pytest.raises(ValueError, match=r"d\.counts\.json: .*'Q1' appears twice"):
        load_distributions(dist, CATALOG)
    task = tmp_path / "task.jsonl"
    task.write_text('{"text": "fine", "label": "NOT"}\n{"text": "x", "label": "OFF", "label": "NOT"}\n')
    with pytest.raises(ValueError, match=r"task\.jsonl, line 2: .*'label' appears twice"):
        read_task_examples(task, LABELS)
    goqa = tmp_path / "goqa.jsonl"
    row = _json_object([("question", "Q?"), ("options", ["a", "b"]), ("selections", {"Germany": [1, 0]}),
                        ("selections", {"Germany": [0, 1]}), ("source", "WVS")])
    goqa.write_text(row + "\n")
    with pytest.raises(ValueError, match=r"goqa\.jsonl, line 1: .*'selections' appears twice"):
        load_global_opinions(goqa)


def _goqa_csv(path: Path, selections: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "options", "selections", "source"])
        writer.writeheader()
        writer.writerow({"question": "Is family important?", "options": "['Yes', 'No']",
                         "selections": selections, "source": "WVS"})
    return path


@pytest.mark.parametrize("selections, fragment", [
    ("{'Germany': [1, 0], 'Germany': [0, 1]}", "'Germany' twice"),
    ("defaultdict(<class 'list'>, {'Germany': [1, 0], 'Nigeria': [1, 1], 'Germany': [0, 1]})", "'Germany' twice"),
    ("{'Germany': [1, 0], 'DEU': [0, 1]}", "DEU twice"),  # two names of one culture
])
def test_goqa_selections_naming_a_culture_twice_are_refused(tmp_path, selections, fragment):
    path = _goqa_csv(tmp_path / "goqa.csv", selections)
    with pytest.raises(ValueError) as err:
        load_global_opinions(path)
    assert "goqa.csv: row 1" in str(err.value) and fragment in str(err.value)


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    wvs = tmp_path / "wvs.csv"
    wvs.write_text("B_COUNTRY_ALPHA,Q1,Q1\nUSA,1,4\n")
    with pytest.raises(ValueError, match=r"wvs\.csv: the column 'Q1' appears twice"):
        load_wvs_csv(wvs, CATALOG)
    task = tmp_path / "task.csv"
    task.write_text("text,label,label\nhello,OFF,NOT\n")
    with pytest.raises(ValueError, match=r"task\.csv: the column 'label' appears twice"):
        read_task_examples(task, LABELS)
    task.write_text("text,label\nhello,OFF,NOT\n")
    with pytest.raises(ValueError, match=r"task\.csv: line 2: 3 fields but the header has 2"):
        read_task_examples(task, LABELS)


# ------------------------------------------------------------------------------------------ 8b: encodings


@pytest.mark.parametrize("encoding, fragment", [
    ("utf-16", "UTF-16"), ("utf-32", "UTF-32"), ("utf-16-le", "NUL byte"), ("latin-1", "not UTF-8"),
    ("cp1252", "not UTF-8"),
])
def test_files_not_in_utf8_are_refused_naming_the_file(tmp_path, encoding, fragment):
    text = json.dumps([{"qid": "Q1", "text": "Côte d'Ivoire: famille?", "options": ["Très", "Pas"]}],
                      ensure_ascii=False)
    path = tmp_path / "questions.json"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ValueError) as err:
        load_questions(path)
    assert "questions.json" in str(err.value) and fragment in str(err.value)
    assert "UTF-8" in str(err.value)


def test_a_latin1_error_gives_offset_and_line(tmp_path):
    path = tmp_path / "task.csv"
    path.write_bytes("text,label\nhello,OFF\ncaf\u00e9,NOT\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"task\.csv: not UTF-8: byte 0xe9 at offset 24 \(line 3\)"):
        read_task_examples(path, LABELS)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "questions.json"
    path.write_bytes(json.dumps([{"qid": "Q1", "text": "Famille?", "options": ["Oui", "Non"]}]).encode("utf-8-sig"))
    assert load_questions(path)["Q1"].options == ("Oui", "Non")
    wvs = tmp_path / "wvs.csv"
    wvs.write_bytes("B_COUNTRY_ALPHA,Q1\nUSA,2\n".encode("utf-8-sig"))
    np.testing.assert_allclose(load_wvs_csv(wvs, CATALOG).distribution("USA", "Q1"), [0, 1, 0, 0])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1"])
def test_a_wvs_csv_header_not_in_utf8_is_refused(tmp_path, encoding):
    path = tmp_path / "wvs.csv"
    path.write_bytes("B_COUNTRY_ALPHA,Q1,Stat\u00fct\nUSA,2,x\n".encode(encoding))
    with pytest.raises(ValueError, match=r"wvs\.csv: .*UTF") as err:
        load_wvs_csv(path, CATALOG)
    assert "no country column" not in str(err.value)


# -------------------------------------------------------------------------------------- 8c: answer codes


@pytest.mark.parametrize("codes, fragment", [
    ("[1.5, 2.7]", "1.5"),
    ("[true, false]", "boolean"),
    ("[-1, 1]", "negative"),
    ("[1, 1000000000000]", "larger than"),
    ('"12"', "codes must be a list"),
    ('["1", "x"]', "'x'"),
])
def test_illegal_question_codes_are_refused_never_truncated(tmp_path, codes, fragment):
    path = tmp_path / "questions.json"
    path.write_text(f'[{{"qid": "Q1", "text": "Family?", "options": ["a", "b"], "codes": {codes}}}]')
    with pytest.raises(ValueError) as err:
        load_questions(path)
    assert "questions.json" in str(err.value) and "Q1" in str(err.value) and fragment in str(err.value)


def test_integral_codes_in_any_spelling_are_kept_exactly(tmp_path):
    path = tmp_path / "questions.json"
    path.write_text('[{"qid": "Q1", "text": "Family?", "options": ["a", "b", "c"], "codes": [0, 1.0, "2"]}]')
    assert load_questions(path)["Q1"].codes == (0, 1, 2)
    with pytest.raises(ValueError, match="1.5"):
        CATALOG["Q1"].index_of(1.5)  # used to be truncated to code 1


def test_code_positions_never_allocate_by_the_size_of_a_code():
    """A code of 10**12 used to make the CSV loader build a lookup table of 10**12 entries."""
    question = SurveyQuestion("Q1", "Family?", ("a", "b", "c"), (1, MAX_CODE - 1, MAX_CODE))
    values = np.array([1, MAX_CODE, -1, MAX_CODE - 1, -5], dtype=np.int64)
    tracemalloc.start()
    try:
        positions = _code_positions(values, question, Path("wvs.csv"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert positions.tolist() == [0, 2, -1, 1, -1]
    assert peak < 100_000, peak  # a table indexed by code would take 8 MB here
    with pytest.raises(ValueError, match="larger than"):
        SurveyQuestion("Q1", "Family?", ("a", "b"), (1, 10**12))


def test_a_csv_code_beyond_int64_names_its_row_and_column(tmp_path):
    path = tmp_path / "wvs.csv"
    path.write_text("B_COUNTRY_ALPHA,Q1\nUSA,1\nUSA,99999999999999999999999\n")
    with pytest.raises(ValueError, match=r"wvs\.csv: data row 2 \(line 3\), column Q1"):
        load_wvs_csv(path, CATALOG)


# ------------------------------------------------------------------------------ metric: the item's scale


@pytest.fixture(scope="module")
def wm():
    return alignment_math()


@pytest.mark.parametrize("answers, gold, n_opts, first, fragment", [
    ([7], [6], [4], None, "row 0: prediction (answer) code 7 is outside the scale"),  # both off a 4-point scale
    ([1], [9], [4], None, "apart"),
    ([2, 5], [1, None], [4, 4], None, "row 1: prediction (answer) code 5"),  # refused even without gold
    ([0], [1], [4], [1], "row 0: prediction (answer) code 0 is outside the scale of an item with 4 options: "
                         "its codes are 1..4"),
    ([1], [4], [4], [0], "row 0: reference (gold) code 4"),
    ([10**400], [1], [4], None, "row 0: prediction 1000"),
    ([1], [1], [10**12], None, "row 0: num_options"),
    ([1.5], [1], [4], None, "row 0: prediction must be an integer code"),
    ([True], [1], [4], None, "row 0: prediction must be an integer code"),
    ([1], [1], [4], [1, 1], "first_code"),
])
def test_alignment_score_refuses_codes_off_the_items_scale(wm, answers, gold, n_opts, first, fragment):
    args = (answers, gold, n_opts) if first is None else (answers, gold, n_opts, first)
    with pytest.raises(ValueError) as err:
        wm.alignment_score(*args)
    assert fragment in str(err.value)


def test_alignment_score_with_first_codes_through_evaluate(wm):
    from culture_align.metric import load_alignment_metric

    metric = load_alignment_metric("alignment_score", keep_in_memory=True)
    args = dict(predictions=[0, 4, None], references=[2, 1, 1], num_options=[3, 4, 4])
    expected = 100 * (1 - math.sqrt(4 + 9) / math.sqrt(4 + 9))
    assert metric.compute(**args, first_code=[0, 1, 1]) == wm.alignment_score(*args.values(), [0, 1, 1])
    assert metric.compute(**args, first_code=[0, 1, 1])["alignment_score"] == pytest.approx(expected)
    assert metric.compute(**args)["n_scored"] == 2  # first_code stays optional
    with pytest.raises(ValueError, match="row 0: prediction \\(answer\\) code 0"):
        metric.compute(**args, first_code=[1, 1, 1])
    metric.add_batch(predictions=[1, 2], references=[2, 2], num_options=[4, 4])
    metric.add(prediction=0, reference=0, num_options=2, first_code=0)
    assert metric.compute()["n_scored"] == 3
    with pytest.raises(ValueError, match="first_code belongs to the 'alignment_score'"):
        load_alignment_metric(keep_in_memory=True).compute(predictions=[[1, 1]], references=[[1, 1]],
                                                           first_code=[1])


def test_library_callers_pass_each_items_first_code():
    """The library knows each item's codes (the evaluator and the culture similarity table pass the lowest):
    a code off the scale is refused, not scored."""
    from culture_align.recipes.culturespa.similarity import culture_similarity
    from culture_align.wvs import WVSData

    shifted = SurveyQuestion("Q1", "Family?", FOUR, (2, 3, 4, 6))  # not a scale of 4 consecutive codes
    data = WVSData({"Q1": shifted}, {"USA": {"Q1": np.array([0, 0, 0, 1.0])},
                                     "DEU": {"Q1": np.array([0, 0, 1.0, 0])}})
    with pytest.raises(ValueError, match="code 6 is outside the scale .* its codes are 2..5"):
        culture_similarity(data)
    good = WVSData({"Q1": CATALOG["Q1"]}, {"USA": {"Q1": np.array([0, 0, 0, 1.0])},
                                           "DEU": {"Q1": np.array([1.0, 0, 0, 0])}})
    assert culture_similarity(good)["USA"]["DEU"] == pytest.approx(0.0)


# ------------------------------------------------------------------------------------ property strategies

_HUGE = [10**12, 10**19, 10**30, 10**400, -(10**400)]
_numbers = st.one_of(
    st.integers(-3, 6), st.sampled_from(_HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 0.5, 1.0, 2.0, 1.5, 1e300, 1.7976931348623157e308]),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=4))
_COUNTRIES = ["USA", "usa", "United States", "DEU", "Germany", "NGA", "Narnia", ""]
_QIDS = ["Q1", "Q94", "Q999", ""]
_CODES = ["0", "1", "2", "3", "4", "5", "-1", "1.5", " 2", "+3", "x", "10000000000000", "٣"]
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_COUNTRIES + _QIDS + _CODES), inner, max_size=3)),
    max_leaves=12)
_cell = st.one_of(st.dictionaries(st.sampled_from(_CODES), st.one_of(_numbers, _json), max_size=4), _json)
_share = st.one_of(st.floats(0, 1.7976931348623157e308), st.integers(0, 10**30),
                   st.sampled_from([0, 5e-324, 1e-300, 1e300, 1e308]))
_plausible = st.dictionaries(  # mostly loadable: known cultures, and codes on each item's scale
    st.sampled_from(["USA", "DEU", "Nigeria"]), st.fixed_dictionaries({}, optional={
        "Q1": st.dictionaries(st.sampled_from(["1", "2", "3", "4"]), _share, min_size=1, max_size=4),
        "Q94": st.dictionaries(st.sampled_from(["0", "1", "2"]), _share, max_size=3),
        "Q999": st.just({"1": 1})}),
    min_size=1, max_size=3)
_document = st.one_of(
    _plausible, _json, st.dictionaries(st.sampled_from(_COUNTRIES), st.one_of(
        st.dictionaries(st.sampled_from(_QIDS), _cell, max_size=3), _json), max_size=3))


def _expected_cell(cell: dict[str, Any], question: SurveyQuestion) -> np.ndarray:
    """The exact normalised distribution of a cell that loaded (its keys are codes, its values numbers)."""
    shares = [Fraction(0)] * question.num_options
    for key, value in cell.items():
        shares[question.index_of(int(key))] = Fraction(value)
    total = sum(shares)
    return np.array([float(s / total) for s in shares])


# ------------------------------------------------------------------------------------------- properties


@PROPERTY
@given(_document)
def test_prop_any_json_document_is_refused_naming_the_file_or_loaded_exactly(document):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.json"
        path.write_text(json.dumps(document))
        data = _attempt(lambda: load_distributions(path, CATALOG), path)
    if data is None:
        return
    loaded = 0
    for country, cells in document.items():
        iso3 = get_culture(country).iso3
        for qid, cell in cells.items():
            if qid in CATALOG and cell:
                np.testing.assert_allclose(data.distributions[iso3][qid], _expected_cell(cell, CATALOG[qid]),
                                           rtol=1e-9, atol=1e-300)
                loaded += 1
    assert loaded == sum(len(cells) for cells in data.distributions.values())


_pairs = st.lists(st.tuples(st.sampled_from(["USA", "DEU", "NGA"]), st.lists(
    st.tuples(st.sampled_from(["1", "2", "3", "4"]), st.floats(0.01, 1.0)), min_size=1, max_size=4)),
    min_size=1, max_size=4)


@PROPERTY
@given(_pairs)
def test_prop_repeated_keys_are_refused_naming_the_key(pairs):
    text = _json_object([(country, _json_object([("Q1", _json_object(cell))])) for country, cell in pairs])
    repeated = [country for i, (country, _) in enumerate(pairs) if country in [c for c, _ in pairs[:i]]]
    repeated += [code for _, cell in pairs for i, (code, _) in enumerate(cell) if code in [c for c, _ in cell[:i]]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dups.json"
        path.write_text(text)
        try:
            data = load_distributions(path, CATALOG)
        except ValueError as err:
            event("refused")
            assert "dups.json" in str(err) and "appears twice" in str(err)
            assert any(repr(key) in str(err) for key in repeated), str(err)
            return
    assert not repeated
    for country, cell in pairs:
        np.testing.assert_allclose(data.distribution(country, "Q1"), _expected_cell(dict(cell), CATALOG["Q1"]))


_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]
_word = st.text(alphabet="abcXYZ é ôüßñÅÖ", min_size=1, max_size=12).filter(lambda t: t.strip() == t and t)


def _write_questions(path: Path, text: str, encoding: str) -> Callable[[], str]:
    path.write_bytes(json.dumps([{"qid": "Q1", "text": text, "options": ["a", "b"]}],
                                ensure_ascii=False).encode(encoding))
    return lambda: load_questions(path)["Q1"].text


def _write_goqa(path: Path, text: str, encoding: str) -> Callable[[], str]:
    row = {"question": text, "options": ["a", "b"], "selections": {"Germany": [1, 1]}, "source": "WVS"}
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode(encoding))
    return lambda: next(iter(load_global_opinions(path).questions.values())).text


def _write_task(path: Path, text: str, encoding: str) -> Callable[[], str]:
    path.write_bytes(f"text,label\n{text},OFF\n".encode(encoding))
    return lambda: read_task_examples(path, LABELS)["text"][0]


_READERS = {"questions.json": _write_questions, "goqa.jsonl": _write_goqa, "task.csv": _write_task}


@PROPERTY
@given(st.sampled_from(sorted(_READERS)), _word, st.sampled_from(_ENCODINGS))
def test_prop_a_file_in_any_encoding_is_read_exactly_or_refused_naming_the_file(name, text, encoding):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        read = _READERS[name](path, text, encoding)
        got = _attempt(read, path)
    same_bytes = text.encode(encoding).removeprefix(b"\xef\xbb\xbf") == text.encode("utf-8")
    if encoding in ("utf-8", "utf-8-sig") or (encoding in ("latin-1", "cp1252") and same_bytes):
        assert got == text  # UTF-8 (with or without its byte order mark), or ASCII: read exactly
    else:
        assert got is None  # UTF-16/32, or Latin-1 text with accents: refused, never misread


_raw_codes = st.one_of(
    st.lists(st.one_of(st.integers(0, MAX_CODE), st.integers(0, 9).map(float), st.integers(0, 99).map(str)),
             min_size=2, max_size=4),  # integers in every accepted spelling (a repeat is refused)
    st.lists(st.one_of(_scalars, st.integers(-(10**7), 10**7), st.sampled_from(["7", "-2", "1e2"])),
             min_size=2, max_size=4))


@PROPERTY
@given(_raw_codes)
def test_prop_question_codes_are_exact_integers_or_refused(codes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "codes.json"
        path.write_text(json.dumps([{"qid": "Q1", "text": "Family?", "options": ["o"] * len(codes),
                                     "codes": codes}]))
        questions = _attempt(lambda: load_questions(path), path)
    if questions is None:
        return
    loaded = questions["Q1"].codes
    assert len(set(loaded)) == len(loaded) == len(codes)
    for raw, code in zip(codes, loaded):
        assert not isinstance(raw, bool) and 0 <= code <= MAX_CODE
        assert Fraction(raw.strip() if isinstance(raw, str) else raw) == code  # never truncated or rounded


_cells = st.one_of(st.integers(-5, 6).map(str), st.sampled_from(
    ["", "NA", "1.5", "1e3", "x", " 2", "+3", "٣", "10000000000000", "99999999999999999999", "2\n3", "-0",
     "1,2", '"4"']))
_answer_cells = st.one_of(st.lists(st.sampled_from(["1", "2", "3", "4", "-1", "-5", ""]), min_size=1, max_size=6),
                          st.lists(_cells, min_size=1, max_size=6))


def _csv_oracle(cells: list[str], question: SurveyQuestion) -> np.ndarray | None:
    """The Q1 distribution of rows with these cells (all weights 1), or None when every answer is missing."""
    counts = np.zeros(question.num_options)
    for cell in cells:
        if cell.strip() in ("", "NA"):
            continue
        code = int(cell)  # a file that loaded has integer cells only
        if code >= 0:
            counts[question.index_of(code)] += 1
    return counts / counts.sum() if counts.sum() else None


@PROPERTY
@given(_answer_cells)
def test_prop_wvs_csv_answers_are_counted_exactly_or_refused_naming_the_file(cells):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["B_COUNTRY_ALPHA", "W_WEIGHT", "Q1"])
            writer.writerows(["USA", "1", cell] for cell in cells)
        data = _attempt(lambda: load_wvs_csv(path, CATALOG), path)
    if data is None:
        return
    np.testing.assert_allclose(data.distribution("USA", "Q1"), _csv_oracle(cells, CATALOG["Q1"]))


_names = st.sampled_from(["Germany", "DEU", "deu", "Nigeria", "NGA", "Narnia"])
_selections = st.lists(st.tuples(_names, st.tuples(st.integers(0, 3), st.integers(0, 3))), min_size=1, max_size=4)


@PROPERTY
@given(_selections, st.sampled_from(["goqa.csv", "goqa.jsonl"]))
def test_prop_goqa_selections_name_each_culture_once_or_are_refused(selections, name):
    literal = "{" + ", ".join(f"{country!r}: {list(shares)}" for country, shares in selections) + "}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if name.endswith(".csv"):
            _goqa_csv(path, literal)
        else:
            row = _json_object([("question", "Is family important?"), ("options", ["Yes", "No"]),
                                ("selections", _json_object([(c, list(s)) for c, s in selections])),
                                ("source", "WVS")])
            path.write_text(row + "\n")
        data = _attempt(lambda: load_global_opinions(path), path)
    known = [(c, s) for c, s in selections if c != "Narnia"]
    cultures = [get_culture(c).iso3 for c, _ in known]
    if data is None:  # a name or a culture twice, or nothing to load
        names = [c for c, _ in selections]
        assert len(set(names)) < len(names) or len(set(cultures)) < len(cultures) or not any(sum(s) for _, s in known)
        return
    assert len(set(cultures)) == len(cultures)  # a culture named twice is never loaded
    for country, shares in known:
        got = data.distribution(country, next(iter(data.questions)))
        if sum(shares):
            np.testing.assert_allclose(got, np.array(shares) / sum(shares))
        else:
            assert got is None


_metric_codes = st.one_of(st.none(), st.integers(-2, 8), st.sampled_from(
    [10**7, 10**400, -(10**400), 2.0, 1.5, float("nan"), float("inf"), True, "1"]))


def _code_or_error(value: Any) -> int | None:
    """The metric's reading of one code: an int (-1 = missing), or None when it must be refused."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, (bool, str)) or (isinstance(value, float) and not value.is_integer()):
        return None
    code = int(value)
    return None if code > 10**6 else max(code, -1)


def _metric_oracle(answers, gold, n_opts, firsts) -> tuple[float, int] | None:
    """(score, n_scored) by the metric's definition, or None when an input must be refused."""
    num = den = scored = 0
    for a_raw, g_raw, n_raw, f_raw in zip(answers, gold, n_opts, firsts):
        a, g, n, first = (_code_or_error(v) for v in (a_raw, g_raw, n_raw, f_raw))
        if None in (a, g, n, first) or n < 2:
            return None
        low, high = (first, first + n - 1) if first >= 0 else (0, n)
        if any(c >= 0 and not low <= c <= high for c in (a, g)) or (a >= 0 and g >= 0 and abs(a - g) > n - 1):
            return None
        if a >= 0 and g >= 0:
            num, den, scored = num + (a - g) ** 2, den + (n - 1) ** 2, scored + 1
    return (100 * (1 - math.sqrt(num) / math.sqrt(den)) if scored else math.nan), scored


_on_scale = st.tuples(st.integers(2, 5), st.sampled_from([None, 0, 1, 3])).flatmap(lambda nf: st.tuples(
    st.one_of(st.none(), st.integers(nf[1] or 0, (nf[1] or 0) + nf[0] - 1)),
    st.one_of(st.none(), st.integers(nf[1] or 0, (nf[1] or 0) + nf[0] - 1)), st.just(nf[0]), st.just(nf[1])))
_hostile_row = st.tuples(_metric_codes, _metric_codes, st.one_of(st.integers(2, 5), _metric_codes),
                         st.one_of(st.sampled_from([None, -1, 0, 1, 3]), _metric_codes))
_metric_rows = st.one_of(st.lists(_on_scale, min_size=1, max_size=5),
                         st.lists(st.one_of(_on_scale, _hostile_row), min_size=1, max_size=5))


@PROPERTY
@given(_metric_rows.map(lambda rows: tuple(list(column) for column in zip(*rows))))
def test_prop_alignment_score_is_exact_or_refuses_naming_the_row(wm, case):
    answers, gold, n_opts, firsts = case
    expected = _metric_oracle(answers, gold, n_opts, firsts)
    try:
        out = wm.alignment_score(answers, gold, n_opts, firsts)
    except ValueError as err:
        assert expected is None and "row " in str(err), (str(err), expected)
        event("refused")
        return
    event("scored" if out["n_scored"] else "nothing scored")
    assert expected is not None, out
    score, scored = expected
    assert out["n_scored"] == scored
    assert (math.isnan(out["alignment_score"]) and math.isnan(score)) or out["alignment_score"] == pytest.approx(score)


# ----------------------------------------------------------------------------- the reading layer itself


@PROPERTY
@given(_json)
def test_prop_parse_json_agrees_with_json_or_refuses_naming_the_source(value):
    text = json.dumps(value)
    assert parse_json(text, "any.json") == json.loads(text)  # generated dicts never repeat a key
    with pytest.raises(ValueError, match=r"^any\.json: invalid JSON"):
        parse_json(text + " ]", "any.json")


def test_the_reading_layer_refuses_deep_nesting_and_huge_integers_naming_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json: the JSON is nested too deeply"):
        load_questions(deep)
    digits = tmp_path / "digits.jsonl"
    digits.write_text('{"a": 1}\n{"b": ' + "9" * 5000 + "}\n")
    with pytest.raises(ValueError, match=r"digits\.jsonl, line 2: cannot read the JSON"):
        read_json_lines(digits)
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"text": "a\u2028b"}\r\n\n{"text": "c"}\n')  # U+2028 inside a string is not a line break
    assert read_json_lines(lines) == [(1, {"text": "a\u2028b"}), (3, {"text": "c"})]
    table = tmp_path / "t.csv"
    table.write_text('a,b\n1,"x\ny"\n\n2\n')
    assert read_csv(table) == (["a", "b"], [(3, {"a": "1", "b": "x\ny"}), (5, {"a": "2", "b": None})])
    not_parquet = tmp_path / "rows.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(ValueError, match=r"rows\.parquet: cannot read the Parquet file"):
        load_global_opinions(not_parquet)
