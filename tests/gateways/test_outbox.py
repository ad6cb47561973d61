"""The gateway's outbox against a real Mosquitto: in order, nothing lost over a broker
restart, bounded (and counted) while the broker is away."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from gateways.publish import Outbox
from monitor.settings import MqttSettings
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_outbox_survives_a_broker_restart_and_drops_only_what_overflows(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(url=[mosquitto.url], backoff_min=0.05, backoff_max=0.3, keepalive=5)

    async def main() -> None:
        outbox = Outbox(settings, client_id="gw-outbox-test", capacity=40)
        got: list[int] = []
        all_in = asyncio.Event()
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
                            if len(got) >= 60:
                                all_in.set()
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)

        listener = asyncio.create_task(listen())
        runner = asyncio.create_task(outbox.run())
        try:
            await asyncio.wait_for(outbox.connected.wait(), 10)
            await asyncio.sleep(0.3)  # the subscription is in place
            for i in range(20):
                outbox.put("t/a", str(i).encode())
            await asyncio.wait_for(outbox.flush(), 10)
            mosquitto.stop()
            await asyncio.sleep(0.5)
            for i in range(20, 70):  # 50 while the broker is away: the 10 oldest go
                outbox.put("t/a", str(i).encode())
            assert len(outbox) == 40 and outbox.stats.dropped == 10
            mosquitto.start()
            await asyncio.wait_for(outbox.flush(), 15)
            await asyncio.wait_for(all_in.wait(), 15)
            assert got == [*range(20), *range(30, 70)]  # in order; only the overflow is missing
            assert outbox.stats.published == 60 and outbox.stats.connects == 2
        finally:
            for task in (runner, listener):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())
