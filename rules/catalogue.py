"""The measurement catalogue: every name a publisher sends and a rule reads, in one place.

Three lists, each entry with its unit, range and meaning:

* :data:`STREAMS` — per target kind (``fm``, ``dtv``, ``tx``, and the emergency-broadcast
  endpoints ``eb``) and stream, the reading names a publisher may send (``values``:
  numbers and flags; ``info``: identity strings). The wire contract's tables
  (docs/telemetry-contract.md) are generated from it (``anbo catalogue``), and the
  daemon keeps only these names (plus those a target declares in its config): any other
  value name on a configured stream is counted and dropped, so it creates no series.
* :data:`DERIVED` — per rule-target kind, the measurements the daemon computes from
  what arrives (the probes' ``audio_rms_dbfs``, ``silence``, ``hiss``, ``vswr``,
  ``modulation_percent``...; the emergency-broadcast and migration monitors'
  aggregates; ``<stream>_age_seconds`` per stream).
* :data:`PARAMS` — the per-target parameters rules read with ``param("…")``.

:class:`Vocabulary` is the catalogue plus what a station's config adds (names its targets
declare, parameters and labels they set); :func:`check_rule` checks a rule against it:
an unknown measurement, parameter, kind or annotation placeholder, or a measurement of
another kind than the rule selects, is an error the loader reports with file and line.

Pure data and functions: this module imports nothing of the project but ``rules``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from rules.expr import Node, measurement_refs, param_refs
from rules.templates import FACTS, placeholders

__all__ = [
    "CATALOGUE",
    "DERIVED",
    "KINDS",
    "KIND_LABELS",
    "PARAMS",
    "STREAMS",
    "Catalogue",
    "Entry",
    "ParamEntry",
    "Problem",
    "StreamEntry",
    "Vocabulary",
    "check_rule",
    "markdown_tables",
    "rule_kinds",
]

ValueType = Literal["number", "flag", "text"]
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One name: ``name`` exactly, or every name starting with ``name[:-1]`` when it ends in ``*``."""

    name: str
    unit: str
    range: str
    meaning: str
    type: ValueType = "number"

    @property
    def is_prefix(self) -> bool:
        return self.name.endswith("*")

    def matches(self, name: str) -> bool:
        if self.is_prefix:
            return name.startswith(self.name[:-1]) and len(name) > len(self.name) - 1
        return name == self.name


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """What one stream of a kind carries: JSON ``readings`` (values, info) or sample blocks."""

    kind: str
    stream: str
    payload: Literal["readings", "samples"]
    meaning: str
    values: tuple[Entry, ...] = ()
    info: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class ParamEntry:
    """A per-target parameter (``[[targets]] params``, ``[[migrations]] params``, ``[eb] params``)."""

    name: str
    kinds: tuple[str, ...]
    unit: str
    default: str
    meaning: str


def _flag(name: str, meaning: str) -> Entry:
    return Entry(name, "flag", "false/true (0/1)", meaning, "flag")


def _text(name: str, range_: str, meaning: str) -> Entry:
    return Entry(name, "text", range_, meaning, "text")


#: What a capture gateway (``anbo capture``) says of its input between the audio blocks,
#: as JSON readings on the same ``audio`` stream and sequence (AudioLost gives the cause).
_CAPTURE_VALUES: Final = (
    _flag("audio_input_lost", "the capture gateway lost its input: no audio follows until it is back"),
)
_CAPTURE_INFO: Final = (
    _text(
        "audio_input_cause",
        "none, stream_ended, end_of_file, connect_failed, device_gone, decoder_stalled, input_error",
        "why the capture gateway's input is lost (none while it delivers)",
    ),
    _text("audio_input_detail", "≤ 64 printable", "the gateway's detail of the cause, e.g. ffmpeg's message"),
)

_RF_LEVEL = Entry("rf_level_dbuv", "dBµV", "-20 … 130", "RF level at the monitoring receiver's input")

#: Streams and their reading names, per target kind (``eb``: emergency-broadcast endpoints).
STREAMS: Final[tuple[StreamEntry, ...]] = (
    StreamEntry(
        "fm",
        "rf",
        "readings",
        "the off-air FM receiver, typically once a second",
        values=(
            _RF_LEVEL,
            Entry("freq_offset_khz", "kHz", "-100 … 100", "carrier frequency offset from nominal"),
            Entry("peak_deviation_khz", "kHz", "0 … 150", "peak deviation (±75 kHz = 100 %)"),
            Entry(
                "modulation_percent",
                "%",
                "0 … 200",
                "modulation, 100 % = ±75 kHz; derived from peak_deviation_khz when not sent",
            ),
            Entry("mpx_power_dbr", "dBr", "-20 … 10", "MPX power (ITU-R BS.412 limit 0 dBr)"),
            _flag("pilot_present", "19 kHz stereo pilot detected"),
            Entry("pilot_deviation_khz", "kHz", "0 … 15", "pilot deviation (nominal 6.75 kHz)"),
            Entry("audio_left_dbfs", "dBFS", "-120 … 0", "demodulated left audio level, receiver-measured"),
            Entry("audio_right_dbfs", "dBFS", "-120 … 0", "demodulated right audio level, receiver-measured"),
            Entry("multipath_percent", "%", "0 … 100", "multipath indication of the receiver"),
        ),
        info=(
            _text("rds_pi", "4 hex digits, e.g. C201", "RDS programme identification received"),
            _text("frequency_mhz", "e.g. 97.5", "frequency the receiver is tuned to (MHz)"),
        ),
    ),
    StreamEntry(
        "fm",
        "audio",
        "samples",
        "demodulated programme audio, PCM blocks (e.g. 100 ms)",
        values=_CAPTURE_VALUES,
        info=_CAPTURE_INFO,
    ),
    StreamEntry(
        "dtv",
        "rf",
        "readings",
        "the off-air DTMB receiver, typically once a second",
        values=(
            _RF_LEVEL,
            _flag("lock", "receiver locked to the multiplex"),
            Entry(
                "mer_db", "dB", "0 … 50", "modulation error ratio (transmitter ≥ 32 dB); only while locked"
            ),
            Entry("cn_db", "dB", "0 … 50", "carrier-to-noise ratio; only while locked"),
            Entry("ber_pre", "ratio", "0 … 0.5", "bit error ratio before FEC; only while locked"),
            Entry("ber_post", "ratio", "0 … 0.5", "bit error ratio after FEC; only while locked"),
            Entry("freq_offset_khz", "kHz", "-500 … 500", "carrier frequency offset from nominal"),
            Entry("sfn_offset_seconds", "s", "-0.001 … 0.001", "SFN timing offset against the reference"),
        ),
        info=(
            _text("service_id", "decimal or 0x hex", "service id of the received programme"),
            _text("ts_id", "decimal or 0x hex", "transport stream id"),
            _text("channel", "e.g. DS-37", "channel the receiver is tuned to"),
        ),
    ),
    StreamEntry(
        "dtv",
        "audio",
        "samples",
        "decoded programme audio of the multiplex's main service",
        values=_CAPTURE_VALUES,
        info=_CAPTURE_INFO,
    ),
    StreamEntry(
        "tx",
        "status",
        "readings",
        "the transmitter controller, typically once a second",
        values=(
            Entry("forward_power_w", "W", "0 … 100000", "forward output power"),
            Entry("reflected_power_w", "W", "0 … 10000", "reflected power"),
            Entry("vswr", "ratio", "1 … 100", "VSWR, when the controller reports it (else derived)"),
            Entry("pa_temp_celsius", "°C", "-40 … 150", "power amplifier temperature"),
            _flag("on_air", "the transmitter is radiating"),
            _flag("fault", "the transmitter reports a fault"),
            _flag(
                "device_reachable",
                "a gateway (anbo poll) reaches the controller; false: the other values are not "
                "sent, device_error says why",
            ),
        ),
        info=(
            _text(
                "device_error",
                "≤ 64 printable",
                "why the gateway cannot read the controller (timeout, refused, auth...)",
            ),
        ),
    ),
    StreamEntry(
        "eb",
        "status",
        "readings",
        "an emergency-broadcast endpoint's heartbeat (e.g. every 60 s, and on a change)",
        values=(
            _flag("online", "the endpoint says it is online"),
            _flag("playing", "the endpoint is playing"),
            _flag("fault_*", "a fault of one part: fault_amplifier, fault_speaker_line, ..."),
        ),
        info=(_text("region", "inventory region name", "the endpoint's region, as it knows it"),),
    ),
    StreamEntry(
        "eb",
        "playback",
        "readings",
        "an endpoint confirms it plays a dispatched message",
        values=(_flag("playing", "true: playback started"),),
        info=(_text("message_id", "≤ 64 printable", "the dispatched message"),),
    ),
    StreamEntry(
        "eb",
        "dispatch",
        "readings",
        "the broadcast platform (endpoint segment `platform`) dispatches a message",
        values=(Entry("deadline_s", "s", "> 0", "an extra confirmation deadline for this message"),),
        info=(
            _text("message_id", "≤ 64 printable", "the message's id"),
            _text("regions", "comma-separated names, or *", "regions the message is for"),
        ),
    ),
)

_AUDIO: Final[tuple[Entry, ...]] = (
    Entry("audio_rms_dbfs", "dBFS", "-inf … 0", "RMS level of the loudest channel over the last tick"),
    Entry("audio_peak_dbfs", "dBFS", "-inf … 0", "sample peak of the loudest channel over the last tick"),
    _flag("silence", "the audio is silent (level and time hysteresis)"),
    Entry("silence_seconds", "s", "≥ 0", "duration of the silence in progress, 0 when none"),
    _flag("hiss", "the audio is noise instead of programme (carrier lost at the receiver)"),
    Entry("spectral_flatness", "ratio", "0 … 1", "spectral flatness, 0 tonal … 1 white noise"),
    _flag("stuck_tone", "a steady single tone replaces the programme"),
    Entry("tone_frequency_hz", "Hz", "0 … 24000", "frequency of the dominant spectral peak"),
    Entry("clip_ratio", "ratio", "0 … 1", "share of samples at full scale over the last tick"),
    Entry("dc_offset", "full scale", "0 … 1", "largest DC offset of a channel over the last tick"),
    Entry("lr_imbalance_db", "dB", "any", "left minus right RMS level"),
    Entry("lr_correlation", "ratio", "-1 … 1", "L/R correlation: 1 mono, 0 unrelated, -1 phase-inverted"),
    Entry("loudness_momentary_lufs", "LUFS", "≤ 0", "EBU R128 momentary loudness (400 ms)"),
    Entry("loudness_shortterm_lufs", "LUFS", "≤ 0", "EBU R128 short-term loudness (3 s)"),
    Entry("loudness_integrated_lufs", "LUFS", "≤ 0", "EBU R128 gated integrated loudness since start or gap"),
)

#: Measurements the daemon derives, per rule-target kind (readings are added by kind).
DERIVED: Final[Mapping[str, tuple[Entry, ...]]] = {
    "fm": (
        *_AUDIO,
        Entry("modulation_percent", "%", "0 … 200", "from peak_deviation_khz, unless published"),
    ),
    "dtv": _AUDIO,
    "tx": (Entry("vswr", "ratio", "≥ 1", "from forward and reflected power, unless published"),),
    "eb_region": (
        Entry("eb_total", "endpoints", "≥ 0", "endpoints of the region in the inventory"),
        Entry("eb_online", "endpoints", "≥ 0", "endpoints whose last heartbeat is recent"),
        Entry("eb_online_ratio", "ratio", "0 … 1", "share online (unknown while settling after start)"),
        Entry("eb_faults", "endpoints", "≥ 0", "online endpoints reporting a fault"),
        _text("eb_offline_ids", "ids, truncated", "the offline endpoints"),
        _text("eb_fault_ids", "ids, truncated", "the faulty endpoints"),
    ),
    "eb_dispatch": (
        Entry(
            "dispatch_coverage",
            "ratio",
            "0 … 1",
            "share of targeted endpoints that confirmed by the last deadline",
        ),
        Entry("dispatch_targeted", "endpoints", "≥ 0", "endpoints targeted and online at dispatch"),
        Entry("dispatch_confirmed", "endpoints", "≥ 0", "endpoints that confirmed within the last deadline"),
        _flag("dispatch_past_deadline", "the last deadline has passed (coverage final)"),
        _text("dispatch_missing_ids", "ids, truncated", "endpoints that did not confirm"),
        Entry("dispatch_latency_p50_seconds", "s", "≥ 0", "median confirmation latency"),
        Entry("dispatch_latency_p90_seconds", "s", "≥ 0", "90th percentile confirmation latency"),
        Entry("dispatch_latency_max_seconds", "s", "≥ 0", "slowest confirmation"),
    ),
    "migration": (
        Entry("phase", "enum", "0, 1, 2", "0 before the simulcast, 1 simulcast, 2 after the cutover"),
        Entry("seconds_to_cutover", "s", "any", "negative after the cutover"),
        Entry("old_rf_level_dbuv", "dBµV", "-20 … 130", "RF level on the old channel/frequency"),
        Entry("new_rf_level_dbuv", "dBµV", "-20 … 130", "RF level on the new channel/frequency"),
        _flag("pi_match", "FM: the new frequency's RDS PI is the expected one"),
        _flag("service_id_match", "DTV: the new channel's service/TS ids are the expected ones"),
        Entry("identity_similarity", "ratio", "-1 … 1", "correlation of old and new programme envelopes"),
        Entry("identity_lag_s", "s", "any", "delay found between old and new (positive: new is late)"),
    ),
}

#: Every rule-target kind: the configured kinds and those the daemon makes itself.
KINDS: Final = ("fm", "dtv", "tx", "eb_region", "eb_dispatch", "migration")
#: Labels a kind's targets carry besides station, target, kind, service (and operator labels).
KIND_LABELS: Final[Mapping[str, tuple[str, ...]]] = {
    "eb_region": ("region",),
    "eb_dispatch": ("message_id",),
    "migration": ("old", "new"),
}
#: Labels every alert carries.
ALERT_LABELS: Final = ("alertname", "severity", "station", "target", "kind", "service")
#: Streams each configured kind accepts by default (``<stream>_age_seconds`` exists for them).
DEFAULT_STREAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "fm": ("rf", "audio"),
    "dtv": ("rf", "audio"),
    "tx": ("status",),
}

#: Per-target parameters rules read with ``param("…")``.
PARAMS: Final[tuple[ParamEntry, ...]] = (
    ParamEntry("rf_reference_dbuv", ("fm", "dtv"), "dBµV", "none", "RF level in normal conditions (LowRF)"),
    ParamEntry("carrier_floor_dbuv", ("fm", "dtv"), "dBµV", "20", "below it the carrier counts as lost"),
    ParamEntry("rds_pi", ("fm",), "text", "none", "expected RDS PI code, e.g. C201 (RdsPiMismatch)"),
    ParamEntry("stereo", ("fm",), "0/1", "1", "0 for a mono service (no PilotLoss)"),
    ParamEntry("audio_lost_after", ("fm", "dtv"), "s", "30", "audio stream silence before AudioLost"),
    ParamEntry("mer_warning_db", ("dtv",), "dB", "26", "MER warning level"),
    ParamEntry("mer_critical_db", ("dtv",), "dB", "20", "MER critical level"),
    ParamEntry("cn_warning_db", ("dtv",), "dB", "22", "C/N warning level"),
    ParamEntry("cn_critical_db", ("dtv",), "dB", "18", "C/N critical level"),
    ParamEntry("ber_pre_warning", ("dtv",), "ratio", "1e-3", "pre-FEC BER warning level"),
    ParamEntry("ber_post_critical", ("dtv",), "ratio", "1e-7", "post-FEC BER critical level"),
    ParamEntry("rated_power_w", ("tx",), "W", "none", "rated forward power (ForwardPowerDrop)"),
    ParamEntry("power_drop_ratio", ("tx",), "ratio", "0.8", "warning below this share of the rated power"),
    ParamEntry("pa_temp_max_celsius", ("tx",), "°C", "70", "PA temperature limit"),
    ParamEntry("eb_online_ratio_min", ("eb_region",), "ratio", "0.9", "lowest share of endpoints online"),
    ParamEntry("dispatch_min_coverage", ("eb_dispatch",), "ratio", "0.9", "lowest confirmation share"),
    ParamEntry("vacated_max_dbuv", ("migration",), "dBµV", "30", "highest RF level on a vacated channel"),
    ParamEntry("rf_min_dbuv", ("migration",), "dBµV", "20", "below it a carrier counts as missing"),
    ParamEntry("identity_min", ("migration",), "ratio", "0.5", "lowest envelope similarity of one programme"),
)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The three lists, indexed."""

    streams: tuple[StreamEntry, ...] = STREAMS
    derived: Mapping[str, tuple[Entry, ...]] = field(default_factory=lambda: dict(DERIVED))
    params: tuple[ParamEntry, ...] = PARAMS

    def stream(self, kind: str, stream: str) -> StreamEntry | None:
        for s in self.streams:
            if s.kind == kind and s.stream == stream:
                return s
        return None

    def stream_names(self, kind: str) -> tuple[str, ...]:
        return tuple(s.stream for s in self.streams if s.kind == kind)

    def readings(self, kind: str, stream: str) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
        """(values, info) a ``kind`` target may send on ``stream``. A stream the catalogue
        does not list (a target may configure its own) takes every reading of the kind."""
        entry = self.stream(kind, stream)
        if entry is not None:
            return entry.values, entry.info
        values: list[Entry] = []
        info: list[Entry] = []
        for s in self.streams:
            if s.kind == kind:
                values += s.values
                info += s.info
        return tuple(values), tuple(info)

    def measurements(self, kind: str) -> dict[str, Entry]:
        """What a rule on a ``kind`` target can read (by exact name; no prefixes)."""
        out: dict[str, Entry] = {}
        for s in self.streams:
            if s.kind == kind:
                for e in (*s.values, *s.info):
                    if not e.is_prefix:
                        out[e.name] = e
        for e in self.derived.get(kind, ()):
            out.setdefault(e.name, e)
        for stream in DEFAULT_STREAMS.get(kind, ()):
            out[f"{stream}_age_seconds"] = _age(stream)
        return out


def _age(stream: str) -> Entry:
    return Entry(
        f"{stream}_age_seconds", "s", "≥ 0", f"since the last message on stream {stream} (once seen)"
    )


CATALOGUE: Final = Catalogue()


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule: where (a location below the rule) and why."""

    where: tuple[str | int, ...]
    message: str
    #: column in the expression at ``where``, for an expression problem
    column: int | None = None


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The catalogue plus a station's additions, as rules are checked against it.

    ``extra_measurements``/``extra_params``: kind → names the config's targets of that
    kind declare (``extra_readings``, the ages of their own streams) or set (``params``);
    ``extra_labels``: operator label names of the configured targets.
    """

    catalogue: Catalogue = CATALOGUE
    extra_measurements: Mapping[str, frozenset[str]] = field(default_factory=dict)
    extra_params: Mapping[str, frozenset[str]] = field(default_factory=dict)
    extra_labels: frozenset[str] = frozenset()

    def measurements(self, kind: str) -> set[str]:
        return set(self.catalogue.measurements(kind)) | set(self.extra_measurements.get(kind, ()))

    def params(self, kind: str) -> set[str]:
        names = {p.name for p in self.catalogue.params if kind in p.kinds}
        return names | set(self.extra_params.get(kind, ()))

    def labels(self, kinds: Iterable[str]) -> set[str]:
        out = set(ALERT_LABELS) | set(self.extra_labels)
        for k in kinds:
            out |= set(KIND_LABELS.get(k, ()))
        return out


def rule_kinds(
    selector: Mapping[str, str], regex: Mapping[str, re.Pattern[str]]
) -> tuple[set[str], list[Problem]]:
    """The kinds a rule's selector can match, and problems with the kind selector."""
    kinds = set(KINDS)
    problems: list[Problem] = []
    want = selector.get("kind")
    if want is not None:
        if want not in KINDS:
            problems.append(
                Problem(
                    ("selector", "kind"),
                    f"unknown kind {want!r}{_suggest(want, KINDS)}; kinds are {', '.join(KINDS)}",
                )
            )
        kinds &= {want}
    pattern = regex.get("kind")
    if pattern is not None:
        matched = {k for k in KINDS if pattern.fullmatch(k)}
        if not matched:
            problems.append(
                Problem(
                    ("selector_regex", "kind"),
                    f"{pattern.pattern!r} matches no kind; kinds are {', '.join(KINDS)}",
                )
            )
        kinds &= matched
    return kinds, problems


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_names(
    what: str,
    refs: Sequence[tuple[str, int]],
    kinds: set[str],
    pinned: bool,
    by_kind: Mapping[str, set[str]],
    where: tuple[str | int, ...],
    column: bool,
) -> list[Problem]:
    """``by_kind`` covers every kind; ``kinds`` are those the rule selects."""
    problems: list[Problem] = []
    mine = set().union(*(by_kind[k] for k in kinds))
    for name, col in refs:
        at = f"column {col} of the expression: " if column else ""
        known = {k for k, names in by_kind.items() if name in names}
        if not known:
            problems.append(
                Problem(where, f"{at}unknown {what} {name!r}{_suggest(name, mine)}", col if column else None)
            )
        elif pinned and not kinds <= known:
            problems.append(
                Problem(
                    where,
                    f"{at}{what} {name!r} belongs to kind {', '.join(k for k in KINDS if k in known)}, "
                    f"not {', '.join(k for k in KINDS if k in kinds - known)} (the rule's selector): "
                    "the rule could never fire there",
                    col if column else None,
                )
            )
    return problems


def check_rule(
    vocabulary: Vocabulary,
    *,
    selector: Mapping[str, str],
    selector_regex: Mapping[str, re.Pattern[str]],
    conditions: Mapping[str, Node],
    annotations: Mapping[str, str],
    labels: Iterable[str],
) -> list[Problem]:
    """Everything in one rule that the catalogue (and the station's additions) does not know.

    ``conditions``: field name (``expr``, ``clear``) → parsed expression. A rule whose
    selector names kinds (``kind`` in ``selector`` or ``selector_regex``) may read only
    what every one of them has; a rule without one what some kind has.
    """
    kinds, problems = rule_kinds(selector, selector_regex)
    pinned = "kind" in selector or "kind" in selector_regex
    if not kinds:
        return problems
    measurements = {k: vocabulary.measurements(k) for k in KINDS}
    params = {k: vocabulary.params(k) for k in KINDS}
    for fieldname, node in conditions.items():
        problems += _check_names(
            "measurement", measurement_refs(node), kinds, pinned, measurements, (fieldname,), True
        )
        problems += _check_names("param", param_refs(node), kinds, pinned, params, (fieldname,), True)
    known_labels = vocabulary.labels(kinds) | set(labels)
    my_measurements = set().union(*(measurements[k] for k in kinds))
    my_params = set().union(*(params[k] for k in kinds))
    for name, text in annotations.items():
        where: tuple[str | int, ...] = ("annotations", name)
        for ns, ph in placeholders(text):
            if ns == "labels":
                if ph not in known_labels:
                    problems.append(
                        Problem(
                            where,
                            f"unknown label {ph!r} in {{{{ labels.{ph} }}}}{_suggest(ph, known_labels)}",
                        )
                    )
            elif ns == "measurements":
                problems += _check_names("measurement", [(ph, 0)], kinds, pinned, measurements, where, False)
            elif ns == "params":
                problems += _check_names("param", [(ph, 0)], kinds, pinned, params, where, False)
            elif not (ph in FACTS or ph in known_labels or ph in my_measurements or ph in my_params):
                every = set(FACTS) | known_labels | my_measurements | my_params
                problems.append(
                    Problem(
                        where,
                        f"unknown placeholder {{{{ {ph} }}}}{_suggest(ph, every)}: not an alert fact "
                        f"({', '.join(FACTS)}), label, measurement or param of the rule's targets",
                    )
                )
    return problems


# --------------------------------------------------------------------------- documentation


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(e: Entry, where: str) -> str:
    return f"| `{e.name}` | {where} | {_cell(e.unit)} | {_cell(e.range)} | {_cell(e.meaning)} |"


def markdown_tables(catalogue: Catalogue = CATALOGUE) -> str:
    """The contract's reading tables (docs/telemetry-contract.md), generated."""
    out: list[str] = []
    for s in catalogue.streams:
        topic = (
            f"<prefix>/eb/{'platform' if s.stream == 'dispatch' else '<endpoint>'}/{s.stream}"
            if s.kind == "eb"
            else f"<prefix>/<station>/<{s.kind} target>/{s.stream}"
        )
        out.append(f"#### `{s.kind}` · `{s.stream}` — `{topic}`")
        out.append("")
        if s.payload == "samples":
            out.append(f"Sample blocks (section 2c): {s.meaning}.")
            out.append("")
            if not (s.values or s.info):
                continue
            out.append(
                "Between the blocks, on the same sequence, a capture gateway's JSON readings "
                "(section 2a) about its input:"
            )
        else:
            out.append(f"JSON readings: {s.meaning}.")
        out.append("")
        out.append("| name | in | unit | range | meaning |")
        out.append("|---|---|---|---|---|")
        out += [_row(e, "values") for e in s.values]
        out += [_row(e, "info") for e in s.info]
        out.append("")
    out.append("#### Measurements the daemon derives (rules and `anbo_<name>` series)")
    out.append("")
    out.append("| kind | name | unit | range | meaning |")
    out.append("|---|---|---|---|---|")
    for kind, entries in catalogue.derived.items():
        for e in entries:
            out.append(f"| {kind} | `{e.name}` | {_cell(e.unit)} | {_cell(e.range)} | {_cell(e.meaning)} |")
    streams = ", ".join(
        f"{k}: " + ", ".join(f"`{s}_age_seconds`" for s in v) for k, v in DEFAULT_STREAMS.items()
    )
    out.append(
        "| fm, dtv, tx | `<stream>_age_seconds` | s | ≥ 0 | "
        f"since the stream's last message, once seen ({streams}) |"
    )
    out.append("")
    out.append('#### Target parameters (`param("…")` in rules)')
    out.append("")
    out.append("| name | kinds | unit | default | meaning |")
    out.append("|---|---|---|---|---|")
    for p in catalogue.params:
        out.append(
            f"| `{p.name}` | {', '.join(p.kinds)} | {_cell(p.unit)} | {p.default} | {_cell(p.meaning)} |"
        )
    return "\n".join(out).rstrip() + "\n"


def valid_name(name: str) -> bool:
    """Whether ``name`` is a reading name as the wire contract allows (``[a-z][a-z0-9_]{0,63}``)."""
    return _NAME.fullmatch(name) is not None
