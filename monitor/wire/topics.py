"""Topics: the one rule for a topic level (:func:`is_segment`) and the parser of
``<prefix>/<station>/<target>/<stream>`` and ``<prefix>/eb/<endpoint>/<stream>``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from monitor.wire.contract import (
    ENDPOINT_STATION,
    DecodeError,
    Reason,
    _q,
)

#: The one rule for a topic level anbo names (station, target, stream, endpoint id, prefix
#: level): 1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``; safe as an MQTT topic level
#: and as a Prometheus label value. Always matched whole (``is_segment``).
SEGMENT_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
SEGMENT_RE: Final = re.compile(SEGMENT_PATTERN, re.ASCII)


def is_segment(value: str) -> bool:
    """True when *value* is one valid topic level: the whole string, ASCII only, no newline."""
    return SEGMENT_RE.fullmatch(value) is not None


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class StationTopic:
    """``<prefix>/<station>/<target>/<stream>``."""

    station: str
    target: str
    stream: str


@dataclass(frozen=True, slots=True)
class EndpointTopic:
    """``<prefix>/eb/<endpoint>/<stream>``: an emergency-broadcast endpoint."""

    endpoint: str
    stream: str


class TopicParser:
    """Splits topics under one prefix. Build once; :meth:`parse` is on the hot path."""

    __slots__ = ("_cache", "_cache_size", "_prefix", "_re")

    def __init__(self, prefix: str = "anbo", *, cache_size: int = 4096) -> None:
        segments = prefix.split("/")
        for seg in segments:
            if SEGMENT_RE.fullmatch(seg) is None:
                raise ValueError(
                    f"topic prefix {prefix!r}: each '/'-separated segment must match "
                    f"{SEGMENT_PATTERN} (no wildcards, no empty segments)"
                )
        self._prefix = prefix
        seg = f"({SEGMENT_PATTERN})"
        self._re = re.compile(f"{re.escape(prefix)}/{seg}/{seg}/{seg}", re.ASCII)
        # Valid topics repeat all day: remember them. Bounded (cleared when full)
        # so that a publisher churning through topic names cannot grow it.
        self._cache: dict[str, StationTopic | EndpointTopic] = {}
        self._cache_size = cache_size

    @property
    def prefix(self) -> str:
        return self._prefix

    def parse(self, topic: str) -> StationTopic | EndpointTopic:
        """Parse a topic; raises ``DecodeError(topic_malformed)``."""
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        m = self._re.fullmatch(topic)
        if m is None:
            raise DecodeError(
                Reason.TOPIC_MALFORMED,
                f"topic {_q(topic, 120)}: expected {self._prefix}/<station>/<target>/<stream>"
                f" or {self._prefix}/{ENDPOINT_STATION}/<endpoint>/<stream>",
            )
        station, target, stream = m.groups()
        parsed = (
            EndpointTopic(target, stream)
            if station == ENDPOINT_STATION
            else StationTopic(station, target, stream)
        )
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = parsed
        return parsed

    def subscriptions(self) -> list[str]:
        """MQTT filters covering every topic :meth:`parse` can accept."""
        return [f"{self._prefix}/+/+/+"]
