"""Run a scenario through anbo's own pipeline and rules, broker-less and faster than real time,
and check the alerts against the scenario's expectations.

The simulator's messages go straight into :class:`monitor.pipeline.Pipeline` (routing,
strict decoding, sequence accounting) and the :class:`monitor.evaluation.Evaluator`
(probes, rule engine) with fake clocks that follow scenario time: an evaluation tick
every ``[probes] tick`` of simulated time, the wall clock at ``start + t``. Hours of
station telemetry take minutes (the audio probes dominate: about 15 ms per target and
second of 48 kHz stereo audio on one core).

:func:`verify` compares what fired with the scenario's ``expect`` and ``expect_counts``;
the same check serves runs against the real daemon (see :class:`TransitionRecorder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import structlog

from monitor.ebfleet import EbMonitor
from monitor.evaluation import Evaluator
from monitor.ledger import Ledger
from monitor.pipeline import Pipeline
from monitor.settings import Settings
from monitor.stats import Result, Stats
from rules import AlertState, Transition
from simulator.scenario import CounterExpectation, Scenario
from simulator.station import SimOptions, StationSimulator

__all__ = [
    "Episode",
    "RunResult",
    "TransitionRecorder",
    "Verdict",
    "counts_from",
    "run_accelerated",
    "verify",
]

log = structlog.get_logger(__name__)

#: Monotonic clock origin of accelerated runs (any value works; a large one catches
#: code that confuses it with zero).
MONO0 = 10_000.0


@dataclass(slots=True)
class Episode:
    """One alert from the moment it fired until it resolved (scenario times)."""

    alert: str
    target: str
    severity: str
    fired_at: float
    reason: str | None
    resolved_at: float | None = None
    #: Whether Alertmanager was told at some point (suppressed alerts may be delivered later).
    notified: bool = False

    def describe(self) -> str:
        end = f"resolved at {self.resolved_at:.1f} s" if self.resolved_at is not None else "still firing"
        held = f", {self.reason}" if self.reason else ""
        return f"{self.alert}/{self.severity} on {self.target}: fired at {self.fired_at:.1f} s{held}, {end}"


class TransitionRecorder:
    """Turns the engine's transitions into episodes (and remembers pending alerts).

    ``clock`` gives the scenario time of a transition; call :meth:`add` with each tick's
    transitions, in order.
    """

    def __init__(self) -> None:
        self.episodes: list[Episode] = []
        self.pending: list[tuple[str, str, float]] = []
        self._open: dict[tuple[str, str, str], Episode] = {}

    def add(self, transitions: Iterable[Transition], t: float) -> None:
        for tr in transitions:
            key = (tr.alertname, tr.target, tr.severity.value)
            if tr.to_state is AlertState.PENDING:
                self.pending.append((tr.alertname, tr.target, t))
            elif tr.to_state is AlertState.FIRING:
                ep = self._open.get(key)
                if ep is None or tr.from_state is not AlertState.FIRING:
                    ep = Episode(
                        tr.alertname, tr.target, tr.severity.value, t, tr.reason.value if tr.reason else None
                    )
                    self._open[key] = ep
                    self.episodes.append(ep)
                ep.notified = ep.notified or tr.notify
            elif tr.to_state is AlertState.RESOLVED:
                ep = self._open.pop(key, None)
                if ep is not None:
                    ep.resolved_at = t


@dataclass(slots=True)
class RunResult:
    """What an accelerated run produced."""

    scenario: Scenario
    episodes: list[Episode]
    pending: list[tuple[str, str, float]]
    pipeline: Pipeline
    stats: Stats
    evaluator: Evaluator
    messages: int
    simulated: float

    def count(self, c: CounterExpectation) -> int:
        return counts_from(self.pipeline, self.stats)(c)


def counts_from(pipeline: Pipeline, stats: Stats) -> Callable[[CounterExpectation], int]:
    """A counter lookup over a pipeline's stream counters and its message statistics."""

    def count(c: CounterExpectation) -> int:
        if c.counter in ("rejected", "dropped"):
            result = Result.REJECTED if c.counter == "rejected" else Result.DROPPED
            return stats.count(result, c.reason or "")
        target = pipeline.targets.get(c.target or "")
        stream = target.streams.get(c.stream or "") if target is not None else None
        if stream is None:
            return 0
        return int(stream.seq.missing if c.counter == "outstanding" else getattr(stream, c.counter))

    return count


async def run_accelerated(
    settings: Settings,
    scenario: Scenario,
    options: SimOptions,
    *,
    until: float | None = None,
    on_tick: Callable[[float, list[Transition]], None] | None = None,
    eb_inventory: bool = True,
    ledger: Ledger | None = None,
) -> RunResult:
    """Feed the scenario's messages to a fresh pipeline and evaluator on simulated time.

    The evaluator ticks every ``settings.probes.tick`` from ``tick`` on; each message is
    handled at its own scenario time. ``until`` stops early. No broker, no files.
    Emergency-broadcast endpoints are monitored as the daemon does with ``[eb]
    inventory``; when the config has none and ``eb_inventory`` is true, with an
    inventory of the simulated fleet (regions at county level: ``r01``, ``r02``…).
    """
    now = 0.0
    start = options.start

    def mono() -> float:
        return MONO0 + now

    def wall() -> float:
        return start + now

    stats = Stats()
    sim = StationSimulator(settings, scenario, options)
    pipeline = Pipeline(settings, stats, wall=wall)
    eb = EbMonitor.from_settings(settings.eb, settings.station.name)
    if eb is None and eb_inventory and sim.eb.n:
        eb = EbMonitor(
            settings.eb.model_copy(update={"region_level": "county"}),
            sim.eb.inventory(),
            settings.station.name,
        )
    pipeline.endpoints = eb
    evaluator = Evaluator(settings, pipeline, state_path=None, eb=eb, ledger=ledger, mono=mono, wall=wall)
    pipeline.consumers.append(evaluator.consume)
    recorder = TransitionRecorder()
    tick = settings.probes.tick
    end = scenario.duration if until is None else min(until, scenario.duration)
    next_tick = tick
    n = 0

    async def run_tick(at: float) -> None:
        nonlocal now
        now = at
        transitions = await evaluator.tick()
        recorder.add(transitions, at)
        if on_tick is not None:
            on_tick(at, transitions)

    for msg in sim.messages(until=end):
        while msg.t >= next_tick:
            await run_tick(next_tick)
            next_tick += tick
        now = msg.t
        pipeline.handle(msg.topic, msg.payload, msg.content_type, msg.user_properties, mono())
        n += 1
    while next_tick <= end + 1e-9:
        await run_tick(next_tick)
        next_tick += tick
    return RunResult(scenario, recorder.episodes, recorder.pending, pipeline, stats, evaluator, n, end)


# --------------------------------------------------------------------------- verification


@dataclass(slots=True)
class Verdict:
    """The outcome of :func:`verify`: problems (empty when the run matched) and notes."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"  ok    {m}" for m in self.matched]
        lines += [f"  note  {n}" for n in self.notes]
        lines += [f"  FAIL  {p}" for p in self.problems]
        return "\n".join(lines)


def verify(
    scenario: Scenario,
    episodes: list[Episode],
    count: Callable[[CounterExpectation], int] | None = None,
    *,
    ended_at: float | None = None,
    slack: float = 0.0,
    ignore: Collection[str] = (),
) -> Verdict:
    """Match the episodes against ``scenario.expect`` one to one, and check ``expect_counts``.

    Each expectation takes the first unmatched episode of its alert, target (and
    severity) that fired at or after its fault's start; it must have fired within
    ``fire_within`` (+ ``slack``), and resolved within ``resolve_within`` (+ ``slack``)
    of the fault's end, or still fire at ``ended_at`` when ``resolves: false``. Every
    episode left over is an unexpected alert. Expectations marked ``pending`` or
    ``known_gap`` are not required; an episode they match is reported as a note.
    Alert names in ``ignore`` are left out entirely.
    """
    v = Verdict()
    ended = scenario.duration if ended_at is None else ended_at
    left = [e for e in episodes if e.alert not in ignore]
    order = sorted(range(len(scenario.expect)), key=lambda i: scenario.fault_of(scenario.expect[i]).at)
    for i in order:
        exp = scenario.expect[i]
        fault = scenario.fault_of(exp)
        label = f"expect[{i}] {exp.alert}{'/' + exp.severity if exp.severity else ''} on {exp.target}"
        candidates = [
            e
            for e in left
            if e.alert == exp.alert
            and e.target == exp.target
            and (exp.severity is None or e.severity == exp.severity)
            and e.fired_at >= fault.at - 1e-6
        ]
        ep = min(candidates, key=lambda e: e.fired_at, default=None)
        if exp.informational:
            why = exp.pending or exp.known_gap
            tag = "pending" if exp.pending else "known gap"
            if ep is not None:
                left.remove(ep)
                v.notes.append(f"{label} ({tag}: {why}) fired after all: {ep.describe()}")
            else:
                v.notes.append(f"{label} not checked ({tag}: {why})")
            continue
        if ep is None:
            v.problems.append(f"{label}: never fired after the fault at {fault.at:g} s")
            continue
        left.remove(ep)
        delay = ep.fired_at - fault.at
        ok = True
        if delay > exp.fire_within + slack + 1e-6:
            v.problems.append(
                f"{label}: fired {delay:.1f} s after the fault started (fire_within {exp.fire_within:g} s)"
            )
            ok = False
        if (ep.reason or "none") != exp.suppressed:
            v.problems.append(
                f"{label}: fired {'as ' + ep.reason if ep.reason else 'notified'}, "
                f"expected {exp.suppressed if exp.suppressed != 'none' else 'notified'}"
            )
            ok = False
        if exp.resolves:
            assert exp.resolve_within is not None
            if ep.resolved_at is None:
                v.problems.append(f"{label}: never resolved (fault ended at {fault.end:g} s)")
                ok = False
            elif ep.resolved_at < fault.end - 1e-6:
                v.problems.append(
                    f"{label}: resolved at {ep.resolved_at:.1f} s, before the fault ended ({fault.end:g} s)"
                )
                ok = False
            elif ep.resolved_at - fault.end > exp.resolve_within + slack + 1e-6:
                v.problems.append(
                    f"{label}: resolved {ep.resolved_at - fault.end:.1f} s after the fault "
                    f"ended (resolve_within {exp.resolve_within:g} s)"
                )
                ok = False
        elif ep.resolved_at is not None and ep.resolved_at <= ended:
            v.problems.append(f"{label}: resolved at {ep.resolved_at:.1f} s; expected it to keep firing")
            ok = False
        if ok:
            v.matched.append(f"{label}: {ep.describe()}")
    for ep in left:
        v.problems.append(f"unexpected alert: {ep.describe()}")
    if count is not None:
        for i, c in enumerate(scenario.expect_counts):
            got = count(c)
            what = (
                f"{c.counter} on {c.target}/{c.stream}" if c.target else f"messages {c.counter} ({c.reason})"
            )
            hi = math.inf if c.max is None else c.max
            if not c.min <= got <= hi:
                bound = f">= {c.min}" if c.max is None else f"{c.min}..{c.max}"
                v.problems.append(f"expect_counts[{i}] {what}: {got}, expected {bound}")
            else:
                v.matched.append(f"expect_counts[{i}] {what}: {got}")
    return v
