"""The bureau's PostgreSQL: schema (created and migrated here, versioned), idempotent writes, reads.

Writes are idempotent by event id: an interval revision is keyed by ``(event_id,
revision)`` and the current state of an interval is its highest revision; an alert
transition by its id; a station's description and heartbeat keep the newest by sequence
number and time. Redelivery, replays and duplicates change nothing.

psycopg 3 for both sides: the service writes through its asyncio connection, the
report reads through a plain one (the same driver, the same SQL).
"""

from __future__ import annotations

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
    """Write a batch in one transaction (idempotently); the caller acknowledges after it returns."""
    out = ApplyResult()
    async with conn.transaction(), conn.cursor() as cur:
        for e in events:
            b = e.body
            await cur.execute(
                "INSERT INTO stations (name, first_seen) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (e.station, now),
            )
            if e.kind == "heartbeat":
                await cur.execute(
                    "INSERT INTO heartbeats AS h (station, at, seq, outbox, complete_until, started_at, "
                    "ledger_up, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (station) DO UPDATE SET at = excluded.at, seq = excluded.seq, "
                    "outbox = excluded.outbox, complete_until = excluded.complete_until, "
                    "started_at = excluded.started_at, ledger_up = excluded.ledger_up, "
                    "received_at = excluded.received_at WHERE h.at < excluded.at",
                    (
                        e.station,
                        b["at"],
                        b["seq"],
                        int(b.get("outbox") or 0),
                        b["complete_until"],
                        b.get("started_at"),
                        bool(b.get("ledger_up", True)),
                        now,
                    ),
                )
                continue
            assert e.seq is not None
            await cur.execute(
                "UPDATE stations SET last_seq = GREATEST(last_seq, %s) WHERE name = %s", (e.seq, e.station)
            )
            if e.kind == "interval":
                iv = b["interval"]
                await cur.execute(
                    "INSERT INTO interval_revisions (event_id, revision, station, seq, change, body, "
                    "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (e.event_id, e.revision, e.station, e.seq, str(b.get("change", "")), json.dumps(iv), now),
                )
                fresh = cur.rowcount == 1
                await cur.execute(
                    "INSERT INTO intervals AS i (event_id, revision, station, target, service, class, start, "
                    '"end", causes, remarks, voided) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) '
                    "ON CONFLICT (event_id) DO UPDATE SET revision = excluded.revision, "
                    "target = excluded.target, service = excluded.service, class = excluded.class, "
                    'start = excluded.start, "end" = excluded."end", causes = excluded.causes, '
                    "remarks = excluded.remarks, voided = excluded.voided "
                    "WHERE i.revision < excluded.revision",
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
                    ),
                )
            elif e.kind == "alert":
                a = b["alert"]
                await cur.execute(
                    "INSERT INTO alert_history (id, station, seq, alertname, target, from_state, to_state, "
                    "severity, at, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
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
                    ),
                )
                fresh = cur.rowcount == 1
            else:  # station
                s = b["info"]
                await cur.execute(
                    "UPDATE stations SET station_class = %s, county = %s, description = %s, services = %s, "
                    "described_seq = %s WHERE name = %s AND described_seq < %s",
                    (
                        s["station_class"],
                        str(s.get("county", "")),
                        str(s.get("description", "")),
                        json.dumps(s["services"], ensure_ascii=False),
                        e.seq,
                        e.station,
                        e.seq,
                    ),
                )
                fresh = cur.rowcount == 1
            if fresh:
                out.new += 1
            else:
                out.duplicate += 1
            out.acks.setdefault(e.station, []).append(e.seq)
    return out


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


class StationSpans:
    """One station's intervals, shaped as :meth:`monitor.ledger.LedgerStore.spans` returns them."""

    def __init__(self, conn: psycopg.Connection[Any], station: str) -> None:
        self.conn = conn
        self.station = station

    def spans(
        self, start: float, end: float, targets: Iterable[str] | None = None
    ) -> list[tuple[str, str, IntervalClass, float, float | None, tuple[str, ...], tuple[str, ...]]]:
        sql = (
            'SELECT event_id, target, class, start, "end", causes, remarks FROM intervals '
            'WHERE station = %s AND ("end" IS NULL OR "end" > %s) AND start < %s AND NOT voided'
        )
        args: list[object] = [self.station, start, end]
        if targets is not None:
            sql += " AND target = ANY(%s)"
            args.append(list(targets))
        sql += " ORDER BY start, event_id"
        classes = {c.value: c for c in IntervalClass}
        return [
            (eid, tgt, classes[cls], a, b, tuple(c), tuple(r))
            for eid, tgt, cls, a, b, c, r in self.conn.execute(sql, args)
        ]


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

    def counts(self) -> dict[str, int]:
        """Rows per table (tests and the figures in docs/bureau.md)."""
        return {
            t: int(self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("stations", "heartbeats", "interval_revisions", "intervals", "alert_history")
        }
