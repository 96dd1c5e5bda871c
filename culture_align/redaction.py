"""Keeping secrets out of what culture-align logs, raises, caches, records and uploads.

- :func:`redact_url`: a server URL (or any text holding URLs, such as an error message) with its credentials
  replaced by ``***``: the userinfo (``user:password@``) and the values of secret-looking query or fragment
  parameters (``token=``, ``api_key=``, ``access_token=``, ``sig=``, ...). Every URL a backend logs, raises,
  caches or writes into provenance and ``stats.json`` goes through it; HTTP requests use the real URL.
- :func:`redact_error`: the same, in place, on an exception's message and on the exceptions it chains to.
- :class:`SecretFreePickleMixin`: for the trainers' ``TrainingArguments`` subclasses. Their pickled form (what
  ``Trainer`` writes to ``training_args.bin`` with ``torch.save``) leaves the Hub token out; the object in memory
  keeps it, so ``push_to_hub`` still authenticates.
- :func:`pickled_secrets`: the token fields a ``torch.save`` file (``training_args.bin``) holds, found by reading
  its pickle opcodes: nothing is unpickled, so no code in the file runs. ``culture-align push adapter`` uses it
  to leave out a ``training_args.bin`` written with a token (by another trainer or an older version).
"""

from __future__ import annotations

import copy
import io
import os
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "redact_url", "redact_error", "is_secret_name", "SecretFreePickleMixin", "pickled_secrets"]

REDACTED = "***"
"""What stands in for a removed credential."""

# The last ``_``-separated part of a normalised parameter name that marks it secret (``api_key``, ``x-api-key``,
# ``access_token``, ``X-Amz-Signature``, ``client_secret``, ``sig`` of Azure SAS URLs, ...).
_SECRET_PARTS = frozenset({
    "token", "key", "apikey", "secret", "password", "passwd", "passphrase", "pwd", "pass", "auth",
    "authorization", "signature", "sig", "credential", "credentials", "jwt", "bearer", "session", "sessionid",
})
# Whole names that are secret although their last part is not (Azure Functions keys, session ids).
_SECRET_NAMES = frozenset({"code", "sid", "hf_token", "apitoken", "accesstoken", "authtoken"})

# A URL ends at whitespace, quotes, angle brackets and ``|`` (never unencoded in a URL; ``model_id`` joins the
# server URL and the model name with it).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"<>|]*)@")
_PARAM = re.compile(r"(?P<sep>[?&;#])(?P<name>[^=&#?;/\s'\"<>|]+)=(?P<value>[^&#;\s'\"<>|]*)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """True for a parameter name that holds a credential: ``token``, ``api_key``, ``apiKey``, ``X-Api-Key``,
    ``access_token``, ``client_secret``, ``password``, ``sig``, ``X-Amz-Signature``, ``code``, ...

    The name is percent-decoded, split at camel-case boundaries, lower-cased and split on ``_``, ``-`` and
    ``.``; it is secret when its last part (or the whole name) is one of the known credential words.
    """
    normal = _CAMEL.sub("_", unquote_plus(name)).lower()
    parts = [p for p in re.split(r"[_\-.\s]+", normal) if p]
    if not parts:
        return False
    return "_".join(parts) in _SECRET_NAMES or "".join(parts) in _SECRET_NAMES or parts[-1] in _SECRET_PARTS


def redact_url(text: str) -> str:
    """``text`` (a URL, or any text holding URLs) with every credential replaced by ``***``.

    Removed: the userinfo of ``scheme://user:password@host`` (the whole of it: a lone user name is often the
    token) and the value of every query or fragment parameter whose name :func:`is_secret_name` calls secret
    (``?token=``, ``&api_key=``, ``#access_token=``, ...). Everything else is kept character for character, so a
    URL without credentials comes back unchanged (cache keys built from it stay the same).

    Examples:
        >>> redact_url("https://user:pw@example.org:8000/v1?api_key=abc&model=x")
        'https://***@example.org:8000/v1?api_key=***&model=x'
    """
    if not isinstance(text, str) or not text:
        return text
    out = _USERINFO.sub(lambda m: f"{m['head']}{REDACTED}@", text)

    def param(m: re.Match[str]) -> str:
        if not is_secret_name(m["name"]) or not m["value"]:
            return m[0]
        return f"{m['sep']}{m['name']}={REDACTED}"

    return _PARAM.sub(param, out)


def redact_error(error: BaseException) -> BaseException:
    """Redact (in place) the text of ``error`` and of every exception it chains to (``__cause__``,
    ``__context__``): string ``args``, a string ``message`` attribute and ``__notes__``. The exception keeps its
    type, so callers still tell errors apart. Returns ``error``."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _redact_exception_text(current)
        pending += [linked for linked in (current.__cause__, current.__context__) if linked is not None]
    return error


def _redact_exception_text(error: BaseException) -> None:
    """Redact one exception's string ``args``, ``message`` and ``__notes__`` in place."""
    args = tuple(redact_url(a) if isinstance(a, str) else a for a in error.args)
    if args != error.args:
        error.args = args
    message = getattr(error, "message", None)
    if isinstance(message, str) and redact_url(message) != message:
        try:
            error.message = redact_url(message)  # type: ignore[attr-defined]
        except AttributeError:  # a read-only property
            pass
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact_url(n) if isinstance(n, str) else n for n in notes]


# ----------------------------------------------------------------------------------------------------------
# training_args.bin
# ----------------------------------------------------------------------------------------------------------

_PICKLED_SECRET_FIELDS = ("hub_token",)
"""``TrainingArguments`` fields left out of the pickled state (set to None)."""


class SecretFreePickleMixin:
    """Mix into a ``TrainingArguments`` dataclass so that its pickle carries no Hub token.

    ``Trainer`` saves its arguments with ``torch.save(self.args, "training_args.bin")`` next to every checkpoint
    and saved model, and uploads that file with them. With this mixin the pickled state has ``hub_token=None``
    (and no ``token`` in ``model_init_kwargs``), so the token never reaches the disk or the Hub; the object in
    memory keeps it (``copy.copy`` and ``copy.deepcopy`` too), so ``push_to_hub`` still works. A process that
    unpickles the arguments (``torch.load``) gets them without the token and must log in itself.
    """

    def __getstate__(self) -> dict[str, Any]:
        """The instance ``__dict__`` with the token fields set to None."""
        state = dict(self.__dict__)
        for name in _PICKLED_SECRET_FIELDS:
            if state.get(name) is not None:
                state[name] = None
        init_kwargs = state.get("model_init_kwargs")
        if isinstance(init_kwargs, dict) and isinstance(init_kwargs.get("token"), str):
            state["model_init_kwargs"] = {**init_kwargs, "token": None}
        return state

    def __copy__(self) -> Any:
        """A shallow copy that keeps the token (``copy.copy`` would otherwise go through ``__getstate__``)."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A deep copy that keeps the token (``copy.deepcopy`` would otherwise go through ``__getstate__``)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


_TOKEN_KEYS = frozenset({"hub_token", "push_to_hub_token", "token", "use_auth_token", "hf_token"})
"""Keys whose (string) value in a pickled ``TrainingArguments`` is a credential."""
_HF_TOKEN = re.compile(r"^hf_[A-Za-z0-9]{20,}$")
_STRING_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                         "BINUNICODE8"})
_MEMO_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NOT_SECRET_OPS = frozenset({"NONE", "NEWTRUE", "NEWFALSE"})
_MISSING = object()


def _pickle_streams(path: Path) -> list[bytes]:
    """The pickle bytes of a ``torch.save`` file: ``*/data.pkl`` of the zip format, else the whole file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not names:
                raise ValueError(f"{path}: a zip file without data.pkl (not written by torch.save)")
            return [archive.read(n) for n in names]
    return [path.read_bytes()]


def _pickle_values(data: bytes, path: Path) -> list[tuple[str, Any]]:
    """``(opcode name, string value or _MISSING)`` of every value-pushing opcode of the pickles in ``data``
    (memo gets resolved to the strings they repeat; memo puts left out)."""
    stream = io.BytesIO(data)
    values: list[tuple[str, Any]] = []
    memo: dict[int, Any] = {}
    last: Any = _MISSING
    try:
        while stream.tell() < len(data):
            for op, arg, _ in pickletools.genops(stream):
                if op.name in _MEMO_PUT_OPS:
                    memo[len(memo) if op.name == "MEMOIZE" else arg] = last
                    continue
                if op.name in _MEMO_GET_OPS:
                    last = memo.get(arg, _MISSING)
                    values.append(("GET", last))
                    continue
                last = arg if op.name in _STRING_OPS and isinstance(arg, str) else _MISSING
                values.append((op.name, last))
    except (ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable pickle ({err})") from None
    return values


def pickled_secrets(path: str | os.PathLike) -> list[str]:
    """The credentials a ``torch.save`` file (``training_args.bin``) holds: the names of token fields with a
    string value (``hub_token``, ``token`` in ``model_init_kwargs``, ...) and ``"a Hugging Face token"`` for any
    other string shaped like one (``hf_...``). Empty when the file holds none.

    The file's pickle opcodes are read with ``pickletools``; nothing is unpickled, so no code in it runs.

    Raises:
        ValueError: the file is not a pickle or a ``torch.save`` archive (it cannot be checked).
    """
    path = Path(path)
    found: list[str] = []
    for data in _pickle_streams(path):
        values = _pickle_values(data, path)
        for i, (_, value) in enumerate(values):
            if not isinstance(value, str):
                continue
            if value in _TOKEN_KEYS and i + 1 < len(values):
                op, following = values[i + 1]
                if op not in _NOT_SECRET_OPS and following != "" and value not in found:
                    found.append(value)
            elif _HF_TOKEN.match(value) and "a Hugging Face token" not in found:
                found.append("a Hugging Face token")
    return found
