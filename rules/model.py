"""The values that cross the rules boundary: what the engine reads and what it emits.

Times: ``now``/``last_seen`` are seconds on the daemon's *monotonic* clock (only
differences matter); ``starts_at``/``ends_at`` are *wall-clock* UNIX seconds (UTC), for
output only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Alert",
    "AlertState",
    "MeasurementValue",
    "OutageClass",
    "Severity",
    "SuppressReason",
    "TargetView",
    "Transition",
]

MeasurementValue = float | str | None
"""A measurement this tick: a number (flags are 0/1), a string (identity codes), or None (unknown)."""


class Severity(enum.StrEnum):
    """How urgently people must act; the ``severity`` label Alertmanager routes on."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class OutageClass(enum.StrEnum):
    """What the alert means for the service's transmission record.

    ``outage`` (停播): the service is off air or equivalent to it (dead air, hiss);
    ``wrong_programme`` (错播): on air with another programme than scheduled (counted
    as outage in the reports); ``filler`` (垫播): a substitute programme carried
    instead of the scheduled one (counted at a configured share); ``degraded`` (劣播):
    on air below technical limits; ``none``: neither (e.g. equipment warnings, or
    TelemetryLost: we cannot see, not "off air").
    """

    OUTAGE = "outage"
    WRONG_PROGRAMME = "wrong_programme"
    FILLER = "filler"
    DEGRADED = "degraded"
    NONE = "none"

    @property
    def off_air(self) -> bool:
        """Whether the class means the scheduled programme is not on air (outage or wrong programme)."""
        return self in (OutageClass.OUTAGE, OutageClass.WRONG_PROGRAMME)


class AlertState(enum.StrEnum):
    """Where one (rule, target) is in its life: inactive → pending → firing → resolved."""

    INACTIVE = "inactive"
    #: the condition holds but not yet for the rule's ``for``
    PENDING = "pending"
    FIRING = "firing"
    #: the alert just ended (the clear condition held for ``clear_for`` + ``keep_firing_for``);
    #: after this transition the (rule, target) is inactive again
    RESOLVED = "resolved"


class SuppressReason(enum.StrEnum):
    """Why a firing alert is recorded but not notified."""

    #: a firing source alert on the same service explains it (e.g. CarrierLoss → DeadAir)
    INHIBITED = "inhibited"
    #: the target is in a declared maintenance window
    MAINTENANCE = "maintenance"
    #: it changed state too often; one ``Flapping`` alert stands for it
    FLAPPING = "flapping"


@dataclass(frozen=True, slots=True)
class TargetView:
    """One target as the engine sees it at one tick.

    ``name`` is the configured target name (or an emergency-broadcast region id);
    ``kind`` is ``fm``, ``dtv``, ``tx`` or ``eb_region``. ``labels`` are the target's
    labels (station, target, kind, service and operator labels; rule selectors match
    on them). ``params`` are per-target references such as ``rds_pi`` or
    ``rf_reference_dbuv`` that expressions read with ``param("…")``.
    ``measurements`` are the latest values (units in the name's suffix; a missing key,
    None or NaN is *unknown*). ``last_seen`` is the monotonic time of the target's last
    telemetry, None if never. ``data_times`` gives, for measurements that come straight
    from received data, the monotonic time that data arrived (the message, or the newest
    audio block evaluated): a rule over such measurements alone counts its ``for`` from
    there rather than from the tick that first saw the condition. Measurements that
    change with time itself (ages, staleness) have none.
    """

    name: str
    kind: str
    labels: Mapping[str, str]
    params: Mapping[str, float | str]
    measurements: Mapping[str, MeasurementValue]
    last_seen: float | None
    data_times: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert in the engine's current state (what :meth:`Engine.active` returns).

    ``labels`` hold ``alertname``, ``severity``, ``station``, ``target``, ``kind``,
    ``service``, the target's other labels and the rule's labels; this label set is the
    alert's identity at Alertmanager. ``annotations`` are rendered and include
    ``runbook_url`` when the rule has one. ``starts_at`` is the wall time it started
    firing (for a pending alert: when it became pending); ``ends_at`` is None while it
    is active. ``value`` is the latest known value of the measurement the rule
    compares first.

    ``notify`` says whether Alertmanager should hold this alert as firing (resend it
    while ``True``); it stays ``True`` once notified until the alert resolves, even if
    a suppression begins later. ``reason`` is the current suppression (inhibited,
    maintenance, flapping) or None.
    """

    alertname: str
    target: str
    state: AlertState
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    runbook_url: str | None
    severity: Severity
    outage_class: OutageClass
    starts_at: float
    ends_at: float | None
    value: float | str | None
    notify: bool
    reason: SuppressReason | None
    #: wall time the condition first held (before ``for`` elapsed): the fault's onset
    onset: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of one alert, as returned by :meth:`Engine.evaluate`.

    Fields are those of :class:`Alert` with ``from_state``/``to_state``.

    ``notify`` is True exactly when Alertmanager must hear of it:

    * ``to_state == firing`` and nothing suppresses it (``reason`` says what did
      otherwise). A ``firing → firing`` transition with ``notify=True`` means an alert
      that fired while suppressed must now be delivered (its maintenance window ended,
      its inhibiting source resolved, or its flapping settled); ``starts_at`` is still
      the original one.
    * ``to_state == resolved`` and the firing was notified (so no resolution is lost
      and none is sent for an alert Alertmanager never saw).

    Transitions into and out of ``pending`` are informational (``notify=False``,
    ``reason=None``).

    ``onset`` is the wall time the condition first held (the fault's onset, before
    ``for`` elapsed); ``clear_onset`` (on ``resolved``) the wall time the clear
    condition first held (before ``clear_for``/``keep_firing_for`` elapsed), None when
    the alert ended for another reason (its target removed). The outage ledger counts
    from one to the other.
    """

    alertname: str
    target: str
    from_state: AlertState
    to_state: AlertState
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    runbook_url: str | None
    severity: Severity
    outage_class: OutageClass
    starts_at: float
    ends_at: float | None
    value: float | str | None
    notify: bool
    reason: SuppressReason | None
    onset: float | None = None
    clear_onset: float | None = None
