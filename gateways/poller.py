"""Poll a transmitter controller at an interval and publish its readings per the contract.

One :class:`Poller` per source (an ``[[snmp]]`` or ``[[modbus]]`` section). Every
``interval`` it asks its :class:`Reader` for the map's points and publishes one JSON
reading (contract 2a) to ``<prefix>/<station>/<target>/status``: ``ts`` is the wall-clock
time the poll started, ``seq`` counts every message of the target from 0, without gaps.

* A point that cannot be read or converted (no such OID, illegal address, a raw value
  not in the enum, not finite...) is left out of that message, counted under its reason
  and logged once when it starts failing and once when it reads again; the other points
  are published.
* A device that does not answer (timeout, connection refused, wrong credentials, a
  broken answer) makes the message ``{"device_reachable": false}`` with
  ``info.device_error`` saying why; the daemon raises TransmitterUnreachable with that
  cause, and the powers and temperatures it no longer receives become unknown. The
  state change is logged once (``device unreachable`` / ``device reachable again`` with
  how long it was down). While it stays down, the gateway tries again with jittered
  exponential backoff (``interval`` up to ``backoff_max``) and repeats the unreachable
  reading every ``interval``, so the daemon knows the gateway itself is alive (its
  silence would be TelemetryLost).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateways.mapping import PointError
from monitor.ingest import backoff_delay
from monitor.publisher import MqttPublisher, Outgoing
from monitor.wire import encode_readings

__all__ = [
    "LATENCY_BUCKETS",
    "DeviceError",
    "GatewayCollector",
    "Poller",
    "ReadResult",
    "Reader",
    "SourceState",
]

log = structlog.get_logger(__name__)

#: Poll latency histogram buckets (seconds).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The contract's longest info string.
_INFO_MAX = 64


class DeviceError(Exception):
    """The device did not answer as a device should: nothing of this poll is usable.

    ``reason`` is a label value: ``timeout``, ``refused``, ``unreachable``, ``dns``,
    ``auth``, ``protocol``, ``device_busy``...; ``detail`` the short why (the
    ``device_error`` published, at most 64 characters)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class ReadResult:
    """What one poll got: values by reading name, and the points that failed."""

    values: dict[str, float | bool] = field(default_factory=dict)
    errors: dict[str, PointError] = field(default_factory=dict)


class Reader(Protocol):
    """A protocol client for one device (see :mod:`gateways.snmp`, :mod:`gateways.modbus`)."""

    protocol: str
    #: host:port, for logs
    address: str

    async def read(self) -> ReadResult:
        """Read every point once; raise :class:`DeviceError` when the device does not answer."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class SourceState:
    """What a poller knows, read by the collector at scrape time."""

    source: str
    protocol: str
    target: str
    up: bool = False
    #: None before the first poll; then whether the last poll reached the device
    reachable: bool | None = None
    last_success: float | None = None
    last_error: DeviceError | None = None
    down_since: float | None = None
    failures: int = 0
    polls_ok: int = 0
    polls_failed: int = 0
    messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    point_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    #: points failing now: reading → reason
    failing_points: dict[str, str] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    last_latency: float | None = None

    def observe(self, seconds: float) -> None:
        self.latency_count += 1
        self.latency_sum += seconds
        self.last_latency = seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1


class Poller:
    """The poll loop of one source."""

    def __init__(
        self,
        reader: Reader,
        publisher: MqttPublisher,
        *,
        source: str,
        target: str,
        topic: str,
        interval: float,
        timeout: float,
        backoff_max: float,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.publisher = publisher
        self.topic = topic
        self.interval = interval
        #: a guard around the whole read: the protocol's own timeouts come first
        self.timeout = timeout
        self.backoff_max = max(backoff_max, interval)
        self.wall = wall
        self.clock = clock
        self.state = SourceState(source=source, protocol=reader.protocol, target=target)
        self.seq = 0
        self._log = log.bind(source=source, protocol=reader.protocol, target=target, device=reader.address)

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            next_tick = self.clock()
            next_attempt = next_tick
            while True:
                delay = next_tick - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = self.clock()
                if now >= next_attempt - 1e-6:
                    await self.poll_once()
                    if self.state.reachable:
                        next_attempt = now
                    else:
                        next_attempt = now + backoff_delay(
                            self.state.failures - 1, self.interval, self.backoff_max
                        )
                else:
                    self._publish_down()  # the gateway is alive; the device still is not
                next_tick += self.interval
                if next_tick < self.clock():  # a slow poll: skip the ticks it took, no burst
                    next_tick = self.clock() + self.interval
        finally:
            with contextlib.suppress(Exception):
                await self.reader.close()

    async def poll_once(self) -> None:
        """One poll: read, publish, account."""
        ts = self.wall()
        t0 = self.clock()
        st = self.state
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    result = await self.reader.read()
            except TimeoutError:
                raise DeviceError("timeout", f"no answer within {self.timeout:g} s") from None
            except DeviceError:
                raise
            except OSError as exc:
                raise DeviceError("unreachable", _short(exc.strerror or str(exc))) from None
            except Exception as exc:  # a protocol library's surprise must not end the gateway
                if st.reachable is not False:
                    self._log.exception("unexpected error reading the device")
                raise DeviceError("protocol", _short(f"{type(exc).__name__}: {exc}")) from None
        except DeviceError as exc:
            self._failed(exc)
            self._publish_down(ts)
            return
        st.observe(self.clock() - t0)
        self._succeeded(ts, result)
        self._publish(ts, {**result.values, "device_reachable": True}, None)

    # -- state --------------------------------------------------------------------------
    def _failed(self, exc: DeviceError) -> None:
        st = self.state
        st.polls_failed += 1
        st.failures += 1
        st.errors[exc.reason] = st.errors.get(exc.reason, 0) + 1
        changed = st.reachable is not False or st.last_error is None or st.last_error.reason != exc.reason
        if st.reachable is not False:
            st.down_since = self.clock()
        st.reachable = False
        st.up = False
        st.last_error = exc
        if changed:
            self._log.warning(
                "device unreachable",
                # state changes are rare already: rate-limit per source, not across sources
                rate_key=f"{st.source}:{exc.reason}",
                reason=exc.reason,
                error=exc.detail,
                retry_backoff_max_s=self.backoff_max,
            )

    def _succeeded(self, ts: float, result: ReadResult) -> None:
        st = self.state
        if st.reachable is False:
            down = self.clock() - st.down_since if st.down_since is not None else None
            self._log.info(
                "device reachable again",
                down_s=round(down, 2) if down is not None else None,
                after_attempts=st.failures,
            )
        elif st.reachable is None:
            self._log.info("device reachable", points=len(result.values) + len(result.errors))
        st.reachable = True
        st.up = True
        st.failures = 0
        st.down_since = None
        st.last_error = None
        st.polls_ok += 1
        st.last_success = ts
        for reading, err in result.errors.items():
            key = (reading, err.reason)
            st.point_errors[key] = st.point_errors.get(key, 0) + 1
            if st.failing_points.get(reading) != err.reason:
                self._log.warning(
                    "point unreadable",
                    rate_key=f"{st.source}:{reading}",
                    reading=reading,
                    reason=err.reason,
                    error=err.detail,
                )
                st.failing_points[reading] = err.reason
        for reading in [r for r in st.failing_points if r in result.values]:
            del st.failing_points[reading]
            self._log.info("point readable again", reading=reading)

    # -- publishing -----------------------------------------------------------------------
    def _publish_down(self, ts: float | None = None) -> None:
        err = self.state.last_error
        detail = err.detail if err is not None else "not polled yet"
        self._publish(
            self.wall() if ts is None else ts, {"device_reachable": False}, {"device_error": detail}
        )

    def _publish(self, ts: float, values: Mapping[str, float | bool], info: Mapping[str, str] | None) -> None:
        clean = {k: v for k, v in values.items() if isinstance(v, bool) or math.isfinite(v)}
        payload = encode_readings(
            ts, self.seq, clean, info={k: _printable(v)[:_INFO_MAX] for k, v in (info or {}).items()} or None
        )
        self.seq += 1
        self.state.messages += 1
        self.publisher.offer(Outgoing(self.topic, payload, key=self.state.target))


def _short(text: str) -> str:
    return " ".join(text.split())[:_INFO_MAX]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text).strip() or "unknown"


class GatewayCollector(Collector):
    """``anbo_gateway_*`` per source, read at scrape time (the publisher's families:
    :class:`monitor.publisher.PublisherCollector`)."""

    def __init__(self, states: Callable[[], Iterable[SourceState]], *, station: Callable[[], str]) -> None:
        self._states = states
        self._station = station

    def collect(self) -> Iterable[Metric]:
        # {station, gateway, target} as on every anbo_gateway_* family; a poll also names
        # its source and protocol.
        labels = ["station", "gateway", "target", "source", "protocol"]
        station = self._station()
        up = GaugeMetricFamily("anbo_gateway_up", "1 while the last poll reached the device", labels=labels)
        last = GaugeMetricFamily(
            "anbo_gateway_last_success_timestamp_seconds",
            "Wall-clock time of the last poll that reached the device",
            labels=labels,
        )
        polls = CounterMetricFamily("anbo_gateway_polls", "Polls by result", labels=[*labels, "result"])
        errors = CounterMetricFamily(
            "anbo_gateway_errors",
            "Polls that did not reach the device, by reason",
            labels=[*labels, "reason"],
        )
        points = CounterMetricFamily(
            "anbo_gateway_point_errors",
            "Points left out of a message, by reading and reason",
            labels=[*labels, "reading", "reason"],
        )
        failing = GaugeMetricFamily(
            "anbo_gateway_points_failing", "Points that failed in the last poll", labels=labels
        )
        latency = HistogramMetricFamily(
            "anbo_gateway_poll_latency_seconds",
            "Time one poll that reached the device took (failed polls: anbo_gateway_errors_total)",
            labels=labels,
        )
        messages = CounterMetricFamily(
            "anbo_gateway_messages", "Messages handed to the publisher per source", labels=labels
        )
        for st in self._states():
            lv = [station, "poll", st.target, st.source, st.protocol]
            up.add_metric(lv, 1.0 if st.up else 0.0)
            if st.last_success is not None:
                last.add_metric(lv, st.last_success)
            polls.add_metric([*lv, "ok"], st.polls_ok)
            polls.add_metric([*lv, "error"], st.polls_failed)
            for reason, n in sorted(st.errors.items()):
                errors.add_metric([*lv, reason], n)
            for (reading, reason), n in sorted(st.point_errors.items()):
                points.add_metric([*lv, reading, reason], n)
            failing.add_metric(lv, len(st.failing_points))
            cumulative = [
                (str(b), float(c)) for b, c in zip(LATENCY_BUCKETS, st.latency_buckets, strict=True)
            ]
            latency.add_metric(lv, [*cumulative, ("+Inf", float(st.latency_count))], st.latency_sum)
            messages.add_metric(lv, st.messages)
        yield from (up, last, polls, errors, points, failing, latency, messages)
