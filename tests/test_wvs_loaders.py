"""Loaders: question lists, distribution files, the respondent-level WVS CSV, GlobalOpinionQA, dispatch.

Every file here is made up in ``tmp_path``; no real survey figures are used.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from culture_align.wvs import (
    TOPICS,
    SurveyQuestion,
    WVSData,
    bundled_questions,
    describe_persona,
    load_distributions,
    load_global_opinions,
    load_questions,
    load_wvs,
    load_wvs_csv,
    sample_personas,
    topic_of,
    wvs_codes_for,
)

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)
FOUR = ["Very important", "Rather important", "Not very important", "Not at all important"]
MEMBER = ["Not a member", "Inactive member", "Active member"]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def catalog() -> dict[str, SurveyQuestion]:
    return {
        "Q1": SurveyQuestion("Q1", "How important is family?", tuple(FOUR), (1, 2, 3, 4)),
        "Q94": SurveyQuestion("Q94", "Member of a religious group?", tuple(MEMBER), (0, 1, 2)),
        "Q46": SurveyQuestion("Q46", "How happy are you?", ("Very", "Rather", "Not very", "Not at all"),
                              (1, 2, 3, 4)),
    }


# ------------------------------------------------------------------------------------------- questions


def test_load_questions_wvs_shape(tmp_path):
    path = _write(tmp_path / "q.json", [
        {"Q_id": "Q1", "question": "Family?", "option_lst": FOUR},
        {"Q_id": "Q94", "question": "Member?", "option_lst": MEMBER},
        {"Q_id": "Q262", "question": "Age?", "option_lst": []},
    ])
    questions = load_questions(path)
    assert list(questions) == ["Q1", "Q94"]
    assert questions["Q1"].codes == (1, 2, 3, 4) and questions["Q1"].options == tuple(FOUR)
    assert questions["Q94"].codes == (0, 1, 2)
    assert questions["Q1"].topic == "social_values" and questions["Q94"].topic == "social_capital"


def test_load_questions_own_shape(tmp_path):
    path = _write(tmp_path / "q.json", [
        {"qid": "Q94", "text": "Member?", "options": MEMBER, "codes": [0, 1, 2], "topic": "custom"},
        {"qid": "Q1", "text": "Family?", "options": FOUR},
        {"qid": "gen-x-1", "text": "Tea or coffee?", "options": ["Tea", "Coffee"], "codes": [1, 2]},
    ])
    questions = load_questions(path)
    assert questions["Q94"].topic == "custom" and questions["Q94"].codes == (0, 1, 2)
    assert questions["Q1"].codes == (1, 2, 3, 4) and questions["Q1"].topic == "social_values"
    assert questions["gen-x-1"].topic == ""


@pytest.mark.parametrize("content, match", [
    ('[{"Q_id": "Q1", "question": "x", "option_lst": ["a", "b"]}, {"Q_id": "Q1", "question": "y", '
     '"option_lst": ["a", "b"]}]', "twice"),
    ('[{"id": "Q1"}]', "item 0"),
    ('[{"qid": "Q1", "text": "x", "options": ["a", "b"], "codes": [1]}]', "Q1"),
    ('[{"Q_id": "Q1", "question": "x", "option_lst": ["a", "b"]},\n  oops]', "line 2"),
    ('{"Q1": "x"}', "list"),
])
def test_load_questions_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad_questions.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        load_questions(path)
    assert "bad_questions.json" in str(err.value)


# --------------------------------------------------------------------------------------- bundled catalog


def test_bundled_catalog_covers_all_topics():
    questions = bundled_questions()
    assert len(questions) >= 36
    per_topic = {t.id: 0 for t in TOPICS}
    for q in questions.values():
        per_topic[q.topic] += 1
    assert all(n >= 2 for n in per_topic.values()), per_topic
    assert per_topic["social_values"] >= 4 and per_topic["ethics_norms"] >= 4


def test_bundled_catalog_is_consistent_with_wvs_coding():
    for qid, q in bundled_questions().items():
        assert q.codes == wvs_codes_for(qid, q.num_options), qid
        assert q.topic == topic_of(qid), qid
        assert len(set(q.options)) == q.num_options, qid
        if q.num_options == 10:
            assert q.is_numeric_scale, qid
            assert "scale from 1" in q.text and "10" in q.text, qid


def test_bundled_catalog_holds_questions_only():
    raw = json.loads((Path(__file__).parents[1] / "culture_align" / "data" / "wvs_catalog.json").read_text())
    assert all(set(item) == {"qid", "text", "options", "codes", "topic"} for item in raw)
    assert bundled_questions() is not bundled_questions()  # a fresh dict each time


# --------------------------------------------------------------------------------------- distributions


def test_load_distributions_renormalises_and_skips(tmp_path, catalog, caplog):
    path = _write(tmp_path / "dist.json", {
        "USA": {"Q1": {"2": 0.2, "1": 0.2}, "Q94": {}},
        "deu": {"Q1": {"4": 3}, "Q94": {"0": 1, "2": 1}, "Q999": {"1": 1.0}},
    })
    with caplog.at_level(logging.WARNING):
        data = load_distributions(path, catalog)
    assert isinstance(data, WVSData) and data.source == str(path)
    assert data.cultures == ["USA", "DEU"]
    np.testing.assert_allclose(data.distribution("USA", "Q1"), [0.5, 0.5, 0, 0])
    assert data.distribution("USA", "Q94") is None  # empty cell: skipped, not uniform
    np.testing.assert_allclose(data.distribution("DEU", "Q1"), [0, 0, 0, 1])
    np.testing.assert_allclose(data.distribution("DEU", "Q94"), [0.5, 0, 0.5])
    assert list(data.questions) == ["Q1", "Q94"]  # Q46 has no data anywhere
    assert data.counts == {}
    assert "1 item ids" in caplog.text and "Q999" in caplog.text


def test_load_distributions_reads_counts_sidecar(tmp_path, catalog):
    path = _write(tmp_path / "d.json", {"USA": {"Q1": {"1": 0.5, "2": 0.5}, "Q94": {}}})
    _write(tmp_path / "d.counts.json", {"USA": {"n_respondents": 10, "n_valid": {"Q1": 8, "Q94": 0}}})
    data = load_distributions(path, catalog)
    assert data.counts == {"USA": {"Q1": 8}}
    _write(tmp_path / "d.counts.json", {"USA": {"Q1": 7}})
    assert load_distributions(path, catalog).counts == {"USA": {"Q1": 7}}
    _write(tmp_path / "d.counts.json", {"USA": {"Q1": -1}})
    with pytest.raises(ValueError, match="USA/Q1") as err:
        load_distributions(path, catalog)
    assert "d.counts.json" in str(err.value)


def test_load_distributions_accepts_a_question_file(tmp_path):
    questions = _write(tmp_path / "q.json", [{"Q_id": "Q1", "question": "Family?", "option_lst": FOUR}])
    path = _write(tmp_path / "d.json", {"NLD": {"Q1": {"1": 1}}})
    assert load_distributions(path, questions).modal_code("NLD", "Q1") == 1


@pytest.mark.parametrize("content, keys", [
    ('{"USB": {"Q1": {"1": 1}}}', ["USB", "USA"]),
    ('{"USA": {"Q1": {"9": 1}}}', ["USA/Q1/code 9"]),
    ('{"USA": {"Q1": {"x": 1}}}', ["USA/Q1/code x"]),
    ('{"USA": {"Q1": {"1": -0.1, "2": 1}}}', ["USA/Q1/code 1"]),
    ('{"USA": {"Q1": {"1": NaN, "2": 1}}}', ["USA/Q1/code 1"]),
    ('{"USA": {"Q1": {"1": Infinity}}}', ["USA/Q1/code 1"]),
    ('{"USA": {"Q1": {"1": "0.5"}}}', ["USA/Q1/code 1"]),
    ('{"USA": {"Q1": {"1": 0, "2": 0}}}', ["USA/Q1", "sum to 0"]),
    ('{"USA": {"Q1": [0.5, 0.5]}}', ["USA/Q1"]),
    ('{"USA": ["Q1"]}', ["USA"]),
    ('{"USA": {"Q1": {"1": 0.5,}}}', ["line 1", "column"]),
    ('[]', ["object"]),
])
def test_load_distributions_errors_name_file_and_key(tmp_path, catalog, content, keys):
    path = tmp_path / "broken_dist.json"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        load_distributions(path, catalog)
    message = str(err.value)
    assert "broken_dist.json" in message
    for key in keys:
        assert key in message


@pytest.mark.parametrize("cell", ['{"1": 1e308, "2": 1e308}', '{"1": 1.7e308, "2": 1e-300, "3": 1.7e308}',
                                  '{"1": 1' + "0" * 400 + ', "2": 1}'])
def test_proportions_that_overflow_their_sum_are_refused_naming_file_and_key(tmp_path, catalog, cell):
    path = tmp_path / "huge.json"
    path.write_text('{"USA": {"Q46": {"1": 0.5, "2": 0.5}}, "CHN": {"Q1": ' + cell + "}}")
    with pytest.raises(ValueError, match=r"huge\.json: CHN/Q1") as err:
        load_distributions(path, catalog)
    assert "overflow" in str(err.value) or "finite number" in str(err.value)


_share = st.one_of(st.floats(min_value=0, max_value=1.7976931348623157e308, allow_nan=False),
                   st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 1.0, 1e300, 1e308, 1.7976931348623157e308]))


@PROPERTY
@given(st.lists(_share, min_size=4, max_size=4))
def test_prop_a_distribution_cell_is_refused_naming_its_key_or_exactly_normalised(shares):
    """Any non-negative finite shares, huge or tiny: a clear error naming the file and key, or the exact
    distribution (never all zeros or NaN)."""
    catalog = {"Q1": SurveyQuestion("Q1", "How important is family?", tuple(FOUR), (1, 2, 3, 4))}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prop.json"
        path.write_text(json.dumps({"USA": {"Q1": {str(c): s for c, s in zip((1, 2, 3, 4), shares)}}}))
        exact = [Fraction(s) for s in shares]
        try:
            data = load_distributions(path, catalog)
        except ValueError as err:
            assert "prop.json: USA/Q1" in str(err)
            assert sum(exact) == 0 or sum(exact) > Fraction(1e308)  # refused only when all 0 or overflowing
            return
    probs = data.distribution("USA", "Q1")
    assert np.all(np.isfinite(probs)) and abs(probs.sum() - 1) < 1e-9
    np.testing.assert_allclose(probs, [float(x / sum(exact)) for x in exact], rtol=1e-9, atol=1e-300)


def test_wvs_data_validate_names_the_cell():
    question = SurveyQuestion("Q1", "How important is family?", tuple(FOUR), (1, 2, 3, 4))
    for row in ([0.0, 0.0, 0.0, 0.0], [np.nan, 0.5, 0.5, 0.0], [0.5, 0.5], [2.0, -1.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="somewhere.json: USA/Q1"):
            WVSData({"Q1": question}, {"USA": {"Q1": np.array(row)}}, source="somewhere.json").validate()
    with pytest.raises(ValueError, match="somewhere.json: USA/Q1: the count"):
        WVSData({"Q1": question}, {"USA": {"Q1": np.full(4, 0.25)}}, counts={"USA": {"Q1": float("inf")}},
                source="somewhere.json").validate()


# ------------------------------------------------------------------------------------------ WVS-7 CSV

HEADER = ["B_COUNTRY_ALPHA", "W_WEIGHT", "Q1", "Q94", "Q223", "Q260", "Q262", "Q263", "Q270", "Q273", "Q275",
          "Q279", "Q281", "Q287"]
ROWS = [
    ["USA", "2.0", "1", "0", "1", "2", "34", "1", "3", "1", "6", "1", "3", "3"],
    ["USA", "1.0", "2", "-1", "2", "-1", "-2", "-1", "-1", "-1", "-1", "-1", "-1", "-1"],
    ["USA", "1.0", "-2", "2", "1", "1", "18", "2", "1", "6", "0", "6", "0", "4"],
    ["USA", "0.5", "1", "2", "1", "", "", "", "", "", "", "", "", ""],
    ["DEU", "1.0", "4", "1", "1", "1", "70", "1", "2", "5", "3", "4", "8", "2"],
    ["DEU", "3.0", "3", "", "1", "2", "45", "1", "4", "2", "7", "3", "1", "2"],
    ["AND", "1.0", "1", "1", "1", "1", "50", "1", "2", "1", "3", "1", "3", "3"],
]


def _csv(path: Path, header=HEADER, rows=ROWS, delimiter=",") -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_wvs_csv_weighted_distributions(tmp_path, catalog, caplog):
    path = _csv(tmp_path / "wvs.csv")
    with caplog.at_level(logging.WARNING):
        data = load_wvs_csv(path, catalog)
    assert data.source == str(path)
    assert data.cultures == ["USA", "DEU"]
    assert "AND" in caplog.text  # an unregistered country: skipped with a warning
    assert list(data.questions) == ["Q1", "Q94"]  # Q46 has no column; Q223 is never an item
    # USA Q1: code 1 weighs 2.0 + 0.5, code 2 weighs 1.0; the -2 answer is missing.
    np.testing.assert_allclose(data.distribution("USA", "Q1"), [2.5 / 3.5, 1 / 3.5, 0, 0])
    np.testing.assert_allclose(data.distribution("USA", "Q94"), [2 / 3.5, 0, 1.5 / 3.5])
    np.testing.assert_allclose(data.distribution("DEU", "Q1"), [0, 0, 0.75, 0.25])
    np.testing.assert_allclose(data.distribution("DEU", "Q94"), [0, 1, 0])  # the empty cell is missing
    assert data.counts == {"USA": {"Q1": 3, "Q94": 3}, "DEU": {"Q1": 2, "Q94": 1}}


def test_wvs_csv_unweighted(tmp_path, catalog):
    path = _csv(tmp_path / "wvs.csv")
    for data in (load_wvs_csv(path, catalog, weight_column=None),
                 load_wvs_csv(_csv(tmp_path / "no_weight.csv",
                                   [h for h in HEADER if h != "W_WEIGHT"],
                                   [r[:1] + r[2:] for r in ROWS]), catalog)):
        np.testing.assert_allclose(data.distribution("USA", "Q1"), [2 / 3, 1 / 3, 0, 0])
        np.testing.assert_allclose(data.distribution("DEU", "Q1"), [0, 0, 0.5, 0.5])


def test_wvs_csv_semicolons_and_culture_filter(tmp_path, catalog):
    path = _csv(tmp_path / "semi.csv", delimiter=";")
    data = load_wvs_csv(path, catalog, cultures="deu")
    assert data.cultures == ["DEU"] and set(data.personas["culture"]) == {"DEU"}


def test_wvs_csv_personas(tmp_path, catalog):
    data = load_wvs_csv(_csv(tmp_path / "wvs.csv"), catalog)
    personas = data.personas
    assert len(personas) == 6
    first, second, third = personas[0], personas[1], personas[2]
    assert first["respondent_id"] == "USA-1" and personas[4]["respondent_id"] == "DEU-5"
    assert first["sex"] == "female" and first["age"] == "34" and first["household_size"] == "3"
    assert first["born_in_country"] == "born in this country" and first["marital_status"] == "married"
    assert first["education"] == "bachelor or equivalent" and first["employment"] == "full time"
    assert first["profession"] == "clerical" and first["social_class"] == "lower middle class"
    assert first["answers"] == {"Q1": 1, "Q94": 0}
    assert all(second[f] is None for f in ("sex", "age", "education", "social_class"))
    assert second["answers"] == {"Q1": 2, "Q94": None}
    assert third["education"] == "early childhood education or no education"
    assert third["profession"] == "never had a job" and third["born_in_country"] == "immigrant"
    assert personas[3]["sex"] is None  # empty cells are missing
    text = describe_persona(first)
    assert text.startswith("You are a 34-year-old woman from the United States.")
    assert "You live in a household of 3 people." in text


def test_wvs_csv_interview_ids(tmp_path, catalog):
    header = HEADER + ["D_INTERVIEW"]
    rows = [r + [str(840000 + i)] for i, r in enumerate(ROWS)]
    data = load_wvs_csv(_csv(tmp_path / "ids.csv", header, rows), catalog)
    assert data.personas["respondent_id"][:2] == ["840000", "840001"]


def test_wvs_csv_persona_sampling_is_reproducible(tmp_path, catalog):
    rows = [["USA", "1", str(1 + i % 4), str(i % 3)] + ["-1"] * 10 for i in range(40)]
    rows += [["DEU", "1", "1", "1"] + ["-1"] * 10 for _ in range(3)]
    path = _csv(tmp_path / "many.csv", rows=rows)
    full = load_wvs_csv(path, catalog)
    first = load_wvs_csv(path, catalog, max_personas_per_culture=5, seed=3)
    again = load_wvs_csv(path, catalog, max_personas_per_culture=5, seed=3)
    other = load_wvs_csv(path, catalog, max_personas_per_culture=5, seed=4)
    assert first.personas["respondent_id"] == again.personas["respondent_id"]
    assert first.personas["respondent_id"] != other.personas["respondent_id"]
    assert first.personas["culture"].count("USA") == 5 and first.personas["culture"].count("DEU") == 3
    usa = [r for r, c in zip(first.personas["respondent_id"], first.personas["culture"]) if c == "USA"]
    assert usa == sample_personas(full.personas, "USA", 5, seed=3)["respondent_id"]
    # distributions always use every respondent
    np.testing.assert_allclose(first.distribution("USA", "Q1"), full.distribution("USA", "Q1"))
    assert first.counts["USA"]["Q1"] == 40


@pytest.mark.parametrize("row, value", [(3, "7"), (2, "0"), (5, "x"), (1, "1.5")])
def test_wvs_csv_bad_code_names_row_and_column(tmp_path, catalog, row, value):
    rows = [list(r) for r in ROWS]
    rows[row - 1][2] = value
    path = _csv(tmp_path / "bad_code.csv", rows=rows)
    with pytest.raises(ValueError) as err:
        load_wvs_csv(path, catalog)
    message = str(err.value)
    assert "bad_code.csv" in message and f"data row {row}" in message and "column Q1" in message


def test_wvs_csv_bad_weight_and_missing_columns(tmp_path, catalog):
    rows = [list(r) for r in ROWS]
    rows[1][1] = "-1"
    with pytest.raises(ValueError, match="data row 2.*W_WEIGHT"):
        load_wvs_csv(_csv(tmp_path / "w.csv", rows=rows), catalog)
    header = ["COUNTRY"] + HEADER[1:]
    with pytest.raises(ValueError, match="B_COUNTRY_ALPHA") as err:
        load_wvs_csv(_csv(tmp_path / "nocountry.csv", header), catalog)
    assert "nocountry.csv" in str(err.value)
    assert load_wvs_csv(_csv(tmp_path / "alt.csv", header), catalog, country_column="COUNTRY").cultures
    with pytest.raises(ValueError, match="none of the"):
        load_wvs_csv(_csv(tmp_path / "noitems.csv"), {"Q46": catalog["Q46"]})


def test_wvs_csv_weights_that_overflow_the_sum_are_refused(tmp_path, catalog):
    rows = [list(r) for r in ROWS]
    for row in rows:
        if row[0] == "DEU":
            row[1] = "1.5e308"
    message = r"huge_weights\.csv: DEU/Q1: the answers weighted by column W_WEIGHT sum to inf"
    with pytest.raises(ValueError, match=message):
        load_wvs_csv(_csv(tmp_path / "huge_weights.csv", rows=rows), catalog)


def test_wvs_csv_defaults_to_bundled_catalog(tmp_path):
    data = load_wvs_csv(_csv(tmp_path / "wvs.csv"))
    assert list(data.questions) == ["Q1", "Q94"]
    assert data.questions["Q1"].text == bundled_questions()["Q1"].text


# ------------------------------------------------------------------------------------ GlobalOpinionQA

def _goqa_rows():
    return [
        {"question": "Is family important to you?", "options": "['Yes', 'No', 'DK/Refused']",
         "selections": "defaultdict(<class 'list'>, {'Nigeria': [0.5, 0.3, 0.2], "
                       "'Great Britain': [0.2, 0.6, 0.0], 'Narnia': [0.3, 0.3, 0.4]})",
         "source": "WVS"},
        {"question": "A Pew question", "options": "['A', 'B']", "selections": "{'Germany': [0.5, 0.5]}",
         "source": "GAS"},
        {"question": "How much trust?", "options": "['A lot', 'Some']", "selections": "{'Germany': [1, 3]}",
         "source": "WVS"},
    ]


def _qid(text: str) -> str:
    return "goqa-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _check_goqa(data: WVSData, path: Path):
    q = _qid("Is family important to you?")
    assert data.source == str(path)
    assert list(data.questions) == [q, _qid("How much trust?")]
    assert data.questions[q].options == ("Yes", "No", "DK/Refused")
    assert data.questions[q].codes == (1, 2, 3) and data.questions[q].topic == ""
    np.testing.assert_allclose(data.distribution("NGA", q), [0.5, 0.3, 0.2])
    np.testing.assert_allclose(data.distribution("GBR", q), [0.25, 0.75, 0])
    np.testing.assert_allclose(data.distribution("DEU", _qid("How much trust?")), [0.25, 0.75])
    assert set(data.cultures) == {"NGA", "GBR", "DEU"}


def test_goqa_parquet(tmp_path, caplog):
    path = tmp_path / "goqa.parquet"
    pq.write_table(pa.Table.from_pylist(_goqa_rows()), path)
    with caplog.at_level(logging.WARNING):
        data = load_global_opinions(path)
    _check_goqa(data, path)
    assert "Narnia" in caplog.text


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_goqa_other_formats(tmp_path, suffix):
    rows = _goqa_rows()
    rows[2]["options"] = ["A lot", "Some"]  # a real list works as well as its string repr
    rows[2]["selections"] = {"Germany": [1, 3]}
    path = tmp_path / f"goqa{suffix}"
    if suffix == ".json":
        _write(path, rows)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        rows = _goqa_rows()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    _check_goqa(load_global_opinions(path), path)


def test_goqa_matches_catalog_items(tmp_path):
    path = tmp_path / "goqa.json"
    _write(path, _goqa_rows())
    catalog = {"Q1": SurveyQuestion("Q1", "is family  important to you?", ("Yes", "No", "Unsure"), (1, 2, 3))}
    data = load_global_opinions(path, catalog)
    assert "Q1" in data.questions and data.questions["Q1"].topic == "social_values"
    np.testing.assert_allclose(data.distribution("NGA", "Q1"), [0.5, 0.3, 0.2])


@pytest.mark.parametrize("field, value, match", [
    ("selections", "__import__('os').system('touch pwned')", "cannot parse selections"),
    ("selections", "defaultdict(<class 'list'>, {'Nigeria': [0.5, 0.5], })) + exit(", "cannot parse"),
    ("options", "__import__('os').getcwd()", "cannot parse options"),
    ("selections", "{'Nigeria': [0.5, 0.5]}", "2 proportions for 3 options"),
    ("selections", "{'Nigeria': [0.5, -0.1, 0.6]}", ">= 0"),
    ("selections", {"Nigeria": [float("nan"), 0.5, 0.5]}, ">= 0"),
    ("selections", "['Nigeria']", "must be a dict"),
])
def test_goqa_errors_name_file_and_row(tmp_path, monkeypatch, field, value, match):
    monkeypatch.chdir(tmp_path)
    rows = _goqa_rows()
    rows[0][field] = value
    path = _write(tmp_path / "bad_goqa.json", rows)
    with pytest.raises(ValueError, match=match) as err:
        load_global_opinions(path)
    assert "bad_goqa.json" in str(err.value) and "row 1" in str(err.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("shares", [[1e308, 1e308, 0.0], [1.7e308, 1.7e308, 1.7e308], [10 ** 400, 1, 1]])
def test_goqa_shares_that_overflow_are_refused_naming_row_item_and_country(tmp_path, shares):
    where = f"row 1 ({_qid('Is family important to you?')}): selections['Nigeria']"
    for path, selections in ((tmp_path / "huge_goqa.json", {"Nigeria": shares}),  # a JSON object
                             (tmp_path / "huge_goqa.csv", repr({"Nigeria": shares}))):  # a Python literal
        rows = _goqa_rows()
        rows[0]["selections"] = selections
        if path.suffix == ".csv":
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            _write(path, rows)
        with pytest.raises(ValueError) as err:
            load_global_opinions(path)
        assert f"{path.name}: {where}" in str(err.value)


def test_a_source_with_nothing_to_load_is_an_error(tmp_path, catalog):
    """A file that yields no distribution at all is refused (a run on it would score nothing)."""
    rows = [r for r in _goqa_rows() if r["source"] != "WVS"]
    with pytest.raises(ValueError, match=r"only_pew\.json: no GlobalOpinionQA data .*no row has the source"):
        load_global_opinions(_write(tmp_path / "only_pew.json", rows))
    rows = _goqa_rows()[:1]
    rows[0]["selections"] = "{'Narnia': [0.3, 0.3, 0.4], 'Nigeria': [0, 0, 0]}"
    with pytest.raises(ValueError, match=r"unusable\.json: .*none of its 1 WVS row"):
        load_global_opinions(_write(tmp_path / "unusable.json", rows))
    with pytest.raises(ValueError, match=r"only_pew\.json: no GlobalOpinionQA data"):
        load_wvs(tmp_path / "only_pew.json")
    for name, content in (("empty.json", {}), ("empty_cells.json", {"USA": {"Q1": {}}, "DEU": {}}),
                          ("other_items.json", {"USA": {"Q999": {"1": 1.0}}})):
        with pytest.raises(ValueError, match=f"{name}: no distribution to load"):
            load_distributions(_write(tmp_path / name, content), catalog)
    unanswered = [r[:2] + ["-1", "-2"] + r[4:] for r in ROWS]
    with pytest.raises(ValueError, match=r"unanswered\.csv: no valid answer .* Q1, Q94"):
        load_wvs_csv(_csv(tmp_path / "unanswered.csv", rows=unanswered), catalog)


def test_goqa_missing_column(tmp_path):
    path = _write(tmp_path / "g.json", [{"question": "x", "options": "['a', 'b']"}])
    with pytest.raises(ValueError, match="row 1.*selections"):
        load_global_opinions(path)


# ------------------------------------------------------------------------------------------- dispatch


def test_load_wvs_folder_and_json(tmp_path, caplog):
    folder = tmp_path / "wvs"
    folder.mkdir()
    _write(folder / "wvs_questions.json", [
        {"Q_id": "Q1", "question": "Family?", "option_lst": FOUR},
        {"Q_id": "Q262", "question": "Age?", "option_lst": []},
    ])
    _write(folder / "proportions_group_by_country.json", {"USA": {"Q1": {"1": 0.6, "2": 0.3}}})
    data = load_wvs(folder)
    np.testing.assert_allclose(data.distribution("USA", "Q1"), [2 / 3, 1 / 3, 0, 0])
    assert data.source.endswith("proportions_group_by_country.json")
    other = _write(folder / "other.json", {"CHN": {"Q1": {"3": 1}}})
    assert load_wvs(other).modal_code("CHN", "Q1") == 3  # questions from wvs_questions.json beside it
    lone = _write(tmp_path / "lone.json", {"CHN": {"Q1": {"3": 1}}})
    with pytest.raises(ValueError, match="questions="):
        load_wvs(lone)
    assert load_wvs(lone, questions=bundled_questions()).modal_code("CHN", "Q1") == 3


def test_load_wvs_dispatches_by_file_type(tmp_path, catalog):
    csv_data = load_wvs(_csv(tmp_path / "wvs.csv"), catalog, max_personas_per_culture=1)
    assert csv_data.personas is not None and len(csv_data.personas) == 2
    parquet = tmp_path / "goqa.parquet"
    pq.write_table(pa.Table.from_pylist(_goqa_rows()), parquet)
    assert set(load_wvs(parquet).cultures) == {"NGA", "GBR", "DEU"}
    goqa_json = _write(tmp_path / "goqa.json", _goqa_rows())
    assert set(load_wvs(goqa_json).cultures) == {"NGA", "GBR", "DEU"}


def test_load_wvs_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_wvs(tmp_path / "nowhere.csv")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_wvs(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="wvs_questions.json"):
        load_wvs(tmp_path)


def test_load_wvs_reads_a_hub_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(repo_id, split, **kwargs):
        calls.append((repo_id, split))
        return datasets.Dataset.from_list(_goqa_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_wvs("hf://someone/global_opinions")
    assert calls == [("someone/global_opinions", "train")]
    assert set(data.cultures) == {"NGA", "GBR", "DEU"} and data.source == "hf://someone/global_opinions[train]"
    load_wvs("hf://datasets/someone/global_opinions")  # the huggingface_hub spelling
    assert calls[-1] == ("someone/global_opinions", "train")
    other = datasets.Dataset.from_dict({"x": [0]})
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id, split: other)
    with pytest.raises(ValueError, match="GlobalOpinionQA"):
        load_wvs("hf://someone/other")


def test_wvs_csv_keeps_unanswered_codes_and_needs_a_culture(tmp_path, catalog):
    rows = [["USA", "1", "1", "0"] + ["-1"] * 10, ["USA", "1", "2", "0"] + ["-1"] * 10]
    data = load_wvs_csv(_csv(tmp_path / "few.csv", rows=rows), catalog)
    np.testing.assert_allclose(data.distribution("USA", "Q1"), [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(data.distribution("USA", "Q94"), [1, 0, 0])
    with pytest.raises(ValueError, match="no rows of a registered culture"):
        load_wvs_csv(_csv(tmp_path / "none.csv", rows=[["AND", "1", "1", "0"] + ["-1"] * 10]), catalog)
    with pytest.raises(ValueError, match="Unknown culture"):
        load_wvs_csv(_csv(tmp_path / "x.csv", rows=rows), catalog, cultures=["XXX"])
