"""``anbo poll``: the transmitter gateway process (SNMP and Modbus TCP pollers → MQTT).

One :class:`Gateway` per station: the shared :class:`monitor.publisher.MqttPublisher`
(one bounded, reconnecting MQTT client, as ``anbo capture`` uses), one poller per
configured source, and an HTTP endpoint with ``/metrics`` (``anbo_gateway_*``),
``/-/healthy`` and ``/-/ready`` (200 once connected to the broker). Under systemd
(``Type=notify``) it sends ``READY=1`` once connected and serving, ``WATCHDOG=1`` from
its event loop, ``STATUS=`` with how many devices answer, and ``STOPPING=1`` on SIGTERM,
then flushes what is queued for at most a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import structlog
from prometheus_client import CollectorRegistry

from gateways.config import LoadedGateway, ModbusSource, SnmpSource
from gateways.modbus import ModbusReader
from gateways.poller import GatewayCollector, Poller, Reader
from gateways.snmp import MAX_VARBINDS, SnmpReader
from monitor.http import MetricsServer
from monitor.publisher import MqttPublisher, PublisherCollector
from monitor.sdnotify import Notifier

__all__ = ["Gateway"]

log = structlog.get_logger(__name__)

#: How long queued messages may take to leave at shutdown.
FLUSH_TIMEOUT = 5.0
#: Messages held while the broker is away (the oldest go first, counted).
QUEUE_CAPACITY = 10_000


class Gateway:
    """The pollers of one gateway config, their publisher and their HTTP endpoint."""

    def __init__(
        self,
        loaded: LoadedGateway,
        *,
        systemd: Notifier | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.loaded = loaded
        cfg = loaded.config
        self.systemd = systemd or Notifier(None)
        self.publisher = MqttPublisher.from_settings(
            cfg.mqtt, client_id=cfg.client_id, password=loaded.mqtt_password, capacity=QUEUE_CAPACITY
        )
        self.pollers: list[Poller] = []
        prefix = cfg.mqtt.topic_prefix
        sources: list[SnmpSource | ModbusSource] = [*cfg.snmp, *cfg.modbus]
        for src in sources:
            dmap = loaded.maps[src.source]
            reader: Reader
            if isinstance(src, SnmpSource):
                reader = SnmpReader(src, dmap, loaded.secrets[src.source])
                guard = src.timeout * (src.retries + 1) * (len(dmap.points) // MAX_VARBINDS + 1) + 1.0
            else:
                reader = ModbusReader(src, dmap)
                guard = src.timeout * (len(dmap.points) + 1) + 1.0
            self.pollers.append(
                Poller(
                    reader,
                    self.publisher,
                    source=src.source,
                    target=src.target,
                    topic=f"{prefix}/{cfg.station.name}/{src.target}/status",
                    interval=src.interval,
                    timeout=guard,
                    backoff_max=src.backoff_max,
                )
            )
        self.registry = registry or CollectorRegistry()
        self.registry.register(
            GatewayCollector(lambda: [p.state for p in self.pollers], station=lambda: cfg.station.name)
        )
        self.registry.register(
            PublisherCollector(
                self.publisher,
                station=lambda: cfg.station.name,
                gateway="poll",
                targets=lambda: [p.state.target for p in self.pollers],
            )
        )
        self.http = MetricsServer(
            self.registry,
            station=lambda: cfg.station.name,
            ready=self.publisher.up.is_set,
            index=False,
        )
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        # pymodbus logs every failed request with a dump of its transaction history; the
        # pollers log each state change once, with the reason, instead.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
        host, port = self.loaded.config.metrics.address
        await self.http.start(host, port)
        tasks = [asyncio.create_task(self.publisher.run(), name="gateway-mqtt")]
        tasks += [asyncio.create_task(p.run(), name=f"poll-{p.state.source}") for p in self.pollers]
        tasks.append(asyncio.create_task(self._supervise(), name="gateway-systemd"))
        log.info(
            "gateway started",
            station=self.loaded.config.station.name,
            sources=[p.state.source for p in self.pollers],
            metrics=f"{host}:{self.http.port}",
        )
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.systemd.stopping()
            for task in tasks[1:]:  # pollers first: nothing new is queued
                task.cancel()
            await asyncio.gather(*tasks[1:], return_exceptions=True)
            if self.publisher.up.is_set() and self.publisher.queued + self.publisher.inflight:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_TIMEOUT):
                        await self.publisher.wait_drained()
            tasks[0].cancel()
            await asyncio.gather(tasks[0], return_exceptions=True)
            stop.cancel()
            await self.http.stop()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("gateway stopped", queued_unsent=self.publisher.queued + self.publisher.inflight)

    async def _supervise(self) -> None:
        """READY=1 once connected; WATCHDOG=1 while the loop runs; STATUS= per change."""
        interval = Notifier.watchdog_interval()
        ping = interval / 2 if interval else 1.0
        ready = False
        last_status = ""
        while True:
            if not ready and self.publisher.up.is_set():
                ready = True
                self.systemd.ready(self._status())
            status = self._status()
            if ready and status != last_status:
                self.systemd.status(status)
                last_status = status
            self.systemd.watchdog()
            await asyncio.sleep(min(ping, 1.0))

    def _status(self) -> str:
        up = sum(1 for p in self.pollers if p.state.up)
        broker = "connected" if self.publisher.up.is_set() else "not connected"
        return f"{up}/{len(self.pollers)} devices answer; broker {broker}"
