"""Real servers started on free loopback ports in temporary folders: Mosquitto, ports, binaries.

Shared by the benchmarks (bench/, which must run after ``scripts/setup`` alone, without
pytest) and the integration tests (tests/servers.py re-exports it, turning a missing
binary into a test failure). Nothing here ever touches a service it did not start.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A server or client binary is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        raise MissingBinaryError(f"{name} is required and is not installed (scripts/setup --dev installs it)")
    return path


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class ServerProcess:
    """A server the tests started: stop it (SIGTERM, or SIGKILL with ``kill``), restart it."""

    proc: subprocess.Popen[bytes] | None = None
    stop_timeout = 10.0

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Mosquitto(ServerProcess):
    """A private Mosquitto broker with persistence in ``workdir``; restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.binary = find_binary("mosquitto")
        self.workdir = workdir
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            # Run as whoever runs the tests (as root, mosquitto would otherwise switch
            # to the "mosquitto" user, which cannot write the persistence folder here).
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir / 'data'}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            "log_dest stderr\n"
            f"{extra_conf}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, v5: bool = True) -> None:
        """Publish with the real ``mosquitto_pub`` client."""
        args = [
            find_binary("mosquitto_pub"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-q",
            str(qos),
            "-t",
            topic,
            "-V",
            "mqttv5" if v5 else "mqttv311",
            "-s",
        ]
        data = payload.encode() if isinstance(payload, str) else payload
        subprocess.run(args, input=data, check=True, timeout=10)
