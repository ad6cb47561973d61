"""Ingest pieces that need no broker: queue accounting, backoff, error classification, and the
consumer that takes every queued message per wake-up."""

from __future__ import annotations

import asyncio
import itertools
import types

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from monitor.ingest import (
    Credentials,
    IngestQueue,
    MqttIngest,
    _refused,
    backoff_delay,
    classify_connect_error,
)
from monitor.settings import MqttSettings
from monitor.stats import ConnectError, DropReason, Result, Stats


def message(topic: str = "anbo/s/t/rf", payload: bytes = b"{}") -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, 1, False, 1, None)


def test_queue_overflow_is_counted_not_raised() -> None:
    stats = Stats()
    clock = iter(range(100))
    q = IngestQueue(2, stats, clock=lambda: float(next(clock)))
    for _ in range(5):
        q.put_nowait(message())
    assert q.qsize() == 2
    assert stats.count(Result.DROPPED, DropReason.QUEUE_FULL.value) == 3
    q.get_nowait()
    assert q.last_rx == 0.0
    q.get_nowait()
    assert q.last_rx == 1.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    lo = [backoff_delay(n, 0.5, 30.0, rng=lambda: 0.0) for n in range(10)]
    hi = [backoff_delay(n, 0.5, 30.0, rng=lambda: 1.0) for n in range(10)]
    assert lo[0] == 0.25 and hi[0] == 0.5
    assert hi[3] == 4.0 and hi[9] == 30.0 and lo[9] == 15.0
    assert all(a <= b for a, b in itertools.pairwise(hi))


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (aiomqtt.MqttCodeError(4), ConnectError.AUTH),
        (aiomqtt.MqttCodeError(5), ConnectError.AUTH),
        (aiomqtt.MqttCodeError(ReasonCode(PacketTypes.CONNACK, identifier=0x86)), ConnectError.AUTH),
        (aiomqtt.MqttCodeError(ReasonCode(PacketTypes.CONNACK, identifier=0x87)), ConnectError.AUTH),
        (aiomqtt.MqttCodeError(ReasonCode(PacketTypes.CONNACK, identifier=0x88)), ConnectError.PROTOCOL),
        (aiomqtt.MqttError("[Errno 111] Connection refused"), ConnectError.REFUSED),
        (aiomqtt.MqttError("Operation timed out"), ConnectError.TIMEOUT),
        (aiomqtt.MqttError("Disconnected during message iteration"), ConnectError.LOST),
        (aiomqtt.MqttError("[SSL: CERTIFICATE_VERIFY_FAILED]"), ConnectError.TLS),
        (aiomqtt.MqttError("[Errno -2] Name or service not known"), ConnectError.DNS),
        (aiomqtt.MqttError("[Errno -3] Temporary failure in name resolution"), ConnectError.DNS),
    ],
)
def test_connect_errors_are_classified(exc: aiomqtt.MqttError, reason: ConnectError) -> None:
    assert classify_connect_error(exc) is reason


def test_a_failing_handler_is_counted_and_does_not_stop_ingest() -> None:
    stats = Stats()
    seen: list[str] = []

    def handler(topic: str, payload: bytes, ctype: str | None, props: object, rx: float) -> None:
        seen.append(topic)
        if topic.endswith("boom"):
            raise RuntimeError("bug")

    q = IngestQueue(10, stats)
    ingest = MqttIngest(
        MqttSettings(),
        client_id="c",
        credentials=Credentials(None, None),
        subscriptions=lambda: ["anbo/+/+/+"],
        handler=handler,
        queue=q,
        stats=stats,
    )
    for topic in ("anbo/s/t/boom", "anbo/s/t/rf"):
        q.put_nowait(message(topic))
    assert ingest.drain() == 2
    assert seen == ["anbo/s/t/boom", "anbo/s/t/rf"]
    assert stats.count(Result.DROPPED, DropReason.INTERNAL_ERROR.value) == 1
    assert stats.latency.n == 2


def test_suback_failure_codes_mean_refused() -> None:
    # Mosquitto grants any subscription and filters by ACL later, so a refusal is
    # exercised here: v3.1.1 returns 0x80, v5 a failure reason code such as 0x87.
    assert _refused((1, 0x80))
    assert not _refused((1,))
    assert _refused([ReasonCode(PacketTypes.SUBACK, identifier=0x87)])
    assert not _refused([ReasonCode(PacketTypes.SUBACK, identifier=1)])


def _ingest(queue: IngestQueue, seen: list[str]) -> MqttIngest:
    def handler(topic: str, payload: bytes, ctype: str | None, props: object, rx: float) -> None:
        seen.append(topic)

    return MqttIngest(
        MqttSettings(),
        client_id="c",
        credentials=Credentials(None, None),
        subscriptions=lambda: ["a/#"],
        handler=handler,
        queue=queue,
        stats=queue._stats,
    )


def test_consumer_handles_everything_queued_then_ends_like_aiomqtt() -> None:
    queue = IngestQueue(100, Stats())
    seen: list[str] = []
    ingest = _ingest(queue, seen)
    cause = ConnectionResetError("reset by peer")

    async def main() -> None:
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(ingest._consume(types.SimpleNamespace(_disconnected=lost)))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # waiting on an empty queue
        for i in range(3):
            queue.put_nowait(message(f"a/{i}"))
        await asyncio.sleep(0.01)
        assert seen == ["a/0", "a/1", "a/2"]
        queue.put_nowait(message("a/3"))
        lost.set_exception(cause)
        await task

    with pytest.raises(aiomqtt.MqttError, match="Disconnected during message iteration") as info:
        asyncio.run(main())
    assert info.value.__cause__ is cause
    assert seen == ["a/0", "a/1", "a/2", "a/3"]  # what was queued is handled first
    assert queue.empty() and queue._waiter is None


def test_consumer_yields_between_long_batches() -> None:
    queue = IngestQueue(10_000, Stats())
    seen: list[str] = []
    ingest = _ingest(queue, seen)
    for i in range(3 * MqttIngest.BATCH):
        queue.put_nowait(message(f"a/{i}"))

    async def main() -> None:
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(ingest._consume(types.SimpleNamespace(_disconnected=lost)))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert len(seen) == MqttIngest.BATCH  # one batch, then the others' turn
        await asyncio.sleep(0.01)
        assert len(seen) == 3 * MqttIngest.BATCH
        lost.set_result(None)
        with pytest.raises(aiomqtt.MqttError):
            await task

    asyncio.run(main())


def test_queue_wait_wakes_on_put_and_on_wake() -> None:
    async def main() -> None:
        queue = IngestQueue(10, Stats())
        queue.put_nowait(message("a/1"))
        await asyncio.wait_for(queue.wait(), 1)  # something queued: no wait
        queue.get_nowait()
        waiter = asyncio.create_task(queue.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.put_nowait(message("a/2"))
        await asyncio.wait_for(waiter, 1)
        queue.get_nowait()
        waiter = asyncio.create_task(queue.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.wake()
        await asyncio.wait_for(waiter, 1)
        assert queue._waiter is None

    asyncio.run(main())


def test_fast_push_and_pop_keep_the_bound_the_order_and_the_receive_times() -> None:
    stats = Stats()
    clock = iter(range(100))
    q = IngestQueue(2, stats, clock=lambda: float(next(clock)))
    for i in range(4):
        q.push((f"a/{i}", b"", None))
    assert q.qsize() == 2 and len(q.items) == 2
    assert stats.count(Result.DROPPED, DropReason.QUEUE_FULL.value) == 2
    assert q.pop() == (0.0, ("a/0", b"", None)) and q.last_rx == 0.0
    assert q.pop() == (1.0, ("a/1", b"", None)) and q.last_rx == 1.0
    assert q.empty()


def test_both_kinds_of_queued_message_reach_the_handler_alike() -> None:
    seen: list[tuple[str, bytes, str | None, float]] = []

    def handler(topic: str, payload: bytes, ctype: str | None, props: object, rx: float) -> None:
        seen.append((topic, payload, ctype, rx))

    clock = iter(range(100))
    q = IngestQueue(10, Stats(), clock=lambda: float(next(clock)))
    ingest = _ingest(q, [])
    ingest.handler = handler
    q.put_nowait(message("anbo/s/t/rf", b"1"))  # aiomqtt's plain path
    q.push(("anbo/s/t/audio", b"2", None))  # the fast path's (topic, payload, properties)
    assert ingest.drain() == 2
    assert seen == [("anbo/s/t/rf", b"1", None, 0.0), ("anbo/s/t/audio", b"2", None, 1.0)]
