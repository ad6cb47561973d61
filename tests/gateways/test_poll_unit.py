"""systemd/anbo-poll.service: verified by systemd-analyze, as hardened as the daemon's unit."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.test_systemd_unit import MAX_EXPOSURE, UNIT, _analyze, _sections

POLL_UNIT = UNIT.parent / "anbo-poll.service"
#: Directives the gateway's unit shares with the daemon's, value for value.
SHARED = (
    "Type",
    "NotifyAccess",
    "WatchdogSec",
    "Restart",
    "TimeoutStopSec",
    "DynamicUser",
    "PrivateUsers",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateMounts",
    "PrivateDevices",
    "DevicePolicy",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RemoveIPC",
    "KeyringMode",
    "RestrictAddressFamilies",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "UMask",
    "ConfigurationDirectory",
)


def test_verify_is_clean(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "anbo"
    exec_start = f"{script} poll" if script.exists() else f"{sys.executable} -m anbo poll"
    text, count = re.subn(
        r"^ExecStart=\S+ poll", f"ExecStart={exec_start}", POLL_UNIT.read_text(), flags=re.MULTILINE
    )
    assert count == 1
    copy = tmp_path / "anbo-poll.service"
    copy.write_text(text)
    result = _analyze("verify", "--man=no", str(copy))
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "anbo-poll" in line]
    assert ours == []
    assert result.returncode == 0, result.stdout + result.stderr


def test_security_exposure_is_low() -> None:
    result = _analyze("security", "--offline=yes", str(POLL_UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_same_hardening_as_the_daemon() -> None:
    daemon = _sections(UNIT.read_text())["Service"]
    poll = _sections(POLL_UNIT.read_text())["Service"]
    assert {k: poll.get(k) for k in SHARED} == {k: daemon.get(k) for k in SHARED}
    assert poll["ExecStart"] == ["/usr/local/bin/anbo poll --config /etc/anbo/gateway.toml"]
    assert "StateDirectory" not in poll  # it keeps nothing
