"""The station console: a live web page for the duty operator, and its JSON API.

Served on the daemon's HTTP listener (see docs/console.md):

- ``/`` the page (Jinja2 template, CSS and JS shipped in this package, no CDN);
- ``/api/v1/status`` everything the page shows, ``/api/v1/services``,
  ``/api/v1/alerts``, ``/api/v1/eb/regions``, ``/api/v1/migrations``,
  ``/api/v1/history`` (the last 15 minutes of each service's main values);
- ``/api/v1/events`` Server-Sent Events: one ``status`` event per evaluation tick.

The console is fed by the evaluator's transition listener once per tick: it reads
the current state (it never blocks the loop), records the bounded history, builds
one JSON snapshot and hands the same bytes to every connected client's bounded
queue; a client too slow to take them loses the oldest (counted).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import structlog
from aiohttp import web
from markdown_it import MarkdownIt

from monitor import __version__
from monitor.console.i18n import messages, negotiate
from monitor.pipeline import Pipeline
from monitor.settings import Settings, TargetKind
from monitor.state import fresh_info, fresh_values
from rules.model import Alert, AlertState, OutageClass

log = structlog.get_logger(__name__)

#: The values shown on a tile, per kind (first ones get a sparkline).
LIVE_VALUES: dict[str, tuple[str, ...]] = {
    TargetKind.FM.value: (
        "rf_level_dbuv",
        "modulation_percent",
        "audio_rms_dbfs",
        "audio_peak_dbfs",
        "loudness_shortterm_lufs",
    ),
    TargetKind.DTV.value: ("rf_level_dbuv", "mer_db", "ber_pre", "lock"),
    TargetKind.TX.value: ("forward_power_w", "reflected_power_w", "vswr", "pa_temp_celsius"),
}
#: The values kept in the history for sparklines, per kind.
HISTORY_VALUES: dict[str, tuple[str, ...]] = {
    TargetKind.FM.value: ("rf_level_dbuv", "audio_rms_dbfs"),
    TargetKind.DTV.value: ("mer_db",),
    TargetKind.TX.value: ("forward_power_w",),
}
STATES = ("on_air", "degraded", "outage", "maintenance", "off_schedule", "no_data")
#: Per-client SSE queue: a client that lags behind this many snapshots loses the oldest.
CLIENT_QUEUE = 4
SSE_KEEPALIVE_S = 15.0


#: The runbooks: copied into the package by a build (setup.py), else docs/runbooks of the
#: source tree (an editable install or a checkout).
_PACKAGED = Path(__file__).resolve().parent / "runbooks"
RUNBOOKS = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "docs" / "runbooks"
_ALERT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def runbook_path(name: str, lang: str) -> Path | None:
    """The runbook file of alert ``name`` in ``lang`` (English when there is no translation)."""
    if not _ALERT_NAME.match(name):
        return None
    for candidate in ([f"{name}.zh.md"] if lang == "zh" else []) + [f"{name}.md"]:
        path = RUNBOOKS / candidate
        if path.is_file():
            return path
    return None


@dataclass(slots=True)
class History:
    """Bounded per-target, per-value history: one point per ``step`` seconds over ``span``."""

    span: float = 900.0
    step: float = 5.0
    points: dict[tuple[str, str], deque[tuple[float, float | None]]] = field(default_factory=dict)

    @property
    def maxlen(self) -> int:
        return max(1, math.ceil(self.span / self.step))

    def record(self, target: str, name: str, wall: float, value: float | None) -> None:
        key = (target, name)
        d = self.points.get(key)
        if d is None:
            d = self.points[key] = deque(maxlen=self.maxlen)
        if d and wall - d[-1][0] < self.step:
            return
        d.append((round(wall, 1), value))

    def forget(self, keep: set[str]) -> None:
        for key in [k for k in self.points if k[0] not in keep]:
            del self.points[key]

    def json(self) -> dict[str, dict[str, list[list[float | None]]]]:
        out: dict[str, dict[str, list[list[float | None]]]] = {}
        for (target, name), d in self.points.items():
            out.setdefault(target, {})[name] = [[t, v] for t, v in d]
        return out


def _num(v: object) -> float | str | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        f = float(v)
        return round(f, 4) if math.isfinite(f) else None
    if isinstance(v, str):
        return v
    return None


def service_state(
    alerts: list[Alert], in_maintenance: bool, has_data: bool, off_schedule: bool = False
) -> str:
    """The tile's state from the target's firing alerts (pending ones do not count).

    Maintenance first, then off schedule (a planned sign-off is neither an outage nor
    missing data: the ledger does not count it and alerts do not page in it)."""
    firing = [a for a in alerts if a.state is AlertState.FIRING]
    if in_maintenance:
        return "maintenance"
    if off_schedule:
        return "off_schedule"
    if any(a.outage_class is OutageClass.OUTAGE for a in firing):
        return "outage"
    if not has_data or any(a.alertname == "TelemetryLost" for a in firing):
        return "no_data"
    if any(a.outage_class is OutageClass.DEGRADED for a in firing):
        return "degraded"
    return "on_air"


class Console:
    """State behind the page and the API; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        pipeline: Callable[[], Pipeline],
        alerts: Callable[[], list[Alert]],
        measurements: Callable[[], Mapping[str, Mapping[str, object]]],
        eb: Callable[[], dict[str, Any] | None],
        migrations: Callable[[], Mapping[str, Mapping[str, object]]],
        broker: Callable[[], dict[str, bool]],
        alertmanager: Callable[[], list[dict[str, Any]] | None],
        outages: Callable[[], list[dict[str, Any]] | None] = lambda: None,
        delivery: Callable[[Alert], dict[str, object]] | None = None,
        runbook_url: Callable[[str], str | None] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._alerts = alerts
        self._measurements = measurements
        self._eb = eb
        self._migrations = migrations
        self._broker = broker
        self._alertmanager = alertmanager
        self._outages = outages
        self._delivery = delivery
        self._runbook_url = runbook_url
        self._wall = wall
        self._mono = mono
        self.history = History()
        self._since: dict[str, tuple[str, float]] = {}
        self._clients: set[asyncio.Queue[bytes]] = set()
        self.dropped_events = 0
        self._snapshot: dict[str, Any] | None = None
        self._services: list[dict[str, Any]] | None = None
        # CommonMark without raw HTML: runbooks are text, not markup to trust.
        self._md = MarkdownIt("commonmark", {"html": False}).enable("table")
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("monitor.console", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
        )

    # -- feeding ----------------------------------------------------------------------
    def on_tick(self, _transitions: object = None) -> None:
        """Evaluator listener: follow each service's state and history, and push the
        status to every connected client.

        The states' ``since`` and the sparklines need every tick; the rest of the
        snapshot (the alert list with its delivery, the EB regions, migrations, recent
        outages) is built for the clients, or on the first request after the tick when
        none is connected.
        """
        self._services = self._track_services()
        self._snapshot = None
        if not self._clients:
            return
        data = (
            b"event: status\ndata: " + json.dumps(self.snapshot(), separators=(",", ":")).encode() + b"\n\n"
        )
        for q in self._clients:
            if q.full():
                q.get_nowait()
                self.dropped_events += 1
            q.put_nowait(data)

    def _track_services(self) -> list[dict[str, Any]]:
        """Each service's state (and since when) and its sparkline values, this tick."""
        wall, now = self._wall(), self._mono()
        settings = self._settings()
        pipeline = self._pipeline()
        stale_after = settings.probes.readings_stale_after
        by_target: dict[str, list[Alert]] = {}
        for a in self._alerts():
            by_target.setdefault(a.target, []).append(a)
        measurements = self._measurements()
        services = []
        for name, target in pipeline.targets.items():
            t = target.settings
            kind = t.kind.value
            values: dict[str, object] = {}
            has_data = False
            for stream in target.streams.values():
                fresh = fresh_values(stream, now, stale_after)
                values.update(fresh)
                values.update(fresh_info(stream, now, stale_after))
                has_data = (
                    has_data
                    or bool(fresh)
                    or (stream.last_rx is not None and now - stream.last_rx <= stale_after)
                )
            values.update(measurements.get(name, {}))
            in_maint = any(
                (not w.targets or name in w.targets) and w.active(wall) for w in settings.maintenance
            )
            off = t.schedule is not None and not t.schedule.on_air(wall)
            state = service_state(by_target.get(name, []), in_maint, has_data, off)
            prev = self._since.get(name)
            if prev is None or prev[0] != state:
                self._since[name] = prev = (state, wall)
            live = {k: _num(values.get(k)) for k in LIVE_VALUES.get(kind, ())}
            for k in HISTORY_VALUES.get(kind, ()):
                v = live.get(k, _num(values.get(k)))
                self.history.record(name, k, wall, v if isinstance(v, float) else None)
            services.append(
                {
                    "name": name,
                    "service": t.service,
                    "kind": kind,
                    "frequency_mhz": t.frequency_mhz,
                    "channel": None if t.channel is None else str(t.channel),
                    "state": state,
                    "since": prev[1],
                    "values": live,
                    "alerts": sorted({a.alertname for a in by_target.get(name, [])}),
                }
            )
        self.history.forget(set(pipeline.targets))
        for gone in [n for n in self._since if n not in pipeline.targets]:
            del self._since[gone]
        return services

    def build(self) -> dict[str, Any]:
        """The whole status as the page and ``/api/v1/status`` show it."""
        if self._services is None:
            self._services = self._track_services()
        services = self._services
        wall = self._wall()
        settings = self._settings()
        alerts = self._alerts()
        sev_rank = {"critical": 0, "warning": 1, "info": 2}
        alert_list: list[dict[str, Any]] = [
            {
                "alertname": a.alertname,
                "target": a.target,
                "service": a.labels.get("service", ""),
                "state": a.state.value,
                "severity": a.severity.value,
                "outage_class": a.outage_class.value,
                "summary": a.annotations.get("summary", ""),
                "summary_zh": a.annotations.get("summary_zh", ""),
                "description": a.annotations.get("description", ""),
                "since": a.starts_at,
                "inhibited": a.reason is not None and a.reason.value == "inhibited",
                "suppressed": None if a.reason is None else a.reason.value,
                "value": _num(a.value),
                "runbook_url": a.runbook_url
                or (self._runbook_url(a.alertname) if self._runbook_url else None),
                # pending / delivered / failing (with the reason) / not_sent (and why)
                "delivery": None if self._delivery is None else self._delivery(a),
            }
            for a in alerts
        ]
        alert_list.sort(key=lambda a: (sev_rank.get(str(a["severity"]), 9), -float(a["since"])))
        migrations = [
            {"name": n, **{k: _num(v) for k, v in m.items()}} for n, m in self._migrations().items()
        ]
        plans = {m.name: m for m in settings.migrations}
        for m in migrations:
            plan = plans.get(str(m["name"]))
            if plan is not None:
                p = plan.plan()
                m["service"] = p.service
                m["old"] = p.label("old")
                m["new"] = p.label("new")
        eb = self._eb()
        broker = self._broker()
        return {
            "generated_at": wall,
            "header": {
                "station": settings.station.name,
                "description": settings.station.description,
                "version": __version__,
                "broker": {"connected": any(broker.values()), "brokers": broker},
                "alertmanager": self._alertmanager(),
            },
            "services": services,
            "alerts": alert_list,
            "eb": eb,
            "migrations": migrations,
            # The outage ledger's newest intervals (monitor/ledger.py); null means
            # "no ledger configured", never "no outages".
            "recent_outages": self._outages(),
        }

    def snapshot(self) -> dict[str, Any]:
        if self._snapshot is None:
            self._snapshot = self.build()
        return self._snapshot

    # -- HTTP -------------------------------------------------------------------------
    def routes(self) -> list[web.AbstractRouteDef]:
        static = resources.files("monitor.console") / "static"
        return [
            web.get("/", self._page),
            web.get("/api/v1/status", self._status),
            web.get("/api/v1/services", self._part("services")),
            web.get("/api/v1/alerts", self._part("alerts")),
            web.get("/api/v1/migrations", self._part("migrations")),
            web.get("/api/v1/eb/regions", self._part("eb")),
            web.get("/api/v1/history", self._history),
            web.get("/api/v1/events", self._events),
            web.get("/runbooks/", self._runbook_index),
            web.get("/runbooks/{name}", self._runbook),
            web.static("/static", str(static)),
        ]

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def _part(self, key: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({key: self.snapshot()[key]})

        return handler

    async def _history(self, request: web.Request) -> web.Response:
        h = self.history
        return web.json_response({"span_seconds": h.span, "step_seconds": h.step, "series": h.json()})

    async def _page(self, request: web.Request) -> web.Response:
        lang = negotiate(
            request.query.get("lang"),
            request.cookies.get("anbo_lang"),
            request.headers.get("Accept-Language"),
        )
        msgs = messages(lang)
        html = self._env.get_template("console.html").render(
            lang=lang,
            t=msgs,
            messages_json=json.dumps(msgs, ensure_ascii=False),
            station=self._settings().station.name,
            version=__version__,
        )
        resp = web.Response(text=html, content_type="text/html")
        if "lang" in request.query and request.query["lang"] == lang:
            resp.set_cookie("anbo_lang", lang, max_age=365 * 86400, samesite="Lax")
        return resp

    def _lang(self, request: web.Request) -> str:
        return negotiate(
            request.query.get("lang"),
            request.cookies.get("anbo_lang"),
            request.headers.get("Accept-Language"),
        )

    async def _runbook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        lang = self._lang(request)
        path = runbook_path(name, lang)
        if path is None:
            raise web.HTTPNotFound(text=f"no runbook for {name!r}\n")
        html = self._env.get_template("runbook.html").render(
            lang=lang,
            t=messages(lang),
            name=name,
            body=self._md.render(path.read_text(encoding="utf-8")),
            station=self._settings().station.name,
        )
        return web.Response(text=html, content_type="text/html")

    async def _runbook_index(self, request: web.Request) -> web.Response:
        lang = self._lang(request)
        names = (
            sorted(p.stem for p in RUNBOOKS.glob("*.md") if "." not in p.stem) if RUNBOOKS.is_dir() else []
        )
        items = "".join(f"- [{n}]({n})\n" for n in names)
        html = self._env.get_template("runbook.html").render(
            lang=lang,
            t=messages(lang),
            name="Runbooks",
            body=self._md.render(items),
            station=self._settings().station.name,
        )
        return web.Response(text=html, content_type="text/html")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self._clients.add(q)
        try:
            first = json.dumps(self.snapshot(), separators=(",", ":")).encode()
            await resp.write(b"retry: 1000\nevent: status\ndata: " + first + b"\n\n")
            while True:
                try:
                    data = await asyncio.wait_for(q.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    data = b": keepalive\n\n"
                if not data:  # close(): the daemon is stopping; the browser reconnects
                    break
                await resp.write(data)
        except ConnectionResetError:
            pass
        finally:
            self._clients.discard(q)
        return resp

    async def close(self, _app: object = None) -> None:
        """End every event stream (aiohttp on_shutdown), so a stop does not wait on them."""
        for q in self._clients:
            while q.full():
                q.get_nowait()
            q.put_nowait(b"")

    @property
    def clients(self) -> int:
        return len(self._clients)
