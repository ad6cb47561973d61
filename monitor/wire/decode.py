"""Payloads decoded strictly: JSON readings and batches, binary and MQTT v5 sample
blocks; each failure a distinct :class:`~monitor.wire.contract.Reason`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import NDArray

from monitor.wire.contract import (
    _CODE_TO_FORMAT,
    _DIGITS_RE,
    _DTYPES,
    _F32,
    _FIELDS,
    _FLOAT_RE,
    _INT16_SCALE,
    _MEDIA_RE,
    _NP_DTYPES,
    _UNSUPPORTED_AUDIO,
    DEFAULT_LIMITS,
    HEADER,
    HEADER_SIZE,
    JSON_CONTENT_TYPE,
    MAGIC,
    MAX_CHANNELS,
    MAX_INFO_LEN,
    MAX_RATE,
    SAMPLES_MEDIA_TYPE,
    SEQ_MAX,
    WIRE_VERSION,
    DecodeError,
    Limits,
    Reason,
    SampleFormat,
    _isfinite,
    _key_ok,
    _max_reduce,
    _min_reduce,
    _q,
)

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
