"""Scenario files: a timeline of faults for the station simulator, and the alerts they must raise.

A scenario is YAML (see ``docs/scenarios.md``)::

    name: fm-faults
    description: Dead air, then hiss after a carrier loss.
    duration: 7m
    timeline:
      - {id: news-dead, at: 30s, for: 60s, target: fm-news-97.5, fault: dead_air}
      - {at: 240s, for: 2m, target: fm-news-97.5, fault: low_rf, drop_db: 10}
    expect:
      - {alert: DeadAir, target: fm-news-97.5, fault: news-dead, fire_within: 25s, resolve_within: 15s}

Validation happens in two steps, both reporting ``file:line: field: message``:

1. :func:`parse_scenario` / :func:`load_scenario`: the file on its own (schema with
   pydantic, durations, references between ``expect`` and ``timeline``);
2. :func:`scenario_problems`: against a station configuration (targets exist, each
   fault fits its target's kind, emergency-broadcast regions exist).

Pure: no clocks, no I/O except reading the file asked for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.settings import Settings, TargetKind, ds_channel_number
from monitor.wire import is_segment
from rules.durations import parse_duration
from rules.yamlsource import Location, SourceError, YamlDocument, format_path, load_yaml

__all__ = [
    "BUNDLED_DIR",
    "EB_FAULTS",
    "FAULT_KINDS",
    "TARGET_FAULTS",
    "CounterExpectation",
    "EbFleetSpec",
    "Expectation",
    "Fault",
    "Scenario",
    "ScenarioError",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "region_id",
    "resolve_scenario",
    "scenario_problems",
]

#: The scenarios shipped with anbo.
BUNDLED_DIR: Final = Path(__file__).resolve().parent / "scenarios"

_PI_RE: Final = re.compile(r"[0-9A-F]{4}")


def region_id(index: int) -> str:
    """Id of the emergency-broadcast region number ``index`` (0-based): ``r01``, ``r02``…"""
    return f"r{index + 1:02d}"


class ScenarioError(Exception):
    """A scenario file is invalid; ``errors`` name file, line and field."""

    def __init__(self, errors: Sequence[SourceError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _duration(value: object) -> float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as 30s, 5m or 1h30m, got {value!r}")


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds; written ``30s``, ``5m``, ``1h30m``, ``500ms`` or a bare number of seconds."""


def _segment(value: str) -> str:
    if not is_segment(value):
        raise ValueError(f"{value!r} is not a valid name ([A-Za-z0-9_.-], 1 to 64 characters)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- faults


class _FaultBase(_Model):
    id: str | None = Field(default=None, description="Name for `expect` entries to refer to")
    at: Duration = Field(description="Start, from the beginning of the scenario")
    for_: Duration = Field(alias="for", gt=0.0, description="How long the fault lasts")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        return None if value is None else _segment(value)

    @property
    def end(self) -> float:
        return self.at + self.for_

    def active(self, t: float) -> bool:
        """Whether the fault is in effect at scenario time ``t``."""
        return self.at <= t < self.at + self.for_


class _TargetFault(_FaultBase):
    target: str

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: str) -> str:
        return _segment(value)


class DeadAir(_TargetFault):
    """The programme is gone: the audio is near-digital silence (studio or link failure)."""

    fault: Literal["dead_air"]
    level_dbfs: float = Field(default=-70.0, le=-45.0, description="Residual noise level")


class Hiss(_TargetFault):
    """Receiver noise after a carrier loss: RF level drops, audio becomes de-emphasised noise."""

    fault: Literal["hiss"]
    level_dbfs: float = Field(default=-22.0, ge=-55.0, le=-6.0, description="RMS level of the hiss")
    rf_level_dbuv: float = Field(default=10.0, ge=-10.0, le=120.0, description="RF level the receiver reads")


class StuckTone(_TargetFault):
    """A steady line-up tone replaces the programme."""

    fault: Literal["stuck_tone"]
    frequency_hz: float = Field(default=1000.0, gt=20.0, le=15000.0)
    level_dbfs: float = Field(default=-18.0, ge=-50.0, le=-1.0, description="RMS level of the tone")


class Clipping(_TargetFault):
    """A gain stage turned up: the programme is driven into the converter's rails (±1.0)."""

    fault: Literal["clipping"]
    gain_db: float = Field(default=18.0, ge=3.0, le=40.0, description="Gain applied before the rails")


class PhaseReversal(_TargetFault):
    """One channel's polarity inverted (a miswired balanced line); needs stereo audio."""

    fault: Literal["phase_reversal"]


class CarrierLoss(_TargetFault):
    """The carrier is gone at the receiver: RF level drops, the receiver mutes (silence)."""

    fault: Literal["carrier_loss"]
    rf_level_dbuv: float = Field(default=8.0, ge=-10.0, le=120.0)


class LowRF(_TargetFault):
    """The RF level drops by ``drop_db`` (transmitter output, feeder or antenna)."""

    fault: Literal["low_rf"]
    drop_db: float = Field(default=10.0, gt=0.0, le=80.0)


class Overmodulation(_TargetFault):
    """Modulation ``percent`` (≥ 105 %, jitter ±2 %) from a misadjusted processor."""

    fault: Literal["overmodulation"]
    percent: float = Field(default=112.0, ge=107.0, le=200.0)
    mpx_power_dbr: float = Field(
        default=-0.8, ge=-10.0, le=10.0, description="MPX power during the fault (above 0: also BS.412)"
    )


class PilotLoss(_TargetFault):
    """The 19 kHz stereo pilot disappears."""

    fault: Literal["pilot_loss"]


class WrongRdsPi(_TargetFault):
    """Another programme's RDS PI code is received (wrong programme, 错播)."""

    fault: Literal["wrong_rds_pi"]
    pi: str

    @field_validator("pi")
    @classmethod
    def _check_pi(cls, value: str) -> str:
        if not _PI_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an RDS PI code (4 upper-case hex digits, e.g. C2FF)")
        return value


class MerDegradation(_TargetFault):
    """The multiplex's MER falls to ``mer_db`` (pre-FEC BER follows; below 15 dB it exceeds 1e-3)."""

    fault: Literal["mer_degradation"]
    mer_db: float = Field(default=22.0, ge=0.0, le=40.0)


class DtvLockLoss(_TargetFault):
    """The receiver cannot lock although the carrier is there; the decoder mutes."""

    fault: Literal["dtv_lock_loss"]


class VswrSpike(_TargetFault):
    """Reflected power rises until the VSWR is ``vswr`` (feeder, connector or antenna)."""

    fault: Literal["vswr_spike"]
    vswr: float = Field(default=1.8, gt=1.0, le=20.0)


class PaOverTemperature(_TargetFault):
    """The PA temperature ramps up to ``celsius`` over ``ramp``, holds, then cools over ``ramp``."""

    fault: Literal["pa_over_temperature"]
    celsius: float = Field(default=78.0, ge=50.0, le=150.0)
    ramp: Duration = Field(default=30.0, ge=0.0)


class PowerDrop(_TargetFault):
    """Forward power falls to ``ratio`` × the rated power (a failed PA module)."""

    fault: Literal["power_drop"]
    ratio: float = Field(default=0.6, ge=0.0, lt=1.0)


class TxFault(_TargetFault):
    """The transmitter raises its summary fault flag."""

    fault: Literal["tx_fault"]


class VacatedEmission(_TargetFault):
    """Residual emission on a vacated channel (700 MHz migration, FM re-frequencing).

    ``target`` names the receiver reporting the vacated channel; it need not be a
    configured target. RF readings are published for it during the fault.
    """

    fault: Literal["vacated_emission"]
    channel: str | None = Field(default=None, description="Vacated DTV channel, e.g. DS-40")
    frequency_mhz: float | None = Field(default=None, description="Vacated FM frequency")
    level_dbuv: float = Field(default=45.0, ge=-10.0, le=120.0)

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str | None) -> str | None:
        if value is not None:
            return f"DS-{ds_channel_number(value)}"
        return value

    @model_validator(mode="after")
    def _one_of(self) -> VacatedEmission:
        if (self.channel is None) == (self.frequency_mhz is None):
            raise ValueError("give exactly one of channel (DTV, e.g. DS-40) and frequency_mhz (FM)")
        f = self.frequency_mhz
        if f is not None and not (math.isfinite(f) and 87.0 <= f <= 108.0):
            raise ValueError(f"frequency_mhz {f} is outside the FM band 87–108 MHz")
        return self


class TelemetrySilence(_TargetFault):
    """The gateway stops publishing ``streams`` of the target (default: all of them)."""

    fault: Literal["telemetry_silence"]
    streams: list[str] | None = Field(default=None, min_length=1)


class DuplicateBlocks(_TargetFault):
    """A share of the messages of ``stream`` is sent twice (same seq), as QoS 1 may."""

    fault: Literal["duplicate_blocks"]
    stream: str = "audio"
    share: float = Field(default=0.2, gt=0.0, le=1.0)


class ReorderedBlocks(_TargetFault):
    """A share of the messages of ``stream`` is sent after its successor."""

    fault: Literal["reordered_blocks"]
    stream: str = "audio"
    share: float = Field(default=0.1, gt=0.0, le=1.0)


MALFORMATIONS: Final = (
    "bad_json",
    "missing_field",
    "bad_type",
    "bad_key",
    "non_finite",
    "bad_seq",
    "absurd_timestamp",
    "bad_header",
    "bad_length",
    "bad_content_type",
    "missing_property",
)
Malformation = Literal[
    "bad_json",
    "missing_field",
    "bad_type",
    "bad_key",
    "non_finite",
    "bad_seq",
    "absurd_timestamp",
    "bad_header",
    "bad_length",
    "bad_content_type",
    "missing_property",
]


class MalformedPayloads(_TargetFault):
    """Broken messages on the target's topics, ``rate`` per second, besides the good ones.

    ``kinds`` cycle in order (default: all); ``bad_content_type`` and
    ``missing_property`` need MQTT v5 and are skipped on 3.1.1.
    """

    fault: Literal["malformed_payloads"]
    rate: float = Field(default=1.0, gt=0.0, le=50.0, description="Messages per second")
    kinds: list[Malformation] | None = Field(default=None, min_length=1)


class _EbFault(_FaultBase):
    pass


class EbOffline(_EbFault):
    """A share of a region's endpoints stop heartbeating (power cut, network down)."""

    fault: Literal["eb_offline"]
    region: str | None = Field(default=None, description="Region id (r01…); default every region")
    share: float = Field(default=1.0, gt=0.0, le=1.0)


class EbEndpointFault(_EbFault):
    """A share of a region's endpoints report an amplifier or speaker-line fault."""

    fault: Literal["eb_endpoint_fault"]
    region: str | None = None
    share: float = Field(default=0.1, gt=0.0, le=1.0)
    kind: Literal["amplifier", "speaker_line"] = "amplifier"


def _latency(value: object) -> object:
    if isinstance(value, list | tuple) and len(value) == 2:
        return [_duration(value[0]), _duration(value[1])]
    raise ValueError("expected [shortest, longest], e.g. [2s, 45s]")


class EbDispatch(_EbFault):
    """The platform dispatches a message to ``regions``; a share of their online endpoints
    confirms playback after a latency drawn uniformly from ``latency``. ``for`` is how long
    the message plays."""

    fault: Literal["eb_dispatch"]
    regions: list[str] = Field(min_length=1)
    message_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.:-]{1,40}$", description="default M<unix time><index>"
    )
    confirm_share: float = Field(default=0.95, ge=0.0, le=1.0)
    latency: Annotated[tuple[float, float], BeforeValidator(_latency)] = (2.0, 40.0)
    deadline: Duration = Field(default=120.0, gt=0.0)

    @model_validator(mode="after")
    def _order(self) -> EbDispatch:
        if self.latency[0] > self.latency[1]:
            raise ValueError("latency: the shortest must not exceed the longest")
        if len(",".join(self.regions)) > 64:
            raise ValueError("regions: at most 64 characters joined with commas (an info string)")
        return self


Fault = Annotated[
    DeadAir
    | Hiss
    | StuckTone
    | Clipping
    | PhaseReversal
    | CarrierLoss
    | LowRF
    | Overmodulation
    | PilotLoss
    | WrongRdsPi
    | MerDegradation
    | DtvLockLoss
    | VswrSpike
    | PaOverTemperature
    | PowerDrop
    | TxFault
    | VacatedEmission
    | TelemetrySilence
    | DuplicateBlocks
    | ReorderedBlocks
    | MalformedPayloads
    | EbOffline
    | EbEndpointFault
    | EbDispatch,
    Field(discriminator="fault"),
]

_ALL: Final = frozenset({TargetKind.FM, TargetKind.DTV, TargetKind.TX})
_FM: Final = frozenset({TargetKind.FM})
_DTV: Final = frozenset({TargetKind.DTV})
_AUDIO: Final = frozenset({TargetKind.FM, TargetKind.DTV})
_TX: Final = frozenset({TargetKind.TX})

#: Fault kinds that act on a configured target → the target kinds they apply to.
TARGET_FAULTS: Final[dict[str, frozenset[TargetKind]]] = {
    "dead_air": _AUDIO,
    "hiss": _FM,
    "stuck_tone": _AUDIO,
    "clipping": _AUDIO,
    "phase_reversal": _AUDIO,
    "carrier_loss": _AUDIO,
    "low_rf": _AUDIO,
    "overmodulation": _FM,
    "pilot_loss": _FM,
    "wrong_rds_pi": _FM,
    "mer_degradation": _DTV,
    "dtv_lock_loss": _DTV,
    "vswr_spike": _TX,
    "pa_over_temperature": _TX,
    "power_drop": _TX,
    "tx_fault": _TX,
    "telemetry_silence": _ALL,
    "duplicate_blocks": _ALL,
    "reordered_blocks": _ALL,
    "malformed_payloads": _ALL,
}
#: Fault kinds of the emergency-broadcast fleet.
EB_FAULTS: Final = ("eb_offline", "eb_endpoint_fault", "eb_dispatch")
#: Every fault kind.
FAULT_KINDS: Final = (*TARGET_FAULTS, "vacated_emission", *EB_FAULTS)


# --------------------------------------------------------------------------- expectations


class Expectation(_Model):
    """An alert the scenario must raise (and nothing else may fire).

    It must fire after its fault starts and at most ``fire_within`` later; with
    ``resolves`` (default) it must resolve after the fault ends and at most
    ``resolve_within`` later, otherwise it must still fire when the scenario ends.
    ``suppressed`` is how the engine holds it when it starts firing (``none``:
    notified). ``pending`` (a feature not built yet) or ``known_gap`` (a rule that
    cannot fire as written) make it informational: not required, accepted if it fires.
    """

    alert: str
    target: str
    fault: str | None = Field(
        default=None, description="id of the timeline entry; default: the only fault on `target`"
    )
    severity: Literal["critical", "warning", "info"] | None = None
    fire_within: Duration
    resolves: bool = True
    resolve_within: Duration | None = None
    suppressed: Literal["none", "inhibited", "maintenance", "flapping"] = "none"
    pending: str | None = None
    known_gap: str | None = None

    @model_validator(mode="after")
    def _resolve_window(self) -> Expectation:
        if self.resolves and self.resolve_within is None:
            raise ValueError("resolve_within is required unless resolves: false")
        if not self.resolves and self.resolve_within is not None:
            raise ValueError("resolve_within makes no sense with resolves: false")
        return self

    @property
    def informational(self) -> bool:
        return self.pending is not None or self.known_gap is not None


_STREAM_COUNTERS: Final = ("accepted", "gaps", "missing", "outstanding", "duplicates", "late", "resets")


class CounterExpectation(_Model):
    """A count the run must reach: a stream's sequence counters (``outstanding``: still
    missing at the end), or messages rejected or dropped by reason (anbo_messages_total)."""

    counter: Literal[
        "accepted", "gaps", "missing", "outstanding", "duplicates", "late", "resets", "rejected", "dropped"
    ]
    target: str | None = None
    stream: str | None = None
    reason: str | None = None
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> CounterExpectation:
        if self.counter in _STREAM_COUNTERS:
            if self.target is None or self.stream is None or self.reason is not None:
                raise ValueError(f"counter {self.counter} needs target and stream (and no reason)")
        elif self.reason is None or self.target is not None or self.stream is not None:
            raise ValueError(f"counter {self.counter} needs reason (and no target or stream)")
        if self.max is not None and self.max < self.min:
            raise ValueError("max must not be below min")
        return self


class EbFleetSpec(_Model):
    """The emergency-broadcast endpoints the simulator runs (``--eb-endpoints`` overrides)."""

    endpoints: int = Field(default=0, ge=0, le=1_000_000)
    regions: int = Field(default=4, ge=1, le=999)
    heartbeat: Duration = Field(default=60.0, ge=1.0)


class Scenario(_Model):
    """A validated scenario file."""

    name: str
    description: str = ""
    duration: Duration = Field(gt=0.0)
    speed: float = Field(default=1.0, gt=0.0, le=1000.0, description="Simulated seconds per real second")
    seed: int = Field(default=0, ge=0)
    eb: EbFleetSpec = Field(default_factory=EbFleetSpec)
    timeline: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    expect_counts: list[CounterExpectation] = Field(default_factory=list)

    _source: str = PrivateAttr(default="<scenario>")
    _doc: YamlDocument | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _segment(value)

    @property
    def source(self) -> str:
        """File the scenario came from."""
        return self._source

    def line_of(self, loc: Location) -> int | None:
        return self._doc.line_of(loc) if self._doc is not None else None

    def fault_of(self, exp: Expectation) -> Fault:
        """The timeline entry an expectation answers (validated to exist)."""
        if exp.fault is not None:
            for f in self.timeline:
                if f.id == exp.fault:
                    return f
        else:
            on_target = [f for f in self.timeline if getattr(f, "target", None) == exp.target]
            if len(on_target) == 1:
                return on_target[0]
        raise KeyError(exp.fault or exp.target)

    def target_faults(self, target: str) -> list[Fault]:
        return [f for f in self.timeline if getattr(f, "target", None) == target]


# --------------------------------------------------------------------------- loading


def _error_loc(doc: YamlDocument, raw: tuple[int | str, ...]) -> Location:
    """pydantic's location without the union tags it inserts (``timeline[2].low_rf.drop_db``)."""
    loc: list[str | int] = []
    for part in raw:
        node = doc.get(tuple(loc))
        if (
            isinstance(part, str)
            and isinstance(node, dict)
            and node.get("fault") == part
            and part not in node
        ):
            continue  # the discriminator's tag, not a key of the file
        if isinstance(part, str) and part.startswith(("function-", "tagged-union")):
            continue
        loc.append(part)
    return tuple(loc)


def _pydantic_errors(exc: ValidationError, doc: YamlDocument) -> list[SourceError]:
    out: list[SourceError] = []
    for err in exc.errors():
        loc = _error_loc(doc, tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "union_tag_not_found":
            msg = f"missing `fault` (one of: {', '.join(FAULT_KINDS)})"
        elif err["type"] == "union_tag_invalid":
            got = (err.get("ctx") or {}).get("tag")
            msg = f"unknown fault {got!r}; known: {', '.join(FAULT_KINDS)}"
            loc = (*loc, "fault")
        out.append(SourceError(doc.source, doc.line_of(loc), format_path(loc), msg))
    return out


def _semantic_errors(sc: Scenario, doc: YamlDocument) -> list[SourceError]:
    """Cross-references within the file: ids, fault windows, expectation targets."""
    errors: list[SourceError] = []

    def err(loc: Location, message: str) -> None:
        errors.append(SourceError(doc.source, doc.line_of(loc), format_path(loc), message))

    ids: dict[str, int] = {}
    for i, f in enumerate(sc.timeline):
        if f.id is not None:
            if f.id in ids:
                err(("timeline", i, "id"), f"duplicate id {f.id!r} (first in timeline[{ids[f.id]}])")
            ids.setdefault(f.id, i)
        if f.end > sc.duration + 1e-9:
            err(
                ("timeline", i, "for"),
                f"the fault ends at {f.end:g} s, after the scenario's duration ({sc.duration:g} s)",
            )
    for i, e in enumerate(sc.expect):
        if e.fault is not None:
            if e.fault not in ids:
                err(("expect", i, "fault"), f"no timeline entry has id {e.fault!r}")
                continue
        else:
            n = len(sc.target_faults(e.target))
            if n != 1:
                why = "no fault" if n == 0 else f"{n} faults"
                err(
                    ("expect", i),
                    f"the timeline has {why} on {e.target!r}: name the fault it answers with `fault: <id>`",
                )
                continue
        fault = sc.fault_of(e)
        if e.fire_within > sc.duration - fault.at + 1e-9 and not e.informational:
            err(("expect", i, "fire_within"), "reaches past the end of the scenario")
        if (
            e.resolve_within is not None
            and not e.informational
            and fault.end + e.resolve_within > sc.duration + 1e-9
        ):
            err(
                ("expect", i, "resolve_within"),
                f"the scenario ends {sc.duration - fault.end:g} s after the fault: lengthen "
                f"`duration` or shorten `resolve_within`",
            )
    return errors


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate a scenario's text; raise :class:`ScenarioError` listing every problem."""
    doc, errors = load_yaml(text, source)
    if doc is None:
        raise ScenarioError(errors)
    if not isinstance(doc.data, dict):
        raise ScenarioError(
            [*errors, SourceError(source, 1, "", "a scenario is a mapping with name, duration and timeline")]
        )
    try:
        sc = Scenario.model_validate(doc.data)
    except ValidationError as exc:
        raise ScenarioError([*errors, *_pydantic_errors(exc, doc)]) from None
    errors.extend(_semantic_errors(sc, doc))
    if errors:
        raise ScenarioError(errors)
    sc._source = source
    sc._doc = doc
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([SourceError(str(p), None, "", f"cannot read: {exc}")]) from None
    return parse_scenario(text, str(p))


def bundled_scenarios() -> dict[str, Path]:
    """The bundled scenarios by name (file stem)."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.yml"))}


def resolve_scenario(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name, or a scenario file by path."""
    text = str(name_or_path)
    bundled = bundled_scenarios()
    if text in bundled and not Path(text).exists():
        return load_scenario(bundled[text])
    p = Path(text)
    if p.exists() or p.suffix in (".yml", ".yaml") or "/" in text:
        return load_scenario(p)
    raise ScenarioError(
        [
            SourceError(
                text,
                None,
                "",
                f"no such scenario file, and not a bundled scenario ({', '.join(bundled) or 'none'})",
            )
        ]
    )


# --------------------------------------------------------------------------- against a station


def scenario_problems(
    sc: Scenario, settings: Settings, *, eb_endpoints: int | None = None, eb_regions: int | None = None
) -> list[SourceError]:
    """What in the scenario does not fit this station (and fleet size); empty if all fits."""
    problems: list[SourceError] = []

    def err(loc: Location, message: str) -> None:
        problems.append(SourceError(sc.source, sc.line_of(loc), format_path(loc), message))

    targets = {t.name: t for t in settings.targets}
    endpoints = sc.eb.endpoints if eb_endpoints is None else eb_endpoints
    regions = {region_id(i) for i in range(sc.eb.regions if eb_regions is None else eb_regions)}
    for i, f in enumerate(sc.timeline):
        kind = f.fault
        if isinstance(f, VacatedEmission):
            t = targets.get(f.target)
            if t is not None and t.kind is TargetKind.TX:
                err(("timeline", i, "target"), f"{f.target} is a transmitter, not a receiver")
            continue
        if isinstance(f, EbOffline | EbEndpointFault | EbDispatch):
            if endpoints == 0:
                err(
                    ("timeline", i, "fault"),
                    f"{kind} needs emergency-broadcast endpoints "
                    "(eb: {endpoints: N} in the scenario, or --eb-endpoints)",
                )
            wanted = f.regions if isinstance(f, EbDispatch) else [f.region] if f.region else []
            key = "regions" if isinstance(f, EbDispatch) else "region"
            for r in wanted:
                if r not in regions:
                    err(
                        ("timeline", i, key),
                        f"unknown region {r!r}; the fleet has {', '.join(sorted(regions))}",
                    )
            continue
        target = getattr(f, "target", "")
        t = targets.get(target)
        if t is None:
            err(
                ("timeline", i, "target"),
                f"no target {target!r} in the station config ({', '.join(targets) or 'none'})",
            )
            continue
        if t.kind not in TARGET_FAULTS[kind]:
            allowed = "/".join(sorted(k.value for k in TARGET_FAULTS[kind]))
            err(("timeline", i, "fault"), f"{kind} applies to {allowed} targets; {target} is {t.kind.value}")
            continue
        accepted = t.accepted_streams
        if isinstance(f, TelemetrySilence):
            for s in f.streams or []:
                if s not in accepted:
                    err(("timeline", i, "streams"), f"{target} has no stream {s!r} ({', '.join(accepted)})")
        if isinstance(f, DuplicateBlocks | ReorderedBlocks) and f.stream not in accepted:
            err(("timeline", i, "stream"), f"{target} has no stream {f.stream!r} ({', '.join(accepted)})")
        if isinstance(f, WrongRdsPi) and t.params.get("rds_pi") == f.pi:
            err(("timeline", i, "pi"), f"{f.pi} is {target}'s own PI code (params.rds_pi)")
    # Alerts of the emergency-broadcast fleet are on its regions and dispatches.
    known = (
        set(targets)
        | {f"eb:{r}" for r in regions}
        | {f"dispatch:{f.message_id}" for f in sc.timeline if isinstance(f, EbDispatch) and f.message_id}
    )
    for i, e in enumerate(sc.expect):
        if e.target not in known and not e.informational:
            hint = (
                " (fleet alerts are on eb:<region> and dispatch:<message_id>; give the dispatch a message_id)"
                if e.target.startswith(("eb:", "dispatch:"))
                else ""
            )
            err(("expect", i, "target"), f"no target {e.target!r} in the station config{hint}")
    for i, c in enumerate(sc.expect_counts):
        if c.target is not None:
            t = targets.get(c.target)
            if t is None:
                err(("expect_counts", i, "target"), f"no target {c.target!r} in the station config")
            elif c.stream not in t.accepted_streams:
                err(("expect_counts", i, "stream"), f"{c.target} has no stream {c.stream!r}")
    return problems
