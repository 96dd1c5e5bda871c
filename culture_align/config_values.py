"""Config dataclasses from plain values (a YAML section, a dict in an experiment config), checked field by field:
unknown keys and values of the wrong type are errors naming them; a field whose default is itself a dataclass
(``GenerationParams``) takes a dict of that dataclass's fields, applied over the default."""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from types import UnionType
from typing import Any

__all__ = ["dataclass_from_dict", "replace_from_dict"]


def dataclass_from_dict(cls: type, values: dict[str, Any], what: str | None = None) -> Any:
    """An instance of the config dataclass ``cls`` from plain values (a YAML section).

    A field whose default is itself a dataclass (``GenerationParams``) takes a dict of that
    dataclass's fields, applied over the default. Unknown keys raise ``ValueError`` naming them.
    """
    what = what or cls.__name__
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = _checked_values(cls, values, what)
    for key, value in kwargs.items():
        field = names[key]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type) and isinstance(value, dict):
            kwargs[key] = replace_from_dict(default, value, what, key)
    return _construct(cls, (), kwargs, f"{what} settings")


def replace_from_dict(default: Any, values: dict[str, Any], what: str, key: str) -> Any:
    """The dataclass instance ``default`` with ``values`` (a mapping of its fields, checked) applied over it.

    Args:
        what, key: Named in errors (``"CLCA pipeline setting roleplay_params.max_new_tokenz"``).
    """
    nested = _checked_values(type(default), values, what, prefix=f"{key}.")
    return _construct(dataclasses.replace, (default,), nested, f"{what} setting {key}")


def _construct(factory: Any, args: tuple, kwargs: dict[str, Any], what: str) -> Any:
    """``factory(*args, **kwargs)``; a ``TypeError`` (a value its own checks cannot use) becomes a ``ValueError``."""
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise ValueError(f"{what}: {err}") from err


def _checked_values(cls: type, values: dict[str, Any], what: str, prefix: str = "") -> dict[str, Any]:
    """``values`` for the dataclass ``cls``: unknown keys and values of the wrong type raise ``ValueError`` naming
    the key (after ``prefix``, the enclosing setting of a nested dataclass).

    A string given for a ``float`` field is read as a number (YAML reads ``1e-4`` as a string).
    """
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} settings: {', '.join(prefix + key for key in unknown)}")
    checked = {}
    for key, value in values.items():
        annotation = hints.get(key, Any)
        if isinstance(value, str) and _accepts(annotation, float) and not _accepts(annotation, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if not _matches(value, annotation):
            raise ValueError(f"{what} setting {prefix}{key}: expected {_type_name(annotation)}, got {value!r}")
        checked[key] = value
    return checked


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether ``annotation`` is ``kind`` or a union with it."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return kind in typing.get_args(annotation)
    return annotation is kind


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation``; annotations this does not know (callables, classes) accept anything.

    A dataclass-typed field also takes a mapping of its fields; a ``Sequence[str]`` also takes one string (the
    configs split comma-separated values).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation in (bool, str):
        return isinstance(value, annotation)
    if annotation in (int, float):
        return isinstance(value, (int, float) if annotation is float else int) and not isinstance(value, bool)
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, str):
            return origin is collections.abc.Sequence and args == (str,)
        element = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, element) for v in value)
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return isinstance(value, (annotation, dict))
    return True


def _type_name(annotation: Any) -> str:
    """A readable name of a type annotation (``int | None``, ``Sequence[str]``)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")
