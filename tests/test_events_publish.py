"""The station's event publisher against a real Mosquitto: a backlog goes out in batches."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from monitor.events import BATCH, EventPublisher, _connected
from monitor.ledger import Ledger, ledger_services
from monitor.settings import load_settings
from rules import AlertState, OutageClass, Severity, Transition
from tests.servers import Mosquitto

CONFIG = """
state_directory = "{state}"
[station]
name = "qingshan"
[mqtt]
url = ["{url}"]
[[targets]]
name = "fm-97.5"
kind = "fm"
frequency_mhz = 97.5
service = "News"
"""


def firing(i: int) -> Transition:
    return Transition(
        alertname="CarrierLoss",
        target=f"fm-{i}",
        from_state=AlertState.PENDING,
        to_state=AlertState.FIRING,
        labels={"station": "qingshan"},
        annotations={"summary": "Carrier lost"},
        runbook_url=None,
        severity=Severity.CRITICAL,
        outage_class=OutageClass.OUTAGE,
        starts_at=1000.0 + i,
        ends_at=None,
        value=3.0,
        notify=True,
        reason=None,
        onset=995.0 + i,
        clear_onset=None,
    )


def test_a_backlog_goes_out_in_batches_without_a_pending_calls_warning(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "anbo.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", url=mosquitto.url))
    loaded = load_settings(path)
    ledger = Ledger(loaded.ledger_path, "qingshan", ledger_services(loaded.settings))
    ledger.start()
    pub = EventPublisher(loaded, ledger)
    backlog = 3 * BATCH // 2  # held back (a cut link, say): more than one batch at once
    pub.on_transitions([firing(i) for i in range(backlog)])

    async def publish_all() -> None:
        task = asyncio.create_task(pub.run())
        deadline = time.monotonic() + 30
        # + 1: the station description; polled, the publisher has no event to wait on
        while pub.published < backlog + 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="mqtt"):
        asyncio.run(publish_all())
    pub.close()
    ledger.stop()
    assert pub.published == backlog + 1 and pub.publish_errors == 0
    # Every publish of a batch waits for its PUBACK at once: expected, not a warning
    # (aiomqtt warns beyond 10 pending calls unless told otherwise).
    assert [r.getMessage() for r in caplog.records if "pending" in r.getMessage()] == []


class _NeverClosed:
    """A client whose disconnect is never confirmed (aiomqtt's __aexit__ waits for that
    without limit): only the shape _connected needs."""

    entered = False

    async def __aenter__(self) -> _NeverClosed:
        self.entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("how", ["cancelled", "returned"])
def test_leaving_a_connection_waits_at_most_the_disconnect_timeout(how: str) -> None:
    client = _NeverClosed()

    async def session() -> None:
        async with _connected(client, 0.2):  # type: ignore[arg-type]
            if how == "cancelled":
                await asyncio.Event().wait()

    async def main() -> float:
        task = asyncio.create_task(session())
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        if how == "cancelled":
            task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert task in done, "leaving the connection waited for ever"
        if how == "cancelled":
            assert task.cancelled()  # the cancellation goes on after the bounded exit
        else:
            assert task.exception() is None
        return time.monotonic() - t0

    assert asyncio.run(main()) < 5 and client.entered
