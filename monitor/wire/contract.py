"""The wire contract's fixed facts: its version, the binary header, sample formats and
their numpy dtypes, the size limits, and the vocabulary of failures (:class:`Reason`,
:class:`DecodeError`, :class:`Limits`)."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias

import numpy as np

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
