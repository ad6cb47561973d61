"""``anbo simulate``: a station that can be switched on and broken at will.

::

    anbo simulate --config anbo.toml                      # quiet-day, in real time
    anbo simulate --config anbo.toml --scenario fm-faults # a bundled scenario
    anbo simulate --config anbo.toml --scenario my.yml --speed 2
    anbo simulate --list                                  # the bundled scenarios
    anbo simulate --config anbo.toml --scenario fm-faults --check    # validate only
    anbo simulate --config anbo.toml --scenario fm-faults --verify   # run through anbo's
                                                                      # rules, no broker

Exit codes: 0 done (``--verify``: every expectation met), 1 invalid config or scenario,
failed verification or run, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from pathlib import Path

import structlog

from monitor.logs import configure_logging
from monitor.settings import LoadedSettings, load_settings_or_report
from rules.durations import positive_duration_argument
from simulator.accelerated import run_accelerated, verify
from simulator.programme import WavError
from simulator.publisher import Publisher
from simulator.scenario import (
    Scenario,
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    resolve_scenario,
    scenario_problems,
)
from simulator.station import SimOptions, StationSimulator

__all__ = ["add_arguments", "run"]

DEFAULT_SCENARIO = "quiet-day"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _regions(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("at least 1 region")
    return value


def _rate(text: str) -> int:
    value = _count(text)
    if not 8_000 <= value <= 384_000:
        raise argparse.ArgumentTypeError(f"a sample rate between 8000 and 384000 Hz, got {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anbo simulate``."""
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(os.environ.get("ANBO_CONFIG", "/etc/anbo/anbo.toml")),
        help="station settings (TOML): targets to simulate, broker, topic prefix; "
        "default $ANBO_CONFIG or /etc/anbo/anbo.toml",
    )
    parser.add_argument(
        "--scenario",
        "-s",
        default=DEFAULT_SCENARIO,
        metavar="NAME|FILE",
        help=f"a bundled scenario (--list) or a scenario file; default {DEFAULT_SCENARIO}",
    )
    parser.add_argument("--list", action="store_true", help="list the bundled scenarios and exit")
    parser.add_argument(
        "--check", action="store_true", help="validate the scenario against the config and exit"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the scenario through anbo's pipeline and rules on simulated time "
        "(no broker, faster than real time) and compare the alerts with its "
        "expectations",
    )
    parser.add_argument("--mqtt-url", metavar="URL", help="broker to publish to; default the config's first")
    parser.add_argument(
        "--protocol", choices=["5", "3.1.1"], help="MQTT version; default the config's mqtt.protocol"
    )
    parser.add_argument("--client-id", help="default anbo-sim-<station>")
    parser.add_argument("--username", help="default the config's mqtt.username")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE", help="default the config's mqtt.password_file"
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        metavar="X",
        help="simulated seconds per real second (default: the scenario's, else 1)",
    )
    parser.add_argument(
        "--duration",
        type=positive_duration_argument,
        metavar="D",
        help="stop after this long (e.g. 10m) instead of the scenario's duration",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    parser.add_argument(
        "--wav",
        action="append",
        default=[],
        metavar="[TARGET=]FILE",
        help="programme audio from a WAV file (looped), for every audio target or for TARGET; repeatable",
    )
    parser.add_argument(
        "--eb-endpoints",
        type=_count,
        metavar="N",
        help="emergency-broadcast endpoints (default: the scenario's)",
    )
    parser.add_argument("--eb-regions", type=_regions, metavar="M", help="regions they are spread over")
    parser.add_argument(
        "--eb-inventory",
        type=Path,
        metavar="FILE",
        help="write an [eb] inventory (CSV) of the simulated fleet for the daemon's config "
        '(with region_level = "county") and exit',
    )
    parser.add_argument(
        "--audio-rate", type=_rate, default=48_000, metavar="HZ", help="audio sample rate (default 48000)"
    )
    parser.add_argument(
        "--audio-channels", type=int, choices=[1, 2], default=2, help="audio channels (default 2)"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def _wav_map(items: list[str], loaded: LoadedSettings) -> dict[str, Path]:
    names = {t.name for t in loaded.settings.targets}
    out: dict[str, Path] = {}
    for item in items:
        target, sep, file = item.partition("=")
        if sep and target in names:
            out[target] = Path(file)
        else:
            out["*"] = Path(item)
    return out


def _print_list() -> int:
    for name, path in bundled_scenarios().items():
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:  # a broken bundled file is a bug; show it
            print(f"{name}: INVALID: {exc}")
            continue
        faults = len(sc.timeline)
        print(f"{name:20} {sc.duration / 60:6.1f} min  {faults:2} faults  {' '.join(sc.description.split())}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``anbo simulate`` with parsed ``args``; returns the exit code."""
    if args.list:
        return _print_list()
    loaded = load_settings_or_report(args.config)
    if loaded is None:
        return 1
    settings = loaded.settings
    try:
        scenario = resolve_scenario(args.scenario)
    except ScenarioError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    problems = scenario_problems(
        scenario, settings, eb_endpoints=args.eb_endpoints, eb_regions=args.eb_regions
    )
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    if args.eb_inventory is not None:
        sim = StationSimulator(
            settings,
            scenario,
            SimOptions(
                start=time.time(),
                audio_targets=frozenset(),
                eb_endpoints=args.eb_endpoints,
                eb_regions=args.eb_regions,
            ),
        )
        if sim.eb.n == 0:
            print(
                "anbo simulate: the scenario has no emergency-broadcast endpoints (--eb-endpoints N)",
                file=sys.stderr,
            )
            return 1
        try:
            args.eb_inventory.write_text(sim.eb.inventory_csv(), encoding="utf-8")
        except OSError as exc:
            print(f"anbo simulate: --eb-inventory: {exc}", file=sys.stderr)
            return 1
        print(
            f"{args.eb_inventory}: {sim.eb.n} endpoints in {sim.eb.regions} regions; in the config: "
            f'[eb] inventory = ["{args.eb_inventory}"], region_level = "county"'
        )
        return 0
    if args.check:
        print(
            f"{scenario.source}: OK — scenario {scenario.name}, {scenario.duration:g} s, "
            f"{len(scenario.timeline)} faults, {len(scenario.expect)} expected alerts, "
            f"fits station {settings.station.name}"
        )
        return 0
    configure_logging(args.log_level, "auto", stream=sys.stderr)
    try:
        options = SimOptions(
            start=time.time(),
            protocol=args.protocol or settings.mqtt.protocol,
            audio_rate=args.audio_rate,
            audio_channels=args.audio_channels,
            wav=_wav_map(args.wav, loaded),
            eb_endpoints=args.eb_endpoints,
            eb_regions=args.eb_regions,
            seed=args.seed,
        )
        if args.verify:
            return _verify(loaded, scenario, options, args.duration)
        return _publish(loaded, scenario, options, args)
    except (ValueError, WavError) as exc:
        print(f"anbo simulate: {exc}", file=sys.stderr)
        return 1


def _verify(loaded: LoadedSettings, scenario: Scenario, options: SimOptions, until: float | None) -> int:
    began = time.monotonic()
    result = asyncio.run(run_accelerated(loaded.settings, scenario, options, until=until))
    v = verify(scenario, result.episodes, result.count, ended_at=result.simulated)
    print(
        f"{scenario.name}: {result.simulated:g} simulated seconds, {result.messages} messages, "
        f"{len(result.episodes)} alerts, in {time.monotonic() - began:.1f} s"
    )
    if until is None or until >= scenario.duration:
        print(v.format())
        print("OK" if v.ok else "FAILED")
        return 0 if v.ok else 1
    for ep in result.episodes:
        print(f"  {ep.describe()}")
    return 0


def _publish(
    loaded: LoadedSettings, scenario: Scenario, options: SimOptions, args: argparse.Namespace
) -> int:
    s = loaded.settings
    log = structlog.get_logger("anbo.simulate")
    url = args.mqtt_url or s.mqtt.url[0]
    password = loaded.mqtt_password
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            print(f"anbo simulate: --password-file: {exc}", file=sys.stderr)
            return 1
    tls: ssl.SSLContext | None = None
    if url.startswith("mqtts://"):
        tls = ssl.create_default_context(cafile=str(s.mqtt.tls_ca_file) if s.mqtt.tls_ca_file else None)
    speed = args.speed or scenario.speed
    publisher = Publisher(
        url,
        protocol=options.protocol,
        client_id=args.client_id or f"anbo-sim-{s.station.name}",
        username=args.username or s.mqtt.username,
        password=password,
        tls_context=tls,
        speed=speed,
    )
    sim = StationSimulator(s, scenario, options)
    duration = scenario.duration if args.duration is None else min(args.duration, scenario.duration)
    ahead = duration * (1.0 - 1.0 / speed)
    if ahead > 300:
        log.warning(
            "at this speed the simulated clock runs ahead of the wall clock by more than anbo's "
            "default max_future_s (300 s): later messages will be rejected as absurd_timestamp",
            speed=speed,
            ahead_s=round(ahead),
        )
    log.info(
        "simulating",
        scenario=scenario.name,
        station=s.station.name,
        broker=url,
        protocol=options.protocol,
        speed=speed,
        duration_s=duration,
        audio_targets=len(sim.audio_targets),
        eb_endpoints=sim.eb.n,
    )
    try:
        stats = asyncio.run(publisher.run(sim.messages(until=duration), scenario=scenario))
    except KeyboardInterrupt:
        log.info("simulator stopped", published=publisher.stats.published)
        return 0
    log.info(
        "simulation finished",
        published=stats.published,
        dropped=stats.dropped,
        resent=stats.resent,
        connects=stats.connects,
    )
    return 0 if stats.dropped == 0 else 1
