"""Outage-ledger benchmark: a year of ledger for 50 services (200 000 intervals).

Measures (1) a quarterly report over the whole station (goal: under 1 s) and (2) the
daemon's cost per transition (one fault opening and closing: two committed SQLite
transactions, synchronous=FULL). Run: ``.venv/bin/python bench/ledger.py``.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from anbo.report import CountingRules, compute, quarter_bounds
from monitor.ledger import IntervalClass, Ledger, LedgerService, LedgerStore
from rules import AlertState, OutageClass, Severity, Transition

SERVICES = 50
INTERVALS = 200_000
YEAR0, _ = quarter_bounds("2026Q1", "Asia/Shanghai")


def build(path: Path) -> list[LedgerService]:
    services = [LedgerService(f"fm-{i}", f"Service {i}", "fm") for i in range(SERVICES)]
    led = Ledger(path, "bench", services)
    led.store.open()
    rng = random.Random(13)
    classes = [
        IntervalClass.OUTAGE,
        IntervalClass.DEGRADED,
        IntervalClass.WRONG_PROGRAMME,
        IntervalClass.UNMONITORED,
    ]
    rows = []
    for _ in range(INTERVALS):
        svc = services[rng.randrange(SERVICES)]
        start = YEAR0 + rng.uniform(0, 365 * 86400)
        rows.append(
            led._new(
                svc.target,
                rng.choice(classes),
                start,
                start + rng.expovariate(1 / 60),
                ("DeadAir",),
                "monitor",
                "",
            )
        )
    for i in range(0, len(rows), 10_000):
        led.store.append(rows[i : i + 10_000])
    led.store.close()
    return services


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        t = time.perf_counter()
        services = build(path)
        print(f"built {INTERVALS} intervals for {SERVICES} services in {time.perf_counter() - t:.1f} s")
        store = LedgerStore(path, readonly=True)
        store.open()
        start, end = quarter_bounds("2026Q3", "Asia/Shanghai")
        times = []
        for _ in range(3):
            t = time.perf_counter()
            report = compute(
                store,
                services,
                station="bench",
                station_class=3,
                start=start,
                end=end,
                rules=CountingRules(),
                tz="Asia/Shanghai",
                now=end,
            )
            times.append(time.perf_counter() - t)
        n = sum(len(s["intervals"]) for s in report["services"])
        print(f"quarterly report ({n} intervals): best {min(times) * 1000:.0f} ms of 3")
        store.close()
        led = Ledger(path, "bench", services)
        led.start()
        k = 200
        t = time.perf_counter()
        for i in range(k):
            wall = end + i * 2.0
            for to in (AlertState.FIRING, AlertState.RESOLVED):
                tr = Transition(
                    "DeadAir",
                    "fm-1",
                    AlertState.PENDING if to is AlertState.FIRING else AlertState.FIRING,
                    to,
                    {},
                    {},
                    None,
                    Severity.CRITICAL,
                    OutageClass.OUTAGE,
                    wall,
                    None,
                    None,
                    True,
                    None,
                    onset=wall,
                    clear_onset=wall + 1,
                )
                led.update([tr], list, wall + (1.5 if to is AlertState.RESOLVED else 0))
        per = (time.perf_counter() - t) / (2 * k)
        print(f"daemon cost per transition (committed): {per * 1e3:.2f} ms")
        t = time.perf_counter()
        for i in range(2000):
            led.update([], list, end + 1000 + i * 0.5)
        print(f"daemon cost per quiet tick: {(time.perf_counter() - t) / 2000 * 1e6:.0f} µs")
        led.stop()


if __name__ == "__main__":
    main()
