"""The demo's live terminal view: services, their levels and states, alerts, events.

Everything is read from the running daemon at render time (on the event loop), the
same state ``/metrics`` exposes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from monitor.daemon import Daemon
from monitor.stats import Result
from rules import AlertState, Transition


@dataclass(slots=True)
class Event:
    at: float
    text: Text


@dataclass(slots=True)
class EventLog:
    """The last events (alerts firing and resolving), newest last."""

    events: deque[Event] = field(default_factory=lambda: deque(maxlen=12))
    fired: int = 0
    resolved: int = 0
    #: How many events have been printed as lines (off a terminal).
    printed: int = 0

    def __call__(self, transitions: list[Transition]) -> None:
        now = time.time()
        for t in transitions:
            if t.to_state is AlertState.FIRING and t.from_state is not AlertState.FIRING:
                self.fired += 1
                style = "bold red" if t.severity.value == "critical" else "yellow"
                note = f" ({t.reason.value}, not notified)" if t.reason is not None else ""
                self.events.append(
                    Event(
                        now,
                        Text.assemble(
                            ("FIRING   ", style),
                            (f"{t.alertname} ", "bold"),
                            f"on {t.target}",
                            (f"  {t.annotations.get('summary', '')}{note}", "dim"),
                        ),
                    )
                )
            elif t.to_state is AlertState.RESOLVED:
                self.resolved += 1
                self.events.append(
                    Event(
                        now,
                        Text.assemble(
                            ("RESOLVED ", "green"),
                            (f"{t.alertname} ", "bold"),
                            f"on {t.target}",
                            (f"  after {max(0.0, (t.ends_at or t.starts_at) - t.starts_at):.0f} s", "dim"),
                        ),
                    )
                )


_DELIVERY_STYLE = {"delivered": "green", "pending": "yellow", "failing": "bold red", "not_sent": "dim"}


def delivery_text(delivery: dict[str, object]) -> Text:
    """An alert's delivery as it is: delivered, pending, failing (why), or not sent (why)."""
    state = str(delivery.get("state"))
    reason = delivery.get("reason")
    label = state.replace("_", " ")
    if reason:
        label += f" ({reason})"
    return Text(label, _DELIVERY_STYLE.get(state, ""))


def _num(value: object, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if isinstance(value, float) else "–"


def _audio_state(m: dict[str, object]) -> Text:
    if m.get("audio_rms_dbfs") is None:
        return Text("no audio", "dim")
    if m.get("hiss") == 1.0:
        return Text("HISS", "bold red")
    if m.get("silence") == 1.0:
        return Text(f"SILENT {_num(m.get('silence_seconds'), '{:.0f}')} s", "bold red")
    if m.get("stuck_tone") == 1.0:
        return Text("STUCK TONE", "bold red")
    if m.get("silence") is None:
        return Text("settling", "dim")
    return Text("programme", "green")


def _eb_table(daemon: Daemon) -> Table | None:
    """Emergency-broadcast regions: online, not yet reported (just started), offline, faulty."""
    eb = daemon.eb
    status = eb.status if eb is not None else None
    if eb is None or status is None:
        return None
    table = Table(expand=True, title="Emergency broadcast", title_justify="left")
    for col in ("region", "endpoints", "online", "not yet reported", "offline", "faulty"):
        table.add_column(col, no_wrap=col == "region")
    for r, region in enumerate(eb.region_names):
        total = int(status.total[r])
        if total == 0:
            continue
        online, waiting = int(status.online[r]), int(status.unreported[r])
        offline, faulty = int(status.offline[r]), int(status.faulty[r])
        table.add_row(
            region,
            str(total),
            Text(f"{online} ({100 * online / total:.0f} %)", "green" if online == total else ""),
            Text(str(waiting), "dim") if waiting else Text("–", "dim"),
            Text(str(offline), "bold red") if offline else Text("0", "green"),
            Text(str(faulty), "bold red") if faulty else Text("0", "green"),
        )
    return table


def render(daemon: Daemon, events: EventLog, header: str) -> Group:
    pipeline = daemon.pipeline
    measurements = daemon.evaluator.measurements
    alerts_by_target: dict[str, list[str]] = {}
    active = daemon.evaluator.engine.active()
    for a in active:
        if a.state is AlertState.FIRING:
            alerts_by_target.setdefault(a.target, []).append(a.alertname)

    services = Table(expand=True, title="Services", title_justify="left")
    columns = ("target", "service", "freq", "RF dBµV", "audio dBFS", "LUFS (3 s)", "programme")
    for col in (*columns, "transmitter", "alerts"):
        services.add_column(col, no_wrap=col in ("target", "freq"))
    for name, target in pipeline.targets.items():
        t = target.settings
        m: dict[str, object] = dict(measurements.get(name, {}))
        rf = target.streams.get("rf")
        rf_level = rf.values.get("rf_level_dbuv") if rf is not None else None
        if t.kind.value == "tx":
            # A transmitter has no programme of its own: its values get their own column.
            status = target.streams.get("status")
            fwd = status.values.get("forward_power_w") if status is not None else None
            transmitter = Text(f"Pf {_num(fwd, '{:.0f}')} W, VSWR {_num(m.get('vswr'), '{:.2f}')}")
            programme = Text("–", "dim")
            level = loud = "–"
        else:
            programme = _audio_state(m)
            transmitter = Text("–", "dim")
            level = _num(m.get("audio_rms_dbfs"))
            loud = _num(m.get("loudness_shortterm_lufs"))
        names = alerts_by_target.get(name, [])
        services.add_row(
            name,
            t.service,
            t.frequency_label or "–",
            _num(rf_level),
            level,
            loud,
            programme,
            transmitter,
            Text(", ".join(names) or "ok", "bold red" if names else "green"),
        )

    tables: list[Table] = [services]
    eb = _eb_table(daemon)
    if eb is not None:
        tables.append(eb)

    alerts = Table(expand=True, title=f"Alerts ({len(active)} active)", title_justify="left")
    for col in ("alert", "target", "severity", "state", "since", "delivery"):
        alerts.add_column(col)
    now = time.time()
    for a in sorted(active, key=lambda a: a.starts_at):
        alerts.add_row(
            a.alertname,
            a.target,
            a.severity.value,
            Text(a.state.value, "bold red" if a.state is AlertState.FIRING else "yellow"),
            f"{max(0.0, now - a.starts_at):.0f} s",
            delivery_text(daemon.delivery(a)),
        )

    log = Text()
    for e in events.events:
        log.append(time.strftime("%H:%M:%S ", time.localtime(e.at)), "dim")
        log.append(e.text)
        log.append("\n")
    stats = daemon.stats
    footer = Text(
        f"messages: {stats.count(Result.ACCEPTED, 'ok')} accepted, "
        f"{sum(n for (r, _), n in stats.messages.items() if r == Result.REJECTED.value)} rejected, "
        f"{sum(n for (r, _), n in stats.messages.items() if r == Result.DROPPED.value)} dropped · "
        f"alerts fired {events.fired}, resolved {events.resolved} · Ctrl-C stops",
        "dim",
    )
    return Group(
        Text(header, "bold"),
        *tables,
        alerts,
        Panel(log or Text("no alerts yet", "dim"), title="Events", title_align="left"),
        footer,
    )
