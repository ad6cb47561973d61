"""Route, decode, sequence-check and store: what happens to one MQTT message.

The pipeline is synchronous and pure apart from the clocks it is given, so it is
tested without a broker. Order of work for one message, cheapest first, so that junk
costs as little as possible:

1. parse the topic (malformed → rejected ``topic_malformed``);
2. route it to a configured target and stream (otherwise dropped, by reason: a
   publisher spraying random topics creates no state and no series);
3. decode the payload strictly (each failure a distinct rejection reason);
4. check the sequence number per (target, stream): duplicates (QoS 1 redelivery)
   are dropped, gaps and late arrivals are counted;
5. update the stream's latest state and hand the payload to the consumers (the
   probes) through one interface, :data:`Consumer`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from monitor.settings import Settings
from monitor.state import StreamState, TargetState
from monitor.stats import DropReason, Stats
from monitor.wire import (
    Batch,
    DecodeError,
    EndpointTopic,
    Limits,
    Payload,
    Readings,
    SampleBlock,
    SeqEvent,
    TopicParser,
    decode,
)

log = structlog.get_logger(__name__)

#: Most distinct reading names one stream may expose; more are dropped (``key_limit``)
#: so that a configured but misbehaving publisher cannot explode cardinality either.
MAX_KEYS_PER_STREAM = 128


#: A consumer sees every accepted (non-duplicate) payload: target, stream, payload,
#: receive time (monotonic). The probes attach here.
Consumer = Callable[[TargetState, StreamState, Payload, float], None]


class EndpointSink(Protocol):
    """Where emergency-broadcast endpoint messages go (the EB fleet monitor)."""

    def check(self, endpoint: str, stream: str) -> DropReason | None: ...

    def handle(self, endpoint: str, stream: str, payload: Payload) -> None: ...


class Pipeline:
    """Everything after the queue, for one station's configuration."""

    def __init__(
        self,
        settings: Settings,
        stats: Stats,
        *,
        limits: Limits | None = None,
        consumers: Sequence[Consumer] = (),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.stats = stats
        self.consumers = list(consumers)
        #: Emergency-broadcast endpoints; None: every endpoint is unknown.
        self.endpoints: EndpointSink | None = None
        self._wall = wall
        self._limits = limits or Limits(max_payload_bytes=settings.mqtt.max_payload_bytes)
        self.settings = settings
        self.targets: dict[str, TargetState] = {}
        self._prefix = settings.mqtt.topic_prefix
        self._parser = TopicParser(self._prefix)
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """Apply new settings (SIGHUP) keeping the state of targets and streams that stay."""
        old = self.targets
        targets: dict[str, TargetState] = {}
        for t in settings.targets:
            prev = old.get(t.name)
            if prev is None:
                targets[t.name] = TargetState.new(t)
            else:
                streams = {s: prev.streams.get(s) or StreamState(s) for s in t.accepted_streams}
                targets[t.name] = TargetState(t, streams)
        self.settings = settings
        self.targets = targets
        self._station = settings.station.name
        if settings.mqtt.topic_prefix != self._prefix:
            self._prefix = settings.mqtt.topic_prefix
            self._parser = TopicParser(self._prefix)
        self._limits = Limits(
            max_payload_bytes=settings.mqtt.max_payload_bytes,
            max_future_s=self._limits.max_future_s,
            max_past_s=self._limits.max_past_s,
            max_batch_len=self._limits.max_batch_len,
        )

    @property
    def subscriptions(self) -> list[str]:
        return self._parser.subscriptions()

    def handle(
        self,
        topic: str,
        payload: bytes,
        content_type: str | None,
        user_properties: Sequence[tuple[str, str]] | None,
        rx: float,
    ) -> None:
        """Process one message; never raises for anything the publisher sent."""
        stats = self.stats
        try:
            where = self._parser.parse(topic)
        except DecodeError as exc:
            stats.rejected(exc.reason)
            log.warning(
                "message rejected",
                topic=topic[:200],
                reason=exc.reason.value,
                detail=exc.detail,
                rate_key=exc.reason.value,
            )
            return
        if isinstance(where, EndpointTopic):
            self._endpoint(where, topic, payload, content_type, user_properties)
            return
        if where.station != self._station:
            stats.dropped(DropReason.UNKNOWN_STATION)
            return
        target = self.targets.get(where.target)
        if target is None:
            stats.dropped(DropReason.UNKNOWN_TARGET)
            return
        stream = target.streams.get(where.stream)
        if stream is None:
            stats.dropped(DropReason.UNKNOWN_STREAM)
            return
        decoded = self._decode(topic, payload, content_type, user_properties, rate_key=topic)
        if decoded is None:
            return
        previous = stream.seq.highest
        seq = stream.seq.observe(decoded.seq, decoded.ts, rx)
        event = seq.event
        if event is SeqEvent.DUPLICATE:
            stream.duplicates += 1
            stats.dropped(DropReason.DUPLICATE)
            return
        if event is SeqEvent.GAP:
            stream.gaps += 1
            stream.missing += seq.missing
            log.warning(
                "sequence gap",
                target=target.settings.name,
                stream=stream.name,
                missing=seq.missing,
                seq=decoded.seq,
                rate_key=topic,
            )
        elif event is SeqEvent.LATE:
            stream.late += 1
        elif event is SeqEvent.RESET:
            stream.resets += 1
            log.info(
                "sequence reset (publisher restarted, or a jump too far to be lost messages)",
                target=target.settings.name,
                stream=stream.name,
                seq=decoded.seq,
                previous=previous,
                rate_key=topic,
            )
        if not isinstance(decoded, SampleBlock):
            vocab = target.vocabulary[stream.name]
            if not (decoded.values.keys() <= vocab.values and decoded.info.keys() <= vocab.info):
                decoded = self._known_names(target, stream, decoded, topic)
        if not self._store(stream, decoded, topic, rx):
            return
        stream.accepted += 1
        stream.last_rx = rx
        stats.accepted()
        for consumer in self.consumers:
            consumer(target, stream, decoded, rx)

    def _decode(
        self,
        topic: str,
        payload: bytes,
        content_type: str | None,
        user_properties: Sequence[tuple[str, str]] | None,
        *,
        rate_key: str,
    ) -> Payload | None:
        """Decode strictly; a rejection is counted and logged (rate limited per key and reason)."""
        try:
            return decode(
                payload,
                content_type=content_type,
                user_properties=user_properties,
                now=self._wall(),
                limits=self._limits,
            )
        except DecodeError as exc:
            self.stats.rejected(exc.reason)
            log.warning(
                "message rejected",
                topic=topic,
                reason=exc.reason.value,
                detail=exc.detail,
                rate_key=f"{rate_key}:{exc.reason.value}",
            )
            return None

    def _endpoint(
        self,
        where: EndpointTopic,
        topic: str,
        payload: bytes,
        content_type: str | None,
        user_properties: Sequence[tuple[str, str]] | None,
    ) -> None:
        sink = self.endpoints
        reason = DropReason.UNKNOWN_ENDPOINT if sink is None else sink.check(where.endpoint, where.stream)
        if reason is not None:
            self.stats.dropped(reason)
            return
        assert sink is not None
        # One rate-limit key for all endpoints: a hundred thousand topics would churn the limiter.
        decoded = self._decode(topic, payload, content_type, user_properties, rate_key="eb")
        if decoded is None:
            return
        sink.handle(where.endpoint, where.stream, decoded)
        self.stats.accepted()

    def _known_names(
        self, target: TargetState, stream: StreamState, decoded: Readings | Batch, topic: str
    ) -> Readings | Batch:
        """``decoded`` without the value and info names the catalogue does not know for this
        target and stream (counted per stream, logged; the rest of the message is used)."""
        unknown = target.vocabulary[stream.name].unknown(decoded.values, decoded.info)
        if not unknown:
            return decoded
        stream.unknown_values += len(unknown)
        log.warning(
            "reading names not in the catalogue dropped (declare them in the target's extra_readings)",
            topic=topic,
            names=sorted(unknown)[:10],
            rate_key=f"{topic}:unknown_value",
        )
        drop = set(unknown)
        info = {k: v for k, v in decoded.info.items() if k not in drop}
        if isinstance(decoded, Readings):
            values = {k: v for k, v in decoded.values.items() if k not in drop}
            return dataclasses.replace(decoded, values=values, info=info)
        series = {k: v for k, v in decoded.values.items() if k not in drop}
        if not series:
            # A batch without series is not a batch: keep its sequence and time as readings.
            return Readings(decoded.ts, decoded.seq, {}, info)
        return dataclasses.replace(decoded, values=series, info=info)

    def _store(self, stream: StreamState, decoded: Payload, topic: str, rx: float) -> bool:
        if isinstance(decoded, SampleBlock):
            frames, channels = decoded.samples.shape
            end = decoded.ts + frames / decoded.rate
            stream.block_format = (decoded.rate, channels)
            if stream.last_ts is None or end >= stream.last_ts:
                stream.last_ts = end
            return True
        values = stream.values
        new_keys = decoded.values.keys() - values.keys()
        new_info = decoded.info.keys() - stream.info.keys()
        if len(values) + len(new_keys) > MAX_KEYS_PER_STREAM or (
            len(stream.info) + len(new_info) > MAX_KEYS_PER_STREAM
        ):
            self.stats.dropped(DropReason.KEY_LIMIT)
            log.warning(
                "too many distinct reading names on one stream; message dropped",
                topic=topic,
                limit=MAX_KEYS_PER_STREAM,
                rate_key=topic,
            )
            return False
        if isinstance(decoded, Readings):
            end = decoded.ts
            if stream.last_ts is None or end >= stream.last_ts:
                values.update(decoded.values)
                stream.value_rx.update(dict.fromkeys(decoded.values, rx))
                stream.info.update(decoded.info)
                stream.info_rx.update(dict.fromkeys(decoded.info, rx))
                stream.last_ts = end
            return True
        assert isinstance(decoded, Batch)
        n = next(iter(decoded.values.values())).shape[0] if decoded.values else 1
        end = decoded.ts + (n - 1) * decoded.period
        if stream.last_ts is None or end >= stream.last_ts:
            for key, arr in decoded.values.items():
                values[key] = float(arr[-1])
                stream.value_rx[key] = rx
            stream.info.update(decoded.info)
            stream.info_rx.update(dict.fromkeys(decoded.info, rx))
            stream.last_ts = end
        return True
