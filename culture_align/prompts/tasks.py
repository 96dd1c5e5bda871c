"""Prompts for downstream culture classification tasks (offensive language, hate speech, bias, ...).

A prompt setting is a :class:`TaskPromptTemplate`: a system prompt and a user turn. The user turn states
the task and lists the labels, numbered from 1, with their verbal descriptions; the text to classify comes
last, followed by a short reminder of the answer format. Everything before the text is the same for every
example of a task and setting, so the scorer computes it once.

Answer format: the model answers with the **number** of a label (``"1"``, ``"2"``, ...), in the order the
task declares its labels. Numbers are single tokens for every common tokenizer and carry no meaning of
their own, unlike label keys (``"NOT_HS"`` spans several tokens, and the key ``"1"`` of a ``{"1", "0"}``
task would clash with a position). Only the descriptions are shown, never the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cultures import Culture
from .templates import check_placeholders, read_template_file, template_fields

__all__ = [
    "TaskPromptTemplate",
    "TASK_SETTINGS",
    "get_task_setting",
    "format_labels",
    "label_choices",
    "build_task_conversation",
]

_USER = (
    "Classify the text below for {phenomenon}. Choose the one label that fits it best and answer with "
    "the label's number only.\n\nLabels:\n{labels}\n\nText: {text}\n\nAnswer with one number."
)

#: The placeholders a system prompt is formatted with (see :func:`build_task_conversation`).
_SYSTEM_FIELDS = ("culture_phrase", "culture_name", "language")
#: The placeholders a user turn is formatted with: the system's and the task's.
_USER_FIELDS = (*_SYSTEM_FIELDS, "phenomenon", "labels", "text")


@dataclass(frozen=True)
class TaskPromptTemplate:
    """A prompt setting for classification tasks.

    Attributes:
        name: Setting name used in reports (``"culture-aware"``).
        system: System prompt. Placeholders: ``{culture_phrase}`` ("an American"), ``{culture_name}``
            ("United States"), ``{language}`` (ISO 639-1 code of the task's language). Empty: no system turn.
        user: User turn. Placeholders: ``{phenomenon}``, ``{labels}`` (the numbered label descriptions,
            one per line), ``{text}``, and those of ``system``.
    """

    name: str
    system: str
    user: str = _USER

    def __post_init__(self) -> None:
        """Refuse unknown ``{placeholders}`` now rather than when the first prompt is built."""
        check_placeholders(self.system, _SYSTEM_FIELDS, f"task prompt template {self.name!r}: system")
        check_placeholders(self.user, _USER_FIELDS, f"task prompt template {self.name!r}: user")

    @property
    def uses_culture(self) -> bool:
        return any(f"{{{key}}}" in self.system + self.user for key in ("culture_phrase", "culture_name"))

    @classmethod
    def from_dict(cls, data: dict, source: str = "template") -> TaskPromptTemplate:
        """A template from ``{"name", "system", "user"}`` (``user`` optional: the default task wording)."""
        fields = template_fields(data, source, default_name=source, default_user=_USER, kind="task prompt template")
        try:
            return cls(**fields)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> TaskPromptTemplate:
        """Read a template from a JSON or YAML file with keys ``name`` (default: the file stem), ``system``, ``user``."""
        path = Path(path)
        data = read_template_file(path)
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)


TASK_SETTINGS: dict[str, TaskPromptTemplate] = {
    "plain": TaskPromptTemplate(
        name="plain",
        system="You are an annotator who labels social media texts carefully.",
    ),
    "culture-aware": TaskPromptTemplate(
        name="culture-aware",
        system=(
            "You are {culture_phrase} annotator who knows the culture, language and social norms of your "
            "country well. You label social media texts carefully, as {culture_phrase} reader would."
        ),
    ),
}
"""Built-in settings: ``plain`` (no culture) and ``culture-aware`` (the task's culture in the system prompt)."""


def get_task_setting(setting: str | TaskPromptTemplate) -> TaskPromptTemplate:
    """A built-in setting by name, a template file path (.json/.yaml), or a template itself."""
    if isinstance(setting, TaskPromptTemplate):
        return setting
    if setting in TASK_SETTINGS:
        return TASK_SETTINGS[setting]
    if Path(setting).suffix in (".json", ".yaml", ".yml"):
        return TaskPromptTemplate.from_file(setting)
    raise ValueError(f"unknown task prompt setting {setting!r}: use one of {sorted(TASK_SETTINGS)} "
                     "or a template file")


def format_labels(descriptions: Sequence[str]) -> str:
    """The numbered label descriptions, one per line: ``"1. offensive\\n2. not offensive"``."""
    return "\n".join(f"{i}. {d}" for i, d in enumerate(descriptions, start=1))


def label_choices(num_labels: int) -> list[str]:
    """The answer strings the model is scored on: ``["1", ..., str(num_labels)]``."""
    return [str(i) for i in range(1, num_labels + 1)]


def build_task_conversation(template: TaskPromptTemplate, text: str, label_descriptions: Sequence[str],
                            phenomenon: str, culture: Culture | None = None,
                            language: str | None = None) -> list[dict[str, str]]:
    """The chat asking for the label of ``text`` under ``template``.

    Args:
        template: The prompt setting.
        text: The text to classify.
        label_descriptions: Verbal description of each label, in the task's label order (numbered from 1).
        phenomenon: What is being classified (``"offensive language"``).
        culture: The task's culture; required when the template uses it.
        language: ISO 639-1 code of the text's language (for templates that mention it).
    """
    if template.uses_culture and culture is None:
        raise ValueError(f"task prompt setting {template.name!r} needs a culture")
    fields = {
        "culture_phrase": culture.adjective_phrase if culture else "",
        "culture_name": culture.name if culture else "",
        "language": language or "",
    }
    system = template.system.format(**fields).strip()
    user = template.user.format(phenomenon=phenomenon, labels=format_labels(label_descriptions), text=text,
                                **fields)
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]
