"""The floors of the house (docs/architecture.md): an import only ever points down.

probes/ and rules/ import nothing of the project; monitor/ imports only them; the
packages above share monitor/'s contract and never each other's internals; anbo/, the
command, may import everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("anbo", "simulator", "gateways", "bureau", "dashboards", "monitor", "probes", "rules")
#: What each package may import of the project (besides itself).
ALLOWED: dict[str, set[str]] = {
    "probes": set(),
    "rules": set(),
    "monitor": {"probes", "rules"},
    "simulator": {"monitor", "probes", "rules"},
    "gateways": {"monitor", "probes", "rules"},
    "bureau": {"monitor", "probes", "rules"},
    "dashboards": {"monitor", "probes", "rules"},
    "anbo": set(PROJECT),
}


#: Known upward imports still to be moved down (module → package); empty is the goal.
KNOWN: dict[str, set[str]] = {}


def imports_of(path: Path) -> set[str]:
    """The project's top-level packages that one module imports (absolute imports)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        out.update(n.split(".")[0] for n in names if n.split(".")[0] in PROJECT)
    return out


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\nimport monitor.wire\nfrom rules.engine import Engine\nfrom . import x\n")
    assert imports_of(f) == {"monitor", "rules"}


@pytest.mark.parametrize("package", [p for p in PROJECT if (ROOT / p).is_dir()])
def test_imports_point_down(package: str) -> None:
    wrong = sorted(
        f"{path.relative_to(ROOT)} imports {other}"
        for path in (ROOT / package).rglob("*.py")
        for other in imports_of(path)
        - {package}
        - ALLOWED[package]
        - KNOWN.get(str(path.relative_to(ROOT)), set())
    )
    assert wrong == []


def test_known_exceptions_are_still_needed() -> None:
    """An entry in KNOWN that no longer imports upward must be removed."""
    stale = [m for m, pkgs in KNOWN.items() if not pkgs & imports_of(ROOT / m)]
    assert stale == []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_time_imports(path: Path) -> set[str]:
    """Project modules imported when ``path`` is imported: module level only (imports inside
    functions and under ``if TYPE_CHECKING:`` run later or never, and cannot make a circle
    at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PROJECT}


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first search, as the circle it closes."""
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return circles


def test_the_circle_finder_finds_circles() -> None:
    assert find_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_circles() -> None:
    modules = {
        module_name(p): p for pkg in PROJECT if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")
    }
    # An edge to one's own parent package is no circle: Python imports the parents first
    # anyway (``from simulator import programme`` inside simulator/station.py).
    graph = {
        name: {
            m for m in load_time_imports(path) if m in modules and m != name and not name.startswith(m + ".")
        }
        for name, path in modules.items()
    }
    assert find_circles(graph) == []
