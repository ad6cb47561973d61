"""Delivery shown as it is (issue #11 item 8): an alert is pending, delivered, or failing
with the reason, in the notifier, the console's API and the demo's view; never
"notified: yes" for an alert no Alertmanager has accepted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from rich.console import Console

from anbo.demo.run import _demo_settings
from anbo.demo.view import EventLog, render
from monitor.alertmanager import AlertmanagerNotifier, AlertmanagerTarget, DeliveryState, OutgoingAlert
from monitor.daemon import Daemon
from monitor.evaluation import to_outgoing
from rules import AlertState, TargetView
from tests.alertmanager_server import Alertmanager, WebhookReceiver
from tests.servers import free_port

LABELS = {"alertname": "DeadAir", "severity": "critical", "station": "s1", "target": "fm-97.5"}


def alert() -> OutgoingAlert:
    return OutgoingAlert(labels=LABELS, annotations={"summary": "x"}, starts_at=round(time.time(), 3))


async def until(cond, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_nothing_listening_is_failing_with_the_reason() -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        n = AlertmanagerNotifier([AlertmanagerTarget(url=url, timeout=2)], resend_interval=1.0)
        assert n.delivery(LABELS).state is DeliveryState.NOT_SENT
        n.update([alert()], [])
        assert n.delivery(LABELS).state is DeliveryState.PENDING  # queued, not yet tried
        task = asyncio.create_task(n.run())
        try:
            await until(lambda: n.delivery(LABELS).state is DeliveryState.FAILING)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        d = n.delivery(LABELS)
        assert d.reason is not None and d.reason.startswith("connection:"), d
        assert d.to_json()["alertmanagers"] == {url: {"state": "failing", "reason": d.reason}}
        assert n.last_failure(url) == d.reason

    asyncio.run(main())


@pytest.mark.integration
def test_a_real_alertmanager_is_delivered(tmp_path: Path) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            am.start()
            try:
                down = f"http://127.0.0.1:{free_port()}"
                n = AlertmanagerNotifier(
                    [AlertmanagerTarget(url=am.url), AlertmanagerTarget(url=down, timeout=2)],
                    resend_interval=1.0,
                )
                n.update([alert()], [])
                task = asyncio.create_task(n.run())
                try:
                    await until(lambda: n.delivery(LABELS).state is DeliveryState.DELIVERED)
                    await until(lambda: n.delivery(LABELS).alertmanagers[down][0] is DeliveryState.FAILING)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                # one of an HA pair has it: delivered; the other is shown failing beside it
                d = n.delivery(LABELS)
                assert d.alertmanagers[am.url] == (DeliveryState.DELIVERED, None)
                await hook.wait_seen("DeadAir", "firing", [am])
            finally:
                am.stop()

    asyncio.run(main())


def test_demo_view_and_api_show_failing_delivery(tmp_path: Path) -> None:
    """`anbo demo --alertmanager http://127.0.0.1:1`: the alerts table says failing, why."""
    args = argparse.Namespace(config=None, alertmanager=["http://127.0.0.1:1"])
    loaded = _demo_settings(args, "mqtt://127.0.0.1:1", "3.1.1", "127.0.0.1:0", tmp_path / "state")
    daemon = Daemon(loaded)
    engine = daemon.evaluator.engine
    views = [
        TargetView(t.name, t.kind.value, {"target": t.name, "station": "qingshan"}, {}, {}, None)
        for t in loaded.settings.targets
    ]
    stale = loaded.settings.alerting.stale_after
    engine.evaluate(views, 0.0, time.time())
    engine.evaluate(views, stale + 1, time.time())  # never heard from: TelemetryLost everywhere
    firing = [a for a in engine.active() if a.state is AlertState.FIRING]
    assert firing
    notifier = daemon.alertmanager
    assert notifier is not None
    notifier.update([to_outgoing(a, "") for a in firing], [])

    def table() -> str:
        console = Console(record=True, width=250, color_system=None)
        console.print(render(daemon, EventLog(), "header"))
        return console.export_text()

    assert "pending" in table()
    assert all(daemon.delivery(a)["state"] == "pending" for a in firing)

    async def deliver() -> None:
        task = asyncio.create_task(notifier.run())
        try:
            await until(lambda: all(daemon.delivery(a)["state"] == "failing" for a in firing))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(deliver())
    out = table()
    assert "failing (connection:" in out and "delivered" not in out
    alerts = daemon.console.build()["alerts"]
    assert alerts and all(a["delivery"]["state"] == "failing" for a in alerts)
    assert all(str(a["delivery"]["reason"]).startswith("connection:") for a in alerts)
