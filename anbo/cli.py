"""The ``anbo`` command line.

Exit codes: 0 success, 1 invalid configuration or failed run, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import __version__
from rules.durations import positive_duration_argument

if TYPE_CHECKING:
    # Each command imports what it needs when it runs: the settings (pydantic), the rule
    # engine, logging (structlog, rich), the bureau and ledger commands (PostgreSQL,
    # the report) take most of a second that `anbo analyze` must not pay at every start
    # (tests/test_daemon_imports.py).
    from monitor.sdnotify import Notifier
    from monitor.settings import LoadedSettings, LoggingSettings

DEFAULT_CONFIG = "/etc/anbo/anbo.toml"
DEFAULT_GATEWAY_CONFIG = "/etc/anbo/gateway.toml"


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(os.environ.get("ANBO_CONFIG", DEFAULT_CONFIG)),
        help=f"station settings (TOML); default $ANBO_CONFIG or {DEFAULT_CONFIG}",
    )


def _logging_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides [logging] level"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="overrides [logging] format (auto: JSON unless on a terminal)",
    )


def build_parser(*, full: bool = True, command: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``full=False`` leaves out the options of ``demo``, ``simulate``,
    ``report`` and ``ledger`` but for ``command``'s own: their modules (the daemon, the
    simulator and scipy.signal, the ledger) take a second and tens of MB to import, which
    ``anbo analyze`` and ``anbo run`` need not pay (tests/test_daemon_imports.py)."""
    parser = argparse.ArgumentParser(
        prog="anbo",
        description="anbo (安播): broadcast safe-transmission monitoring for transmitter stations.",
    )
    parser.add_argument("--version", action="version", version=f"anbo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the station daemon (MQTT in, /metrics out)")
    _config_arg(run)
    _logging_args(run)

    check = sub.add_parser(
        "check", help="validate a station config (and its rule files); one line per problem"
    )
    check.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help=f"station settings (TOML); default $ANBO_CONFIG or {DEFAULT_CONFIG} "
        "(with --gateway only, the gateway config alone is checked)",
    )
    check.add_argument(
        "--gateway",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also validate this transmitter-gateway config (anbo poll) and its device maps; "
        "with a station config, its targets are checked against the station's (repeatable)",
    )
    check.add_argument(
        "--rules",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="also validate these rule files or folders (repeatable)",
    )

    poll = sub.add_parser(
        "poll",
        help="the transmitter gateway: poll SNMP and Modbus TCP controllers, publish their readings",
    )
    poll.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(os.environ.get("ANBO_GATEWAY_CONFIG", DEFAULT_GATEWAY_CONFIG)),
        help=f"gateway settings (TOML); default $ANBO_GATEWAY_CONFIG or {DEFAULT_GATEWAY_CONFIG}",
    )
    _logging_args(poll)

    catalogue = sub.add_parser(
        "catalogue", help="print the measurement catalogue's tables (Markdown) or sync them into a document"
    )
    group = catalogue.add_mutually_exclusive_group()
    group.add_argument(
        "--write",
        type=Path,
        metavar="DOC",
        help="rewrite the generated section of DOC (docs/telemetry-contract.md)",
    )
    group.add_argument(
        "--check",
        type=Path,
        metavar="DOC",
        help="exit 1 if the generated section of DOC differs from the catalogue",
    )

    dash = sub.add_parser(
        "dashboards", help="generate the Grafana dashboards (JSON) or check the committed ones"
    )
    dash.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the dashboard JSON files (default config/grafana/dashboards of the source tree)",
    )
    dash.add_argument(
        "--check", action="store_true", help="exit 1 if the files in DIR differ from the generated dashboards"
    )

    test_rules = sub.add_parser("test-rules", help="run rule tests (series in, expected alerts out)")
    test_rules.add_argument(
        "files",
        type=Path,
        nargs="*",
        metavar="FILE",
        help="rule-test files (YAML); none: the built-in packs' tests",
    )

    simulate = sub.add_parser(
        "simulate", help="publish a simulated station's telemetry (a scenario of faults)"
    )
    if full or command == "simulate":
        from simulator import cli as simulator_cli

        simulator_cli.add_arguments(simulate)

    demo = sub.add_parser(
        "demo", help="the whole system on this machine: embedded broker, simulator, daemon, live view"
    )
    if full or command == "demo":
        from anbo.demo import run as demo_run

        demo_run.add_arguments(demo)

    report = sub.add_parser("report", help="the outage-rate (停播率) report from the outage ledger")
    _config_arg(report)
    bureau = sub.add_parser(
        "bureau", help="the bureau service: stations' events from the bureau broker into PostgreSQL"
    )
    if full or command == "bureau":
        from anbo.bureau_cmd import add_bureau_arguments

        add_bureau_arguments(bureau)

    ledger = sub.add_parser("ledger", help="list, show and correct the outage ledger")
    _config_arg(ledger)
    if full or command in ("report", "ledger"):
        from anbo.ledger_cmd import add_ledger_arguments, add_report_arguments

        add_report_arguments(report)
        add_ledger_arguments(ledger)

    capture = sub.add_parser(
        "capture", help="the audio capture gateway: ffmpeg inputs → PCM blocks over MQTT"
    )
    _config_arg(capture)
    capture.add_argument(
        "--input",
        "-i",
        dest="inputs",
        type=_capture_input,
        action="append",
        default=[],
        metavar="TARGET=URL",
        help="an input for a configured fm/dtv target (repeatable; replaces the config's input "
        "for that target): http://, https://, rtp://, udp://, srt://, rtsp://, alsa:DEV, "
        "pulse:SRC, file:PATH",
    )
    capture.add_argument(
        "--fast", action="store_true", help="play file inputs as fast as they decode (default: real time)"
    )
    capture.add_argument("--mqtt-url", metavar="URL", help="publish to this broker instead of [mqtt] url")
    capture.add_argument(
        "--listen", metavar="HOST:PORT", help="the gateway's /metrics; overrides [capture] listen"
    )
    capture.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides [logging] level"
    )
    capture.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="overrides [logging] format"
    )

    analyze = sub.add_parser(
        "analyze",
        help="analyse a recording (WAV, MP3, FLAC, Ogg, M4A): silences, levels, loudness",
    )
    analyze.add_argument("file", type=Path, metavar="FILE")
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    analyze.add_argument(
        "--silence-only",
        action="store_true",
        help="silences and levels only, no loudness or true peak (faster)",
    )
    analyze.add_argument(
        "--silence-threshold-db",
        type=_dbfs,
        default=-40.0,
        metavar="DBFS",
        help="silence below this level (default -40 dBFS)",
    )
    analyze.add_argument(
        "--silence-off-db",
        type=_dbfs,
        default=None,
        metavar="DBFS",
        help="programme again from this level (hysteresis; default threshold + 10 dB)",
    )
    analyze.add_argument(
        "--min-silence",
        type=positive_duration_argument,
        default=2.0,
        metavar="D",
        help="shortest silence reported: 2, 2s, 1m (default 2 s)",
    )
    analyze.add_argument(
        "--min-programme",
        type=positive_duration_argument,
        default=1.0,
        metavar="D",
        help="programme (loud at least half of the time) must last this long to end a "
        "silence, which ends where programme resumed (default 1 s)",
    )
    analyze.add_argument(
        "--channel-weights",
        type=_weights,
        default=None,
        metavar="W,W,...",
        help="loudness weight of each channel (default BS.1770: 1 for L, R, C; 1.41 for surrounds; "
        "5.1 as L,R,C,LFE,Ls,Rs = 1,1,1,0,1.41,1.41)",
    )
    analyze.add_argument(
        "--loudness-target",
        type=_lufs,
        default=None,
        metavar="LUFS",
        help="report the integrated loudness's deviation from this target (e.g. -23, EBU R128)",
    )
    for name, sub_parser in sub.choices.items():
        # `anbo COMMAND --help` opens with the same one line as `anbo --help` lists.
        if sub_parser.description is None:
            sub_parser.description = next(a.help for a in sub._choices_actions if a.dest == name)
    return parser


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _dbfs(text: str) -> float:
    value = _number(text.strip().removesuffix("dBFS").removesuffix("dB"))
    if value > 0:
        raise argparse.ArgumentTypeError(f"a level in dBFS is at most 0, got {text!r}")
    return value


def _lufs(text: str) -> float:
    value = _number(text.strip().removesuffix("LUFS").removesuffix("LKFS"))
    if not -70.0 <= value <= 0.0:
        raise argparse.ArgumentTypeError(f"a loudness target is between -70 and 0 LUFS, got {text!r}")
    return value


def _capture_input(text: str) -> tuple[str, str]:
    from gateways.capture import parse_input_arg

    try:
        return parse_input_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _weights(text: str) -> tuple[float, ...]:
    weights = tuple(_number(part) for part in text.split(","))
    if any(w < 0 for w in weights):
        raise argparse.ArgumentTypeError(f"channel weights must not be negative, got {text!r}")
    return weights


def _check_gateways(args: argparse.Namespace, station: LoadedSettings | None) -> bool:
    from gateways.config import load_gateway, station_problems
    from monitor.settings import ConfigError

    ok = True
    for path in args.gateway:
        try:
            gw = load_gateway(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            ok = False
            continue
        problems = station_problems(gw, station.settings, station.path) if station is not None else []
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            ok = False
            continue
        c = gw.config
        points = sum(len(m.points) for m in gw.maps.values())
        print(
            f"{path}: OK — station {c.station.name}, {len(c.snmp)} snmp and {len(c.modbus)} modbus "
            f"sources ({points} points), broker {', '.join(c.mqtt.url)}, metrics on {c.metrics.listen}"
        )
    return ok


def cmd_check(args: argparse.Namespace) -> int:
    if args.config is None and args.gateway and not args.rules:
        return 0 if _check_gateways(args, None) else 1
    if args.config is None:
        args.config = Path(os.environ.get("ANBO_CONFIG", DEFAULT_CONFIG))
    from monitor.settings import load_settings_or_report, rule_vocabulary
    from rules import RuleFileError, load_rules
    from rules.catalogue import Vocabulary

    loaded = load_settings_or_report(args.config)
    if args.gateway and not _check_gateways(args, loaded):
        return 1
    if args.rules:
        vocabulary = rule_vocabulary(loaded.settings) if loaded is not None else Vocabulary()
        try:
            ruleset = load_rules(args.rules, builtin=True, vocabulary=vocabulary)
        except RuleFileError as exc:
            for error in exc.errors:
                print(error, file=sys.stderr)
            return 1
        print(f"rules: OK — {len(ruleset.rules)} rules (built-in packs and {len(args.rules)} path(s))")
    if loaded is None:
        return 1
    s = loaded.settings
    kinds: dict[str, int] = {}
    for t in s.targets:
        kinds[t.kind.value] = kinds.get(t.kind.value, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no targets"
    print(
        f"{args.config}: OK — station {s.station.name}, {len(s.targets)} targets ({summary}), "
        f"broker {', '.join(s.mqtt.url)}, metrics on {s.metrics.listen}"
        + (f", {len(s.capture.inputs)} capture inputs" if s.capture.inputs else "")
    )
    return 0


def _serve(
    what: str,
    args: argparse.Namespace,
    logging: LoggingSettings,
    fields: dict[str, object],
    main: Callable[[Notifier], Coroutine[Any, Any, None]],
) -> int:
    """Run a service (the daemon, the gateway) under systemd's notifier until it ends."""
    import asyncio

    import structlog

    from monitor.logs import configure_logging
    from monitor.sdnotify import Notifier

    configure_logging(args.log_level or logging.level, args.log_format or logging.format)
    log = structlog.get_logger("anbo")
    log.info("service starting", service=what, version=__version__, config=str(args.config), **fields)
    notifier = Notifier.from_env()
    try:
        asyncio.run(main(notifier))
    except OSError as exc:
        log.error("service cannot start", service=what, error=str(exc))
        return 1
    finally:
        notifier.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.settings import load_settings_or_report

    loaded = load_settings_or_report(args.config)
    if loaded is None:
        return 1
    s = loaded.settings
    fields: dict[str, object] = {
        "station": s.station.name,
        "targets": len(s.targets),
        "brokers": s.mqtt.url,
        "metrics": s.metrics.listen,
    }
    from monitor.daemon import Daemon

    return _serve(
        "anbo", args, s.logging, fields, lambda n: Daemon(loaded, systemd=n, freeze_heap=True).run()
    )


def cmd_poll(args: argparse.Namespace) -> int:
    # Imported here: pysnmp and pymodbus take a while to import, and only `anbo poll` needs them.
    from gateways.config import load_gateway
    from gateways.service import Gateway
    from monitor.settings import ConfigError

    try:
        loaded = load_gateway(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    c = loaded.config
    fields: dict[str, object] = {
        "station": c.station.name,
        "snmp": len(c.snmp),
        "modbus": len(c.modbus),
        "brokers": c.mqtt.url,
        "metrics": c.metrics.listen,
    }
    return _serve("anbo poll", args, c.logging, fields, lambda n: Gateway(loaded, systemd=n).run())


def cmd_capture(args: argparse.Namespace) -> int:
    from gateways.capture import CaptureGateway, resolve_inputs
    from monitor.settings import load_settings_or_report, parse_broker_url, parse_listen

    loaded = load_settings_or_report(args.config)
    if loaded is None:
        return 1
    try:
        if args.mqtt_url:
            parse_broker_url(args.mqtt_url)
        if args.listen:
            parse_listen(args.listen)
        inputs = resolve_inputs(loaded, args.inputs)
    except ValueError as exc:
        for line in str(exc).splitlines():
            print(f"anbo capture: {line}", file=sys.stderr)
        return 1
    if not inputs:
        print(
            f"anbo capture: {args.config}: no inputs: add [[capture.inputs]] or give --input TARGET=URL",
            file=sys.stderr,
        )
        return 1
    import asyncio

    from monitor.logs import configure_logging
    from monitor.sdnotify import Notifier

    s = loaded.settings
    configure_logging(args.log_level or s.logging.level, args.log_format or s.logging.format)
    notifier = Notifier.from_env()
    gateway = CaptureGateway(
        loaded, inputs, fast=args.fast, mqtt_url=args.mqtt_url, listen=args.listen, systemd=notifier
    )
    try:
        return asyncio.run(gateway.run())
    except OSError as exc:
        print(f"anbo capture: cannot serve /metrics on {gateway.listen}: {exc}", file=sys.stderr)
        return 1
    finally:
        notifier.close()


def cmd_catalogue(args: argparse.Namespace) -> int:
    from anbo.contract import ContractError, generated_section, replace_section
    from rules.catalogue import markdown_tables

    tables = markdown_tables()
    doc: Path | None = args.write or args.check
    if doc is None:
        print(tables, end="")
        return 0
    try:
        text = doc.read_text(encoding="utf-8")
        current = generated_section(text)
    except (OSError, UnicodeDecodeError, ContractError) as exc:
        print(f"{doc}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if current != tables:
            print(f"{doc}: the reading tables differ from the catalogue; run `anbo catalogue --write {doc}`")
            return 1
        print(f"{doc}: the reading tables match the catalogue")
        return 0
    if current != tables:
        doc.write_text(replace_section(text, tables), encoding="utf-8")
        print(f"{doc}: reading tables updated")
    else:
        print(f"{doc}: already up to date")
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    import dashboards

    directory: Path = args.output or dashboards.DEFAULT_DIR
    if args.output is None and not directory.parent.is_dir():
        # An installed (not source-tree) anbo has no config/grafana to write into.
        print(f"anbo dashboards: no source tree at {directory.parent}; give --output DIR", file=sys.stderr)
        return 1
    if args.check:
        problems = dashboards.check(directory)
        for line in problems:
            print(line)
        if problems:
            print(f"run `anbo dashboards --output {directory}` to regenerate them")
            return 1
        print(f"{directory}: {len(dashboards.BUILDERS)} dashboards match the generated ones")
        return 0
    try:
        written = dashboards.write(directory)
    except OSError as exc:
        print(f"anbo dashboards: {directory}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def cmd_test_rules(args: argparse.Namespace) -> int:
    from rules import RuleFileError, builtin_test_files, run_tests
    from rules.testing import RuleTestFileError

    files = args.files or builtin_test_files()
    failed = 0
    for path in files:
        try:
            report = run_tests(path)
        except (RuleTestFileError, RuleFileError) as exc:
            for error in exc.errors:
                print(error, file=sys.stderr)
            failed += 1
            continue
        print(report.format())
        failed += 0 if report.ok else 1
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from anbo.analyze import AnalyzeError, analyze, format_report

    def warn(text: str) -> None:
        print(f"anbo analyze: {args.file}: warning: {text}", file=sys.stderr, flush=True)

    options: dict[str, Any] = {
        "silence_on_dbfs": args.silence_threshold_db,
        "silence_off_dbfs": args.silence_off_db,
        "min_silence": args.min_silence,
        "min_programme": args.min_programme,
        "channel_weights": args.channel_weights,
        "loudness_target": args.loudness_target,
        "silence_only": args.silence_only,
        "warn": warn,
    }
    try:
        if sys.stderr.isatty() and not args.json:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"analysing {args.file.name}", total=None)

                def progress(done: float, total: float) -> None:
                    bar.update(task, completed=done, total=total)

                report = analyze(args.file, progress=progress, **options)
        else:
            report = analyze(args.file, **options)
    except AnalyzeError as exc:
        print(f"anbo analyze: {args.file}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_json(), indent=2) if args.json else format_report(report))
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from anbo.ledger_cmd import run_report

    return run_report(args)


def _run_ledger(args: argparse.Namespace) -> int:
    from anbo.ledger_cmd import run_ledger

    return run_ledger(args)


def _run_simulate(args: argparse.Namespace) -> int:
    from simulator import cli as simulator_cli

    return simulator_cli.run(args)


def _run_demo(args: argparse.Namespace) -> int:
    from anbo.demo import run as demo_run

    return demo_run.run(args)


def _run_bureau(args: argparse.Namespace) -> int:
    from anbo.bureau_cmd import run_bureau

    return run_bureau(args)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(full=False, command=words[0] if words else None).parse_args(words)
    commands = {
        "run": cmd_run,
        "check": cmd_check,
        "poll": cmd_poll,
        "test-rules": cmd_test_rules,
        "catalogue": cmd_catalogue,
        "dashboards": cmd_dashboards,
        "analyze": cmd_analyze,
        "capture": cmd_capture,
        "simulate": _run_simulate,
        "demo": _run_demo,
        "report": _run_report,
        "ledger": _run_ledger,
        "bureau": _run_bureau,
    }
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        # `anbo analyze x.wav | head`: the reader has gone; nothing more to say to it.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"anbo {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
