"""Publish the simulator's messages over MQTT, paced in real time (or ``speed`` times faster).

A thin layer over :class:`simulator.station.StationSimulator`: it sleeps until
each message is due, then hands it to one reused aiomqtt client that publishes with
QoS 1 and reconnects with backoff. While the broker is away, messages wait in a
bounded buffer, as a gateway's would, and what was in flight unconfirmed when the
connection broke is sent again (QoS 1: anbo may see it twice, and drops the duplicate).
What overflows the buffer is counted (``dropped``) and logged, never silent.

MQTT v5 messages carry their content type and user properties; on MQTT 3.1.1 the
simulator has already framed blocks with the ``ANBO`` header. Timestamps are the
simulator's: ``start + t``. At ``speed`` > 1 they run ahead of the wall clock, which
anbo rejects beyond ``max_future_s`` (300 s by default): use speed for short runs or
for a daemon configured to accept it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from monitor.mqttio import retrieve_disconnect_error
from monitor.settings import parse_broker_url
from simulator.scenario import Scenario
from simulator.station import Message, Protocol

__all__ = ["PublishStats", "Publisher"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class PublishStats:
    """What a :class:`Publisher` did."""

    generated: int = 0
    published: int = 0
    #: Dropped because the buffer was full while the broker was away.
    dropped: int = 0
    #: Sent again after a reconnect because the broker had not confirmed them (QoS 1:
    #: the broker may have them already; anbo drops such duplicates).
    resent: int = 0
    connects: int = 0
    #: Scenario time of the last message handed to the broker.
    last_t: float = 0.0


class Publisher:
    """Paces messages in real time and publishes them (QoS 1) over one reconnecting client."""

    def __init__(
        self,
        url: str,
        *,
        protocol: Protocol = "5",
        client_id: str = "anbo-simulator",
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        speed: float = 1.0,
        qos: int = 1,
        buffer: int = 100_000,
        max_inflight: int = 200,
        keepalive: int = 30,
        backoff: tuple[float, float] = (0.2, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.broker = parse_broker_url(url)
        self.protocol = protocol
        self.client_id = client_id
        self.username = username
        self.password = password
        self.tls_context = tls_context
        if self.broker.tls and tls_context is None:
            self.tls_context = ssl.create_default_context()
        self.speed = speed
        self.qos = qos
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        self.backoff = backoff
        self.clock = clock
        self.stats = PublishStats()
        self.connected = asyncio.Event()
        self._buffer: deque[Message] = deque()
        self._buffer_size = buffer
        self._wake = asyncio.Event()
        self._done = False
        self._drained = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Message] = {}
        self._failed: list[Message] = []

    # -- pacing ---------------------------------------------------------------------------
    async def run(
        self, messages: Iterable[Message], *, scenario: Scenario | None = None, drain_timeout: float = 10.0
    ) -> PublishStats:
        """Publish ``messages`` at their times; returns when all are out (or on cancel).

        With ``scenario``, fault starts and ends are logged as scenario time passes them.
        """
        sender = asyncio.create_task(self._send_loop(), name="simulator-mqtt")
        events = sorted(
            [
                (t, what, f)
                for f in (scenario.timeline if scenario else [])
                for t, what in ((f.at, "fault started"), (f.end, "fault ended"))
            ],
            key=lambda e: e[0],
        )
        try:
            t0 = self.clock()
            for msg in messages:
                while events and events[0][0] <= msg.t:
                    at, what, f = events.pop(0)
                    where = getattr(f, "target", None) or getattr(f, "region", None)
                    log.info(what, fault=f.fault, target=where, at_s=round(at, 1), id=f.id)
                delay = t0 + msg.t / self.speed - self.clock()
                # Behind schedule (a slow machine, a high speed) still lets the sender run.
                await asyncio.sleep(max(delay, 0.0))
                self._enqueue(msg)
            self._done = True
            self._wake.set()
            self._check_drained()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            if self._buffer:
                log.warning("messages left unsent at the end", count=len(self._buffer))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return self.stats

    def _enqueue(self, msg: Message) -> None:
        self.stats.generated += 1
        if len(self._buffer) >= self._buffer_size:
            self._buffer.popleft()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
                log.warning(
                    "publish buffer full: oldest messages dropped",
                    dropped=self.stats.dropped,
                    capacity=self._buffer_size,
                )
        self._buffer.append(msg)
        self._wake.set()

    # -- sending --------------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        v5 = self.protocol == "5"
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            keepalive=self.keepalive,
            tls_context=self.tls_context if self.broker.tls else None,
            max_inflight_messages=self.max_inflight,
            timeout=10,
        )

    def _check_drained(self) -> None:
        if self._done and not self._buffer and not self._inflight:
            self._drained.set()

    async def _publish(self, client: aiomqtt.Client, msg: Message) -> None:
        props: Properties | None = None
        if self.protocol == "5" and (msg.content_type or msg.user_properties):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if msg.content_type:
                props.ContentType = msg.content_type
            if msg.user_properties:
                props.UserProperty = msg.user_properties
        await client.publish(msg.topic, msg.payload, qos=self.qos, properties=props)
        self.stats.published += 1
        self.stats.last_t = max(self.stats.last_t, msg.t)

    async def _send_loop(self) -> None:
        try:
            await self._connect_loop()
        finally:
            tasks = list(self._inflight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._inflight.clear()

    async def _connect_loop(self) -> None:
        attempt = 0
        while True:
            client = self._client()
            try:
                async with client:
                    self.stats.connects += 1
                    self.connected.set()
                    attempt = 0
                    log.info(
                        "simulator connected",
                        broker=self.broker.url,
                        protocol=self.protocol,
                        client_id=self.client_id,
                    )
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                was = self.connected.is_set()
                self.connected.clear()
                resend = self._take_back()
                delay = min(self.backoff[1], self.backoff[0] * 2 ** min(attempt, 10))
                attempt += 1
                log.warning(
                    "simulator lost the broker" if was else "simulator cannot connect",
                    broker=self.broker.url,
                    error=str(exc),
                    resend=resend,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
            finally:
                retrieve_disconnect_error(client)

    def _take_back(self) -> int:
        """Put what was in flight (unconfirmed) back at the head of the buffer, in order:
        QoS 1 after a reconnect — the broker may have it already (a duplicate anbo drops)."""
        back = sorted(self._failed + list(self._inflight.values()), key=lambda m: m.t)
        for task in self._inflight:
            task.cancel()
        self._inflight.clear()
        self._failed.clear()
        self._buffer.extendleft(reversed(back))
        self.stats.resent += len(back)
        return len(back)

    async def _drain(self, client: aiomqtt.Client) -> None:
        errors: list[BaseException] = []

        def done(task: asyncio.Task[None]) -> None:
            msg = self._inflight.pop(task, None)
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
                if msg is not None:
                    self._failed.append(msg)
                self._wake.set()
            self._check_drained()

        while True:
            if errors:
                exc = errors[0]
                raise exc if isinstance(exc, aiomqtt.MqttError) else aiomqtt.MqttError(str(exc))
            if not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._inflight) >= self.max_inflight:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            msg = self._buffer.popleft()
            task = asyncio.create_task(self._publish(client, msg))
            self._inflight[task] = msg
            task.add_done_callback(done)
