"""CompletionCache / CachedBackend: persistence, torn last lines, no duplicates, and a real SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from culture_align.backends import (
    CachedBackend,
    CompletionCache,
    GenerationBackend,
    GenerationParams,
    request_key,
)


class CountingBackend(GenerationBackend):
    """Deterministic texts from the request key; records every conversation it is asked for."""

    model_id = "fake"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _generate(self, conversations, params):
        self.calls.append(len(conversations))
        return [request_key(self.model_id, c, params, k)[:10] for c in conversations for k in range(params.n)]


def _chats(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(count)]


def _keys(path: Path) -> list[str]:
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except (ValueError, KeyError):
            pass
    return keys


def test_cache_persists_across_instances(tmp_path):
    path = tmp_path / "sub" / "cache.jsonl"
    cache = CompletionCache(path)
    cache.put_many([("a", "m", "text a"), ("b", "m", "text b ✓\nsecond line")])
    again = CompletionCache(path)
    assert len(again) == 2 and again.get("b") == "text b ✓\nsecond line" and "a" in again
    assert again.get("zzz") is None


def test_truncated_last_line_is_ignored_and_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    good = json.dumps({"key": "a", "model": "m", "text": "A"})
    path.write_text(good + "\n" + '{"key": "b", "model": "m", "te', encoding="utf-8")  # killed mid-write
    cache = CompletionCache(path)
    assert len(cache) == 1 and "b" not in cache
    cache.put_many([("c", "m", "C")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == good and json.loads(lines[-1]) == {"key": "c", "model": "m", "text": "C"}
    reloaded = CompletionCache(path)
    assert len(reloaded) == 2 and reloaded.get("c") == "C"


_TORN_ROWS = [{"key": "k1", "model": "m", "text": "家庭很重要 — ✓"},
              {"key": "k2", "model": "m", "text": "Ça va 🙂 ok"},
              {"key": "k3", "model": "m", "text": "尊重长辈"}]


def test_a_line_cut_at_any_byte_is_skipped_and_counted_never_fatal(tmp_path):
    """A kill or a full disk may cut the file at any byte, inside a multi-byte UTF-8 character too: every
    complete line before the cut is kept, the torn one is skipped and counted, and the next append starts a
    fresh line that reads back."""
    lines = [json.dumps(row, ensure_ascii=False).encode("utf-8") for row in _TORN_ROWS]
    data = b"".join(line + b"\n" for line in lines)
    ends = [sum(len(x) + 1 for x in lines[:i]) + len(lines[i]) for i in range(len(lines))]  # objects' ends
    path = tmp_path / "cache.jsonl"
    assert sum(0x80 <= b < 0xC0 for b in data) > 10  # many cuts fall inside a character
    for n in range(len(data) + 1):
        path.write_bytes(data[:n])
        cache = CompletionCache(path)
        complete = sum(end <= n for end in ends)
        starts_of_partial = [end - len(line) for end, line in zip(ends, lines) if end > n]
        torn = bool(starts_of_partial) and starts_of_partial[0] < n
        assert len(cache) == complete, n
        assert cache.skipped == int(torn), n
        kept = _TORN_ROWS[:complete]
        assert [cache.get(row["key"]) for row in kept] == [row["text"] for row in kept], n
        cache.put_many([("new", "m", "新的 ✓")])
        again = CompletionCache(path)
        assert again.get("new") == "新的 ✓" and len(again) == complete + 1 and again.skipped == int(torn), n


def test_lines_that_are_not_completions_are_skipped_and_counted(tmp_path):
    path = tmp_path / "cache.jsonl"
    bad = [{"key": "a", "model": "m", "text": 5}, {"key": "b", "model": "m", "text": None}, {"key": "c"},
           {"key": 7, "model": "m", "text": "x"}, {"key": "d", "model": "m", "text": ["x"]},
           [1, 2], "text", 3]
    good = {"key": "e", "model": "m", "text": "fine"}
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in [*bad, good])
                     + b"\xff\xfe not utf-8\n" + b'{"key": "f", "text": "\xe5\xae\xb6"}\n')
    cache = CompletionCache(path)
    assert len(cache) == 2 and cache.get("e") == "fine" and cache.get("f") == "家"
    assert cache.skipped == len(bad) + 1
    assert all(cache.get(k) is None for k in "abcd")


def test_a_text_utf8_cannot_encode_is_stored_escaped(tmp_path):
    path = tmp_path / "cache.jsonl"
    CompletionCache(path).put_many([("a", "m", "lone \ud800 surrogate"), ("b", "m", "家")])
    again = CompletionCache(path)
    assert again.get("a") == "lone \ud800 surrogate" and again.get("b") == "家" and again.skipped == 0


def test_answer_cache_survives_a_torn_line(tmp_path):
    from culture_align.recipes.culturespa.answering import AnswerCache

    path = tmp_path / "answers_cache.jsonl"
    cache = AnswerCache(path)
    cache.put_many([("k1", "m", [-0.5, -1.0]), ("k2", "m", ["答案 3", "4"])])
    data = path.read_bytes()
    line = json.dumps({"key": "k3", "model": "m", "text": json.dumps(["答"], ensure_ascii=False)},
                      ensure_ascii=False).encode("utf-8")
    path.write_bytes(data + line[:line.index("答".encode()) + 2])  # killed inside 答
    again = AnswerCache(path)
    assert again.get("k1") == [-0.5, -1.0] and again.get("k2") == ["答案 3", "4"] and again.get("k3") is None
    assert again.store.skipped == 1


def test_no_duplicate_lines(tmp_path):
    path = tmp_path / "cache.jsonl"
    inner = CountingBackend()
    cached = CachedBackend(inner, path, chunk_size=2)
    params = GenerationParams(n=2)
    chats = _chats(5)
    first = cached.generate(chats, params)
    assert inner.calls == [2, 2, 1]  # misses go in chunks
    assert cached.generate(chats, params) == first
    assert inner.calls == [2, 2, 1]  # all hits
    assert cached.cache.hits == 5 and cached.cache.misses == 5
    # Part cached, part new, and a conversation repeated within one call: generated once, stored once.
    more = chats[3:] + _chats(7)[5:] + [chats[0], _chats(7)[6]]
    out = cached.generate(more, params)
    assert inner.calls[3:] == [2]
    assert out[-2:] == out[6:8] and out[:4] == first[6:]
    keys = _keys(path)
    assert len(keys) == len(set(keys)) == 14
    # A second cache object on the same file (another run) adds nothing either.
    other = CachedBackend(CountingBackend(), path)
    other.generate(more, params)
    assert len(_keys(path)) == 14


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time

    import torch

    torch.set_num_threads(1)
    from culture_align.backends import CachedBackend, GenerationBackend, GenerationParams, TransformersBackend

    model_dir, cache_path, out_path = sys.argv[1:4]
    pause = float(os.environ.get("CULTURE_ALIGN_TEST_PAUSE", "0"))


    class Paused(GenerationBackend):
        def __init__(self, inner):
            self.inner, self.model_id = inner, inner.model_id

        def _generate(self, conversations, params):
            time.sleep(pause)  # lets the test kill the run between (or during) chunks
            return self.inner.generate(conversations, params)


    backend = TransformersBackend(model_dir, model_id="tiny-llama", device="cpu", batch_size=3)
    cached = CachedBackend(Paused(backend), cache_path, chunk_size=4)
    chats = [[{"role": "user", "content": f"Question {i}: " + "family values " * (i % 5)}] for i in range(24)]
    texts = cached.generate(chats, GenerationParams(temperature=1.0, max_new_tokens=8, seed=11))
    with open(out_path, "w") as f:
        json.dump(texts, f)
    """
)


def _run_env(pause: float) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["CULTURE_ALIGN_TEST_PAUSE"] = str(pause)
    return env


def _run_to_end(script: Path, model_dir: Path, folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(script), str(model_dir), str(folder / "cache.jsonl"),
                    str(folder / "out.json")], env=_run_env(0), check=True, timeout=300, capture_output=True)
    return json.loads((folder / "out.json").read_text())


def _run_in_process(script: Path, model_dir: Path, folder: Path) -> list[str]:
    """The same script, uninterrupted, in this process (saves starting another interpreter)."""
    folder.mkdir(exist_ok=True)
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(script), str(model_dir), str(folder / "cache.jsonl"), str(folder / "out.json")]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    return json.loads((folder / "out.json").read_text())


def test_killed_run_resumes_with_nothing_lost_or_duplicated(tmp_path, tiny_model_dir):
    script = tmp_path / "generate.py"
    script.write_text(_SCRIPT)
    killed = tmp_path / "killed"
    killed.mkdir()
    cache_path = killed / "cache.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_model_dir), str(cache_path),
                             str(killed / "out.json")], env=_run_env(0.4),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if cache_path.exists() and len(cache_path.read_bytes().splitlines()) >= 8:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the run never wrote 8 cache lines (exit code {proc.poll()})")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert not (killed / "out.json").exists()
    done_before = len(_keys(cache_path))
    assert 8 <= done_before < 24

    resumed = _run_to_end(script, tiny_model_dir, killed)
    fresh = _run_in_process(script, tiny_model_dir, tmp_path / "fresh")  # uninterrupted, in a fresh folder
    assert resumed == fresh
    assert len(resumed) == 24 and all(isinstance(t, str) for t in resumed)
    keys = _keys(cache_path)
    assert len(keys) == len(set(keys)) == 24
    assert sorted(keys) == sorted(_keys(tmp_path / "fresh" / "cache.jsonl"))
