"""Checks of command-line arguments made before any data set or model is loaded.

Each raises ``ValueError`` naming the flag or setting and the cause, so that the command line reports one line and
exits with status 2 instead of failing after minutes of compute (a ``--out`` that is a file, a batch size of -3, a
model folder that does not exist).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["check_at_least", "check_backend_spec", "check_model_reference", "check_output_dir",
           "check_training_args"]


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse an output folder that cannot be created or written: ``path`` is a file, one of its parents is a
    file, or the nearest existing folder on its way is not writable. Returns ``path`` as a ``Path``."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path}: exists and is not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {existing} is not writable")
    return path


def check_at_least(name: str, value: Any, minimum: int = 1) -> None:
    """Refuse a count below ``minimum`` (batch sizes, samples, examples): ``name`` is the flag or setting."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a local path (a Hub id is ``name`` or ``owner/name``)."""
    return (os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\")) or name in (".", "..")
            or name.count("/") > 1 or "\\" in name)


def check_model_reference(name: Any, what: str = "--model", marker: str = "config.json") -> None:
    """Refuse a model (or adapter) that cannot be loaded, before loading anything.

    An embedded alias passes; a local folder must hold ``marker`` (``config.json``, or ``adapter_config.json`` for
    an adapter); a name that can only be a path must exist; a Hub id must be in the local Hub cache when the Hub is
    offline (``HF_HUB_OFFLINE``). Online, a Hub id is checked when it is loaded. Non-string values (a loaded model
    in a backend spec) pass.
    """
    if not isinstance(name, (str, os.PathLike)):
        return
    from ..embedded_models import EMBEDDED_MODELS

    text = os.fspath(name)
    if text.lower() in EMBEDDED_MODELS:
        return
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} {text}: a file, not a model folder")
        if not (path / marker).is_file():
            raise ValueError(f"{what} {text}: no {marker} in this folder")
        return
    if _looks_like_path(text):
        raise ValueError(f"{what} {text}: no such folder")
    _check_hub_id(text, what, marker)


def _check_hub_id(repo_id: str, what: str, marker: str) -> None:
    """Refuse an invalid Hub id, and (offline) one whose ``marker`` file is not in the local Hub cache."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(repo_id, marker)
    except HFValidationError as err:
        raise ValueError(f"{what} {repo_id}: neither a local folder nor a valid Hub id ({err})") from None
    if constants.HF_HUB_OFFLINE and not isinstance(cached, str):
        raise ValueError(f"{what} {repo_id}: not a local folder, and not in the Hub cache while the Hub is offline "
                         "(HF_HUB_OFFLINE is set)")


def check_backend_spec(role: str, spec: Any) -> None:
    """Refuse a generation backend spec (``teacher:``, ``judge:``, ...) that cannot build a backend: not a model
    name or a mapping, settings the backend does not take, or (``transformers``) a model that cannot be loaded."""
    if spec is None:
        return
    if isinstance(spec, str):
        spec = {"backend": "transformers", "model": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"`{role}`: a backend is a model name or a mapping with `backend` and `model`, got "
                         f"{type(spec).__name__}")
    kind = spec.get("backend", "transformers")
    if "model" not in spec:
        raise ValueError(f"`{role}`: a backend needs a `model`")
    backend_class = _backend_class(kind)
    if backend_class is not None:
        _check_signature(role, backend_class, spec)
    if kind == "transformers":
        check_model_reference(spec["model"], f"`{role}` model")


def _backend_class(kind: str) -> type | None:
    """The backend class of a spec's ``backend`` whose constructor can be checked without optional packages."""
    if kind == "transformers":
        from ..backends.transformers import TransformersBackend

        return TransformersBackend
    if kind in ("openai", "openai_compatible", "openai-compatible"):
        from ..backends.openai_compatible import OpenAICompatibleBackend

        return OpenAICompatibleBackend
    return None  # vllm takes any of vLLM's arguments; an unknown kind is refused by the factory


def _check_signature(role: str, backend_class: type, spec: Mapping[str, Any]) -> None:
    """Refuse spec keys that ``backend_class`` does not take, called as the backend factory calls it (the
    transformers backend gets the model positionally)."""
    import inspect

    settings = {key: value for key, value in spec.items() if key != "backend"}
    args = (settings.pop("model"),) if spec.get("backend", "transformers") == "transformers" else ()
    try:
        inspect.signature(backend_class).bind(*args, **settings)
    except TypeError as err:
        raise ValueError(f"`{role}` backend settings {sorted(spec)}: {err}") from None
    if "batch_size" in settings:
        check_at_least(f"`{role}` batch_size", settings["batch_size"])


def check_training_args(training_args: Any, script_args: Any, model_name: Any) -> None:
    """Refuse, before the dataset or the model is loaded, training settings that cannot run: batch sizes and
    accumulation steps below 1, an evaluation share outside [0, 1), a missing checkpoint to resume from, an
    output folder that cannot be written, a model that cannot be loaded."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        check_at_least(name, getattr(training_args, name))
    if training_args.max_steps <= 0 and not training_args.num_train_epochs > 0:
        raise ValueError(f"num_train_epochs must be > 0 (or set max_steps), got {training_args.num_train_epochs}")
    fraction = script_args.eval_fraction
    if not 0 <= fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {fraction}")
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and not Path(resume).is_dir():
        raise ValueError(f"resume_from_checkpoint {resume}: no such checkpoint folder (or pass true: the last "
                         "checkpoint in output_dir)")
    check_output_dir(training_args.output_dir, "output_dir")
    check_model_reference(model_name, "model_name_or_path")
