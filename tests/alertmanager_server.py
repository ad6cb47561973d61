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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench._servers import FAST_ROUTE, Alertmanager, alertmanager_binary

__all__ = ["FAST_ROUTE", "Alertmanager", "Notification", "WebhookReceiver", "alertmanager_binary"]


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
