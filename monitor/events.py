"""Station → bureau events: the ledger's intervals, alert transitions and a heartbeat over MQTT.

The station daemon publishes to its own broker, which bridges the events to the bureau's
Mosquitto (config/mosquitto/station-bridge.conf); the topics and payloads are part of the
wire contract (docs/telemetry-contract.md, section 8):

* ``<prefix>/<station>/events/v1/interval``: every ledger row (an interval opened,
  revised, closed or corrected; the ledger's ``event_id`` and ``revision``), QoS 1;
* ``<prefix>/<station>/events/v1/alert``: alert transitions (firing, resolved), QoS 1;
* ``<prefix>/<station>/events/v1/station``: the station's description (class, county,
  services and their schedules), QoS 1, retained: it is state;
* ``<prefix>/<station>/events/v1/heartbeat``: every ``[bureau] heartbeat`` seconds,
  QoS 1, retained: the newest is the station's state, with ``complete_until``, the
  time up to which the bureau has acknowledged everything the station recorded.

Nothing is lost on the way: each event (not the heartbeat) gets the next per-station
sequence number ``seq`` in the ledger's ``outbox`` table (SQLite, in the transaction that
writes the interval row), and stays there until the **bureau service** acknowledges it
on ``<prefix>/<station>/bureau/v1/ack`` after committing it to PostgreSQL (the bridge
carries that topic back). A PUBACK from the local broker only marks an event sent; what
the bureau has not acknowledged ``[bureau] resend_after`` seconds later, or after any
reconnection, is published again. The bureau is idempotent by event id and revision, so
the duplicates this makes are harmless. A cut link, a station broker restart (its
queue lost), a bureau restart: the outbox replays what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence

import aiomqtt
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.ingest import backoff_delay, session_client
from monitor.ledger import Interval, Ledger, LedgerError, LedgerStore, OutboxEntry
from monitor.settings import LoadedSettings, Settings
from rules import AlertState, Transition

__all__ = [
    "BODY_KEY",
    "CONTRACT_VERSION",
    "EventPublisher",
    "ack_topic",
    "disable_outbox",
    "event_topic",
    "interval_change",
    "station_description",
]

log = structlog.get_logger(__name__)

#: The version of the events' wire contract (``contract`` in every payload, ``v1`` in topics).
CONTRACT_VERSION = 1
KINDS = ("interval", "alert", "station", "heartbeat")
#: kinds published retained (state, not a stream)
RETAINED = frozenset({"station", "heartbeat"})
#: the payload key of each kind's body ("station" is the envelope's station name)
BODY_KEY = {"interval": "interval", "alert": "alert", "station": "info"}
#: events published concurrently, awaiting their PUBACKs together
BATCH = 100


def event_topic(prefix: str, station: str, kind: str) -> str:
    return f"{prefix}/{station}/events/v{CONTRACT_VERSION}/{kind}"


def ack_topic(prefix: str, station: str) -> str:
    return f"{prefix}/{station}/bureau/v{CONTRACT_VERSION}/ack"


def interval_change(row: Interval) -> str:
    """``opened`` | ``updated`` | ``closed`` | ``corrected`` (a person changed it)."""
    if row.source == "manual" or row.voided:
        return "corrected"
    if row.end is None:
        return "opened" if row.revision == 0 else "updated"
    return "closed"


def station_description(settings: Settings) -> dict[str, object]:
    """What the bureau needs to report on the station: who it is and its services."""
    from monitor.ledger import ledger_services

    return {
        "name": settings.station.name,
        "description": settings.station.description,
        "station_class": settings.station.station_class,
        "county": settings.station.county,
        "services": [
            {
                "target": s.target,
                "service": s.service,
                "kind": s.kind,
                "schedule": None if s.schedule is None else s.schedule.model_dump(mode="json"),
            }
            for s in ledger_services(settings)
        ],
    }


def _alert_payload(t: Transition, wall: float) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "alertname": t.alertname,
        "target": t.target,
        "from": t.from_state.value,
        "to": t.to_state.value,
        "severity": t.severity.value,
        "outage_class": t.outage_class.value,
        "starts_at": t.starts_at,
        "ends_at": t.ends_at,
        "onset": t.onset,
        "clear_onset": t.clear_onset,
        "at": wall,
        "labels": dict(t.labels),
        "summary": t.annotations.get("summary", ""),
    }


def disable_outbox(store: LedgerStore) -> None:
    """``[bureau] enabled = false``: nothing is published, so nothing waits (outbox emptied)."""
    try:
        n = store.outbox_clear()
    except (sqlite3.Error, OSError, LedgerError) as exc:
        log.error("bureau outbox cannot be emptied", error=str(exc))
        return
    if n:
        log.info("bureau events disabled: outbox emptied", events=n)


#: How long leaving a connection may wait for the broker to see the DISCONNECT.
DISCONNECT_TIMEOUT_S = 2.0


@contextlib.asynccontextmanager
async def _connected(client: aiomqtt.Client, exit_timeout: float) -> AsyncIterator[aiomqtt.Client]:
    """``async with client``, except that leaving waits at most ``exit_timeout`` s.

    aiomqtt's ``__aexit__`` waits without limit for the broker to close the connection
    after DISCONNECT. A broker that stopped answering (or a shutdown that cancelled us
    as the TLS connection came up: seen once in CI, the daemon then never stopped) would
    hold this task, and the daemon's task group with it, for ever.
    """
    await client.__aenter__()
    try:
        yield client
    except BaseException as exc:
        await _leave(client, exit_timeout, exc)
        raise
    await _leave(client, exit_timeout, None)


async def _leave(client: aiomqtt.Client, exit_timeout: float, exc: BaseException | None) -> None:
    try:
        async with asyncio.timeout(exit_timeout):
            await client.__aexit__(None if exc is None else type(exc), exc, None)
    except TimeoutError:
        log.warning("bureau events: the broker did not close the connection in time", timeout_s=exit_timeout)


class EventPublisher:
    """Drains the ledger's outbox to the station broker; forgets what the bureau acknowledged."""

    def __init__(self, loaded: LoadedSettings, ledger: Ledger) -> None:
        s = loaded.settings
        self.loaded = loaded
        self.settings = s.bureau
        self.mqtt = s.mqtt
        self.station = s.station.name
        self.prefix = s.bureau.topic_prefix
        self.client_id = f"{s.client_id}-events"
        self.password = loaded.mqtt_password
        self.ledger = ledger
        self.store = LedgerStore(loaded.ledger_path)
        self._wall = time.time
        #: seq → monotonic time of its PUBACK (in memory: after a restart all is resent)
        self._sent: dict[int, float] = {}
        #: events not yet in the outbox (the ledger file unwritable), oldest first
        self._unqueued: deque[tuple[str, dict[str, object], float]] = deque(maxlen=10_000)
        self.connected = False
        self._set_aside = ledger.store.set_aside
        self.wake = asyncio.Event()
        # metrics
        self.published = 0
        self.resent = 0
        self.acked = 0
        self.publish_errors = 0
        self.bad_acks = 0
        self.queue_station(s)

    # -- what goes in -----------------------------------------------------------------------
    def queue_station(self, settings: Settings) -> None:
        """The station's description (at start and after a reload)."""
        self._queue("station", station_description(settings))

    def on_transitions(self, transitions: Sequence[Transition]) -> None:
        """Evaluator listener: firing and resolved transitions become alert events."""
        wall = self._wall()
        for t in transitions:
            if t.to_state in (AlertState.FIRING, AlertState.RESOLVED) and t.from_state is not t.to_state:
                self._queue("alert", _alert_payload(t, wall))

    def _queue(self, kind: str, payload: dict[str, object]) -> None:
        self._unqueued.append((kind, payload, self._wall()))
        self._flush_unqueued()
        self.wake.set()

    def _flush_unqueued(self) -> None:
        while self._unqueued:
            kind, payload, created = self._unqueued[0]
            try:
                self.store.outbox_add(kind, payload, created)
            except (sqlite3.Error, OSError, LedgerError) as exc:
                log.error(
                    "bureau outbox cannot be written; events kept in memory",
                    error=str(exc),
                    waiting=len(self._unqueued),
                    rate_key="outbox_write",
                )
                self.store.close()
                return
            self._unqueued.popleft()

    # -- state ------------------------------------------------------------------------------
    def state(self) -> tuple[int, float | None, int]:
        try:
            return self.store.outbox_state()
        except (sqlite3.Error, OSError, LedgerError):
            self.store.close()
            return -1, None, -1

    def complete_until(self, now: float) -> float:
        """Everything the station recorded before this time has been acknowledged by the bureau."""
        _, oldest, _ = self.state()
        t = now if oldest is None else min(now, oldest)
        if self._unqueued:
            t = min(t, self._unqueued[0][2])
        if self.ledger.unavailable_since is not None:
            t = min(t, self.ledger.unavailable_since)
        return t

    def heartbeat_payload(self) -> dict[str, object]:
        now = self._wall()
        count, _, last = self.state()
        return {
            "at": now,
            "seq": last,
            "outbox": count + len(self._unqueued),
            "complete_until": self.complete_until(now),
            "started_at": self.ledger.started_at,
            "ledger_up": self.ledger.healthy,
        }

    def envelope(self, kind: str, seq: int | None, body: dict[str, object]) -> bytes:
        return json.dumps(
            {
                "contract": CONTRACT_VERSION,
                "kind": kind,
                "station": self.station,
                "seq": seq,
                "sent_at": self._wall(),
                **body,
            },
            ensure_ascii=False,
        ).encode("utf-8")

    @staticmethod
    def body(entry: OutboxEntry) -> dict[str, object] | None:
        if entry.kind == "interval":
            if entry.interval is None:  # its row is gone (cannot happen: rows are never deleted)
                return None
            row = entry.interval
            return {
                "id": row.event_id,
                "revision": row.revision,
                "change": interval_change(row),
                "created": entry.created,
                "interval": row.to_json(),
            }
        payload = entry.payload or {}
        return {
            "id": str(payload.get("id", f"{entry.kind}:{entry.seq}")),
            "created": entry.created,
            BODY_KEY[entry.kind]: payload,
        }

    # -- acknowledgements -------------------------------------------------------------------
    def handle_ack(self, payload: bytes) -> int:
        """``{"contract": 1, "station": ..., "seqs": [...]}`` from the bureau: forget those."""
        try:
            data = json.loads(payload)
            if not isinstance(data, dict) or data.get("station") != self.station:
                raise ValueError("not an acknowledgement for this station")
            seqs = data.get("seqs")
            if not isinstance(seqs, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seqs
            ):
                raise ValueError("seqs must be a list of integers")
        except (ValueError, UnicodeDecodeError) as exc:
            self.bad_acks += 1
            log.warning("bureau acknowledgement rejected", error=str(exc), rate_key="bad_ack")
            return 0
        try:
            n = self.store.outbox_ack(seqs)
        except (sqlite3.Error, OSError, LedgerError) as exc:
            log.error("bureau outbox cannot be updated", error=str(exc), rate_key="outbox_ack")
            self.store.close()
            return 0
        for s in seqs:
            self._sent.pop(s, None)
        self.acked += n
        return n

    # -- the loop ---------------------------------------------------------------------------
    def _client(self, url: str) -> aiomqtt.Client:
        # a persistent session: acknowledgements that arrive while we reconnect are kept
        client = session_client(self.mqtt, url, identifier=self.client_id, password=self.password)
        # A batch of publishes (and the heartbeat) waits for its PUBACKs at once: expected,
        # not the "pending publish calls" warning aiomqtt logs beyond 10.
        client.pending_calls_threshold = BATCH + 10
        return client

    async def run(self) -> None:
        """Connect, subscribe to acknowledgements, publish; reconnect forever (ends by cancellation)."""
        attempt = 0
        index = 0
        while True:
            url = self.mqtt.url[index % len(self.mqtt.url)]
            client = self._client(url)
            was_up = False
            try:
                async with _connected(client, DISCONNECT_TIMEOUT_S):
                    self.connected = was_up = True
                    attempt = 0
                    self._sent.clear()  # after any reconnection: everything unacknowledged again
                    await client.subscribe(ack_topic(self.prefix, self.station), qos=1)
                    log.info("bureau events: connected", broker=url, outbox=self.state()[0])
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._acks(client))
                        tg.create_task(self._heartbeats(client))
                        await self._publish_loop(client)
            except* aiomqtt.MqttError as group:
                log.warning("bureau events: no broker connection", broker=url, error=str(group.exceptions[0]))
            except* Exception as group:  # the publisher must never stop the daemon
                log.error(
                    "bureau events: publisher failed; starting again",
                    broker=url,
                    error=repr(group.exceptions[0]),
                )
            finally:
                self.connected = False
            # after losing a working connection start again from the first broker, else the next
            index = 0 if was_up else index + 1
            await asyncio.sleep(backoff_delay(attempt, self.mqtt.backoff_min, self.mqtt.backoff_max))
            attempt += 1

    async def _acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray) and self.handle_ack(bytes(payload)):
                self.wake.set()

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            await client.publish(
                event_topic(self.prefix, self.station, "heartbeat"),
                self.envelope("heartbeat", None, self.heartbeat_payload()),
                qos=1,
                retain=True,
            )
            await asyncio.sleep(self.settings.heartbeat)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            self.wake.clear()
            if self.ledger.store.set_aside != self._set_aside:
                # the ledger set a corrupt file aside and started a new one: follow it
                self._set_aside = self.ledger.store.set_aside
                self.store.close()
            self._flush_unqueued()
            try:
                entries = self.store.outbox_pending(limit=BATCH * 5)
            except (sqlite3.Error, OSError, LedgerError) as exc:
                log.error("bureau outbox cannot be read", error=str(exc), rate_key="outbox_read")
                self.store.close()
                entries = []
            now = time.monotonic()
            due = [e for e in entries if now - self._sent.get(e.seq, -1e18) >= self.settings.resend_after]
            for i in range(0, len(due), BATCH):
                await asyncio.gather(*(self._publish(client, e) for e in due[i : i + BATCH]))
            # new events wake us; unacknowledged ones are looked at again at least every second
            try:
                async with asyncio.timeout(min(1.0, self.settings.resend_after)):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def _publish(self, client: aiomqtt.Client, entry: OutboxEntry) -> None:
        body = self.body(entry)
        if body is None:
            self.handle_ack(json.dumps({"station": self.station, "seqs": [entry.seq]}).encode())
            return
        resend = entry.seq in self._sent
        await client.publish(
            event_topic(self.prefix, self.station, entry.kind),
            self.envelope(entry.kind, entry.seq, body),
            qos=1,
            retain=entry.kind in RETAINED,
        )
        self._sent[entry.seq] = time.monotonic()
        self.published += 1
        self.resent += int(resend)

    def close(self) -> None:
        self.store.close()

    # -- Prometheus -------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        count, oldest, last = self.state()
        yield GaugeMetricFamily(
            "anbo_bureau_outbox_events",
            "Events the bureau has not acknowledged yet",
            value=count + len(self._unqueued),
        )
        now = self._wall()
        yield GaugeMetricFamily(
            "anbo_bureau_outbox_oldest_age_seconds",
            "Age of the oldest event the bureau has not acknowledged (0: none)",
            value=0.0 if oldest is None else max(0.0, now - oldest),
        )
        yield GaugeMetricFamily(
            "anbo_bureau_event_sequence", "Last event sequence number given out", value=last
        )
        yield CounterMetricFamily(
            "anbo_bureau_events_published",
            "Events published to the station broker (PUBACK)",
            value=self.published,
        )
        yield CounterMetricFamily(
            "anbo_bureau_events_resent",
            "Events published again (not acknowledged in time)",
            value=self.resent,
        )
        yield CounterMetricFamily(
            "anbo_bureau_events_acknowledged", "Events the bureau acknowledged", value=self.acked
        )
        yield CounterMetricFamily(
            "anbo_bureau_bad_acknowledgements", "Acknowledgements that could not be read", value=self.bad_acks
        )
        yield GaugeMetricFamily(
            "anbo_bureau_events_connected",
            "1 while the events client is connected",
            value=float(self.connected),
        )
