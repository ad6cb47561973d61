"""systemd/anbo-capture.service: verified by systemd-analyze, sandboxed like anbo.service
(exposure <= 2.0) but with the sound devices it needs and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_systemd_unit import MAX_EXPOSURE, _analyze, _sections
from tests.test_systemd_unit import _exec_start_for_this_box as _daemon_exec_start

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "anbo-capture.service"
DAEMON = UNIT.parent / "anbo.service"


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return _sections(UNIT.read_text())["Service"]


def _exec_start_for_this_box() -> str:
    return _daemon_exec_start().replace(" run --config", " capture --config")


def test_verify_is_clean(tmp_path: Path) -> None:
    text, count = re.subn(
        r"^ExecStart=.*$", f"ExecStart={_exec_start_for_this_box()}", UNIT.read_text(), flags=re.MULTILINE
    )
    assert count == 1
    copy = tmp_path / "anbo-capture.service"
    copy.write_text(text)
    result = _analyze("verify", "--man=no", str(copy))
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "anbo-capture.service" in line or str(tmp_path) in line
    ]
    assert ours == []
    assert result.returncode == 0, result.stdout + result.stderr


def test_security_exposure_is_low() -> None:
    result = _analyze("security", "--offline=yes", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_key_directives(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == ["/usr/local/bin/anbo capture --config /etc/anbo/anbo.toml"]
    assert service["WatchdogSec"] == ["30"]
    assert service["KillMode"] == ["control-group"]  # ffmpeg children stop with it
    # Sound cards and nothing else.
    assert "PrivateDevices" not in service
    assert service["DevicePolicy"] == ["closed"]
    assert service["DeviceAllow"] == ["char-alsa rw"]
    assert service["SupplementaryGroups"] == ["audio"]
    assert "StateDirectory" not in service  # nothing persistent


def test_same_hardening_as_the_daemon(service: dict[str, list[str]]) -> None:
    """Every sandbox directive of anbo.service, with the same value, except what sound
    devices need (PrivateDevices, PrivateUsers) and what only the daemon has."""
    daemon = _sections(DAEMON.read_text())["Service"]
    differ = {"PrivateDevices", "PrivateUsers", "StateDirectory", "StateDirectoryMode", "ExecStart",
              "ExecReload", "Type", "NotifyAccess"}  # fmt: skip
    for key, values in daemon.items():
        if key in differ or key.startswith(("Restart", "Timeout", "Watchdog")):
            continue
        assert service.get(key) == values, key
