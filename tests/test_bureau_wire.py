"""The bureau's reader of station events: any topic and any bytes give an Event or an
EventError with a reason, never anything else (hypothesis), and the mistakes are named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bureau.wire import EventError, parse_event

INTERVAL = {
    "contract": 1,
    "kind": "interval",
    "station": "qingshan",
    "seq": 7,
    "sent_at": 10.0,
    "id": "e1",
    "revision": 1,
    "change": "closed",
    "created": 9.0,
    "interval": {
        "id": "e1",
        "revision": 1,
        "station": "qingshan",
        "target": "fm-97.5",
        "service": "News",
        "class": "outage",
        "start": 1.0,
        "end": 2.0,
        "causes": ["CarrierLoss"],
        "remarks": [],
        "source": "monitor",
        "author": "anbo",
        "reason": "",
        "recorded_at": 3.0,
        "voided": False,
    },
}
TOPIC = "anbo/qingshan/events/v1/interval"


def body(**changes: Any) -> bytes:
    data = json.loads(json.dumps(INTERVAL))
    for key, value in changes.items():
        if key.startswith("interval."):
            data["interval"][key.split(".", 1)[1]] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


def test_a_valid_interval() -> None:
    e = parse_event(TOPIC, body())
    assert (e.station, e.kind, e.seq, e.event_id, e.revision) == ("qingshan", "interval", 7, "e1", 1)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("anbo/qingshan/fm/rf", body(), "bad_topic"),
        ("anbo/qingshan/events/v2/interval", body(), "bad_topic"),
        ("anbo/qingshan/events/v1/gossip", body(), "unknown_kind"),
        (TOPIC, b"{", "bad_json"),
        (TOPIC, b"[1]", "bad_json"),
        (TOPIC, body(contract=2), "bad_contract"),
        ("anbo/baiyun/events/v1/interval", body(), "mismatch"),
        (TOPIC, body(seq=0), "bad_field"),
        (TOPIC, body(seq=True), "bad_field"),
        (TOPIC, body(**{"interval.class": "sunny"}), "bad_field"),
        (TOPIC, body(**{"interval.end": 0.5}), "bad_field"),
        (TOPIC, body(**{"interval.id": "other"}), "mismatch"),
        (TOPIC, body(**{"interval.revision": -1}), "bad_field"),
        (TOPIC, body(**{"interval.causes": "CarrierLoss"}), "bad_field"),
        (TOPIC, body(**{"interval.voided": 0}), "bad_field"),
        (TOPIC, body(**{"interval.start": float("inf")}), "bad_field"),
    ],
)
def test_mistakes_are_named(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(topic, payload)
    assert info.value.reason == reason


def outcome(topic: str, payload: bytes) -> str:
    """ "event" (a valid one: a positive seq, or a heartbeat), or the rejection's reason."""
    try:
        e = parse_event(topic, payload)
    except EventError as exc:
        return exc.reason
    return "event" if e.kind == "heartbeat" or (e.seq is not None and e.seq >= 1) else ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(
        [
            TOPIC,
            "anbo/qingshan/events/v1/alert",
            "anbo/qingshan/events/v1/station",
            "anbo/qingshan/events/v1/heartbeat",
        ]
    )
    | st.text(max_size=40),
    payload=st.binary(max_size=200),
)
def test_any_bytes_give_an_event_or_a_reason(topic: str, payload: bytes) -> None:
    assert outcome(topic, payload)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([*INTERVAL, *(f"interval.{k}" for k in INTERVAL["interval"])]), value=json_values)  # type: ignore[arg-type]
def test_any_field_changed_to_anything(key: str, value: object) -> None:
    assert outcome(TOPIC, body(**{key: value}))


HEARTBEAT = {"contract": 1, "kind": "heartbeat", "station": "qingshan", "seq": 3, "at": 5.0,
             "outbox": 0, "complete_until": 5.0, "started_at": 1.0, "ledger_up": True}  # fmt: skip
STATION = {"contract": 1, "kind": "station", "station": "qingshan", "seq": 1, "id": "s", "info": {
    "name": "qingshan", "station_class": 3, "county": "Q", "description": "",
    "services": [{"target": "fm", "service": "News", "kind": "fm",
                  "schedule": {"tz": "UTC", "windows": [{"start": "06:00", "end": "24:00"}]}}]}}  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(["heartbeat", "station"]),
    path=st.sampled_from(
        [
            "seq",
            "at",
            "outbox",
            "complete_until",
            "started_at",
            "ledger_up",
            "info",
            "info.station_class",
            "info.county",
            "info.services",
            "schedule",
        ]
    ),
    value=json_values,
)
def test_heartbeat_and_station_fields_changed_to_anything(which: str, path: str, value: object) -> None:
    data = json.loads(json.dumps(HEARTBEAT if which == "heartbeat" else STATION))
    if path == "schedule":
        data.get("info", {}).get("services", [{}])[0]["schedule"] = value
    elif path.startswith("info.") and "info" in data:
        data["info"][path[5:]] = value
    else:
        data[path] = value
    assert outcome(f"anbo/qingshan/events/v1/{which}", json.dumps(data).encode())


def test_the_example_bureau_config_loads() -> None:
    from pathlib import Path

    from bureau.settings import load_bureau_config

    example = Path(__file__).resolve().parent.parent / "config" / "bureau" / "bureau.example.toml"
    config, mqtt_pw, db_pw = load_bureau_config(example)
    assert [s.name for s in config.stations] == ["qingshan", "baiyun"]
    assert config.mqtt.url == ["mqtts://bureau-mq.example.gov.cn:8883"] and mqtt_pw is None and db_pw is None
