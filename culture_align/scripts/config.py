"""Every command's options from dataclasses, the TRL way: one parser (:class:`CommandParser`, a ``TrlParser``) per
command over its dataclasses, a flat YAML file per command (``--config FILE``: its keys are the dataclasses'
field names), and command-line flags over the file. Each option's help text lives once, in its dataclass field.

What the parser adds to TRL's: config values are converted and checked as their flags would be (a wrong type is an
error naming the key, before any model is loaded), unknown keys are refused by name, a field whose default is a
dataclass (``GenerationParams``, the CLCA drop rule) takes a mapping of its fields in the file (JSON on the command
line) applied over that default, and a field marked ``{"json": True}`` (a backend: a model name, or a mapping such
as ``{backend: openai, base_url: ..., model: ...}``) takes a string or a mapping.

Field metadata the parser reads besides TRL's ``help`` and ``aliases``: ``{"positional": True}`` (a positional
argument, given on the command line only), ``{"cli": False}`` (not an option: the command sets the field itself),
``{"metavar": ...}``. A list field (``Sequence[str]``) takes one or more values per flag and may be repeated (the
first use replaces the default or the file's list, later ones add to it); in a command with positional arguments it
takes one value per flag and a boolean takes none, so neither swallows a positional argument.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool
from trl import TrlParser

from ..config_values import dataclass_from_dict, replace_from_dict

__all__ = ["CommandParser", "parse_command", "read_config_file", "dataclass_from_dict", "hold_out_split",
           "load_training_dataset", "split_list"]

SECTION_NAMES = ("generate", "train", "eval")
"""Top-level keys of the sectioned configs of culture-align < 0.2, refused with a message saying what to do."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a flat YAML config file; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    sections = [k for k in SECTION_NAMES if isinstance(data.get(k), dict)]
    if sections:
        raise ValueError(f"{path}: a config is one flat mapping per command (the TRL convention), not sections "
                         f"({', '.join(sections)}:): move each section's keys to a file of its own, e.g. "
                         "examples/configs/clca_generate.yaml and clca_train.yaml")
    return data


_OWN_METADATA = ("json", "positional", "cli", "metavar")
"""Field metadata keys this parser reads (HfArgumentParser passes the others to ``add_argument``)."""


def _is_string_sequence(annotation: Any) -> bool:
    """``Sequence[str]`` or ``Sequence[str] | None``, also of items that may be strings (``Sequence[str |
    SurveyPromptTemplate]``): HfArgumentParser knows ``list[str]`` only."""
    if isinstance(annotation, str):
        annotation = annotation.replace(" ", "")
        return annotation in ("Sequence[str]", "Sequence[str]|None")
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is not collections.abc.Sequence:
        return False
    item = (typing.get_args(annotation) or (Any,))[0]
    return item is str or (typing.get_origin(item) in (typing.Union, types.UnionType) and str in typing.get_args(item))


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or annotation == bool | None


class _ListAction(argparse.Action):
    """A list option's values: its first use on the command line replaces the default (or the config file's list),
    later uses add to it (``--adapter A --adapter USA=B``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = list(values) if isinstance(values, list) else [values]
        current = getattr(namespace, self.dest, None)
        first = current is None or current is self.default
        setattr(namespace, self.dest, values if first else [*current, *values])


def _json_or_text(text: str) -> Any:
    """A command-line value that may be a mapping: JSON when it starts with ``{``, else the string itself."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    return text


def split_list(values: str | Sequence[Any] | None) -> list[Any] | None:
    """A list option's values (a string, or items) with comma-separated strings split (``["USA,CHN", "DEU"]`` ->
    ``["USA", "CHN", "DEU"]``; the pipelines' :func:`~culture_align.recipes.stages.split_commas`, as a list); other
    items (a prompt template) kept; None stays None."""
    from ..recipes.stages import split_commas

    if values is None:
        return None
    return list(split_commas([values] if isinstance(values, str) else list(values)))


def _field_default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _nested_default(field: dataclasses.Field) -> Any:
    """The dataclass instance a field defaults to (``GenerationParams``, a drop rule), or None."""
    default = _field_default(field)
    return default if dataclasses.is_dataclass(default) and not isinstance(default, type) else None


def _nested_value(field: dataclasses.Field, value: Any, base: Any = None) -> Any:
    """A mapping given for a dataclass-valued field, applied over ``base`` (what the config file set) or else the
    field's default; other values as they are."""
    default = base if dataclasses.is_dataclass(base) and not isinstance(base, type) else _nested_default(field)
    if default is None or not isinstance(value, dict):
        return value
    return replace_from_dict(default, value, "config", field.name)


class CommandParser(TrlParser):
    """``TrlParser`` over a command's dataclasses, with checked config values (see the module docstring).

    Raises ``ValueError`` (never ``SystemExit``) for config-file problems: an unreadable or sectioned file, unknown
    keys, values of the wrong type.
    """

    def __init__(self, dataclass_types: Sequence[type], *, config_file: bool = True, **kwargs: Any) -> None:
        self._fields = {f.name: f for t in dataclass_types for f in dataclasses.fields(t) if f.init}
        self._positional = any(f.metadata.get("positional") for f in self._fields.values())
        self._config_file = config_file
        super().__init__(list(dataclass_types), **kwargs)
        if config_file:  # read by parse_command before argparse sees the flags; listed in --help
            self.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                              help="A flat YAML file of these options (its keys are the option names, with "
                                   "underscores); flags override it.")

    def _parse_dataclass_field(self, parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        if field.metadata.get("cli") is False:  # set by the command itself: no option, its default
            parser.set_defaults(**{field.name: _field_default(field)})
            return
        nested = _nested_default(field)
        options = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
        aliases = list(field.metadata.get("aliases", []))
        help_text = field.metadata.get("help")
        if field.metadata.get("positional"):  # command line only; a list takes one or more
            parser.add_argument(field.name, nargs="+" if _is_string_sequence(field.type) else None,
                                choices=field.metadata.get("choices"), metavar=field.metadata.get("metavar"),
                                help=help_text)
            return
        if _is_string_sequence(field.type):  # items, or comma-separated (the command or its config splits them)
            parser.add_argument(*options, *aliases, dest=field.name, action=_ListAction, type=str,
                                nargs=None if self._positional else "+", default=_field_default(field),
                                metavar=field.metadata.get("metavar"), help=help_text)
            return
        if self._positional and _is_bool(field.type) and field.default in (False, None):  # a switch: takes no value
            parser.add_argument(*options, *aliases, dest=field.name, action="store_true", default=field.default,
                                help=help_text)
            return
        if nested is None and not field.metadata.get("json"):
            if any(key in field.metadata for key in _OWN_METADATA):
                field = _with_metadata(field, {k: v for k, v in field.metadata.items() if k not in _OWN_METADATA})
            return HfArgumentParser._parse_dataclass_field(parser, field)
        what = "a mapping of its fields (JSON on the command line)" if nested is not None else \
            "a name, or a mapping (JSON on the command line)"

        def convert(text: str) -> Any:  # a flag's mapping goes over what the config file set (the action's default)
            try:
                return _nested_value(field, _json_or_text(text), action.default)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None

        action = parser.add_argument(*options, *aliases, dest=field.name, type=convert,
                                     default=_field_default(field), help=f"{help_text or ''} [{what}]")

    def parse_command(self, argv: Sequence[str] | None, defaults: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """The dataclasses from ``defaults`` (the command's own), then ``--config FILE``, then the flags."""
        argv = list(argv or [])
        values = dict(defaults or {})
        for i, arg in enumerate(argv if self._config_file else []):
            if arg == "--config" or arg.startswith("--config="):
                path = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
                if not path or path.startswith("--"):
                    raise ValueError("--config needs a file")
                argv = argv[:i] + argv[i + (1 if "=" in arg else 2):]
                values.update(read_config_file(path))
                break
        positional = sorted(set(values) & {a.dest for a in self._actions if not a.option_strings})
        if positional:
            raise ValueError(f"config key {positional[0]!r}: a positional argument, given on the command line only")
        known = {action.dest for action in self._actions} - {"help", "config"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        typed = _typed_config_values(self, values)
        for action in self._actions:  # a required option the file gives is no longer required on the command line
            if action.required and action.dest in typed and typed[action.dest] is not None:
                action.required = False
        self.set_defaults(**{key: _nested_value(self._fields[key], value) if key in self._fields else value
                             for key, value in typed.items()})
        try:
            return self.parse_args_into_dataclasses(args=argv)
        except TypeError as err:  # a value of the wrong type met by a config's own checks
            raise ValueError(f"invalid settings: {err}") from err


def parse_command(types: Sequence[type], argv: Sequence[str] | None, *, prog: str | None = None,
                  description: str | None = None, defaults: dict[str, Any] | None = None,
                  config_file: bool = True) -> tuple[Any, ...]:
    """Parse a command's ``argv`` (with ``--config FILE``) into instances of ``types`` (see :class:`CommandParser`).

    ``config_file=False``: ``--config`` is not a flags file (the command may use it for something else).
    """
    parser = CommandParser(types, prog=prog, description=description, config_file=config_file,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_command(argv, defaults)


def _with_metadata(field: dataclasses.Field, metadata: dict[str, Any]) -> dataclasses.Field:
    """A copy of ``field`` with other metadata (the dataclass's own field is left as it is)."""
    import copy

    clone = copy.copy(field)
    clone.metadata = types.MappingProxyType(metadata)
    return clone


def _value_action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action | None:
    """The action that parses a value for ``dest`` (not the ``--no_<flag>`` switch of a boolean)."""
    actions = [a for a in parser._actions if a.dest == dest]
    return next((a for a in actions if callable(a.type)), actions[0] if actions else None)


def _typed_config_values(parser: argparse.ArgumentParser, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` from a config file, each converted as its flag would be, or a ``ValueError`` naming the key.

    argparse converts only string defaults, so without this a YAML list or mapping given for a number or a boolean
    would reach the dataclasses unchecked and fail late (after the model is loaded) or not at all.
    """
    return {key: _typed_config_value(_value_action(parser, key), key, value) for key, value in values.items()}


def _typed_config_value(action: argparse.Action | None, key: str, value: Any) -> Any:
    """One config value converted by its flag's type (see :func:`_typed_config_values`); ``None`` is kept."""
    if action is None or value is None:
        return value
    convert = action.type if callable(action.type) else (
        string_to_bool if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) else None)
    if convert not in (int, float, string_to_bool) and not action.choices:
        return value  # strings, mappings and other structured values are the dataclasses' to check
    expected = {int: "an integer", float: "a number", string_to_bool: "true or false"}.get(convert, "a value")
    if action.nargs in ("+", "*") and isinstance(value, (list, tuple)):
        items = {int: "integers", float: "numbers", string_to_bool: "booleans"}.get(convert, "values")
        return [_convert_scalar(convert, action, key, v, f"a list of {items}") for v in value]
    if action.nargs in ("+", "*") and isinstance(value, str):
        return value  # one item for a list field: the dataclass splits or wraps it
    return _convert_scalar(convert, action, key, value, expected)


def _convert_scalar(convert: Any, action: argparse.Action, key: str, value: Any, expected: str) -> Any:
    """``value`` converted by ``convert`` (a flag's type) and checked against the flag's choices."""
    wrong = ValueError(f"config key {key!r}: expected {expected}, got {value!r}")
    if isinstance(value, (list, dict, tuple)) or (isinstance(value, bool) and convert in (int, float)):
        raise wrong
    if isinstance(value, float) and convert is int and not value.is_integer():
        raise wrong
    try:
        if convert is string_to_bool:
            value = value if isinstance(value, bool) else string_to_bool(str(value))
        elif convert is not None and (isinstance(value, str) or convert in (int, float)):
            value = convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise wrong from None
    if action.choices and value not in action.choices:
        raise ValueError(f"config key {key!r}: expected one of {list(action.choices)}, got {value!r}")
    return value


def load_training_dataset(path: str, split: str = "train", required_columns: tuple[str, ...] = ()):
    """The training split of a recipe run folder (its ``dataset/``), a saved DatasetDict or Dataset folder, a
    Parquet/JSON(L)/CSV file, or a Hub dataset written ``hf://owner/name`` (a path without ``hf://`` is always
    local, so a mistyped folder is an error, never a download of someone else's dataset).

    Raises:
        FileNotFoundError: ``path`` is neither on disk nor an ``hf://`` id.
        ValueError: the split is missing, the file type unknown, or a ``required_columns`` column is missing
            (checked here, before any model is loaded).
    """
    import datasets

    from ..wvs.loaders import hub_dataset_id

    p = Path(path)
    repo_id = hub_dataset_id(str(path))
    if repo_id is not None:
        table = datasets.load_dataset(repo_id, split=split)
    elif (p / "dataset" / "dataset_dict.json").is_file() or (p.is_dir() and (p / "dataset_dict.json").is_file()):
        p = p / "dataset" if (p / "dataset" / "dataset_dict.json").is_file() else p
        saved = datasets.load_from_disk(str(p))
        if split not in saved:
            raise ValueError(f"{p}: no split {split!r} (has {', '.join(saved)})")
        table = saved[split]
    elif p.is_dir() and (p / "dataset_info.json").is_file():
        table = datasets.load_from_disk(str(p))
    elif p.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(p.suffix)
        if kind is None:
            raise ValueError(f"{p}: unsupported dataset file type {p.suffix!r}")
        table = datasets.load_dataset(kind, data_files=str(p), split="train")
    elif p.is_dir():
        raise ValueError(f"{p}: not a saved dataset or recipe run folder (no dataset_dict.json or dataset_info.json)")
    else:
        raise FileNotFoundError(f"{path}: no such file or folder (a Hub dataset is written hf://owner/name)")
    missing = [c for c in required_columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: the training data has no column {', '.join(missing)} (it has "
                         f"{', '.join(table.column_names)})")
    return table


def hold_out_split(dataset, fraction: float, seed: int, *, group_column: str | None = None,
                   stratify_column: str | None = None):
    """``(train, held_out)``: ``fraction`` of ``dataset`` held out for evaluation, whole groups at a time.

    Rows sharing a value of ``group_column`` (e.g. the two perspectives of one CLCA dialogue, ``dialogue_id``) land
    on the same side; without it (or when the dataset lacks the column) every row is its own group. With
    ``stratify_column`` (e.g. ``culture``), each of its values holds out ``ceil(fraction x its groups)`` groups, so
    every culture is evaluated; a group spanning several strata counts in the first one it appears in. Both sides
    keep the dataset's row order. The groups drawn depend only on ``seed`` and the sorted group values.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a stratum with fewer than two groups (it cannot be split).
    """
    import math

    import numpy as np

    if not 0 < fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {fraction}")
    columns = dataset.column_names
    groups = [g if g is not None else ("row", i) for i, g in enumerate(dataset[group_column])] \
        if group_column in columns else list(range(len(dataset)))  # a row without a group value: its own group
    strata = dataset[stratify_column] if stratify_column in columns else [None] * len(dataset)
    stratum_of: dict[Any, Any] = {}
    for group, stratum in zip(groups, strata):
        stratum_of.setdefault(group, stratum)
    rng = np.random.default_rng(seed)
    held_out: set[Any] = set()
    for stratum in sorted({s for s in stratum_of.values()}, key=str):
        members = sorted((g for g, s in stratum_of.items() if s == stratum), key=str)
        if len(members) < 2:
            where = f"{stratify_column} {stratum!r}" if stratum is not None else "the dataset"
            unit = f"{group_column} value" if group_column in columns else "row"
            raise ValueError(f"cannot hold out part of {where}: it has {len(members)} {unit}(s)")
        n = min(math.ceil(fraction * len(members)), len(members) - 1)
        held_out.update(members[i] for i in rng.permutation(len(members))[:n])
    test = [i for i, g in enumerate(groups) if g in held_out]
    train = [i for i, g in enumerate(groups) if g not in held_out]
    return dataset.select(train), dataset.select(test)
