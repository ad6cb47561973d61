"""Run ``anbo demo``: broker, simulator, daemon and the live view, ended cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from anbo.demo.broker import EmbeddedBroker, free_port
from anbo.demo.view import EventLog, render
from monitor.daemon import Daemon
from monitor.logs import configure_logging
from monitor.settings import (
    AlertmanagerSettings,
    ConfigError,
    LoadedSettings,
    load_settings,
    parse_broker_url,
    parse_listen,
)
from rules.durations import positive_duration_argument
from simulator.publisher import Publisher
from simulator.scenario import Scenario, ScenarioError, resolve_scenario, scenario_problems
from simulator.station import Protocol, SimOptions, StationSimulator


def _broker_url(text: str) -> str:
    try:
        parse_broker_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _listen(text: str) -> str:
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _alertmanager_url(text: str) -> str:
    try:
        AlertmanagerSettings(url=text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(
            "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        ) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, default=None, help="station config (default: the bundled demo station)"
    )
    parser.add_argument(
        "--scenario", default="demo", help="bundled scenario name or a scenario file (default: demo)"
    )
    parser.add_argument(
        "--duration",
        type=positive_duration_argument,
        default=None,
        metavar="D",
        help="stop after this long: 90, 90s, 2m (default: the scenario's length)",
    )
    parser.add_argument(
        "--mqtt-url",
        type=_broker_url,
        default=None,
        help="use this broker instead of the embedded one (mqtt://host:port)",
    )
    parser.add_argument(
        "--metrics-listen",
        type=_listen,
        default=None,
        metavar="HOST:PORT",
        help="where /metrics is served (default: a free port on 127.0.0.1)",
    )
    parser.add_argument(
        "--alertmanager",
        action="append",
        type=_alertmanager_url,
        default=[],
        metavar="URL",
        help="also push alerts to this Alertmanager (repeatable)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="where the daemon's JSON log goes (default: a new anbo-demo-<time>-<pid>.log "
        "in the temporary folder, printed at start and end)",
    )
    parser.add_argument(
        "--no-view",
        action="store_true",
        help="print events as lines instead of the live view (automatic off a terminal)",
    )


def _demo_settings(
    args: argparse.Namespace, url: str, protocol: Protocol, metrics: str, state: Path
) -> LoadedSettings:
    if args.config is not None:
        loaded = load_settings(args.config)
    else:
        with resources.as_file(resources.files("anbo.demo") / "station.toml") as path:
            loaded = load_settings(path)
    s = loaded.settings
    alerting = s.alerting
    if args.alertmanager:
        alerting = alerting.model_copy(
            update={
                "alertmanagers": [
                    *alerting.alertmanagers,
                    *(AlertmanagerSettings(url=u) for u in args.alertmanager),
                ]
            }
        )
    settings = s.model_copy(
        update={
            "mqtt": s.mqtt.model_copy(update={"url": [url], "protocol": protocol}),
            "metrics": s.metrics.model_copy(update={"listen": metrics}),
            "state_directory": state,
            "alerting": alerting,
        }
    )
    return LoadedSettings(
        settings=settings,
        path=loaded.path,
        mqtt_password=loaded.mqtt_password,
        alertmanager_secrets=loaded.alertmanager_secrets,
    )


def _with_eb_inventory(loaded: LoadedSettings, scenario: Scenario, path: Path) -> LoadedSettings:
    """An endpoint inventory of the scenario's simulated fleet (regions r01, r02... at county level)."""
    fleet = StationSimulator(
        loaded.settings, scenario, SimOptions(start=time.time(), audio_targets=frozenset())
    ).eb
    path.write_text(fleet.inventory_csv(), encoding="utf-8")
    s = loaded.settings
    eb = s.eb.model_copy(update={"inventory": [path], "region_level": "county"})
    return LoadedSettings(
        settings=s.model_copy(update={"eb": eb}),
        path=loaded.path,
        mqtt_password=loaded.mqtt_password,
        alertmanager_secrets=loaded.alertmanager_secrets,
    )


def run(args: argparse.Namespace) -> int:
    try:
        scenario = resolve_scenario(args.scenario)
    except ScenarioError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    try:
        return asyncio.run(_demo(args, scenario))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1


async def _demo(args: argparse.Namespace, scenario: Scenario) -> int:
    console = Console(stderr=False)
    view = console.is_terminal and not args.no_view
    broker: EmbeddedBroker | None = None
    protocol: Protocol
    if args.mqtt_url is None:
        broker = EmbeddedBroker()
        await broker.start()
        url, protocol = broker.url, "3.1.1"  # amqtt speaks MQTT 3.1.1
    else:
        url, protocol = args.mqtt_url, "5"
    metrics = args.metrics_listen or f"127.0.0.1:{free_port()}"
    log_path: Path = args.log_file or default_log_path()
    try:
        return await _demo_with_broker(
            args, scenario, console, view, broker, url, protocol, metrics, log_path
        )
    finally:
        if broker is not None:
            await broker.stop()


def default_log_path() -> Path:
    """A new log file for every run (two demos at once must not write into one file)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"anbo-demo-{stamp}-{os.getpid()}.log"


def _error(text: str) -> None:
    print(f"anbo demo: {text}", file=sys.stderr, flush=True)


async def _demo_with_broker(
    args: argparse.Namespace,
    scenario: Scenario,
    console: Console,
    view: bool,
    broker: EmbeddedBroker | None,
    url: str,
    protocol: Protocol,
    metrics: str,
    log_path: Path,
) -> int:
    with tempfile.TemporaryDirectory(prefix="anbo-demo-") as tmp:
        loaded = _demo_settings(args, url, protocol, metrics, Path(tmp) / "state")
        if not loaded.settings.eb.inventory and scenario.eb.endpoints > 0:
            loaded = _with_eb_inventory(loaded, scenario, Path(tmp) / "endpoints.csv")
        problems = scenario_problems(scenario, loaded.settings)
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            return 1
        try:
            log_file = log_path.open("w", encoding="utf-8")
        except OSError as exc:
            _error(f"--log-file {log_path}: cannot write: {exc.strerror or exc}")
            return 1
        with log_file:
            # The terminal belongs to the view (or the event lines); the log goes to a file.
            configure_logging("info", "json", stream=log_file)
            logging.getLogger("transitions").setLevel(logging.WARNING)  # amqtt's state machine
            events = EventLog()
            daemon = Daemon(loaded, drain_timeout=3.0)
            daemon.evaluator.listeners.append(events)
            if not view:
                daemon.evaluator.listeners.append(lambda ts: _print_events(events, ts))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            duration = scenario.duration if args.duration is None else min(args.duration, scenario.duration)
            header = (
                f"anbo demo · station {loaded.settings.station.name} · scenario {scenario.name} · "
                f"broker {url}{' (embedded)' if broker else ''} · "
                f"console http://{metrics}/ · metrics http://{metrics}/metrics"
            )
            print(f"anbo demo: log in {log_path}", file=sys.stderr, flush=True)
            runner = asyncio.create_task(daemon.run(stop.wait, install_signal_handlers=False))
            publisher_task: asyncio.Task[object] | None = None
            started = time.monotonic()
            try:
                problem = await _wait_ready(daemon, runner, stop, url, min(duration, READY_TIMEOUT))
                if problem is not None:
                    _error(problem)
                    return 1
                if stop.is_set():
                    return 0
                sim = StationSimulator(
                    loaded.settings, scenario, SimOptions(start=time.time(), protocol=protocol)
                )
                publisher = Publisher(url, protocol=protocol, client_id="anbo-demo-simulator")
                publisher_task = asyncio.create_task(publisher.run(sim.messages(until=duration)))
                if not view:
                    print(header, flush=True)
                    await _wait(stop, duration, started)
                else:
                    with Live(console=console, refresh_per_second=2, screen=False) as live:
                        while not stop.is_set() and time.monotonic() - started < duration:
                            elapsed = time.monotonic() - started
                            live.update(
                                render(daemon, events, f"{header} · {elapsed:.0f} s / {duration:.0f} s")
                            )
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), 0.5)
                if runner.done() and not runner.cancelled() and runner.exception() is not None:
                    _error(f"the daemon stopped: {_describe(runner.exception())}")
                    return 1
            finally:
                if publisher_task is not None:
                    publisher_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await publisher_task
                stop.set()
                # Its failure, if any, was reported above.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            print(
                f"anbo demo ended after {time.monotonic() - started:.0f} s: "
                f"{events.fired} alerts fired, {events.resolved} resolved. Log: {log_path}",
                flush=True,
            )
    return 0


#: Longest wait for the broker connection before the demo gives up (at most --duration).
READY_TIMEOUT = 30.0


async def _wait_ready(
    daemon: Daemon, runner: asyncio.Task[None], stop: asyncio.Event, url: str, within: float
) -> str | None:
    """Wait until the daemon is subscribed; a one-line reason if it failed or never got there."""
    ready = asyncio.create_task(daemon.ready.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({ready, stopped, runner}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        stopped.cancel()
    if runner.done():
        exc = None if runner.cancelled() else runner.exception()
        return f"the daemon could not start: {_describe(exc)}"
    if daemon.ready.is_set() or stop.is_set():
        return None
    errors = {k: n for k, n in daemon.stats.connect_errors.items() if n}
    why = (
        "connection " + ", ".join(f"{k} ×{n}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1]))
        if errors
        else "no answer"
    )
    return f"no connection to the MQTT broker at {url} within {within:.0f} s ({why}); is it running?"


def _describe(exc: BaseException | None) -> str:
    """One line for an exception, ExceptionGroups (the daemon's TaskGroup) unwrapped."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "cancelled"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


async def _wait(stop: asyncio.Event, duration: float, started: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, duration - (time.monotonic() - started)))


def _print_events(events: EventLog, transitions: object) -> None:
    """Off a terminal: print each new event as one line."""
    total = events.fired + events.resolved
    new = min(total - events.printed, len(events.events))
    for event in list(events.events)[len(events.events) - new :] if new > 0 else []:
        print(time.strftime("%H:%M:%S ", time.localtime(event.at)) + event.text.plain, flush=True)
    events.printed = total
