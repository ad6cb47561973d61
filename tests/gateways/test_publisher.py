"""The gateways' shared publisher (``anbo poll``'s, ``anbo capture``'s) against a real
Mosquitto: in order, nothing lost over a broker restart, bounded (and counted per target)
while the broker is away."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from monitor.publisher import MqttPublisher, Outgoing
from monitor.settings import MqttSettings
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_the_publisher_survives_a_broker_restart_and_drops_only_what_overflows(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(url=[mosquitto.url], backoff_min=0.05, backoff_max=0.3, keepalive=5)

    async def main() -> None:
        outbox = MqttPublisher.from_settings(settings, client_id="gw-outbox-test", capacity=40)
        got: list[int] = []
        first_in, all_in = asyncio.Event(), asyncio.Event()
        sub = aiomqtt.Client(
            "127.0.0.1",
            mosquitto.port,
            identifier="gw-outbox-sub",
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
        )

        async def listen() -> None:
            while True:
                try:
                    async with sub:
                        await sub.subscribe("t/#", qos=1)
                        async for m in sub.messages:
                            got.append(int(bytes(m.payload)))  # type: ignore[arg-type]
                            if len(got) >= 20:
                                first_in.set()
                            if len(got) >= 60:
                                all_in.set()
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)

        listener = asyncio.create_task(listen())
        runner = asyncio.create_task(outbox.run())
        try:
            await asyncio.wait_for(outbox.up.wait(), 10)
            await asyncio.sleep(0.3)  # the subscription is in place
            for i in range(20):
                outbox.offer(Outgoing("t/a", str(i).encode(), key="a"))
            await asyncio.wait_for(outbox.wait_drained(), 10)
            # Up to max_inflight publishes are confirmed at once: wait for the subscriber
            # too, or the broker's redelivery of what it had not acked yet (QoS 1) repeats some.
            await asyncio.wait_for(first_in.wait(), 10)
            await asyncio.sleep(0.3)  # and for its acks to reach the broker
            mosquitto.stop()
            await asyncio.sleep(0.5)
            for i in range(20, 70):  # 50 while the broker is away: the 10 oldest go
                outbox.offer(Outgoing("t/a", str(i).encode(), key="a"))
            assert outbox.queued == 40 and outbox.stats.dropped == {"a": 10}
            mosquitto.start()
            await asyncio.wait_for(outbox.wait_drained(), 15)
            await asyncio.wait_for(all_in.wait(), 15)
            assert got == [*range(20), *range(30, 70)]  # in order; only the overflow is missing
            assert outbox.stats.published == 60 and outbox.stats.published_by == {"a": 60}
            assert outbox.stats.connects == 2 and outbox.stats.connection_errors.get("refused", 0) >= 1
        finally:
            for task in (runner, listener):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())
