"""The poll loop's logic with a scripted reader: messages, sequence, states, logs, metrics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import deque

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from gateways.mapping import PointError
from gateways.poller import DeviceError, GatewayCollector, Poller, ReadResult
from monitor.publisher import MqttPublisher, PublisherCollector
from monitor.settings import MqttSettings
from monitor.wire import Readings, decode
from tests.servers import find_binary


class ScriptedReader:
    """Answers each read with the next scripted result (a ReadResult or a DeviceError)."""

    protocol = "snmp"
    address = "192.0.2.1:161"

    def __init__(self, *script: ReadResult | DeviceError) -> None:
        self.script = deque(script)
        self.closed = False

    async def read(self) -> ReadResult:
        item = self.script.popleft()
        if isinstance(item, DeviceError):
            raise item
        return item

    async def close(self) -> None:
        self.closed = True


def ok(**values: float | bool) -> ReadResult:
    return ReadResult(values=dict(values))


def poller(reader: ScriptedReader, wall: list[float]) -> tuple[Poller, MqttPublisher]:
    outbox = MqttPublisher.from_settings(MqttSettings(), client_id="t", capacity=100)
    clock = [0.0]
    p = Poller(
        reader,
        outbox,
        source="tx-a",
        target="tx-a",
        topic="anbo/st/tx-a/status",
        interval=1.0,
        timeout=5.0,
        backoff_max=10.0,
        wall=lambda: wall[0],
        clock=lambda: clock[0],
    )
    return p, outbox


def messages(outbox: MqttPublisher) -> list[Readings]:
    out = []
    for m in outbox._queue:
        assert m.topic == "anbo/st/tx-a/status"
        msg = decode(m.payload, content_type=None, user_properties=None, now=1.75e9 + 100)
        assert isinstance(msg, Readings)
        out.append(msg)
    return out


def test_readings_errors_and_recovery_make_a_gap_free_sequence() -> None:
    reader = ScriptedReader(
        ok(forward_power_w=1000.0, vswr=1.2, on_air=True),
        ReadResult(values={"forward_power_w": 990.0}, errors={"vswr": PointError("no_such_object", "x")}),
        DeviceError("timeout", "no answer in 2x1s (agent down, unreachable, or wrong community)"),
        DeviceError("timeout", "no answer in 2x1s (agent down, unreachable, or wrong community)"),
        DeviceError("auth", "SNMPv3 Wrong SNMP PDU digest"),
        ok(forward_power_w=1001.0, vswr=1.3),
    )
    wall = [1.75e9]
    p, outbox = poller(reader, wall)

    async def run() -> None:
        for _ in range(6):
            await p.poll_once()
            wall[0] += 1.0

    with capture_logs() as logs:
        asyncio.run(run())
    got = messages(outbox)
    assert [m.seq for m in got] == list(range(6))
    assert [m.ts for m in got] == [1.75e9 + i for i in range(6)]
    assert got[0].values == {"forward_power_w": 1000.0, "vswr": 1.2, "on_air": 1.0, "device_reachable": 1.0}
    assert got[1].values == {"forward_power_w": 990.0, "device_reachable": 1.0}  # the failed point left out
    assert got[2].values == {"device_reachable": 0.0}
    assert got[2].info["device_error"].startswith("no answer in 2x1s")
    assert len(got[2].info["device_error"]) <= 64
    assert got[4].info["device_error"] == "SNMPv3 Wrong SNMP PDU digest"
    assert got[5].values["device_reachable"] == 1.0 and not got[5].info
    events = [(e["event"], e.get("reason"), e.get("reading")) for e in logs]
    # One line per change: the same timeout twice is logged once; a new reason is a change.
    assert events == [
        ("device reachable", None, None),
        ("point unreadable", "no_such_object", "vswr"),
        ("device unreachable", "timeout", None),
        ("device unreachable", "auth", None),
        ("device reachable again", None, None),
        ("point readable again", None, "vswr"),
    ]
    st = p.state
    assert st.up and st.polls_ok == 3 and st.polls_failed == 3
    assert st.errors == {"timeout": 2, "auth": 1}
    assert st.point_errors == {("vswr", "no_such_object"): 1} and not st.failing_points


def test_a_read_that_hangs_or_a_socket_error_is_a_device_error() -> None:
    class Hanging(ScriptedReader):
        async def read(self) -> ReadResult:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

    class Refused(ScriptedReader):
        async def read(self) -> ReadResult:
            raise ConnectionRefusedError(111, "Connection refused")

    class Broken(ScriptedReader):
        async def read(self) -> ReadResult:
            raise KeyError("engine")

    for reader, reason, detail in (
        (Hanging(), "timeout", "no answer within 0.05 s"),
        (Refused(), "unreachable", "Connection refused"),
        (Broken(), "protocol", "KeyError: 'engine'"),
    ):
        wall = [1.75e9]
        p, outbox = poller(reader, wall)
        p.timeout = 0.05
        asyncio.run(p.poll_once())
        (msg,) = messages(outbox)
        assert msg.values == {"device_reachable": 0.0} and msg.info == {"device_error": detail}
        assert p.state.errors == {reason: 1}


def test_the_loop_backs_off_but_keeps_the_status_stream_alive() -> None:
    """While the device is down, attempts back off; every interval still says it is down."""
    reader = ScriptedReader(*[DeviceError("refused", "connection refused by 192.0.2.1:502")] * 50)
    wall = [1.75e9]
    p, outbox = poller(reader, wall)
    p.interval = 0.01
    p.backoff_max = 0.08

    async def run() -> None:
        task = asyncio.create_task(p.run())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    p.clock = time.monotonic
    asyncio.run(run())
    attempts = p.state.polls_failed
    sent = messages(outbox)
    assert reader.closed
    assert all(m.values == {"device_reachable": 0.0} for m in sent)
    assert [m.seq for m in sent] == list(range(len(sent)))
    # Attempts are fewer than the status messages: the rest are heartbeats between attempts.
    assert 1 <= attempts < len(sent)


def test_metrics() -> None:
    reader = ScriptedReader(
        ReadResult(values={"vswr": 1.1}, errors={"fault": PointError("illegal_address", "x")}),
        DeviceError("timeout", "no answer"),
    )
    wall = [1.75e9]
    p, outbox = poller(reader, wall)
    asyncio.run(p.poll_once())
    registry = CollectorRegistry()
    registry.register(GatewayCollector(lambda: [p.state], station=lambda: "st"))
    registry.register(
        PublisherCollector(outbox, station=lambda: "st", gateway="poll", targets=lambda: ["tx-a"])
    )
    base = {"station": "st", "gateway": "poll"}
    labels = {**base, "target": "tx-a", "source": "tx-a", "protocol": "snmp"}
    assert registry.get_sample_value("anbo_gateway_up", labels) == 1.0
    assert registry.get_sample_value("anbo_gateway_last_success_timestamp_seconds", labels) == 1.75e9
    assert registry.get_sample_value("anbo_gateway_points_failing", labels) == 1.0
    assert (
        registry.get_sample_value(
            "anbo_gateway_point_errors_total", {**labels, "reading": "fault", "reason": "illegal_address"}
        )
        == 1.0
    )
    asyncio.run(p.poll_once())
    assert registry.get_sample_value("anbo_gateway_up", labels) == 0.0
    assert registry.get_sample_value("anbo_gateway_errors_total", {**labels, "reason": "timeout"}) == 1.0
    assert registry.get_sample_value("anbo_gateway_polls_total", {**labels, "result": "error"}) == 1.0
    assert registry.get_sample_value("anbo_gateway_poll_latency_seconds_count", labels) == 1.0
    assert registry.get_sample_value("anbo_gateway_publish_queue_messages", base) == 2.0
    assert (
        registry.get_sample_value("anbo_gateway_mqtt_connected", {**base, "broker": "mqtt://127.0.0.1:1883"})
        == 0.0
    )
    assert registry.get_sample_value("anbo_gateway_dropped_messages_total", {**base, "target": "tx-a"}) == 0.0
    assert json.loads(outbox._queue[1].payload)["values"] == {"device_reachable": False}


def test_the_exposition_passes_promtool() -> None:
    reader = ScriptedReader(
        ReadResult(values={"vswr": 1.1}, errors={"fault": PointError("no_such_object", "x")}),
        DeviceError("timeout", "no answer"),
    )
    p, outbox = poller(reader, [1.75e9])
    asyncio.run(p.poll_once())
    asyncio.run(p.poll_once())
    outbox.stats.connection_errors["refused"] = 2
    registry = CollectorRegistry()
    registry.register(GatewayCollector(lambda: [p.state], station=lambda: "st"))
    registry.register(
        PublisherCollector(outbox, station=lambda: "st", gateway="poll", targets=lambda: ["tx-a"])
    )
    exposition = generate_latest(registry)
    result = subprocess.run(
        [find_binary("promtool"), "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"anbo_gateway_point_errors_total{" in exposition
