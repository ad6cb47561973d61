"""The daemon's lifecycle, in the manner of hypercorn/uvicorn.

- One :class:`asyncio.TaskGroup` of named tasks: ``mqtt-ingest``, ``watchdog``,
  ``ready``; the HTTP endpoint is started before any of them.
- An injectable shutdown trigger (tests pass an awaitable; in production SIGTERM and
  SIGINT set it).
- systemd notify: ``READY=1`` once the broker subscription *and* the metrics listener
  are up; ``WATCHDOG=1`` only while the pipeline makes progress (or has nothing to do),
  whether or not the broker is up; ``RELOADING=1`` … ``READY=1`` around a SIGHUP
  reload, which re-reads settings and targets without dropping the connection or the
  state of the targets that stay; ``STOPPING=1`` on shutdown, then a drain of what is
  already queued, with a time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from monitor.collector import AnboCollector
from monitor.http import MetricsServer, tls_context
from monitor.ingest import Credentials, IngestQueue, MqttIngest
from monitor.pipeline import Consumer, Pipeline
from monitor.sdnotify import Notifier
from monitor.settings import ConfigError, LoadedSettings, load_settings
from monitor.stats import Stats

log = structlog.get_logger(__name__)

ShutdownTrigger = Callable[[], Awaitable[object]]


class Daemon:
    """One station's anbo: wires ingest → pipeline → collector and runs them."""

    def __init__(
        self,
        loaded: LoadedSettings,
        *,
        registry: CollectorRegistry | None = None,
        notifier: Notifier | None = None,
        consumers: list[Consumer] | None = None,
        drain_timeout: float = 10.0,
        reload_settings: Callable[[Path], LoadedSettings] = load_settings,
    ) -> None:
        self.loaded = loaded
        settings = loaded.settings
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.drain_timeout = drain_timeout
        self._reload_settings = reload_settings
        self.stats = Stats()
        self.queue = IngestQueue(settings.mqtt.queue_size, self.stats)
        self.pipeline = Pipeline(settings, self.stats, consumers=consumers or [])
        self.ingest = self._new_ingest(loaded)
        self.collector = AnboCollector(self.pipeline, self.stats, self.queue, lambda: self.ingest.connected)
        self.registry.register(self.collector)
        self.http = MetricsServer(self.registry, station=lambda: self.pipeline.settings.station.name,
                                  ready=self.is_ready)
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._ingest_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        #: Set when READY=1 has been sent (tests and /-/ready wait on it).
        self.ready = asyncio.Event()

    # -- wiring ---------------------------------------------------------------------------
    def _new_ingest(self, loaded: LoadedSettings) -> MqttIngest:
        s = loaded.settings
        return MqttIngest(
            s.mqtt,
            client_id=s.client_id,
            credentials=Credentials(s.mqtt.username, loaded.mqtt_password),
            subscriptions=lambda: self.pipeline.subscriptions,
            handler=self.pipeline.handle,
            queue=self.queue,
            stats=self.stats,
        )

    def is_ready(self) -> bool:
        return self.ingest.subscribed.is_set() and self.http.port is not None

    @property
    def metrics_port(self) -> int | None:
        return self.http.port

    async def _start_http(self) -> None:
        s = self.loaded.settings.metrics
        host, port = s.address
        ctx = None
        if s.tls_cert_file and s.tls_key_file:
            ctx = tls_context(s.tls_cert_file, s.tls_key_file)  # made absolute by load_settings
        await self.http.start(host, port, ctx)

    # -- lifecycle ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self._tasks is not None:
            self._tasks.create_task(self.reload(), name="reload")

    async def run(self, shutdown_trigger: ShutdownTrigger | None = None, *,
                  install_signal_handlers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        await self._start_http()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                self._ingest_task = tg.create_task(self.ingest.run(), name="mqtt-ingest")
                helpers = [tg.create_task(self._announce_ready(), name="ready")]
                interval = Notifier.watchdog_interval()
                if interval is not None:
                    helpers.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                if shutdown_trigger is not None:
                    helpers.append(tg.create_task(self._trigger(shutdown_trigger), name="shutdown-trigger"))
                await self._stop.wait()
                async with self._reload_lock:  # let a reload in progress finish first
                    await self._shutdown()
                for task in helpers:
                    task.cancel()
        finally:
            self._tasks = None
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            await self.http.stop()
            log.info("anbo stopped")

    async def _trigger(self, trigger: ShutdownTrigger) -> None:
        await trigger()
        self.request_stop()

    async def _announce_ready(self) -> None:
        await self.ingest.subscribed.wait()
        s = self.pipeline.settings
        status = (f"station {s.station.name}: {len(s.targets)} targets, metrics on port "
                  f"{self.http.port}, subscribed to {', '.join(self.pipeline.subscriptions)}")
        self.notifier.ready(status)
        self.ready.set()
        log.info("anbo ready", station=s.station.name, targets=len(s.targets),
                 metrics_port=self.http.port)

    def pipeline_healthy(self, horizon: float) -> bool:
        """Progressing, or idle with nothing queued: the watchdog's criterion."""
        return self.queue.empty() or time.monotonic() - self.ingest.progress < horizon

    async def _watchdog(self, interval: float) -> None:
        period = interval / 2
        while True:
            if self.pipeline_healthy(interval):
                self.notifier.watchdog()
            else:
                log.error("pipeline is not making progress; withholding the systemd watchdog",
                          queued=self.queue.qsize(), rate_key="watchdog")
            await asyncio.sleep(period)

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: disconnecting from the broker and draining the queue",
                 queued=self.queue.qsize(), time_limit_s=self.drain_timeout)
        deadline = time.monotonic() + self.drain_timeout
        if self._ingest_task is not None:
            self._ingest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(self.drain_timeout):
                    await self._ingest_task
        drained = 0
        while not self.queue.empty() and time.monotonic() < deadline:
            drained += self.ingest.drain(limit=512)
            await asyncio.sleep(0)
        left = self.queue.qsize()
        if left:
            log.error("drain time limit reached; queued messages not processed", left=left)
        else:
            log.info("queue drained", processed=drained)

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; keep running on the old settings if it is bad."""
        async with self._reload_lock:
            if self._stop.is_set():
                return
            self.notifier.reloading()
            path = self.loaded.path
            log.info("reloading configuration", config=str(path))
            try:
                loaded = await asyncio.to_thread(self._reload_settings, path)
            except ConfigError as exc:
                self.stats.reloads_failed += 1
                for problem in exc.problems:
                    log.error("configuration reload rejected; still running on the previous settings",
                              problem=problem)
                self.notifier.ready("reload failed: running on the previous settings")
                return
            old = self.loaded
            self.loaded = loaded
            self.pipeline.reconfigure(loaded.settings)
            new_s, old_s = loaded.settings, old.settings
            if (new_s.mqtt != old_s.mqtt or new_s.client_id != old_s.client_id
                    or loaded.mqtt_password != old.mqtt_password):
                await self._restart_ingest(loaded)
            if new_s.metrics != old_s.metrics:
                await self.http.stop()
                self.http.port = None
                await self._start_http()
            self.stats.reloads_ok += 1
            self.notifier.ready(f"reloaded: {len(new_s.targets)} targets")
            log.info("configuration reloaded", targets=len(new_s.targets),
                     mqtt_restarted=new_s.mqtt != old_s.mqtt)

    async def _restart_ingest(self, loaded: LoadedSettings) -> None:
        log.info("broker settings changed: reconnecting with the new settings")
        if self._ingest_task is not None:
            self._ingest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ingest_task
        self.ingest = self._new_ingest(loaded)
        if self._tasks is not None:
            self._ingest_task = self._tasks.create_task(self.ingest.run(), name="mqtt-ingest")
