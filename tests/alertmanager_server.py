"""A real Alertmanager and a webhook receiver for integration tests, on free loopback ports.

:class:`Alertmanager` runs Debian's ``prometheus-alertmanager`` (upstream's
``alertmanager`` binary also works) with its own config and storage in a test folder:
single (clustering disabled) or as a member of an HA cluster. :class:`WebhookReceiver`
is an aiohttp server that records the notifications Alertmanager sends.

A missing binary fails the test loudly; nothing here touches an Alertmanager the tests
did not start, and no fixed port (9093, 9094) is assumed free.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.servers import ServerProcess, find_binary, free_port

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


@dataclass
class Notification:
    """One alert of one webhook notification."""

    status: str  # "firing" or "resolved": the alert's own status
    labels: dict[str, str]
    starts_at: str
    ends_at: str
    received: float  # monotonic time of arrival
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass
class WebhookReceiver:
    """An aiohttp server on a loopback port that records Alertmanager's webhook notifications."""

    port: int = 0
    payloads: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.payloads.append(payload)
        now = time.monotonic()
        for a in payload.get("alerts", []):
            self.notifications.append(
                Notification(
                    a["status"], a["labels"], a["startsAt"], a["endsAt"], now, a.get("annotations", {})
                )
            )
        return web.Response(text="ok")

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def seen(self, alertname: str, status: str) -> list[Notification]:
        return [n for n in self.notifications if n.alertname == alertname and n.status == status]

    async def wait_for(
        self, cond: Callable[[], bool], limit: float, what: str, logs: Sequence[Alertmanager] = ()
    ) -> None:
        """Poll ``cond`` until it holds; fail with the notifications and Alertmanager logs if it does not."""
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline:
                seen = [(n.alertname, n.status, n.starts_at) for n in self.notifications]
                tails = "\n".join(f"--- {am.url}\n{am.log_tail()}" for am in logs)
                raise AssertionError(
                    f"timed out after {limit} s waiting for {what}; webhook saw {seen}\n{tails}"
                )
            await asyncio.sleep(0.02)

    async def wait_seen(
        self, alertname: str, status: str, logs: Sequence[Alertmanager] = (), limit: float = 20.0
    ) -> Notification:
        """The first notification of ``alertname`` with ``status``, once it arrives."""
        await self.wait_for(lambda: bool(self.seen(alertname, status)), limit, f"{alertname} {status}", logs)
        return self.seen(alertname, status)[0]
