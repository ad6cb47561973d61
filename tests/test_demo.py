"""`anbo demo` as a user runs it: one command, nothing else on the machine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_fires_and_resolves_within_the_first_minute(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "anbo", "demo", "--duration", "40", "--no-view", "--log-file", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    # The banner's console address serves the page and its live status.
    console = re.search(r"console (http://\S+/) ", first)
    assert console is not None, first
    with urllib.request.urlopen(console.group(1), timeout=10) as r:
        assert "<html" in r.read().decode()
    with urllib.request.urlopen(console.group(1) + "api/v1/status", timeout=10) as r:
        assert json.load(r)["header"]["station"] == "qingshan"
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    lines = [first.rstrip("\n"), *rest.splitlines()]
    assert lines[0].startswith("anbo demo · station qingshan · scenario demo · broker mqtt://127.0.0.1:")
    assert "(embedded)" in lines[0] and "/metrics" in lines[0]
    out_text = "\n".join(lines)
    assert any("FIRING   DeadAir on fm-news-97.5" in line for line in lines), out_text
    assert any("RESOLVED DeadAir on fm-news-97.5" in line for line in lines), out_text
    assert any("FIRING   VswrHigh on tx-fm-a" in line for line in lines), out_text
    assert lines[-1].startswith("anbo demo ended after")
    assert '"event": "anbo stopped"' in log.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("duration", ["1", "2", "3"])
def test_a_very_short_demo_ends_cleanly(tmp_path: Path, duration: str) -> None:
    """Seen once: a very short demo printed "Future exception was never retrieved ...
    MqttCodeError('Unexpected disconnection')" at the end. A short run says nothing
    like it, whatever the moment it stops at."""
    out = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "anbo",
            "demo",
            "--duration",
            duration,
            "--no-view",
            "--log-file",
            str(tmp_path / "demo.log"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for bad in ("Future exception was never retrieved", "Traceback", "Task was destroyed", "never awaited"):
        assert bad not in text, text[-3000:]
    assert out.stdout.splitlines()[-1].startswith("anbo demo ended after")
