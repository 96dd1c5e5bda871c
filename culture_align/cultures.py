"""The culture registry: the one place that knows which cultures exist and how to name them.

Every other module refers to a culture by its ISO 3166-1 alpha-3 code (``"GBR"``) and resolves it here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Culture", "CULTURES", "get_culture", "resolve_cultures", "culture_from_wvs_code"]


@dataclass(frozen=True)
class Culture:
    """One culture, identified by a country.

    Attributes:
        iso3: ISO 3166-1 alpha-3 code, upper case (``"USA"``).
        name: English short name of the country (``"United States"``).
        adjective: English demonym used as an adjective (``"American"``).
        article: The indefinite article that goes before ``adjective`` (``"an"``).
        language: ISO 639-1 code of the main language (``"en"``).
        wvs_code: The numeric country code the World Values Survey uses (ISO 3166-1 numeric,
            column ``B_COUNTRY`` of the WVS CSV).
    """

    iso3: str
    name: str
    adjective: str
    article: str
    language: str
    wvs_code: int

    @property
    def adjective_phrase(self) -> str:
        """``"an American"``, ``"a Dutch"``, ``"a New Zealand"``: ready to put before a noun."""
        return f"{self.article} {self.adjective}"


_TABLE: tuple[tuple[str, str, str, str, str, int], ...] = (
    # iso3, name, adjective, article, language, WVS numeric code
    ("ARG", "Argentina", "Argentine", "an", "es", 32),
    ("AUS", "Australia", "Australian", "an", "en", 36),
    ("BGD", "Bangladesh", "Bangladeshi", "a", "bn", 50),
    ("BOL", "Bolivia", "Bolivian", "a", "es", 68),
    ("BRA", "Brazil", "Brazilian", "a", "pt", 76),
    ("CAN", "Canada", "Canadian", "a", "en", 124),
    ("CHN", "China", "Chinese", "a", "zh", 156),
    ("DEU", "Germany", "German", "a", "de", 276),
    ("EGY", "Egypt", "Egyptian", "an", "ar", 818),
    ("ETH", "Ethiopia", "Ethiopian", "an", "am", 231),
    ("GBR", "United Kingdom", "British", "a", "en", 826),
    ("GRC", "Greece", "Greek", "a", "el", 300),
    ("IDN", "Indonesia", "Indonesian", "an", "id", 360),
    ("IND", "India", "Indian", "an", "hi", 356),
    ("IRN", "Iran", "Iranian", "an", "fa", 364),
    ("IRQ", "Iraq", "Iraqi", "an", "ar", 368),
    ("JOR", "Jordan", "Jordanian", "a", "ar", 400),
    ("JPN", "Japan", "Japanese", "a", "ja", 392),
    ("KEN", "Kenya", "Kenyan", "a", "sw", 404),
    ("KOR", "South Korea", "South Korean", "a", "ko", 410),
    ("MEX", "Mexico", "Mexican", "a", "es", 484),
    ("NGA", "Nigeria", "Nigerian", "a", "en", 566),
    ("NLD", "Netherlands", "Dutch", "a", "nl", 528),
    ("NZL", "New Zealand", "New Zealand", "a", "en", 554),
    ("PAK", "Pakistan", "Pakistani", "a", "ur", 586),
    ("PHL", "Philippines", "Filipino", "a", "tl", 608),
    ("RUS", "Russia", "Russian", "a", "ru", 643),
    ("THA", "Thailand", "Thai", "a", "th", 764),
    ("TUR", "Turkey", "Turkish", "a", "tr", 792),
    ("UKR", "Ukraine", "Ukrainian", "a", "uk", 804),
    ("USA", "United States", "American", "an", "en", 840),
    ("VNM", "Vietnam", "Vietnamese", "a", "vi", 704),
    ("ZWE", "Zimbabwe", "Zimbabwean", "a", "en", 716),
)

CULTURES: dict[str, Culture] = {row[0]: Culture(*row) for row in _TABLE}
"""All registered cultures by ISO3 code, sorted by code."""

_BY_WVS_CODE: dict[int, Culture] = {c.wvs_code: c for c in CULTURES.values()}
_ALIASES: dict[str, str] = {
    "great britain": "GBR", "britain": "GBR", "uk": "GBR", "united states of america": "USA", "us": "USA",
    "u.s.": "USA", "russian federation": "RUS", "korea": "KOR", "republic of korea": "KOR",
    "viet nam": "VNM", "türkiye": "TUR", "turkiye": "TUR",
}
"""Other English names of registered countries (as used by GlobalOpinionQA and the WVS documentation)."""

_BY_NAME: dict[str, Culture] = {c.name.lower(): c for c in CULTURES.values()}
_BY_NAME.update({alias: CULTURES[iso3] for alias, iso3 in _ALIASES.items()})


def get_culture(code: str | Culture) -> Culture:
    """Resolve an ISO3 code (any case, surrounding spaces ignored) or an English country name or alias.

    Raises:
        ValueError: for an unknown code, naming the closest registered codes.
    """
    if isinstance(code, Culture):
        return code
    key = str(code).strip()
    if key.upper() in CULTURES:
        return CULTURES[key.upper()]
    if key.lower() in _BY_NAME:
        return _BY_NAME[key.lower()]
    by_code = difflib.get_close_matches(key.upper(), list(CULTURES), n=3, cutoff=0.3)
    by_name = [_BY_NAME[n].iso3 for n in difflib.get_close_matches(key.lower(), list(_BY_NAME), n=3)]
    close = by_name + by_code if len(key) > 3 else by_code + by_name
    close = list(dict.fromkeys(close))[:3]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown culture {code!r}: use an ISO 3166-1 alpha-3 code from the registry.{hint}")


def culture_from_wvs_code(wvs_code: int) -> Culture:
    """The culture whose WVS numeric country code is ``wvs_code`` (``840`` -> USA)."""
    try:
        return _BY_WVS_CODE[int(wvs_code)]
    except (KeyError, ValueError):
        raise ValueError(f"Unknown WVS country code {wvs_code!r}: no registered culture uses it.") from None


def resolve_cultures(codes: str | Iterable[str | Culture] | None) -> list[Culture]:
    """Resolve a list of codes, or one comma-separated string (``"GBR,CHN"``), keeping order, no repeats."""
    if codes is None:
        return []
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c.strip()]
    return list(dict.fromkeys(get_culture(c) for c in codes))
