"""What the daemon imports: its resident memory starts with its imports.

scipy.signal alone costs the daemon about 75 MB of RSS (and a second to import); the
station daemon's probes use numpy's own FFT and correlation instead (``probes.audio.welch``,
``probes.identity``), so ``anbo run`` never loads it, nor the bureau's PostgreSQL driver.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
