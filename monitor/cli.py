"""The ``anbo`` command line.

Exit codes: 0 success, 1 invalid configuration or failed run, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from monitor import __version__
from monitor.daemon import Daemon
from monitor.logs import configure_logging
from monitor.sdnotify import Notifier
from monitor.settings import ConfigError, LoadedSettings, load_settings

DEFAULT_CONFIG = "/etc/anbo/anbo.toml"


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path,
        default=Path(os.environ.get("ANBO_CONFIG", DEFAULT_CONFIG)),
        help=f"station settings (TOML); default $ANBO_CONFIG or {DEFAULT_CONFIG}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anbo",
        description="anbo (安播): broadcast safe-transmission monitoring for transmitter stations.",
    )
    parser.add_argument("--version", action="version", version=f"anbo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the station daemon (MQTT in, /metrics out)")
    _config_arg(run)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     help="overrides [logging] level")
    run.add_argument("--log-format", choices=["auto", "json", "console"],
                     help="overrides [logging] format (auto: JSON unless on a terminal)")

    check = sub.add_parser("check", help="validate a station config; one line per problem")
    _config_arg(check)
    return parser


def _load(path: Path) -> LoadedSettings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    s = loaded.settings
    kinds: dict[str, int] = {}
    for t in s.targets:
        kinds[t.kind.value] = kinds.get(t.kind.value, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no targets"
    print(f"{args.config}: OK — station {s.station.name}, {len(s.targets)} targets ({summary}), "
          f"broker {', '.join(s.mqtt.url)}, metrics on {s.metrics.listen}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    s = loaded.settings
    configure_logging(args.log_level or s.logging.level, args.log_format or s.logging.format)
    log = structlog.get_logger("anbo")
    log.info("anbo starting", version=__version__, config=str(args.config), station=s.station.name,
             targets=len(s.targets), brokers=s.mqtt.url, metrics=s.metrics.listen)
    notifier = Notifier.from_env()
    try:
        asyncio.run(Daemon(loaded, systemd=notifier).run())
    except OSError as exc:
        log.error("anbo cannot start", error=str(exc))
        return 1
    finally:
        notifier.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": cmd_run, "check": cmd_check}
    return commands[args.command](args)
