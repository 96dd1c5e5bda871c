"""Personas: WVS respondents' demographics, decoded to English, and a system-prompt description of them.

A persona table is a :class:`datasets.Dataset` with one row per respondent and the columns

- ``culture`` (str, ISO3) and ``respondent_id`` (str, stable across loads of the same file);
- the demographic fields of :data:`PERSONA_FIELDS` (str or None): the English label of the respondent's WVS
  code (see :data:`DEMOGRAPHIC_CODES`), the age and household size as the string of an integer;
- ``answers``: a struct ``{qid: int or None}`` with the respondent's own answer code to every loaded item.
"""

from __future__ import annotations

from collections.abc import Mapping

import datasets
import numpy as np
import pyarrow.compute as pc

from ..cultures import Culture, get_culture

__all__ = [
    "PERSONA_FIELDS",
    "DEMOGRAPHIC_COLUMNS",
    "DEMOGRAPHIC_CODES",
    "SEX",
    "BORN_IN_COUNTRY",
    "MARITAL_STATUS",
    "EDUCATION",
    "EMPLOYMENT",
    "PROFESSION",
    "SOCIAL_CLASS",
    "decode_demographic",
    "describe_persona",
    "sample_personas",
    "persona_rng",
]

SEX: dict[int, str] = {1: "male", 2: "female"}
"""Q260."""

BORN_IN_COUNTRY: dict[int, str] = {1: "born in this country", 2: "immigrant"}
"""Q263."""

MARITAL_STATUS: dict[int, str] = {
    1: "married", 2: "living together as married", 3: "divorced", 4: "separated", 5: "widowed", 6: "single",
}
"""Q273."""

EDUCATION: dict[int, str] = {
    0: "early childhood education or no education",
    1: "primary education",
    2: "lower secondary education",
    3: "upper secondary education",
    4: "post-secondary non-tertiary education",
    5: "short-cycle tertiary education",
    6: "bachelor or equivalent",
    7: "master or equivalent",
    8: "doctoral or equivalent",
}
"""Q275 (ISCED 2011 levels 0-8)."""

EMPLOYMENT: dict[int, str] = {
    1: "full time", 2: "part time", 3: "self employed", 4: "retired/pensioned",
    5: "housewife not otherwise employed", 6: "student", 7: "unemployed", 8: "other",
}
"""Q279."""

PROFESSION: dict[int, str] = {
    0: "never had a job", 1: "professional and technical", 2: "higher administrative", 3: "clerical",
    4: "sales", 5: "service", 6: "skilled worker", 7: "semi-skilled worker", 8: "unskilled worker",
    9: "farm worker", 10: "farm owner or manager",
}
"""Q281 (occupational group of the current or last job)."""

SOCIAL_CLASS: dict[int, str] = {
    1: "upper class", 2: "upper middle class", 3: "lower middle class", 4: "working class", 5: "lower class",
}
"""Q287 (subjective social class)."""

DEMOGRAPHIC_COLUMNS: dict[str, str] = {
    "sex": "Q260",
    "age": "Q262",
    "born_in_country": "Q263",
    "household_size": "Q270",
    "marital_status": "Q273",
    "education": "Q275",
    "employment": "Q279",
    "profession": "Q281",
    "social_class": "Q287",
}
"""Persona field -> the WVS-7 CSV column it is decoded from."""

PERSONA_FIELDS: tuple[str, ...] = tuple(DEMOGRAPHIC_COLUMNS)
"""The demographic columns of a persona table, in table order."""

DEMOGRAPHIC_CODES: dict[str, dict[int, str] | None] = {
    "sex": SEX,
    "age": None,
    "born_in_country": BORN_IN_COUNTRY,
    "household_size": None,
    "marital_status": MARITAL_STATUS,
    "education": EDUCATION,
    "employment": EMPLOYMENT,
    "profession": PROFESSION,
    "social_class": SOCIAL_CLASS,
}
"""Persona field -> code table; ``None`` for numeric fields kept as the string of the integer."""


def decode_demographic(field: str, code: int | None) -> str | None:
    """The English value of one WVS demographic code.

    Args:
        field: A name from :data:`PERSONA_FIELDS`.
        code: The raw WVS code; ``None`` or negative (missing, don't know, refused) gives ``None``.

    Returns:
        The label of :data:`DEMOGRAPHIC_CODES` (``None`` for a code the table lacks), or ``str(code)`` for
        the numeric fields (``age`` in years, ``household_size`` in people).
    """
    if code is None or int(code) < 0:
        return None
    table = DEMOGRAPHIC_CODES[field]
    if table is None:
        return str(int(code))
    return table.get(int(code))


_MARITAL_SENTENCE = {
    "married": "You are married.",
    "living together as married": "You live with a partner as if married.",
    "divorced": "You are divorced.",
    "separated": "You are separated from your spouse.",
    "widowed": "You are widowed.",
    "single": "You are single and have never been married.",
}
_EDUCATION_PHRASE = {
    "early childhood education or no education": "early childhood education at most",
    "primary education": "primary school",
    "lower secondary education": "lower secondary school",
    "upper secondary education": "upper secondary school",
    "post-secondary non-tertiary education": "post-secondary vocational education below university level",
    "short-cycle tertiary education": "a short-cycle tertiary degree",
    "bachelor or equivalent": "a bachelor's degree or equivalent",
    "master or equivalent": "a master's degree or equivalent",
    "doctoral or equivalent": "a doctorate or equivalent",
}
_EMPLOYMENT_PHRASE = {
    "full time": "you work full time",
    "part time": "you work part time",
    "self employed": "you are self-employed",
    "retired/pensioned": "you are retired",
    "housewife not otherwise employed": "you keep house and are not otherwise employed",
    "student": "you are a student",
    "unemployed": "you are unemployed",
}
_PROFESSION_PHRASE = {
    "professional and technical": "professional or technical work",
    "higher administrative": "higher administrative work",
    "clerical": "clerical work",
    "sales": "sales work",
    "service": "service work",
    "skilled worker": "skilled manual work",
    "semi-skilled worker": "semi-skilled manual work",
    "unskilled worker": "unskilled manual work",
    "farm worker": "farm work",
    "farm owner or manager": "owning or managing a farm",
}
_NAMES_WITH_THE = ("United ", "Netherlands", "Philippines")


def _country_phrase(culture: Culture) -> str:
    name = culture.name
    return f"the {name}" if name.startswith(_NAMES_WITH_THE) else name


def _who(sex: str | None, age: str | None) -> str:
    noun = {"male": "man", "female": "woman"}.get(sex or "", "person")
    if age is None:
        return f"a {noun}"
    article = "an" if age.startswith("8") or age in ("11", "18") else "a"
    return f"{article} {age}-year-old {noun}"


def describe_persona(row: Mapping) -> str:
    """A second-person English description of a respondent, for a system prompt.

    Args:
        row: One persona row (a mapping with ``culture`` and any of :data:`PERSONA_FIELDS`); missing or
            ``None`` fields are left out of the text.

    Returns:
        Sentences such as ``"You are a 34-year-old woman from Germany. You were born in this country. You are
        married. Your highest completed education is a bachelor's degree or equivalent. You work full time;
        your current or last job is clerical work. You see yourself as lower middle class. You live in a
        household of 3 people."``
    """
    culture = get_culture(row["culture"])
    get = row.get
    parts = [f"You are {_who(get('sex'), get('age'))} from {_country_phrase(culture)}."]
    born = get("born_in_country")
    if born == "born in this country":
        parts.append("You were born in this country.")
    elif born == "immigrant":
        parts.append("You immigrated to this country.")
    if get("marital_status") in _MARITAL_SENTENCE:
        parts.append(_MARITAL_SENTENCE[get("marital_status")])
    if get("education") in _EDUCATION_PHRASE:
        parts.append(f"Your highest completed education is {_EDUCATION_PHRASE[get('education')]}.")
    work = []
    if get("employment") in _EMPLOYMENT_PHRASE:
        work.append(_EMPLOYMENT_PHRASE[get("employment")])
    if get("profession") == "never had a job":
        work.append("you have never had a job")
    elif get("profession") in _PROFESSION_PHRASE:
        work.append(f"your current or last job is {_PROFESSION_PHRASE[get('profession')]}")
    if work:
        sentence = "; ".join(work)
        parts.append(sentence[0].upper() + sentence[1:] + ".")
    if get("social_class"):
        parts.append(f"You see yourself as {get('social_class')}.")
    size = get("household_size")
    if size is not None and str(size).isdigit():
        people = int(size)
        parts.append("You live alone." if people == 1 else f"You live in a household of {people} people.")
    return " ".join(parts)


def persona_rng(culture: str | Culture, seed: int) -> np.random.Generator:
    """The random generator used to sample ``culture``'s respondents: independent of other cultures."""
    return np.random.default_rng([int(seed), get_culture(culture).wvs_code])


def sample_indices(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, total)`` distinct positions in ``range(total)``, drawn with ``rng``, in increasing order."""
    if n < 0:
        raise ValueError(f"cannot sample a negative number of personas ({n})")
    if n >= total:
        return np.arange(total)
    return np.sort(rng.choice(total, size=n, replace=False))


def sample_personas(
    personas: datasets.Dataset, culture: str | Culture, n: int, seed: int = 0
) -> datasets.Dataset:
    """``n`` respondents of one culture, drawn without replacement (all of them when there are fewer).

    The draw depends only on ``seed``, the culture and its rows, and equals the one that
    ``load_wvs_csv(..., max_personas_per_culture=n, seed=seed)`` makes from the same file. Rows keep their
    table order.

    Raises:
        ValueError: for an unknown culture, or one with no rows in ``personas``.
    """
    iso3 = get_culture(culture).iso3
    column = personas.with_format("arrow")["culture"]
    positions = np.flatnonzero(pc.fill_null(pc.equal(column, iso3), False).to_numpy(zero_copy_only=False))
    if positions.size == 0:
        raise ValueError(f"no personas for culture {iso3} in this table")
    chosen = positions[sample_indices(positions.size, n, persona_rng(iso3, seed))]
    return personas.select(chosen.tolist())
