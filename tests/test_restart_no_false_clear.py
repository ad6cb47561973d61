"""kill -9 of a real `anbo run` while TelemetryLost fires in a real Alertmanager (issue #11, item 2).

The station's telemetry stops; TelemetryLost fires and is delivered. anbo is killed with
SIGKILL and started again while the telemetry is still missing. The restarted daemon must
not send a resolution for lack of data it has not had a chance to receive: Alertmanager
keeps the alert with its original startsAt, the webhook sees one firing notification and
no resolution, and the outage ledger does not close the unmonitored interval on restart.
When the telemetry comes back, the alert resolves (the hold is not a stuck alert).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitor.ledger import IntervalClass, LedgerStore
from monitor.wire import encode_readings
from tests.alertmanager_server import Alertmanager, WebhookReceiver
from tests.servers import Mosquitto
from tests.test_alerting_e2e import same_instant

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALE = 3.0
CONFIG = """
state_directory = "{state}"
[station]
name = "restart"
[mqtt]
url = "{url}"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5
[metrics]
listen = "127.0.0.1:0"
[probes]
tick = 0.25
[ledger]
heartbeat = 1.0
[alerting]
stale_after = {stale}
# endsAt = now + 4 × resend: Alertmanager must not resolve it by itself while anbo restarts
resend_interval = 5.0
alertmanagers = [{{ url = "{am}" }}]
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
streams = ["rf"]
"""


class Feeder:
    """Publishes healthy rf readings four times a second while ``on`` is set."""

    def __init__(self, port: int) -> None:
        self.on = threading.Event()
        self.on.set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="feeder")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.seq = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.on.is_set():
                self.seq += 1
                body = encode_readings(time.time(), self.seq, {"rf_level_dbuv": 60.0})
                self.client.publish("anbo/restart/fm-97.5/rf", body, qos=0)
            self._stop.wait(0.25)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def feeder(mosquitto: Mosquitto) -> Iterator[Feeder]:
    f = Feeder(mosquitto.port)
    f._thread.start()
    yield f
    f.close()


def log_events(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def lost_in_am(am: Alertmanager) -> list[dict[str, object]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == "TelemetryLost"]


def unmonitored(path: Path) -> list:  # type: ignore[type-arg]
    store = LedgerStore(path, readonly=True)
    store.open()
    try:
        return [r for r in store.current(classes=[IntervalClass.UNMONITORED]) if "TelemetryLost" in r.causes]
    finally:
        store.close()


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


async def wait(predicate, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit} s: {what}")
        await asyncio.sleep(0.1)


def test_sigkill_restart_during_telemetry_loss_sends_no_all_clear(
    mosquitto: Mosquitto, feeder: Feeder, tmp_path: Path
) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            am.start()
            try:
                await _scenario(mosquitto, feeder, tmp_path, am, hook)
            finally:
                am.stop()

    asyncio.run(main())


async def _scenario(
    mosquitto: Mosquitto, feeder: Feeder, tmp_path: Path, am: Alertmanager, hook: WebhookReceiver
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "anbo.toml"
    config.write_text(CONFIG.format(state=state, url=mosquitto.url, stale=STALE, am=am.url))
    cmd = [sys.executable, "-m", "anbo", "run", "--config", str(config), "--log-format", "json"]
    logs = [tmp_path / "run1.log", tmp_path / "run2.log"]

    first = spawn(cmd, logs[0])
    try:
        await asyncio.sleep(2.0)  # on air, heard from
        feeder.on.clear()  # the telemetry stops: the outage begins
        await hook.wait_seen("TelemetryLost", "firing", [am], limit=30)
        [before] = lost_in_am(am)
        starts_at = before["startsAt"]
        await asyncio.sleep(1.5)  # a few ticks and heartbeats into the outage
        [lost_row] = unmonitored(state / "ledger.sqlite3")
    finally:
        first.kill()  # SIGKILL: no shutdown, no state saved beyond the last tick
        first.wait(10)
    assert any(e.get("event") == "alert firing" for e in log_events(logs[0]))

    second = spawn(cmd, logs[1])
    restarted = time.time()
    try:
        await wait(
            lambda: any(e.get("event") == "subscribed" for e in log_events(logs[1])), 30, "resubscribed"
        )
        # the grace (stale_after after the subscription) and then as long again: the
        # outage goes on, the restored alert must hold through all of it
        await asyncio.sleep(3 * STALE)
        events = log_events(logs[1])
        restored = [e for e in events if e.get("event") == "alert state restored"]
        assert restored and restored[0]["alerts"] == 1, events[:20]
        assert not [e for e in events if e.get("event") == "alert resolved"], "false all-clear"
        assert not [e for e in events if e.get("event") == "alert firing"], "re-announced"
        [after] = lost_in_am(am)
        assert same_instant(after["startsAt"], starts_at)
        assert after["status"]["state"] == "active"
        assert hook.seen("TelemetryLost", "resolved") == []
        assert len(hook.seen("TelemetryLost", "firing")) == 1
        # the ledger: the interval TelemetryLost opened goes on, neither closed nor reopened
        rows = unmonitored(state / "ledger.sqlite3")
        assert [(r.event_id, r.revision, r.open) for r in rows] == [(lost_row.event_id, 0, True)], rows
        assert restarted > lost_row.start

        # the telemetry comes back: now it resolves (held, not stuck), startsAt unchanged
        feeder.on.set()
        resolved = await hook.wait_seen("TelemetryLost", "resolved", [am], limit=30)
        # the same instant; Alertmanager's API and its webhook may spell it differently
        # (…18.400Z and …18.4Z)
        assert same_instant(resolved.starts_at, starts_at)
        assert len(hook.seen("TelemetryLost", "firing")) == 1
    finally:
        second.terminate()
        second.wait(20)
