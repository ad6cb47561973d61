"""Reading the stations' events (the wire contract's section 8, written by monitor/events.py).

Strict: every rejection says why (:class:`EventError`, its ``reason`` a metric label);
the service counts it, logs it and goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from monitor.events import BODY_KEY, CONTRACT_VERSION, KINDS
from monitor.ledger import IntervalClass
from monitor.schedule import Schedule

__all__ = ["Event", "EventError", "parse_event"]

_CLASSES = {c.value for c in IntervalClass}


class EventError(ValueError):
    """A message that is not a valid station event; ``reason`` is short (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    station: str
    kind: str
    #: the station's sequence number (None: heartbeats)
    seq: int | None
    #: the event id (interval: the ledger's event id; alert: the transition's id)
    event_id: str
    revision: int
    body: dict[str, Any]


def _num(d: dict[str, Any], key: str, *, optional: bool = False) -> float | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise EventError("bad_field", f"{key} must be a finite number, got {v!r}")
    return float(v)


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise EventError("bad_field", f"{key} must be a string, got {v!r}")
    return v


def _strings(d: dict[str, Any], key: str) -> list[str]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise EventError("bad_field", f"{key} must be a list of strings")
    return v


def parse_event(topic: str, payload: bytes, prefix: str = "anbo") -> Event:
    """``<prefix>/<station>/events/v1/<kind>`` and its JSON payload → :class:`Event`."""
    parts = topic.split("/")
    head = prefix.split("/")
    n = len(head)
    if (
        len(parts) != n + 4
        or parts[:n] != head
        or parts[n + 1] != "events"
        or parts[n + 2] != f"v{CONTRACT_VERSION}"
    ):
        raise EventError(
            "bad_topic", f"{topic!r} is not {prefix}/<station>/events/v{CONTRACT_VERSION}/<kind>"
        )
    station, kind = parts[n], parts[n + 3]
    if kind not in KINDS:
        raise EventError("unknown_kind", f"{topic!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError("bad_json", f"{topic!r}: {exc}") from None
    if not isinstance(data, dict):
        raise EventError("bad_json", f"{topic!r}: a JSON object expected")
    if data.get("contract") != CONTRACT_VERSION:
        raise EventError(
            "bad_contract", f"{topic!r}: contract {data.get('contract')!r} (this bureau reads 1)"
        )
    if data.get("station") != station or data.get("kind") != kind:
        raise EventError(
            "mismatch", f"{topic!r}: payload says station {data.get('station')!r}, kind {data.get('kind')!r}"
        )
    if kind == "heartbeat":
        for key in ("at", "complete_until"):
            _num(data, key)
        _num(data, "started_at", optional=True)
        for key in ("seq", "outbox"):
            v = data.get(key)
            if isinstance(v, bool) or not isinstance(v, int):
                raise EventError("bad_field", f"{key} must be an integer, got {v!r}")
        if not isinstance(data.get("ledger_up", True), bool):
            raise EventError("bad_field", "ledger_up must be true or false")
        return Event(station, kind, None, f"heartbeat:{station}", 0, data)
    seq = data.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise EventError("bad_field", f"seq must be a positive integer, got {seq!r}")
    event_id = _str(data, "id")
    if not event_id:
        raise EventError("bad_field", "id is empty")
    key = BODY_KEY[kind]
    body = data.get(key)
    if not isinstance(body, dict):
        raise EventError("bad_field", f"{key} must be an object")
    revision = 0
    if kind == "interval":
        revision_v = body.get("revision")
        if isinstance(revision_v, bool) or not isinstance(revision_v, int) or revision_v < 0:
            raise EventError("bad_field", f"interval.revision must be a whole number, got {revision_v!r}")
        revision = revision_v
        if body.get("id") != event_id or body.get("station") != station:
            raise EventError("mismatch", "interval.id/station differ from the envelope's")
        cls_v = body.get("class")
        if not isinstance(cls_v, str) or cls_v not in _CLASSES:
            raise EventError("bad_field", f"interval.class {body.get('class')!r} unknown")
        for key in ("target", "service", "source", "author", "reason"):
            _str(body, key)
        start = _num(body, "start")
        end = _num(body, "end", optional=True)
        _num(body, "recorded_at")
        if end is not None and start is not None and end < start:
            raise EventError("bad_field", "interval ends before it starts")
        _strings(body, "causes")
        _strings(body, "remarks")
        if not isinstance(body.get("voided"), bool):
            raise EventError("bad_field", "interval.voided must be true or false")
    elif kind == "alert":
        for key in ("alertname", "target", "from", "to", "severity"):
            _str(body, key)
        _num(body, "at")
    elif kind == "station":
        services = body.get("services")
        if not isinstance(services, list) or not all(
            isinstance(s, dict) and isinstance(s.get("target"), str) for s in services
        ):
            raise EventError("bad_field", "info.services must be a list of {target, service, kind, schedule}")
        cls = body.get("station_class")
        if isinstance(cls, bool) or cls not in (1, 2, 3):
            raise EventError("bad_field", f"info.station_class must be 1, 2 or 3, got {cls!r}")
        for key in ("county", "description"):
            if not isinstance(body.get(key, ""), str):
                raise EventError("bad_field", f"info.{key} must be a string")
        for svc in services:
            for key in ("service", "kind"):
                if not isinstance(svc.get(key, ""), str):
                    raise EventError("bad_field", f"info.services[].{key} must be a string")
            if svc.get("schedule") is not None:
                try:
                    Schedule.model_validate(svc["schedule"])
                except ValidationError as exc:
                    raise EventError("bad_field", f"info.services[{svc['target']}].schedule: {exc}") from None
    return Event(station, kind, seq, event_id, revision, data)
