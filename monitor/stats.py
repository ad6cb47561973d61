"""anbo's self-metrics as plain Python state, read by the collector at scrape time.

Counters on the hot path are dict increments, not prometheus_client objects: the
ingest path handles tens of thousands of messages a second and a lock per increment
would cost more than the decoding. Every label combination that can occur is created
up front (at zero) so that ``rate()`` works from the first scrape and a rogue publisher
cannot add label values: reasons are closed enums.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from monitor.wire import Reason


class Result(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DROPPED = "dropped"


class DropReason(StrEnum):
    """Why a well-formed message was not used (it is not the publisher's encoding fault)."""

    QUEUE_FULL = "queue_full"
    UNKNOWN_STATION = "unknown_station"
    UNKNOWN_TARGET = "unknown_target"
    UNKNOWN_STREAM = "unknown_stream"
    UNKNOWN_ENDPOINT = "unknown_endpoint"
    KEY_LIMIT = "key_limit"
    DUPLICATE = "duplicate"
    INTERNAL_ERROR = "internal_error"


#: Reason label for accepted messages.
OK = "ok"


class ConnectError(StrEnum):
    """Why a broker connection attempt failed."""

    REFUSED = "refused"
    DNS = "dns"  # the broker's host name does not resolve
    AUTH = "auth"
    TIMEOUT = "timeout"
    TLS = "tls"
    PROTOCOL = "protocol"
    LOST = "lost"


def _all_message_keys() -> Iterable[tuple[str, str]]:
    yield (Result.ACCEPTED.value, OK)
    for r in Reason:
        yield (Result.REJECTED.value, r.value)
    for d in DropReason:
        yield (Result.DROPPED.value, d.value)


#: Processing latency buckets (seconds): receive → measured, from 100 µs to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(slots=True)
class Histogram:
    """A fixed-bucket histogram that is cheap to observe (one bisect)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs including ``+Inf``, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(self.n)))
        return out


@dataclass(slots=True)
class Stats:
    """Process-wide counters. Per-target counters live on the target's stream state."""

    messages: dict[tuple[str, str], int] = field(
        default_factory=lambda: dict.fromkeys(_all_message_keys(), 0)
    )
    connect_errors: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in ConnectError})
    connects: int = 0
    reconnects: int = 0
    #: reconnects on which the broker had not kept anbo's persistent session
    sessions_lost: int = 0
    reloads_ok: int = 0
    reloads_failed: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def accepted(self) -> None:
        self.messages[(Result.ACCEPTED.value, OK)] += 1

    def rejected(self, reason: Reason) -> None:
        self.messages[(Result.REJECTED.value, reason.value)] += 1

    def dropped(self, reason: DropReason) -> None:
        self.messages[(Result.DROPPED.value, reason.value)] += 1

    def count(self, result: Result, reason: str) -> int:
        return self.messages.get((result.value, reason), 0)
