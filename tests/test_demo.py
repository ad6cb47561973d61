"""`anbo demo` as a user runs it: one command, nothing else on the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_fires_and_resolves_within_the_first_minute(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    out = subprocess.run(
        [sys.executable, "-m", "anbo", "demo", "--duration", "40", "--no-view", "--log-file", str(log)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("anbo demo · station qingshan · scenario demo · broker mqtt://127.0.0.1:")
    assert "(embedded)" in lines[0] and "/metrics" in lines[0]
    assert any("FIRING   DeadAir on fm-news-97.5" in line for line in lines), out.stdout
    assert any("RESOLVED DeadAir on fm-news-97.5" in line for line in lines), out.stdout
    assert any("FIRING   VswrHigh on tx-fm-a" in line for line in lines), out.stdout
    assert lines[-1].startswith("anbo demo ended after")
    assert '"event": "anbo stopped"' in log.read_text(encoding="utf-8")
