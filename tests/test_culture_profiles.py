"""Culture profiles: bundled phrases, lookups and errors."""

from __future__ import annotations

import json
import re

import pytest

from culture_align.culture_profiles import (
    CultureProfile,
    MissingCultureProfileError,
    available_profiles,
    get_culture_profile,
    load_culture_profiles,
)
from culture_align.cultures import CULTURES


def test_required_cultures_have_profiles():
    for code in ("CHN", "DEU", "JPN", "MEX", "GBR", "USA"):
        profile = get_culture_profile(code)
        assert profile.iso3 == code
        assert len(profile.phrases()) == 8


def test_profiles_are_short_phrases_without_numbers():
    for code in available_profiles():
        assert code in CULTURES
        for phrase in get_culture_profile(code).phrases():
            assert phrase and len(phrase.split()) <= 8, (code, phrase)
            assert not re.search(r"\d", phrase), (code, phrase)


def test_known_positions():
    assert get_culture_profile("CHN").power_distance == "high power distance"
    assert "collectivist" in get_culture_profile("CHN").individualism
    assert "individualist" in get_culture_profile("USA").individualism
    assert "secular-rational" in get_culture_profile("DEU").traditional_vs_secular
    assert "traditional" in get_culture_profile("MEX").traditional_vs_secular
    assert "uncertainty avoidance" in get_culture_profile("JPN").uncertainty_avoidance


def test_lookup_by_name_and_describe():
    profile = get_culture_profile("united kingdom")
    assert profile.iso3 == "GBR"
    text = profile.describe()
    assert text.startswith("British culture:") and "Hofstede" in text and "Inglehart-Welzel" in text
    assert all(p in text for p in profile.phrases())


def test_missing_profile_raises_clearly():
    missing = sorted(set(CULTURES) - set(available_profiles()))
    assert missing, "some registered cultures are expected to have no profile"
    with pytest.raises(MissingCultureProfileError, match=rf"No culture profile for .*\({missing[0]}\)"):
        get_culture_profile(missing[0])
    with pytest.raises(ValueError, match="Unknown culture"):
        get_culture_profile("XXZ")


def test_custom_profiles_file(tmp_path):
    row = {k: "x phrase" for k in CultureProfile.__dataclass_fields__ if k != "iso3"}
    good = tmp_path / "profiles.json"
    good.write_text(json.dumps({"profiles": {"bol": row}}))
    profiles = load_culture_profiles(good)
    assert get_culture_profile("BOL", profiles).power_distance == "x phrase"
    with pytest.raises(MissingCultureProfileError):
        get_culture_profile("GBR", profiles)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"profiles": {"GBR": {**row, "power_distance": ""}}}))
    with pytest.raises(ValueError, match=r"bad.json: profile 'GBR': missing \['power_distance'\]"):
        load_culture_profiles(bad)
