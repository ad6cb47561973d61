"""The evaluation tick: probes measure, rules decide, alerts go out, state is kept.

Once per ``[probes] tick`` the evaluator

1. takes the audio queued since the last tick from the probe workers (on the loop)
   and evaluates it, in a worker thread when there is a lot of it, so the event loop
   (MQTT keepalives, scrapes, the watchdog) never waits on numpy;
2. builds one :class:`rules.TargetView` per configured target: the readings as
   published, identities (RDS PI...), the probes' measurements, the target's params
   and the monotonic time it was last heard from;
3. runs the rule engine, logs every firing and resolution for the duty operator,
   hands what must be notified to the Alertmanager notifier;
4. saves the engine's state atomically to the state directory when it changed (in
   a thread), so a restart neither forgets nor re-announces a firing alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from monitor.alertmanager import AlertmanagerNotifier, OutgoingAlert
from monitor.ebfleet import EbMonitor
from monitor.ledger import Ledger
from monitor.migrations import MigrationMonitor
from monitor.pipeline import Pipeline
from monitor.settings import Settings, rule_vocabulary
from monitor.state import StreamState, TargetState, fresh_info, fresh_values
from monitor.wire import Batch, Payload, Readings, SampleBlock
from probes.workers import AudioSettings, Measurements, ProbeWorkers, TargetSpec
from rules import (
    Alert,
    AlertState,
    Engine,
    EngineConfig,
    MaintenanceWindow,
    TargetView,
    Transition,
    load_rules,
)

log = structlog.get_logger(__name__)

#: Above this many queued samples a tick's audio is measured in a worker thread.
OFFLOAD_SAMPLES = 200_000
STATE_FILE = "alerts.json"
STATE_VERSION = 1


def audio_settings(settings: Settings) -> AudioSettings:
    p = settings.probes
    return AudioSettings(
        silence_on_dbfs=p.silence_on_dbfs,
        silence_off_dbfs=p.silence_off_dbfs,
        silence_on_s=p.silence_on_s,
        silence_off_s=p.silence_off_s,
        hiss_on_s=p.hiss_on_s,
        tone_on_s=p.tone_on_s,
        deemphasis_us=p.deemphasis_us,
        stale_after_s=p.audio_stale_after,
    )


def engine_config(settings: Settings) -> EngineConfig:
    a = settings.alerting
    extra: dict[str, Any] = {}
    if a.inhibit_rules is not None:
        extra["inhibit_rules"] = a.inhibit_rules
    return EngineConfig(
        stale_after=a.stale_after,
        flap_threshold=a.flap_threshold,
        flap_window=a.flap_window,
        maintenance=[*settings.maintenance, *off_schedule_windows(settings)],
        runbook_base=runbook_base(settings),
        **extra,
    )


def off_schedule_windows(settings: Settings) -> list[MaintenanceWindow]:
    """The hours off each target's broadcast schedule, as windows in which alerts do not page
    (a planned nightly sign-off is not dead air; the ledger does not count them either)."""
    out: list[MaintenanceWindow] = []
    for t in settings.targets:
        if t.schedule is not None:
            out += t.schedule.off_windows(t.name)
    return out


def runbook_base(settings: Settings) -> str:
    """``[alerting] runbook_base_url``, or the console's own ``/runbooks/`` address."""
    base = settings.alerting.runbook_base_url
    if not base:
        host, port = settings.metrics.address
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if settings.metrics.tls_cert_file else "http"
        base = f"{scheme}://{host}:{port}/runbooks/"
    return base if base.endswith("/") else base + "/"


def build_engine(settings: Settings) -> Engine:
    """The rule engine for these settings (built-in packs, then the operator's rules)."""
    ruleset = load_rules(
        settings.alerting.rule_paths,
        builtin=settings.alerting.builtin_rules,
        vocabulary=rule_vocabulary(settings),
    )
    for note in ruleset.notes:
        log.info("rule override", note=note)
    return Engine(ruleset.rules, engine_config(settings))


def previous_generation(path: Path) -> Path:
    """Where :func:`write_json_atomic` keeps the file it replaced (``alerts.json.prev``)."""
    return path.with_name(path.name + ".prev")


def write_json_atomic(path: Path, data: object, *, keep_previous: bool = False) -> None:
    """Write ``data`` as JSON so that a crash leaves either the old or the new file.

    The new content is written and synced beside the old file, then renamed over it.
    With ``keep_previous`` the old file first becomes :func:`previous_generation`, so
    that one good generation is left to fall back to (a crash between the two renames
    leaves only that one, which the reader falls back to).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_generation(path))
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def localized(annotations: Mapping[str, str], language: str) -> dict[str, str]:
    """Annotations in ``language``: ``summary_zh`` replaces ``summary`` (and so on) for
    ``zh``, keeping the English where a rule has no translation; suffixed keys dropped."""
    out = {k: v for k, v in annotations.items() if not k.endswith("_zh")}
    if language != "en":
        suffix = f"_{language}"
        for key, value in annotations.items():
            if key.endswith(suffix) and value:
                out[key.removesuffix(suffix)] = value
    return out


def to_outgoing(alert: Alert | Transition, generator_url: str, language: str = "en") -> OutgoingAlert:
    return OutgoingAlert(
        labels=dict(alert.labels),
        annotations=localized(alert.annotations, language),
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        generator_url=generator_url,
    )


class Evaluator:
    """Owns the probe workers, the rule engine and the tick."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        *,
        state_path: Path | None,
        notifier: AlertmanagerNotifier | None = None,
        eb: EbMonitor | None = None,
        restore_tolerance: float | None = None,
        ledger: Ledger | None = None,
        listening: Callable[[], float | None] | None = None,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.notifier = notifier
        self.state_path = state_path
        self._mono = mono
        self._wall = wall
        self.workers = ProbeWorkers(
            self._specs(settings),
            audio=audio_settings(settings),
            readings_stale_after_s=settings.probes.readings_stale_after,
        )
        self.engine = build_engine(settings)
        self.eb = eb
        self.ledger = ledger
        #: since when telemetry can arrive (the broker subscription; None: not connected).
        #: Targets not heard from since a restart are judged only ``stale_after`` after it.
        self.listening = listening
        self.migrations = MigrationMonitor(settings)
        #: Latest measurements per target (for the collector).
        self.measurements: dict[str, Measurements] = {}
        #: Called with each tick's transitions (the demo's live view listens here).
        self.listeners: list[Callable[[list[Transition]], None]] = []
        self.ticks = 0
        self.progress = mono()
        self.state_writes = 0
        self.state_write_errors = 0
        self._ledger_down_since: float | None = None
        #: Set when the state file was corrupt at start (for /-/ready's details).
        self.state_notice: str | None = None
        self._dirty = False
        self._restore(
            restore_tolerance if restore_tolerance is not None else settings.alerting.restore_tolerance
        )

    @staticmethod
    def _specs(settings: Settings) -> list[TargetSpec]:
        return [TargetSpec(t.name, t.kind.value) for t in settings.targets]

    # -- input: the pipeline's consumer ---------------------------------------------------
    def consume(self, target: TargetState, stream: StreamState, payload: Payload, rx: float) -> None:
        name = target.settings.name
        if isinstance(payload, SampleBlock):
            self.workers.push_block(name, payload.samples, payload.rate, payload.ts, rx)
            if self.migrations.watches(name):
                self.migrations.push_audio(name, payload.samples, payload.rate, payload.ts)
        elif isinstance(payload, Readings):
            self.workers.push_readings(name, payload.values, payload.info, rx)
        elif isinstance(payload, Batch):
            self.workers.push_readings(
                name, {k: float(v[-1]) for k, v in payload.values.items()}, payload.info, rx
            )

    def reconfigure(self, settings: Settings) -> None:
        """SIGHUP: new targets and rules; state of what stays is kept."""
        engine = build_engine(settings)  # raises RuleFileError before anything changes
        snapshot = self.engine.snapshot()
        engine.restore(snapshot, self._mono(), self._wall(), tolerance=float("inf"))
        engine.carry_history(self.engine)
        self.engine = engine
        self.settings = settings
        self.workers.reconfigure(self._specs(settings))
        self.migrations.reconfigure(settings)

    # -- the tick -----------------------------------------------------------------------
    async def run(self) -> None:
        period = self.settings.probes.tick
        next_at = self._mono()
        while True:
            started = self._mono()
            await self.tick()
            now = self._mono()
            if now + 1e-6 >= next_at:  # that was the regular tick: the next one
                next_at += period
                if next_at < now:  # fell behind (a long tick): skip, do not bunch up
                    next_at = now
            # An extra tick when a pending alert's `for` runs out before the next regular
            # one: a `for` counted from its data's arrival ends between ticks, and the
            # alert fires then, not up to a tick late (docs/rules.md, bench/latency.py).
            # A deadline that ran out while this tick evaluated (it started before it) is
            # due now, not at the next regular tick. Tick starts a quarter of a period
            # apart at least: a storm of alerts whose `for` ends at as many instants
            # costs at most three extra ticks a period, each late by less than a quarter
            # of a period.
            wake = next_at
            due = self.engine.next_deadline()
            if due is not None:
                wake = min(next_at, max(due, started + period / 4))
            await asyncio.sleep(max(0.0, wake - self._mono()))

    async def tick(self) -> list[Transition]:
        now, wall = self._mono(), self._wall()
        taken = self.workers.take()
        # Readings-derived measurements here, on the loop: what arrives while the audio is
        # evaluated in a thread waits for the next tick, so each value's arrival time
        # (TargetView.data_times) is that of the data it was computed from.
        measurements = self.workers.derived(now)
        if sum(b.samples.size for blocks in taken.values() for b in blocks) > OFFLOAD_SAMPLES:
            audio = await asyncio.to_thread(self.workers.evaluate_audio, taken, now)
        else:
            audio = self.workers.evaluate_audio(taken, now)
        for name, m in audio.items():
            measurements[name].update(m)
        self.measurements = measurements
        self._log_closed_silences()
        views = self._views(measurements, now)
        views += self.migrations.views(self.pipeline, now, wall)
        if self.eb is not None:
            views += self.eb.evaluate(wall, now)
        if self.listening is not None:
            self.engine.set_listening(self.listening())
        transitions = self.engine.evaluate(views, now, wall)
        self._report(transitions)
        if self.ledger is not None:
            try:
                self.ledger.update(transitions, self.engine.active, wall)
            except Exception:  # the ledger must never stop monitoring
                log.exception("outage ledger update failed", rate_key="ledger_update")
        for listener in self.listeners:
            try:
                listener(transitions)
            except Exception:
                log.exception("transition listener failed", rate_key="listener")
        if self.notifier is not None:
            gen = self.settings.alerting.generator_url
            lang = self.settings.alerting.language
            firing = [
                to_outgoing(a, gen, lang)
                for a in self.engine.active()
                if a.state is AlertState.FIRING and a.notify
            ]
            resolved = [
                to_outgoing(t, gen, lang)
                for t in transitions
                if t.to_state is AlertState.RESOLVED and t.notify
            ]
            self._ledger_alert(firing, resolved, wall, gen)
            self.notifier.update(firing=firing, resolved=resolved)
        if transitions:
            self._dirty = True
        if self._dirty and self.state_path is not None:
            self._dirty = False
            await self._save()
        self.ticks += 1
        self.progress = self._mono()
        return transitions

    def _ledger_alert(
        self, firing: list[OutgoingAlert], resolved: list[OutgoingAlert], wall: float, gen: str
    ) -> None:
        """``LedgerUnavailable`` while the outage ledger cannot be written (raised here, not by a
        rule: it is about anbo itself, not a target)."""
        ledger = self.ledger
        if ledger is None:
            return
        labels = {
            "alertname": "LedgerUnavailable",
            "severity": "warning",
            "station": self.settings.station.name,
        }
        since = ledger.unavailable_since
        if since is not None:
            self._ledger_down_since = since
            firing.append(
                OutgoingAlert(
                    labels=labels,
                    annotations={
                        "summary": f"The outage ledger of {labels['station']} cannot be written",
                        "description": (
                            f"{ledger.store.path}: {ledger.last_error}. Monitoring and alerting go on; "
                            f"{ledger.pending} rows wait in memory and are written when the ledger "
                            "can be written again."
                        ),
                        "runbook_url": runbook_base(self.settings) + "LedgerUnavailable",
                    },
                    starts_at=since,
                    ends_at=None,
                    generator_url=gen,
                )
            )
        elif self._ledger_down_since is not None:
            resolved.append(
                OutgoingAlert(
                    labels=labels,
                    annotations={"summary": f"The outage ledger of {labels['station']} is writable again"},
                    starts_at=self._ledger_down_since,
                    ends_at=wall,
                    generator_url=gen,
                )
            )
            self._ledger_down_since = None

    def _views(self, measurements: dict[str, Measurements], now: float) -> list[TargetView]:
        station = self.settings.station.name
        stale_after = self.settings.probes.readings_stale_after
        views = []
        for name, target in self.pipeline.targets.items():
            t = target.settings
            values: dict[str, float | str | None] = {}
            times: dict[str, float] = {}
            last_seen: float | None = None
            for stream in target.streams.values():
                values.update(fresh_values(stream, now, stale_after))
                values.update(fresh_info(stream, now, stale_after))
                times.update(stream.value_rx)
                times.update(stream.info_rx)
                if stream.last_rx is not None:
                    # Per stream, once seen: AudioLost when only the audio stops.
                    values[f"{stream.name}_age_seconds"] = max(0.0, now - stream.last_rx)
                    if last_seen is None or stream.last_rx > last_seen:
                        last_seen = stream.last_rx
            values.update(measurements.get(name, {}))
            times.update(self.workers.data_times(name))
            labels = {
                **t.labels,
                "station": station,
                "target": name,
                "kind": t.kind.value,
                "service": t.service,
            }
            views.append(
                TargetView(
                    name=name,
                    kind=t.kind.value,
                    labels=labels,
                    params=dict(t.params),
                    measurements=values,
                    last_seen=last_seen,
                    data_times=times,
                )
            )
        return views

    def _report(self, transitions: list[Transition]) -> None:
        for t in transitions:
            if t.to_state is AlertState.FIRING and t.from_state is not AlertState.FIRING:
                log.warning(
                    "alert firing",
                    alert=t.alertname,
                    target=t.target,
                    severity=t.severity.value,
                    outage_class=t.outage_class.value,
                    value=t.value,
                    summary=t.annotations.get("summary", ""),
                    notified=t.notify,
                    suppressed=t.reason.value if t.reason else None,
                )
            elif t.to_state is AlertState.RESOLVED:
                log.info(
                    "alert resolved",
                    alert=t.alertname,
                    target=t.target,
                    severity=t.severity.value,
                    duration_s=round((t.ends_at or t.starts_at) - t.starts_at, 1),
                )

    def _log_closed_silences(self) -> None:
        for name, probe in self.workers.audio.items():
            for start, end, why in probe.take_closed():
                log.info(
                    "silence ended",
                    target=name,
                    start=start,
                    end=end,
                    duration_s=round(end - start, 2),
                    ended_by=why,
                )

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION,
            "station": self.settings.station.name,
            "saved_at": self._wall(),
            "engine": self.engine.snapshot(),
        }

    async def _save(self) -> None:
        assert self.state_path is not None
        try:
            await asyncio.to_thread(write_json_atomic, self.state_path, self._state(), keep_previous=True)
            self.state_writes += 1
        except OSError as exc:
            self.state_write_errors += 1
            self._dirty = True  # try again next tick
            log.error(
                "cannot save alert state", path=str(self.state_path), error=str(exc), rate_key="state_write"
            )

    def save_now(self) -> None:
        """Synchronous save, for shutdown."""
        if self.state_path is None:
            return
        try:
            write_json_atomic(self.state_path, self._state(), keep_previous=True)
            self.state_writes += 1
        except OSError as exc:
            self.state_write_errors += 1
            log.error("cannot save alert state", path=str(self.state_path), error=str(exc))

    def _restore(self, tolerance: float) -> None:
        """Take over the alert state of the previous run: the state file, or, when it is
        missing or corrupt, the previous generation. A corrupt file is renamed aside
        (``alerts.json.corrupt-<UTC time>``), never deleted, and said so in the log and in
        ``/-/ready`` (:attr:`state_notice`)."""
        path = self.state_path
        if path is None:
            return
        prev = previous_generation(path)
        for candidate in (path, prev):
            if not candidate.exists():
                continue
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if data.get("version") != STATE_VERSION or data.get("station") != self.settings.station.name:
                    log.warning(
                        "alert state file is for another version or station; ignored", path=str(candidate)
                    )
                    return
                restored = self.engine.restore(
                    data["engine"], self._mono(), self._wall(), tolerance=tolerance
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._set_aside(candidate, exc)
                self.engine = build_engine(self.settings)  # nothing half-restored
                continue
            log.info("alert state restored", path=str(candidate), alerts=restored)
            if self.state_notice is not None:
                self.state_notice += f"; restored the previous generation {candidate.name} instead"
                log.warning("alert state restored from the previous generation", path=str(candidate))
            return
        if self.state_notice is not None:
            self.state_notice += "; no good generation left: started with no alerts"
            log.error("no readable alert state; starting with no alerts", path=str(path))

    def _set_aside(self, path: Path, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall()))
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.replace(path, aside)
        except OSError as err:
            where = f"could not be renamed aside ({err})"
        else:
            where = f"renamed to {aside.name}"
        note = f"alert state file {path} was unreadable ({exc}); {where}"
        self.state_notice = note if self.state_notice is None else f"{self.state_notice}; {note}"
        log.error("alert state file unreadable; set aside", path=str(path), aside=str(aside), error=str(exc))
