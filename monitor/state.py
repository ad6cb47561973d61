"""The stored state of the station: what anbo knows of each target and stream.

Written by the pipeline (monitor/pipeline.py: one message at a time), read at each tick
by the evaluation (monitor/evaluation.py), the migration monitor, the Prometheus
collector and the console. A reading goes stale on its own: :func:`fresh_values` and
:func:`fresh_info` return only what was received recently, so a value its publisher
stopped sending is unknown, never frozen at its last level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.settings import TargetSettings
from monitor.wire import SeqTracker
from rules.catalogue import CATALOGUE, Entry


@dataclass(slots=True)
class StreamState:
    """What anbo knows of one (target, stream)."""

    name: str
    seq: SeqTracker = field(default_factory=SeqTracker)
    #: Publisher time of the newest sample seen (end of a batch or block).
    last_ts: float | None = None
    #: Monotonic receive time of the last accepted message.
    last_rx: float | None = None
    values: dict[str, float] = field(default_factory=dict)
    #: Monotonic receive time of each value: a reading a publisher stopped sending
    #: (a receiver drops MER while unlocked) goes stale on its own (see fresh_values).
    value_rx: dict[str, float] = field(default_factory=dict)
    info_rx: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    accepted: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    late: int = 0
    resets: int = 0
    #: Format of the last sample block (rate, channels), for audio streams.
    block_format: tuple[int, int] | None = None
    #: Values and info entries dropped because their name is not in the catalogue
    #: (nor declared by the target): they create no state and no series.
    unknown_values: int = 0


@dataclass(frozen=True, slots=True)
class StreamVocabulary:
    """The reading names one (target, stream) keeps: exact names and ``*`` prefixes."""

    values: frozenset[str]
    value_prefixes: tuple[str, ...]
    info: frozenset[str]
    info_prefixes: tuple[str, ...]

    @classmethod
    def of(cls, kind: str, stream: str, extra: Sequence[str] = ()) -> StreamVocabulary:
        values, info = CATALOGUE.readings(kind, stream)

        def split(entries: Sequence[Entry]) -> tuple[frozenset[str], tuple[str, ...]]:
            exact = frozenset({e.name for e in entries if not e.is_prefix} | set(extra))
            return exact, tuple(e.name[:-1] for e in entries if e.is_prefix)

        v, vp = split(values)
        i, ip = split(info)
        return cls(v, vp, i, ip)

    def unknown(self, values: Mapping[str, object], info: Mapping[str, str]) -> list[str]:
        """Names of ``values`` and ``info`` not kept (none, on the fast path)."""
        out: list[str] = []
        if not values.keys() <= self.values:
            out += [k for k in values if k not in self.values and not k.startswith(self.value_prefixes)]
        if info and not info.keys() <= self.info:
            out += [k for k in info if k not in self.info and not k.startswith(self.info_prefixes)]
        return out


def fresh_values(stream: StreamState, now: float, max_age: float) -> dict[str, float]:
    """The stream's readings received within ``max_age`` seconds of ``now`` (monotonic):
    a value its publisher stopped sending is unknown, never frozen at its last level."""
    rx = stream.value_rx
    return {k: v for k, v in stream.values.items() if now - rx.get(k, -math.inf) <= max_age}


def fresh_info(stream: StreamState, now: float, max_age: float) -> dict[str, str]:
    """Like :func:`fresh_values`, for identities (RDS PI, service id...)."""
    rx = stream.info_rx
    return {k: v for k, v in stream.info.items() if now - rx.get(k, -math.inf) <= max_age}


@dataclass(slots=True)
class TargetState:
    settings: TargetSettings
    streams: dict[str, StreamState]
    #: Per stream, the reading names kept (the catalogue's and the target's extra_readings).
    vocabulary: dict[str, StreamVocabulary] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.settings
        self.vocabulary = {s: StreamVocabulary.of(t.kind.value, s, t.extra_readings) for s in self.streams}

    @classmethod
    def new(cls, settings: TargetSettings) -> TargetState:
        return cls(settings, {s: StreamState(s) for s in settings.accepted_streams})
