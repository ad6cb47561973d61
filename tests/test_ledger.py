"""The outage ledger: merging, onsets, recovery after a crash, faults of its file, schedules."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor.ledger import (
    PRIORITY,
    IntervalClass,
    Ledger,
    LedgerService,
    LedgerStore,
    effective_segments,
)
from monitor.schedule import Schedule, ScheduleWindow
from rules import Alert, AlertState, OutageClass, Severity, Transition

T0 = 1_780_000_000.0
SERVICES = [LedgerService("fm-a", "News", "fm"), LedgerService("fm-b", "Music", "fm")]


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tr(
    alert: str,
    to: AlertState,
    cls: OutageClass = OutageClass.OUTAGE,
    *,
    target: str = "fm-a",
    onset: float | None = None,
    clear_onset: float | None = None,
    value: float | None = None,
    starts_at: float = T0,
) -> Transition:
    frm = AlertState.FIRING if to is AlertState.RESOLVED else AlertState.PENDING
    return Transition(
        alert,
        target,
        frm,
        to,
        {},
        {},
        None,
        Severity.CRITICAL,
        cls,
        starts_at,
        None,
        value,
        True,
        None,
        onset=onset,
        clear_onset=clear_onset,
    )


def no_active() -> list[Alert]:
    return []


def make(path: Path, clock: Clock, **kw: object) -> Ledger:
    ledger = Ledger(path, "qs", SERVICES, wall=clock, **kw)  # type: ignore[arg-type]
    ledger.start()
    return ledger


def test_dead_air_inside_carrier_loss_is_one_outage_from_onset_to_clear_onset(tmp_path: Path) -> None:
    clock = Clock()
    led = make(tmp_path / "l.db", clock)
    clock.t = T0 + 12
    led.update([tr("CarrierLoss", AlertState.FIRING, onset=T0 + 10)], no_active, clock.t)
    clock.t = T0 + 30
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0 + 15)], no_active, clock.t)
    clock.t = T0 + 45
    led.update([tr("DeadAir", AlertState.RESOLVED, clear_onset=T0 + 38)], no_active, clock.t)
    assert led.open_intervals == 1
    clock.t = T0 + 50
    led.update([tr("CarrierLoss", AlertState.RESOLVED, clear_onset=T0 + 40)], no_active, clock.t)
    assert led.open_intervals == 0
    rows = led.store.current(classes=[IntervalClass.OUTAGE])
    assert len(rows) == 1
    (row,) = rows
    assert (row.start, row.end) == (T0 + 10, T0 + 40)
    assert row.causes == ("CarrierLoss", "DeadAir")
    history = led.store.history(row.event_id)
    assert [h.revision for h in history] == [0, 1, 2]  # opened, cause added, closed: appended
    assert {h.event_id for h in history} == {row.event_id}


def test_a_fault_beginning_before_the_last_ended_reopens_the_same_interval(tmp_path: Path) -> None:
    clock = Clock()
    led = make(tmp_path / "l.db", clock)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0)], no_active, T0 + 5)
    led.update([tr("DeadAir", AlertState.RESOLVED, clear_onset=T0 + 20)], no_active, T0 + 25)
    led.update([tr("Hiss", AlertState.FIRING, onset=T0 + 18)], no_active, T0 + 30)
    led.update([tr("Hiss", AlertState.RESOLVED, clear_onset=T0 + 40)], no_active, T0 + 45)
    (row,) = led.store.current(classes=[IntervalClass.OUTAGE])
    assert (row.start, row.end, row.causes) == (T0, T0 + 40, ("DeadAir", "Hiss"))


def test_telemetry_lost_is_unmonitored_from_the_last_telemetry(tmp_path: Path) -> None:
    clock = Clock()
    led = make(tmp_path / "l.db", clock)
    lost = tr("TelemetryLost", AlertState.FIRING, OutageClass.NONE, starts_at=T0 + 30, value=30.0)
    led.update([lost], no_active, T0 + 30)
    led.update(
        [tr("TelemetryLost", AlertState.RESOLVED, OutageClass.NONE, clear_onset=T0 + 50)], no_active, T0 + 50
    )
    (row,) = led.store.current(classes=[IntervalClass.UNMONITORED])
    assert (row.start, row.end) == (T0, T0 + 50)


def test_outage_wins_over_degraded_and_maintenance_over_outage() -> None:
    intervals = [
        (0.0, 100.0, IntervalClass.DEGRADED),
        (20.0, 40.0, IntervalClass.OUTAGE),
        (30.0, 60.0, IntervalClass.MAINTENANCE),
    ]
    segs = list(effective_segments(intervals, [(0.0, 120.0)]))
    assert segs == [
        (0.0, 20.0, IntervalClass.DEGRADED),
        (20.0, 30.0, IntervalClass.OUTAGE),
        (30.0, 60.0, IntervalClass.MAINTENANCE),
        (60.0, 100.0, IntervalClass.DEGRADED),
        (100.0, 120.0, None),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1000),
            st.integers(0, 300),
            st.sampled_from(list(PRIORITY)),
        ),
        max_size=30,
    ),
    st.lists(st.tuples(st.integers(0, 1200), st.integers(1, 200)), min_size=1, max_size=6),
)
def test_every_scheduled_second_is_counted_exactly_once(
    raw: list[tuple[int, int, IntervalClass]], raw_spans: list[tuple[int, int]]
) -> None:
    from monitor.schedule import merge_spans

    spans = merge_spans([(float(a), float(a + n)) for a, n in raw_spans])
    intervals = [(float(a), float(a + n), c) for a, n, c in raw]
    segs = list(effective_segments(intervals, spans))
    scheduled = sum(b - a for a, b in spans)
    assert sum(b - a for a, b, _ in segs) == pytest.approx(scheduled)
    # pieces are disjoint, ordered, inside the spans, and each has the class a brute
    # force over unit seconds gives
    for (_, b0, _), (a1, _, _) in itertools.pairwise(segs):
        assert b0 <= a1
    for a, b, cls in segs:
        assert any(s <= a and b <= e for s, e in spans)
        mid = (a + b) / 2
        covering = [c for s, e, c in intervals if s <= mid < e]
        want = min(covering, key=PRIORITY.index) if covering else None
        assert cls is want


def test_crash_closes_at_the_last_heartbeat_and_records_the_gap_unmonitored(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    clock = Clock()
    led = make(path, clock, heartbeat=10.0)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0 + 2)], no_active, T0 + 5)
    for t in (T0 + 10, T0 + 15, T0 + 21, T0 + 25):
        clock.t = t
        led.update([], no_active, t)  # heartbeats at +10 (>=10 s after start) and +21
    led.store.close()  # kill -9: no stop(), nothing closed
    clock.t = T0 + 60
    again = make(path, clock)
    again.update([], no_active, T0 + 60)  # the first tick: no restored alert holds it open
    (outage,) = again.store.current(classes=[IntervalClass.OUTAGE])
    assert (outage.start, outage.end) == (T0 + 2, T0 + 21)
    assert outage.source == "recovery"
    gaps = again.store.current(classes=[IntervalClass.UNMONITORED])
    assert {(g.target, g.start, g.end) for g in gaps} == {
        ("fm-a", T0 + 21, T0 + 60),
        ("fm-b", T0 + 21, T0 + 60),
    }
    again.store.close()
    clock.t = T0 + 61
    third = make(path, clock)  # starting again adds only the new gap, nothing twice
    assert len(third.store.current(classes=[IntervalClass.OUTAGE])) == 1
    gaps = third.store.current(classes=[IntervalClass.UNMONITORED], targets=["fm-a"])
    assert [(g.start, g.end) for g in gaps] == [(T0 + 21, T0 + 60), (T0 + 60, T0 + 61)]


def restored(alert: str, onset: float, target: str = "fm-a") -> Callable[[], list[Alert]]:
    """The engine's active alerts after a restart: ``alert`` restored firing."""

    def active() -> list[Alert]:
        return [
            Alert(
                alertname=alert,
                target=target,
                state=AlertState.FIRING,
                labels={},
                annotations={},
                runbook_url=None,
                severity=Severity.CRITICAL,
                outage_class=OutageClass.OUTAGE,
                starts_at=onset + 5,
                ends_at=None,
                value=None,
                notify=True,
                reason=None,
                onset=onset,
            )
        ]

    return active


def test_a_restart_during_an_outage_keeps_the_same_interval_open(tmp_path: Path) -> None:
    """kill -9 and start again while DeadAir still fires (restored from the state file): the
    outage stays one interval, never closed and reopened; the gap is unmonitored beside it."""
    path = tmp_path / "l.db"
    clock = Clock()
    led = make(path, clock, heartbeat=10.0)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0 + 2)], no_active, T0 + 5)
    for t in (T0 + 10, T0 + 21):
        clock.t = t
        led.update([], no_active, t)
    led.store.close()  # kill -9
    clock.t = T0 + 60
    again = make(path, clock)
    again.update([], restored("DeadAir", T0 + 2), T0 + 60)
    [outage] = again.store.current(classes=[IntervalClass.OUTAGE])
    assert outage.open and outage.start == T0 + 2 and outage.revision == 0
    assert again.open_intervals == 1
    # it ends when the restored alert resolves, one interval from start to end
    clock.t = T0 + 80
    again.update([tr("DeadAir", AlertState.RESOLVED, clear_onset=T0 + 75)], no_active, T0 + 80)
    [outage] = again.store.current(classes=[IntervalClass.OUTAGE])
    assert (outage.start, outage.end, outage.revision) == (T0 + 2, T0 + 75, 1)
    gaps = again.store.current(classes=[IntervalClass.UNMONITORED], targets=["fm-a"])
    assert [(g.start, g.end, g.causes) for g in gaps] == [(T0 + 21, T0 + 60, ("DaemonDown",))]


def restarted_after_a_clean_stop(tmp_path: Path) -> Ledger:
    """DeadAir from T0, anbo stopped cleanly at +7 and started again at +30."""
    path = tmp_path / "l.db"
    clock = Clock()
    led = make(path, clock)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0)], no_active, T0 + 5)
    clock.t = T0 + 7
    led.stop()
    clock.t = T0 + 30
    return make(path, clock)


def test_a_clean_restart_during_an_outage_reopens_the_same_interval(tmp_path: Path) -> None:
    again = restarted_after_a_clean_stop(tmp_path)
    again.update([], restored("DeadAir", T0), T0 + 30)
    outages = again.store.current(classes=[IntervalClass.OUTAGE])
    assert len(outages) == 1 and outages[0].open and outages[0].start == T0
    assert outages[0].reason == "anbo restarted; still firing"


def test_clean_stop_closes_and_the_down_time_is_unmonitored(tmp_path: Path) -> None:
    again = restarted_after_a_clean_stop(tmp_path)
    (outage,) = again.store.current(classes=[IntervalClass.OUTAGE])
    assert outage.end == T0 + 7 and outage.reason == "anbo stopped"
    gaps = again.store.current(classes=[IntervalClass.UNMONITORED])
    assert {(g.start, g.end) for g in gaps} == {(T0 + 7, T0 + 30)}
    assert "not running" in gaps[0].reason


def test_a_corrupt_file_is_set_aside_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not a database" * 100)
    led = make(path, Clock())
    assert led.healthy
    aside = list(tmp_path.glob("l.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert led.store.set_aside == aside[0]
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0)], no_active, T0 + 1)
    assert len(led.store.current()) == 1


def test_unwritable_ledger_keeps_monitoring_counts_and_catches_up(tmp_path: Path) -> None:
    """The file cannot be written (simulated with a read-only connection swapped in, which
    is what SQLite answers on a read-only or full file system): rows wait in memory, the
    error is counted once per failed write, and everything is written when it can be."""
    path = tmp_path / "l.db"
    clock = Clock()
    led = make(path, clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(led)
    good = led.store.conn
    assert good is not None
    led.store.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    (tmp_path / "blocked").write_text("a file where the state directory should be")
    led.store.path = tmp_path / "blocked" / "l.db"  # and reopening fails too (ENOTDIR)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0)], no_active, T0 + 1)
    led.update([tr("DeadAir", AlertState.RESOLVED, clear_onset=T0 + 20)], no_active, T0 + 22)
    assert not led.healthy and led.pending == 2
    assert registry.get_sample_value("anbo_ledger_write_errors_total") == 2  # one per failed write
    assert registry.get_sample_value("anbo_ledger_up") == 0
    assert led.recent(5)[0].end == T0 + 20  # the console still sees it
    good.close()
    led.store.path = path
    led.update([], no_active, T0 + 40)  # the store reopens the file
    assert led.healthy and led.pending == 0
    (row,) = led.store.current()
    assert (row.start, row.end) == (T0, T0 + 20)
    assert registry.get_sample_value("anbo_ledger_up") == 1


def test_pending_rows_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    led = make(path, Clock(), pending_max=10)
    led.store.close()
    led.store.path = tmp_path / "missing-dir" / "sub" / "l.db"
    (tmp_path / "missing-dir").write_text("a file where a directory should be")
    for i in range(30):
        led.update([tr(f"A{i}", AlertState.FIRING, onset=T0 + i)], no_active, T0 + i)
    assert led.pending == 10 and led.dropped_rows > 0 and not led.healthy


def test_metrics_advance_with_the_effective_class(tmp_path: Path) -> None:
    clock = Clock()
    led = make(tmp_path / "l.db", clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(led)
    led.update([tr("Mer", AlertState.FIRING, OutageClass.DEGRADED, onset=T0)], no_active, T0)
    led.update([tr("DeadAir", AlertState.FIRING, onset=T0 + 10)], no_active, T0 + 10)
    led.update([], no_active, T0 + 20)
    labels = {"station": "qs", "target": "fm-a", "service": "News"}
    assert registry.get_sample_value("anbo_outage_seconds_total", {**labels, "class": "degraded"}) == 10
    assert registry.get_sample_value("anbo_outage_seconds_total", {**labels, "class": "outage"}) == 10
    assert registry.get_sample_value("anbo_monitored_seconds_total", labels) == 20
    assert registry.get_sample_value("anbo_ledger_open_intervals") == 2


def test_manual_add_annotate_void_are_new_rows(tmp_path: Path) -> None:
    led = make(tmp_path / "l.db", Clock())
    row = led.add_manual(
        "fm-a",
        IntervalClass.OUTAGE,
        T0,
        T0 + 60,
        author="wang",
        reason="listeners called",
        causes=["power cut"],
    )
    led.amend(row.event_id[:8], author="li", reason="cause found", remark="供电中断")
    led.amend(row.event_id, author="li", reason="duplicate", void=True)
    history = led.store.history(row.event_id)
    assert [(h.revision, h.author, h.voided) for h in history] == [
        (0, "wang", False),
        (1, "li", False),
        (2, "li", True),
    ]
    assert history[1].remarks == ("供电中断",)
    assert led.store.current() == []
    with pytest.raises(Exception, match="author"):
        led.add_manual("fm-a", IntervalClass.OUTAGE, T0, T0 + 1, author="", reason="x")


def test_a_store_opened_read_only_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no ledger"):
        LedgerStore(tmp_path / "none.db", readonly=True).open()


def test_schedule_06_to_24_across_a_quarter_boundary() -> None:
    sched = Schedule(tz="Asia/Shanghai", windows=[ScheduleWindow(start="06:00", end="24:00")])
    zone = ZoneInfo("Asia/Shanghai")
    a = datetime(2026, 9, 30, 0, 0, tzinfo=zone).timestamp()
    boundary = datetime(2026, 10, 1, 0, 0, tzinfo=zone).timestamp()
    b = datetime(2026, 10, 2, 0, 0, tzinfo=zone).timestamp()
    assert sum(e - s for s, e in sched.spans(a, boundary)) == 18 * 3600
    assert sum(e - s for s, e in sched.spans(boundary, b)) == 18 * 3600
    assert sum(e - s for s, e in sched.spans(a, b)) == 36 * 3600
    q3 = sched.spans(datetime(2026, 7, 1, tzinfo=zone).timestamp(), boundary)
    assert sum(e - s for s, e in q3) == 92 * 18 * 3600
    assert not sched.on_air(datetime(2026, 9, 30, 3, 0, tzinfo=zone).timestamp())
    off = sched.off_windows("fm-a")
    assert len(off) == 7 and all(w.start == "00:00" and w.end == "06:00" for w in off)
    assert any(w.active(datetime(2026, 9, 30, 3, 0, tzinfo=zone).timestamp()) for w in off)
    assert not any(w.active(datetime(2026, 9, 30, 7, 0, tzinfo=zone).timestamp()) for w in off)


def test_ledger_unavailable_alert_fires_and_resolves(tmp_path: Path) -> None:
    from monitor.evaluation import Evaluator
    from monitor.pipeline import Pipeline
    from monitor.stats import Stats
    from tests.simulator.helpers import station

    settings = station(tmp_path)
    clock = Clock()
    led = make(tmp_path / "l.db", clock)
    ev = Evaluator(settings, Pipeline(settings, Stats()), state_path=None, ledger=led)
    firing: list = []  # type: ignore[type-arg]
    resolved: list = []  # type: ignore[type-arg]
    ev._ledger_alert(firing, resolved, T0, "")
    assert firing == [] and resolved == []
    led.unavailable_since, led.last_error = T0 + 1, "database or disk is full"
    ev._ledger_alert(firing, resolved, T0 + 2, "")
    (alert,) = firing
    assert alert.labels["alertname"] == "LedgerUnavailable" and alert.starts_at == T0 + 1
    assert "disk is full" in alert.annotations["description"]
    led.unavailable_since = None
    firing.clear()
    ev._ledger_alert(firing, resolved, T0 + 9, "")
    (done,) = resolved
    assert firing == [] and done.ends_at == T0 + 9 and done.starts_at == T0 + 1
