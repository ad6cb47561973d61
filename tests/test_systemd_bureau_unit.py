"""systemd/anbo-bureau.service: verified by systemd-analyze, exposure <= 2.0, and the same
sandbox as anbo.service (every hardening directive of the station's unit, with its value)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.test_systemd_unit import MAX_EXPOSURE, _analyze, _sections

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "anbo-bureau.service"
#: what the station's unit has for its own reasons (persistent state, reload, numpy's mbind)
NOT_SANDBOX = {"Type", "NotifyAccess", "ExecStart", "ExecReload", "WatchdogSec", "Restart", "RestartSec",
               "TimeoutStopSec", "TimeoutStartSec", "StateDirectory", "StateDirectoryMode",
               "ConfigurationDirectory", "ConfigurationDirectoryMode", "SystemCallFilter"}  # fmt: skip


def test_verify_is_clean(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "anbo"
    exec_start = f"{script} bureau --config /etc/anbo/bureau.toml"
    text, count = re.subn(r"^ExecStart=.*$", f"ExecStart={exec_start}", UNIT.read_text(), flags=re.M)
    assert count == 1
    copy = tmp_path / "anbo-bureau.service"
    copy.write_text(text)
    result = _analyze("verify", "--man=no", str(copy))
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "anbo-bureau.service" in line or str(tmp_path) in line
    ]
    assert ours == []
    assert result.returncode == 0, result.stdout + result.stderr


def test_security_exposure_is_low() -> None:
    result = _analyze("security", "--offline=yes", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_same_sandbox_as_the_station_unit() -> None:
    station = _sections((SYSTEMD / "anbo.service").read_text())["Service"]
    bureau = _sections(UNIT.read_text())["Service"]
    for key, value in station.items():
        if key not in NOT_SANDBOX:
            assert bureau.get(key) == value, key
    assert bureau["SystemCallFilter"][:2] == station["SystemCallFilter"][:2]
    assert bureau["Type"] == ["notify"] and bureau["ExecStart"] == [
        "/usr/local/bin/anbo bureau --config /etc/anbo/bureau.toml"
    ]
    assert "StateDirectory" not in bureau  # the bureau's data lives in PostgreSQL
