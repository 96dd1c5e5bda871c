"""The culture registry: codes, names, adjective phrases and helpful errors."""

from __future__ import annotations

import pytest

from culture_align.cultures import CULTURES, Culture, culture_from_wvs_code, get_culture, resolve_cultures

REQUIRED = ("AUS BOL BRA CAN CHN DEU ETH GBR IND KEN MEX NGA NLD NZL RUS THA UKR USA ZWE JPN").split()


def test_registry_covers_the_wvs_countries_and_japan():
    missing = [c for c in REQUIRED if c not in CULTURES]
    assert not missing
    for code, culture in CULTURES.items():
        assert culture.iso3 == code and len(code) == 3 and code.isupper()
        assert culture.article in ("a", "an")
        assert len(culture.language) == 2


def test_wvs_codes_are_unique_and_round_trip():
    codes = [c.wvs_code for c in CULTURES.values()]
    assert len(set(codes)) == len(codes)
    assert culture_from_wvs_code(840).iso3 == "USA"
    assert culture_from_wvs_code(276).iso3 == "DEU"
    with pytest.raises(ValueError, match="12345"):
        culture_from_wvs_code(12345)


@pytest.mark.parametrize("code, phrase", [
    ("USA", "an American"), ("NLD", "a Dutch"), ("NZL", "a New Zealand"), ("GBR", "a British"),
    ("ETH", "an Ethiopian"),
])
def test_adjective_phrases(code, phrase):
    assert get_culture(code).adjective_phrase == phrase


def test_get_culture_accepts_case_spaces_names_and_cultures():
    assert get_culture(" gbr ").iso3 == "GBR"
    assert get_culture("Germany").iso3 == "DEU"
    assert get_culture("new zealand").iso3 == "NZL"
    usa = get_culture("USA")
    assert isinstance(usa, Culture) and get_culture(usa) is usa


def test_unknown_code_names_close_codes():
    with pytest.raises(ValueError, match="USB") as err:
        get_culture("USB")
    assert "USA" in str(err.value)


def test_resolve_cultures_keeps_order_and_drops_repeats():
    assert [c.iso3 for c in resolve_cultures("gbr, CHN")] == ["GBR", "CHN"]
    assert [c.iso3 for c in resolve_cultures(["USA", "usa", "DEU"])] == ["USA", "DEU"]
    assert resolve_cultures(None) == []
    with pytest.raises(ValueError):
        resolve_cultures("GBR,XXX")
