"""Encoders of every payload form: what gateways, the simulator and the tests publish
(the inverse of :mod:`monitor.wire.decode`, checked as strictly)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from monitor.wire.contract import (
    _DTYPES,
    _FORMAT_TO_CODE,
    _INT16_SCALE,
    _KEY_RE,
    _NP_DTYPES,
    DEFAULT_LIMITS,
    HEADER,
    L16_MEDIA_TYPE,
    MAGIC,
    MAX_CHANNELS,
    MAX_INFO_LEN,
    MAX_RATE,
    SAMPLES_MEDIA_TYPE,
    SEQ_MAX,
    WIRE_VERSION,
    SampleFormat,
    _isfinite,
)

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
