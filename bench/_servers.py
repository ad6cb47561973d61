"""Real servers started on free loopback ports in temporary folders: Mosquitto, Alertmanager.

Shared by the benchmarks (bench/, which must run after ``scripts/setup`` alone, without
pytest) and the integration tests (tests/servers.py re-exports it, turning a missing
binary into a test failure; tests/alertmanager_server.py re-exports
:class:`Alertmanager`). Nothing here ever touches a service it did not start.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        *,
        persistence: bool = True,
        listener: bool = True,
        max_queued_messages: int = 100_000,
    ) -> None:
        """``listener=False``: ``extra_conf`` is the whole configuration (its listeners, their
        security, persistence; e.g. config/mosquitto/bureau.conf with paths substituted).
        ``max_queued_messages=0``: no bound (the benchmarks' floods)."""
        self.binary = find_binary("mosquitto")
        self.workdir = workdir
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        # Run as whoever runs the tests (as root, mosquitto would otherwise switch
        # to the "mosquitto" user, which cannot write the persistence folder here).
        user = f"user {getpass.getuser()}\n"
        if not listener:
            self.conf.write_text(f"{user}log_dest stderr\n{extra_conf}")
            self.proc = None
            return
        self.conf.write_text(
            f"{user}"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {workdir / 'data'}/\n"
            "autosave_interval 1\n"
            f"max_queued_messages {max_queued_messages}\n"
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


#: Flush each group as soon as possible and at short intervals; never repeat by itself
#: within a test (a repeat would look like a duplicate notification).
FAST_ROUTE = """\
route:
  receiver: webhook
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        max_alerts: 0
"""


def alertmanager_binary() -> str:
    return (
        shutil.which("prometheus-alertmanager")
        or shutil.which("alertmanager")
        or find_binary("prometheus-alertmanager")
    )


class Alertmanager(ServerProcess):
    """A private Alertmanager; restartable on the same ports with the same storage.

    ``cluster_port`` None disables clustering; otherwise the instance gossips on that
    port with ``peers`` (``host:port`` cluster addresses), with timings shortened so a
    pair settles and fails over within seconds.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        webhook_url: str | None = None,
        config_text: str | None = None,
        port: int | None = None,
        cluster_port: int | None = None,
        peers: Sequence[str] = (),
        web_config_text: str | None = None,
    ) -> None:
        if (webhook_url is None) == (config_text is None):
            raise ValueError("give either webhook_url or config_text")
        self.binary = alertmanager_binary()
        self.workdir = workdir
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.peers = list(peers)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(
            config_text if config_text is not None else FAST_ROUTE.format(webhook_url=webhook_url)
        )
        self.web_config: Path | None = None
        self.tls = web_config_text is not None and "tls_server_config" in web_config_text
        if web_config_text is not None:
            self.web_config = workdir / "web.yml"
            self.web_config.write_text(web_config_text)
        self.log = workdir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_timeout = 15.0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def cluster_address(self) -> str:
        assert self.cluster_port is not None
        return f"127.0.0.1:{self.cluster_port}"

    def args(self) -> list[str]:
        args = [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=debug",
        ]
        if self.web_config is not None:
            args.append(f"--web.config.file={self.web_config}")
        if self.cluster_port is None:
            args.append("--cluster.listen-address=")
        else:
            args += [
                f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{self.cluster_port}",
                "--cluster.peer-timeout=1s",
                "--cluster.gossip-interval=50ms",
                "--cluster.pushpull-interval=1s",
                "--cluster.probe-interval=200ms",
                "--cluster.probe-timeout=100ms",
                "--cluster.settle-timeout=2s",
                "--cluster.reconnect-interval=1s",
                *(f"--cluster.peer={p}" for p in self.peers),
            ]
        return args

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            raise RuntimeError("already started")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"alertmanager exited at start: {self.log.read_text()[-3000:]}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"alertmanager not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        try:
            # /-/ready needs no auth; with TLS, any answer on the port means it is up.
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 400 and self.tls  # plain HTTP to a TLS port
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (plain HTTP instances only), including inhibited and resolved ones."""
        query = "?active=true&silenced=true&inhibited=true&unprocessed=true"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/alerts{query}", timeout=5) as r:
            data: list[dict[str, Any]] = json.loads(r.read())
            return data

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/status`` (plain HTTP instances only): cluster peers, config, uptime."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/status", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def cluster_size(self) -> int:
        return len(self.status().get("cluster", {}).get("peers") or [])

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]
