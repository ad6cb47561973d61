"""The anbo wire contract, version 1: topics and payloads, decoded strictly.

Pure code: no I/O, no clock reads (``now`` is an argument), no logging. Every
way a message can be wrong is a distinct :class:`Reason`, whose value is a
stable, lowercase string meant to be a Prometheus label value; the human detail
(naming the field) goes with it in :class:`DecodeError` for the logs.

The normative description is ``docs/telemetry-contract.md``; this module is its
executable form. The hot paths (:meth:`TopicParser.parse`, :func:`decode` of a
small JSON reading, a binary sample block) are written to cost a few
microseconds: ``json.loads`` then tight ``type() is`` checks, precompiled
regular expressions, ``np.frombuffer`` plus one conversion for samples, and no
Python loops over samples.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_LIMITS",
    "ENDPOINT_STATION",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "WIRE_VERSION",
    "Batch",
    "DecodeError",
    "EndpointTopic",
    "Limits",
    "Payload",
    "Readings",
    "Reason",
    "SampleBlock",
    "SampleFormat",
    "SampleSpec",
    "SeqEvent",
    "SeqResult",
    "SeqTracker",
    "StationTopic",
    "TopicParser",
    "decode",
    "encode_batch",
    "encode_block_v5",
    "encode_block_v311",
    "encode_readings",
    "frame_block_v5",
    "frame_block_v311",
    "parse_content_type",
    "sample_width",
]

WIRE_VERSION: Final = 1

#: Station name reserved for emergency-broadcast endpoints: ``<prefix>/eb/<endpoint>/<stream>``.
ENDPOINT_STATION: Final = "eb"

#: Magic at the start of an MQTT 3.1.1 binary sample block.
MAGIC: Final = b"ANBO"
#: ``magic, version, dtype code, channels, rate, seq, ts`` -- big-endian, 28 bytes.
HEADER: Final = struct.Struct(">4sBBHIqd")
HEADER_SIZE: Final = HEADER.size

#: Largest sequence number on the wire (the binary header carries an int64).
SEQ_MAX: Final = 2**63 - 1
MAX_CHANNELS: Final = 32
MAX_RATE: Final = 384_000
#: Longest string accepted in ``info``.
MAX_INFO_LEN: Final = 64

JSON_CONTENT_TYPE: Final = "application/json"
SAMPLES_MEDIA_TYPE: Final = "application/vnd.anbo.samples"
L16_MEDIA_TYPE: Final = "audio/L16"

SampleFormat: TypeAlias = Literal["int16le", "int16be", "float32le", "float32be"]

# Sample format name -> numpy dtype string (explicit byte order).
_DTYPES: Final[dict[str, str]] = {
    "int16le": "<i2",
    "int16be": ">i2",
    "float32le": "<f4",
    "float32be": ">f4",
}
_NP_DTYPES: Final[dict[str, np.dtype[Any]]] = {k: np.dtype(v) for k, v in _DTYPES.items()}
# Binary header dtype code <-> sample format.
_CODE_TO_FORMAT: Final[dict[int, SampleFormat]] = {
    1: "int16be",
    2: "int16le",
    3: "float32be",
    4: "float32le",
}
_FORMAT_TO_CODE: Final[dict[str, int]] = {v: k for k, v in _CODE_TO_FORMAT.items()}
# RFC 3551 / RFC 3190 linear PCM media types anbo recognises but does not decode.
_UNSUPPORTED_AUDIO: Final = frozenset({"audio/l8", "audio/l20", "audio/l24"})

#: The one rule for a topic level anbo names (station, target, stream, endpoint id, prefix
#: level): 1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``; safe as an MQTT topic level
#: and as a Prometheus label value. Always matched whole (``is_segment``).
SEGMENT_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
SEGMENT_RE: Final = re.compile(SEGMENT_PATTERN, re.ASCII)


def is_segment(value: str) -> bool:
    """True when *value* is one valid topic level: the whole string, ASCII only, no newline."""
    return SEGMENT_RE.fullmatch(value) is not None


_KEY_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
_DIGITS_RE: Final = re.compile(r"[0-9]{1,19}", re.ASCII)
_FLOAT_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_MEDIA_RE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", re.ASCII)

_FIELDS: Final = frozenset({"ts", "seq", "values", "info", "period"})

_INT16_SCALE: Final = np.float32(1.0 / 32768.0)
_F32: Final = np.dtype(np.float32)

_isfinite = math.isfinite
_min_reduce = np.minimum.reduce
_max_reduce = np.maximum.reduce


@lru_cache(maxsize=1024)
def _key_ok(key: str) -> bool:
    """Metric/info key check, cached: the same few keys arrive in every message."""
    return _KEY_RE.fullmatch(key) is not None


# --------------------------------------------------------------------------- errors


class Reason(StrEnum):
    """Why a message was rejected. Values are stable metric-label strings."""

    TOPIC_MALFORMED = "topic_malformed"
    OVERSIZE = "oversize"
    BAD_JSON = "bad_json"
    BAD_ENVELOPE = "bad_envelope"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_KEY = "bad_key"
    NON_FINITE = "non_finite"
    ABSURD_TIMESTAMP = "absurd_timestamp"
    BAD_SEQ = "bad_seq"
    BAD_PERIOD = "bad_period"
    RAGGED_BATCH = "ragged_batch"
    BAD_CONTENT_TYPE = "bad_content_type"
    UNSUPPORTED_DTYPE = "unsupported_dtype"
    BAD_HEADER = "bad_header"
    BAD_LENGTH = "bad_length"
    OUT_OF_RANGE = "out_of_range"
    MISSING_PROPERTY = "missing_property"


class DecodeError(Exception):
    """A message that breaks the wire contract.

    ``reason`` is the metric label; ``detail`` is for humans and names the
    offending field (``values.rf_level_dbuv: not a finite number``). Details
    may quote publisher-controlled text (truncated); never use them as labels.
    """

    reason: Reason
    detail: str

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def _q(text: object, limit: int = 40) -> str:
    """Quote publisher-controlled text for a detail message, truncated."""
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoder limits; part of the station configuration."""

    max_payload_bytes: int = 4 * 1024 * 1024
    max_future_s: float = 300.0
    max_past_s: float = 7 * 86400.0
    max_batch_len: int = 100_000
    #: Largest accepted float sample magnitude (full scale is 1.0).
    max_sample_abs: float = 16.0

    def __post_init__(self) -> None:
        if self.max_payload_bytes < HEADER_SIZE + 2:
            raise ValueError(f"max_payload_bytes must be >= {HEADER_SIZE + 2}")
        if not (_isfinite(self.max_future_s) and self.max_future_s >= 0):
            raise ValueError("max_future_s must be a finite number >= 0")
        if not (_isfinite(self.max_past_s) and self.max_past_s >= 0):
            raise ValueError("max_past_s must be a finite number >= 0")
        if self.max_batch_len < 1:
            raise ValueError("max_batch_len must be >= 1")
        if not (_isfinite(self.max_sample_abs) and self.max_sample_abs >= 1.0):
            raise ValueError("max_sample_abs must be a finite number >= 1.0")


DEFAULT_LIMITS: Final = Limits()


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class StationTopic:
    """``<prefix>/<station>/<target>/<stream>``."""

    station: str
    target: str
    stream: str


@dataclass(frozen=True, slots=True)
class EndpointTopic:
    """``<prefix>/eb/<endpoint>/<stream>``: an emergency-broadcast endpoint."""

    endpoint: str
    stream: str


class TopicParser:
    """Splits topics under one prefix. Build once; :meth:`parse` is on the hot path."""

    __slots__ = ("_cache", "_cache_size", "_prefix", "_re")

    def __init__(self, prefix: str = "anbo", *, cache_size: int = 4096) -> None:
        segments = prefix.split("/")
        for seg in segments:
            if SEGMENT_RE.fullmatch(seg) is None:
                raise ValueError(
                    f"topic prefix {prefix!r}: each '/'-separated segment must match "
                    f"{SEGMENT_PATTERN} (no wildcards, no empty segments)"
                )
        self._prefix = prefix
        seg = f"({SEGMENT_PATTERN})"
        self._re = re.compile(f"{re.escape(prefix)}/{seg}/{seg}/{seg}", re.ASCII)
        # Valid topics repeat all day: remember them. Bounded (cleared when full)
        # so that a publisher churning through topic names cannot grow it.
        self._cache: dict[str, StationTopic | EndpointTopic] = {}
        self._cache_size = cache_size

    @property
    def prefix(self) -> str:
        return self._prefix

    def parse(self, topic: str) -> StationTopic | EndpointTopic:
        """Parse a topic; raises ``DecodeError(topic_malformed)``."""
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        m = self._re.fullmatch(topic)
        if m is None:
            raise DecodeError(
                Reason.TOPIC_MALFORMED,
                f"topic {_q(topic, 120)}: expected {self._prefix}/<station>/<target>/<stream>"
                f" or {self._prefix}/{ENDPOINT_STATION}/<endpoint>/<stream>",
            )
        station, target, stream = m.groups()
        parsed = (
            EndpointTopic(target, stream)
            if station == ENDPOINT_STATION
            else StationTopic(station, target, stream)
        )
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = parsed
        return parsed

    def subscriptions(self) -> list[str]:
        """MQTT filters covering every topic :meth:`parse` can accept."""
        return [f"{self._prefix}/+/+/+"]


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class Readings:
    """One set of readings taken at ``ts`` (flags already mapped to 0.0/1.0)."""

    ts: float
    seq: int
    values: dict[str, float]
    info: dict[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """Equal-length series; sample ``i`` of every series is at ``ts + i * period``."""

    ts: float
    seq: int
    period: float
    values: dict[str, NDArray[np.float64]]
    info: dict[str, str]

    @property
    def length(self) -> int:
        """Samples per series."""
        for arr in self.values.values():
            return int(arr.shape[0])
        return 0


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Interleaved samples, shape ``(frames, channels)``, full scale 1.0; frame 0 at ``ts``."""

    ts: float
    seq: int
    rate: int
    samples: NDArray[np.float32]

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return int(self.samples.shape[0]) / self.rate


Payload: TypeAlias = Readings | Batch | SampleBlock


# --------------------------------------------------------------------------- field checks


def _check_ts(ts: object, now: float, limits: Limits, where: str = "ts") -> float:
    t = type(ts)
    if t is float:
        value: float = ts  # type: ignore[assignment]
    elif t is int:
        try:
            value = float(ts)  # type: ignore[arg-type]
        except OverflowError:
            raise DecodeError(Reason.NON_FINITE, f"{where}: not a finite number") from None
    else:
        raise DecodeError(Reason.BAD_TYPE, f"{where}: expected a number, got {type(ts).__name__}")
    if not _isfinite(value):
        raise DecodeError(Reason.NON_FINITE, f"{where}: not a finite number")
    if value <= 0.0:
        raise DecodeError(Reason.ABSURD_TIMESTAMP, f"{where}: {value!r} is not after 1970")
    if value - now > limits.max_future_s:
        raise DecodeError(
            Reason.ABSURD_TIMESTAMP,
            f"{where}: {value!r} is {value - now:.3f} s ahead of now (limit {limits.max_future_s} s)",
        )
    if now - value > limits.max_past_s:
        raise DecodeError(
            Reason.ABSURD_TIMESTAMP,
            f"{where}: {value!r} is {now - value:.3f} s behind now (limit {limits.max_past_s} s)",
        )
    return value


def _check_end(ts: float, span: float, now: float, limits: Limits) -> None:
    """The last sample of a batch or block must not lie in the future either."""
    end = ts + span
    if not end - now <= limits.max_future_s:
        raise DecodeError(
            Reason.ABSURD_TIMESTAMP,
            f"last sample at {end!r} is more than {limits.max_future_s} s ahead of now",
        )


def _check_seq(seq: object, where: str = "seq") -> int:
    if type(seq) is not int:
        raise DecodeError(Reason.BAD_SEQ, f"{where}: expected an integer, got {type(seq).__name__}")
    if not 0 <= seq <= SEQ_MAX:
        raise DecodeError(Reason.BAD_SEQ, f"{where}: {_q(seq)} outside 0..2**63-1")
    return seq


def _check_info(info: object) -> dict[str, str]:
    if type(info) is not dict:
        raise DecodeError(Reason.BAD_TYPE, f"info: expected an object, got {type(info).__name__}")
    for k, v in info.items():
        if not _key_ok(k):
            raise DecodeError(Reason.BAD_KEY, f"info.{_q(k)}: key must match [a-z][a-z0-9_]{{0,63}}")
        if type(v) is not str:
            raise DecodeError(Reason.BAD_TYPE, f"info.{k}: expected a string, got {type(v).__name__}")
        if len(v) > MAX_INFO_LEN or not v.isprintable():
            raise DecodeError(
                Reason.BAD_TYPE,
                f"info.{k}: expected a printable string of at most {MAX_INFO_LEN} characters",
            )
    return info


# --------------------------------------------------------------------------- JSON


def _decode_json(payload: bytes, now: float, limits: Limits) -> Readings | Batch:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(Reason.BAD_JSON, f"not UTF-8 at byte {exc.start}") from None
    except ValueError as exc:  # JSONDecodeError, and int-digit-limit errors
        raise DecodeError(Reason.BAD_JSON, _q(str(exc), 120)) from None
    except RecursionError:
        raise DecodeError(Reason.BAD_JSON, "nested too deeply") from None
    if type(obj) is not dict:
        raise DecodeError(Reason.BAD_ENVELOPE, f"expected a JSON object, got {type(obj).__name__}")
    if not obj.keys() <= _FIELDS:
        unknown = sorted(obj.keys() - _FIELDS)
        raise DecodeError(
            Reason.BAD_ENVELOPE,
            f"unknown top-level field {_q(unknown[0])} (allowed: ts, seq, values, info, period)",
        )
    try:
        ts_raw = obj["ts"]
        seq_raw = obj["seq"]
        values = obj["values"]
    except KeyError as exc:
        raise DecodeError(Reason.MISSING_FIELD, f"{exc.args[0]}: required field missing") from None
    ts = _check_ts(ts_raw, now, limits)
    seq = _check_seq(seq_raw)
    if type(values) is not dict:
        raise DecodeError(Reason.BAD_TYPE, f"values: expected an object, got {type(values).__name__}")
    info: dict[str, str] = _check_info(obj["info"]) if "info" in obj else {}
    if "period" in obj:
        return _decode_batch(ts, seq, obj["period"], values, info, now, limits)

    out: dict[str, float] = {}
    for k, v in values.items():
        if not _key_ok(k):
            raise DecodeError(Reason.BAD_KEY, f"values.{_q(k)}: key must match [a-z][a-z0-9_]{{0,63}}")
        t = type(v)
        if t is float:
            if not _isfinite(v):
                raise DecodeError(Reason.NON_FINITE, f"values.{k}: not a finite number")
            out[k] = v
        elif t is int:
            try:
                out[k] = float(v)
            except OverflowError:
                raise DecodeError(Reason.NON_FINITE, f"values.{k}: not a finite number") from None
        elif t is bool:
            out[k] = 1.0 if v else 0.0
        elif t is list:
            raise DecodeError(Reason.BAD_TYPE, f"values.{k}: an array needs 'period' (batched readings)")
        else:
            raise DecodeError(Reason.BAD_TYPE, f"values.{k}: expected a number or boolean, got {t.__name__}")
    return Readings(ts, seq, out, info)


def _series(key: str, raw: object) -> NDArray[np.float64]:
    if type(raw) is not list:
        raise DecodeError(
            Reason.BAD_TYPE, f"values.{key}: batched readings need an array, got {type(raw).__name__}"
        )
    try:
        arr = np.array(raw)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise DecodeError(Reason.BAD_TYPE, f"values.{key}: expected an array of numbers") from None
    kind = arr.dtype.kind
    if arr.ndim != 1:
        raise DecodeError(Reason.BAD_TYPE, f"values.{key}: expected a flat array of numbers")
    if kind == "O":
        # Rare: integers beyond 64 bits, or a non-number hiding among numbers
        # (numpy would silently turn None into NaN). Check element types here only.
        for i, x in enumerate(raw):
            if type(x) not in (int, float, bool):
                raise DecodeError(
                    Reason.BAD_TYPE, f"values.{key}[{i}]: expected a number, got {type(x).__name__}"
                )
        try:
            arr = np.array([float(x) for x in raw], dtype=np.float64)
        except OverflowError:
            raise DecodeError(Reason.NON_FINITE, f"values.{key}: not all finite numbers") from None
    elif kind not in "fiub":
        raise DecodeError(Reason.BAD_TYPE, f"values.{key}: expected an array of numbers")
    elif kind != "f":
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        i = int(np.argmin(np.isfinite(arr)))
        raise DecodeError(Reason.NON_FINITE, f"values.{key}[{i}]: not a finite number")
    return arr


def _decode_batch(
    ts: float,
    seq: int,
    period_raw: object,
    values: dict[str, Any],
    info: dict[str, str],
    now: float,
    limits: Limits,
) -> Batch:
    t = type(period_raw)
    if t is float or t is int:
        try:
            period = float(period_raw)  # type: ignore[arg-type]
        except OverflowError:
            period = math.inf
        if not (_isfinite(period) and period > 0.0):
            raise DecodeError(Reason.BAD_PERIOD, f"period: {_q(period_raw)} is not a finite number > 0")
    else:
        raise DecodeError(Reason.BAD_PERIOD, f"period: expected a number > 0, got {t.__name__}")
    if not values:
        raise DecodeError(Reason.RAGGED_BATCH, "values: a batch needs at least one series")
    out: dict[str, NDArray[np.float64]] = {}
    n = -1
    first = ""
    for k, raw in values.items():
        if not _key_ok(k):
            raise DecodeError(Reason.BAD_KEY, f"values.{_q(k)}: key must match [a-z][a-z0-9_]{{0,63}}")
        if type(raw) is list:
            m = len(raw)
            if m == 0:
                raise DecodeError(Reason.RAGGED_BATCH, f"values.{k}: empty array")
            if m > limits.max_batch_len:
                raise DecodeError(
                    Reason.RAGGED_BATCH,
                    f"values.{k}: {m} samples, more than the limit {limits.max_batch_len}",
                )
            if n < 0:
                n, first = m, k
            elif m != n:
                raise DecodeError(Reason.RAGGED_BATCH, f"values.{k}: {m} samples but values.{first} has {n}")
        out[k] = _series(k, raw)
    _check_end(ts, (n - 1) * period, now, limits)
    return Batch(ts, seq, period, out, info)


# --------------------------------------------------------------------------- binary


class SampleSpec(NamedTuple):
    """Sample layout named by an MQTT v5 content type."""

    fmt: SampleFormat
    rate: int
    channels: int


#: Longest content type accepted (longer ones are bad_content_type; bounds the cache).
MAX_CONTENT_TYPE_LEN: Final = 256


def parse_content_type(content_type: str) -> SampleSpec | None:
    """Parse an MQTT v5 content type: ``None`` for JSON, else the sample layout.

    Media types and parameter names and values are case-insensitive, parameters
    may come in any order, whitespace around ``;`` and ``=`` is ignored and
    values may be double-quoted. Raises :class:`DecodeError`
    (``bad_content_type`` or ``unsupported_dtype``). Cached: publishers repeat
    the same few strings.
    """
    if len(content_type) > MAX_CONTENT_TYPE_LEN:
        raise DecodeError(
            Reason.BAD_CONTENT_TYPE,
            f"content type of {len(content_type)} characters (limit {MAX_CONTENT_TYPE_LEN})",
        )
    return _parse_content_type(content_type)


@lru_cache(maxsize=128)
def _parse_content_type(content_type: str) -> SampleSpec | None:
    media_raw, *param_parts = content_type.split(";")
    media = media_raw.strip().lower()
    if _MEDIA_RE.fullmatch(media) is None:
        raise DecodeError(Reason.BAD_CONTENT_TYPE, f"content type {_q(content_type)}: unparseable")
    params: dict[str, str] = {}
    for part in param_parts:
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].strip()
        if not sep or not name or not value:
            raise DecodeError(
                Reason.BAD_CONTENT_TYPE,
                f"content type {_q(content_type)}: parameter {_q(part)} is not name=value",
            )
        if name in params:
            raise DecodeError(
                Reason.BAD_CONTENT_TYPE,
                f"content type {_q(content_type)}: parameter {_q(name)} given twice",
            )
        params[name] = value.lower()

    if media == JSON_CONTENT_TYPE:
        charset = params.get("charset", "utf-8")
        if charset not in ("utf-8", "utf8"):
            raise DecodeError(Reason.BAD_CONTENT_TYPE, f"content type {_q(content_type)}: JSON must be UTF-8")
        return None
    if media == "audio/l16":
        fmt: SampleFormat = "int16be"  # RFC 3551: network byte order
        allowed = None  # other RFC 2586 parameters (emphasis, channel-order) are ignored
    elif media == SAMPLES_MEDIA_TYPE:
        dtype = params.get("dtype")
        if dtype is None:
            raise DecodeError(
                Reason.BAD_CONTENT_TYPE, f"content type {_q(content_type)}: missing parameter dtype"
            )
        if dtype not in _DTYPES:
            raise DecodeError(
                Reason.UNSUPPORTED_DTYPE,
                f"content type {_q(content_type)}: dtype {_q(dtype)} not one of {', '.join(_DTYPES)}",
            )
        fmt = dtype  # type: ignore[assignment]
        allowed = {"dtype", "rate", "channels"}
    elif media in _UNSUPPORTED_AUDIO:
        raise DecodeError(
            Reason.UNSUPPORTED_DTYPE,
            f"content type {_q(content_type)}: only 16-bit linear PCM (audio/L16) is supported",
        )
    else:
        raise DecodeError(Reason.BAD_CONTENT_TYPE, f"content type {_q(content_type)}: unknown media type")
    if allowed is not None and not params.keys() <= allowed:
        extra = sorted(params.keys() - allowed)[0]
        raise DecodeError(
            Reason.BAD_CONTENT_TYPE,
            f"content type {_q(content_type)}: unknown parameter {_q(extra)}",
        )
    rate_s = params.get("rate")
    if rate_s is None:
        raise DecodeError(Reason.BAD_CONTENT_TYPE, f"content type {_q(content_type)}: missing parameter rate")
    channels_s = params.get("channels", "1")
    if _DIGITS_RE.fullmatch(rate_s) is None or not 1 <= int(rate_s) <= MAX_RATE:
        raise DecodeError(
            Reason.BAD_CONTENT_TYPE,
            f"content type {_q(content_type)}: rate must be an integer 1..{MAX_RATE}",
        )
    if _DIGITS_RE.fullmatch(channels_s) is None or not 1 <= int(channels_s) <= MAX_CHANNELS:
        raise DecodeError(
            Reason.BAD_CONTENT_TYPE,
            f"content type {_q(content_type)}: channels must be an integer 1..{MAX_CHANNELS}",
        )
    return SampleSpec(fmt, int(rate_s), int(channels_s))


def _samples(
    payload: bytes, offset: int, fmt: SampleFormat, channels: int, limits: Limits
) -> NDArray[np.float32]:
    dt = _NP_DTYPES[fmt]
    frame_bytes = dt.itemsize * channels
    nbytes = len(payload) - offset
    if nbytes <= 0 or nbytes % frame_bytes:
        raise DecodeError(
            Reason.BAD_LENGTH,
            f"{nbytes} sample bytes is not a positive whole number of {channels}-channel "
            f"{fmt} frames ({frame_bytes} bytes each)",
        )
    raw = np.frombuffer(payload, dtype=dt, offset=offset)
    x: NDArray[np.float32] = raw.astype(_F32)  # native byte order, owned and writable
    if dt.kind == "i":
        x *= _INT16_SCALE  # full scale 1.0; exact (a power of two)
    else:
        lo = _min_reduce(x)
        hi = _max_reduce(x)
        bound = limits.max_sample_abs
        if not (lo >= -bound and hi <= bound):  # also catches NaN
            if not np.isfinite(x).all():
                raise DecodeError(Reason.NON_FINITE, "samples: not all finite")
            raise DecodeError(
                Reason.OUT_OF_RANGE,
                f"samples: magnitude {max(-float(lo), float(hi)):.6g} exceeds {bound} (full scale is 1.0)",
            )
    return x.reshape(-1, channels)


def _user_props(props: Sequence[tuple[str, str]] | None) -> tuple[str, str]:
    ts_s: str | None = None
    seq_s: str | None = None
    if props:
        for key, value in props:
            if key == "ts":
                if ts_s is not None:
                    raise DecodeError(Reason.BAD_ENVELOPE, "user property ts given more than once")
                ts_s = value
            elif key == "seq":
                if seq_s is not None:
                    raise DecodeError(Reason.BAD_ENVELOPE, "user property seq given more than once")
                seq_s = value
    if ts_s is None or seq_s is None:
        missing = " and ".join(n for n, v in (("ts", ts_s), ("seq", seq_s)) if v is None)
        raise DecodeError(Reason.MISSING_PROPERTY, f"binary MQTT v5 payload needs user property {missing}")
    return ts_s, seq_s


def _decode_v5(
    payload: bytes,
    spec: SampleSpec,
    props: Sequence[tuple[str, str]] | None,
    now: float,
    limits: Limits,
) -> SampleBlock:
    ts_s, seq_s = _user_props(props)
    if type(ts_s) is not str or _FLOAT_RE.fullmatch(ts_s) is None:
        if type(ts_s) is str and ts_s.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise DecodeError(Reason.NON_FINITE, "user property ts: not a finite number")
        raise DecodeError(Reason.BAD_TYPE, f"user property ts: {_q(ts_s)} is not a decimal number")
    ts = float(ts_s)  # may overflow to inf for huge exponents
    if not _isfinite(ts):
        raise DecodeError(Reason.NON_FINITE, "user property ts: not a finite number")
    ts = _check_ts(ts, now, limits, "user property ts")
    if type(seq_s) is not str or _DIGITS_RE.fullmatch(seq_s) is None:
        raise DecodeError(Reason.BAD_SEQ, f"user property seq: {_q(seq_s)} is not a decimal integer >= 0")
    seq = _check_seq(int(seq_s), "user property seq")
    x = _samples(payload, 0, spec.fmt, spec.channels, limits)
    _check_end(ts, (x.shape[0] - 1) / spec.rate, now, limits)
    return SampleBlock(ts, seq, spec.rate, x)


def _decode_v311(payload: bytes, now: float, limits: Limits) -> SampleBlock:
    if len(payload) < HEADER_SIZE:
        raise DecodeError(
            Reason.BAD_HEADER, f"{len(payload)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    _magic, version, code, channels, rate, seq, ts = HEADER.unpack_from(payload, 0)
    if version != WIRE_VERSION:
        raise DecodeError(Reason.BAD_HEADER, f"header version {version}, expected {WIRE_VERSION}")
    fmt = _CODE_TO_FORMAT.get(code)
    if fmt is None:
        raise DecodeError(Reason.BAD_HEADER, f"header dtype code {code} not one of 1..4")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DecodeError(Reason.BAD_HEADER, f"header channels {channels} outside 1..{MAX_CHANNELS}")
    if not 1 <= rate <= MAX_RATE:
        raise DecodeError(Reason.BAD_HEADER, f"header rate {rate} outside 1..{MAX_RATE}")
    if seq < 0:
        raise DecodeError(Reason.BAD_SEQ, f"header seq {seq} is negative")
    ts = _check_ts(ts, now, limits, "header ts")
    x = _samples(payload, HEADER_SIZE, fmt, channels, limits)
    _check_end(ts, (x.shape[0] - 1) / rate, now, limits)
    return SampleBlock(ts, seq, rate, x)


# --------------------------------------------------------------------------- decode


def decode(
    payload: bytes,
    *,
    content_type: str | None,
    user_properties: Sequence[tuple[str, str]] | None,
    now: float,
    limits: Limits = DEFAULT_LIMITS,
) -> Payload:
    """Decode one MQTT message payload; raises :class:`DecodeError`.

    Dispatch: the size limit is checked first. A content type naming a sample
    media type (``audio/L16``, ``application/vnd.anbo.samples``) selects the
    MQTT v5 binary framing; otherwise a payload starting with ``b"ANBO"`` is an
    MQTT 3.1.1 header block; otherwise a content type other than
    ``application/json`` is rejected; otherwise the payload is JSON. An empty
    content type counts as absent.
    """
    if len(payload) > limits.max_payload_bytes:
        raise DecodeError(
            Reason.OVERSIZE,
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
        )
    if content_type:
        try:
            spec = parse_content_type(content_type)
        except DecodeError:
            if payload.startswith(MAGIC):
                return _decode_v311(payload, now, limits)
            raise
        if spec is not None:
            return _decode_v5(payload, spec, user_properties, now, limits)
    if payload.startswith(MAGIC):
        return _decode_v311(payload, now, limits)
    return _decode_json(payload, now, limits)


# --------------------------------------------------------------------------- encoders


def _enc_ts(ts: float) -> float:
    ts = float(ts)
    if not (_isfinite(ts) and ts > 0.0):
        raise ValueError(f"ts must be a finite number > 0, got {ts!r}")
    return ts


def _enc_seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int | np.integer):
        raise ValueError(f"seq must be an integer, got {type(seq).__name__}")
    seq = int(seq)
    if not 0 <= seq <= SEQ_MAX:
        raise ValueError(f"seq must be in 0..2**63-1, got {seq}")
    return seq


def _enc_key(key: str, where: str) -> str:
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"{where}.{key!r}: key must match [a-z][a-z0-9_]{{0,63}}")
    return key


def _enc_info(info: Mapping[str, str] | None) -> dict[str, str] | None:
    if info is None:
        return None
    out: dict[str, str] = {}
    for k, v in info.items():
        _enc_key(k, "info")
        if not isinstance(v, str) or len(v) > MAX_INFO_LEN or not v.isprintable():
            raise ValueError(f"info.{k}: must be a printable string of at most {MAX_INFO_LEN} chars")
        out[k] = v
    return out


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def encode_readings(
    ts: float,
    seq: int,
    values: Mapping[str, float | bool],
    *,
    info: Mapping[str, str] | None = None,
) -> bytes:
    """Encode a JSON reading. Booleans stay booleans (decoded as 0.0/1.0)."""
    vals: dict[str, float | bool] = {}
    for k, v in values.items():
        _enc_key(k, "values")
        if isinstance(v, bool | np.bool_):
            vals[k] = bool(v)
            continue
        f = float(v)
        if not _isfinite(f):
            raise ValueError(f"values.{k}: not a finite number")
        vals[k] = f
    obj: dict[str, object] = {"ts": _enc_ts(ts), "seq": _enc_seq(seq), "values": vals}
    inf = _enc_info(info)
    if inf is not None:
        obj["info"] = inf
    return _dumps(obj)


def encode_batch(
    ts: float,
    seq: int,
    period: float,
    values: Mapping[str, ArrayLike],
    *,
    info: Mapping[str, str] | None = None,
    max_batch_len: int = DEFAULT_LIMITS.max_batch_len,
) -> bytes:
    """Encode JSON batched readings: equal-length 1-D series sampled every ``period`` s."""
    period = float(period)
    if not (_isfinite(period) and period > 0.0):
        raise ValueError(f"period must be a finite number > 0, got {period!r}")
    if not values:
        raise ValueError("a batch needs at least one series")
    series: dict[str, list[float]] = {}
    n = -1
    for k, v in values.items():
        _enc_key(k, "values")
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim != 1 or not 1 <= arr.shape[0] <= max_batch_len:
            raise ValueError(f"values.{k}: must be a 1-D array of 1..{max_batch_len} samples")
        if n >= 0 and arr.shape[0] != n:
            raise ValueError(f"values.{k}: {arr.shape[0]} samples, other series have {n}")
        n = arr.shape[0]
        if not np.isfinite(arr).all():
            raise ValueError(f"values.{k}: not all finite")
        series[k] = arr.tolist()
    obj: dict[str, object] = {
        "ts": _enc_ts(ts),
        "seq": _enc_seq(seq),
        "period": period,
        "values": series,
    }
    inf = _enc_info(info)
    if inf is not None:
        obj["info"] = inf
    return _dumps(obj)


def _enc_samples(samples: ArrayLike, fmt: str, max_abs: float) -> tuple[bytes, int]:
    """Return (sample bytes, channels) for a (frames, channels) or mono 1-D array.

    Float input is full scale 1.0; int16 input is taken as raw int16 codes.
    """
    if fmt not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {fmt!r}")
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] < 1 or not 1 <= arr.shape[1] <= MAX_CHANNELS:
        raise ValueError(f"samples must be shaped (frames >= 1, channels 1..{MAX_CHANNELS}), got {arr.shape}")
    dt = np.dtype(_DTYPES[fmt])
    if arr.dtype == np.int16:
        out = arr if dt.kind == "i" else arr.astype(np.float32) * _INT16_SCALE
    else:
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"samples must be numbers, got dtype {arr.dtype}")
        f = arr.astype(np.float64)
        if not np.isfinite(f).all():
            raise ValueError("samples must be finite")
        if dt.kind == "i":
            out = np.clip(np.rint(f * 32768.0), -32768, 32767).astype(np.int16)
        else:
            if np.abs(f).max() > max_abs:
                raise ValueError(f"sample magnitude exceeds {max_abs} (full scale is 1.0)")
            out = f.astype(np.float32)
    return np.ascontiguousarray(out, dtype=dt).tobytes(), int(arr.shape[1])


def _enc_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise ValueError(f"rate must be an integer, got {type(rate).__name__}")
    if not 1 <= rate <= MAX_RATE:
        raise ValueError(f"rate must be in 1..{MAX_RATE}, got {rate}")
    return int(rate)


def _enc_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer):
        raise ValueError(f"channels must be an integer, got {type(channels).__name__}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be in 1..{MAX_CHANNELS}, got {channels}")
    return int(channels)


def sample_width(dtype: SampleFormat) -> int:
    """Bytes per sample of a sample format (2 for int16, 4 for float32)."""
    if dtype not in _NP_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return _NP_DTYPES[dtype].itemsize


def frame_block_v311(
    body: bytes, *, ts: float, seq: int, rate: int, channels: int, dtype: SampleFormat = "int16le"
) -> bytes:
    """Frame already encoded interleaved samples (``body``, in ``dtype``) for MQTT 3.1.1:
    the 28-byte ``ANBO`` header + ``body``. For gateways whose decoder (ffmpeg) writes
    the wire's sample format directly; :func:`encode_block_v311` encodes arrays."""
    ch = _enc_channels(channels)
    if not body or len(body) % (ch * sample_width(dtype)):
        raise ValueError(
            f"{len(body)} bytes are not a whole, non-zero number of {dtype} frames of {ch} channels"
        )
    header = HEADER.pack(
        MAGIC, WIRE_VERSION, _FORMAT_TO_CODE[dtype], ch, _enc_rate(rate), _enc_seq(seq), _enc_ts(ts)
    )
    return header + body


def frame_block_v5(
    body: bytes,
    *,
    ts: float,
    seq: int,
    rate: int,
    channels: int,
    dtype: SampleFormat = "int16le",
    l16: bool = False,
) -> tuple[bytes, str, list[tuple[str, str]]]:
    """Frame already encoded interleaved samples for MQTT v5: ``(payload, content_type,
    user_properties)``; ``l16=True`` (``dtype`` int16be) as ``audio/L16``, otherwise as
    ``application/vnd.anbo.samples``."""
    if l16 and dtype != "int16be":
        raise ValueError("audio/L16 is int16 big-endian; dtype must be 'int16be'")
    ch = _enc_channels(channels)
    if not body or len(body) % (ch * sample_width(dtype)):
        raise ValueError(
            f"{len(body)} bytes are not a whole, non-zero number of {dtype} frames of {ch} channels"
        )
    r = _enc_rate(rate)
    if l16:
        ctype = f"{L16_MEDIA_TYPE};rate={r};channels={ch}"
    else:
        ctype = f"{SAMPLES_MEDIA_TYPE};dtype={dtype};rate={r};channels={ch}"
    return body, ctype, [("ts", repr(_enc_ts(ts))), ("seq", str(_enc_seq(seq)))]


def encode_block_v311(
    samples: ArrayLike,
    *,
    ts: float,
    seq: int,
    rate: int,
    dtype: SampleFormat = "int16le",
    max_sample_abs: float = DEFAULT_LIMITS.max_sample_abs,
) -> bytes:
    """Encode a sample block for MQTT 3.1.1: 28-byte ``ANBO`` header + interleaved samples."""
    body, channels = _enc_samples(samples, dtype, max_sample_abs)
    return frame_block_v311(body, ts=ts, seq=seq, rate=rate, channels=channels, dtype=dtype)


def encode_block_v5(
    samples: ArrayLike,
    *,
    ts: float,
    seq: int,
    rate: int,
    dtype: SampleFormat | None = None,
    l16: bool = False,
    max_sample_abs: float = DEFAULT_LIMITS.max_sample_abs,
) -> tuple[bytes, str, list[tuple[str, str]]]:
    """Encode a sample block for MQTT v5: ``(payload, content_type, user_properties)``.

    ``l16=True`` uses ``audio/L16`` (int16 big-endian, RFC 3551); otherwise
    ``application/vnd.anbo.samples`` with ``dtype`` (default ``int16le``).
    """
    if l16:
        if dtype not in (None, "int16be"):
            raise ValueError("audio/L16 is int16 big-endian; dtype must be None or 'int16be'")
        fmt: SampleFormat = "int16be"
    else:
        fmt = "int16le" if dtype is None else dtype
    body, channels = _enc_samples(samples, fmt, max_sample_abs)
    return frame_block_v5(body, ts=ts, seq=seq, rate=rate, channels=channels, dtype=fmt, l16=l16)


# --------------------------------------------------------------------------- sequence


class SeqEvent(StrEnum):
    """How one sequence number relates to those seen before on a (target, stream)."""

    FIRST = "first"
    IN_ORDER = "in_order"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"
    RESET = "reset"


class SeqResult(NamedTuple):
    """``missing`` is the change in the count of missing messages caused by this one.

    ``gap``: ``+n`` (messages skipped); ``late``: ``-1`` when it fills a hole a
    previous gap counted, ``0`` when it is older than the first message of the
    current baseline; every other event: ``0``. Summing ``missing`` over all
    results gives the messages still missing (never negative).
    """

    event: SeqEvent
    missing: int = 0

    @property
    def accepted(self) -> bool:
        """False only for duplicates: everything else is new data to process."""
        return self.event is not SeqEvent.DUPLICATE


_FIRST: Final = SeqResult(SeqEvent.FIRST)
_IN_ORDER: Final = SeqResult(SeqEvent.IN_ORDER)
_DUPLICATE: Final = SeqResult(SeqEvent.DUPLICATE)
_RESET: Final = SeqResult(SeqEvent.RESET)
_LATE_FILL: Final = SeqResult(SeqEvent.LATE, -1)
_LATE_OLD: Final = SeqResult(SeqEvent.LATE, 0)


class SeqTracker:
    """Gaps, duplicates, reordering and restarts on one (target, stream).

    Keeps the highest sequence number seen and a bitset of which of the last
    ``window`` numbers (``highest - window + 1 .. highest``) arrived. Per
    observed ``seq``:

    - first observation: ``first`` (the baseline starts here);
    - ``seq == highest + 1``: ``in_order``;
    - ``seq > highest + 1``: ``gap``, ``missing = seq - highest - 1``;
    - ``seq <= highest`` within the window and already seen: ``duplicate``
      (QoS 1 redelivery; drop it);
    - ``seq <= highest`` within the window, not seen: ``late`` (reordered; keep
      it; ``missing = -1`` when it fills a hole a gap counted);
    - ``seq <= highest - window`` (beyond the window): ``reset`` -- the
      publisher restarted; the baseline starts again at ``seq``;
    - if ``ts`` is given with every observation: ``seq <= highest`` but ``ts``
      newer than the message carrying ``highest`` is also ``reset``. A
      redelivered or reordered message is never newer than the newest one, a
      restarted publisher's messages are, so a restart within the window is
      not mistaken for a run of duplicates.

    - a forward jump is a gap only while it is *plausible*: at most ``max_gap``
      messages skipped, or, when the receive time ``rx`` (anbo's own monotonic
      clock, which a publisher cannot forge) is given, at most ``max_rate``
      messages per second since the message carrying ``highest`` arrived. A
      jump beyond that (a stale replay, a client publishing a far-away ``seq``)
      is a ``reset``: the baseline starts again at ``seq`` instead of counting
      billions of missing messages that were never sent.

    A plausible forward jump is always a gap: a publisher restarting at a
    slightly higher number cannot be told apart from lost messages. O(1)
    amortized per call (one shift of a ``window``-bit integer).
    """

    __slots__ = (
        "_base",
        "_bits",
        "_highest",
        "_highest_rx",
        "_highest_ts",
        "_mask",
        "_window",
        "duplicates",
        "late",
        "max_gap",
        "max_rate",
        "missing",
        "observed",
        "resets",
    )

    def __init__(self, window: int = 1024, *, max_gap: int = 10_000, max_rate: float = 1000.0) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        if max_gap < 0 or not max_rate >= 0:
            raise ValueError("max_gap and max_rate must be >= 0")
        self._window = window
        #: Most messages a forward jump may skip and still count as a gap (without ``rx``,
        #: or when the time since the highest does not allow more at ``max_rate``/s).
        self.max_gap = max_gap
        self.max_rate = max_rate
        self._highest_rx: float | None = None
        self._mask = (1 << window) - 1
        self._highest: int | None = None
        self._highest_ts = -math.inf
        self._base = 0
        self._bits = 0  # bit i set <=> seq (highest - i) was seen
        #: Messages observed, duplicates among them, late arrivals, resets.
        self.observed = 0
        self.duplicates = 0
        self.late = 0
        self.resets = 0
        #: Messages currently missing (sum of ``SeqResult.missing``).
        self.missing = 0

    @property
    def window(self) -> int:
        return self._window

    @property
    def highest(self) -> int | None:
        return self._highest

    def _baseline(self, seq: int, ts: float | None, rx: float | None) -> None:
        self._highest = seq
        self._base = seq
        self._bits = 1
        self._highest_ts = -math.inf if ts is None else ts
        self._highest_rx = rx

    def plausible_gap(self, skipped: int, rx: float | None) -> bool:
        """Whether ``skipped`` messages can really have been lost since the highest arrived."""
        if skipped <= self.max_gap:
            return True
        last = self._highest_rx
        return rx is not None and last is not None and skipped <= self.max_rate * (rx - last)

    def observe(self, seq: int, ts: float | None = None, rx: float | None = None) -> SeqResult:
        self.observed += 1
        highest = self._highest
        if highest is None:
            self._baseline(seq, ts, rx)
            return _FIRST
        d = seq - highest
        if d > 0:
            if d > self.max_gap + 1 and not self.plausible_gap(d - 1, rx):
                self.resets += 1
                self._baseline(seq, ts, rx)
                return _RESET
            self._highest = seq
            self._highest_rx = rx
            if ts is not None and ts > self._highest_ts:
                self._highest_ts = ts
            self._bits = 1 if d >= self._window else ((self._bits << d) | 1) & self._mask
            if d == 1:
                return _IN_ORDER
            self.missing += d - 1
            return SeqResult(SeqEvent.GAP, d - 1)
        back = -d
        if back >= self._window or (
            ts is not None and ts > self._highest_ts and self._highest_ts != -math.inf
        ):
            self.resets += 1
            self._baseline(seq, ts, rx)
            return _RESET
        bit = 1 << back
        if self._bits & bit:
            self.duplicates += 1
            return _DUPLICATE
        self._bits |= bit
        self.late += 1
        if seq < self._base:
            return _LATE_OLD
        self.missing -= 1
        return _LATE_FILL
