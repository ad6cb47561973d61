"""Planned maintenance windows: declared in advance, so alerts are recorded but not notified.

Two forms, both in *wall-clock* time (maintenance is planned by the calendar)::

    # an explicit range (ISO 8601; without an offset, the time is read in `tz`)
    - name: antenna work
      targets: [fm-news-97.5]
      start: "2024-05-14T01:00:00+08:00"
      end:   "2024-05-14T05:00:00+08:00"

    # a weekly schedule: every Tuesday 02:00–04:00 Beijing time, the whole station
    - name: weekly maintenance
      days: [tue]
      start: "02:00"
      end: "04:00"
      tz: Asia/Shanghai

``targets`` lists target names; empty means every target (the whole station, or only
targets whose ``station`` label equals ``station`` when that is given). A weekly window
whose ``end`` is not after its ``start`` runs past midnight into the next day;
``end: "24:00"`` is the end of the day. ``days`` name the day each occurrence *starts*.
Times follow the zone's daylight-saving rules (zoneinfo).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MaintenanceWindow", "Weekday"]

_HHMM = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAY_INDEX = {d: i for i, d in enumerate(Weekday)}


def _clock(text: str) -> tuple[int, int]:
    m = _HHMM.fullmatch(text.strip())
    if not m or (int(m.group(1)) == 24 and int(m.group(2)) != 0):
        raise ValueError(f"expected a time of day HH:MM (00:00–24:00), got {text!r}")
    return int(m.group(1)), int(m.group(2))


class MaintenanceWindow(BaseModel):
    """One maintenance window, explicit or weekly (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    targets: list[str] = Field(default_factory=list)
    station: str | None = None
    #: explicit: an ISO 8601 date-time; weekly: HH:MM
    start: str | datetime
    end: str | datetime
    #: present for a weekly schedule
    days: list[Weekday] | None = None
    tz: str = "UTC"

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
    def _shape(self) -> Self:
        if self.days is not None:
            if not self.days:
                raise ValueError("days: list at least one day (mon … sun)")
            for field in ("start", "end"):
                value = getattr(self, field)
                if not isinstance(value, str):
                    raise ValueError(f"{field}: a weekly window takes a time of day HH:MM")
                _clock(value)
        else:
            start, end = self.start_datetime(), self.end_datetime()
            if end <= start:
                raise ValueError("end must be after start")
        return self

    # -- explicit ranges

    def _instant(self, value: str | datetime, field: str) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(
                    f"{field}: expected an ISO 8601 date-time such as "
                    f"2024-05-14T01:00:00+08:00, got {value!r}"
                ) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(self.tz))
        return value

    def start_datetime(self) -> datetime:
        """Start of an explicit window (aware)."""
        return self._instant(self.start, "start")

    def end_datetime(self) -> datetime:
        """Planned end of an explicit window (aware)."""
        return self._instant(self.end, "end")

    # -- queries

    def applies_to(self, target: str, labels: Mapping[str, str]) -> bool:
        """Whether the window concerns this target."""
        if self.targets and target not in self.targets:
            return False
        return self.station is None or labels.get("station") == self.station

    def active(self, wall: float) -> bool:
        """Whether UNIX time ``wall`` is inside the window (start inclusive, end exclusive)."""
        if self.days is None:
            return self.start_datetime().timestamp() <= wall < self.end_datetime().timestamp()
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(wall, zone)
        for back in (0, 1):
            day = local.date() - timedelta(days=back)
            start, end = self._occurrence(day, zone)
            if start is not None and end is not None and start.timestamp() <= wall < end.timestamp():
                return True
        return False

    def _occurrence(self, day: date, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        assert self.days is not None and isinstance(self.start, str) and isinstance(self.end, str)
        if day.weekday() not in {_WEEKDAY_INDEX[d] for d in self.days}:
            return None, None
        sh, sm = _clock(self.start)
        eh, em = _clock(self.end)
        start = _at(day, sh, sm, zone)
        end = _at(day, eh, em, zone)
        if end <= start:
            end = _at(day + timedelta(days=1), eh, em, zone)
        return start, end


def _at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    if hour == 24:
        return datetime.combine(day + timedelta(days=1), time(0, minute), zone)
    return datetime.combine(day, time(hour, minute), zone)
