"""kill -9 of a real `anbo run` during an outage, through a real Mosquitto: the outage
stays one interval across the restart, the gap is unmonitored, nothing is recorded twice."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anbo.report import CountingRules, compute
from monitor.ledger import IntervalClass, LedgerService, LedgerStore
from monitor.wire import encode_readings
from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
state_directory = "{state}"
[station]
name = "crash"
[mqtt]
url = "{url}"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5
[metrics]
listen = "127.0.0.1:0"
[probes]
tick = 0.5
[ledger]
heartbeat = 1.0
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
streams = ["rf"]
"""


class Feeder:
    """Publishes rf readings twice a second; ``level`` can be changed on the fly."""

    def __init__(self, port: int) -> None:
        self.level = 10.0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="feeder")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.seq = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seq += 1
            body = encode_readings(time.time(), self.seq, {"rf_level_dbuv": self.level})
            self.client.publish("anbo/crash/fm-97.5/rf", body, qos=0)
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def feeder(mosquitto: Mosquitto) -> Iterator[Feeder]:
    f = Feeder(mosquitto.port)
    f.start()
    yield f
    f.stop()


def rows(path: Path, cls: IntervalClass) -> list:  # type: ignore[type-arg]
    if not path.exists():
        return []
    store = LedgerStore(path, readonly=True)
    try:
        store.open()
        return store.current(classes=[cls])
    except Exception:
        return []
    finally:
        store.close()


def wait(predicate, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {limit} s: {what}")


def test_kill_9_during_an_outage(mosquitto: Mosquitto, feeder: Feeder, tmp_path: Path) -> None:
    config = tmp_path / "anbo.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", url=mosquitto.url))
    ledger = tmp_path / "state" / "ledger.sqlite3"
    cmd = [sys.executable, "-m", "anbo", "run", "--config", str(config), "--log-format", "json"]
    log1 = (tmp_path / "run1.log").open("wb")
    first = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT)
    t_start = time.time()
    try:
        wait(
            lambda: any(r.open for r in rows(ledger, IntervalClass.OUTAGE)), 40, "CarrierLoss opens an outage"
        )
        (opened,) = rows(ledger, IntervalClass.OUTAGE)
        # the interval starts at the onset (first low reading), not when `for: 5s` elapsed
        assert t_start - 1 <= opened.start <= time.time() - 4.5
        time.sleep(3.0)  # a few heartbeats into the outage
    finally:
        first.kill()  # SIGKILL: no shutdown, no closing
        first.wait(10)
        log1.close()
    killed = time.time()
    time.sleep(4.0)
    feeder.level = 60.0  # back on air while anbo is down
    time.sleep(2.0)
    log2 = (tmp_path / "run2.log").open("wb")
    second = subprocess.Popen(cmd, stdout=log2, stderr=subprocess.STDOUT)
    restarted = time.time()
    try:
        wait(lambda: len(rows(ledger, IntervalClass.UNMONITORED)) == 1, 40, "the gap recorded as unmonitored")
        wait(lambda: not any(r.open for r in rows(ledger, IntervalClass.OUTAGE)), 40, "nothing left open")
    finally:
        second.terminate()
        second.wait(20)
        log2.close()
    outages = rows(ledger, IntervalClass.OUTAGE)
    # The restored CarrierLoss keeps its interval across the restart (never closed and
    # reopened): one outage, from its onset until the clear anbo saw after the restart.
    (first_outage,) = outages
    assert first_outage.event_id == opened.event_id and first_outage.start == opened.start
    assert first_outage.end is not None and restarted <= first_outage.end <= restarted + 15
    assert first_outage.revision == 1 and first_outage.source == "monitor"
    # The down time is unmonitored from the last heartbeat (at most a heartbeat, 1 s, plus
    # a tick before the kill) to the restart; the reports give it priority over the outage.
    (gap,) = rows(ledger, IntervalClass.UNMONITORED)
    assert killed - 2.5 <= gap.start <= killed and restarted - 1 <= gap.end <= restarted + 10
    assert gap.causes == ("DaemonDown",)
    assert len({r.event_id for r in outages}) == len(outages)
    # the report adds up over the whole stretch: no second missing or counted twice
    store = LedgerStore(ledger, readonly=True)
    store.open()
    a, b = t_start - 5, time.time()
    report = compute(
        store,
        [LedgerService("fm-97.5", "News", "fm")],
        station="crash",
        station_class=3,
        start=a,
        end=b,
        rules=CountingRules(),
        now=b,
    )
    store.close()
    s = report["services"][0]
    parts = (
        "on_air_s",
        "outage_s",
        "degraded_s",
        "wrong_programme_s",
        "filler_s",
        "unmonitored_s",
        "maintenance_s",
    )
    assert sum(s[k] for k in parts) == pytest.approx(s["scheduled_s"], abs=0.01)
    assert s["unmonitored_s"] == pytest.approx(gap.duration(), abs=0.01)
