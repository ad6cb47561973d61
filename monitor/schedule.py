"""Broadcast schedules: the weekly on-air windows of a service, in a time zone.

Only scheduled time counts in the outage ledger's denominator (停播率 is outage seconds
per hundred *scheduled* hours); time off the schedule is neither outage nor on air, and
the outage-class alerts of a service off its schedule do not page (a planned nightly
sign-off is not dead air).

A target without a schedule is on air 24/7. In the configuration::

    [[targets]]
    name = "fm-91.5"
    ...
    [targets.schedule]
    tz = "Asia/Shanghai"
    windows = [{days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "06:00", end = "24:00"}]

A window whose ``end`` is not after its ``start`` runs past midnight into the next
day; ``end = "24:00"`` is the end of the day; ``days`` name the day each window starts.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.maintenance import MaintenanceWindow, Weekday

__all__ = ["Schedule", "ScheduleWindow", "merge_spans"]

ALL_DAYS = list(Weekday)
_INDEX = {d: i for i, d in enumerate(Weekday)}
_WEEK = 7 * 1440


def _clock(text: str) -> int:
    """Minutes since midnight of ``HH:MM`` (00:00–24:00)."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected a time of day HH:MM (00:00–24:00), got {text!r}")
    h, m = int(parts[0]), int(parts[1])
    if h > 24 or m > 59 or (h == 24 and m != 0):
        raise ValueError(f"expected a time of day HH:MM (00:00–24:00), got {text!r}")
    return h * 60 + m


class ScheduleWindow(BaseModel):
    """One weekly on-air window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))
    start: str
    end: str

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if not self.days:
            raise ValueError("days: list at least one day (mon … sun)")
        _clock(self.start)
        _clock(self.end)
        return self

    @property
    def minutes(self) -> tuple[int, int]:
        """(start, end) minutes after the start of the day; end > start (may pass midnight)."""
        s, e = _clock(self.start), _clock(self.end)
        if e <= s:
            e += 1440
        return s, e


class Schedule(BaseModel):
    """A service's weekly on-air windows (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tz: str = "UTC"
    windows: list[ScheduleWindow] = Field(default_factory=list)

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value

    @model_validator(mode="after")
    def _some(self) -> Self:
        if not self.windows:
            raise ValueError("windows: list at least one on-air window (omit the schedule for 24/7)")
        return self

    def spans(self, start: float, end: float) -> list[tuple[float, float]]:
        """The scheduled parts of ``[start, end)`` (UNIX seconds), sorted and merged."""
        if end <= start:
            return []
        zone = ZoneInfo(self.tz)
        first = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, zone).date()
        out: list[tuple[float, float]] = []
        day = first
        while day <= last:
            wd = day.weekday()
            for w in self.windows:
                if wd not in {_INDEX[d] for d in w.days}:
                    continue
                s, e = w.minutes
                a = _at(day, s, zone)
                b = _at(day, e, zone)
                a, b = max(a, start), min(b, end)
                if b > a:
                    out.append((a, b))
            day += timedelta(days=1)
        return merge_spans(out)

    def on_air(self, wall: float) -> bool:
        """Whether UNIX time ``wall`` is scheduled."""
        return bool(self.spans(wall, wall + 1e-6))

    def off_windows(self, target: str) -> list[MaintenanceWindow]:
        """The complement of the schedule as weekly windows for the rule engine (no paging)."""
        on: list[tuple[int, int]] = []
        for w in self.windows:
            s, e = w.minutes
            for d in w.days:
                base = _INDEX[d] * 1440
                a, b = base + s, base + e
                if b > _WEEK:
                    on += [(a, _WEEK), (0, b - _WEEK)]
                else:
                    on.append((a, b))
        merged = merge_spans([(float(a), float(b)) for a, b in on])
        gaps: list[tuple[int, int]] = []
        cursor = 0
        for fa, fb in merged:
            if int(fa) > cursor:
                gaps.append((cursor, int(fa)))
            cursor = max(cursor, int(fb))
        if cursor < _WEEK:
            gaps.append((cursor, _WEEK))
        out: list[MaintenanceWindow] = []
        for a, b in gaps:
            while a < b:  # one window per day it starts on, at most 24 h each
                day_end = (a // 1440 + 1) * 1440
                piece_end = min(b, day_end)
                day = list(Weekday)[a // 1440]
                out.append(
                    MaintenanceWindow(
                        name=f"off schedule ({target})",
                        targets=[target],
                        days=[day],
                        start=_hhmm(a % 1440),
                        end=_hhmm(piece_end - (a // 1440) * 1440),
                        tz=self.tz,
                    )
                )
                a = piece_end
        return out


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _at(day: date, minutes: int, zone: ZoneInfo) -> float:
    extra, m = divmod(minutes, 1440)
    d = day + timedelta(days=extra)
    return datetime.combine(d, time(m // 60, m % 60), zone).timestamp()


def merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sort and merge overlapping or touching ``(start, end)`` spans."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
