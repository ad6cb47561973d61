"""The publisher through a real Mosquitto: MQTT v5 and 3.1.1 framing, order, pacing, reconnects."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitor.settings import Settings
from monitor.wire import SampleBlock, decode
from simulator.publisher import Publisher
from simulator.scenario import parse_scenario
from simulator.station import SimOptions, StationSimulator
from tests.servers import Mosquitto
from tests.simulator.helpers import station

pytestmark = pytest.mark.integration


class Subscriber:
    """Collects everything under ``anbo/#`` (resubscribing after a reconnect)."""

    def __init__(self, port: int, v5: bool) -> None:
        self.messages: list[tuple[float, str, bytes, str | None, list[tuple[str, str]] | None]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sub-{v5}", protocol=paho.MQTTv5 if v5 else paho.MQTTv311
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        client.subscribe("anbo/#", qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        ctype = getattr(props, "ContentType", None) if props is not None else None
        user = getattr(props, "UserProperty", None) if props is not None else None
        with self.lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload), ctype, user))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return station(tmp_path)


@pytest.fixture
def subscriber(request: pytest.FixtureRequest, mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.port, v5=request.param == "5")
    assert sub.subscribed.wait(10)
    yield sub
    sub.close()


@pytest.mark.parametrize("subscriber", ["5", "3.1.1"], indirect=True)
def test_publishes_the_contract_in_order_at_pace(
    settings: Settings, mosquitto: Mosquitto, subscriber: Subscriber, request: pytest.FixtureRequest
) -> None:
    protocol = request.node.callspec.params["subscriber"]
    sc = parse_scenario("name: p\nduration: 8s\neb: {endpoints: 20, regions: 2}\n")
    start = time.time()
    sim = StationSimulator(settings, sc, SimOptions(start=start, protocol=protocol))
    pub = Publisher(mosquitto.url, protocol=protocol, client_id=f"sim-{protocol}", speed=4.0)
    began = time.monotonic()
    stats = asyncio.run(pub.run(sim.messages()))
    elapsed = time.monotonic() - began
    assert elapsed >= 1.8  # 8 simulated seconds at 4× (plus connecting)
    assert stats.published == stats.generated > 250 and stats.dropped == stats.resent == 0
    deadline = time.monotonic() + 10
    while len(subscriber.messages) < stats.published and time.monotonic() < deadline:
        time.sleep(0.05)
    with subscriber.lock:
        got = list(subscriber.messages)
    assert len(got) == stats.published
    seqs: dict[str, list[int]] = {}
    for _, topic, payload, ctype, user in got:
        p = decode(payload, content_type=ctype, user_properties=user, now=start + 10.0)
        seqs.setdefault(topic, []).append(p.seq)
        if topic.endswith("/audio"):
            assert isinstance(p, SampleBlock) and p.samples.shape == (4800, 2)
            assert (ctype is not None) == (protocol == "5")
    assert all(s == list(range(s[0], s[0] + len(s))) for s in seqs.values())  # in order, none lost
    assert any(t.startswith("anbo/eb/") for t in seqs)


@pytest.mark.parametrize("subscriber", ["5"], indirect=True)
def test_reconnects_after_a_broker_restart(
    settings: Settings, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    sc = parse_scenario("name: p\nduration: 12s\n")
    sim = StationSimulator(settings, sc, SimOptions(start=time.time(), audio_targets=frozenset({"fm-a"})))
    pub = Publisher(mosquitto.url, client_id="sim-restart", speed=2.0, backoff=(0.05, 0.2))

    async def main() -> None:
        run = asyncio.create_task(pub.run(sim.messages()))
        await asyncio.wait_for(pub.connected.wait(), 10)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(mosquitto.restart)
        await asyncio.wait_for(run, 30)

    asyncio.run(main())
    assert pub.stats.connects >= 2
    # Nothing lost: what was unconfirmed at the break was sent again.
    assert pub.stats.dropped == 0
    assert pub.stats.published == pub.stats.generated
    # Messages from after the restart reach a subscriber.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with subscriber.lock:
            late = [m for m in subscriber.messages if m[1] == "anbo/sim/fm-a/audio"]
        if (
            late
            and decode(
                late[-1][2], content_type=late[-1][3], user_properties=late[-1][4], now=time.time() + 30
            ).ts
            >= sim.options.start + 11.0
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail("nothing from the end of the run arrived after the broker restart")
