"""What the daemon imports: its resident memory starts with its imports.

scipy.signal alone costs the daemon about 75 MB of RSS (and a second to import); the
station daemon's probes use numpy's own FFT and correlation instead (``probes.audio.welch``,
``probes.identity``), so ``anbo run`` never loads it, nor the bureau's PostgreSQL driver.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

NOT_IN_THE_DAEMON = ("scipy", "psycopg", "openpyxl")


def test_the_daemon_and_the_command_line_load_no_scipy_or_postgres_driver() -> None:
    code = (
        "import json, sys\n"
        "from anbo.cli import main\n"
        # the command line as `anbo run` parses it (the config's absence ends it early)
        "assert main(['run', '--config', '/nonexistent/anbo.toml']) == 1\n"
        "import monitor.daemon, probes.workers, probes.identity, probes.audio\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {NOT_IN_THE_DAEMON!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert json.loads(out) == []


#: What `anbo analyze` must not load: its start is most of a short file's analysis
#: (docs/performance.md, bench/analyze.py). The engine and the settings (pydantic),
#: logging (structlog, rich), asyncio, the ledger and bureau commands, scipy.
NOT_IN_ANALYZE = (
    "scipy",
    "psycopg",
    "openpyxl",
    "pydantic",
    "structlog",
    "rich",
    "asyncio",
    "yaml",
    "rules.engine",
    "rules.schema",
    "monitor.settings",
    "monitor.ledger",
    "anbo.report",
    "anbo.bureau_cmd",
)


def test_anbo_analyze_loads_only_what_it_analyses_with(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    pcm = (np.sin(np.arange(48_000) * 0.05) * 8000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 48_000, 96_000, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    wav.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    code = (
        "import json, sys, contextlib, io\n"
        "from anbo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['analyze', '--json', {str(wav)!r}]) == 0\n"
        f"bad = {NOT_IN_ANALYZE!r}\n"
        "loaded = [m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in bad)]\n"
        "print(json.dumps(sorted(loaded)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert json.loads(out) == []
