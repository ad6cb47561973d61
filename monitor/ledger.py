"""The outage ledger: the station's record of truth for on-air time (SQLite, WAL).

One writer (the daemon) appends **intervals** to an embedded SQLite database in the
state directory. Each interval is one stretch of one class on one service:

* ``outage`` (停播), ``wrong_programme`` (错播), ``filler`` (垫播), ``degraded`` (劣播):
  from the rule engine's transitions of rules with that ``outage_class``; several
  alerts of one class on one service make *one* interval (DeadAir during CarrierLoss
  is one outage), whose ``causes`` list the alert names;
* ``unmonitored``: time anbo could not see the service (TelemetryLost, the daemon
  down: after a crash, from the last heartbeat to the restart);
* ``maintenance``: the service's declared maintenance windows.

Intervals of different classes may overlap in the ledger; the reports resolve overlaps
by :data:`PRIORITY` (maintenance, then unmonitored, then outage ...), so that "outage
wins over degraded" and "an outage overrunning its maintenance window counts from the
window's end" are one rule, applied in one place.

Nothing is rewritten: every change (an interval closing, a cause added, a manual
correction) is a new **row** with the same ``event_id`` (a UUID, stable for the life of
the interval) and the next ``revision``; the newest revision is the interval's current
state. Every row is self-describing (station, target, service, class, start, end,
causes, remarks, source, author, reason), so a bureau tier can ship rows by
``(event_id, revision)`` idempotently.

Times are wall-clock UNIX seconds (UTC): an interval starts at the fault's onset (when
the condition first held, before the rule's ``for``) and ends at the clear's onset.

Faults of the ledger itself (disk full, read-only, corrupt file) never stop the daemon:
the error is logged once, counted (``anbo_ledger_write_errors_total``), shown in
``/-/ready`` and as the ``LedgerUnavailable`` alert, and rows wait in memory (bounded)
until they can be written. A file that is not a valid database is renamed aside
(``*.corrupt-<UTC time>``), never deleted.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.schedule import Schedule
from monitor.settings import Settings, TargetKind
from rules import Alert, AlertState, MaintenanceWindow, OutageClass, Transition

__all__ = [
    "PRIORITY",
    "SCHEMA_VERSION",
    "Interval",
    "IntervalClass",
    "Ledger",
    "LedgerError",
    "LedgerService",
    "OutboxEntry",
    "effective_segments",
    "ledger_aliases",
    "ledger_debounce",
    "ledger_services",
    "parse_time",
]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
TELEMETRY_LOST = "TelemetryLost"
DAEMON_DOWN = "DaemonDown"


class IntervalClass(enum.StrEnum):
    OUTAGE = "outage"
    WRONG_PROGRAMME = "wrong_programme"
    FILLER = "filler"
    DEGRADED = "degraded"
    UNMONITORED = "unmonitored"
    MAINTENANCE = "maintenance"


#: Which class a second belongs to when intervals overlap: the first in this list wins.
PRIORITY: tuple[IntervalClass, ...] = (
    IntervalClass.MAINTENANCE,
    IntervalClass.UNMONITORED,
    IntervalClass.OUTAGE,
    IntervalClass.WRONG_PROGRAMME,
    IntervalClass.FILLER,
    IntervalClass.DEGRADED,
)
_RANK = {c: i for i, c in enumerate(PRIORITY)}

_FROM_RULE = {
    OutageClass.OUTAGE: IntervalClass.OUTAGE,
    OutageClass.WRONG_PROGRAMME: IntervalClass.WRONG_PROGRAMME,
    OutageClass.FILLER: IntervalClass.FILLER,
    OutageClass.DEGRADED: IntervalClass.DEGRADED,
}


class LedgerError(Exception):
    """A ledger operation that cannot be done (unknown event, bad input); the message says why."""


@dataclass(frozen=True, slots=True)
class Interval:
    """One revision of one interval (a row of the ledger)."""

    event_id: str
    revision: int
    station: str
    target: str
    service: str
    cls: IntervalClass
    start: float
    end: float | None
    causes: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()
    #: monitor | recovery | manual
    source: str = "monitor"
    author: str = "anbo"
    reason: str = ""
    recorded_at: float = 0.0
    voided: bool = False

    @property
    def open(self) -> bool:
        return self.end is None

    def duration(self, now: float | None = None) -> float:
        end = self.end if self.end is not None else (now if now is not None else time.time())
        return max(0.0, end - self.start)

    def to_json(self) -> dict[str, object]:
        """The self-describing form (web console, bureau shipping)."""
        return {
            "id": self.event_id,
            "revision": self.revision,
            "station": self.station,
            "target": self.target,
            "service": self.service,
            "class": self.cls.value,
            "start": self.start,
            "end": self.end,
            "causes": list(self.causes),
            "remarks": list(self.remarks),
            "source": self.source,
            "author": self.author,
            "reason": self.reason,
            "recorded_at": self.recorded_at,
            "voided": self.voided,
        }


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event waiting for the bureau's acknowledgement (an interval row, or a payload)."""

    seq: int
    kind: str
    created: float
    interval: Interval | None
    payload: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class LedgerService:
    """What the ledger knows of one configured target."""

    target: str
    service: str
    kind: str = ""
    schedule: Schedule | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intervals (
    row INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    station TEXT NOT NULL,
    target TEXT NOT NULL,
    service TEXT NOT NULL,
    class TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    causes TEXT NOT NULL,
    remarks TEXT NOT NULL,
    source TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    voided INTEGER NOT NULL DEFAULT 0,
    UNIQUE (event_id, revision)
);
CREATE INDEX IF NOT EXISTS intervals_target_start ON intervals (target, start);
CREATE TABLE IF NOT EXISTS current (
    event_id TEXT PRIMARY KEY,
    row INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, clean INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ref INTEGER,
    payload TEXT,
    created REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS outbox_intervals AFTER INSERT ON intervals
BEGIN
    INSERT INTO outbox (kind, ref, created) VALUES ('interval', NEW.row, NEW.recorded_at);
END;
"""
# ``current`` maps each event to its newest row: an index, derived from ``intervals``
# in the same transaction (it is rebuilt from ``intervals`` when missing).
# ``outbox`` holds what the bureau has not yet acknowledged (monitor/events.py): every
# interval row enters it in the transaction that writes the row (the trigger, whoever
# the writer: the daemon or `anbo ledger`), alert transitions and the station's
# description are added by the publisher; ``seq`` (AUTOINCREMENT: never reused) is the
# station's event sequence number. Added to schema 1 without a version change: older
# anbo versions open such a file and ignore the table.

_COLUMNS = (
    'event_id, revision, station, target, service, class, start, "end", causes, remarks, '
    "source, author, reason, recorded_at, voided"
)


_CLASSES = {c.value: c for c in IntervalClass}


def _texts(text: object) -> tuple[str, ...]:
    return () if text == "[]" else tuple(json.loads(str(text)))


def _row(r: Sequence[object]) -> Interval:
    return Interval(
        event_id=str(r[0]),
        revision=int(r[1]),  # type: ignore[call-overload]
        station=str(r[2]),
        target=str(r[3]),
        service=str(r[4]),
        cls=_CLASSES[str(r[5])],
        start=float(r[6]),  # type: ignore[arg-type]
        end=None if r[7] is None else float(r[7]),  # type: ignore[arg-type]
        causes=_texts(r[8]),
        remarks=_texts(r[9]),
        source=str(r[10]),
        author=str(r[11]),
        reason=str(r[12]),
        recorded_at=float(r[13]),  # type: ignore[arg-type]
        voided=bool(r[14]),
    )


def _values(i: Interval) -> tuple[object, ...]:
    return (
        i.event_id,
        i.revision,
        i.station,
        i.target,
        i.service,
        i.cls.value,
        i.start,
        i.end,
        json.dumps(list(i.causes), ensure_ascii=False),
        json.dumps(list(i.remarks), ensure_ascii=False),
        i.source,
        i.author,
        i.reason,
        i.recorded_at,
        int(i.voided),
    )


def _utc_stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y%m%dT%H%M%SZ")


class LedgerStore:
    """The SQLite file: open (setting a corrupt one aside), append rows, query."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.conn: sqlite3.Connection | None = None
        #: where a corrupt file was moved, if one was
        self.set_aside: Path | None = None

    def open(self) -> None:
        """Open (and create) the database; raise sqlite3.Error/OSError if that cannot be done."""
        if self.conn is not None:
            return
        if self.readonly:
            if not self.path.exists():
                raise LedgerError(f"{self.path}: no ledger here")
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            self._check_version(self.conn)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._set_aside(exc)
            conn = self._connect()
        self.conn = conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            conn.executescript(_SCHEMA)
            found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(found[0]) > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: ledger schema {found[0]} is newer than this anbo's ({SCHEMA_VERSION})"
                )
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            conn.close()
            raise
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        try:
            found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not an anbo ledger ({exc})") from None
        if found is None or int(found[0]) > SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: unknown ledger schema {found[0] if found else 'none'}")

    def _set_aside(self, exc: Exception) -> None:
        stamp = _utc_stamp(time.time())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        self.set_aside = aside
        log.error(
            "the outage ledger is corrupt: set aside (not deleted), a new one started",
            path=str(self.path),
            set_aside=str(aside),
            error=str(exc),
        )

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    # -- writes (one transaction each, committed before returning)

    def append(self, rows: Sequence[Interval], heartbeat: tuple[float, bool] | None = None) -> None:
        conn = self.conn
        if conn is None:
            raise sqlite3.OperationalError("ledger not open")
        try:
            conn.execute("BEGIN IMMEDIATE")
            for r in rows:
                cur = conn.execute(
                    f"INSERT INTO intervals ({_COLUMNS}) VALUES ({','.join('?' * 15)})", _values(r)
                )
                conn.execute(
                    "INSERT INTO current(event_id, row) VALUES (?, ?) "
                    "ON CONFLICT(event_id) DO UPDATE SET row=excluded.row",
                    (r.event_id, cur.lastrowid),
                )
            if heartbeat is not None:
                conn.execute(
                    "INSERT INTO heartbeat(id, at, clean) VALUES (1, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET at=excluded.at, clean=excluded.clean",
                    (heartbeat[0], int(heartbeat[1])),
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise

    # -- reads

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    def heartbeat(self) -> tuple[float, bool] | None:
        row = self._conn().execute("SELECT at, clean FROM heartbeat WHERE id=1").fetchone()
        return None if row is None else (float(row[0]), bool(row[1]))

    def current(
        self,
        *,
        start: float | None = None,
        end: float | None = None,
        targets: Iterable[str] | None = None,
        classes: Iterable[IntervalClass] | None = None,
        open_only: bool = False,
        include_voided: bool = False,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Interval]:
        """Current revisions overlapping ``[start, end)`` (open intervals reach to now)."""
        where: list[str] = []
        args: list[object] = []
        if start is not None:
            where.append('(i."end" IS NULL OR i."end" > ?)')
            args.append(start)
        if end is not None:
            where.append("i.start < ?")
            args.append(end)
        if targets is not None:
            t = list(targets)
            where.append(f"i.target IN ({','.join('?' * len(t))})")
            args += t
        if classes is not None:
            c = [x.value for x in classes]
            where.append(f"i.class IN ({','.join('?' * len(c))})")
            args += c
        if open_only:
            where.append('i."end" IS NULL')
        if not include_voided:
            where.append("i.voided = 0")
        sql = (
            f"SELECT {', '.join('i.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM current c JOIN intervals i ON i.row = c.row"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY i.start DESC, i.row DESC" if newest_first else " ORDER BY i.start, i.row"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self._conn().execute(sql, args)]

    def spans(
        self, start: float, end: float, targets: Iterable[str] | None = None
    ) -> list[tuple[str, str, IntervalClass, float, float | None, tuple[str, ...], tuple[str, ...]]]:
        """The report's light query: (event_id, target, class, start, end, causes, remarks)
        of the current, not voided intervals overlapping ``[start, end)``, by start."""
        args: list[object] = [start, end]
        sql = (
            'SELECT i.event_id, i.target, i.class, i.start, i."end", i.causes, i.remarks '
            "FROM current c JOIN intervals i ON i.row = c.row "
            'WHERE (i."end" IS NULL OR i."end" > ?) AND i.start < ? AND i.voided = 0'
        )
        if targets is not None:
            t = list(targets)
            sql += f" AND i.target IN ({','.join('?' * len(t))})"
            args += t
        sql += " ORDER BY i.start, i.event_id"
        classes = _CLASSES
        return [
            (eid, tgt, classes[cls], a, b, _texts(c), _texts(r))
            for eid, tgt, cls, a, b, c, r in self._conn().execute(sql, args)
        ]

    # -- the bureau outbox (see monitor/events.py)

    def outbox_add(self, kind: str, payload: Mapping[str, object], created: float) -> int:
        """Queue a non-interval event; returns its sequence number."""
        cur = self._conn().execute(
            "INSERT INTO outbox (kind, payload, created) VALUES (?, ?, ?)",
            (kind, json.dumps(payload, ensure_ascii=False), created),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def outbox_pending(self, limit: int = 500) -> list[OutboxEntry]:
        """The oldest unacknowledged events, by sequence number."""
        columns = ", ".join("i." + c.strip() for c in _COLUMNS.split(","))
        sql = (
            f"SELECT o.seq, o.kind, o.created, o.payload, {columns} "
            "FROM outbox o LEFT JOIN intervals i ON i.row = o.ref ORDER BY o.seq LIMIT ?"
        )
        out = []
        for r in self._conn().execute(sql, (int(limit),)):
            interval = _row(r[4:]) if r[4] is not None else None
            payload = json.loads(r[3]) if r[3] is not None else None
            out.append(OutboxEntry(int(r[0]), str(r[1]), float(r[2]), interval, payload))
        return out

    def outbox_ack(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged events; returns how many were still queued."""
        ids = [int(s) for s in seqs]
        conn = self._conn()
        n = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            n += conn.execute(
                f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk
            ).rowcount
        return n

    def outbox_state(self) -> tuple[int, float | None, int]:
        """(queued events, creation time of the oldest, last sequence number given out)."""
        conn = self._conn()
        count, oldest = conn.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(count), None if oldest is None else float(oldest), 0 if last is None else int(last[0])

    def outbox_clear(self) -> int:
        return self._conn().execute("DELETE FROM outbox").rowcount

    def history(self, event_id: str) -> list[Interval]:
        """Every revision of one interval, oldest first (a unique prefix of the id is enough)."""
        conn = self._conn()
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM current WHERE event_id LIKE ? LIMIT 2",
                (event_id.replace("%", "") + "%",),
            )
        ]
        if not ids:
            raise LedgerError(f"no interval with id {event_id!r}")
        if len(ids) > 1:
            raise LedgerError(f"id prefix {event_id!r} is ambiguous")
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM intervals WHERE event_id = ? ORDER BY revision", (ids[0],)
        ).fetchall()
        return [_row(r) for r in rows]


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return True


# --------------------------------------------------------------------------- merging


def effective_segments(
    intervals: Iterable[tuple[float, float, IntervalClass]], spans: Sequence[tuple[float, float]]
) -> Iterator[tuple[float, float, IntervalClass | None]]:
    """Split ``spans`` (sorted, disjoint) into pieces of one effective class each.

    Where several intervals overlap, the class first in :data:`PRIORITY` wins; pieces
    covered by none are ``None`` (on air). The pieces cover ``spans`` exactly: no second
    missing, none twice; adjacent pieces of one class are joined.
    """
    held: tuple[float, float, IntervalClass | None] | None = None
    for a, b, cls in _raw_segments(intervals, spans):
        if held is not None and held[1] == a and held[2] is cls:
            held = (held[0], b, cls)
            continue
        if held is not None:
            yield held
        held = (a, b, cls)
    if held is not None:
        yield held


def _raw_segments(
    intervals: Iterable[tuple[float, float, IntervalClass]], spans: Sequence[tuple[float, float]]
) -> Iterator[tuple[float, float, IntervalClass | None]]:
    """Split ``spans`` (sorted, disjoint) into pieces of one effective class each.

    Where several intervals overlap, the class first in :data:`PRIORITY` wins; pieces
    covered by none are ``None`` (on air). The pieces cover ``spans`` exactly: no second
    missing, none twice.
    """
    events: list[tuple[float, int, int]] = []  # (time, +1/-1, rank)
    for a, b, cls in intervals:
        if b > a:
            r = _RANK[cls]
            events.append((a, 1, r))
            events.append((b, -1, r))
    events.sort()
    counts = [0] * len(PRIORITY)
    ei = 0
    for s0, s1 in spans:
        # apply every event up to s0
        while ei < len(events) and events[ei][0] <= s0:
            counts[events[ei][2]] += events[ei][1]
            ei += 1
        cursor = s0
        while True:
            nxt = events[ei][0] if ei < len(events) else float("inf")
            stop = min(nxt, s1)
            if stop > cursor:
                yield cursor, stop, _top(counts)
                cursor = stop
            if nxt >= s1:
                break
            while ei < len(events) and events[ei][0] == nxt:
                counts[events[ei][2]] += events[ei][1]
                ei += 1


def _top(counts: Sequence[int]) -> IntervalClass | None:
    for i, n in enumerate(counts):
        if n > 0:
            return PRIORITY[i]
    return None


# --------------------------------------------------------------------------- the daemon's ledger


@dataclass(slots=True)
class _Open:
    """An interval the daemon keeps open, and the alerts that hold it open."""

    row: Interval
    alerts: dict[str, float] = field(default_factory=dict)
    #: latest clear onset among alerts that already ended
    last_end: float | None = None


class Ledger:
    """The daemon's ledger: turns transitions into rows, keeps the metrics, survives faults.

    All methods run on the event loop; writes are small SQLite transactions committed
    before the method returns (or queued in memory while the file cannot be written).
    """

    def __init__(
        self,
        path: Path,
        station: str,
        services: Sequence[LedgerService],
        *,
        heartbeat: float = 10.0,
        pending_max: int = 10_000,
        maintenance: Sequence[MaintenanceWindow] = (),
        aliases: Mapping[str, str] | None = None,
        debounce: Mapping[str, tuple[float, float]] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = LedgerStore(path)
        self.station = station
        self.heartbeat_every = heartbeat
        self.pending_max = pending_max
        self._wall = wall
        self.services: dict[str, LedgerService] = {}
        self.maintenance: list[MaintenanceWindow] = []
        #: engine target → ledger target (a migration's alerts go to its new channel's target)
        self.aliases: dict[str, str] = {}
        #: alertname → (on, off) debounce of the probe measurement its rule reads: the
        #: probe says "silent" only after ``on`` s of silence and "not silent" after
        #: ``off`` s of programme, so the fault's and the clear's onsets are that much earlier
        self.debounce: dict[str, tuple[float, float]] = dict(debounce or {})
        self.configure(services, maintenance, aliases)
        self._open: dict[tuple[str, IntervalClass], _Open] = {}
        #: most recently closed monitor interval per (target, class), to merge back into
        self._closed: dict[tuple[str, IntervalClass], Interval] = {}
        self._pending: deque[Interval] = deque()
        self._last_heartbeat: float | None = None
        self._last_advance: float | None = None
        self._synced = False
        #: intervals open (or closed by a clean stop) when anbo last stopped, until the first
        #: update decides: kept for a restored alert, else closed at the last heartbeat
        self._held: dict[tuple[str, IntervalClass], Interval] = {}
        self._held_end: float | None = None
        self.started_at: float | None = None
        # metrics
        self.write_errors = 0
        self.dropped_rows = 0
        self.rows_written = 0
        self.outage_seconds: dict[tuple[str, IntervalClass], float] = {}
        self.monitored_seconds: dict[str, float] = {}
        #: wall time the ledger became unwritable, None while healthy
        self.unavailable_since: float | None = None
        self.last_error: str | None = None

    # -- configuration

    def configure(
        self,
        services: Sequence[LedgerService],
        maintenance: Sequence[MaintenanceWindow],
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.services = {s.target: s for s in services}
        self.maintenance = list(maintenance)
        self.aliases = dict(aliases or {})

    @property
    def healthy(self) -> bool:
        return self.unavailable_since is None

    # -- lifecycle

    def start(self) -> int:
        """Open the file and recover from an unclean stop; returns the rows recovery wrote."""
        now = self._wall()
        self.started_at = now
        self._last_advance = now
        try:
            self.store.open()
        except (sqlite3.Error, OSError, LedgerError) as exc:
            self._failed(exc, now)
            return 0
        return self._recover(now)

    def _recover(self, now: float) -> int:
        """After a stop: the down time becomes ``unmonitored`` (DaemonDown). The intervals
        that were open when anbo stopped are held: those whose alert the engine restores
        still firing stay the same interval (no close and reopen on a restart); the others
        are closed at the last heartbeat at the first :meth:`update`."""
        store = self.store
        try:
            beat = store.heartbeat()
            open_rows = store.current(open_only=True)
            stopped = [] if beat is None or not beat[1] else self._closed_at_stop(beat[0])
        except sqlite3.Error as exc:
            self._failed(exc, now)
            return 0
        rows: list[Interval] = []
        if beat is not None:
            last, clean = beat
            last = min(last, now)
            self._held = {(r.target, r.cls): r for r in [*stopped, *open_rows]}
            self._held_end = last
            if now - last >= 1.0:
                why = (
                    "anbo was not running" if clean else "anbo stopped unexpectedly (no heartbeat after this)"
                )
                for svc in self.services.values():
                    rows.append(
                        self._new(
                            svc.target, IntervalClass.UNMONITORED, last, now, (DAEMON_DOWN,), "recovery", why
                        )
                    )
        if rows or open_rows:
            log.warning(
                "outage ledger: recovered after a stop",
                held_open=len(open_rows),
                unmonitored_from=beat[0] if beat else None,
                restart=now,
            )
        self._write(rows, heartbeat=(now, False))
        self._last_heartbeat = now
        return len(rows)

    def _closed_at_stop(self, at: float) -> list[Interval]:
        """Monitor intervals a clean stop closed (at its final heartbeat ``at``)."""
        return [
            r
            for r in self.store.current(start=at - 1e-6)
            if r.end is not None
            and abs(r.end - at) < 1e-6
            and r.reason == "anbo stopped"
            and r.cls not in (IntervalClass.MAINTENANCE,)
        ]

    def _release_held(self) -> list[Interval]:
        """Close what was open before the restart and is not held by a restored alert."""
        rows = []
        end = self._held_end
        for r in self._held.values():
            if r.end is None and end is not None:
                rows.append(
                    self._revise(
                        r,
                        end=max(r.start, end),
                        source="recovery",
                        reason="closed at the last heartbeat: anbo stopped without closing it",
                    )
                )
        self._held = {}
        return rows

    def stop(self) -> None:
        """Clean shutdown: close what is open now, a final heartbeat marked clean."""
        now = self._wall()
        self.advance(now)
        rows = self._release_held()
        rows += [
            self._revise(o.row, end=max(o.row.start, now), reason="anbo stopped") for o in self._open.values()
        ]
        self._open.clear()
        self._write(rows, heartbeat=(now, True))
        self.store.close()

    # -- input from the evaluator

    def update(
        self, transitions: Sequence[Transition], active: Callable[[], Sequence[Alert]], wall: float
    ) -> None:
        """One tick: the engine's transitions (and, on the first tick, its active alerts,
        so that alerts restored from the state file open their intervals again)."""
        self.advance(wall)  # the time since the last tick belongs to the state before this one
        rows: list[Interval] = []
        if not self._synced:
            self._synced = True
            since = self.started_at if self.started_at is not None else wall
            for a in active():
                cls = self._class(a.alertname, a.outage_class)
                target = self.aliases.get(a.target, a.target)
                if cls is None or a.state is not AlertState.FIRING or target not in self.services:
                    continue
                key_ = f"{a.alertname}:{a.severity}"
                held = self._held.pop((target, cls), None)
                if held is not None and a.alertname in held.causes:
                    # the same incident goes on across the restart: the same interval
                    o = self._open.get((target, cls))
                    if o is None:
                        row = held
                        if held.end is not None:  # closed by the clean stop: reopened
                            row = self._revise(held, end=None, reason="anbo restarted; still firing")
                            rows.append(row)
                        self._open[(target, cls)] = o = _Open(row, {})
                    o.alerts[key_] = a.onset if a.onset is not None else a.starts_at
                    continue
                if held is not None:
                    self._held[(target, cls)] = held
                onset = max(a.onset if a.onset is not None else a.starts_at, since)
                self._add_alert(rows, target, cls, a.alertname, key_, onset)
            rows += self._release_held()
        for t in transitions:
            cls = self._class(t.alertname, t.outage_class)
            target = self.aliases.get(t.target, t.target)
            if cls is None or target not in self.services:
                continue
            if t.to_state is AlertState.FIRING and t.from_state is not AlertState.FIRING:
                onset = t.onset if t.onset is not None else t.starts_at
                if cls is IntervalClass.UNMONITORED and isinstance(t.value, float):
                    onset = t.starts_at - t.value  # TelemetryLost: from the last telemetry
                onset -= self.debounce.get(t.alertname, (0.0, 0.0))[0]
                self._add_alert(
                    rows, target, cls, t.alertname, f"{t.alertname}:{t.severity}", min(onset, wall)
                )
            elif t.to_state is AlertState.RESOLVED:
                end = t.clear_onset if t.clear_onset is not None else (t.ends_at or wall)
                if t.clear_onset is not None:
                    end -= self.debounce.get(t.alertname, (0.0, 0.0))[1]
                self._remove_alert(rows, target, cls, f"{t.alertname}:{t.severity}", end)
        self._maintenance(rows, wall)
        beat = None
        if self._last_heartbeat is None or wall - self._last_heartbeat >= self.heartbeat_every:
            beat = (wall, False)
        written = (rows or beat is not None or self._pending) and self._write(rows, heartbeat=beat)
        if written and beat is not None:
            self._last_heartbeat = wall

    @staticmethod
    def _class(alertname: str, outage_class: OutageClass) -> IntervalClass | None:
        if alertname == TELEMETRY_LOST:
            return IntervalClass.UNMONITORED
        return _FROM_RULE.get(outage_class)

    def _add_alert(
        self, rows: list[Interval], target: str, cls: IntervalClass, alert: str, key_: str, onset: float
    ) -> None:
        key = (target, cls)
        o = self._open.get(key)
        if o is None:
            closed = self._closed.get(key)
            if closed is not None and closed.end is not None and onset <= closed.end:
                # the new fault began before the last one's clear: one interval, reopened
                row = self._revise(
                    closed,
                    end=None,
                    start=min(closed.start, onset),
                    causes=_union(closed.causes, alert),
                    reason=f"{alert} began before it ended",
                )
                del self._closed[key]
            else:
                row = self._new(target, cls, onset, None, (alert,), "monitor", "")
            rows.append(row)
            self._open[key] = _Open(row, {key_: onset})
            return
        o.alerts[key_] = onset
        if alert not in o.row.causes or onset < o.row.start:
            o.row = self._revise(o.row, start=min(o.row.start, onset), causes=_union(o.row.causes, alert))
            rows.append(o.row)

    def _remove_alert(
        self, rows: list[Interval], target: str, cls: IntervalClass, alert: str, end: float
    ) -> None:
        key = (target, cls)
        o = self._open.get(key)
        if o is None or alert not in o.alerts:
            return
        del o.alerts[alert]
        o.last_end = end if o.last_end is None else max(o.last_end, end)
        if o.alerts:
            return
        row = self._revise(o.row, end=max(o.row.start, o.last_end))
        rows.append(row)
        del self._open[key]
        self._closed[key] = row

    def _maintenance(self, rows: list[Interval], wall: float) -> None:
        for svc in self.services.values():
            names = [
                w.name or "maintenance"
                for w in self.maintenance
                if w.applies_to(svc.target, {"station": self.station}) and w.active(wall)
            ]
            key = (svc.target, IntervalClass.MAINTENANCE)
            o = self._open.get(key)
            if names and o is None:
                row = self._new(
                    svc.target, IntervalClass.MAINTENANCE, wall, None, tuple(names), "monitor", ""
                )
                rows.append(row)
                self._open[key] = _Open(row, dict.fromkeys(names, wall))
            elif not names and o is not None:
                rows.append(self._revise(o.row, end=max(o.row.start, wall)))
                del self._open[key]

    # -- metrics bookkeeping

    def advance(self, wall: float) -> None:
        """Attribute the time since the last call to each service's effective class."""
        last = self._last_advance
        self._last_advance = wall
        if last is None or wall <= last:
            return
        dt = min(wall - last, 60.0)
        by_target: dict[str, IntervalClass] = {}
        for (target, cls), o in self._open.items():
            if o.row.start > wall:
                continue
            cur = by_target.get(target)
            if cur is None or _RANK[cls] < _RANK[cur]:
                by_target[target] = cls
        for target, svc in self.services.items():
            if svc.schedule is not None and not svc.schedule.on_air(wall):
                continue
            eff = by_target.get(target)
            if eff is not None:
                self.outage_seconds[(target, eff)] = self.outage_seconds.get((target, eff), 0.0) + dt
            if eff is not IntervalClass.UNMONITORED:
                self.monitored_seconds[target] = self.monitored_seconds.get(target, 0.0) + dt

    # -- rows

    def _new(
        self,
        target: str,
        cls: IntervalClass,
        start: float,
        end: float | None,
        causes: tuple[str, ...],
        source: str,
        reason: str,
        *,
        author: str = "anbo",
        remarks: tuple[str, ...] = (),
    ) -> Interval:
        svc = self.services.get(target)
        return Interval(
            event_id=str(uuid.uuid4()),
            revision=0,
            station=self.station,
            target=target,
            service=svc.service if svc is not None else "",
            cls=cls,
            start=start,
            end=end,
            causes=causes,
            remarks=remarks,
            source=source,
            author=author,
            reason=reason,
            recorded_at=self._wall(),
        )

    def _revise(self, row: Interval, **changes: object) -> Interval:
        changes.setdefault("source", row.source if row.source != "recovery" else "monitor")
        changes.setdefault("reason", "")
        return replace(row, revision=row.revision + 1, recorded_at=self._wall(), **changes)  # type: ignore[arg-type]

    def _write(self, rows: Sequence[Interval], heartbeat: tuple[float, bool] | None = None) -> bool:
        """Write pending rows then ``rows``; on failure keep them (bounded). True if written."""
        for r in rows:
            if len(self._pending) >= self.pending_max:
                self._pending.popleft()
                self.dropped_rows += 1
                log.error(
                    "outage ledger: pending rows over the limit; the oldest dropped",
                    limit=self.pending_max,
                    rate_key="ledger_drop",
                )
            self._pending.append(r)
        now = self._wall()
        try:
            if self.store.conn is None:
                self.store.open()
            batch = list(self._pending)
            self.store.append(batch, heartbeat)
        except (sqlite3.Error, OSError, LedgerError) as exc:
            self._failed(exc, now)
            return False
        self._pending.clear()
        self.rows_written += len(batch)
        if self.unavailable_since is not None:
            log.warning(
                "outage ledger writable again: pending rows written",
                rows=len(batch),
                unavailable_s=round(now - self.unavailable_since, 1),
            )
            self.unavailable_since = None
            self.last_error = None
        return True

    def _failed(self, exc: BaseException, now: float) -> None:
        self.write_errors += 1
        if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc) and self.store.conn is not None:
            # the file went bad under us: set it aside and start a new one next time
            self.store.close()
            with contextlib.suppress(OSError):
                self.store._set_aside(exc)
        if self.unavailable_since is None:
            self.unavailable_since = now
            self.last_error = str(exc)
            log.error(
                "outage ledger cannot be written: monitoring and alerting go on, rows are kept in memory",
                path=str(self.store.path),
                error=str(exc),
                pending=len(self._pending),
            )
        if isinstance(exc, sqlite3.OperationalError) and self.store.conn is not None:
            text = str(exc).lower()
            if "readonly" in text or "unable to open" in text:
                self.store.close()  # reopen later: the directory may be writable again

    # -- manual entries (the `anbo ledger` command, on the file directly)

    def add_manual(
        self,
        target: str,
        cls: IntervalClass,
        start: float,
        end: float,
        *,
        author: str,
        reason: str,
        causes: Sequence[str] = (),
        remarks: Sequence[str] = (),
    ) -> Interval:
        if end <= start:
            raise LedgerError("end must be after start")
        if not author or not reason:
            raise LedgerError("a manual entry needs an author and a reason")
        row = self._new(
            target, cls, start, end, tuple(causes), "manual", reason, author=author, remarks=tuple(remarks)
        )
        self.store.append([row])
        return row

    def amend(
        self,
        event_id: str,
        *,
        author: str,
        reason: str,
        remark: str | None = None,
        cause: str | None = None,
        void: bool = False,
    ) -> Interval:
        if not author or not reason:
            raise LedgerError("a correction needs an author and a reason")
        history = self.store.history(event_id)
        cur = history[-1]
        remarks = cur.remarks + ((remark,) if remark else ())
        causes = _union(cur.causes, cause) if cause else cur.causes
        row = replace(
            cur,
            revision=cur.revision + 1,
            remarks=remarks,
            causes=causes,
            voided=cur.voided or void,
            source="manual",
            author=author,
            reason=reason,
            recorded_at=self._wall(),
        )
        self.store.append([row])
        return row

    # -- queries

    def recent(self, limit: int = 20, *, classes: Iterable[IntervalClass] | None = None) -> list[Interval]:
        """The newest intervals (current revisions, not voided), newest first: the web console's list.

        Rows not yet written (the ledger unavailable) are included.
        """
        try:
            rows = self.store.current(limit=limit, newest_first=True, classes=classes)
        except (sqlite3.Error, OSError, LedgerError):
            rows = []
        pending: dict[str, Interval] = {r.event_id: r for r in self._pending}
        wanted = set(classes) if classes is not None else None
        merged = {r.event_id: r for r in rows}
        for eid, r in pending.items():
            if wanted is None or r.cls in wanted:
                merged[eid] = r
        out = sorted((r for r in merged.values() if not r.voided), key=lambda r: r.start, reverse=True)
        return out[:limit]

    @property
    def open_intervals(self) -> int:
        return len(self._open)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- Prometheus

    def collect(self) -> Iterator[Metric]:
        labels = ["station", "target", "service", "class"]
        outage = CounterMetricFamily(
            "anbo_outage_seconds",
            "Scheduled seconds per service spent in each ledger class (outage, wrong_programme, "
            "filler, degraded, unmonitored, maintenance), advancing while an interval is open",
            labels=labels,
        )
        for (target, cls), secs in sorted(self.outage_seconds.items()):
            svc = self.services.get(target)
            outage.add_metric([self.station, target, svc.service if svc else "", cls.value], secs)
        yield outage
        monitored = CounterMetricFamily(
            "anbo_monitored_seconds",
            "Scheduled seconds per service actually observed (not unmonitored)",
            labels=["station", "target", "service"],
        )
        for target, secs in sorted(self.monitored_seconds.items()):
            svc = self.services.get(target)
            monitored.add_metric([self.station, target, svc.service if svc else ""], secs)
        yield monitored
        yield GaugeMetricFamily(
            "anbo_ledger_open_intervals", "Intervals the ledger has open now", value=len(self._open)
        )
        yield CounterMetricFamily(
            "anbo_ledger_write_errors", "Failed writes to the outage ledger", value=self.write_errors
        )
        yield GaugeMetricFamily(
            "anbo_ledger_pending_rows",
            "Ledger rows waiting in memory to be written",
            value=len(self._pending),
        )
        yield CounterMetricFamily(
            "anbo_ledger_dropped_rows",
            "Ledger rows dropped because the in-memory queue was full",
            value=self.dropped_rows,
        )
        yield GaugeMetricFamily(
            "anbo_ledger_up", "1 while the outage ledger can be written", value=1.0 if self.healthy else 0.0
        )


def _union(causes: tuple[str, ...], extra: str) -> tuple[str, ...]:
    return causes if extra in causes else (*causes, extra)


def ledger_services(settings: Settings) -> list[LedgerService]:
    """The services the ledger keeps: every programme target (fm, dtv); transmitters are
    equipment, their faults reach the ledger through the services' own alerts."""
    return [
        LedgerService(target=t.name, service=t.service, kind=t.kind.value, schedule=t.schedule)
        for t in settings.targets
        if t.kind is not TargetKind.TX
    ]


def ledger_debounce(settings: Settings) -> dict[str, tuple[float, float]]:
    """The probes' debounce times behind the built-in audio rules (see :class:`Ledger`)."""
    p = settings.probes
    return {
        "DeadAir": (p.silence_on_s, p.silence_off_s),
        "Hiss": (p.hiss_on_s, HISS_TONE_OFF_S),
        "StuckTone": (p.tone_on_s, HISS_TONE_OFF_S),
    }


#: probes.audio HissDetector/StuckToneDetector default ``off_s``
HISS_TONE_OFF_S = 2.0


def ledger_aliases(settings: Settings) -> dict[str, str]:
    """Migration name → the target of its new channel (a wrong programme there is its 错播)."""
    out: dict[str, str] = {}
    for m in settings.migrations:
        _, new = settings.migration_targets(m)
        if new is not None:
            out[m.name] = new.name
    return out


def parse_time(text: str, tz: str = "UTC") -> float:
    """A UNIX time from ISO 8601 (a date, or a date-time; without offset read in ``tz``)."""
    from zoneinfo import ZoneInfo

    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LedgerError(
            f"{text!r}: expected an ISO 8601 date or date-time, e.g. 2026-07-01T08:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.timestamp()
