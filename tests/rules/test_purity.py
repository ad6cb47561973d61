"""rules/ stays pure: no monitor import, no clocks, no Python evaluation, no I/O beyond rule files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rules

SOURCES = sorted(Path(rules.__file__).parent.glob("*.py"))
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {("time", "time"), ("time", "monotonic"), ("datetime", "now"), ("datetime", "utcnow")}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                assert not name.startswith("monitor"), f"{path.name} imports {name}"
                assert name.split(".")[0] not in {"socket", "time", "logging", "subprocess"}, name
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {node.func.id}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in FORBIDDEN_ATTRS, f"{path.name}:{node.lineno}"
