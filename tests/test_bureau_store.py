"""The bureau's PostgreSQL (a cluster of the test's own, initdb + pg_ctl): the schema is
created and migrated by the command, writes are idempotent by event id and revision, and the
report read from it equals the station's own report (`anbo report --bureau` included)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from anbo.report import BureauStation, CountingRules, compute, compute_bureau
from bureau.store import SCHEMA_VERSION, BureauReader, apply_events, migrate
from bureau.wire import Event, parse_event
from monitor.events import EventPublisher
from monitor.ledger import IntervalClass, Ledger, ledger_services
from monitor.settings import load_settings
from tests.servers import Postgres

pytestmark = pytest.mark.integration

CONFIG = """
state_directory = "{state}"
[station]
name = "qingshan"
county = "Qingshan"
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
schedule = {{ tz = "Asia/Shanghai", windows = [{{ start = "06:00", end = "24:00" }}] }}
[[targets]]
name = "fm-101.8"
kind = "fm"
service = "Music"
frequency_mhz = 101.8
"""
DAY = 1_748_707_200.0  # 2025-06-01 00:00 +08:00


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def db(pg: Postgres) -> str:
    """A fresh database per test."""
    name = f"t{uuid.uuid4().hex}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url) as c:
        migrate(c)
    return url


def apply(url: str, events: list[Event]) -> Any:
    async def go() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await apply_events(conn, events, 0.0)

    return asyncio.run(go())


def station_events(tmp_path: Path) -> tuple[Any, Ledger, list[Event]]:
    """A station ledger with known intervals, and its outbox as the bureau would read it."""
    path = tmp_path / "anbo.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    loaded = load_settings(path)
    ledger = Ledger(
        loaded.ledger_path, "qingshan", ledger_services(loaded.settings), wall=lambda: DAY + 86400
    )
    ledger.start()
    # 05:50–06:10 dead air on a service on air from 06:00; an overlap of classes; a voided one
    ledger.add_manual(
        "fm-97.5", IntervalClass.OUTAGE, DAY + 5.83 * 3600, DAY + 6.17 * 3600, author="a", reason="r"
    )
    ledger.add_manual("fm-101.8", IntervalClass.DEGRADED, DAY + 3600, DAY + 7200, author="a", reason="r")
    ledger.add_manual("fm-101.8", IntervalClass.OUTAGE, DAY + 5400, DAY + 6000, author="a", reason="r")
    wrong = ledger.add_manual(
        "fm-101.8", IntervalClass.OUTAGE, DAY + 9000, DAY + 9600, author="a", reason="r"
    )
    ledger.amend(wrong.event_id, author="duty", reason="false alarm", void=True)
    pub = EventPublisher(loaded, ledger)
    events = []
    for e in pub.store.outbox_pending():
        b = pub.body(e)
        assert b is not None
        events.append(parse_event(f"anbo/qingshan/events/v1/{e.kind}", pub.envelope(e.kind, e.seq, b)))
    beat = pub.heartbeat_payload() | {"complete_until": DAY + 86400, "at": DAY + 86400}
    events.append(parse_event("anbo/qingshan/events/v1/heartbeat", pub.envelope("heartbeat", None, beat)))
    pub.close()
    return loaded, ledger, events


def test_schema_is_versioned_and_a_newer_one_refused(db: str) -> None:
    with psycopg.connect(db) as c:
        assert migrate(c) == SCHEMA_VERSION  # already there: nothing to do
        c.execute("UPDATE anbo_schema SET version = %s", (SCHEMA_VERSION + 1,))
        c.commit()
        with pytest.raises(RuntimeError, match="newer than this anbo"):
            migrate(c)


def test_replays_change_nothing_and_the_report_equals_the_station_s(db: str, tmp_path: Path) -> None:
    loaded, ledger, events = station_events(tmp_path)
    first = apply(db, events)
    assert first.new == len(events) - 1 and first.duplicate == 0  # the heartbeat is not counted
    assert sorted(first.acks["qingshan"]) == sorted(e.seq for e in events if e.seq is not None)
    again = apply(db, list(reversed(events)))  # a replay, out of order
    assert again.new == 0 and again.duplicate == len(events) - 1
    with BureauReader(db) as r:
        counts = r.counts()
        (st,) = r.stations()
        assert counts["intervals"] == 4 and counts["interval_revisions"] == 5
        rules = CountingRules()
        start, end = DAY, DAY + 86400
        mine = compute(ledger.store, ledger_services(loaded.settings), station="qingshan", station_class=3,
                       start=start, end=end, rules=rules, tz="Asia/Shanghai", now=end)  # fmt: skip
        theirs = compute_bureau(
            [
                BureauStation(
                    st.name, st.station_class, st.county, st.services, st.complete_until, r.spans_of(st.name)
                )
            ],
            start=start,
            end=end,
            rules=rules,
            tz="Asia/Shanghai",
            now=end,
        )
    (station,) = theirs["stations"]
    assert station["services"] == mine["services"] and station["completeness"] == 1.0
    assert station["county"] == "Qingshan"
    assert theirs["counties"][0]["totals"] == mine["totals"]
    news = mine["services"][0]
    assert news["outage_s"] == pytest.approx(0.17 * 3600, abs=0.01)  # only from 06:00


def test_an_older_revision_arriving_late_does_not_undo_a_newer_one(db: str, tmp_path: Path) -> None:
    _, _, events = station_events(tmp_path)
    voided = [e for e in events if e.kind == "interval" and e.body["interval"]["voided"]]
    (v,) = voided
    original = next(
        e for e in events if e.kind == "interval" and e.event_id == v.event_id and e.revision == 0
    )
    apply(db, [v])
    apply(db, [original])
    with BureauReader(db) as r:
        row = r.conn.execute(
            "SELECT revision, voided FROM intervals WHERE event_id = %s", (v.event_id,)
        ).fetchone()
    assert row == (1, True)


def test_completeness_of_a_station_cut_off_and_of_one_never_heard(db: str, tmp_path: Path) -> None:
    _, _, events = station_events(tmp_path)
    beat = events[-1]
    half = Event(
        beat.station, "heartbeat", None, beat.event_id, 0, beat.body | {"complete_until": DAY + 43200}
    )
    apply(db, [*events[:-1], half])
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            "INSERT INTO stations (name, county, station_class, expected) VALUES ('baiyun', 'B', 2, true)"
        )
    with BureauReader(db) as r:
        stations = [
            BureauStation(x.name, x.station_class, x.county, x.services, x.complete_until, r.spans_of(x.name))
            for x in r.stations()
        ]
        report = compute_bureau(stations, start=DAY, end=DAY + 86400, rules=CountingRules(), now=DAY + 86400)
    by = {s["station"]: s for s in report["stations"]}
    assert by["qingshan"]["completeness"] == 0.5
    # what the bureau does not have yet is unmonitored, never on air
    unmonitored = sum(s["unmonitored_s"] for s in by["qingshan"]["services"])
    assert unmonitored >= 43200
    assert by["baiyun"]["completeness"] == 0.0 and by["baiyun"]["services"] == []
    assert [c["completeness"] for c in report["classes"]] == [0.0, 0.5]


def test_anbo_report_bureau_command(db: str, tmp_path: Path) -> None:
    _, _, events = station_events(tmp_path)
    apply(db, events)
    cmd = [sys.executable, "-m", "anbo", "report", "--bureau", "--database", db, "--from", "2025-06-01",
           "--to", "2025-06-02", "--now", "2025-06-03", "--format"]  # fmt: skip
    out = subprocess.run([*cmd, "json"], capture_output=True, text=True, check=True, timeout=60)
    report = json.loads(out.stdout)
    assert [s["station"] for s in report["stations"]] == ["qingshan"]
    assert set(report) >= {"from", "to", "stations", "counties", "classes", "totals"}
    table = subprocess.run(
        [*cmd, "csv", "--lang", "zh"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "台站" in table.stdout and "qingshan" in table.stdout
    for fmt in ("table", "html", "xlsx"):
        subprocess.run(
            [*cmd, fmt, "-o", str(tmp_path / f"r.{fmt}")], check=True, timeout=60, capture_output=True
        )
        assert (tmp_path / f"r.{fmt}").stat().st_size > 100


def test_interval_json_is_what_the_bureau_stores(db: str, tmp_path: Path) -> None:
    _, _, events = station_events(tmp_path)
    apply(db, events)
    with BureauReader(db) as r:
        bodies = [b for (b,) in r.conn.execute("SELECT body FROM interval_revisions ORDER BY seq")]
    rows = [e.body["interval"] for e in events if e.kind == "interval"]
    assert bodies == rows
