"""Prompts for answering survey items: the one place where WVS evaluation prompts are worded.

A prompt setting is a :class:`SurveyPromptTemplate`: a system prompt and a user turn. The user turn puts
the fixed instruction first and the item last, so that everything before the item is shared by all items
of a culture (and computed once by the scorer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..cultures import Culture
from ..wvs.questions import SurveyQuestion
from .templates import check_placeholders, read_template_file, template_fields

__all__ = [
    "SurveyPromptTemplate",
    "SETTINGS",
    "get_setting",
    "format_options",
    "build_conversation",
]

_INSTRUCTION = "Answer the survey question below with the number of the option you choose, and nothing else."

#: The placeholders a system prompt is formatted with (see :func:`build_conversation`).
_SYSTEM_FIELDS = ("culture_phrase", "culture_name", "persona")
#: The placeholders a user turn is formatted with: the system's and the item's.
_USER_FIELDS = (*_SYSTEM_FIELDS, "question", "options")


@dataclass(frozen=True)
class SurveyPromptTemplate:
    """A prompt setting.

    Attributes:
        name: Setting name used in reports (``"culture-aware"``).
        system: System prompt. Placeholders: ``{culture_phrase}`` ("an American"), ``{culture_name}``
            ("United States"), ``{persona}`` (a persona description). Empty: no system turn.
        user: User turn. Placeholders: ``{question}``, ``{options}``.
    """

    name: str
    system: str
    user: str = _INSTRUCTION + "\n\n{question}\n{options}"

    def __post_init__(self) -> None:
        """Refuse unknown ``{placeholders}`` now rather than when the first prompt is built."""
        check_placeholders(self.system, _SYSTEM_FIELDS, f"prompt template {self.name!r}: system")
        check_placeholders(self.user, _USER_FIELDS, f"prompt template {self.name!r}: user")

    @property
    def uses_culture(self) -> bool:
        return "{culture_phrase}" in self.system or "{culture_name}" in self.system

    @property
    def uses_persona(self) -> bool:
        return "{persona}" in self.system or "{persona}" in self.user

    @classmethod
    def from_file(cls, path: str | Path) -> SurveyPromptTemplate:
        """Read a custom template from a JSON or YAML file with keys ``name`` (default: the file stem), ``system``,
        ``user``."""
        path = Path(path)
        fields = template_fields(read_template_file(path), str(path), default_name=path.stem, default_user=cls.user)
        try:
            return cls(**fields)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def to_dict(self) -> dict:
        return asdict(self)


SETTINGS: dict[str, SurveyPromptTemplate] = {
    "culture-unaware": SurveyPromptTemplate(
        name="culture-unaware",
        system="You are a real person with your own values and beliefs, taking part in the World Values Survey.",
    ),
    "culture-aware": SurveyPromptTemplate(
        name="culture-aware",
        system=(
            "You are a real person with {culture_phrase} cultural background, with your own values and "
            "beliefs, taking part in the World Values Survey."
        ),
    ),
    "persona": SurveyPromptTemplate(
        name="persona",
        system="{persona} You are taking part in the World Values Survey and answer as yourself.",
    ),
}
"""Built-in settings: culture-unaware, culture-aware, persona (demographics of a sampled respondent)."""


def get_setting(setting: str | SurveyPromptTemplate) -> SurveyPromptTemplate:
    """A built-in setting by name, a template file path (.json/.yaml), or a template itself."""
    if isinstance(setting, SurveyPromptTemplate):
        return setting
    if setting in SETTINGS:
        return SETTINGS[setting]
    if Path(setting).suffix in (".json", ".yaml", ".yml"):
        return SurveyPromptTemplate.from_file(setting)
    raise ValueError(f"unknown prompt setting {setting!r}: use one of {sorted(SETTINGS)} or a template file")


def format_options(question: SurveyQuestion) -> str:
    """The numbered options with their real codes, one per line (``"1. Very important"``).

    A numeric scale whose labels are just its codes (1..10, explained in the question text) is shown as
    one line, ``"Answer with a number from 1 to 10."``, instead of ten lines repeating the numbers.
    """
    if question.is_numeric_scale:
        return f"Answer with a number from {min(question.codes)} to {max(question.codes)}."
    return "\n".join(f"{code}. {label}" for code, label in zip(question.codes, question.options))


def build_conversation(template: SurveyPromptTemplate, question: SurveyQuestion,
                       culture: Culture | None = None, persona: str | None = None) -> list[dict[str, str]]:
    """The chat asking ``question`` under ``template`` (for ``culture`` / ``persona`` when it uses them)."""
    if template.uses_culture and culture is None:
        raise ValueError(f"setting {template.name!r} needs a culture")
    if template.uses_persona and persona is None:
        raise ValueError(f"setting {template.name!r} needs a persona description")
    fields = {
        "culture_phrase": culture.adjective_phrase if culture else "",
        "culture_name": culture.name if culture else "",
        "persona": persona or "",
    }
    system = template.system.format(**fields).strip()
    user = template.user.format(question=question.text, options=format_options(question), **fields)
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]
