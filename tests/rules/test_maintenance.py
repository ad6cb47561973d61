"""Maintenance windows: explicit ranges and weekly schedules in a time zone."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from rules.maintenance import MaintenanceWindow


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def weekly(days: list[str], start: str, end: str, tz: str = "Asia/Shanghai") -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"days": days, "start": start, "end": end, "tz": tz})


def test_explicit_range_is_start_inclusive_end_exclusive() -> None:
    w = MaintenanceWindow.model_validate(
        {"start": "2024-05-14T01:00:00+08:00", "end": "2024-05-14T05:00:00+08:00", "targets": ["fm1"]}
    )
    assert not w.active(at("2024-05-14T00:59:59+08:00"))
    assert w.active(at("2024-05-14T01:00:00+08:00"))
    assert w.active(at("2024-05-13T20:00:00+00:00"))  # 04:00 +08:00
    assert not w.active(at("2024-05-14T05:00:00+08:00"))
    assert w.applies_to("fm1", {}) and not w.applies_to("fm2", {})


def test_explicit_range_without_offset_uses_tz() -> None:
    w = MaintenanceWindow.model_validate(
        {"start": "2024-05-14T01:00:00", "end": "2024-05-14T02:00:00", "tz": "Asia/Shanghai"}
    )
    assert w.active(at("2024-05-14T01:30:00+08:00"))
    assert not w.active(at("2024-05-14T01:30:00+00:00"))


def test_weekly_window() -> None:
    w = weekly(["tue"], "02:00", "04:00")
    assert not w.active(at("2024-05-14T01:59:00+08:00"))  # Tuesday
    assert w.active(at("2024-05-14T02:00:00+08:00"))
    assert w.active(at("2024-05-14T03:59:59+08:00"))
    assert not w.active(at("2024-05-14T04:00:00+08:00"))
    assert not w.active(at("2024-05-15T02:30:00+08:00"))  # Wednesday
    assert w.active(at("2024-05-21T02:30:00+08:00"))  # next Tuesday
    assert w.active(at("2024-05-13T18:30:00+00:00"))  # the same instant in UTC


def test_weekly_window_across_midnight_and_to_the_end_of_the_day() -> None:
    w = weekly(["sun"], "23:00", "01:00")
    assert w.active(at("2024-05-19T23:30:00+08:00"))  # Sunday
    assert w.active(at("2024-05-20T00:30:00+08:00"))  # Monday morning, still Sunday's occurrence
    assert not w.active(at("2024-05-20T23:30:00+08:00"))
    whole = weekly(["sat", "sun"], "00:00", "24:00")
    assert whole.active(at("2024-05-18T00:00:00+08:00")) and whole.active(at("2024-05-19T23:59:59+08:00"))
    assert not whole.active(at("2024-05-20T00:00:00+08:00"))


def test_weekly_window_follows_daylight_saving() -> None:
    # Europe/Berlin jumps from 02:00 to 03:00 on Sunday 2024-03-31: 01:00–04:00 lasts 2 h.
    w = weekly(["sun"], "01:00", "04:00", tz="Europe/Berlin")
    assert w.active(at("2024-03-31T00:00:00+00:00"))  # 01:00 CET
    assert w.active(at("2024-03-31T01:30:00+00:00"))  # 03:30 CEST
    assert not w.active(at("2024-03-31T02:00:00+00:00"))  # 04:00 CEST


def test_station_filter() -> None:
    w = weekly(["mon"], "00:00", "01:00").model_copy(update={"station": "s1"})
    assert w.applies_to("any", {"station": "s1"}) and not w.applies_to("any", {"station": "s2"})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"days": ["tue"], "start": "25:00", "end": "04:00"}, "HH:MM"),
        ({"days": ["tue"], "start": "24:30", "end": "04:00"}, "HH:MM"),
        ({"days": ["tuesday"], "start": "02:00", "end": "04:00"}, "days"),
        ({"days": [], "start": "02:00", "end": "04:00"}, "at least one day"),
        ({"days": ["tue"], "start": "02:00", "end": "04:00", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"start": "02:00", "end": "04:00"}, "ISO 8601"),
        (
            {"start": "2024-05-14T05:00:00+08:00", "end": "2024-05-14T01:00:00+08:00"},
            "end must be after start",
        ),
        ({"start": "2024-05-14T01:00:00+08:00"}, "end"),
        ({"start": "x", "end": "y", "colour": "red"}, "colour"),
    ],
)
def test_invalid_windows(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        MaintenanceWindow.model_validate(data)
