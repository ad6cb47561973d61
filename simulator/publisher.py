"""Publish the simulator's messages over MQTT, paced in real time (or ``speed`` times faster).

A thin layer over :class:`simulator.station.StationSimulator`: it sleeps until each
message is due, then offers it to anbo's shared publisher (:class:`monitor.publisher.MqttPublisher`,
the one the gateways use): one reused aiomqtt client that publishes with QoS 1 and
reconnects with jittered backoff. While the broker is away, messages wait in a bounded
buffer, as a gateway's would, and what was in flight unconfirmed when the connection
broke is sent again (QoS 1: anbo may see it twice, and drops the duplicate). What
overflows the buffer is counted (``dropped``) and logged, never silent.

MQTT v5 messages carry their content type and user properties; on MQTT 3.1.1 the
simulator has already framed blocks with the ``ANBO`` header. Timestamps are the
simulator's: ``start + t``. At ``speed`` > 1 they run ahead of the wall clock, which
anbo rejects beyond ``max_future_s`` (300 s by default): use speed for short runs or
for a daemon configured to accept it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from monitor.publisher import MqttPublisher, Outgoing
from simulator.scenario import Scenario
from simulator.station import Message, Protocol

__all__ = ["PublishStats", "Publisher"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class PublishStats:
    """What a :class:`Publisher` did."""

    generated: int = 0
    published: int = 0
    #: Dropped because the buffer was full while the broker was away.
    dropped: int = 0
    #: Sent again after a reconnect because the broker had not confirmed them (QoS 1:
    #: the broker may have them already; anbo drops such duplicates).
    resent: int = 0
    connects: int = 0
    #: Scenario time of the last message handed to the broker.
    last_t: float = 0.0


class Publisher:
    """Paces messages in real time and publishes them (QoS 1) over one reconnecting client."""

    def __init__(
        self,
        url: str,
        *,
        protocol: Protocol = "5",
        client_id: str = "anbo-simulator",
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        speed: float = 1.0,
        qos: int = 1,
        buffer: int = 100_000,
        max_inflight: int = 200,
        keepalive: int = 30,
        backoff: tuple[float, float] = (0.2, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.sender = MqttPublisher(
            [url],
            client_id=client_id,
            protocol=protocol,
            username=username,
            password=password,
            tls_context=tls_context,
            keepalive=keepalive,
            backoff=backoff,
            qos=qos,
            capacity=buffer,
            max_inflight=max_inflight,
            clock=clock,
        )
        self.broker = self.sender.brokers[0]
        self.protocol = protocol
        self.client_id = client_id
        self.speed = speed
        self.clock = clock
        self._stats = PublishStats()
        #: Set while connected to the broker.
        self.connected = self.sender.up

    @property
    def stats(self) -> PublishStats:
        s = self.sender.stats
        self._stats.dropped = sum(s.dropped.values())
        self._stats.published = s.published
        self._stats.resent = s.resent
        self._stats.connects = s.connects
        return self._stats

    # -- pacing ---------------------------------------------------------------------------
    async def run(
        self, messages: Iterable[Message], *, scenario: Scenario | None = None, drain_timeout: float = 10.0
    ) -> PublishStats:
        """Publish ``messages`` at their times; returns when all are out (or on cancel).

        With ``scenario``, fault starts and ends are logged as scenario time passes them.
        """
        sender = asyncio.create_task(self.sender.run(), name="simulator-mqtt")
        events = sorted(
            [
                (t, what, f)
                for f in (scenario.timeline if scenario else [])
                for t, what in ((f.at, "fault started"), (f.end, "fault ended"))
            ],
            key=lambda e: e[0],
        )
        stats = self._stats

        def confirmed(t: float) -> Callable[[Outgoing], None]:
            def done(_msg: Outgoing) -> None:
                if t > stats.last_t:
                    stats.last_t = t

            return done

        try:
            t0 = self.clock()
            for msg in messages:
                while events and events[0][0] <= msg.t:
                    at, what, f = events.pop(0)
                    where = getattr(f, "target", None) or getattr(f, "region", None)
                    log.info(what, fault=f.fault, target=where, at_s=round(at, 1), id=f.id)
                delay = t0 + msg.t / self.speed - self.clock()
                # Behind schedule (a slow machine, a high speed) still lets the sender run.
                await asyncio.sleep(max(delay, 0.0))
                stats.generated += 1
                self.sender.offer(
                    Outgoing(
                        msg.topic,
                        msg.payload,
                        msg.content_type if self.protocol == "5" else None,
                        msg.user_properties if self.protocol == "5" else None,
                        key="simulator",
                        on_done=confirmed(msg.t),
                    )
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.sender.wait_drained()
            left = self.sender.queued + self.sender.inflight
            if left:
                log.warning("messages left unsent at the end", count=left)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return self.stats
