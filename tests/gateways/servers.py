"""Real transmitter-controller peers for the gateway's tests: Debian's snmpd and a pymodbus server.

Both run as subprocesses on free loopback ports in the test's temporary folder, can be
stopped (or killed) and started again on the same port, and change what they serve
while they run: snmpd answers from a ``pass`` script reading a values file the test
rewrites; the Modbus server takes ``set`` commands on its standard input
(tests/modbus_server.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.servers import ServerProcess, find_binary, free_port

#: The pass script: ``-g OID`` prints OID, type and value from the values file;
#: ``-n OID`` the next one (the file is sorted); nothing for an OID it does not have.
PASS_SCRIPT = r"""#!/bin/sh
f="$(dirname "$0")/values"
case "$1" in
  -g) awk -v o="$2" '$1==o {print $1; print $2; $1=""; $2=""; sub(/^ +/, ""); print; exit}' "$f" ;;
  -n) awk -v o="$2" 'found {print $1; print $2; $1=""; $2=""; sub(/^ +/, ""); print; exit}
                     $1==o {found=1}' "$f" ;;
esac
"""


class Snmpd(ServerProcess):
    """Net-SNMP's agent serving ``subtree`` from a values file, with a v2c community and a v3 user."""

    def __init__(
        self,
        workdir: Path,
        *,
        subtree: str,
        community: str,
        user: str,
        auth_key: str,
        priv_key: str,
        port: int | None = None,
    ) -> None:
        self.binary = find_binary("snmpd")
        self.snmpget = find_binary("snmpget")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.subtree = subtree.lstrip(".")
        self.community = community
        self.values = workdir / "values"
        self.values.write_text("")
        script = workdir / "pass.sh"
        script.write_text(PASS_SCRIPT)
        script.chmod(0o755)
        self.conf = workdir / "snmpd.conf"
        self.conf.write_text(
            f"agentaddress udp:127.0.0.1:{self.port}\n"
            f"rocommunity {community} 127.0.0.1\n"
            f'createUser {user} SHA "{auth_key}" AES "{priv_key}"\n'
            f"rouser {user} priv\n"
            f"pass .{self.subtree} {script}\n"
        )
        self.log = workdir / "snmpd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def set(self, values: dict[str, tuple[str, object]]) -> None:
        """Serve ``{oid: (type, value)}`` from now on (types: integer, gauge, string...)."""
        lines = sorted(
            (f".{oid.lstrip('.')} {kind} {value}" for oid, (kind, value) in values.items()),
            key=lambda line: [int(x) for x in line.split()[0].strip(".").split(".")],
        )
        tmp = self.values.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.values)  # atomic: the pass script never reads half a file

    def start(self) -> None:
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir / "persist"), "MIBS": ""}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-f", "-Lo", "-C", "-c", str(self.conf), "-p", str(self.workdir / "pid")],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [
                    self.snmpget,
                    "-v2c",
                    "-c",
                    self.community,
                    "-t",
                    "0.2",
                    "-r",
                    "0",
                    "-On",
                    f"127.0.0.1:{self.port}",
                    "1.3.6.1.2.1.1.3.0",
                ],
                capture_output=True,
                env=env,
                timeout=5,
                check=False,
            )
            if probe.returncode == 0:
                return
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"snmpd did not start: {self.log.read_text()[-2000:]}")


class ModbusServer(ServerProcess):
    """pymodbus's TCP server for one unit id (tests/modbus_server.py), restartable on its port."""

    script = Path(__file__).resolve().parents[1] / "modbus_server.py"

    def __init__(self, *, unit: int = 1, port: int | None = None) -> None:
        self.port = port or free_port()
        self.unit = unit
        self.proc: subprocess.Popen[bytes] | None = None
        self._p: subprocess.Popen[str] | None = None
        #: what was set, replayed after a restart (a device keeps its state over a reboot)
        self.state: list[str] = []

    def start(self) -> None:
        self._p = subprocess.Popen(
            [sys.executable, str(self.script), str(self.port), str(self.unit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.proc = self._p  # type: ignore[assignment]
        assert self._p.stdout is not None
        line = self._p.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"the Modbus server did not start: {line!r}")
        for command in self.state:
            self._send(command)

    def _send(self, command: str) -> None:
        assert self._p is not None and self._p.stdin is not None and self._p.stdout is not None
        self._p.stdin.write(command + "\n")
        self._p.stdin.flush()
        answer = self._p.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"{command!r}: {answer!r}")

    def set(self, table: str, address: int, *values: int) -> None:
        command = f"set {table} {address} {' '.join(str(v) for v in values)}"
        self.state.append(command)
        self._send(command)

    def stop(self, kill: bool = False) -> None:
        if self._p is not None:
            for stream in (self._p.stdin, self._p.stdout):
                if stream is not None:
                    stream.close()
        super().stop(kill)
        self._p = None
