"""MQTT ingest: one reused aiomqtt client per broker URL, in a reconnect loop.

- Fixed client id and a persistent session (v5: clean start off and a session
  expiry; v3.1.1: clean session off) with QoS 1 subscriptions, so the broker keeps
  what is published while anbo is briefly away and delivers it on reconnect.
- Subscribe on every connect, before anything else (a broker that lost its session
  state, or a failover broker, knows nothing of us). The CONNACK's session-present
  flag is read on every connect: when the broker did not keep anbo's session on a
  reconnect, what was published between the broker's return and the resubscription is
  lost to anbo; that is logged once, clearly, with the resubscription time, and counted
  (``anbo_mqtt_sessions_lost_total``).
- After losing a connection that was healthy, reconnect at once; while the broker is
  still away (a restart takes a fraction of a second to a few), try again every
  :data:`FAST_RETRY_S` (jittered) for :data:`FAST_RETRY_WINDOW_S`, so that it is found
  within about a tenth of a second of its return, then back off as usual.
- Jittered exponential backoff between attempts, rotating through the configured
  URLs; bad credentials or not-authorized are logged as one clear error and retried
  at the slowest backoff, never hammered.
- Received messages go into :class:`IngestQueue`, anbo's own bounded queue shared by
  every client: overflow is counted and logged, never silent.
- The event loop is never blocked: paho's socket I/O runs on the loop through
  aiomqtt's reader callbacks, every message is awaited, and the processing of one
  message is short (heavy probe work is batched off the loop by the probes).
- Per burst, not per message: :mod:`monitor.mqttio` makes paho read a burst with one
  system call and send its PUBACKs with one more, and the consumer takes everything
  queued per wake-up (yielding every :attr:`MqttIngest.BATCH` messages) instead of
  aiomqtt's task and ``asyncio.wait`` per message, ending on disconnection as
  ``client.messages`` does.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import aiomqtt
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from monitor import mqttio
from monitor.settings import BrokerAddress, MqttSettings, parse_broker_url
from monitor.stats import ConnectError, DropReason, Result, Stats

log = structlog.get_logger(__name__)

#: CONNACK codes that mean "your credentials or identity are not accepted":
#: v3.1.1 return codes 2, 4, 5; v5 reason codes 0x85, 0x86, 0x87, 0x8A, 0x8C.
AUTH_FAILURES_V311 = frozenset({2, 4, 5})
AUTH_FAILURES_V5 = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})

#: A connection subscribed for at least this long was healthy: when it is lost, the
#: first reconnect attempt goes at once, without a backoff.
HEALTHY_AFTER_S = 1.0
#: After losing a healthy connection: retry every FAST_RETRY_S (jittered to [½, 1]×,
#: ``backoff_min`` if that is smaller) for FAST_RETRY_WINDOW_S, then the usual backoff.
FAST_RETRY_S = 0.1
FAST_RETRY_WINDOW_S = 5.0


#: A queued message: aiomqtt's own (its plain receive path) or the fast path's
#: ``(topic, payload, properties)`` (:func:`monitor.mqttio.receive_into`).
Queued = aiomqtt.Message | mqttio.Received


class IngestQueue(asyncio.Queue[Queued]):
    """Bounded FIFO between paho's callbacks and the pipeline.

    Overrides the hooks asyncio documents for subclasses (``_init``/``_put``/``_get``)
    to keep each message's monotonic receive time: after a ``get``, :attr:`last_rx` is
    the receive time of the message just taken (there is one consumer). ``put_nowait``
    on a full queue counts the drop and returns instead of raising, because the
    caller is paho's callback, which can do nothing better.

    :meth:`push` and :meth:`pop` are the fast path's put and get: the same bound, the
    same drop accounting and receive times, without asyncio.Queue's bookkeeping for
    ``get()`` waiters and ``join()`` (its consumer waits with :meth:`wait`).
    """

    def __init__(self, maxsize: int, stats: Stats, clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self._clock = clock
        self.last_rx = 0.0
        self.overflow_logged_at = -1e18
        super().__init__(maxsize)

    def _init(self, maxsize: int) -> None:
        self._queue: collections.deque[tuple[float, Queued]] = collections.deque()
        #: what is queued, oldest first (the consumer's view; take with :meth:`pop`)
        self.items = self._queue
        self._waiter: asyncio.Future[None] | None = None
        self._limit = maxsize if maxsize > 0 else 1 << 62

    def _put(self, item: Queued) -> None:
        self._queue.append((self._clock(), item))
        if self._waiter is not None:
            self.wake()

    def push(self, item: Queued) -> None:
        """``put_nowait`` for the fast path's consumer (which waits with :meth:`wait`)."""
        queue = self._queue
        if len(queue) >= self._limit:
            self._overflow()
            return
        queue.append((self._clock(), item))
        if self._waiter is not None:
            self.wake()
        getters = self._getters  # type: ignore[attr-defined]  # asyncio.Queue's, untyped
        if getters:  # a get() waiting all the same (not anbo's consumer): wake it
            self._wakeup_next(getters)  # type: ignore[attr-defined]

    def pop(self) -> tuple[float, Queued]:
        """The oldest message and its receive time (the queue must not be empty)."""
        rx_item = self._queue.popleft()
        self.last_rx = rx_item[0]
        return rx_item

    def wake(self) -> None:
        """Wake :meth:`wait` (a message was queued, or the connection ended)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Return once something is queued, or :meth:`wake` is called (single consumer).

        Cheaper than ``get()`` per message: one future per wake-up, however many
        messages arrived meanwhile; the consumer then takes them with :meth:`pop`.
        """
        if self._queue:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def _get(self) -> Queued:
        self.last_rx, item = self._queue.popleft()
        return item

    def put_nowait(self, item: Queued) -> None:
        if self.full():
            self._overflow()
            return
        super().put_nowait(item)

    def _overflow(self) -> None:
        self._stats.dropped(DropReason.QUEUE_FULL)
        now = self._clock()
        if now - self.overflow_logged_at >= 10.0:
            self.overflow_logged_at = now
            log.error(
                "ingest queue full: messages dropped",
                capacity=self.maxsize,
                dropped_total=self._stats.count(Result.DROPPED, DropReason.QUEUE_FULL),
            )


#: What the ingest hands each message to: topic, payload, content type, user
#: properties, monotonic receive time.
Handler = Callable[[str, bytes, str | None, Sequence[tuple[str, str]] | None, float], None]


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None
    password: str | None


def session_properties(s: MqttSettings) -> Properties | None:
    """CONNECT properties of a persistent v5 session (its expiry); None for 3.1.1."""
    if s.protocol != "5":
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = s.session_expiry
    return properties


def session_client(s: MqttSettings, url: str, *, identifier: str, password: str | None) -> aiomqtt.Client:
    """A plain aiomqtt client with a persistent session at ``url`` (v5: clean start off and
    the session expiry; 3.1.1: clean session off), TLS for mqtts:// (the events publisher,
    the bureau service)."""
    broker = parse_broker_url(url)
    v5 = s.protocol == "5"
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=identifier,
        username=s.username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False,
        clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=session_properties(s),
        keepalive=s.keepalive,
        tls_context=mqtt_tls_context(s) if broker.tls else None,
        timeout=10,
    )


def backoff_delay(attempt: int, lo: float, hi: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(hi, lo·2^attempt)."""
    d = min(hi, lo * (2.0 ** min(attempt, 30)))
    return d * (0.5 + 0.5 * rng())


def mqtt_tls_context(s: MqttSettings) -> ssl.SSLContext:
    """The client TLS context for ``mqtts://`` brokers: ``[mqtt] tls_ca_file`` (else the
    system's CAs) and, for client certificates, ``tls_cert_file`` + ``tls_key_file``."""
    ctx = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
    if s.tls_cert_file and s.tls_key_file:
        ctx.load_cert_chain(str(s.tls_cert_file), str(s.tls_key_file))
    return ctx


class SubscriptionRefusedError(Exception):
    """The broker answered our SUBSCRIBE with a failure code (usually: not authorized)."""

    def __init__(self, topic: str, granted: object) -> None:
        super().__init__(f"subscription to {topic!r} refused by the broker: {granted}")


def _refused(granted: tuple[int, ...] | list[ReasonCode]) -> bool:
    return any((g.is_failure if isinstance(g, ReasonCode) else g >= 0x80) for g in granted)


#: getaddrinfo's messages (aiomqtt passes on only the text of the socket.gaierror).
_DNS_FAILURE_RE = re.compile(
    r"name or service not known|temporary failure in name resolution|nodename nor servname"
    r"|no address associated with hostname|name does not resolve|errno -[235]\]"
)


def classify_connect_error(exc: aiomqtt.MqttError) -> ConnectError:
    rc = getattr(exc, "rc", None)
    if isinstance(rc, ReasonCode):
        if rc.value in AUTH_FAILURES_V5:
            return ConnectError.AUTH
        return ConnectError.PROTOCOL
    if isinstance(rc, int):
        return ConnectError.AUTH if rc in AUTH_FAILURES_V311 else ConnectError.PROTOCOL
    context = exc.__context__
    if isinstance(context, socket.gaierror):
        return ConnectError.DNS
    text = str(exc).lower()
    if _DNS_FAILURE_RE.search(text):
        return ConnectError.DNS
    if "timed out" in text or "timeout" in text:
        return ConnectError.TIMEOUT
    if "ssl" in text or "certificate" in text:
        return ConnectError.TLS
    if "disconnected" in text:
        return ConnectError.LOST
    return ConnectError.REFUSED


class MqttIngest:
    """Owns the broker connections and feeds every message to ``handler``."""

    #: Messages handled in a row before yielding to the event loop.
    BATCH = 256

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        credentials: Credentials,
        subscriptions: Callable[[], list[str]],
        handler: Handler,
        queue: IngestQueue,
        stats: Stats,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.brokers = [parse_broker_url(u) for u in settings.url]
        self.client_id = client_id
        self.credentials = credentials
        self.subscriptions = subscriptions
        self.handler = handler
        self.queue = queue
        self.stats = stats
        self._rng = rng
        self._clients: dict[str, aiomqtt.Client] = {}
        #: URLs whose client runs with monitor.mqttio's receive path
        self._fast: set[str] = set()
        self.connected: dict[str, bool] = {b.url: False for b in self.brokers}
        #: Set once the first subscription is acknowledged (for READY=1).
        self.subscribed = asyncio.Event()
        #: Monotonic time the current connection's subscriptions were acknowledged; None
        #: while not connected and subscribed (the rule engine's grace for "never heard").
        self.listening_since: float | None = None
        #: Monotonic time of the last message handled, or of the last idle moment.
        self.progress = time.monotonic()
        self._ever_connected = False
        #: per broker URL: the CONNACK's session-present flag (None: cannot be read)
        self._sessions: dict[str, mqttio.SessionFlag | None] = {}
        #: URL of the broker that holds anbo's session (set once subscribed there)
        self._session_on: str | None = None
        #: monotonic time the last working connection was lost (for "reconnected in")
        self._lost_at: float | None = None

    # -- clients --------------------------------------------------------------------
    def _tls_context(self) -> ssl.SSLContext:
        return mqtt_tls_context(self.settings)

    def _client_for(self, broker: BrokerAddress) -> aiomqtt.Client:
        client = self._clients.get(broker.url)
        if client is not None:
            return client
        s = self.settings
        v5 = s.protocol == "5"
        properties = session_properties(s)
        queue = self.queue

        def shared_queue(maxsize: int = 0) -> IngestQueue:
            return queue

        client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=self.client_id,
            username=self.credentials.username,
            password=self.credentials.password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # Persistent session: the broker keeps our subscriptions and queues QoS≥1
            # messages while we are away.
            clean_session=None if v5 else False,
            # v5 only; for 3.1.1 paho insists on its default.
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=s.keepalive,
            # All clients (one per failover URL) share anbo's own bounded queue.
            queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", shared_queue),
            tls_context=self._tls_context() if broker.tls else None,
            timeout=10,
        )
        # Batched socket reads and writes, lighter v5 properties (see monitor.mqttio).
        try:
            mqttio.speed_up(client)
        except mqttio.UnsupportedClientError as exc:
            # aiomqtt's own path still works, at about twice the CPU per message: keep
            # monitoring, and say why loudly (checked before anything is changed).
            log.error(
                "MQTT receive fast path unavailable, using plain aiomqtt", broker=broker.url, error=str(exc)
            )
        else:
            # The consumer is ours (_consume): messages straight into the shared queue.
            mqttio.receive_into(client, queue.push)
            self._fast.add(broker.url)
        try:
            self._sessions[broker.url] = mqttio.watch_session(client)
        except mqttio.UnsupportedClientError as exc:
            self._sessions[broker.url] = None
            log.error("cannot read the broker's session-present flag", broker=broker.url, error=str(exc))
        self._clients[broker.url] = client
        return client

    # -- the loop ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe, consume; reconnect forever. Ends only by cancellation."""
        attempt = 0
        index = 0
        fast_until = -1.0
        while True:
            broker = self.brokers[index % len(self.brokers)]
            client = self._client_for(broker)
            reason: ConnectError | None = None
            up_since: float | None = None
            try:
                async with client:
                    connected_at = time.monotonic()
                    self._on_connected(broker)
                    attempt = 0
                    fast_until = -1.0
                    for topic in self.subscriptions():
                        granted = await client.subscribe(topic, qos=self.settings.qos)
                        if _refused(granted):
                            raise SubscriptionRefusedError(topic, granted)
                    self.subscribed.set()
                    self.listening_since = up_since = time.monotonic()
                    self._on_subscribed(broker, up_since - connected_at)
                    if broker.url in self._fast:
                        await self._consume(client)
                    else:
                        async for message in client.messages:
                            self._handle(self.queue.last_rx, message)
            except SubscriptionRefusedError as exc:
                reason = ConnectError.AUTH
                self._on_failure(broker, reason, exc)
            except aiomqtt.MqttError as exc:
                reason = classify_connect_error(exc)
                self._on_failure(broker, reason, exc)
            finally:
                mqttio.retrieve_disconnect_error(client)
                was_up = self.connected[broker.url]
                self.connected[broker.url] = False
                self.listening_since = None
            self.drain()
            # After losing a working connection start again from the first (preferred)
            # broker; after a failed attempt fail over to the next one.
            index = 0 if was_up and reason is not ConnectError.AUTH else index + 1
            healthy = up_since is not None and time.monotonic() - up_since >= HEALTHY_AFTER_S
            now = time.monotonic()
            if healthy:
                self._lost_at = now
                fast_until = now + FAST_RETRY_WINDOW_S
            if reason is ConnectError.AUTH:
                delay = self.settings.backoff_max
            elif healthy:
                delay = 0.0  # it was working: try again at once
            elif now < fast_until:  # a broker that was up is probably restarting: look often
                delay = min(FAST_RETRY_S, self.settings.backoff_min) * (0.5 + 0.5 * self._rng())
                attempt = 0
            else:
                delay = backoff_delay(
                    attempt, self.settings.backoff_min, self.settings.backoff_max, self._rng
                )
            attempt += 1
            await self._sleep_idle(delay)

    def _handle(self, rx: float, item: Queued) -> None:
        """Hand one queued message (received at monotonic ``rx``) to the handler."""
        if type(item) is tuple:
            topic, payload, props = item
        else:  # aiomqtt's own Message (its plain receive path)
            message = cast("aiomqtt.Message", item)
            topic, props = message.topic.value, message.properties
            payload = message.payload
            if not isinstance(payload, bytes):  # paho always gives bytes; keep mypy honest
                payload = str(payload).encode()
        content_type, user_props = (
            (None, None)
            if props is None
            else (getattr(props, "ContentType", None), getattr(props, "UserProperty", None))
        )
        try:
            self.handler(topic, payload, content_type, user_props, rx)
        except Exception:
            # A bug must not take the station's monitoring down with it: count, log, go on.
            self.stats.dropped(DropReason.INTERNAL_ERROR)
            log.exception(
                "internal error while processing a message; message dropped",
                topic=topic,
                rate_key="internal_error",
            )
        self.progress = now = time.monotonic()
        self.stats.latency.observe(now - rx)

    async def _consume(self, client: aiomqtt.Client) -> None:
        """Handle messages as they arrive, every queued one per wake-up, until the
        connection ends (raised as aiomqtt's ``MqttError``, like ``client.messages`` does)."""
        queue = self.queue
        items = queue.items
        pop = queue.pop
        handle = self._handle
        batch = self.BATCH
        lost = mqttio.disconnected(client)
        wake = queue.wake

        def on_lost(_: object) -> None:
            wake()

        lost.add_done_callback(on_lost)
        try:
            while True:
                n = 0
                while items:
                    handle(*pop())
                    n += 1
                    if n == batch:  # let the reader and the ticks run
                        n = 0
                        await asyncio.sleep(0)
                if lost.done():
                    raise aiomqtt.MqttError("Disconnected during message iteration") from lost.exception()
                await queue.wait()
        finally:
            lost.remove_done_callback(on_lost)

    def drain(self, limit: int | None = None) -> int:
        """Handle what is already queued without waiting (used between connections and
        at shutdown). Returns how many messages were handled."""
        n = 0
        while self.queue.items and (limit is None or n < limit):
            self._handle(*self.queue.pop())
            n += 1
        self.progress = time.monotonic()
        return n

    async def _sleep_idle(self, delay: float) -> None:
        """Back off, staying visibly alive for the watchdog (nothing is queued)."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            self.progress = time.monotonic()
            await asyncio.sleep(min(left, 1.0))

    def _on_connected(self, broker: BrokerAddress) -> None:
        self.connected[broker.url] = True
        self.stats.connects += 1
        if self._ever_connected:
            self.stats.reconnects += 1
        self._ever_connected = True
        log.info(
            "connected to broker",
            broker=broker.url,
            client_id=self.client_id,
            protocol=self.settings.protocol,
        )

    def _on_subscribed(self, broker: BrokerAddress, took: float) -> None:
        """After the subscriptions of a connection: judge the broker's session."""
        flag = self._sessions.get(broker.url)
        present = None if flag is None else flag.present
        down = None if self._lost_at is None else time.monotonic() - self._lost_at
        self._lost_at = None
        if present is False and self._session_on is not None:
            # anbo had a session (here, or on the broker it failed over from) and it is gone
            self.stats.sessions_lost += 1
            log.warning(
                "the broker did not keep anbo's session: messages published between its return "
                "and anbo's resubscription are lost to anbo (broker persistence off or failing, "
                "killed before its autosave, or a failover broker); resubscribed",
                broker=broker.url,
                previous_broker=None if self._session_on == broker.url else self._session_on,
                client_id=self.client_id,
                resubscribed_in_s=round(took, 4),
                sessions_lost_total=self.stats.sessions_lost,
            )
        self._session_on = broker.url
        log.info(
            "subscribed",
            broker=broker.url,
            topics=self.subscriptions(),
            qos=self.settings.qos,
            session_present=present,
            reconnected_in_s=None if down is None else round(down, 4),
        )

    def _on_failure(self, broker: BrokerAddress, reason: ConnectError, exc: Exception) -> None:
        was_connected = self.connected.get(broker.url, False)
        self.stats.connect_errors[reason.value] += 1
        if reason is ConnectError.AUTH:
            log.error(
                "broker refused our credentials or identity; check mqtt.username, "
                "mqtt.password_file and the broker ACL. Retrying at the slowest backoff",
                broker=broker.url,
                client_id=self.client_id,
                error=str(exc),
                retry_in_s=self.settings.backoff_max,
                rate_key=broker.url,
            )
        elif was_connected:
            log.warning("lost broker connection", broker=broker.url, error=str(exc), rate_key=broker.url)
        else:
            log.warning(
                "cannot connect to broker",
                broker=broker.url,
                reason=reason.value,
                error=str(exc),
                rate_key=broker.url,
            )
