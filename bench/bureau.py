"""Bureau benchmark: 500 stations × 10 services, a year of intervals, in a PostgreSQL of its own.

Measures (1) the sustained ingest rate of station events into PostgreSQL through the
service's own write path (:func:`bureau.store.apply_events`, batches of 500 as the service
takes them; goal ≥ 2 000 events/s) and (2) a quarterly city-wide report over every
station (:func:`anbo.report.compute_bureau` on :class:`bureau.store.BureauReader`; goal
under 3 s). Run: ``.venv/bin/python bench/bureau.py [--per-day N] [--ingest N]``.

The year is loaded with COPY (what a year of replays would leave behind, without taking a
year); ``--per-day`` intervals per service and day (default 1: a busy city; most services
have far fewer). Starts its own cluster (initdb + pg_ctl) on a free port, never the
machine's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anbo.report import BureauStation, CountingRules, compute_bureau, quarter_bounds
from bureau.store import BureauReader, apply_events, migrate
from bureau.wire import parse_event
from tests.servers import Postgres

TZ = "Asia/Shanghai"
YEAR0, _ = quarter_bounds("2026Q1", TZ)
CLASSES = ["outage", "degraded", "wrong_programme", "unmonitored", "filler"]


def services(n: int) -> list[dict[str, object]]:
    return [
        {"target": f"fm-{i}", "service": f"Service {i}", "kind": "fm", "schedule": None} for i in range(n)
    ]


def load_year(url: str, stations: int, per_station: int, per_day: float, rng: random.Random) -> int:
    rows = 0
    with psycopg.connect(url) as conn:
        migrate(conn)
        with conn.cursor() as cur:
            for s in range(stations):
                cur.execute(
                    "INSERT INTO stations (name, station_class, county, services, described_seq) "
                    "VALUES (%s, %s, %s, %s, 1)",
                    (f"st{s:03d}", 1 + s % 3, f"county-{s % 12}", json.dumps(services(per_station))),
                )
                cur.execute(
                    "INSERT INTO heartbeats VALUES (%s, %s, 1, 0, %s, %s, true, %s)",
                    (f"st{s:03d}", YEAR0 + 366 * 86400, YEAR0 + 366 * 86400, YEAR0, YEAR0),
                )
            with cur.copy(
                'COPY intervals (event_id, revision, station, target, service, class, start, "end", '
                "causes, remarks, voided) FROM STDIN"
            ) as copy:
                n = int(stations * per_station * 365 * per_day)
                for _ in range(n):
                    s = rng.randrange(stations)
                    t = rng.randrange(per_station)
                    a = YEAR0 + rng.uniform(0, 365 * 86400)
                    copy.write_row(
                        (
                            str(uuid.uuid4()),
                            1,
                            f"st{s:03d}",
                            f"fm-{t}",
                            f"Service {t}",
                            rng.choice(CLASSES),
                            a,
                            a + rng.expovariate(1 / 120),
                            '["DeadAir"]',
                            "[]",
                            False,
                        )
                    )
                    rows += 1
        conn.commit()
        conn.execute("ANALYZE intervals")
    return rows


def events(n: int, stations: int, rng: random.Random) -> list[bytes]:
    """``n`` interval events (opened and closed revisions) as the stations publish them."""
    out = []
    seqs = dict.fromkeys(range(stations), 0)
    while len(out) < n:
        s = rng.randrange(stations)
        eid = str(uuid.uuid4())
        a = YEAR0 + rng.uniform(0, 90 * 86400)
        for rev, end in ((0, None), (1, a + 60.0)):
            seqs[s] += 1
            iv = {
                "id": eid, "revision": rev, "station": f"st{s:03d}", "target": "fm-1", "service": "S",
                "class": "outage", "start": a, "end": end, "causes": ["CarrierLoss"], "remarks": [],
                "source": "monitor", "author": "anbo", "reason": "", "recorded_at": a, "voided": False,
            }  # fmt: skip
            out.append(
                json.dumps(
                    {
                        "contract": 1,
                        "kind": "interval",
                        "station": f"st{s:03d}",
                        "seq": seqs[s],
                        "sent_at": a,
                        "id": eid,
                        "revision": rev,
                        "change": "x",
                        "created": a,
                        "interval": iv,
                    }
                ).encode()
            )
    return out[:n]


async def ingest(url: str, payloads: list[bytes], batch: int) -> float:
    parsed = [parse_event(f"anbo/{json.loads(p)['station']}/events/v1/interval", p) for p in payloads]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for i in range(0, len(parsed), batch):
            await apply_events(conn, parsed[i : i + batch], time.time())
        return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--per-day", type=float, default=1.0, help="intervals per service and day")
    p.add_argument("--ingest", type=int, default=20_000, help="events for the ingest rate")
    p.add_argument("--batch", type=int, default=500)
    args = p.parse_args()
    rng = random.Random(16)
    pg = Postgres()
    pg.start()
    try:
        t = time.perf_counter()
        rows = load_year(pg.url, args.stations, args.services, args.per_day, rng)
        print(f"loaded {rows} intervals ({args.stations} stations × {args.services} services, a year) "
              f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
        payloads = events(args.ingest, args.stations, rng)
        took = asyncio.run(ingest(pg.url, payloads, args.batch))
        print(f"ingest: {len(payloads)} events in {took:.2f} s = {len(payloads) / took:.0f} events/s "
              f"(batches of {args.batch}, one transaction each)")  # fmt: skip
        start, end = quarter_bounds("2026Q3", TZ)
        for attempt in range(3):
            t = time.perf_counter()
            with BureauReader(pg.url) as r:
                sources = r.sources(start, end)
                stations = [
                    BureauStation(
                        s.name, s.station_class, s.county, s.services, s.complete_until, sources[s.name]
                    )
                    for s in r.stations()
                ]
                report = compute_bureau(stations, start=start, end=end, rules=CountingRules(), tz=TZ, now=end)
            took = time.perf_counter() - t
            n = sum(len(sv["intervals"]) for st in report["stations"] for sv in st["services"])
            print(f"report 2026Q3 (run {attempt + 1}): {len(report['stations'])} stations, {n} intervals "
                  f"in {took:.2f} s")  # fmt: skip
    finally:
        pg.cleanup()


if __name__ == "__main__":
    main()
