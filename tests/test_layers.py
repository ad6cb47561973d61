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
