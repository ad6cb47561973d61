"""``anbo bureau`` (the bureau service) and ``anbo report --bureau`` (the city-wide report)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import structlog

from anbo.report import BureauStation, CountingRules, compute_bureau, render, write
from bureau.settings import BureauConfig, BureauConfigError, DatabaseSettings, load_bureau_config
from monitor.ledger import LedgerError, parse_time
from monitor.logs import configure_logging
from monitor.sdnotify import Notifier
from monitor.settings import MqttSettings

__all__ = ["add_bureau_arguments", "run_bureau", "run_bureau_report"]


def add_bureau_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, help="bureau settings (TOML)")
    p.add_argument("--mqtt-url", metavar="URL", help="without --config: the bureau broker")
    p.add_argument("--database", metavar="URL", help="without --config: postgresql://...")
    p.add_argument("--listen", metavar="HOST:PORT", help="/metrics and /-/ready (default 127.0.0.1:9874)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["auto", "json", "console"])


def _config(args: argparse.Namespace) -> tuple[BureauConfig, str | None, str | None] | None:
    try:
        if args.config is not None:
            config, mqtt_pw, db_pw = load_bureau_config(args.config)
        elif args.mqtt_url and args.database:
            config = BureauConfig(
                mqtt=MqttSettings(url=[args.mqtt_url], client_id="anbo-bureau"),
                database=DatabaseSettings(url=args.database),
            )
            mqtt_pw = db_pw = None
        else:
            print(
                "anbo bureau: error: give --config FILE, or --mqtt-url URL and --database URL",
                file=sys.stderr,
            )
            return None
        if args.listen:
            config = config.model_copy(
                update={"http": config.http.model_copy(update={"listen": args.listen})}
            )
    except BureauConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    except ValueError as exc:  # pydantic's ValidationError is one
        print(f"anbo bureau: {exc}", file=sys.stderr)
        return None
    return config, mqtt_pw, db_pw


def run_bureau(args: argparse.Namespace) -> int:
    from bureau.service import BureauService

    found = _config(args)
    if found is None:
        return 2 if args.config is None and not (args.mqtt_url and args.database) else 1
    config, mqtt_pw, db_pw = found
    configure_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    log = structlog.get_logger("anbo.bureau")
    log.info(
        "anbo bureau starting",
        brokers=config.mqtt.url,
        stations_expected=len(config.stations),
        listen=config.http.listen,
    )
    notifier = Notifier.from_env()
    try:
        asyncio.run(BureauService(config, mqtt_password=mqtt_pw, db_password=db_pw, systemd=notifier).run())
    except OSError as exc:
        log.error("anbo bureau cannot start", error=str(exc))
        return 1
    finally:
        notifier.close()
    return 0


def run_bureau_report(args: argparse.Namespace) -> int:
    # Imported here, as BureauReader is: every anbo command loads this module, and the
    # PostgreSQL driver is only the bureau's (tests/test_daemon_imports.py).
    import psycopg

    from anbo.ledger_cmd import report_period
    from bureau.store import BureauReader

    url = args.database or os.environ.get("ANBO_BUREAU_DATABASE")
    if not url:
        print("anbo report: error: --bureau: give --database URL (or $ANBO_BUREAU_DATABASE)", file=sys.stderr)
        return 2
    tz = args.tz
    try:
        period = report_period(args, tz)
        if period is None:
            return 2
        start, end = period
        with BureauReader(url) as reader:
            sources = reader.sources(start, end)
            stations = [
                BureauStation(
                    name=s.name,
                    station_class=s.station_class,
                    county=s.county,
                    services=[x for x in s.services if not args.target or x.target in args.target],
                    complete_until=s.complete_until,
                    source=sources[s.name],
                )
                for s in reader.stations()
                if not args.station or s.name in args.station
            ]
            report = compute_bureau(
                stations,
                start=start,
                end=end,
                rules=CountingRules(filler_share=args.filler_share),
                tz=tz,
                now=time.time() if args.now is None else parse_time(args.now, tz),
            )
    except LedgerError as exc:
        print(f"anbo report: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"anbo report: the bureau database: {str(exc).strip()}", file=sys.stderr)
        return 1
    write(render(report, args.format, args.lang), args.output)
    return 0
