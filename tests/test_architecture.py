"""The package's layers import downwards only, no module imports itself back through others, and modules stay small.

The layers (README, "Architecture"), lowest first; a package may import the ones before it, never one after it:
imports inside functions count too (they are import edges all the same); ``if TYPE_CHECKING:`` blocks do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "culture_align"

#: Lowest first. Foundation (no model, no data), data, the model interface, evaluation, the recipes' pipelines,
#: cards and trainers, publishing, experiments, the application (demo, scripts, command line).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("chat", "cultures", "input_files", "jsonl", "redaction", "config_values", "embedded_models",
                    "culture_profiles", "metric", "embeddings")),
    ("data", ("wvs", "prompts")),
    ("model interface", ("models", "backends")),
    ("evaluation", ("evaluation",)),
    ("recipes", ("recipes",)),
    ("cards", ("cards",)),
    ("trainers", ("trainers",)),
    ("hub", ("hub", "builders")),
    ("experiments", ("experiments",)),
    ("application", ("demo", "scripts", "cli")),
]
ORDER = [name for _, names in LAYERS for name in names]
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("_dataset_builders", "_metrics"):  # data folders shipped inside the package
            continue
        parts = ("culture_align", *rel.with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The culture_align modules ``module`` imports (resolved to modules that exist)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            candidates = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for name in candidates:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("culture_align.") and name != module:
                targets.add(name)
                break
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def _package(module: str) -> str:
    return module.split(".")[1]


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules() if m != "culture_align"}
    assert packages <= set(ORDER), f"place {sorted(packages - set(ORDER))} in LAYERS"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items() if module != "culture_align"
                  for target in targets if ORDER.index(_package(target)) > ORDER.index(_package(module)))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_packages_import_downwards_only():
    upward = _upward(_graph())
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    graph = _graph()
    graph.pop("culture_align", None)  # the package root re-exports lazily; nothing imports it back
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_modules_stay_small_unless_their_docstring_says_why():
    long = []
    for module, path in _modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and f"over {MAX_LINES} lines" not in doc:
            long.append(f"{module}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"


def test_the_checks_can_fail(tmp_path):
    """An upward import, a cycle and a function-level import are found; a TYPE_CHECKING import is not an edge."""
    assert _upward({"culture_align.cultures": {"culture_align.cli.main"}}) == [
        "culture_align.cultures imports culture_align.cli.main"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import y\n"
                      "def f():\n    from .z import w\n")
    modules = {"culture_align.pkg.m": module, "culture_align.pkg.x": module, "culture_align.pkg.z": module}
    assert _imports("culture_align.pkg.m", module, modules) == {"culture_align.pkg.z"}
