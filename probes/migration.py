"""Migration plans: 700 MHz DTV channel moves and FM re-frequencing (改频), phase by phase.

A plan moves one service from an *old* channel (DTV, a DS channel number) or frequency
(FM, MHz) to a *new* one. Two wall-clock instants (unix seconds) split its life into
three phases:

* ``BEFORE`` (0) — ``now < simulcast_start``: the old channel is the service;
* ``SIMULCAST`` (1) — ``simulcast_start <= now < cutover``: both must be on air and
  carry the same programme;
* ``AFTER`` (2) — ``now >= cutover``: the new channel is the service and the old one
  must be dark (a vacated 700 MHz channel left on air interferes with 5G).

``simulcast_start == cutover`` is a hard cut without simulcast. The phase values are
the ``phase`` measurement of a ``migration`` target (see ``rules/packs/migration.yml``).

Validation (:func:`validate_plans`) reports every problem as one string naming the
plan and the field, e.g. ``migrations[1].new_channel: DS-38 (710–718 MHz) lies in the
700 MHz band being vacated (702–798 MHz)``; the caller prefixes the file.

Two plans *overlap* when two different services would use the same channel or
frequency at the same time. A plan uses its old channel until its cutover and its new
channel from its simulcast start on, so: the same old channel in two plans, or the same
new channel, always overlap; plan A's new channel equal to plan B's old one overlaps
unless A's simulcast starts at or after B's cutover (a chain of moves). Two plans of
the same service must follow each other (A→B, then B→C).

Pure: time is an argument. The UHF channel plan (DS-13…DS-48) and the FM band are
:mod:`probes.channels`, the same the station settings validate with.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from probes.channels import DS_MAX, DS_MIN, ds_channel_lower_edge_mhz, fm_frequency_problem

__all__ = [
    "VACATED_BAND_MHZ",
    "Expectation",
    "MigrationKind",
    "MigrationPlan",
    "Phase",
    "channel_span_mhz",
    "expectation",
    "fm_frequency_problem",
    "is_vacated_channel",
    "phase",
    "phase_array",
    "phases",
    "seconds_to_cutover",
    "seconds_to_cutover_array",
    "vacated_channels",
    "validate_plan",
    "validate_plans",
]

#: The band being cleared for mobile 5G (MHz): DTV channels overlapping it are vacated.
VACATED_BAND_MHZ: Final = (702.0, 798.0)
#: Width of a Chinese UHF DS channel (MHz).
DS_WIDTH_MHZ: Final = 8.0
_PI_RE: Final = re.compile(r"^(?:0x)?([0-9A-Fa-f]{4})$")
_ID_MAX: Final = 0xFFFF


class MigrationKind(enum.StrEnum):
    FM = "fm"
    DTV = "dtv"


class Phase(enum.IntEnum):
    """Where a plan is at one instant; the value is the ``phase`` measurement."""

    BEFORE = 0
    SIMULCAST = 1
    AFTER = 2


class Expectation(enum.StrEnum):
    """What a channel should be doing in a phase."""

    #: must be on air
    ON = "on"
    #: must be dark (vacated)
    OFF = "off"
    #: not judged (e.g. the new channel being tested before simulcast)
    ANY = "any"


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """One service's move. DTV plans give ``old_channel``/``new_channel`` (DS numbers);
    FM plans give ``old_frequency_mhz``/``new_frequency_mhz``. Times are unix seconds.

    Expected identity of the programme on the new channel: ``rds_pi`` (FM, four hex
    digits such as ``"C201"``), ``service_id`` and/or ``ts_id`` (DTV, 0…65535). Each is
    optional; what is not configured is not checked.
    """

    name: str
    service: str
    kind: MigrationKind
    simulcast_start: float
    cutover: float
    old_channel: int | None = None
    new_channel: int | None = None
    old_frequency_mhz: float | None = None
    new_frequency_mhz: float | None = None
    rds_pi: str | None = None
    service_id: int | None = None
    ts_id: int | None = None

    def label(self, which: str) -> str:
        """``"DS-38 (714 MHz)"`` or ``"97.5 MHz"`` for ``which`` = ``"old"`` / ``"new"``."""
        if which not in ("old", "new"):
            raise ValueError(f"which must be 'old' or 'new', got {which!r}")
        if self.kind == MigrationKind.DTV:
            ch = self.old_channel if which == "old" else self.new_channel
            if ch is None:
                return ""
            try:
                lo, hi = channel_span_mhz(ch)
            except ValueError:
                return f"DS-{ch}"
            return f"DS-{ch} ({(lo + hi) / 2:.0f} MHz)"
        f = self.old_frequency_mhz if which == "old" else self.new_frequency_mhz
        return "" if f is None else f"{f:.1f} MHz"


# --------------------------------------------------------------------------- channel plan


def channel_span_mhz(number: int) -> tuple[float, float]:
    """Lower and upper band edge (MHz) of DS channel ``number``, by the Chinese UHF plan."""

    lower = ds_channel_lower_edge_mhz(number)
    return lower, lower + DS_WIDTH_MHZ


def is_vacated_channel(number: int) -> bool:
    """Whether DS channel ``number`` overlaps the 700 MHz band being vacated (702–798 MHz)."""
    lo, hi = channel_span_mhz(number)
    band_lo, band_hi = VACATED_BAND_MHZ
    return lo < band_hi and hi > band_lo


def vacated_channels() -> tuple[int, ...]:
    """The DS channels being vacated, computed from the channel plan (DS-37…DS-48)."""

    return tuple(n for n in range(DS_MIN, DS_MAX + 1) if is_vacated_channel(n))


def _ds_problem(number: object) -> str | None:

    if isinstance(number, bool) or not isinstance(number, int):
        return f"{number!r} is not a DS channel number"
    if not DS_MIN <= number <= DS_MAX:
        return f"DS-{number} is outside the UHF plan DS-{DS_MIN}…DS-{DS_MAX}"
    return None


# --------------------------------------------------------------------------- phases


def phase(plan: MigrationPlan, now: float) -> Phase:
    """The plan's phase at unix time ``now``."""
    if now >= plan.cutover:
        return Phase.AFTER
    if now >= plan.simulcast_start:
        return Phase.SIMULCAST
    return Phase.BEFORE


def seconds_to_cutover(plan: MigrationPlan, now: float) -> float:
    """Seconds until the cutover; negative after it (seconds since)."""
    return plan.cutover - now


def phase_array(simulcast_start: ArrayLike, cutover: ArrayLike, now: float) -> NDArray[np.int8]:
    """Phases (0/1/2) of many plans at once from their start and cutover arrays."""
    start = np.asarray(simulcast_start, dtype=np.float64)
    cut = np.asarray(cutover, dtype=np.float64)
    out: NDArray[np.int8] = np.where(now >= cut, 2, np.where(now >= start, 1, 0)).astype(np.int8)
    return out


def seconds_to_cutover_array(cutover: ArrayLike, now: float) -> NDArray[np.float64]:
    """:func:`seconds_to_cutover` of many plans at once."""
    out: NDArray[np.float64] = np.asarray(cutover, dtype=np.float64) - now
    return out


def phases(plans: Sequence[MigrationPlan], now: float) -> NDArray[np.int8]:
    """Phases of ``plans`` at ``now`` (one array op over all plans)."""
    return phase_array([p.simulcast_start for p in plans], [p.cutover for p in plans], now)


def expectation(ph: Phase) -> tuple[Expectation, Expectation]:
    """What the (old, new) channels must do in phase ``ph``."""
    if ph is Phase.BEFORE:
        return Expectation.ON, Expectation.ANY
    if ph is Phase.SIMULCAST:
        return Expectation.ON, Expectation.ON
    return Expectation.OFF, Expectation.ON


# --------------------------------------------------------------------------- validation


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def validate_plan(plan: MigrationPlan) -> list[str]:
    """Problems of one plan on its own, each ``"<field>: <message>"``."""
    problems: list[str] = []
    if not plan.name:
        problems.append("name: must not be empty")
    if not plan.service:
        problems.append("service: must not be empty (the programme the plan moves)")
    try:
        kind = MigrationKind(plan.kind)
    except ValueError:
        problems.append(f"kind: {plan.kind!r} is not 'fm' or 'dtv'")
        return problems

    start_ok = _finite_time(plan.simulcast_start)
    cut_ok = _finite_time(plan.cutover)
    if not start_ok:
        problems.append(f"simulcast_start: {plan.simulcast_start!r} is not a time (unix seconds)")
    if not cut_ok:
        problems.append(f"cutover: {plan.cutover!r} is not a time (unix seconds)")
    if start_ok and cut_ok and plan.simulcast_start > plan.cutover:
        problems.append(
            f"simulcast_start: {_iso(plan.simulcast_start)} is after the cutover {_iso(plan.cutover)}"
        )

    if kind is MigrationKind.DTV:
        problems.extend(_dtv_problems(plan))
    else:
        problems.extend(_fm_problems(plan))
    return problems


def _finite_time(ts: object) -> bool:
    return isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts)


def _dtv_problems(plan: MigrationPlan) -> list[str]:
    problems: list[str] = []
    for fld in ("old_frequency_mhz", "new_frequency_mhz", "rds_pi"):
        if getattr(plan, fld) is not None:
            problems.append(f"{fld}: a dtv plan has old_channel/new_channel and service_id/ts_id, not {fld}")
    valid: dict[str, int] = {}
    for fld in ("old_channel", "new_channel"):
        ch = getattr(plan, fld)
        if ch is None:
            problems.append(f"{fld}: required for a dtv plan (a DS channel such as 'DS-30')")
            continue
        why = _ds_problem(ch)
        if why is not None:
            problems.append(f"{fld}: {why}")
        else:
            valid[fld] = ch
    new = valid.get("new_channel")
    if new is not None and is_vacated_channel(new):
        lo, hi = channel_span_mhz(new)
        band_lo, band_hi = VACATED_BAND_MHZ
        problems.append(
            f"new_channel: DS-{new} ({lo:g}–{hi:g} MHz) lies in the 700 MHz band being vacated "
            f"({band_lo:g}–{band_hi:g} MHz); choose a channel below {band_lo:g} MHz"
        )
    if new is not None and valid.get("old_channel") == new:
        problems.append(f"new_channel: DS-{new} is the same as old_channel")
    for fld in ("service_id", "ts_id"):
        v = getattr(plan, fld)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _ID_MAX):
            problems.append(f"{fld}: {v!r} is not an identifier 0…65535")
    return problems


def _fm_problems(plan: MigrationPlan) -> list[str]:
    problems: list[str] = []
    for fld in ("old_channel", "new_channel", "service_id", "ts_id"):
        if getattr(plan, fld) is not None:
            problems.append(
                f"{fld}: an fm plan has old_frequency_mhz/new_frequency_mhz and rds_pi, not {fld}"
            )
    valid: dict[str, float] = {}
    for fld in ("old_frequency_mhz", "new_frequency_mhz"):
        f = getattr(plan, fld)
        if f is None:
            problems.append(f"{fld}: required for an fm plan (MHz, e.g. 97.5)")
            continue
        why = fm_frequency_problem(f)
        if why is not None:
            problems.append(f"{fld}: {why}")
        else:
            valid[fld] = f
    old, new = valid.get("old_frequency_mhz"), valid.get("new_frequency_mhz")
    if old is not None and new is not None and round(old * 10) == round(new * 10):
        problems.append(f"new_frequency_mhz: {new:.1f} MHz is the same as old_frequency_mhz")
    if plan.rds_pi is not None and (not isinstance(plan.rds_pi, str) or not _PI_RE.match(plan.rds_pi)):
        problems.append(f"rds_pi: {plan.rds_pi!r} is not an RDS PI code (four hex digits such as 'C201')")
    return problems


@dataclass(frozen=True, slots=True)
class _Use:
    """A plan's use of a channel: ``resource`` over ``[start, end)``."""

    plan: int
    field: str
    resource: tuple[str, int]
    start: float
    end: float


def _uses(i: int, plan: MigrationPlan) -> list[_Use]:
    """Channels plan ``i`` occupies: the old one until cutover, the new one from simulcast on."""
    if plan.kind == MigrationKind.DTV:
        fields = ("old_channel", "new_channel")
        keys = [
            None if plan.old_channel is None else ("DS", plan.old_channel),
            None if plan.new_channel is None else ("DS", plan.new_channel),
        ]
    else:
        fields = ("old_frequency_mhz", "new_frequency_mhz")
        keys = [
            None if plan.old_frequency_mhz is None else ("FM", round(plan.old_frequency_mhz * 10)),
            None if plan.new_frequency_mhz is None else ("FM", round(plan.new_frequency_mhz * 10)),
        ]
    spans = [(-math.inf, plan.cutover), (plan.simulcast_start, math.inf)]
    return [_Use(i, f, k, s, e) for f, k, (s, e) in zip(fields, keys, spans, strict=True) if k is not None]


def _resource_text(resource: tuple[str, int]) -> str:
    kind, n = resource
    return f"DS-{n}" if kind == "DS" else f"{n / 10:.1f} MHz"


def validate_plans(plans: Sequence[MigrationPlan], key: str = "migrations") -> list[str]:
    """Every problem of ``plans``, alone and together, as ``"<key>[i].<field>: <message>"``.

    Checks each plan (:func:`validate_plan`), unique names, and overlaps between plans
    (see the module docstring). An empty list means the plans are valid.
    """
    problems: list[str] = []
    sound: list[int] = []
    for i, plan in enumerate(plans):
        own = validate_plan(plan)
        problems.extend(f"{key}[{i}].{p}" for p in own)
        if not own:
            sound.append(i)

    first_by_name: dict[str, int] = {}
    for i, plan in enumerate(plans):
        if plan.name in first_by_name:
            first = first_by_name[plan.name]
            problems.append(f"{key}[{i}].name: {plan.name!r} is already the name of {key}[{first}]")
        else:
            first_by_name[plan.name] = i

    # Overlaps, among the plans that are sound on their own (no noise from bad fields).
    uses = [u for i in sound for u in _uses(i, plans[i])]
    reported: set[tuple[int, int]] = set()
    for a_pos, a in enumerate(sound):
        for b in sound[a_pos + 1 :]:
            pa, pb = plans[a], plans[b]
            if pa.service == pb.service and pa.kind == pb.kind:
                if pa.simulcast_start < pb.cutover and pb.simulcast_start < pa.cutover:
                    problems.append(
                        f"{key}[{b}].simulcast_start: {pb.service!r} is already being moved by "
                        f"{key}[{a}] ({pa.name}) from {_iso(pa.simulcast_start)} to {_iso(pa.cutover)}; "
                        "one service's moves must follow each other"
                    )
                reported.add((a, b))
    for x_pos, x in enumerate(uses):
        for y in uses[x_pos + 1 :]:
            if x.plan == y.plan or x.resource != y.resource:
                continue
            pair = (min(x.plan, y.plan), max(x.plan, y.plan))
            if pair in reported:
                continue
            if x.start < y.end and y.start < x.end:
                reported.add(pair)
                later, earlier = (y, x) if y.plan > x.plan else (x, y)
                problems.append(_overlap_text(key, plans, later, earlier))
    return problems


def _overlap_text(key: str, plans: Sequence[MigrationPlan], use: _Use, other: _Use) -> str:
    where = f"{key}[{use.plan}].{use.field}"
    res = _resource_text(use.resource)
    o = plans[other.plan]
    role = "old" if other.field.startswith("old") else "new"
    what = "channel" if use.resource[0] == "DS" else "frequency"
    if role == "old" and use.field.startswith("new"):
        when = (
            f": it is {o.name}'s old {what} until {_iso(o.cutover)}, but this plan's simulcast "
            f"starts {_iso(plans[use.plan].simulcast_start)}"
        )
    elif role == "new" and use.field.startswith("old"):
        when = (
            f": this plan uses it until {_iso(plans[use.plan].cutover)}, but {o.name}'s simulcast "
            f"starts there {_iso(o.simulcast_start)}"
        )
    else:
        when = ""
    return f"{where}: {res} is also the {role} {what} of {key}[{other.plan}] ({o.name}){when}"
