"""The bureau's PostgreSQL: schema (created and migrated here, versioned), idempotent writes, reads.

Writes are idempotent by event id: an interval revision is keyed by ``(event_id,
revision)`` and the current state of an interval is its highest revision; an alert
transition by its id; a station's description and heartbeat keep the newest by sequence
number and time. Redelivery, replays and duplicates change nothing.

psycopg 3 for both sides: the service writes through its asyncio connection, the
report reads through a plain one (the same driver, the same SQL).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bureau.wire import Event
from monitor.ledger import IntervalClass, LedgerService
from monitor.schedule import Schedule

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ApplyResult",
    "BureauReader",
    "StationInfo",
    "apply_events",
    "migrate",
]

#: Each entry takes the schema from version i to i+1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE stations (
        name TEXT PRIMARY KEY,
        station_class SMALLINT NOT NULL DEFAULT 3,
        county TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        services JSONB NOT NULL DEFAULT '[]',
        described_seq BIGINT NOT NULL DEFAULT 0,
        expected BOOLEAN NOT NULL DEFAULT false,
        last_seq BIGINT NOT NULL DEFAULT 0,
        first_seen DOUBLE PRECISION
    );
    CREATE TABLE heartbeats (
        station TEXT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        seq BIGINT NOT NULL,
        outbox INTEGER NOT NULL,
        complete_until DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        ledger_up BOOLEAN NOT NULL,
        received_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE interval_revisions (
        event_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        station TEXT NOT NULL,
        seq BIGINT NOT NULL,
        change TEXT NOT NULL,
        body JSONB NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (event_id, revision)
    );
    CREATE TABLE intervals (
        event_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        station TEXT NOT NULL,
        target TEXT NOT NULL,
        service TEXT NOT NULL,
        class TEXT NOT NULL,
        start DOUBLE PRECISION NOT NULL,
        "end" DOUBLE PRECISION,
        causes JSONB NOT NULL,
        remarks JSONB NOT NULL,
        voided BOOLEAN NOT NULL
    );
    CREATE INDEX intervals_station_start ON intervals (station, start);
    CREATE TABLE alert_history (
        id TEXT PRIMARY KEY,
        station TEXT NOT NULL,
        seq BIGINT NOT NULL,
        alertname TEXT NOT NULL,
        target TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        severity TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        body JSONB NOT NULL
    );
    CREATE INDEX alert_history_station_at ON alert_history (station, at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_LOCK = 0x616E626F  # "anbo": one migrator at a time


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Create or upgrade the schema; returns the version found before. Refuses a newer one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS anbo_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM anbo_schema").fetchone()
        found = 0 if row is None else int(row[0])
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"the bureau database's schema {found} is newer than this anbo's ({SCHEMA_VERSION})"
            )
        for sql in MIGRATIONS[found:]:
            conn.execute(sql)
        if row is None:
            conn.execute("INSERT INTO anbo_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE anbo_schema SET version = %s", (SCHEMA_VERSION,))
    return found


def expect_stations(conn: psycopg.Connection[Any], stations: Iterable[tuple[str, str, int]]) -> None:
    """The configured stations (name, county, class): reported on even before they say anything."""
    with conn.transaction():
        for name, county, cls in stations:
            conn.execute(
                "INSERT INTO stations (name, county, station_class, expected) VALUES (%s, %s, %s, true) "
                "ON CONFLICT (name) DO UPDATE SET expected = true",
                (name, county, cls),
            )


@dataclass(slots=True)
class ApplyResult:
    new: int = 0
    duplicate: int = 0
    #: station → sequence numbers to acknowledge (committed, or already there)
    acks: dict[str, list[int]] = field(default_factory=dict)


async def apply_events(
    conn: psycopg.AsyncConnection[Any], events: Sequence[Event], now: float
) -> ApplyResult:
    """Write a batch in one transaction (idempotently); the caller acknowledges after it returns.

    One ``executemany`` per statement (psycopg pipelines them: a handful of round trips
    per batch, not several per event); "new or already there" from ``RETURNING``.
    """
    out = ApplyResult()
    beats = [e for e in events if e.kind == "heartbeat"]
    numbered = [e for e in events if e.seq is not None]
    intervals = [e for e in numbered if e.kind == "interval"]
    alerts = [e for e in numbered if e.kind == "alert"]
    described = [e for e in numbered if e.kind == "station"]
    last_seq: dict[str, int] = {}
    for e in numbered:
        assert e.seq is not None
        last_seq[e.station] = max(last_seq.get(e.station, 0), e.seq)
        out.acks.setdefault(e.station, []).append(e.seq)
    fresh = 0
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO stations (name, first_seen) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            [(name, now) for name in sorted({e.station for e in events})],
        )
        if last_seq:
            await cur.executemany(
                "UPDATE stations SET last_seq = GREATEST(last_seq, %s) WHERE name = %s",
                [(seq, name) for name, seq in sorted(last_seq.items())],
            )
        if beats:
            await cur.executemany(
                "INSERT INTO heartbeats AS h (station, at, seq, outbox, complete_until, started_at, "
                "ledger_up, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (station) DO UPDATE SET at = excluded.at, seq = excluded.seq, "
                "outbox = excluded.outbox, complete_until = excluded.complete_until, "
                "started_at = excluded.started_at, ledger_up = excluded.ledger_up, "
                "received_at = excluded.received_at WHERE h.at < excluded.at",
                [
                    (
                        e.station,
                        e.body["at"],
                        e.body["seq"],
                        int(e.body.get("outbox") or 0),
                        e.body["complete_until"],
                        e.body.get("started_at"),
                        bool(e.body.get("ledger_up", True)),
                        now,
                    )
                    for e in beats
                ],
            )
        if intervals:
            await cur.executemany(
                "INSERT INTO interval_revisions (event_id, revision, station, seq, change, body, "
                "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
                "RETURNING event_id",
                [
                    (
                        e.event_id,
                        e.revision,
                        e.station,
                        e.seq,
                        str(e.body.get("change", "")),
                        json.dumps(e.body["interval"], ensure_ascii=False),
                        now,
                    )
                    for e in intervals
                ],
                returning=True,
            )
            fresh += _returned(cur)
            await cur.executemany(
                "INSERT INTO intervals AS i (event_id, revision, station, target, service, class, start, "
                '"end", causes, remarks, voided) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) '
                "ON CONFLICT (event_id) DO UPDATE SET revision = excluded.revision, "
                "target = excluded.target, service = excluded.service, class = excluded.class, "
                'start = excluded.start, "end" = excluded."end", causes = excluded.causes, '
                "remarks = excluded.remarks, voided = excluded.voided "
                "WHERE i.revision < excluded.revision",
                [
                    (
                        e.event_id,
                        e.revision,
                        e.station,
                        iv["target"],
                        iv["service"],
                        iv["class"],
                        iv["start"],
                        iv["end"],
                        json.dumps(iv["causes"], ensure_ascii=False),
                        json.dumps(iv["remarks"], ensure_ascii=False),
                        iv["voided"],
                    )
                    for e in intervals
                    for iv in (e.body["interval"],)
                ],
            )
        if alerts:
            await cur.executemany(
                "INSERT INTO alert_history (id, station, seq, alertname, target, from_state, to_state, "
                "severity, at, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [
                    (
                        e.event_id,
                        e.station,
                        e.seq,
                        a["alertname"],
                        a["target"],
                        a["from"],
                        a["to"],
                        a["severity"],
                        a["at"],
                        json.dumps(a, ensure_ascii=False),
                    )
                    for e in alerts
                    for a in (e.body["alert"],)
                ],
                returning=True,
            )
            fresh += _returned(cur)
        if described:
            await cur.executemany(
                "UPDATE stations SET station_class = %s, county = %s, description = %s, services = %s, "
                "described_seq = %s WHERE name = %s AND described_seq < %s RETURNING name",
                [
                    (
                        d["station_class"],
                        str(d.get("county", "")),
                        str(d.get("description", "")),
                        json.dumps(d["services"], ensure_ascii=False),
                        e.seq,
                        e.station,
                        e.seq,
                    )
                    for e in described
                    for d in (e.body["info"],)
                ],
                returning=True,
            )
            fresh += _returned(cur)
    out.new = fresh
    out.duplicate = len(numbered) - fresh
    return out


def _returned(cur: psycopg.AsyncCursor[Any]) -> int:
    """Rows returned over every statement of the last ``executemany(..., returning=True)``."""
    n = 0
    while True:
        n += cur.rowcount if cur.rowcount > 0 else 0
        if not cur.nextset():
            return n


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class StationInfo:
    name: str
    station_class: int
    county: str
    description: str
    services: tuple[LedgerService, ...]
    expected: bool
    #: the newest heartbeat's time and "acknowledged up to" (None: never heard)
    heartbeat_at: float | None
    complete_until: float | None


Span = tuple[str, str, IntervalClass, float, float | None, tuple[str, ...], tuple[str, ...]]
_CLASSES = {c.value: c for c in IntervalClass}
_SPANS = (
    'SELECT station, event_id, target, class, start, "end", causes::text, remarks::text FROM intervals '
    'WHERE ("end" IS NULL OR "end" > %s) AND start < %s AND NOT voided'
)


@functools.lru_cache(maxsize=4096)
def _texts(text: str) -> tuple[str, ...]:
    """A JSON list of strings (causes, remarks: few distinct values, so cached)."""
    return () if text == "[]" else tuple(json.loads(text))


class StationSpans:
    """One station's intervals, shaped as :meth:`monitor.ledger.LedgerStore.spans` returns them
    (read when asked, or handed over already read by :meth:`BureauReader.sources`)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        station: str,
        rows: dict[tuple[float, float], list[Span]] | None = None,
    ) -> None:
        self.conn = conn
        self.station = station
        self._rows = rows or {}

    def spans(self, start: float, end: float, targets: Iterable[str] | None = None) -> list[Span]:
        rows = self._rows.get((start, end))
        if rows is None:
            rows = [
                (eid, tgt, _CLASSES[cls], a, b, _texts(c), _texts(r))
                for _, eid, tgt, cls, a, b, c, r in self.conn.execute(
                    _SPANS + " AND station = %s ORDER BY start, event_id", (start, end, self.station)
                )
            ]
        if targets is None:
            return rows
        wanted = set(targets)
        return [r for r in rows if r[1] in wanted]


class BureauReader:
    """The report's side: stations and their intervals (a plain, read-only use of the database)."""

    def __init__(self, url: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> BureauReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stations(self) -> list[StationInfo]:
        rows = self.conn.execute(
            "SELECT s.name, s.station_class, s.county, s.description, s.services, s.expected, h.at, "
            "h.complete_until FROM stations s LEFT JOIN heartbeats h ON h.station = s.name ORDER BY s.name"
        ).fetchall()
        out = []
        for name, cls, county, desc, services, expected, at, until in rows:
            out.append(
                StationInfo(
                    name=name,
                    station_class=int(cls),
                    county=county,
                    description=desc,
                    services=tuple(
                        LedgerService(
                            target=s["target"],
                            service=str(s.get("service", "")),
                            kind=str(s.get("kind", "")),
                            schedule=None
                            if s.get("schedule") is None
                            else Schedule.model_validate(s["schedule"]),
                        )
                        for s in services
                    ),
                    expected=bool(expected),
                    heartbeat_at=at,
                    complete_until=until,
                )
            )
        return out

    def spans_of(self, station: str) -> StationSpans:
        return StationSpans(self.conn, station)

    def sources(self, start: float, end: float) -> dict[str, StationSpans]:
        """Every station's intervals overlapping ``[start, end)`` in one query (the report's)."""
        by: dict[str, list[Span]] = {}
        for st, eid, tgt, cls, a, b, c, r in self.conn.execute(
            _SPANS + " ORDER BY station, start, event_id", (start, end)
        ):
            by.setdefault(st, []).append((eid, tgt, _CLASSES[cls], a, b, _texts(c), _texts(r)))
        names = {s for (s,) in self.conn.execute("SELECT name FROM stations")} | set(by)
        return {n: StationSpans(self.conn, n, {(start, end): by.get(n, [])}) for n in names}

    def counts(self) -> dict[str, int]:
        """Rows per table (tests and the figures in docs/bureau.md)."""
        return {
            t: int(self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("stations", "heartbeats", "interval_revisions", "intervals", "alert_history")
        }
