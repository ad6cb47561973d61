"""``anbo report`` and ``anbo ledger list|show|annotate|add|void``: the ledger on the command line.

Both open the station's ledger file directly (SQLite allows a reader and, for the manual
entries, a second short writer next to the running daemon: WAL, busy timeout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from anbo.report import FORMATS, CountingRules, compute, quarter_bounds, render, write
from monitor.ledger import IntervalClass, Ledger, LedgerError, LedgerStore, ledger_services, parse_time
from monitor.settings import LoadedSettings, load_settings_or_report

__all__ = ["add_ledger_arguments", "add_report_arguments", "run_ledger", "run_report"]


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    when = p.add_mutually_exclusive_group()
    when.add_argument("--quarter", metavar="YYYYQn", help="e.g. 2026Q3 (in [ledger] report_tz)")
    when.add_argument("--from", dest="start", metavar="TIME", help="ISO 8601 start (with --to)")
    p.add_argument("--to", dest="end", metavar="TIME", help="ISO 8601 end (exclusive)")
    p.add_argument("--target", action="append", help="only this target (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    b = p.add_argument_group("bureau (no station config: every station from the bureau's PostgreSQL)")
    b.add_argument("--bureau", action="store_true", help="the city-wide report from --database")
    b.add_argument("--database", metavar="URL", help="postgresql://... (default $ANBO_BUREAU_DATABASE)")
    b.add_argument("--station", action="append", help="only this station (repeatable)")
    b.add_argument("--tz", default="Asia/Shanghai", help="zone of quarters and days (default Asia/Shanghai)")
    b.add_argument("--filler-share", type=float, default=0.5, help="share of filler time counted (0.5)")
    b.add_argument("--now", metavar="TIME", help="report as of this time (default: now)")


def add_ledger_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="list intervals")
    ls.add_argument("--target", action="append")
    ls.add_argument("--class", dest="cls", action="append", choices=[c.value for c in IntervalClass])
    ls.add_argument("--from", dest="start")
    ls.add_argument("--to", dest="end")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one interval and its history of revisions")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    for name, help_ in (("annotate", "add a remark or cause (停播原因)"), ("void", "void a false interval")):
        a = sub.add_parser(name, help=help_)
        a.add_argument("id")
        a.add_argument("--author", required=True)
        a.add_argument("--reason", required=True)
        if name == "annotate":
            a.add_argument("--remark")
            a.add_argument("--cause")
    add = sub.add_parser("add", help="add an interval monitoring missed (e.g. reported by listeners)")
    add.add_argument("--target", required=True)
    add.add_argument("--class", dest="cls", default="outage", choices=[c.value for c in IntervalClass])
    add.add_argument("--from", dest="start", required=True)
    add.add_argument("--to", dest="end", required=True)
    add.add_argument("--cause", action="append", default=[])
    add.add_argument("--remark", action="append", default=[])
    add.add_argument("--author", required=True)
    add.add_argument("--reason", required=True)


def report_period(args: argparse.Namespace, tz: str) -> tuple[float, float] | None:
    """``--quarter`` or ``--from``/``--to`` → (start, end); None (said why) if neither is given."""
    if args.quarter:
        start, end = quarter_bounds(args.quarter, tz)
    elif args.start and args.end:
        start, end = parse_time(args.start, tz), parse_time(args.end, tz)
    else:
        print("anbo report: give --quarter YYYYQn, or --from and --to", file=sys.stderr)
        return None
    if end <= start:
        raise LedgerError("--to must be after --from")
    return start, end


def _loaded(args: argparse.Namespace) -> LoadedSettings | None:
    return load_settings_or_report(args.config)


def run_report(args: argparse.Namespace) -> int:
    if args.bureau:
        from anbo.bureau_cmd import run_bureau_report

        return run_bureau_report(args)
    loaded = _loaded(args)
    if loaded is None:
        return 1
    s = loaded.settings
    tz = s.ledger.report_tz
    try:
        period = report_period(args, tz)
        if period is None:
            return 2
        start, end = period
        services = ledger_services(s)
        if args.target:
            unknown = sorted(set(args.target) - {x.target for x in services})
            if unknown:
                raise LedgerError(f"--target: not a configured programme target: {', '.join(unknown)}")
            services = [x for x in services if x.target in args.target]
        store = LedgerStore(loaded.ledger_path, readonly=True)
        store.open()
        rules = CountingRules(filler_share=s.ledger.filler_share, class_targets=s.ledger.class_targets)
        report = compute(
            store,
            services,
            station=s.station.name,
            station_class=s.station.station_class,
            start=start,
            end=end,
            rules=rules,
            tz=tz,
        )
        store.close()
    except LedgerError as exc:
        print(f"anbo report: {exc}", file=sys.stderr)
        return 1
    write(render(report, args.format, args.lang), args.output)
    return 0


def _fmt(wall: float | None, tz: str) -> str:
    if wall is None:
        return "(open)"
    return datetime.fromtimestamp(wall, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def run_ledger(args: argparse.Namespace) -> int:
    loaded = _loaded(args)
    if loaded is None:
        return 1
    s = loaded.settings
    tz = s.ledger.report_tz
    try:
        if args.ledger_command in ("list", "show"):
            store = LedgerStore(loaded.ledger_path, readonly=True)
            store.open()
            if args.ledger_command == "list":
                rows = store.current(
                    start=parse_time(args.start, tz) if args.start else None,
                    end=parse_time(args.end, tz) if args.end else None,
                    targets=args.target,
                    classes=[IntervalClass(c) for c in args.cls] if args.cls else None,
                    limit=args.limit,
                    newest_first=True,
                )
                if args.json:
                    print(json.dumps([r.to_json() for r in rows], ensure_ascii=False, indent=2))
                for r in rows if not args.json else []:
                    print(
                        f"{r.event_id[:8]}  {r.target:<16} {r.cls.value:<15} {_fmt(r.start, tz)} → "
                        f"{_fmt(r.end, tz)}  {r.duration():>9.0f} s  {', '.join(r.causes)}"
                        + (f"  [{'; '.join(r.remarks)}]" if r.remarks else "")
                    )
            else:
                history = store.history(args.id)
                if args.json:
                    print(json.dumps([r.to_json() for r in history], ensure_ascii=False, indent=2))
                else:
                    cur = history[-1]
                    print(f"{cur.event_id}  {cur.target} ({cur.service})  {cur.cls.value}")
                    for r in history:
                        print(
                            f"  rev {r.revision}  {_fmt(r.recorded_at, tz)}  {r.source}/{r.author}: "
                            f"{_fmt(r.start, tz)} → {_fmt(r.end, tz)}  causes={list(r.causes)} "
                            f"remarks={list(r.remarks)}{'  VOID' if r.voided else ''}  {r.reason}"
                        )
            store.close()
            return 0
        ledger = Ledger(loaded.ledger_path, s.station.name, ledger_services(s))
        ledger.store.open()
        if args.ledger_command == "add":
            if args.target not in ledger.services:
                raise LedgerError(f"--target {args.target!r}: not a configured programme target")
            row = ledger.add_manual(
                args.target,
                IntervalClass(args.cls),
                parse_time(args.start, tz),
                parse_time(args.end, tz),
                author=args.author,
                reason=args.reason,
                causes=args.cause,
                remarks=args.remark,
            )
        else:
            row = ledger.amend(
                args.id,
                author=args.author,
                reason=args.reason,
                remark=getattr(args, "remark", None),
                cause=getattr(args, "cause", None),
                void=args.ledger_command == "void",
            )
        ledger.store.close()
        print(f"{row.event_id} revision {row.revision} recorded at {_fmt(time.time(), tz)}")
        return 0
    except LedgerError as exc:
        print(f"anbo ledger: {exc}", file=sys.stderr)
        return 1
