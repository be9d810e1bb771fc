"""The shape of the code: no import cycles in noldo or benchmark (function-level imports included).

See docs/architecture.md for what each module may import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of the packages below ``root``: dotted name → file (a package is its __init__)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its file (a submodule named in
    ``from package import submodule`` counts as that submodule, not the package)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a function or attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = module_names(root, packages)
    return {name: imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycles():
    assert cycles(import_graph(REPO, ("noldo", "benchmark"))) == []


def test_noldo_does_not_import_benchmark():
    graph = import_graph(REPO, ("noldo", "benchmark"))
    assert not [(m, t) for m, targets in graph.items() if m.startswith("noldo") for t in targets
                if t.startswith("benchmark")]


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import helper\n")
    (package / "sub" / "b.py").write_text("def helper():\n    from ..a import b\n")  # b → a, lazily
    (package / "c.py").write_text("import pkg.a\nfrom pkg import sub\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.c"] == {"pkg.a", "pkg.sub"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_the_architecture_document_names_every_module():
    text = re.sub(r"```.*?```", "", (REPO / "docs" / "architecture.md").read_text(), flags=re.S)
    named = {token for cell in re.findall(r"`([^`]+)`", text) for token in re.split(r"[\s,]+", cell)}
    missing = []
    for name, path in module_names(REPO, ("noldo", "benchmark")).items():
        parts = name.split(".")
        forms = ({f"{parts[-1]}/__init__", f"{parts[-1]}/"} if path.name == "__init__.py"
                 else {parts[-1], "/".join(parts[1:]), "/".join(parts[-2:])})
        if not forms & named:
            missing.append(name)
    assert missing == [], "modules docs/architecture.md does not name"
    assert "docs/architecture.md" in (REPO / "README.md").read_text(), "the README links the architecture"
