"""Culture profiles: how a culture is described to a model, in short qualitative phrases.

A profile places a culture on the Inglehart-Welzel cultural map of the World Values Survey (traditional vs
secular-rational values; survival vs self-expression values) and on Hofstede's six dimensions (power
distance, individualism, motivation towards achievement and success, uncertainty avoidance, long-term
orientation, indulgence). CLCA puts these phrases in the role-play, judge and annotator prompts.

The bundled profiles live in ``culture_align/data/culture_profiles.json`` beside the registry
(:mod:`culture_align.cultures`); they hold phrases only, no scores. Registered cultures whose position we
could not state with confidence have no profile, and asking for one raises :class:`MissingCultureProfileError`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .cultures import Culture, get_culture
from .input_files import parse_json, read_text

__all__ = [
    "CultureProfile",
    "MissingCultureProfileError",
    "get_culture_profile",
    "load_culture_profiles",
    "available_profiles",
]


class MissingCultureProfileError(LookupError):
    """A registered culture has no profile."""


@dataclass(frozen=True)
class CultureProfile:
    """One culture's position, as short phrases (``"high power distance"``, ``"collectivist"``).

    Attributes:
        iso3: The culture's ISO3 code.
        traditional_vs_secular: Inglehart-Welzel first axis (``"strongly secular-rational values"``).
        survival_vs_self_expression: Inglehart-Welzel second axis (``"leaning towards survival values"``).
        power_distance: Hofstede (``"high power distance"``).
        individualism: Hofstede (``"collectivist"``).
        motivation: Hofstede's motivation towards achievement and success (formerly masculinity)
            (``"achievement-oriented"``).
        uncertainty_avoidance: Hofstede (``"low uncertainty avoidance"``).
        long_term_orientation: Hofstede (``"strongly long-term oriented"``).
        indulgence: Hofstede (``"restrained"``).
    """

    iso3: str
    traditional_vs_secular: str
    survival_vs_self_expression: str
    power_distance: str
    individualism: str
    motivation: str
    uncertainty_avoidance: str
    long_term_orientation: str
    indulgence: str

    @property
    def culture(self) -> Culture:
        return get_culture(self.iso3)

    @property
    def inglehart_welzel(self) -> tuple[str, str]:
        return (self.traditional_vs_secular, self.survival_vs_self_expression)

    @property
    def hofstede(self) -> tuple[str, ...]:
        return (self.power_distance, self.individualism, self.motivation, self.uncertainty_avoidance,
                self.long_term_orientation, self.indulgence)

    def phrases(self) -> list[str]:
        """The eight phrases, Inglehart-Welzel first."""
        return [*self.inglehart_welzel, *self.hofstede]

    def describe(self) -> str:
        """One line for prompts: ``"Chinese culture: strongly secular-rational values, leaning towards survival
        values (Inglehart-Welzel cultural map); high power distance, strongly collectivist, ... (Hofstede)."``"""
        return (f"{self.culture.adjective} culture: {', '.join(self.inglehart_welzel)} (Inglehart-Welzel cultural "
                f"map); {', '.join(self.hofstede)} (Hofstede's dimensions).")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_PHRASE_FIELDS = tuple(f.name for f in fields(CultureProfile) if f.name != "iso3")


def _parse_profiles(data: object, source: str) -> dict[str, CultureProfile]:
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise ValueError(f"{source}: expected an object with a 'profiles' mapping of ISO3 code -> phrases")
    profiles = {}
    for code, row in data["profiles"].items():
        iso3 = get_culture(code).iso3  # unknown codes raise, naming the closest ones
        if not isinstance(row, dict):
            raise ValueError(f"{source}: profile {code!r} must be an object")
        missing = [f for f in _PHRASE_FIELDS if not str(row.get(f, "")).strip()]
        unknown = sorted(set(row) - set(_PHRASE_FIELDS))
        if missing or unknown:
            raise ValueError(f"{source}: profile {code!r}: missing {missing}, unknown keys {unknown}; "
                             f"expected exactly {list(_PHRASE_FIELDS)}")
        profiles[iso3] = CultureProfile(iso3=iso3, **{f: str(row[f]).strip() for f in _PHRASE_FIELDS})
    return profiles


@lru_cache(maxsize=1)
def _bundled() -> dict[str, CultureProfile]:
    text = resources.files("culture_align").joinpath("data/culture_profiles.json").read_text(encoding="utf-8")
    source = "culture_align/data/culture_profiles.json"
    return _parse_profiles(parse_json(text, source), source)


def load_culture_profiles(path: str | os.PathLike | None = None) -> dict[str, CultureProfile]:
    """Profiles by ISO3 code: the bundled ones, or those of a JSON file shaped like the bundled one
    (``{"profiles": {"GBR": {"traditional_vs_secular": ..., ...}}}``)."""
    if path is None:
        return dict(_bundled())
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read culture profiles: {err}") from err
    return _parse_profiles(parse_json(text, f"{path}: cannot read culture profiles"), str(path))


def available_profiles() -> list[str]:
    """ISO3 codes of the cultures with a bundled profile, sorted."""
    return sorted(_bundled())


def get_culture_profile(code: str | Culture,
                        profiles: dict[str, CultureProfile] | None = None) -> CultureProfile:
    """The profile of a culture (ISO3 code, name or :class:`Culture`), from ``profiles`` or the bundled set.

    Raises:
        ValueError: the code is not a registered culture.
        MissingCultureProfileError: the culture is registered but has no profile.
    """
    culture = get_culture(code)
    table = _bundled() if profiles is None else profiles
    if culture.iso3 not in table:
        raise MissingCultureProfileError(
            f"No culture profile for {culture.name} ({culture.iso3}). Profiles exist for "
            f"{', '.join(sorted(table)) or 'no culture'}; add one to culture_align/data/culture_profiles.json "
            f"or pass your own profiles file."
        )
    return table[culture.iso3]
