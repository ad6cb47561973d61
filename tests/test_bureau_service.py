"""`anbo bureau --mqtt-url URL --database URL` (no config file) against a real Mosquitto and a
PostgreSQL of the test's own: it creates its schema, stores an event, acknowledges it only
after the commit, acknowledges a replay without storing it twice, rejects garbage with a
reason (never acknowledged), and is ready once subscribed with the database up."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bureau.store import BureauReader
from tests.servers import Mosquitto, Postgres, find_binary, free_port
from tests.test_bureau_wire import INTERVAL

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pg() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def metric(port: int, line: str) -> float:
    m = re.search(rf"^{re.escape(line)} (\S+)$", get(port, "/metrics")[1], re.M)
    return float(m.group(1)) if m else -1.0


def test_store_then_acknowledge(mosquitto: Mosquitto, pg: Postgres, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "bureau.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anbo",
            "bureau",
            "--mqtt-url",
            mosquitto.url,
            "--database",
            pg.url,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    acks: queue.Queue[dict[str, object]] = queue.Queue()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="station-side")
    sub.on_message = lambda _c, _u, m: acks.put(json.loads(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("anbo/+/bureau/v1/ack", qos=1)
    sub.loop_start()
    try:
        deadline = time.monotonic() + 30
        while get(port, "/-/ready")[0] != 200:
            assert time.monotonic() < deadline, (tmp_path / "bureau.log").read_text()[-2000:]
            time.sleep(0.2)
        payload = json.dumps(INTERVAL)
        mosquitto.publish("anbo/qingshan/events/v1/interval", payload)
        ack = acks.get(timeout=15)
        assert ack == {"contract": 1, "station": "qingshan", "seqs": [7], "at": ack["at"]}
        with BureauReader(pg.url) as r:  # committed before the acknowledgement
            assert r.counts()["interval_revisions"] == 1
            assert r.conn.execute("SELECT revision FROM intervals WHERE event_id = 'e1'").fetchone() == (1,)
        # a replay: acknowledged again (the station may have missed the first), stored once
        mosquitto.publish("anbo/qingshan/events/v1/interval", payload)
        assert acks.get(timeout=15)["seqs"] == [7]
        assert metric(port, "anbo_bureau_events_duplicate_total") == 1.0
        # garbage: a reason, no acknowledgement
        mosquitto.publish("anbo/qingshan/events/v1/interval", b"{not json")
        deadline = time.monotonic() + 10
        while metric(port, 'anbo_bureau_messages_rejected_total{reason="bad_json"}') != 1.0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert acks.empty()
        with BureauReader(pg.url) as r:
            assert r.counts()["interval_revisions"] == 1
            assert r.conn.execute("SELECT version FROM anbo_schema").fetchone() == (1,)
        # without [[stations]], nobody is expected: no StationUnreachable
        text = get(port, "/metrics")[1]
        assert "anbo_bureau_station_up{" not in text
        check = subprocess.run(
            [find_binary("promtool"), "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        sub.loop_stop()
        sub.disconnect()
        proc.terminate()
        assert proc.wait(20) == 0
        log.close()
    assert "Traceback" not in (tmp_path / "bureau.log").read_text()
