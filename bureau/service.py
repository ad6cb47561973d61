"""``anbo bureau``: the stations' events from the bureau's broker into PostgreSQL.

* Subscribes to ``<prefix>/+/events/v1/#`` (QoS 1, a persistent session: what arrives
  while the service restarts waits at the broker).
* Takes what has arrived in batches, writes each batch in one PostgreSQL transaction
  (idempotent, :func:`bureau.store.apply_events`), and only **then** acknowledges the
  batch's events to their stations (``<prefix>/<station>/bureau/v1/ack``), which delete
  them from their outboxes. Nothing is acknowledged that is not committed: while
  PostgreSQL is down events are dropped here unacknowledged (counted) and the stations
  publish them again.
* Knows the stations to expect (``[[stations]]``): ``anbo_bureau_station_up`` is 0 when
  one's heartbeats stop (the ``StationUnreachable`` alert in config/prometheus/bureau-rules.yml):
  "status unknown", never "off air" (a station off air still sends heartbeats, and its
  outages arrive as intervals). ``anbo_bureau_station_link_up`` (the bridge's own
  notifications) tells a link down from a station whose anbo or broker is down.
* Serves ``/metrics``, ``/-/healthy`` and ``/-/ready`` (200 once subscribed and the
  database is reachable), and the bureau view: ``/`` (every station: up, link, heartbeat,
  what the bureau has, what is open now) and ``/api/v1/stations`` (the same as JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import psycopg
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bureau.settings import BureauConfig
from bureau.store import apply_events, expect_stations, migrate
from bureau.wire import Event, EventError, parse_event
from monitor.events import CONTRACT_VERSION, ack_topic
from monitor.http import MetricsServer
from monitor.ingest import backoff_delay, session_client
from monitor.sdnotify import Notifier
from monitor.settings import parse_listen

__all__ = ["BureauService"]

log = structlog.get_logger(__name__)


class BureauService:
    def __init__(
        self,
        config: BureauConfig,
        *,
        mqtt_password: str | None = None,
        db_password: str | None = None,
        registry: CollectorRegistry | None = None,
        systemd: Notifier | None = None,
    ) -> None:
        self.config = config
        self.systemd = systemd if systemd is not None else Notifier(None)
        self._announced = False
        self.prefix = config.mqtt.topic_prefix
        self.mqtt_password = mqtt_password
        self.db_password = db_password
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.db: psycopg.AsyncConnection[Any] | None = None
        self._db_retry_at = 0.0
        self._db_attempt = 0
        self.subscribed = False
        self.expected = {s.name for s in config.stations}
        #: station → its bridge's link state (from the bridge's notifications), if known
        self.links: dict[str, bool] = {}
        #: station → (heartbeat time, complete_until, monotonic receive time)
        self.heartbeats: dict[str, tuple[float, float, float]] = {}
        self.http = MetricsServer(
            self.registry,
            station=lambda: "bureau",
            ready=self.is_ready,
            problems=self.problems,
            index=False,
            extra_routes=[web.get("/", self._view), web.get("/api/v1/stations", self._stations_json)],
        )
        self._stop = asyncio.Event()
        # metrics
        self.received = 0
        self.rejected: dict[str, int] = {}
        self.new = 0
        self.duplicates = 0
        self.unstored = 0
        self.acks_sent = 0
        self.db_errors = 0
        self.batches = 0

    # -- health ----------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.subscribed and self.db is not None and not self.db.closed

    def problems(self) -> list[str]:
        out = []
        if self.db is None or self.db.closed:
            out.append("PostgreSQL unreachable: events are not stored or acknowledged")
        if not self.subscribed:
            out.append("not subscribed at the bureau broker")
        return out

    def unreachable(self, now: float | None = None) -> list[str]:
        """Expected stations whose heartbeats stopped (or never came)."""
        now = time.monotonic() if now is None else now
        timeout = self.config.heartbeat_timeout
        return sorted(
            s for s in self.expected if s not in self.heartbeats or now - self.heartbeats[s][2] > timeout
        )

    # -- the bureau view ---------------------------------------------------------------------
    async def stations_view(self) -> dict[str, Any]:
        """Every station: class, county, heartbeat, link, what the bureau has, what is open now."""
        now_mono, now = time.monotonic(), time.time()
        down = set(self.unreachable(now_mono))
        rows: dict[str, dict[str, Any]] = {}
        database = "up"
        conn = await self._database()
        if conn is not None:
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        "SELECT s.name, s.station_class, s.county, s.description, s.expected, s.last_seq, "
                        "h.at, h.complete_until, h.outbox FROM stations s "
                        "LEFT JOIN heartbeats h ON h.station = s.name ORDER BY s.county, s.name"
                    )
                    for name, cls, county, desc, expected, seq, at, until, outbox in await cur.fetchall():
                        rows[name] = {
                            "station": name, "station_class": cls, "county": county, "description": desc,
                            "expected": expected, "last_seq": seq, "heartbeat_at": at,
                            "complete_until": until, "outbox": outbox, "open": {},
                        }  # fmt: skip
                    await cur.execute(
                        'SELECT station, class, COUNT(*) FROM intervals WHERE "end" IS NULL AND NOT voided '
                        "GROUP BY station, class"
                    )
                    for name, cls, n in await cur.fetchall():
                        if name in rows:
                            rows[name]["open"][cls] = n
            except (psycopg.Error, OSError) as exc:
                database = f"error: {str(exc).strip()}"
        else:
            database = "down"
        for name in self.expected | set(self.heartbeats) | set(self.links):
            row = rows.setdefault(name, {"station": name, "open": {}})
            row["up"] = name not in down if name in self.expected else name in self.heartbeats
            row["link_up"] = self.links.get(name)
            beat = self.heartbeats.get(name)
            row["heartbeat_age_s"] = None if beat is None else round(now_mono - beat[2], 1)
        return {"at": now, "database": database, "stations": list(rows.values())}

    async def _stations_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.stations_view())

    async def _view(self, request: web.Request) -> web.Response:
        data = await self.stations_view()
        e = html.escape

        def cell(v: object) -> str:
            return f"<td>{e('' if v is None else str(v))}</td>"

        head = [
            "station",
            "county",
            "class",
            "up",
            "link",
            "heartbeat age (s)",
            "complete until",
            "outbox",
            "open",
        ]
        lines = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='10'>",
            "<title>anbo bureau</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:2px 6px}.down{background:#f8d0d0}</style></head><body>",
            f"<h1>anbo bureau (安播 · 全市)</h1><p>database: {e(str(data['database']))}</p><table><tr>",
            *(f"<th>{e(h)}</th>" for h in head),
            "</tr>",
        ]
        for r in data["stations"]:
            until = r.get("complete_until")
            stamp = (
                None if until is None else datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            )
            open_ = ", ".join(f"{k} {v}" for k, v in sorted(r.get("open", {}).items()))
            css = " class='down'" if r.get("up") is False or r.get("link_up") is False else ""
            lines.append(
                f"<tr{css}>"
                + "".join(
                    cell(v)
                    for v in (
                        r["station"],
                        r.get("county"),
                        r.get("station_class"),
                        r.get("up"),
                        r.get("link_up"),
                        r.get("heartbeat_age_s"),
                        stamp,
                        r.get("outbox"),
                        open_,
                    )
                )
                + "</tr>"
            )
        lines.append("</table><p><a href='/metrics'>/metrics</a> · <a href='/api/v1/stations'>JSON</a></p>")
        lines.append("</body></html>")
        return web.Response(text="".join(lines), content_type="text/html")

    # -- database ---------------------------------------------------------------------------
    async def _database(self) -> psycopg.AsyncConnection[Any] | None:
        if self.db is not None and not self.db.closed:
            return self.db
        now = time.monotonic()
        if now < self._db_retry_at:
            return None
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.config.database.url, password=self.db_password, connect_timeout=5
            )
            await conn.set_autocommit(True)
            # the schema is created and migrated by the command (synchronously, once)
            with psycopg.connect(
                self.config.database.url, password=self.db_password, connect_timeout=5
            ) as sync:
                found = migrate(sync)
                expect_stations(sync, [(s.name, s.county, s.station_class) for s in self.config.stations])
        except (psycopg.Error, OSError, RuntimeError) as exc:
            self.db_errors += 1
            delay = backoff_delay(self._db_attempt, 0.5, 5.0)
            self._db_attempt += 1
            self._db_retry_at = now + delay
            log.error("PostgreSQL unreachable", error=str(exc).strip(), retry_in_s=round(delay, 1))
            return None
        self._db_attempt = 0
        self.db = conn
        log.info("PostgreSQL connected", schema_found=found)
        return conn

    # -- events ---------------------------------------------------------------------------
    def parse(self, message: aiomqtt.Message) -> Event | None:
        self.received += 1
        payload = message.payload
        try:
            if not isinstance(payload, bytes | bytearray):
                raise EventError("bad_payload", "not bytes")
            return parse_event(str(message.topic), bytes(payload), self.prefix)
        except EventError as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            log.warning("event rejected", topic=str(message.topic), error=str(exc), rate_key="bad_event")
            return None

    def link_state(self, message: aiomqtt.Message) -> None:
        """The station bridge's notification: "1" up, "0" down (its will, sent by our broker)."""
        station = str(message.topic).split("/")[-4]
        payload = message.payload
        if payload in (b"1", b"0"):
            self.links[station] = payload == b"1"
            log.info("station link", station=station, up=self.links[station])
        else:
            self.rejected["bad_link_state"] = self.rejected.get("bad_link_state", 0) + 1

    async def handle(self, client: aiomqtt.Client, events: list[Event]) -> None:
        """Store one batch, then acknowledge it; on a database failure nothing is acknowledged."""
        if not events:
            return
        conn = await self._database()
        if conn is None:
            self.unstored += len(events)
            return
        try:
            result = await apply_events(conn, events, time.time())
        except (psycopg.Error, OSError) as exc:
            self.db_errors += 1
            self.unstored += len(events)
            log.error("events not stored (not acknowledged: the stations send them again)", error=str(exc))
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
            self.db = None
            return
        self.batches += 1
        self.new += result.new
        self.duplicates += result.duplicate
        mono = time.monotonic()
        for e in events:
            if e.kind == "heartbeat":
                self.heartbeats[e.station] = (float(e.body["at"]), float(e.body["complete_until"]), mono)
        for station, seqs in result.acks.items():
            body = {"contract": CONTRACT_VERSION, "station": station, "seqs": seqs, "at": time.time()}
            await client.publish(ack_topic(self.prefix, station), json.dumps(body).encode(), qos=1)
            self.acks_sent += len(seqs)

    # -- MQTT -------------------------------------------------------------------------------
    def _client(self, url: str) -> aiomqtt.Client:
        # a persistent session: events queue at the broker while the service restarts
        s = self.config.mqtt.model_copy(update={"protocol": "5"})
        return session_client(s, url, identifier=self.config.client_id, password=self.mqtt_password)

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 while the event loop runs (the loop itself is what could stall)."""
        while True:
            self.systemd.watchdog()
            await asyncio.sleep(interval / 2)

    async def _mqtt(self) -> None:
        attempt = 0
        index = 0
        urls = self.config.mqtt.url
        topic = f"{self.prefix}/+/events/v{CONTRACT_VERSION}/#"
        links = f"{self.prefix}/+/bridge/v{CONTRACT_VERSION}/state"
        while True:
            url = urls[index % len(urls)]
            client = self._client(url)
            was_up = False
            try:
                async with client:
                    was_up = True
                    attempt = 0
                    await client.subscribe(topic, qos=1)
                    await client.subscribe(links, qos=1)
                    self.subscribed = True
                    log.info("bureau subscribed", broker=url, topic=topic)
                    if not self._announced:
                        self._announced = True
                        self.systemd.ready(f"subscribed to {topic} at {url}")
                    batch: list[Event] = []
                    async for message in client.messages:
                        if message.topic.matches(links):
                            self.link_state(message)
                            continue
                        event = self.parse(message)
                        if event is not None:
                            batch.append(event)
                        if len(client.messages) == 0 or len(batch) >= self.config.batch:
                            await self.handle(client, batch)
                            batch = []
            except aiomqtt.MqttError as exc:
                log.warning("bureau broker connection lost", broker=url, error=str(exc))
            finally:
                self.subscribed = False
            index = 0 if was_up else index + 1
            await asyncio.sleep(backoff_delay(attempt, 0.2, 10.0))
            attempt += 1

    # -- lifecycle -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        host, port = parse_listen(self.config.http.listen)
        await self.http.start(host, port, None)
        await self._database()
        log.info("anbo bureau started", metrics_port=self.http.port, stations_expected=len(self.expected))
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._mqtt(), name="bureau-mqtt")]
                interval = Notifier.watchdog_interval()
                if interval is not None:
                    tasks.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                await self._stop.wait()
                self.systemd.stopping()
                for task in tasks:
                    task.cancel()
        finally:
            await self.http.stop()
            if self.db is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await self.db.close()
            log.info("anbo bureau stopped")

    # -- Prometheus ----------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "anbo_bureau_messages_received", "Messages from the broker", value=self.received
        )
        rejected = CounterMetricFamily(
            "anbo_bureau_messages_rejected", "Messages that are not valid station events", labels=["reason"]
        )
        for reason, n in sorted(self.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily("anbo_bureau_events_stored", "Events new to the database", value=self.new)
        yield CounterMetricFamily(
            "anbo_bureau_events_duplicate", "Events the database already had (replays)", value=self.duplicates
        )
        yield CounterMetricFamily(
            "anbo_bureau_events_unstored",
            "Events dropped unacknowledged because PostgreSQL was unreachable (the stations resend)",
            value=self.unstored,
        )
        yield CounterMetricFamily(
            "anbo_bureau_acks_sent", "Sequence numbers acknowledged", value=self.acks_sent
        )
        yield CounterMetricFamily(
            "anbo_bureau_database_errors", "Failed database operations", value=self.db_errors
        )
        yield GaugeMetricFamily(
            "anbo_bureau_database_up", "1 while PostgreSQL is connected", value=float(self.is_db_up())
        )
        yield GaugeMetricFamily(
            "anbo_bureau_subscribed", "1 while subscribed at the bureau broker", value=float(self.subscribed)
        )
        now = time.monotonic()
        up = GaugeMetricFamily(
            "anbo_bureau_station_up",
            "1 while an expected station's heartbeats arrive (0: link or station down, status unknown)",
            labels=["station"],
        )
        down = set(self.unreachable(now))
        for s in sorted(self.expected):
            up.add_metric([s], 0.0 if s in down else 1.0)
        yield up
        link = GaugeMetricFamily(
            "anbo_bureau_station_link_up",
            "1 while the station's bridge is connected to the bureau broker, 0 when it is not "
            "(absent: never heard); station_up 0 with link_up 1 means the link is up but anbo is not",
            labels=["station"],
        )
        for s, state in sorted(self.links.items()):
            link.add_metric([s], float(state))
        yield link
        age = GaugeMetricFamily(
            "anbo_bureau_station_heartbeat_age_seconds",
            "Since the newest heartbeat arrived",
            labels=["station"],
        )
        behind = GaugeMetricFamily(
            "anbo_bureau_station_complete_until_timestamp_seconds",
            "The station's events are all here up to this time",
            labels=["station"],
        )
        for s, (_at, until, mono) in sorted(self.heartbeats.items()):
            age.add_metric([s], now - mono)
            behind.add_metric([s], until)
        yield age
        yield behind

    def is_db_up(self) -> bool:
        return self.db is not None and not self.db.closed
