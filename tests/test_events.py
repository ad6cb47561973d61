"""The station side of the bureau tier without a broker: the ledger's outbox and the event payloads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bureau.wire import parse_event
from monitor.events import EventPublisher, disable_outbox, interval_change, station_description
from monitor.ledger import IntervalClass, Ledger, LedgerService, LedgerStore, ledger_services
from monitor.settings import LoadedSettings, load_settings
from rules import AlertState, OutageClass, Severity, Transition
from tests.servers import find_binary

CONFIG = """
state_directory = "{state}"
[station]
name = "qingshan"
county = "Qingshan"
station_class = 2
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
schedule = {{ tz = "Asia/Shanghai", windows = [{{ start = "06:00", end = "24:00" }}] }}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedSettings:
    path = tmp_path / "anbo.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    return load_settings(path)


@pytest.fixture
def ledger(loaded: LoadedSettings) -> Ledger:
    clock = iter(range(1000, 100000))
    ledger = Ledger(
        loaded.ledger_path, "qingshan", ledger_services(loaded.settings), wall=lambda: float(next(clock))
    )
    ledger.start()
    return ledger


def transition(to: AlertState, frm: AlertState, at: float) -> Transition:
    return Transition(
        alertname="CarrierLoss",
        target="fm-97.5",
        from_state=frm,
        to_state=to,
        labels={"station": "qingshan"},
        annotations={"summary": "Carrier lost"},
        runbook_url=None,
        severity=Severity.CRITICAL,
        outage_class=OutageClass.OUTAGE,
        starts_at=at,
        ends_at=None if to is AlertState.FIRING else at + 10,
        value=3.0,
        notify=True,
        reason=None,
        onset=at - 5,
        clear_onset=None if to is AlertState.FIRING else at + 5,
    )


def test_every_interval_row_enters_the_outbox_in_its_transaction(ledger: Ledger) -> None:
    ledger.update([transition(AlertState.FIRING, AlertState.PENDING, 2000.0)], list, 2000.0)
    ledger.update([transition(AlertState.RESOLVED, AlertState.FIRING, 2030.0)], list, 2030.0)
    entries = ledger.store.outbox_pending()
    rows = [e.interval for e in entries if e.kind == "interval"]
    assert [(r.revision, r.end is None) for r in rows if r is not None] == [(0, True), (1, False)]
    assert [interval_change(r) for r in rows if r is not None] == ["opened", "closed"]
    # a correction by a person (`anbo ledger annotate`, on the file) is shipped too
    first = rows[0]
    assert first is not None
    ledger.amend(first.event_id, author="duty", reason="cause found", cause="feeder cable")
    last = ledger.store.outbox_pending()[-1]
    assert last.interval is not None and interval_change(last.interval) == "corrected"
    seqs = [e.seq for e in ledger.store.outbox_pending()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_acknowledged_events_are_forgotten_and_their_numbers_never_reused(ledger: Ledger) -> None:
    store = ledger.store
    a = store.outbox_add("alert", {"id": "x"}, 1.0)
    b = store.outbox_add("alert", {"id": "y"}, 2.0)
    assert store.outbox_ack([a, b, 999]) == 2
    c = store.outbox_add("alert", {"id": "z"}, 3.0)
    assert c > b
    count, oldest, last = store.outbox_state()
    assert last == c and oldest == 3.0 and count == len(store.outbox_pending())


def test_disabled_publishing_empties_the_outbox(ledger: Ledger) -> None:
    ledger.store.outbox_add("alert", {"id": "x"}, 1.0)
    disable_outbox(ledger.store)
    assert ledger.store.outbox_state()[0] == 0


def test_payloads_read_back_by_the_bureau(loaded: LoadedSettings, ledger: Ledger) -> None:
    ledger.update([transition(AlertState.FIRING, AlertState.PENDING, 2000.0)], list, 2000.0)
    pub = EventPublisher(loaded, ledger)
    pub.on_transitions([transition(AlertState.FIRING, AlertState.PENDING, 2000.0)])
    pub.on_transitions([transition(AlertState.PENDING, AlertState.INACTIVE, 2000.0)])  # not an event
    entries = pub.store.outbox_pending()
    kinds = sorted(e.kind for e in entries)
    assert kinds == ["alert", "interval", "station"]
    for e in entries:
        body = pub.body(e)
        assert body is not None
        event = parse_event(f"anbo/qingshan/events/v1/{e.kind}", pub.envelope(e.kind, e.seq, body))
        assert event.seq == e.seq and event.station == "qingshan"
        if e.kind == "interval":
            assert e.interval is not None
            assert (event.event_id, event.revision) == (e.interval.event_id, e.interval.revision)
            assert event.body["interval"] == e.interval.to_json()
        if e.kind == "station":
            assert event.body["info"] == json.loads(json.dumps(station_description(loaded.settings)))
    beat = parse_event(
        "anbo/qingshan/events/v1/heartbeat", pub.envelope("heartbeat", None, pub.heartbeat_payload())
    )
    assert beat.seq is None and beat.body["outbox"] == 3
    # complete_until: the oldest unacknowledged event's time
    assert beat.body["complete_until"] == min(e.created for e in entries)
    pub.close()


def test_acknowledgements_forget_and_bad_ones_are_counted(loaded: LoadedSettings, ledger: Ledger) -> None:
    pub = EventPublisher(loaded, ledger)
    (entry,) = pub.store.outbox_pending()
    for bad in (
        b"nope",
        b"[]",
        b'{"station": "other", "seqs": [1]}',
        b'{"station": "qingshan", "seqs": ["1"]}',
    ):
        assert pub.handle_ack(bad) == 0
    assert pub.bad_acks == 4
    assert pub.handle_ack(json.dumps({"station": "qingshan", "seqs": [entry.seq]}).encode()) == 1
    assert pub.store.outbox_pending() == []
    assert pub.complete_until(5e9) == 5e9  # nothing waiting: complete up to now
    pub.close()


def test_station_description_carries_the_schedule(loaded: LoadedSettings) -> None:
    d = station_description(loaded.settings)
    assert d["county"] == "Qingshan" and d["station_class"] == 2
    (svc,) = d["services"]  # type: ignore[misc]
    assert svc["schedule"]["windows"][0]["start"] == "06:00"


def test_ledger_store_reads_an_outbox_row_of_a_row_it_wrote(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite3")
    ledger = Ledger(tmp_path / "l.sqlite3", "s", [LedgerService("t", "T", "fm")], wall=lambda: 5.0)
    ledger.start()
    ledger.add_manual("t", IntervalClass.OUTAGE, 1.0, 2.0, author="a", reason="r")
    store.open()
    (entry,) = [e for e in store.outbox_pending() if e.interval is not None and e.interval.source == "manual"]
    assert entry.interval is not None and entry.interval.start == 1.0
    store.close()


def test_the_daemon_publishes_by_default_and_not_when_disabled(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from monitor.daemon import Daemon

    path = tmp_path / "anbo.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    on = Daemon(load_settings(path))
    assert on.events is not None and on.events.on_transitions in on.evaluator.listeners
    text = generate_latest(on.registry)
    assert b"anbo_bureau_outbox_events" in text
    check = subprocess.run(
        [find_binary("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    on.events.close()
    path.write_text(CONFIG.format(state=tmp_path / "state") + "[bureau]\nenabled = false\n")
    off = Daemon(load_settings(path))
    assert off.events is None
