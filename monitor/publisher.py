"""One MQTT publisher for anbo's publishers: bounded, reconnecting, QoS 1, never blocking producers.

Used by the gateways (``anbo capture``, the pollers) and the station simulator, so that
what a station's own publishers do when the broker is slow or away is one piece of code.
Producers :meth:`MqttPublisher.offer` ready-made messages;
``offer`` never waits. Messages wait in one bounded queue while the broker is slow or
away; when it is full the *oldest* message is dropped (fresh telemetry matters more than
old), counted per key (the target) and logged, rate-limited. Memory is therefore bounded
by the queue's length, whatever the broker does.

One aiomqtt client per broker URL of ``[mqtt] url``, tried in order (failover), with
jittered exponential backoff (``[mqtt] backoff_min``/``backoff_max``). Up to
``max_inflight`` messages are in flight at once; what was in flight unconfirmed when a
connection broke is queued again at the head, in order (QoS 1: the broker may have it
already, and the daemon drops the duplicate), so the sequence numbers the daemon sees
have no gaps from a broker outage that the queue could bridge. A publish that failed
goes back the same way, and is counted in ``resent``.

:class:`PublisherCollector` exposes the publisher's ``anbo_gateway_*`` families, the same
for every gateway (``anbo capture``, ``anbo poll``): one collector for this concern.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.ingest import backoff_delay, classify_connect_error, mqtt_tls_context
from monitor.mqttio import disconnected, retrieve_disconnect_error
from monitor.settings import BrokerAddress, MqttSettings, parse_broker_url
from monitor.stats import ConnectError

__all__ = ["MqttPublisher", "Outgoing", "PublisherCollector", "PublisherStats"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outgoing:
    """One message to publish. ``key`` names its producer (a target) for the counters;
    ``on_done`` is called with the message once the broker confirmed it (PUBACK)."""

    topic: str
    payload: bytes
    content_type: str | None = None
    user_properties: list[tuple[str, str]] | None = None
    key: str = ""
    #: Monotonic time it was offered.
    created: float = 0.0
    on_done: Callable[[Outgoing], None] | None = None


@dataclass(slots=True)
class PublisherStats:
    offered: int = 0
    published: int = 0
    #: Confirmed by the broker, per key.
    published_by: dict[str, int] = field(default_factory=dict)
    #: Dropped because the queue was full (the oldest go first), per key.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Queued again after a broken connection (the broker had not confirmed them).
    resent: int = 0
    connects: int = 0
    #: Failed connection attempts and lost connections, by reason.
    connection_errors: dict[str, int] = field(default_factory=dict)


class MqttPublisher:
    """Publishes :class:`Outgoing` messages with QoS 1 over one reconnecting client."""

    def __init__(
        self,
        brokers: list[str],
        *,
        client_id: str,
        protocol: Literal["5", "3.1.1"] = "5",
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        keepalive: int = 30,
        backoff: tuple[float, float] = (0.5, 30.0),
        qos: int = 1,
        capacity: int = 3000,
        max_inflight: int = 100,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not brokers:
            raise ValueError("at least one broker URL is required")
        self.brokers = [parse_broker_url(u) for u in brokers]
        self.client_id = client_id
        self.protocol = protocol
        self.username = username
        self.password = password
        self.tls_context = tls_context
        if tls_context is None and any(b.tls for b in self.brokers):
            self.tls_context = ssl.create_default_context()
        self.keepalive = keepalive
        self.backoff = backoff
        self.qos = qos
        self.capacity = capacity
        self.max_inflight = max_inflight
        self.clock = clock
        self._rng = rng
        self.stats = PublisherStats()
        self.connected: dict[str, bool] = {b.url: False for b in self.brokers}
        #: Set while connected to a broker; ``ever_connected`` stays set after the first time.
        self.up = asyncio.Event()
        self.ever_connected = asyncio.Event()
        self._queue: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Outgoing] = {}
        self._failed: list[Outgoing] = []
        #: Set whenever a message leaves (confirmed, or failed back into the queue).
        self._progress = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        settings: MqttSettings,
        *,
        client_id: str,
        password: str | None = None,
        brokers: list[str] | None = None,
        capacity: int = 3000,
        max_inflight: int = 100,
    ) -> MqttPublisher:
        """A publisher for ``[mqtt]``'s brokers (or ``brokers``), credentials, TLS and backoff."""
        urls = brokers or settings.url
        tls = any(parse_broker_url(u).tls for u in urls)
        return cls(
            urls,
            client_id=client_id,
            protocol=settings.protocol,
            username=settings.username,
            password=password,
            tls_context=mqtt_tls_context(settings) if tls else None,
            keepalive=settings.keepalive,
            backoff=(settings.backoff_min, settings.backoff_max),
            qos=settings.qos,
            capacity=capacity,
            max_inflight=max_inflight,
        )

    # -- producers ------------------------------------------------------------------
    def offer(self, msg: Outgoing) -> None:
        """Queue ``msg``; never blocks. A full queue drops its oldest message (counted)."""
        self.stats.offered += 1
        if not msg.created:
            msg.created = self.clock()
        if len(self._queue) >= self.capacity:
            old = self._queue.popleft()
            n = self.stats.dropped.get(old.key, 0) + 1
            self.stats.dropped[old.key] = n
            log.warning(
                "publish queue full: oldest message dropped",
                key=old.key,
                dropped=n,
                capacity=self.capacity,
                rate_key=old.key,
            )
        self._queue.append(msg)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def is_connected(self) -> bool:
        return any(self.connected.values())

    # -- the connection -------------------------------------------------------------
    def _client(self, broker: BrokerAddress) -> aiomqtt.Client:
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5 if self.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            keepalive=self.keepalive,
            tls_context=self.tls_context if broker.tls else None,
            max_inflight_messages=self.max_inflight,
            timeout=10,
        )
        # Up to max_inflight publishes wait for their PUBACK at once: expected, not a warning.
        client.pending_calls_threshold = self.max_inflight + 10
        return client

    async def run(self) -> None:
        """Connect, publish, reconnect; forever (ends by cancellation)."""
        attempt = 0
        index = 0
        try:
            while True:
                broker = self.brokers[index % len(self.brokers)]
                client = self._client(broker)
                reason: ConnectError | None = None
                was_up = False
                try:
                    async with client:
                        was_up = True
                        self.connected[broker.url] = True
                        self.stats.connects += 1
                        self.up.set()
                        self.ever_connected.set()
                        attempt = 0
                        log.info("connected to the broker", broker=broker.url, client_id=self.client_id)
                        await self._drain(client)
                except aiomqtt.MqttError as exc:
                    reason = classify_connect_error(exc)
                    errors = self.stats.connection_errors
                    errors[reason.value] = errors.get(reason.value, 0) + 1
                    resend = self._take_back()
                    log.warning(
                        "lost the broker" if was_up else "cannot connect to the broker",
                        broker=broker.url,
                        reason=reason.value,
                        error=str(exc),
                        resend=resend,
                        queued=len(self._queue),
                        rate_key=broker.url,
                    )
                finally:
                    self.connected[broker.url] = False
                    self.up.clear()
                    retrieve_disconnect_error(client)
                index = 0 if was_up and reason is not ConnectError.AUTH else index + 1
                lo, hi = self.backoff
                delay = hi if reason is ConnectError.AUTH else backoff_delay(attempt, lo, hi, self._rng)
                attempt += 1
                await asyncio.sleep(delay)
        finally:
            tasks = list(self._inflight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._inflight.clear()

    def _take_back(self) -> int:
        """What was in flight unconfirmed goes back to the head of the queue, in order."""
        back = sorted(self._failed + list(self._inflight.values()), key=lambda m: m.created)
        for task in self._inflight:
            task.cancel()
        self._inflight.clear()
        self._failed.clear()
        self._queue.extendleft(reversed(back))
        while len(self._queue) > self.capacity:  # still bounded: the oldest go
            old = self._queue.popleft()
            self.stats.dropped[old.key] = self.stats.dropped.get(old.key, 0) + 1
        self.stats.resent += len(back)
        return len(back)

    async def _publish(self, client: aiomqtt.Client, msg: Outgoing) -> None:
        props: Properties | None = None
        if self.protocol == "5" and (msg.content_type or msg.user_properties):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if msg.content_type:
                props.ContentType = msg.content_type
            if msg.user_properties:
                props.UserProperty = msg.user_properties
        await client.publish(msg.topic, msg.payload, qos=self.qos, properties=props)
        self.stats.published += 1
        self.stats.published_by[msg.key] = self.stats.published_by.get(msg.key, 0) + 1
        if msg.on_done is not None:
            msg.on_done(msg)

    async def _drain(self, client: aiomqtt.Client) -> None:
        errors: list[BaseException] = []
        lost = disconnected(client)

        def done(task: asyncio.Task[None]) -> None:
            msg = self._inflight.pop(task, None)
            self._progress.set()
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
                if msg is not None:
                    self._failed.append(msg)
                self._wake.set()

        while True:
            if errors:
                exc = errors[0]
                raise exc if isinstance(exc, aiomqtt.MqttError) else aiomqtt.MqttError(str(exc))
            if lost.done():
                raise aiomqtt.MqttError("the broker connection was lost")
            if not self._queue:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    either: set[asyncio.Future[Any]] = {waiter, lost}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                continue
            if len(self._inflight) >= self.max_inflight:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            msg = self._queue.popleft()
            task = asyncio.create_task(self._publish(client, msg))
            self._inflight[task] = msg
            task.add_done_callback(done)

    async def wait_drained(self) -> None:
        """Return once nothing is queued or in flight (bound it with ``asyncio.timeout``)."""
        while self._queue or self._inflight:
            self._progress.clear()
            await self._progress.wait()

    async def wait_below(self, n: int) -> None:
        """Return once at most ``n`` messages are queued (a producer that may wait: a file
        played fast is paced by the broker instead of losing blocks)."""
        while len(self._queue) > n:
            self._progress.clear()
            await self._progress.wait()


class PublisherCollector(Collector):
    """The publisher's ``anbo_gateway_*`` families, read at scrape time.

    Labels: ``station`` and ``gateway`` (``capture``, ``poll``) on every family; per
    message counts add ``target`` (the key of :class:`Outgoing`: every target in
    ``targets`` has a series from the start, 0 until something happens), the connection
    ``broker`` or ``reason``.
    """

    def __init__(
        self,
        publisher: MqttPublisher,
        *,
        station: Callable[[], str],
        gateway: str,
        targets: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.publisher = publisher
        self.station = station
        self.gateway = gateway
        self.targets = targets

    def collect(self) -> Iterator[Metric]:
        p, st = self.publisher, self.publisher.stats
        base = [self.station(), self.gateway]
        labels = ["station", "gateway"]
        targets = sorted({*self.targets(), *st.published_by, *st.dropped} - {""})
        published = CounterMetricFamily(
            "anbo_gateway_published_messages",
            "Messages the broker confirmed (QoS 1: PUBACK), per target",
            labels=[*labels, "target"],
        )
        dropped = CounterMetricFamily(
            "anbo_gateway_dropped_messages",
            "Messages dropped because the publish queue was full (the oldest go first), per target",
            labels=[*labels, "target"],
        )
        for t in targets:
            published.add_metric([*base, t], float(st.published_by.get(t, 0)))
            dropped.add_metric([*base, t], float(st.dropped.get(t, 0)))
        yield from (published, dropped)
        resent = CounterMetricFamily(
            "anbo_gateway_resent_messages",
            "Messages queued again because the broker had not confirmed them when the connection broke",
            labels=labels,
        )
        resent.add_metric(base, float(st.resent))
        yield resent
        conn = GaugeMetricFamily(
            "anbo_gateway_mqtt_connected", "1 while connected to that broker", labels=[*labels, "broker"]
        )
        for url, ok in p.connected.items():
            conn.add_metric([*base, url], 1.0 if ok else 0.0)
        yield conn
        errors = CounterMetricFamily(
            "anbo_gateway_mqtt_connection_errors",
            "Failed broker connection attempts and lost connections, by reason",
            labels=[*labels, "reason"],
        )
        for reason in ConnectError:
            errors.add_metric([*base, reason.value], float(st.connection_errors.get(reason.value, 0)))
        yield errors
        queue = GaugeMetricFamily(
            "anbo_gateway_publish_queue_messages",
            "Messages waiting for the broker (queued or in flight)",
            labels=labels,
        )
        queue.add_metric(base, float(p.queued + p.inflight))
        yield queue
        cap = GaugeMetricFamily(
            "anbo_gateway_publish_queue_capacity", "Most messages held for the broker", labels=labels
        )
        cap.add_metric(base, float(p.capacity))
        yield cap
