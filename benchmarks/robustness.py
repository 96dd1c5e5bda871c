"""Hostile inputs against the loaders, the completion cache, the metric and the CLI; every outcome classified.

Each case knows what a correct program does with it: refuse it (a clear error: ``ValueError`` /
``FileNotFoundError`` naming the file, key, row or flag; from the CLI exit code 2 and one line) or accept it with a
known result. An outcome is then one of

- ``clear_error``: refused as expected, naming the cause;
- ``correct``: accepted, and the result equals the expected one;
- ``unclear_error``: refused, but the message names neither the file nor the field;
- ``traceback``: an exception of another type escaped (from the CLI: anything but a one-line exit 2);
- ``silent_wrong``: accepted with a wrong result, or accepted where it had to be refused (exit 0 on nothing);
- ``data_lost``: a file the user had (or a complete cache line) changed or vanished.

The targets are zero in the last three. No model is loaded (every CLI case must be refused before that, or runs
the metric only), so it takes seconds:

    .venv/bin/python benchmarks/robustness.py            # -> benchmarks/results/robustness.json
    git worktree add /tmp/before 49c2fa1 && .venv/bin/python benchmarks/robustness.py --compare-with /tmp/before

``--compare-with`` runs the same cases in the same run against another checkout of the library (here: the code
before the reliability fixes) and records its counts beside these.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

OUTCOMES = ("clear_error", "correct", "unclear_error", "traceback", "silent_wrong", "data_lost")
QUESTIONS = [{"Q_id": "Q1", "question": "How important is family?", "option_lst": ["Very", "Rather", "Not very"]},
             {"Q_id": "Q2", "question": "Can most people be trusted?", "option_lst": ["Yes", "Careful"]}]
GOOD = {"USA": {"Q1": {"1": 0.5, "2": 0.3, "3": 0.2}, "Q2": {"1": 0.4, "2": 0.6}},
        "CHN": {"Q1": {"1": 0.7, "2": 0.2, "3": 0.1}, "Q2": {"1": 0.6, "2": 0.4}}}


class Case:
    """One hostile input: ``run()`` does it; ``expect`` is ``"error"`` or a checker of the returned value."""

    def __init__(self, family: str, name: str, run: Callable[[], Any], expect: str | Callable[[Any], bool],
                 names: tuple[str, ...] = (), protected: tuple[Path, ...] = ()) -> None:
        self.family, self.name, self.run, self.expect = family, name, run, expect
        self.names = names  # any of these in an error message makes it clear
        self.protected = protected  # files/folders that must be byte-identical afterwards


def _digest(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f).encode())
            h.update(f.read_bytes() if f.exists() else b"<missing>")
    return h.hexdigest()


def classify(case: Case) -> tuple[str, str]:
    """(outcome, detail) of one case."""
    before = _digest(case.protected)
    try:
        value = case.run()
        error = None
    except (ValueError, FileNotFoundError, KeyError) as err:
        value, error = None, err
    except Exception as err:  # noqa: BLE001 -- any other type is what this benchmark counts
        return "traceback", f"{type(err).__name__}: {str(err)[:160]}"
    if case.protected and _digest(case.protected) != before:
        return "data_lost", "a protected file changed"
    if isinstance(value, _CLIResult):
        return value.outcome(case)
    if error is not None:
        message = str(error)
        if case.expect != "error":
            return "silent_wrong" if not case.names else "unclear_error", f"refused a valid input: {message[:160]}"
        clear = any(n in message for n in case.names) if case.names else True
        return ("clear_error" if clear else "unclear_error"), message[:160]
    if case.expect == "error":
        return "silent_wrong", "accepted an input that had to be refused"
    return ("correct", "") if case.expect(value) else ("silent_wrong", f"wrong result: {str(value)[:160]}")


# ---------------------------------------------------------------------------------------------- loaders
def _write(folder: Path, name: str, payload: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wvs_questions.json").write_text(json.dumps(QUESTIONS))
    path = folder / name
    path.write_bytes(payload)
    return path


def _loads_good(data) -> bool:
    return (sorted(data.cultures) == ["CHN", "USA"]
            and np.allclose(data.distribution("USA", "Q1"), [0.5, 0.3, 0.2])
            and np.allclose(data.distribution("CHN", "Q2"), [0.6, 0.4]))


def loader_cases(root: Path) -> list[Case]:
    from culture_align.wvs import load_wvs

    cases: list[Case] = []
    good = json.dumps(GOOD).encode()

    def add(name: str, payload: bytes, expect, extra_names=()):
        folder = root / f"loader-{len(cases)}"
        path = _write(folder, "distributions.json", payload)
        cases.append(Case("loaders", name, lambda p=path: load_wvs(p), expect,
                          names=(str(path), path.name, *extra_names), protected=(folder,)))

    add("valid", good, _loads_good)
    add("valid with a UTF-8 BOM", b"\xef\xbb\xbf" + good, _loads_good)
    add("UTF-16", json.dumps(GOOD).encode("utf-16"), "error")
    latin = json.dumps({**GOOD, "Côte": GOOD["USA"]}, ensure_ascii=False).encode("latin-1")
    add("Latin-1", latin, "error")
    add("a country twice", b'{"USA": ' + json.dumps(GOOD["USA"]).encode() + b', "USA": '
        + json.dumps(GOOD["CHN"]).encode() + b"}", "error", ("USA",))
    huge = json.loads(json.dumps(GOOD))
    huge["USA"]["Q1"] = {"1": 1e308, "2": 3e307, "3": 2e307}  # shares as counts at the edge of float: exact
    add("shares near 1e308 (no overflow)", json.dumps(huge).encode(),
        lambda d: np.allclose(d.distribution("USA", "Q1"), [1e308 / 1.5e308, 0.3e308 / 1.5e308, 0.2e308 / 1.5e308]))
    huge["USA"]["Q1"] = {"1": 1e308, "2": 1e308, "3": 1e308}  # the row sum overflows
    add("shares whose sum overflows", json.dumps(huge).encode(), "error", ("USA", "Q1"))
    for label, value in [("NaN", float("nan")), ("Infinity", float("inf")), ("-0.5", -0.5),
                         ("a string", "0.5"), ("true", True), ("null", None)]:
        broken = json.loads(json.dumps(GOOD))
        broken["USA"]["Q1"]["1"] = value
        add(f"a share of {label}", json.dumps(broken).encode(), "error", ("USA", "Q1"))
    for label, code in [("1.5", "1.5"), ("-1", "-1"), ("10**12", str(10**12)), ("'one'", "one"), ("4 (off)", "4")]:
        broken = json.loads(json.dumps(GOOD))
        broken["USA"]["Q1"][code] = broken["USA"]["Q1"].pop("1")
        add(f"an answer code of {label}", json.dumps(broken).encode(), "error", ("USA", "Q1", code))
    for shape in ([], "text", 3, [GOOD], {"USA": []}, {"USA": {"Q1": [0.5, 0.5]}}, {"USA": {"Q1": {}}}, {}):
        add(f"JSON shape {json.dumps(shape)[:30]}", json.dumps(shape).encode(), "error")
    for cut in range(1, len(good) - 1, max(1, len(good) // 40)):
        add(f"truncated at byte {cut}", good[:cut], "error")
    missing = root / "shared" / "wvs"
    hub_calls: list[str] = []

    def mistyped_path():
        with mock.patch("datasets.load_dataset", side_effect=lambda *a, **k: hub_calls.append(a[0])):
            try:
                return load_wvs(str(missing))
            finally:
                if hub_calls:  # a Hub download of a stranger's dataset: never correct
                    raise RuntimeError(f"went to the Hub for {hub_calls}")

    cases.append(Case("loaders", "a mistyped local path", mistyped_path, "error", names=(str(missing),)))
    return cases


# ------------------------------------------------------------------------------------------------ cache
def cache_cases(root: Path) -> list[Case]:
    """A cache with non-ASCII completions cut at every byte: a reopened cache keeps every complete line, skips the
    torn one, and appends after it without losing anything."""
    from culture_align.backends.cache import CompletionCache

    rows = [("k1", "m", "家庭非常重要。"), ("k2", "m", "Ça dépend — vraiment."), ("k3", "m", "Ja. 🙂")]
    full = b"".join((json.dumps({"key": k, "model": m, "text": t}, ensure_ascii=False) + "\n").encode()
                    for k, m, t in rows)
    cases = []
    for cut in range(len(full) + 1):
        def run(cut=cut):
            path = root / f"cache-{cut}" / "cache.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(full[:cut])
            complete = {k: t for k, _, t in rows if full.index((json.dumps(
                {"key": k, "model": "m", "text": t}, ensure_ascii=False) + "\n").encode()) + len((json.dumps(
                    {"key": k, "model": "m", "text": t}, ensure_ascii=False) + "\n").encode()) <= cut}
            cache = CompletionCache(path)
            kept = {k: cache.get(k) for k in complete}
            cache.put_many([("new", "m", "après")])
            again = CompletionCache(path)
            return kept == complete and all(again.get(k) == t for k, t in complete.items()) \
                and again.get("new") == "après"
        cases.append(Case("cache", f"cut at byte {cut}", run, lambda ok: ok is True))
    return cases


# ----------------------------------------------------------------------------------------------- metric
def metric_cases() -> list[Case]:
    from culture_align.metric import load_alignment_metric

    distribution = load_alignment_metric("distribution")
    score = load_alignment_metric("alignment_score")
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    expected_kl = sum(a * math.log(a / b) for a, b in zip(p, q))

    def kl(pred, ref):
        return lambda: distribution.compute(predictions=[pred], references=[ref])

    cases = [Case("metric", "valid", kl(q, p), lambda r: abs(r["kl_divergence"] - expected_kl) < 1e-4)]
    uniform_kl = sum(a * math.log(a * 3) for a in p)
    cases.append(Case("metric", "prediction 1e308 x 3 (the uniform distribution, scaled)",
                      kl([1e308, 1e308, 1e308], p), lambda r: abs(r["kl_divergence"] - uniform_kl) < 1e-4))
    for label, pred in [("NaN", [float("nan"), 0.5, 0.5]), ("negative", [-0.1, 0.6, 0.5]),
                        ("all zero", [0.0, 0.0, 0.0]), ("length 2", [0.5, 0.5]), ("inf", [float("inf"), 0.0, 0.0])]:
        cases.append(Case("metric", f"prediction {label}", kl(pred, p), "error",
                          names=("prediction", "row", "0")))
    cases.append(Case("metric", "alignment score, valid",
                      lambda: score.compute(predictions=[1, 2], references=[1, 3], num_options=[4, 4]),
                      lambda r: isinstance(r.get("alignment_score"), float) and math.isfinite(r["alignment_score"])))
    cases.append(Case("metric", "alignment score, a negative answer is a missing one (counted as invalid)",
                      lambda: score.compute(predictions=[-5, 2], references=[1, 3], num_options=[4, 4]),
                      lambda r: r["n_invalid"] == 1 and r["n_scored"] == 1 and r["alignment_score"] == score.compute(
                          predictions=[2], references=[3], num_options=[4])["alignment_score"]))
    for label, answer in [("off the scale", 9), ("huge", 10**18)]:
        cases.append(Case("metric", f"alignment score, answer {label}",
                          lambda a=answer: score.compute(predictions=[a, 2], references=[1, 3], num_options=[4, 4]),
                          "error", names=("row", "code", "scale", "0")))
    return cases


# -------------------------------------------------------------------------------------------------- CLI
class _CLIResult:
    def __init__(self, code: int, err: str) -> None:
        self.code, self.err = code, err

    def outcome(self, case: Case) -> tuple[str, str]:
        lines = [line for line in self.err.strip().splitlines() if line.strip()]
        if "Traceback" in self.err:
            return "traceback", self.err.strip().splitlines()[-1][:160]
        if self.code == 2 and len(lines) >= 1 and "error:" in lines[-1]:
            named = any(n in self.err for n in case.names) if case.names else True
            return ("clear_error" if named else "unclear_error"), lines[-1][:160]
        if self.code == 0:
            return "silent_wrong", "exit 0 on an input that had to be refused"
        return "traceback", f"exit {self.code}: {self.err.strip()[-160:]}"


def _cli(argv: list[str]) -> Callable[[], _CLIResult]:
    def run() -> _CLIResult:
        from culture_align.cli import main

        err = io.StringIO()
        # Any model load is a failure: every case must be refused before that.
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), mock.patch(
                "transformers.PreTrainedModel.from_pretrained", side_effect=RuntimeError("a model was loaded")):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse: exit 2 with its usage line
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:  # noqa: BLE001
                import traceback

                err.write(traceback.format_exc())
                code = 1
        return _CLIResult(code, err.getvalue())
    return run


def cli_cases(root: Path) -> list[Case]:
    data = _write(root / "cli-data", "distributions.json", json.dumps(GOOD).encode())
    a_file = root / "cli-a-file.txt"
    a_file.write_text("the user's notes")
    user_folder = root / "cli-user-folder"
    user_folder.mkdir()
    (user_folder / "notes.md").write_text("mine")
    bad_yaml = root / "bad.yaml"
    bad_yaml.write_text("per_device_train_batch_size: three\n")
    template = root / "template.json"
    template.write_text(json.dumps({"system": "You are {nationality}.", "user": "{question}\n{options}"}))
    exp = root / "exp.yaml"
    exp.write_text(f"name: x\nwvs: {data}\nsplit: {{protocol: nope}}\n")
    wvs = ["--wvs", str(data)]
    specs = [
        (["eval", *wvs, "--out", str(a_file)], (str(a_file),), (a_file,)),
        (["eval", *wvs, "--batch-size", "-3"], ("batch",), ()),
        (["eval", *wvs, "--samples", "0", "--mode", "sampling"], ("samples",), ()),
        (["eval", *wvs, "--cultures", ","], ("cultures",), ()),
        (["eval", *wvs, "--setting", ","], ("setting",), ()),
        (["eval", *wvs, "--setting", "nope"], ("nope",), ()),
        (["eval", *wvs, "--cultures", "ATLANTIS"], ("ATLANTIS",), ()),
        (["eval", *wvs, "--model", str(root / "no-model")], ("no-model",), ()),
        (["eval", *wvs, "--adapter", str(root / "no-adapter")], ("no-adapter",), ()),
        (["eval", "--wvs", str(root / "shared" / "wvs")], ("shared",), ()),
        (["eval", *wvs, "--setting", str(template)], ("nationality",), ()),
        (["eval", *wvs, "--items", "Q999"], ("Q999",), ()),
        (["train", "culturellm", "--config", str(bad_yaml)], ("per_device_train_batch_size",), ()),
        (["train", "culturellm", "--dataset_path", str(root / "nothing")], ("nothing",), ()),
        (["experiment", "--config", str(exp)], ("split.protocol",), ()),
        (["experiment", "--config", str(root / "missing.yaml")], ("missing.yaml",), ()),
        (["build-dataset", "wvs", "--source", str(data), "--out", str(user_folder)], (str(user_folder), "overwrite"),
         (user_folder,)),
        (["build-dataset", "wvs", "--source", str(data), "--out", str(a_file)], (str(a_file),), (a_file,)),
        (["merge-shards", "--out", str(user_folder), str(user_folder)], (str(user_folder),), (user_folder,)),
        (["demo", "--batch-size", "0"], ("batch",), ()),
        (["eval-tasks", "--batch-size", "0"], ("batch",), ()),
    ]
    return [Case("cli", " ".join(argv)[:90], _cli(argv), "error", names=names, protected=protected)
            for argv, names, protected in specs]


# ------------------------------------------------------------------------------------------------- main
def run_cases(cases: list[Case]) -> dict[str, Any]:
    counts: dict[str, Counter] = {}
    failures = []
    for case in cases:
        outcome, detail = classify(case)
        counts.setdefault(case.family, Counter())[outcome] += 1
        if outcome not in ("clear_error", "correct"):
            failures.append({"family": case.family, "case": case.name, "outcome": outcome, "detail": detail})
    total = sum((c for c in counts.values()), Counter())
    return {"inputs_tried": len(cases), **{k: total.get(k, 0) for k in OUTCOMES},
            "by_family": {f: {k: c.get(k, 0) for k in OUTCOMES} for f, c in counts.items()},
            "not_clear_or_correct": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/robustness.json")
    parser.add_argument("--compare-with", help="another checkout of the repository: run the same cases on its code")
    args = parser.parse_args()
    random.seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        root = Path(tmp)
        cases = loader_cases(root) + cache_cases(root) + metric_cases() + cli_cases(root)
        result = run_cases(cases)
    result.update(seconds=round(time.perf_counter() - start, 1), command="python benchmarks/robustness.py",
                  machine=f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    if args.compare_with:
        import os
        import subprocess

        other = Path(args.compare_with).resolve()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, __file__, "--out", f"{tmp}/other.json"], check=True,
                           env={**os.environ, "PYTHONPATH": str(other)}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            theirs = json.loads(Path(f"{tmp}/other.json").read_text())
        commit = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        result["compared_with"] = {"commit": commit, **{k: theirs[k] for k in ("inputs_tried", *OUTCOMES)},
                                   "not_clear_or_correct": theirs["not_clear_or_correct"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "not_clear_or_correct"}, indent=1))
    for row in result["not_clear_or_correct"]:
        print(f"  {row['outcome']:>14}  {row['family']}: {row['case']} -- {row['detail']}")


if __name__ == "__main__":
    main()
