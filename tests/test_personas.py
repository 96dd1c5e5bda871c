"""Personas: decoding WVS demographic codes, describing a respondent, and sampling respondents."""

from __future__ import annotations

import datasets
import pytest

from culture_align.wvs.personas import (
    DEMOGRAPHIC_CODES,
    EDUCATION,
    PERSONA_FIELDS,
    PROFESSION,
    decode_demographic,
    describe_persona,
    sample_personas,
)


def _row(**fields):
    row = {"culture": "DEU", "respondent_id": "DEU-1", **{f: None for f in PERSONA_FIELDS}}
    row.update(fields)
    return row


def test_code_tables_follow_wvs_coding():
    assert set(DEMOGRAPHIC_CODES) == set(PERSONA_FIELDS)
    assert min(EDUCATION) == 0 and max(EDUCATION) == 8  # ISCED 0..8
    assert PROFESSION[0] == "never had a job" and len(PROFESSION) == 11
    assert decode_demographic("sex", 2) == "female"
    assert decode_demographic("marital_status", 6) == "single"
    assert decode_demographic("employment", 1) == "full time"
    assert decode_demographic("social_class", 3) == "lower middle class"
    assert decode_demographic("age", 34) == "34"
    assert decode_demographic("household_size", 3) == "3"


@pytest.mark.parametrize("code", [None, -1, -2, -5])
def test_missing_codes_decode_to_none(code):
    assert decode_demographic("sex", code) is None
    assert decode_demographic("age", code) is None


def test_unknown_positive_code_decodes_to_none():
    assert decode_demographic("sex", 9) is None


def test_describe_full_persona():
    text = describe_persona(_row(sex="female", age="34", born_in_country="born in this country",
                                 household_size="3", marital_status="married",
                                 education="bachelor or equivalent", employment="full time",
                                 profession="clerical", social_class="lower middle class"))
    assert text.startswith("You are a 34-year-old woman from Germany.")
    for part in ("You were born in this country.", "You are married.", "bachelor's degree",
                 "You work full time", "clerical work", "You see yourself as lower middle class.",
                 "You live in a household of 3 people."):
        assert part in text


def test_describe_skips_unknown_fields():
    text = describe_persona(_row(culture="USA"))
    assert text == "You are a person from the United States."
    text = describe_persona(_row(sex="male", household_size="1", profession="never had a job"))
    assert text == "You are a man from Germany. You have never had a job. You live alone."


def test_describe_uses_an_before_vowel_sounds():
    assert describe_persona(_row(age="18", sex="male")).startswith("You are an 18-year-old man")
    assert describe_persona(_row(age="81")).startswith("You are an 81-year-old person")
    assert describe_persona(_row(age="28")).startswith("You are a 28-year-old person")


def _table() -> datasets.Dataset:
    rows = [_row(culture=c, respondent_id=f"{c}-{i}") for c, n in (("USA", 20), ("DEU", 3)) for i in range(n)]
    return datasets.Dataset.from_list(rows)


def test_sample_personas_is_reproducible_and_per_culture():
    table = _table()
    first = sample_personas(table, "usa", 5, seed=7)
    assert first["respondent_id"] == sample_personas(table, "USA", 5, seed=7)["respondent_id"]
    assert len(first) == 5 and set(first["culture"]) == {"USA"}
    assert len(set(first["respondent_id"])) == 5
    others = {tuple(sample_personas(table, "USA", 5, seed=s)["respondent_id"]) for s in range(5)}
    assert len(others) > 1


def test_sample_personas_returns_all_when_fewer():
    assert sample_personas(_table(), "DEU", 10, seed=0)["respondent_id"] == ["DEU-0", "DEU-1", "DEU-2"]


def test_sample_personas_errors():
    with pytest.raises(ValueError, match="CHN"):
        sample_personas(_table(), "CHN", 2, seed=0)
    with pytest.raises(ValueError, match="Unknown culture"):
        sample_personas(_table(), "XYZ", 2, seed=0)
