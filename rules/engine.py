"""The alert engine: rules × targets → alert states → transitions, once per tick.

Call :meth:`Engine.evaluate` with every configured target (a :class:`TargetView` each),
the monotonic ``now`` and the wall-clock ``wall``. It returns the
:class:`~rules.model.Transition` list of that tick; :meth:`Engine.active` returns the
current pending and firing alerts.

State machine per (rule, target)
--------------------------------
``inactive → pending`` when ``expr`` is true; ``pending → firing`` when it has been true
for ``for``; ``pending → inactive`` when it is false before that. A firing alert
resolves when ``clear`` (default ``not expr``) has held for ``clear_for`` and then
``keep_firing_for`` has passed without ``expr`` coming back: ``firing → resolved``,
after which the (rule, target) is inactive again. With ``for: 0`` an alert goes
``inactive → firing`` in one step.

Unknown never decides
---------------------
An unknown result (missing measurement, no parameter, …) freezes the state: nothing
fires or resolves, and the timers do not run while it lasts. A target whose last
telemetry is older than ``stale_after`` (or that has never reported, once the engine
has run ``stale_after``) raises ``TelemetryLost`` (critical, outage class none: we
cannot see, which is not "off air") and every other rule on it counts as unknown.

A target never heard from is judged only once data has had a chance to arrive:
``stale_after`` after the engine's first tick, or, when the caller says when listening
began (:meth:`Engine.set_listening`: the broker subscription), ``stale_after`` after
that. Until then its telemetry is *unknown*, not fresh: a ``TelemetryLost`` restored
from a previous run neither resolves nor is re-raised (no false all-clear after a
restart), and it resolves only when the target is actually heard from.

Notification
------------
A firing alert is *suppressed*, i.e. recorded but not notified, when

* the target is in a maintenance window (``maintenance``),
* an inhibit rule's source alert fires on the same service (``inhibited``), or
* the (rule, target) is flapping: more than ``flap_threshold`` firing/resolved
  transitions within ``flap_window``; one ``Flapping`` alert is notified instead, until
  it has been stable for ``flap_window`` (``flapping``).

When a suppression ends while the alert still fires, a ``firing → firing`` transition
with ``notify=True`` delivers it. A resolution is notified exactly when the firing was.
A maintenance window whose planned end passes while an ``outage``-class alert on its
target still fires raises ``MaintenanceOverrun`` (critical; never suppressed by
maintenance or flapping), until no outage-class alert fires on that target.

Vectorization: each rule's ``expr``/``clear``/value are evaluated for all its targets
at once on numpy arrays; the per-alert Python work touches only targets whose
condition is true or that already have an alert.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from rules.durations import format_duration
from rules.expr import Column, evaluate, measurement_names, numeric, window_lengths
from rules.history import History
from rules.maintenance import MaintenanceWindow
from rules.model import (
    Alert,
    AlertState,
    MeasurementValue,
    OutageClass,
    Severity,
    SuppressReason,
    TargetView,
    Transition,
)
from rules.schema import Duration, Rule
from rules.templates import render, resolve, slots_of

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "SNAPSHOT_VERSION",
    "Engine",
    "EngineConfig",
    "InhibitRule",
    "SnapshotError",
    "default_inhibit_rules",
]

#: Format version of :meth:`Engine.snapshot`.
SNAPSHOT_VERSION: Final = 1
#: Slack for comparing float durations (seconds).
_EPS: Final = 1e-9

TELEMETRY_LOST: Final = "TelemetryLost"
FLAPPING: Final = "Flapping"
MAINTENANCE_OVERRUN: Final = "MaintenanceOverrun"


class InhibitRule(BaseModel):
    """While a ``source`` alert fires, ``targets`` alerts with equal ``equal`` labels are not notified.

    ``source_severity`` / ``target_severity`` narrow either side to one severity (so a
    critical variant can inhibit the warning variant of the same alert). The inhibition
    lasts ``hold`` beyond the source's resolution: consequences clear after their cause
    (the audio alarms need a few seconds of programme after the carrier returns, the
    quality alarms their own ``clear_for``), and must not be paged as new incidents in
    between. A target still firing after the hold is notified then.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    targets: list[str]
    equal: list[str] = Field(default_factory=lambda: ["target"])
    source_severity: Severity | None = None
    target_severity: Severity | None = None
    #: how long the inhibition outlasts the source (the built-in packs' longest clear_for)
    hold: Duration = 30.0


def default_inhibit_rules() -> list[InhibitRule]:
    """Validity gating for the built-in packs.

    Without a carrier (or, for DTV, without lock) the audio, pilot, RDS and quality
    alarms of the same target are consequences, not separate incidents; a critical
    variant of MerLow/BerHigh/CnLow/VswrHigh/ForwardPowerDrop makes the warning one redundant.
    """
    audio = ["DeadAir", "Hiss", "StuckTone", "AudioClipping", "AudioPhaseReversal"]
    quality = ["MerLow", "BerHigh", "CnLow"]
    rules = [
        InhibitRule(
            source="CarrierLoss",
            targets=[
                *audio,
                "LowRF",
                "Overmodulation",
                "PilotLoss",
                "RdsPiMismatch",
                "MpxPowerHigh",
                "DtvLockLoss",
                *quality,
            ],
        ),
        InhibitRule(source="DtvLockLoss", targets=[*audio, *quality]),
    ]
    for name in [*quality, "VswrHigh", "ForwardPowerDrop"]:
        rules.append(
            InhibitRule(
                source=name,
                targets=[name],
                source_severity=Severity.CRITICAL,
                target_severity=Severity.WARNING,
                # Back from critical to warning is news, not a consequence clearing.
                hold=0.0,
            )
        )
    return rules


DEFAULT_INHIBIT_RULES: Final = tuple(default_inhibit_rules())


class EngineConfig(BaseModel):
    """Engine settings (durations accept ``30s``/``10m`` or seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a target with no telemetry for longer than this raises TelemetryLost
    stale_after: Duration = 30.0
    #: more than this many firing/resolved transitions within ``flap_window`` is flapping
    flap_threshold: int = Field(default=6, ge=1)
    flap_window: Duration = 600.0
    inhibit_rules: list[InhibitRule] = Field(default_factory=default_inhibit_rules)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    #: most samples kept per (target, measurement) for windowed functions
    history_max_samples: int = Field(default=4096, ge=2)
    #: runbook links of the engine's own alerts: base + alert name
    runbook_base: str = "https://anbo.example/runbooks/"


class SnapshotError(ValueError):
    """A snapshot that cannot be restored (wrong version or shape)."""


# --------------------------------------------------------------------------- internals


class _Kind(enum.StrEnum):
    RULE = "rule"
    TELEMETRY = "telemetry_lost"
    FLAPPING = "flapping"
    OVERRUN = "overrun"


@dataclass(frozen=True, slots=True)
class _Spec:
    """What every alert has, rule-based or raised by the engine."""

    id: str
    alertname: str
    severity: Severity
    outage_class: OutageClass
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    runbook_url: str | None
    for_seconds: float = 0.0
    clear_for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    #: the measurements the condition reads, when they are data alone (no window
    #: function): its ``for`` may count from their arrival (``TargetView.data_times``)
    inputs: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Instance:
    kind: _Kind
    spec: _Spec
    target: str
    labels: dict[str, str]
    state: AlertState
    active_since: float
    active_wall: float
    fired_wall: float | None = None
    clear_since: float | None = None
    #: wall time of ``clear_since`` (the clear's onset, for the outage ledger)
    clear_wall: float | None = None
    cleared_at: float | None = None
    frozen_since: float | None = None
    value: float | str | None = None
    notified: bool = False
    #: current suppression (recomputed every tick)
    reason: SuppressReason | None = None
    #: the suppression that kept its firing from being notified
    held_reason: SuppressReason | None = None
    facts: dict[str, object] = field(default_factory=dict)
    #: the annotations last rendered and the values their placeholders had then
    rendered: tuple[tuple[object, ...], dict[str, str]] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.id, self.target)

    @property
    def starts_at(self) -> float:
        return self.fired_wall if self.fired_wall is not None else self.active_wall


@dataclass(slots=True)
class _Event:
    inst: _Instance
    from_state: AlertState
    to_state: AlertState
    ends_at: float | None = None


@dataclass(slots=True)
class _Flap:
    times: deque[float] = field(default_factory=deque)
    flapping: bool = False


class _Tick:
    """One evaluation's targets, with lazily built columns over them."""

    def __init__(self, views: Sequence[TargetView]) -> None:
        self.views = list(views)
        self.n = len(self.views)
        self.names = [v.name for v in self.views]
        self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != self.n:
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"duplicate target names in one evaluation: {', '.join(dupes)}")
        self.match_labels = [{**v.labels, "target": v.name, "kind": v.kind} for v in self.views]
        self.signature = tuple(tuple(sorted(m.items())) for m in self.match_labels)
        self.rows: NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        self._columns: dict[str, Column] = {}
        self._params: dict[tuple[str, float | str | None], Column] = {}

    def column(self, name: str) -> Column:
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = _column([v.measurements.get(name) for v in self.views])
        return col

    def param(self, name: str, default: float | str | None) -> Column:
        key = (name, default)
        col = self._params.get(key)
        if col is None:
            col = self._params[key] = _column([v.params.get(name, default) for v in self.views])
        return col


def _column(values: Sequence[object]) -> Column:
    """A column from Python values: float64 if all are numbers/unknown, else object."""
    has_string = any(isinstance(x, str) for x in values)
    if not has_string:
        try:  # fast path: None becomes NaN, bools 0/1
            return np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    out = np.full(len(values), np.nan)
    for i, x in enumerate(values):
        if x is not None and not isinstance(x, str):
            with contextlib.suppress(TypeError, ValueError):
                out[i] = float(x)  # type: ignore[arg-type]
    if not has_string:
        return out
    obj = np.empty(len(values), dtype=object)
    for i, x in enumerate(values):
        obj[i] = x if isinstance(x, str) else (None if math.isnan(out[i]) else float(out[i]))
    return obj


class _Env:
    """The :class:`rules.expr.EvalEnv` of one rule: the tick's columns at the rule's targets."""

    def __init__(self, tick: _Tick, idx: NDArray[np.intp], history: History, now: float) -> None:
        self.tick = tick
        self.idx = idx
        self.history = history
        self.now = now

    @property
    def size(self) -> int:
        return len(self.idx)

    def measurement(self, name: str) -> Column:
        return self.tick.column(name)[self.idx]

    def param(self, name: str, default: float | str | None) -> Column:
        return self.tick.param(name, default)[self.idx]

    def window(self, func: str, name: str, seconds: float) -> NDArray[np.float64]:
        return self.history.window(func, name, seconds, self.now, self.tick.rows[self.idx])


def _scalar(col: Column, j: int) -> float | str | None:
    x = col[j]
    if isinstance(x, str):
        return x
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


def _plain(value: object) -> MeasurementValue:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        v = float(value)
        return None if math.isnan(v) else v
    return None


# --------------------------------------------------------------------------- engine


class Engine:
    """Evaluates rules over targets each tick; see the module docstring for semantics."""

    def __init__(self, rules: Sequence[Rule], config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.rules = tuple(r for r in rules if r.enabled)
        uids = [r.uid for r in self.rules]
        if len(set(uids)) != len(uids):
            dupes = sorted({u for u in uids if uids.count(u) > 1})
            raise ValueError(f"duplicate rules (same alert, selector and severity): {', '.join(dupes)}")
        self._specs = [self._rule_spec(r) for r in self.rules]
        self._rule_index = {r.uid: i for i, r in enumerate(self.rules)}
        base = self.config.runbook_base
        self._telemetry_spec = _Spec(
            id=TELEMETRY_LOST,
            alertname=TELEMETRY_LOST,
            severity=Severity.CRITICAL,
            outage_class=OutageClass.NONE,
            labels={},
            annotations={
                "summary": "No telemetry from {{ target }}",
                "description": (
                    "anbo has had no telemetry from {{ target }} ({{ labels.service }}) for more than "
                    "{{ stale_after }} (last: {{ age }}). Its other alerts are frozen: they neither "
                    "fire nor resolve until telemetry returns. This says we cannot see the service, "
                    "not that it is off air."
                ),
                "summary_zh": "{{ target }} 无遥测",
                "description_zh": (
                    "anbo 已超过 {{ stale_after }} 未收到 {{ target }}（{{ labels.service }}）的遥测"
                    "（最后一次：{{ age }}）。其他告警被冻结：遥测恢复前既不触发也不恢复。"
                    "这表示无法监看该业务，并不表示它已停播。"
                ),
            },
            runbook_url=base + TELEMETRY_LOST,
        )
        windows: dict[str, float] = {}
        for rule in self.rules:
            for node in (rule.expr, rule.clear, rule.value_expr):
                if node is None:
                    continue
                for name, seconds in window_lengths(node).items():
                    windows[name] = max(windows.get(name, 0.0), seconds)
        self._history = History(windows, self.config.history_max_samples)
        # (spec id) → target → instance; rules by uid, TelemetryLost, Flapping:<id>, MaintenanceOverrun
        self._instances: dict[str, dict[str, _Instance]] = {}
        self._flaps: dict[tuple[str, str], _Flap] = {}
        #: resolved inhibit sources still holding their targets: (instance, resolved at)
        self._released: list[tuple[_Instance, float]] = []
        self._in_maintenance: set[str] = set()
        self._views: dict[str, TargetView] = {}
        #: the previous tick's views (what it knew of each input's arrival)
        self._prev_views: dict[str, TargetView] = {}
        self._match_cache: tuple[tuple[Any, ...], list[NDArray[np.intp]]] | None = None
        self._started: float | None = None
        #: when data could first arrive (see set_listening); "start": the first tick
        self._listening: float | str | None = "start"
        self._now: float | None = None
        #: the previous tick's ``now``: a condition seen true now turned true after it
        self._prev_now: float | None = None
        self._wall: float | None = None
        #: what :meth:`active` returned since the state last changed (several readers a tick)
        self._active: list[Alert] | None = None

    def _rule_spec(self, rule: Rule) -> _Spec:
        annotations = dict(rule.annotations)
        return _Spec(
            id=rule.uid,
            alertname=rule.alert,
            severity=rule.severity,
            outage_class=rule.outage_class,
            labels=rule.labels,
            annotations=annotations,
            # A rule without its own link gets the configured runbook base + its name.
            runbook_url=rule.runbook_url or self.config.runbook_base + rule.alert,
            for_seconds=rule.for_seconds,
            clear_for_seconds=rule.clear_for_seconds,
            keep_firing_for_seconds=rule.keep_firing_for_seconds,
            inputs=frozenset() if window_lengths(rule.expr) else frozenset(measurement_names(rule.expr)),
        )

    # ------------------------------------------------------------------ public API

    def set_maintenance(self, windows: Sequence[MaintenanceWindow]) -> None:
        """Replace the maintenance windows (e.g. after the operator edited them)."""
        self.config = self.config.model_copy(update={"maintenance": list(windows)})

    def set_listening(self, since: float | None) -> None:
        """Monotonic time since when telemetry can arrive (the broker subscription), or None
        while it cannot (not connected). A target never heard from is judged stale only
        ``stale_after`` after this; before, its staleness is unknown. Without a call the
        engine's first tick counts as the start of listening."""
        self._listening = since

    def evaluate(self, targets: Sequence[TargetView], now: float, wall: float) -> list[Transition]:
        """Run one tick over ``targets`` (every configured target, each once).

        ``now`` is monotonic seconds, ``wall`` UNIX seconds. Alerts of targets absent
        from ``targets`` (removed from the configuration) resolve.
        """
        self._active = None
        if self._started is None:
            self._started = now
        self._prev_now = self._now
        self._now, self._wall = now, wall
        tick = _Tick(targets)
        self._prev_views = self._views
        self._views = {v.name: v for v in tick.views}
        tick.rows = self._history.rows_for(tick.names)
        self._history.sample(now, tick.rows, {n: tick.column(n) for n in self._history.names})
        stale, undecided = self._stale_mask(tick, now)
        events: list[_Event] = []

        matched = self._matched(tick)
        instances = self._instances
        for ri, rule in enumerate(self.rules):
            if not matched[ri].size and not instances.get(self._specs[ri].id):
                continue  # selects no target now and has no alert to end: nothing to do
            self._step_rule(ri, rule, matched[ri], tick, stale, now, wall, events)
        self._step_telemetry(tick, stale, undecided, now, wall, events)
        self._step_flapping(events, now, wall)
        in_maintenance = self._maintenance_mask(tick, wall)
        self._step_overrun(tick, in_maintenance, now, wall, events)
        self._suppress(tick, in_maintenance, events, now)
        return self._finalize(events)

    def active(self) -> list[Alert]:
        """Current pending and firing alerts for the Prometheus collector and Alertmanager resends.

        Built once per state change: the evaluator, the console and each scrape ask every
        tick, and rendering the annotations of a few hundred alerts is most of the cost.
        """
        if self._active is None:
            self._active = self._build_active()
        return list(self._active)

    def _build_active(self) -> list[Alert]:
        out: list[Alert] = []
        for inst in self._all_instances():
            out.append(
                Alert(
                    alertname=inst.spec.alertname,
                    target=inst.target,
                    state=inst.state,
                    labels=dict(inst.labels),
                    annotations=self._annotations(inst),
                    runbook_url=inst.spec.runbook_url,
                    severity=inst.spec.severity,
                    outage_class=inst.spec.outage_class,
                    starts_at=inst.starts_at,
                    ends_at=None,
                    value=inst.value,
                    notify=inst.notified and inst.state is AlertState.FIRING,
                    reason=inst.reason,
                    onset=inst.active_wall,
                )
            )
        return out

    # ------------------------------------------------------------------ tick steps

    def _stale_mask(self, tick: _Tick, now: float) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """(stale, undecided): targets whose telemetry is too old or who were never heard
        from once they had the chance; targets never heard from before they had it."""
        assert self._started is not None
        stale_after = self.config.stale_after
        seen = np.array(
            [np.nan if v.last_seen is None else v.last_seen for v in tick.views], dtype=np.float64
        )
        never = np.isnan(seen)
        with np.errstate(invalid="ignore"):
            mask: NDArray[np.bool_] = (now - seen) > stale_after + _EPS
        origin = self._started if self._listening == "start" else self._listening
        if isinstance(origin, float | int) and now - origin >= stale_after - _EPS:
            mask |= never
            return mask, np.zeros_like(never)
        return mask, never

    def _matched(self, tick: _Tick) -> list[NDArray[np.intp]]:
        """Indices of the targets each rule selects (cached while the targets' labels are unchanged)."""
        if self._match_cache is not None and self._match_cache[0] == tick.signature:
            return self._match_cache[1]
        matched = [
            np.array([i for i, labels in enumerate(tick.match_labels) if rule.matches(labels)], dtype=np.intp)
            for rule in self.rules
        ]
        self._match_cache = (tick.signature, matched)
        return matched

    def _step_rule(
        self,
        ri: int,
        rule: Rule,
        idx: NDArray[np.intp],
        tick: _Tick,
        stale: NDArray[np.bool_],
        now: float,
        wall: float,
        events: list[_Event],
    ) -> None:
        spec = self._specs[ri]
        insts = self._instances.setdefault(spec.id, {})
        env = _Env(tick, idx, self._history, now)
        cond = numeric(evaluate(rule.expr, env)).copy()
        clear = 1.0 - cond if rule.clear is None else numeric(evaluate(rule.clear, env)).copy()
        values: Column | None = evaluate(rule.value_expr, env) if rule.value_expr is not None else None
        frozen = stale[idx]
        cond[frozen] = np.nan
        clear[frozen] = np.nan

        position = np.full(tick.n, -1, dtype=np.intp)
        position[idx] = np.arange(len(idx))
        todo = [int(j) for j in np.flatnonzero(cond == 1.0)]
        seen = {tick.names[idx[j]] for j in todo}
        for name in insts:
            i = tick.index.get(name)
            if name not in seen and i is not None and position[i] >= 0:
                todo.append(int(position[i]))
        handled: set[str] = set()
        for j in sorted(todo):
            i = int(idx[j])
            name = tick.names[i]
            handled.add(name)
            value = _scalar(values, j) if values is not None else None
            inst = insts.get(name)
            if inst is None:
                inst = _Instance(
                    kind=_Kind.RULE,
                    spec=spec,
                    target=name,
                    labels=self._labels(spec, tick.views[i]),
                    state=AlertState.INACTIVE,
                    active_since=now,
                    active_wall=wall,
                )
            if value is not None:
                inst.value = value
            since = None
            if inst.state is AlertState.INACTIVE and cond[j] == 1.0:
                since = self._data_since(spec, tick.views[i], now)
            self._advance(inst, insts, float(cond[j]), float(clear[j]), now, wall, events, since)
        self._drop_unmatched(insts, handled, wall, events)

    def _data_since(self, spec: _Spec, view: TargetView, now: float) -> float | None:
        """When a condition first seen true at ``now`` turned true, if the data says: the
        arrival of the newest of its inputs, when one of them is news since the previous
        tick (the condition was not true then). None (count from ``now``) when an input
        has no arrival time (it changes with time itself) or the previous tick already
        had every input as it is now."""
        if self._prev_now is None or not spec.inputs:
            return None
        times = view.data_times
        # What the previous tick saw of this target: an input whose arrival time it already
        # had was judged then. Compared by value, not with the previous tick's time: a
        # message received just before a tick but handled just after it (queued behind
        # the tick on the event loop) arrived before that tick yet is news to this one.
        before = self._prev_views.get(view.name)
        seen: Mapping[str, float] = {} if before is None else before.data_times
        newest = -math.inf
        news = False
        for name in spec.inputs:
            t = times.get(name)
            if t is None or not math.isfinite(t):
                return None
            newest = max(newest, t)
            if seen.get(name) != t:
                news = True
        if not news:
            return None
        return min(newest, now)

    def next_deadline(self) -> float | None:
        """The monotonic time the earliest pending alert's ``for`` runs out (None: none
        pending). The evaluator ticks then, so that an alert whose ``for`` counts from
        its data's arrival fires on time rather than at the next regular tick. It may be
        past already: it ran out while the last tick evaluated (after that tick's ``now``)."""
        best: float | None = None
        for insts in self._instances.values():
            for inst in insts.values():
                if inst.state is AlertState.PENDING and inst.frozen_since is None:
                    due = inst.active_since + inst.spec.for_seconds
                    if best is None or due < best:
                        best = due
        return best

    def _step_telemetry(
        self,
        tick: _Tick,
        stale: NDArray[np.bool_],
        undecided: NDArray[np.bool_],
        now: float,
        wall: float,
        events: list[_Event],
    ) -> None:
        spec = self._telemetry_spec
        insts = self._instances.setdefault(spec.id, {})
        handled: set[str] = set()
        for i in np.flatnonzero(stale | np.array([n in insts for n in tick.names], dtype=bool)):
            view = tick.views[int(i)]
            handled.add(view.name)
            inst = insts.get(view.name)
            if inst is None:
                inst = _Instance(
                    kind=_Kind.TELEMETRY,
                    spec=spec,
                    target=view.name,
                    labels=self._labels(spec, view),
                    state=AlertState.INACTIVE,
                    active_since=now,
                    active_wall=wall,
                )
            inst.value = None if view.last_seen is None else now - view.last_seen
            inst.facts = {
                "stale_after": format_duration(self.config.stale_after),
                "age": "never" if view.last_seen is None else format_duration(round(now - view.last_seen)),
            }
            # never heard from, before it could be: unknown (a restored alert holds)
            s = math.nan if undecided[i] else 1.0 if stale[i] else 0.0
            self._advance(inst, insts, s, 1.0 - s, now, wall, events)
        self._drop_unmatched(insts, handled, wall, events)

    def _advance(
        self,
        inst: _Instance,
        insts: dict[str, _Instance],
        cond: float,
        clear: float,
        now: float,
        wall: float,
        events: list[_Event],
        since: float | None = None,
    ) -> None:
        """One step of the state machine; ``cond``/``clear`` are 1.0, 0.0 or NaN (unknown).

        ``since``: when a condition seen true for the first time turned true (monotonic,
        at most ``now``), if the data says; else ``now``."""
        spec = inst.spec
        if inst.state is AlertState.INACTIVE:
            if cond != 1.0:
                return
            insts[inst.target] = inst
            start = now if since is None else since
            inst.active_since, inst.active_wall = start, wall - (now - start)
            if spec.for_seconds <= _EPS or now - start + _EPS >= spec.for_seconds:
                self._fire(inst, wall, AlertState.INACTIVE, events)
            else:
                inst.state = AlertState.PENDING
                events.append(_Event(inst, AlertState.INACTIVE, AlertState.PENDING))
            return
        if inst.state is AlertState.PENDING:
            if math.isnan(cond):
                _freeze(inst, now)
                return
            _thaw(inst, now)
            if cond == 0.0:
                del insts[inst.target]
                events.append(_Event(inst, AlertState.PENDING, AlertState.INACTIVE))
                inst.state = AlertState.INACTIVE
            elif now - inst.active_since + _EPS >= spec.for_seconds:
                self._fire(inst, wall, AlertState.PENDING, events)
            return
        # firing
        if inst.cleared_at is None:
            if math.isnan(clear):
                _freeze(inst, now)
                return
            _thaw(inst, now)
            if clear != 1.0:
                inst.clear_since = inst.clear_wall = None
                return
            if inst.clear_since is None:
                inst.clear_since, inst.clear_wall = now, wall
            if now - inst.clear_since + _EPS < spec.clear_for_seconds:
                return
            inst.cleared_at = now
        else:
            if math.isnan(cond):
                _freeze(inst, now)
                return
            _thaw(inst, now)
            if cond == 1.0:
                inst.cleared_at = inst.clear_since = inst.clear_wall = None
                return
        if now - inst.cleared_at + _EPS >= spec.keep_firing_for_seconds:
            self._resolve(inst, insts, wall, events)

    def _fire(self, inst: _Instance, wall: float, from_state: AlertState, events: list[_Event]) -> None:
        inst.state = AlertState.FIRING
        inst.fired_wall = wall
        inst.clear_since = inst.cleared_at = inst.clear_wall = None
        events.append(_Event(inst, from_state, AlertState.FIRING))

    def _resolve(
        self, inst: _Instance, insts: dict[str, _Instance], wall: float, events: list[_Event]
    ) -> None:
        insts.pop(inst.target, None)
        if inst.state is AlertState.FIRING:
            events.append(_Event(inst, AlertState.FIRING, AlertState.RESOLVED, ends_at=wall))
            inst.state = AlertState.RESOLVED
        else:
            events.append(_Event(inst, inst.state, AlertState.INACTIVE))
            inst.state = AlertState.INACTIVE

    def _drop_unmatched(
        self, insts: dict[str, _Instance], handled: set[str], wall: float, events: list[_Event]
    ) -> None:
        """Alerts whose target is gone or no longer selected end now."""
        for name in [n for n in insts if n not in handled]:
            self._resolve(insts[name], insts, wall, events)

    def _step_flapping(self, events: list[_Event], now: float, wall: float) -> None:
        cfg = self.config
        horizon = now - cfg.flap_window + _EPS
        for ev in list(events):
            inst = ev.inst
            if inst.kind not in (_Kind.RULE, _Kind.TELEMETRY):
                continue
            if ev.to_state not in (AlertState.FIRING, AlertState.RESOLVED):
                continue
            flap = self._flaps.setdefault(inst.key, _Flap())
            flap.times.append(now)
            while flap.times and flap.times[0] < horizon:
                flap.times.popleft()
            if not flap.flapping and len(flap.times) > cfg.flap_threshold:
                flap.flapping = True
                self._start_flapping(inst, len(flap.times), now, wall, events)
        for key, flap in list(self._flaps.items()):
            while flap.times and flap.times[0] < horizon:
                flap.times.popleft()
            if flap.flapping:
                finst = self._instances.get(f"{FLAPPING}:{key[0]}", {}).get(key[1])
                if finst is not None:
                    finst.value = float(len(flap.times))
                if not flap.times:
                    flap.flapping = False
                    if finst is not None:
                        self._resolve(finst, self._instances[f"{FLAPPING}:{key[0]}"], wall, events)
            if not flap.flapping and not flap.times:
                del self._flaps[key]

    def _flapping_spec(self, underlying: _Spec) -> _Spec:
        return _Spec(
            id=f"{FLAPPING}:{underlying.id}",
            alertname=FLAPPING,
            severity=Severity.WARNING,
            outage_class=OutageClass.NONE,
            labels={},
            annotations={
                "summary": "{{ flapping_alertname }} on {{ target }} is flapping",
                "description": (
                    "{{ flapping_alertname }} ({{ flapping_severity }}) changed state {{ value }} times "
                    "within {{ window }}. Its notifications are held until it has been stable for "
                    "{{ window }}; look at the service directly."
                ),
                "summary_zh": "{{ target }} 的 {{ flapping_alertname }} 频繁抖动",
                "description_zh": (
                    "{{ flapping_alertname }}（{{ flapping_severity }}）在 {{ window }} 内状态变化 "
                    "{{ value }} 次。稳定 {{ window }} 之前暂停其通知；请直接查看该业务。"
                ),
            },
            runbook_url=self.config.runbook_base + FLAPPING,
        )

    def _start_flapping(
        self, inst: _Instance, count: int, now: float, wall: float, events: list[_Event]
    ) -> None:
        spec = self._flapping_spec(inst.spec)
        labels = dict(inst.labels)
        labels.update(
            alertname=FLAPPING,
            severity=spec.severity.value,
            flapping_alertname=inst.spec.alertname,
            flapping_severity=inst.spec.severity.value,
        )
        finst = _Instance(
            kind=_Kind.FLAPPING,
            spec=spec,
            target=inst.target,
            labels=labels,
            state=AlertState.INACTIVE,
            active_since=now,
            active_wall=wall,
            value=float(count),
        )
        finst.facts = self._flapping_facts(inst.spec)
        insts = self._instances.setdefault(spec.id, {})
        insts[inst.target] = finst
        self._fire(finst, wall, AlertState.INACTIVE, events)

    def _flapping_facts(self, underlying: _Spec) -> dict[str, object]:
        return {
            "flapping_alertname": underlying.alertname,
            "flapping_severity": underlying.severity.value,
            "window": format_duration(self.config.flap_window),
        }

    def _maintenance_mask(self, tick: _Tick, wall: float) -> NDArray[np.bool_]:
        mask = np.zeros(tick.n, dtype=bool)
        for window in self.config.maintenance:
            if not window.active(wall):
                continue
            for i, view in enumerate(tick.views):
                if not mask[i] and window.applies_to(view.name, view.labels):
                    mask[i] = True
        return mask

    def _overrun_spec(self) -> _Spec:
        return _Spec(
            id=MAINTENANCE_OVERRUN,
            alertname=MAINTENANCE_OVERRUN,
            severity=Severity.CRITICAL,
            outage_class=OutageClass.NONE,
            labels={},
            annotations={
                "summary": "Maintenance on {{ target }} overran its planned end",
                "description": (
                    "The maintenance window of {{ target }} ({{ labels.service }}) has ended but "
                    "{{ alerts }} still firing: the service is still off air."
                ),
                "summary_zh": "{{ target }} 检修超过计划结束时间",
                "description_zh": (
                    "{{ target }}（{{ labels.service }}）的检修窗口已结束，但仍有告警 "
                    "{{ alerts }}：该业务仍未恢复播出。"
                ),
            },
            runbook_url=self.config.runbook_base + MAINTENANCE_OVERRUN,
        )

    def _step_overrun(
        self, tick: _Tick, in_maintenance: NDArray[np.bool_], now: float, wall: float, events: list[_Event]
    ) -> None:
        outage: dict[str, list[str]] = {}
        for inst in self._all_instances():
            if inst.state is AlertState.FIRING and inst.spec.outage_class.off_air:
                outage.setdefault(inst.target, []).append(inst.spec.alertname)
        spec = self._overrun_spec()
        insts = self._instances.setdefault(spec.id, {})
        for i, view in enumerate(tick.views):
            ended = view.name in self._in_maintenance and not in_maintenance[i]
            if ended and view.name in outage and view.name not in insts:
                inst = _Instance(
                    kind=_Kind.OVERRUN,
                    spec=spec,
                    target=view.name,
                    labels=self._labels(spec, view),
                    state=AlertState.INACTIVE,
                    active_since=now,
                    active_wall=wall,
                )
                insts[view.name] = inst
                self._fire(inst, wall, AlertState.INACTIVE, events)
        for name, inst in list(insts.items()):
            names = outage.get(name)
            if names is None:
                self._resolve(inst, insts, wall, events)
            else:
                unique = sorted(set(names))
                inst.facts = {"alerts": ", ".join(unique) + (" is" if len(unique) == 1 else " are")}
        self._in_maintenance = {name for i, name in enumerate(tick.names) if in_maintenance[i]}

    def _suppress(
        self, tick: _Tick, in_maintenance: NDArray[np.bool_], events: Sequence[_Event], now: float
    ) -> None:
        """Recompute every active alert's suppression reason."""
        active = list(self._all_instances())
        sources: dict[str, list[tuple[_Instance, float]]] = {}
        for inst in active:
            if inst.state is AlertState.FIRING:
                sources.setdefault(inst.spec.alertname, []).append((inst, math.inf))
        # Sources that resolved recently keep inhibiting for their rule's hold.
        self._released += [(ev.inst, now) for ev in events if ev.to_state is AlertState.RESOLVED]
        longest = max((rule.hold for rule in self.config.inhibit_rules), default=0.0)
        self._released = [(inst, t) for inst, t in self._released if now - t < longest]
        for inst, resolved_at in self._released:
            sources.setdefault(inst.spec.alertname, []).append((inst, resolved_at))
        for inst in active:
            reason: SuppressReason | None = None
            i = tick.index.get(inst.target)
            if inst.kind is not _Kind.OVERRUN and i is not None and in_maintenance[i]:
                reason = SuppressReason.MAINTENANCE
            elif self._inhibited(inst, sources, now):
                reason = SuppressReason.INHIBITED
            elif inst.kind in (_Kind.RULE, _Kind.TELEMETRY):
                flap = self._flaps.get(inst.key)
                if flap is not None and flap.flapping:
                    reason = SuppressReason.FLAPPING
            inst.reason = reason
            if reason is not None and not inst.notified:
                inst.held_reason = reason

    def _inhibited(
        self, inst: _Instance, sources: Mapping[str, list[tuple[_Instance, float]]], now: float
    ) -> bool:
        """Whether a firing source, or one resolved less than its rule's hold ago, inhibits ``inst``."""
        name = inst.spec.alertname
        for rule in self.config.inhibit_rules:
            if name not in rule.targets:
                continue
            if rule.target_severity is not None and inst.spec.severity is not rule.target_severity:
                continue
            for src, resolved_at in sources.get(rule.source, ()):
                if src is inst or now - resolved_at >= rule.hold:
                    continue
                if rule.source_severity is not None and src.spec.severity is not rule.source_severity:
                    continue
                if all(src.labels.get(label) == inst.labels.get(label) for label in rule.equal):
                    return True
        return False

    def _finalize(self, events: list[_Event]) -> list[Transition]:
        out: list[Transition] = []
        touched: set[tuple[str, str]] = set()
        for ev in events:
            inst = ev.inst
            touched.add(inst.key)
            notify = False
            reason: SuppressReason | None = None
            if ev.to_state is AlertState.FIRING:
                notify = inst.reason is None
                reason = inst.reason
                inst.notified = notify
                if not notify:
                    inst.held_reason = inst.reason
            elif ev.to_state is AlertState.RESOLVED:
                notify = inst.notified
                reason = None if notify else (inst.held_reason or inst.reason)
                inst.notified = False
            out.append(self._transition(inst, ev.from_state, ev.to_state, ev.ends_at, notify, reason))
        for inst in self._all_instances():
            if (
                inst.state is AlertState.FIRING
                and not inst.notified
                and inst.reason is None
                and inst.key not in touched
            ):
                inst.notified = True
                out.append(self._transition(inst, AlertState.FIRING, AlertState.FIRING, None, True, None))
        return out

    # ------------------------------------------------------------------ helpers

    def _all_instances(self) -> Iterator[_Instance]:
        for insts in self._instances.values():
            yield from insts.values()

    @staticmethod
    def _labels(spec: _Spec, view: TargetView) -> dict[str, str]:
        labels = dict(view.labels)
        labels["target"] = view.name
        labels["kind"] = view.kind
        labels.update(spec.labels)
        labels["alertname"] = spec.alertname
        labels["severity"] = spec.severity.value
        return labels

    def _annotations(self, inst: _Instance) -> dict[str, str]:
        view = self._views.get(inst.target)
        spec = inst.spec
        facts: dict[str, object] = {
            "alertname": spec.alertname,
            "severity": spec.severity.value,
            "outage_class": spec.outage_class.value,
            "for": format_duration(spec.for_seconds),
            "value": inst.value,
            "target": inst.target,
            **inst.facts,
        }
        measurements: Mapping[str, object] = view.measurements if view is not None else {}
        params: Mapping[str, object] = view.params if view is not None else {}
        # Rendered again only when a value they show changed: most alerts read the same
        # from one tick to the next, and every active alert is asked for on every tick.
        seen = tuple(
            resolve(ns, name, facts, inst.labels, measurements, params)
            for ns, name in slots_of(tuple(spec.annotations.values()))
        )
        if inst.rendered is not None and inst.rendered[0] == seen:
            return inst.rendered[1]
        out = {
            name: render(text, facts=facts, labels=inst.labels, measurements=measurements, params=params)
            for name, text in spec.annotations.items()
        }
        if spec.runbook_url:
            out["runbook_url"] = spec.runbook_url
        inst.rendered = (seen, out)
        return out

    def _transition(
        self,
        inst: _Instance,
        from_state: AlertState,
        to_state: AlertState,
        ends_at: float | None,
        notify: bool,
        reason: SuppressReason | None,
    ) -> Transition:
        return Transition(
            alertname=inst.spec.alertname,
            target=inst.target,
            from_state=from_state,
            to_state=to_state,
            labels=dict(inst.labels),
            annotations=self._annotations(inst),
            runbook_url=inst.spec.runbook_url,
            severity=inst.spec.severity,
            outage_class=inst.spec.outage_class,
            starts_at=inst.starts_at,
            ends_at=ends_at,
            value=inst.value,
            notify=notify,
            reason=reason,
            onset=inst.active_wall,
            clear_onset=inst.clear_wall if to_state is AlertState.RESOLVED else None,
        )

    # ------------------------------------------------------------------ persistence

    def carry_history(self, old: Engine) -> int:
        """Take over ``old``'s history of windowed measurements (rules reloaded on SIGHUP).

        Without it every ``avg_over``/``min_over``/``max_over``/``changes_over`` window
        would start empty after a reload. The inhibit holds in progress (sources resolved
        less than their ``hold`` ago) are carried too. Returns the number of samples carried.
        """
        self._released = list(old._released)
        return self._history.carry_over(old._history)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serializable alert state as of the last evaluation (ages in seconds, wall times)."""
        now, wall = self._now, self._wall
        if now is None or wall is None:
            return {
                "version": SNAPSHOT_VERSION,
                "wall": None,
                "instances": [],
                "flaps": [],
                "in_maintenance": [],
            }

        def age(t: float | None) -> float | None:
            return None if t is None else now - t

        instances = []
        for inst in self._all_instances():
            instances.append(
                {
                    "kind": inst.kind.value,
                    "id": inst.spec.id,
                    "target": inst.target,
                    "state": inst.state.value,
                    "labels": dict(inst.labels),
                    "active_age": age(inst.active_since),
                    "active_wall": inst.active_wall,
                    "fired_wall": inst.fired_wall,
                    "clear_age": age(inst.clear_since),
                    "clear_wall": inst.clear_wall,
                    "cleared_age": age(inst.cleared_at),
                    "frozen_age": age(inst.frozen_since),
                    "value": _plain(inst.value),
                    "notified": inst.notified,
                    "held_reason": inst.held_reason.value if inst.held_reason is not None else None,
                    "facts": {k: v for k, v in inst.facts.items() if isinstance(v, str | int | float)},
                }
            )
        flaps = [
            {"id": key[0], "target": key[1], "ages": [now - t for t in flap.times], "flapping": flap.flapping}
            for key, flap in self._flaps.items()
        ]
        return {
            "version": SNAPSHOT_VERSION,
            "wall": wall,
            "instances": instances,
            "flaps": flaps,
            "in_maintenance": sorted(self._in_maintenance),
        }

    def restore(self, snapshot: Mapping[str, Any], now: float, wall: float, tolerance: float) -> int:
        """Take over the alert state of a previous run; return how many alerts were restored.

        Only if the snapshot is at most ``tolerance`` seconds old (by the wall clock):
        firing alerts keep their ``starts_at`` and notified status and are *not*
        announced again; pending ones resume their timers (the downtime counts as
        elapsed). Alerts of rules that no longer exist are dropped. Windowed
        functions start with an empty history. Call before the first
        :meth:`evaluate`. Raises :class:`SnapshotError` on a malformed snapshot.
        """
        try:
            return self._restore(snapshot, now, wall, tolerance)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SnapshotError):
                raise
            raise SnapshotError(f"malformed alert-state snapshot: {exc!r}") from exc

    def _restore(self, snapshot: Mapping[str, Any], now: float, wall: float, tolerance: float) -> int:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"unsupported snapshot version {snapshot.get('version')!r}")
        snap_wall = snapshot.get("wall")
        if snap_wall is None:
            return 0
        elapsed = wall - float(snap_wall)
        if not (-tolerance <= elapsed <= tolerance):
            return 0
        elapsed = max(0.0, elapsed)
        self._started = now if self._started is None else self._started
        self._now, self._wall = now, wall

        def since(value: object) -> float | None:
            return None if value is None else now - (float(value) + elapsed)  # type: ignore[arg-type]

        restored = 0
        for item in snapshot["instances"]:
            kind = _Kind(item["kind"])
            spec = self._spec_for(kind, str(item["id"]))
            if spec is None:
                continue
            state = AlertState(item["state"])
            if state not in (AlertState.PENDING, AlertState.FIRING):
                continue
            active_since = since(item["active_age"])
            held = item.get("held_reason")
            inst = _Instance(
                kind=kind,
                spec=spec,
                target=str(item["target"]),
                labels={str(k): str(v) for k, v in item["labels"].items()},
                state=state,
                active_since=now if active_since is None else active_since,
                active_wall=float(item["active_wall"]),
                fired_wall=None if item.get("fired_wall") is None else float(item["fired_wall"]),
                clear_since=since(item.get("clear_age")),
                clear_wall=None if item.get("clear_wall") is None else float(item["clear_wall"]),
                cleared_at=since(item.get("cleared_age")),
                frozen_since=since(item.get("frozen_age")),
                value=item.get("value"),
                notified=bool(item.get("notified", False)),
                held_reason=None if held is None else SuppressReason(held),
                facts=dict(item.get("facts", {})),
            )
            self._instances.setdefault(spec.id, {})[inst.target] = inst
            restored += 1
        for item in snapshot.get("flaps", []):
            key = (str(item["id"]), str(item["target"]))
            times = sorted(now - (float(a) + elapsed) for a in item["ages"])
            self._flaps[key] = _Flap(deque(times), bool(item["flapping"]))
        self._in_maintenance = {str(n) for n in snapshot.get("in_maintenance", [])}
        self._active = None
        return restored

    def _spec_for(self, kind: _Kind, spec_id: str) -> _Spec | None:
        if kind is _Kind.RULE:
            i = self._rule_index.get(spec_id)
            return None if i is None else self._specs[i]
        if kind is _Kind.TELEMETRY:
            return self._telemetry_spec
        if kind is _Kind.OVERRUN:
            return self._overrun_spec()
        underlying_id = spec_id.removeprefix(f"{FLAPPING}:")
        if underlying_id == TELEMETRY_LOST:
            return self._flapping_spec(self._telemetry_spec)
        i = self._rule_index.get(underlying_id)
        return None if i is None else self._flapping_spec(self._specs[i])


def _freeze(inst: _Instance, now: float) -> None:
    """Unknown: hold the state; the time until the next known tick will not count."""
    if inst.frozen_since is None:
        inst.frozen_since = now


def _thaw(inst: _Instance, now: float) -> None:
    """Known again: shift the timers by the time spent unknown."""
    if inst.frozen_since is None:
        return
    gap = now - inst.frozen_since
    inst.active_since += gap
    if inst.clear_since is not None:
        inst.clear_since += gap
    if inst.cleared_at is not None:
        inst.cleared_at += gap
    inst.frozen_since = None
