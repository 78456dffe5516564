"""The package's import structure: no import circle between modules, and no module importing from a later stage
(``STAGES``: small torch-free foundations and the onnx graph helpers below everything, then data flows methods ->
export -> runtime -> passes -> calibration -> training -> report). Imports inside functions count too: a lazy import
is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pruneport"

# lowest first; a module may import from its own stage and the ones before it
STAGES: list[tuple[str, ...]] = [
    ("pruneport", "pruneport.errors", "pruneport.progress", "pruneport.validate", "pruneport.flops"),
    ("pruneport.graph",),
    ("pruneport.methods",),
    ("pruneport.export",),
    ("pruneport.runtime",),
    ("pruneport.passes",),
    ("pruneport.calibration",),
    ("pruneport.training",),
    ("pruneport.report",),
    ("pruneport.demo",),
    ("pruneport.cli",),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The pruneport modules ``path`` imports anywhere in it (``from pkg import module`` counts as the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("pruneport"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pruneport"))
    return {m for m in found if m in modules}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    names = set(files)
    return {name: imports_of(path, names) - {name} for name, path in files.items()}


def stage_of(module: str) -> int:
    best = [(len(prefix), i) for i, group in enumerate(STAGES) for prefix in group
            if module == prefix or (prefix != "pruneport" and module.startswith(prefix + "."))]  # fmt: skip
    assert best, f"{module} belongs to no stage: add it to STAGES"
    return max(best)[1]


def test_every_module_has_a_stage(graph):
    for module in graph:
        stage_of(module)


def test_no_module_imports_from_a_later_stage(graph):
    upward = [
        f"{a} -> {b}"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if b != "pruneport" and stage_of(b) > stage_of(a) and not b.startswith(a + ".")
    ]
    assert upward == []


def test_no_import_circles(graph):
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert circles == []


def test_the_checks_see_what_they_should(graph):
    """The walker finds lazy imports (inside functions), so the two tests above can fail."""
    assert "pruneport.report.bench_systems" in graph["pruneport.report.bench_memory"]  # imported inside main()
    assert "pruneport.export.dynamo" in graph["pruneport.export.split"]
    assert stage_of("pruneport.report.bench") > stage_of("pruneport.calibration.quantize")


# Engine set-up that belongs to pruneport.runtime (ort.py, openvino.py) and nowhere else.
ENGINE_SETUP = ("InferenceSession(", "SessionOptions(", "compile_model(", "opset13.constant(")


def test_engines_are_set_up_only_in_the_runtime():
    outside = [
        f"{path.relative_to(PACKAGE.parent)}: {call}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent.name != "runtime"
        for call in ENGINE_SETUP
        if call in path.read_text(encoding="utf-8")
    ]
    assert not outside, "engine set-up outside pruneport/runtime (use runtime.ort / runtime.openvino): " + "; ".join(
        outside
    )


def _undocumented(tree: ast.AST, prefix: str = "") -> list[str]:
    """Public functions and classes (and the public methods of public classes) without a docstring."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            if ast.get_docstring(node) is None:
                found.append(f"{prefix}{node.name} (line {node.lineno})")
            if isinstance(node, ast.ClassDef):
                found += _undocumented(node, f"{prefix}{node.name}.")
    return found


def test_every_public_function_and_class_has_a_docstring():
    missing = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in _undocumented(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert missing == []
