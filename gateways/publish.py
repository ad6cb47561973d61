"""The gateway's MQTT side: a bounded outbox drained by one reconnecting client.

Pollers :meth:`Outbox.put` a finished message and go on: they never wait for the
broker. The outbox holds at most ``capacity`` messages; when the broker is away long
enough for it to fill, the oldest are dropped, counted and logged (a slow or absent
broker costs bounded memory, never an unbounded queue). One aiomqtt client publishes
them in order with the configured QoS (1 by default, as the contract asks), going
through the ``[mqtt] url`` list on failures with jittered exponential backoff; a message
whose publish failed is put back at the head and sent again after the reconnect
(QoS 1: anbo drops a duplicate by its ``seq``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import aiomqtt
import structlog

from monitor.ingest import backoff_delay, classify_connect_error, mqtt_tls_context
from monitor.mqttio import retrieve_disconnect_error
from monitor.settings import MqttSettings, parse_broker_url

__all__ = ["Outbox", "OutboxStats"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class OutboxStats:
    published: int = 0
    dropped: int = 0
    resent: int = 0
    connects: int = 0
    #: connection failures by reason (refused, auth, dns, timeout, tls, protocol, lost)
    errors: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.errors is None:
            self.errors = {}


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes


class Outbox:
    """Bounded FIFO of messages to publish, and the client loop that publishes them."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        password: str | None = None,
        capacity: int = 10_000,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.password = password
        self.capacity = capacity
        self.stats = OutboxStats()
        self.connected = asyncio.Event()
        #: URL of the broker we are connected to, or None
        self.broker: str | None = None
        self._queue: deque[_Message] = deque()
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, topic: str, payload: bytes) -> None:
        """Queue a message (never blocks); the oldest goes when the outbox is full."""
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.warning(
                    "outbox full while the broker is away: oldest messages dropped",
                    dropped=self.stats.dropped,
                    capacity=self.capacity,
                )
        self._queue.append(_Message(topic, payload))
        self._wake.set()

    def _client(self, url: str) -> aiomqtt.Client:
        s = self.settings
        broker = parse_broker_url(url)
        return aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=self.client_id,
            username=s.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5 if s.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            keepalive=s.keepalive,
            tls_context=mqtt_tls_context(s) if broker.tls else None,
            timeout=10,
        )

    async def run(self) -> None:
        """Connect, publish, reconnect; until cancelled."""
        s = self.settings
        attempt = 0
        index = 0
        last_reason: str | None = None
        while True:
            url = s.url[index % len(s.url)]
            client = self._client(url)
            try:
                async with client:
                    self.stats.connects += 1
                    self.broker = url
                    self.connected.set()
                    attempt = 0
                    last_reason = None
                    log.info("gateway connected to the broker", broker=url, client_id=self.client_id)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                was = self.connected.is_set()
                self.connected.clear()
                self.broker = None
                reason = classify_connect_error(exc).value
                assert self.stats.errors is not None
                self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
                delay = backoff_delay(attempt, s.backoff_min, s.backoff_max)
                attempt += 1
                index += 1
                if was or reason != last_reason:  # one line per change, not per attempt
                    log.warning(
                        "gateway lost the broker" if was else "gateway cannot connect to the broker",
                        broker=url,
                        reason=reason,
                        error=str(exc),
                        queued=len(self._queue),
                        retry_in_s=round(delay, 2),
                    )
                last_reason = reason
                await asyncio.sleep(delay)
            finally:
                retrieve_disconnect_error(client)

    async def _drain(self, client: aiomqtt.Client) -> None:
        qos = self.settings.qos
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            msg = self._queue[0]
            try:
                await client.publish(msg.topic, msg.payload, qos=qos)
            except aiomqtt.MqttError:
                self.stats.resent += 1
                raise
            # Sent (and, for QoS 1, acknowledged): only now does it leave the outbox.
            if self._queue and self._queue[0] is msg:
                self._queue.popleft()
            self.stats.published += 1
            if not self._queue:
                self._emptied.set()

    async def flush(self) -> None:
        """Return once the outbox is empty (at shutdown, under the caller's ``asyncio.timeout``)."""
        while self._queue:
            self._emptied.clear()
            await self._emptied.wait()
