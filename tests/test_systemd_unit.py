"""systemd/anbo.service: verified by systemd-analyze and sandboxed to exposure <= 2.0.

systemd-analyze is required (CI installs systemd); the offline modes need no running
systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "anbo.service"
MAX_EXPOSURE = 2.0


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert Path(exe).exists(), "systemd-analyze is required for these tests (apt install systemd)"
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run([exe, "--no-pager", *args], capture_output=True, text=True, env=env, timeout=120)


def _sections(text: str) -> dict[str, dict[str, list[str]]]:
    """The unit's directives by section; repeated keys keep every value in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return _sections(UNIT.read_text())["Service"]


def _exec_start_for_this_box() -> str:
    """An ExecStart that exists here: the venv's anbo script, else ``python -m monitor``."""
    script = Path(sys.executable).parent / "anbo"
    if script.exists():
        return f"{script} run --config /etc/anbo/anbo.toml"
    return f"{sys.executable} -m monitor run --config /etc/anbo/anbo.toml"


def test_verify_is_clean(tmp_path: Path) -> None:
    text = UNIT.read_text()
    text, count = re.subn(
        r"^ExecStart=.*$", f"ExecStart={_exec_start_for_this_box()}", text, flags=re.MULTILINE
    )
    assert count == 1
    copy = tmp_path / "anbo.service"
    copy.write_text(text)
    result = _analyze("verify", "--man=no", str(copy))
    # Complaints about unrelated units installed on the box are not ours to fix.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "anbo.service" in line or str(tmp_path) in line
    ]
    assert ours == []
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """Guards the filter above: a misspelt directive does show up as our problem."""
    text = re.sub(
        r"^ExecStart=.*$",
        f"ExecStart={_exec_start_for_this_box()}",
        UNIT.read_text(),
        flags=re.MULTILINE,
    )
    copy = tmp_path / "anbo.service"
    copy.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = _analyze("verify", "--man=no", str(copy))
    assert "ProtectSytem" in result.stdout + result.stderr


def test_security_exposure_is_low() -> None:
    result = _analyze("security", "--offline=yes", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output


def test_key_directives(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecStart"] == ["/usr/local/bin/anbo run --config /etc/anbo/anbo.toml"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"] == ["on-failure"]
    assert service["TimeoutStopSec"] == ["20"]
    assert service.get("DynamicUser") == ["yes"] or "User" in service
    assert service["ProtectSystem"] == ["strict"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["AmbientCapabilities"] == [""]
    assert service["StateDirectory"] == ["anbo"]
    assert service["ConfigurationDirectory"] == ["anbo"]
    assert service["MemoryDenyWriteExecute"] == ["yes"]
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "IPAddressDeny" not in service  # the broker may be anywhere


def test_mqtt_password_credential_is_documented_in_the_unit() -> None:
    # Shipped commented out (systemd fails the start when the source file is missing);
    # the name must match what systemd/README.md tells operators to put in password_file.
    text = UNIT.read_text()
    assert "#LoadCredential=mqtt-password:/etc/anbo/credentials/mqtt-password" in text
    assert 'password_file = "mqtt-password"' in (UNIT.parent / "README.md").read_text()
