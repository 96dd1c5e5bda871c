"""Uploads: a built corpus, adapter folders with their cards, the metric as an ``evaluate`` Space.

Every upload is one ``HfApi.upload_folder`` call of a staging folder that holds exactly the files to push (links to
the local files, and the freshly rendered cards), so nothing else of the user's folder goes up and the local folder
is only changed once the upload succeeded (its cards, and the evaluation they show). Tests check the calls against a
mocked ``HfApi``.

One call is one commit for what these folders hold; with ``hf_xet`` installed, ``huggingface_hub`` splits an upload
of more than 250 files (or one still uploading after 5 minutes) into several commits, the deletions of stale files
riding the first (its ``upload_folder`` documentation): a corpus of thousands of Parquet shards is not pushed
atomically.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, HfApi
from transformers.utils import logging

from ..cards.model_card import (
    EVALUATION_FILE,
    RecipeInfo,
    Report,
    adapter_model_card,
    card_evaluation,
    read_json,
)
from ..redaction import pickled_secrets
from .adapter_folders import ISO3, adapter_card_from_folder, folder_recipe

logger = logging.get_logger(__name__)

__all__ = ["push_adapter", "push_dataset", "push_metric", "upload_files"]


def _api(api: HfApi | None, token: str | None) -> HfApi:
    return api if api is not None else HfApi(token=token)


def upload_files(api: HfApi, repo_id: str, files: Mapping[str, Path | bytes], *, repo_type: str, message: str,
                 token: str | None = None, revision: str | None = None,
                 delete_patterns: Sequence[str] | None = None) -> Any:
    """Upload ``files`` (``{path in repo: local file or content}``) to ``repo_id`` with one ``upload_folder`` call
    of a staging folder holding exactly them (local files as symbolic links). ``delete_patterns``: remote files
    matching them and not uploaded now are deleted in the same commit. Returns what ``upload_folder`` returns."""
    with tempfile.TemporaryDirectory(prefix="culture-align-upload-") as staging:
        root = Path(staging)
        for rel, source in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
                continue
            try:
                os.symlink(Path(source).resolve(), target)
            except OSError:  # no symbolic links here (e.g. Windows without the privilege): a copy
                shutil.copy2(source, target)
        return api.upload_folder(repo_id=repo_id, folder_path=staging, repo_type=repo_type, commit_message=message,
                                 token=token, revision=revision,
                                 delete_patterns=list(delete_patterns) if delete_patterns else None)


# ---------------------------------------------------------------------------------------------- corpora
def _card_data_files(folder: Path, card: DatasetCard) -> dict[str, Path]:
    """``{path in repo: local file}`` of the data files the card's ``configs`` list (glob patterns expanded; a
    config without ``data_files``: its folder's Parquet files). No other file of the folder is uploaded."""
    files: dict[str, Path] = {}
    for entry in card.data.get("configs") or []:
        patterns = [p for d in entry.get("data_files") or [] for p in
                    ([d["path"]] if isinstance(d.get("path"), str) else d.get("path") or [])]
        for pattern in patterns or [f"{entry['config_name']}/*.parquet"]:
            if any(c in pattern for c in "*?["):
                matches = sorted(p for p in folder.glob(pattern) if p.is_file())
            elif (folder / pattern).is_file():
                matches = [folder / pattern]
            else:
                raise FileNotFoundError(f"{folder}: the card lists {pattern}, which is not there; build the "
                                        "corpus again")
            files.update({p.relative_to(folder).as_posix(): p for p in matches})
    return files


def push_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    api: HfApi | None = None,
) -> Any:
    """Upload a corpus built by :func:`culture_align.builders.build_corpus` (``README.md`` + the Parquet files
    its card lists, nothing else of the folder) to a dataset repo, in one commit; Parquet files of an earlier
    push that this build no longer has are deleted.

    Args:
        folder: The built folder.
        repo_id: ``"user/name"``; created when missing.
        private: Visibility of a new repo (None: the Hub's default).
        token: Hub token (default: the logged-in one).
        commit_message: Default ``"Upload <pretty name> (configs ...) built with culture-align"``.
        revision: Branch to commit to.
        api: An ``HfApi`` to use (tests pass a mock).

    Returns:
        What ``HfApi.upload_folder`` returns (the commit).
    """
    folder = Path(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        raise FileNotFoundError(f"{folder}: no README.md; build it first (culture-align build-dataset)")
    card = DatasetCard.load(readme)
    configs = [c["config_name"] for c in (card.data.get("configs") or [])]
    files = {"README.md": readme, **_card_data_files(folder, card)}
    if len(files) == 1:
        raise ValueError(f"{folder}: the card lists no config with Parquet files")
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    name = card.data.get("pretty_name") or folder.name
    message = commit_message or f"Upload {name} (configs: {', '.join(configs)}) built with culture-align"
    return upload_files(api, repo_id, files, repo_type="dataset", message=message, token=token, revision=revision,
                        delete_patterns=["*.parquet"])


# ---------------------------------------------------------------------------------------------- adapters
_SKIP_UPLOAD = ("checkpoint-*", "runs", "_*", ".*", "__pycache__", "*.pyc")
_TRAINING_ARGS = "training_args.bin"


def _free_of_secrets(path: Path) -> bool:
    """False (with a warning naming the file) for a ``training_args.bin`` that holds a Hub token or cannot be
    checked for one; True for it when clean, and for every other file."""
    if path.name != _TRAINING_ARGS:
        return True
    try:
        secrets = pickled_secrets(path)
    except (ValueError, OSError) as err:
        logger.warning(f"{path}: not uploaded, since it cannot be checked for a Hub token ({err})")
        return False
    if secrets:
        logger.warning(f"{path}: not uploaded, since it holds {', '.join(secrets)} (a run that saved its "
                       "TrainingArguments with a token). Delete the file, and revoke the token if it was shared.")
        return False
    return True


def _adapter_files(folder: Path) -> dict[str, Path]:
    """``{path in repo: local path}`` of an adapter folder, without checkpoints, logs, hidden files and any
    ``training_args.bin`` holding a token."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(fnmatch.fnmatchcase(part, pattern) for part in rel.parts
                                      for pattern in _SKIP_UPLOAD) and _free_of_secrets(path):
            files[rel.as_posix()] = path
    return files


def _culture_adapters(folder: Path) -> dict[str, Path]:
    """``{ISO3: subfolder}`` of a specific-mode folder (one adapter per culture subfolder)."""
    return {sub.name: sub for sub in sorted(folder.iterdir())
            if sub.is_dir() and ISO3.match(sub.name) and (sub / "adapter_config.json").is_file()}


def push_adapter(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    per_culture_repos: bool = False,
    recipe: str | None = None,
    report: Report | None = None,
    datasets_used: Sequence[str] = (),
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> list[str]:
    """Upload an adapter folder with its model card.

    ``folder`` is one adapter (``adapter_config.json``) or a specific-mode folder with one adapter per culture in
    ``<ISO3>/`` subfolders. Specific mode goes to one repo with a subfolder per culture (each with its card, plus
    an overview card at the root), or with ``per_culture_repos=True`` to one repo per culture: ``repo_id`` with
    ``{culture}`` replaced by the ISO3 code, or ``<repo_id>-<iso3 lowercase>``.

    Every card is rendered again from the folder's data (:func:`adapter_card_from_folder`: the PEFT config, the
    trainer's ``training_info.json``, the ``report`` or the evaluation kept from an earlier push) for the repo it
    goes to. The cards (and a new ``report``'s summary, kept locally in ``wvs_evaluation.json`` for later pushes) are
    written to the folder only once the upload succeeded: a failed push leaves the local files as they were. A
    ``training_args.bin`` holding a Hub token is left out (with a warning).

    Returns:
        The repo ids pushed to.
    """
    folder = Path(folder)
    api = _api(api, token)
    single = (folder / "adapter_config.json").is_file()
    adapters = {} if single else _culture_adapters(folder)
    if not single and not adapters:
        raise FileNotFoundError(f"{folder}: neither an adapter (adapter_config.json) nor a folder of per-culture "
                                "adapters (<ISO3>/adapter_config.json)")
    evaluation = card_evaluation(report)

    def rendered(adapter: Path, target: str, subfolder: str | None = None) -> tuple[RecipeInfo, dict[str, bytes]]:
        """The recipe and the files to write for ``adapter`` (its card and kept evaluation; nothing written)."""
        used = folder_recipe(adapter, recipe)
        card = adapter_card_from_folder(adapter, recipe=used.key, report=evaluation, repo_id=target,
                                        subfolder=subfolder, datasets_used=datasets_used)
        files = {"README.md": str(card).encode("utf-8")}
        if evaluation is not None:
            files[EVALUATION_FILE] = (json.dumps(evaluation, indent=1, default=str) + "\n").encode("utf-8")
        return used, files

    def commit(target: str, root: Path, written: dict[str, bytes], message: str) -> None:
        """Upload ``root`` with the cards of ``written`` in one commit; then (only then) write ``written`` into
        ``root`` (the kept evaluation stays local: the card's ``model-index`` holds it on the Hub)."""
        api.create_repo(target, repo_type="model", private=private, exist_ok=True, token=token)
        files = {**_adapter_files(root), **written}
        files = {rel: source for rel, source in files.items() if Path(rel).name != EVALUATION_FILE}
        upload_files(api, target, files, repo_type="model", message=message, token=token)
        for rel, content in written.items():
            (root / rel).write_bytes(content)

    if single:
        used, files = rendered(folder, repo_id)
        commit(repo_id, folder, files, commit_message or f"Upload culture-align {used.key} adapter")
        return [repo_id]
    if per_culture_repos:
        from ..prompts.templates import check_placeholders

        check_placeholders(repo_id, ("culture",), "repo_id")  # before the first upload, not in the middle
        pushed = []
        for culture, sub in adapters.items():
            target = repo_id.format(culture=culture) if "{culture}" in repo_id else f"{repo_id}-{culture.lower()}"
            used, files = rendered(sub, target)
            commit(target, sub, files, commit_message or f"Upload culture-align {used.key} adapter for {culture}")
            pushed.append(target)
        return pushed
    used, written = None, {}
    for culture, sub in adapters.items():
        used, files = rendered(sub, repo_id, subfolder=culture)
        written.update({f"{culture}/{rel}": content for rel, content in files.items()})
    first = read_json(next(iter(adapters.values())) / "adapter_config.json")
    overview = adapter_model_card(recipe=used, base_model=first.get("base_model_name_or_path"), cultures=list(adapters),
                                  adapter_config=first, report=evaluation, repo_id=repo_id,
                                  model_name=repo_id.split("/")[-1], subfolders=list(adapters))
    written["README.md"] = str(overview).encode("utf-8")
    # the culture subfolders, the overview card and any index file beside them
    commit(repo_id, folder, written, commit_message or f"Upload culture-align {used.key} adapters for "
                                                       f"{', '.join(adapters)} (one subfolder per culture)")
    return [repo_id]


# ---------------------------------------------------------------------------------------------- the metric
_METRIC_FILES = ("README.md", "app.py", "requirements.txt")


def push_metric(
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> Any:
    """Publish the ``wvs_alignment`` metric as an ``evaluate`` Space (Gradio SDK): the module, its card (with the
    Space YAML header), ``requirements.txt`` and ``app.py``. Afterwards ``evaluate.load(repo_id)`` works.

    Returns:
        What ``HfApi.upload_folder`` returns (the commit).
    """
    from huggingface_hub import SpaceCard

    from ..metric import METRIC_NAME, alignment_metric_path

    folder = alignment_metric_path()
    names = (f"{METRIC_NAME}.py", *_METRIC_FILES)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: the metric Space needs {', '.join(missing)}")
    space = SpaceCard.load(folder / "README.md").data
    if space.get("sdk") != "gradio" or space.get("app_file") != "app.py":
        raise ValueError(f"{folder / 'README.md'}: the Space header must say sdk: gradio and app_file: app.py")
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, token=token)
    return upload_files(api, repo_id, {n: folder / n for n in names}, repo_type="space", token=token,
                        message=commit_message or f"Upload the {METRIC_NAME} evaluate metric (culture-align)")

