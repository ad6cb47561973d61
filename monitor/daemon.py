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
import gc
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.alertmanager import AlertmanagerNotifier, AlertmanagerTarget
from monitor.collector import AnboCollector
from monitor.console import Console
from monitor.ebfleet import EbMonitor
from monitor.evaluation import STATE_FILE, Evaluator
from monitor.events import EventPublisher, disable_outbox, station_description
from monitor.http import MetricsServer, tls_context
from monitor.ingest import Credentials, IngestQueue, MqttIngest
from monitor.inventory import InventoryError
from monitor.ledger import (
    IntervalClass,
    Ledger,
    ledger_aliases,
    ledger_debounce,
    ledger_services,
)
from monitor.pipeline import Consumer, Pipeline
from monitor.sdnotify import Notifier
from monitor.settings import ConfigError, LoadedSettings, load_settings
from monitor.stats import Stats
from rules import Alert, AlertState, RuleFileError

#: The console's "recent outages": how many, and which classes (not unmonitored/maintenance).
CONSOLE_OUTAGES = 10
OUTAGE_CLASSES = (
    IntervalClass.OUTAGE,
    IntervalClass.WRONG_PROGRAMME,
    IntervalClass.FILLER,
    IntervalClass.DEGRADED,
)

log = structlog.get_logger(__name__)

ShutdownTrigger = Callable[[], Awaitable[object]]


class Daemon:
    """One station's anbo: wires ingest → pipeline → collector and runs them."""

    def __init__(
        self,
        loaded: LoadedSettings,
        *,
        registry: CollectorRegistry | None = None,
        systemd: Notifier | None = None,
        consumers: list[Consumer] | None = None,
        drain_timeout: float = 10.0,
        reload_settings: Callable[[Path], LoadedSettings] = load_settings,
        freeze_heap: bool = False,
    ) -> None:
        self.loaded = loaded
        self.freeze_heap = freeze_heap
        settings = loaded.settings
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.systemd = systemd if systemd is not None else Notifier(None)
        self.drain_timeout = drain_timeout
        self._reload_settings = reload_settings
        self.stats = Stats()
        self.queue = IngestQueue(settings.mqtt.queue_size, self.stats)
        self.pipeline = Pipeline(settings, self.stats, consumers=consumers or [])
        self.ingest = self._new_ingest(loaded)
        self.alertmanager = self._new_alertmanager(loaded)
        self.eb = EbMonitor.from_settings(settings.eb, settings.station.name)
        self.pipeline.endpoints = self.eb
        self.ledger = self._new_ledger(loaded)
        self.evaluator = Evaluator(
            settings,
            self.pipeline,
            notifier=self.alertmanager,
            eb=self.eb,
            state_path=loaded.state_directory / STATE_FILE,
            ledger=self.ledger,
            listening=lambda: self.ingest.listening_since,
        )
        self.pipeline.consumers.append(self.evaluator.consume)
        self.events: EventPublisher | None = None
        if self.ledger is not None and settings.bureau.enabled:
            self.events = EventPublisher(loaded, self.ledger)
            self.evaluator.listeners.append(self.events.on_transitions)
        self.collector = AnboCollector(
            self.pipeline,
            self.stats,
            self.queue,
            lambda: self.ingest.connected,
            evaluator=lambda: self.evaluator,
            notifier=lambda: self.alertmanager,
        )
        self.registry.register(self.collector)
        if self.ledger is not None:
            self.registry.register(self.ledger)
        if self.events is not None:
            self.registry.register(self.events)
        self.console = Console(
            settings=lambda: self.pipeline.settings,
            pipeline=lambda: self.pipeline,
            alerts=lambda: self.evaluator.engine.active(),
            measurements=lambda: self.evaluator.measurements,
            eb=lambda: None if self.eb is None else self.eb.console_json(),
            migrations=lambda: self.evaluator.migrations.latest,
            broker=lambda: dict(self.ingest.connected),
            alertmanager=self._alertmanager_status,
            delivery=self.delivery,
            outages=self._recent_outages,
        )
        self.evaluator.listeners.append(self.console.on_tick)
        self.http = MetricsServer(
            self.registry,
            station=lambda: self.pipeline.settings.station.name,
            ready=self.is_ready,
            problems=self.problems,
            notices=lambda: [] if self.evaluator.state_notice is None else [self.evaluator.state_notice],
            extra_routes=[web.get("/api/v1/eb/status", self._eb_status), *self.console.routes()],
            index=False,
            basic_auth=None
            if loaded.http_auth_hash is None or settings.metrics.basic_auth_user is None
            else (settings.metrics.basic_auth_user, loaded.http_auth_hash),
            metrics_open=settings.metrics.metrics_open,
        )
        self.http.app.on_shutdown.append(self.console.close)
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._ingest_task: asyncio.Task[None] | None = None
        self._alertmanager_task: asyncio.Task[None] | None = None
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

    @staticmethod
    def _new_ledger(loaded: LoadedSettings) -> Ledger | None:
        s = loaded.settings
        if not s.ledger.enabled:
            return None
        return Ledger(
            loaded.ledger_path,
            s.station.name,
            ledger_services(s),
            heartbeat=s.ledger.heartbeat,
            pending_max=s.ledger.pending_max,
            maintenance=s.maintenance,
            aliases=ledger_aliases(s),
            debounce=ledger_debounce(s),
        )

    def problems(self) -> list[str]:
        """What /-/ready reports besides the broker subscription (the ledger's health)."""
        ledger = self.ledger
        if ledger is None or ledger.healthy:
            return []
        return [f"outage ledger unavailable ({ledger.last_error}); {ledger.pending} rows pending in memory"]

    @staticmethod
    def _new_alertmanager(loaded: LoadedSettings) -> AlertmanagerNotifier | None:
        a = loaded.settings.alerting
        if not a.alertmanagers:
            return None
        targets = []
        for am in a.alertmanagers:
            password, token = loaded.alertmanager_secrets.get(am.url, (None, None))
            targets.append(
                AlertmanagerTarget(
                    url=am.url,
                    tls_ca_file=am.tls_ca_file,
                    tls_cert_file=am.tls_cert_file,
                    tls_key_file=am.tls_key_file,
                    basic_auth_user=am.username,
                    basic_auth_password=password,
                    bearer_token=token,
                    timeout=am.timeout,
                )
            )
        return AlertmanagerNotifier(
            targets, resend_interval=a.resend_interval, evaluation_interval=loaded.settings.probes.tick
        )

    def delivery(self, alert: Alert) -> dict[str, object]:
        """Where a firing alert stands with the Alertmanagers, for the console's API and the
        demo: delivered, pending, failing (with the reason), or why it is not sent."""
        if alert.state is not AlertState.FIRING:
            return {"state": "not_sent", "reason": "pending: not firing yet", "alertmanagers": {}}
        if not alert.notify:
            why = alert.reason.value if alert.reason is not None else "not notified"
            return {"state": "not_sent", "reason": why, "alertmanagers": {}}
        if self.alertmanager is None:
            return {"state": "not_sent", "reason": "no Alertmanager configured", "alertmanagers": {}}
        return self.alertmanager.delivery(alert.labels).to_json()

    def _recent_outages(self) -> list[dict[str, object]] | None:
        """The console's list: the ledger's newest outages, wrong programme, filler and
        degraded intervals (None: no ledger configured)."""
        if self.ledger is None:
            return None
        return [iv.to_json() for iv in self.ledger.recent(CONSOLE_OUTAGES, classes=OUTAGE_CLASSES)]

    def _alertmanager_status(self) -> list[dict[str, object]] | None:
        """Delivery state per Alertmanager for the console header (None: none configured)."""
        if self.alertmanager is None:
            return None
        return [
            {
                "alertmanager": name,
                "last_success": st.last_success,
                "consecutive_failures": st.consecutive_failures,
                "last_failure": self.alertmanager.last_failure(name),
                "queue_depth": st.queue_depth,
                "dropped": st.dropped,
            }
            for name, st in self.alertmanager.stats.items()
        ]

    async def _eb_status(self, request: web.Request) -> web.Response:
        """Offline and faulty endpoints per region, and recent dispatches (JSON)."""
        if self.eb is None:
            return web.json_response({"error": "no [eb] inventory configured"}, status=404)
        return web.json_response(self.eb.status_json())

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

    async def run(
        self, shutdown_trigger: ShutdownTrigger | None = None, *, install_signal_handlers: bool = True
    ) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.ledger is not None:
            self.ledger.start()
            if self.events is None:
                disable_outbox(self.ledger.store)
        await self._start_http()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                self._ingest_task = tg.create_task(self.ingest.run(), name="mqtt-ingest")
                evaluation = tg.create_task(self.evaluator.run(), name="evaluate")
                if self.alertmanager is not None:
                    self._alertmanager_task = tg.create_task(self.alertmanager.run(), name="alertmanager")
                helpers = [evaluation, tg.create_task(self._announce_ready(), name="ready")]
                if self.events is not None:
                    helpers.append(tg.create_task(self.events.run(), name="bureau-events"))
                interval = Notifier.watchdog_interval()
                if interval is not None:
                    helpers.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                if shutdown_trigger is not None:
                    helpers.append(tg.create_task(self._trigger(shutdown_trigger), name="shutdown-trigger"))
                await self._stop.wait()
                async with self._reload_lock:  # let a reload in progress finish first
                    evaluation.cancel()
                    await self._shutdown()
                for task in helpers:
                    task.cancel()
                if self._alertmanager_task is not None:
                    self._alertmanager_task.cancel()
        finally:
            self._tasks = None
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            await self.http.stop()
            if self.events is not None:
                self.events.close()
            log.info("anbo stopped")

    async def _trigger(self, trigger: ShutdownTrigger) -> None:
        await trigger()
        self.request_stop()

    async def _announce_ready(self) -> None:
        await self.ingest.subscribed.wait()
        s = self.pipeline.settings
        status = (
            f"station {s.station.name}: {len(s.targets)} targets, metrics on port "
            f"{self.http.port}, subscribed to {', '.join(self.pipeline.subscriptions)}"
        )
        self._settle_heap()
        self.systemd.ready(status)
        self.ready.set()
        log.info("anbo ready", station=s.station.name, targets=len(s.targets), metrics_port=self.http.port)

    def _settle_heap(self) -> None:
        """With ``freeze_heap`` (``anbo run``): move what start-up (or a reload) built out
        of the garbage collector's sight.

        The settings, rules, inventory and fleet arrays live as long as the process; left
        in the collector's oldest generation, every full collection walks all of them while
        the loop waits (with 100 000 endpoints, tens of milliseconds in the middle of a
        tick). Unfreezing first lets what a reload replaced be collected.
        """
        if not self.freeze_heap:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.debug("heap frozen", objects=gc.get_freeze_count())

    def pipeline_healthy(self, horizon: float) -> bool:
        """The watchdog's criterion: ingest progressing or idle with nothing queued, and
        the evaluation ticking."""
        now = time.monotonic()
        ingest_ok = self.queue.empty() or now - self.ingest.progress < horizon
        tick = self.pipeline.settings.probes.tick
        return ingest_ok and now - self.evaluator.progress < max(horizon, 3 * tick)

    async def _watchdog(self, interval: float) -> None:
        period = interval / 2
        while True:
            if self.pipeline_healthy(interval):
                self.systemd.watchdog()
            else:
                log.error(
                    "pipeline is not making progress; withholding the systemd watchdog",
                    queued=self.queue.qsize(),
                    rate_key="watchdog",
                    since_last_tick_s=round(time.monotonic() - self.evaluator.progress, 1),
                )
            await asyncio.sleep(period)

    async def _shutdown(self) -> None:
        self.systemd.stopping()
        log.info(
            "stopping: disconnecting from the broker and draining the queue",
            queued=self.queue.qsize(),
            time_limit_s=self.drain_timeout,
        )
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
        # What was drained is measured and decided on once more, the state saved, and
        # Alertmanager told what is pending, within what is left of the time limit.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await self.evaluator.tick()
        self.evaluator.save_now()
        if self.ledger is not None:
            self.ledger.stop()
        if self.alertmanager is not None:
            await self.alertmanager.flush(max(0.5, deadline - time.monotonic()))

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; keep running on the old settings if it is bad."""
        async with self._reload_lock:
            if self._stop.is_set():
                return
            self.systemd.reloading()
            path = self.loaded.path
            log.info("reloading configuration", config=str(path))
            try:
                loaded = await asyncio.to_thread(self._reload_settings, path)
            except ConfigError as exc:
                self.stats.reloads_failed += 1
                for problem in exc.problems:
                    log.error(
                        "configuration reload rejected; still running on the previous settings",
                        problem=problem,
                    )
                self.systemd.ready("reload failed: running on the previous settings")
                return
            old = self.loaded
            try:
                self.evaluator.reconfigure(loaded.settings)
            except RuleFileError as exc:  # a rule file changed between check and load
                self.stats.reloads_failed += 1
                for error in exc.errors:
                    log.error(
                        "configuration reload rejected; still running on the previous settings",
                        problem=str(error),
                    )
                self.systemd.ready("reload failed: running on the previous settings")
                return
            self.loaded = loaded
            self.pipeline.reconfigure(loaded.settings)
            if self.ledger is not None:
                self.ledger.configure(
                    ledger_services(loaded.settings),
                    loaded.settings.maintenance,
                    ledger_aliases(loaded.settings),
                )
            if self.events is not None and station_description(loaded.settings) != station_description(
                old.settings
            ):
                self.events.queue_station(loaded.settings)
            if loaded.settings.eb != old.settings.eb:
                self._reload_eb(loaded)
            new_s, old_s = loaded.settings, old.settings
            if (
                new_s.mqtt != old_s.mqtt
                or new_s.client_id != old_s.client_id
                or loaded.mqtt_password != old.mqtt_password
            ):
                await self._restart_ingest(loaded)
            if (
                new_s.alerting.alertmanagers != old_s.alerting.alertmanagers
                or new_s.alerting.resend_interval != old_s.alerting.resend_interval
                or loaded.alertmanager_secrets != old.alertmanager_secrets
            ):
                await self._restart_alertmanager(loaded)
            if new_s.metrics != old_s.metrics:
                await self.http.stop()
                self.http.port = None
                await self._start_http()
            self.stats.reloads_ok += 1
            self._settle_heap()
            self.systemd.ready(f"reloaded: {len(new_s.targets)} targets")
            log.info(
                "configuration reloaded", targets=len(new_s.targets), mqtt_restarted=new_s.mqtt != old_s.mqtt
            )

    def _reload_eb(self, loaded: LoadedSettings) -> None:
        try:
            eb = EbMonitor.from_settings(loaded.settings.eb, loaded.settings.station.name)
        except InventoryError as exc:
            for problem in exc.problems:
                log.error(
                    "endpoint inventory reload rejected; keeping the previous one", problem=str(problem)
                )
            return
        log.info(
            "endpoint inventory reloaded (heartbeat history starts afresh)",
            endpoints=0 if eb is None else len(eb.inventory),
        )
        self.eb = eb
        self.pipeline.endpoints = eb
        self.evaluator.eb = eb

    async def _restart_alertmanager(self, loaded: LoadedSettings) -> None:
        log.info("Alertmanager settings changed: delivering to the new set")
        if self.alertmanager is not None:
            await self.alertmanager.flush(2.0)
        if self._alertmanager_task is not None:
            self._alertmanager_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alertmanager_task
            self._alertmanager_task = None
        self.alertmanager = self._new_alertmanager(loaded)
        self.evaluator.notifier = self.alertmanager
        if self.alertmanager is not None and self._tasks is not None:
            self._alertmanager_task = self._tasks.create_task(self.alertmanager.run(), name="alertmanager")

    async def _restart_ingest(self, loaded: LoadedSettings) -> None:
        log.info("broker settings changed: reconnecting with the new settings")
        if self._ingest_task is not None:
            self._ingest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ingest_task
        self.ingest = self._new_ingest(loaded)
        if self._tasks is not None:
            self._ingest_task = self._tasks.create_task(self.ingest.run(), name="mqtt-ingest")
