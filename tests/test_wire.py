"""The wire contract (monitor.wire): every rejection reason, round trips, topics, sequences."""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

import numpy as np
import pytest

from monitor.wire import (
    DEFAULT_LIMITS,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    WIRE_VERSION,
    Batch,
    DecodeError,
    EndpointTopic,
    Limits,
    Readings,
    Reason,
    SampleBlock,
    SeqEvent,
    SeqResult,
    SeqTracker,
    StationTopic,
    TopicParser,
    decode,
    encode_batch,
    encode_block_v5,
    encode_block_v311,
    encode_readings,
    parse_content_type,
)

NOW = 1_750_000_000.0
STEREO = np.array([[0, 1], [-32768, 32767], [1000, -1000], [12345, -54]], dtype=np.int16)


def dec(
    payload: bytes,
    content_type: str | None = None,
    props: list[tuple[str, str]] | None = None,
    *,
    now: float = NOW,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    return decode(payload, content_type=content_type, user_properties=props, now=now, limits=limits)


def js(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reading(**over: object) -> bytes:
    obj: dict[str, object] = {"ts": NOW, "seq": 1, "values": {"rf_level_dbuv": 61.2}}
    obj.update(over)
    return js(obj)


def batch(**over: object) -> bytes:
    obj: dict[str, object] = {
        "ts": NOW - 10,
        "seq": 1,
        "period": 0.5,
        "values": {"rf_level_dbuv": [61.0, 61.5], "lock": [True, False]},
    }
    obj.update(over)
    return js(obj)


def header(
    *,
    magic: bytes = MAGIC,
    version: int = WIRE_VERSION,
    code: int = 2,
    channels: int = 1,
    rate: int = 48000,
    seq: int = 0,
    ts: float = NOW,
) -> bytes:
    return struct.pack(">4sBBHIqd", magic, version, code, channels, rate, seq, ts)


V5_CT = "application/vnd.anbo.samples;dtype=int16le;rate=48000;channels=2"
V5_PROPS = [("ts", repr(NOW)), ("seq", "7")]


def rejects(reason: Reason, payload: bytes, *args: Any, **kwargs: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        dec(payload, *args, **kwargs)
    assert info.value.reason is reason, str(info.value)
    assert info.value.detail
    return info.value


# --------------------------------------------------------------------------- reasons


def test_reason_values_are_stable_metric_labels() -> None:
    expected = {
        "topic_malformed",
        "oversize",
        "bad_json",
        "bad_envelope",
        "missing_field",
        "bad_type",
        "bad_key",
        "non_finite",
        "absurd_timestamp",
        "bad_seq",
        "bad_period",
        "ragged_batch",
        "bad_content_type",
        "unsupported_dtype",
        "bad_header",
        "bad_length",
        "out_of_range",
        "missing_property",
    }
    assert {r.value for r in Reason} == expected
    for r in Reason:
        assert r == r.value
        assert r.value.islower()
        assert " " not in r.value


def test_decode_error_carries_reason_and_detail_and_pickles() -> None:
    err = rejects(Reason.NON_FINITE, reading(values={"rf_level_dbuv": float("nan")}))
    assert err.detail == "values.rf_level_dbuv: not a finite number"
    assert str(err) == "non_finite: values.rf_level_dbuv: not a finite number"
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.detail) == (err.reason, err.detail)


@pytest.mark.parametrize(
    "payload",
    [
        b"x" * 101,
        MAGIC + b"\x00" * 97,
        b"{" + b" " * 100 + b"}",
    ],
)
def test_oversize_is_checked_before_anything_else(payload: bytes) -> None:
    limits = Limits(max_payload_bytes=100)
    rejects(Reason.OVERSIZE, payload, limits=limits)
    rejects(Reason.OVERSIZE, payload, "text/plain", limits=limits)
    rejects(Reason.OVERSIZE, payload, V5_CT, None, limits=limits)


def test_payload_at_the_size_limit_is_accepted() -> None:
    p = reading()
    assert isinstance(dec(p, limits=Limits(max_payload_bytes=len(p))), Readings)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b'{"ts": 1,}',
        b"\xff\xfe{}",
        b"\xef\xbb\xbf" + reading(),  # UTF-8 BOM
        "{}".encode("utf-16"),
        b"1" * 5000,  # beyond Python's int digit limit
        b"[" * 100_000,  # nesting beyond the recursion limit
        b"{} {}",
    ],
)
def test_bad_json(payload: bytes) -> None:
    rejects(Reason.BAD_JSON, payload)


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"x"', b"null", b"true", b"[{}]"])
def test_bad_envelope_not_an_object(payload: bytes) -> None:
    rejects(Reason.BAD_ENVELOPE, payload)


def test_bad_envelope_unknown_top_level_field() -> None:
    err = rejects(Reason.BAD_ENVELOPE, reading(labels={"a": "b"}))
    assert "'labels'" in err.detail
    rejects(Reason.BAD_ENVELOPE, js({"timestamp": NOW, "seq": 1, "values": {}}))


def test_bad_envelope_duplicate_user_property() -> None:
    body = STEREO.astype("<i2").tobytes()
    rejects(Reason.BAD_ENVELOPE, body, V5_CT, [*V5_PROPS, ("ts", repr(NOW))])
    rejects(Reason.BAD_ENVELOPE, body, V5_CT, [*V5_PROPS, ("seq", "8")])


@pytest.mark.parametrize("field", ["ts", "seq", "values"])
def test_missing_field(field: str) -> None:
    obj = {"ts": NOW, "seq": 1, "values": {"a": 1}}
    del obj[field]
    err = rejects(Reason.MISSING_FIELD, js(obj))
    assert err.detail.startswith(field)


@pytest.mark.parametrize(
    "payload",
    [
        reading(ts="1750000000"),
        reading(ts=True),
        reading(ts=None),
        reading(values=[1, 2]),
        reading(values=None),
        reading(values={"a": "1.5"}),
        reading(values={"a": None}),
        reading(values={"a": {"b": 1}}),
        reading(values={"a": [1.0, 2.0]}),  # array without period
        reading(info=["x"]),
        reading(info=None),
        reading(info={"rds_pi": 0xC201}),
        reading(info={"rds_pi": None}),
        reading(info={"station_name": "x" * 65}),
        reading(info={"rds_ps": "line\nbreak"}),
        batch(values={"a": 1.0}),
        batch(values={"a": [1.0, "2"]}),
        batch(values={"a": [1.0, None]}),
        batch(values={"a": [None, 1.0]}),
        batch(values={"a": [1.0, {}]}),
        batch(values={"a": [[1.0], [2.0]]}),
        batch(values={"a": [[1.0], [2.0, 3.0]]}),
        batch(values={"a": [1.0, 2.0], "b": ["x", "y"]}),
    ],
)
def test_bad_type(payload: bytes) -> None:
    rejects(Reason.BAD_TYPE, payload)


def test_bad_type_names_the_field() -> None:
    err = rejects(Reason.BAD_TYPE, reading(values={"rf_level_dbuv": 1, "lock": "yes"}))
    assert err.detail.startswith("values.lock:")
    err = rejects(Reason.BAD_TYPE, batch(values={"a": [1.0, 2.0, None]}))
    assert err.detail.startswith("values.a[2]:")


@pytest.mark.parametrize(
    "key",
    ["RF", "Rf_level", "1abc", "_a", "", "a-b", "a.b", "a b", "ä", "a" * 65, "rf\n"],
)
def test_bad_key(key: str) -> None:
    rejects(Reason.BAD_KEY, reading(values={key: 1.0}))
    rejects(Reason.BAD_KEY, reading(info={key: "x"}))
    rejects(Reason.BAD_KEY, batch(values={key: [1.0, 2.0]}))


def test_longest_key_is_accepted() -> None:
    key = "a" + "b_9" * 21  # 64 characters
    assert len(key) == 64
    assert dec(reading(values={key: 1}), now=NOW).values == {key: 1.0}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1750000000, "seq": 1, "values": {"a": NaN}}',
        b'{"ts": 1750000000, "seq": 1, "values": {"a": Infinity}}',
        b'{"ts": 1750000000, "seq": 1, "values": {"a": -Infinity}}',
        b'{"ts": 1750000000, "seq": 1, "values": {"a": 1e400}}',
        b'{"ts": 1750000000, "seq": 1, "values": {"a": 1' + b"0" * 400 + b"}}",
        b'{"ts": NaN, "seq": 1, "values": {"a": 1}}',
        b'{"ts": 1e999, "seq": 1, "values": {"a": 1}}',
        b'{"ts": 1' + b"0" * 400 + b', "seq": 1, "values": {"a": 1}}',
        b'{"ts": 1750000000, "seq": 1, "period": 1, "values": {"a": [1, NaN]}}',
        b'{"ts": 1750000000, "seq": 1, "period": 1, "values": {"a": [1.5, 1' + b"0" * 400 + b"]}}",
    ],
)
def test_non_finite_json(payload: bytes) -> None:
    rejects(Reason.NON_FINITE, payload)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt", ["float32le", "float32be"])
def test_non_finite_samples(bad: float, fmt: str) -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    x[2, 1] = bad
    body = x.astype("<f4" if fmt.endswith("le") else ">f4").tobytes()
    ct = f"application/vnd.anbo.samples;dtype={fmt};rate=8000;channels=2"
    rejects(Reason.NON_FINITE, body, ct, V5_PROPS)
    code = 4 if fmt.endswith("le") else 3
    rejects(Reason.NON_FINITE, header(code=code, channels=2) + body)


@pytest.mark.parametrize("ts", ["nan", "inf", "-inf", "Infinity", "1e999"])
def test_non_finite_v5_ts_property(ts: str) -> None:
    rejects(Reason.NON_FINITE, STEREO.astype("<i2").tobytes(), V5_CT, [("ts", ts), ("seq", "1")])


def test_non_finite_header_ts() -> None:
    rejects(Reason.NON_FINITE, header(ts=float("nan")) + b"\x00\x00")


@pytest.mark.parametrize(
    "ts",
    [0, 0.0, -1.0, NOW + 300.5, NOW - 7 * 86400 - 1, 1e12, 1e-9],
)
def test_absurd_timestamp(ts: float) -> None:
    rejects(Reason.ABSURD_TIMESTAMP, reading(ts=ts))
    rejects(Reason.ABSURD_TIMESTAMP, header(ts=ts) + b"\x00\x00")
    rejects(Reason.ABSURD_TIMESTAMP, STEREO.astype("<i2").tobytes(), V5_CT, [("ts", repr(ts)), ("seq", "1")])


def test_timestamp_window_edges_and_custom_limits() -> None:
    assert dec(reading(ts=NOW + 300)).ts == NOW + 300
    assert dec(reading(ts=NOW - 7 * 86400)).ts == NOW - 7 * 86400
    tight = Limits(max_future_s=1.0, max_past_s=60.0)
    assert dec(reading(ts=NOW + 1), limits=tight).ts == NOW + 1
    rejects(Reason.ABSURD_TIMESTAMP, reading(ts=NOW + 1.5), limits=tight)
    rejects(Reason.ABSURD_TIMESTAMP, reading(ts=NOW - 61), limits=tight)


def test_absurd_timestamp_when_a_batch_or_block_ends_in_the_future() -> None:
    # Starts now, but the 11th sample at 1 s spacing ends 600 s ahead.
    rejects(Reason.ABSURD_TIMESTAMP, batch(ts=NOW, period=60.0, values={"a": [0.0] * 11}))
    assert isinstance(dec(batch(ts=NOW, period=30.0, values={"a": [0.0] * 11})), Batch)
    # 1 Hz block of 400 frames starting now ends 399 s ahead.
    rejects(Reason.ABSURD_TIMESTAMP, header(rate=1) + b"\x00\x00" * 400)
    assert isinstance(dec(header(rate=1) + b"\x00\x00" * 300), SampleBlock)


@pytest.mark.parametrize("seq", [-1, 1.0, "1", True, False, None, 2**63, [1]])
def test_bad_seq_json(seq: object) -> None:
    rejects(Reason.BAD_SEQ, reading(seq=seq))


@pytest.mark.parametrize("seq", ["-1", "1.5", "", " 1", "1_000", "0x10", "a", "99999999999999999999"])
def test_bad_seq_v5(seq: str) -> None:
    rejects(Reason.BAD_SEQ, STEREO.astype("<i2").tobytes(), V5_CT, [("ts", repr(NOW)), ("seq", seq)])


def test_bad_seq_header() -> None:
    rejects(Reason.BAD_SEQ, header(seq=-5) + b"\x00\x00")


def test_largest_seq_is_accepted() -> None:
    assert dec(reading(seq=2**63 - 1)).seq == 2**63 - 1
    assert dec(header(seq=2**63 - 1) + b"\x00\x00").seq == 2**63 - 1


@pytest.mark.parametrize("ts", ["abc", "1_750_000_000", "", " 1750000000", "0x1p30", "1,5"])
def test_bad_type_v5_ts_property(ts: str) -> None:
    rejects(Reason.BAD_TYPE, STEREO.astype("<i2").tobytes(), V5_CT, [("ts", ts), ("seq", "1")])


@pytest.mark.parametrize("period", [0, 0.0, -1.0, "0.5", True, None, [1.0], 1e400])
def test_bad_period(period: object) -> None:
    rejects(Reason.BAD_PERIOD, batch(period=period))


def test_bad_period_nan() -> None:
    rejects(
        Reason.BAD_PERIOD,
        b'{"ts": 1750000000, "seq": 1, "period": NaN, "values": {"a": [1.0]}}',
    )


@pytest.mark.parametrize(
    "values",
    [
        {"a": [1.0, 2.0], "b": [1.0]},
        {"a": [1.0], "b": [1.0, 2.0], "c": [1.0]},
        {"a": []},
        {"a": [1.0], "b": []},
        {},
        {"a": [0.0] * 11},  # too long for max_batch_len=10
    ],
)
def test_ragged_batch(values: dict[str, list[float]]) -> None:
    rejects(Reason.RAGGED_BATCH, batch(values=values), limits=Limits(max_batch_len=10))


def test_batch_at_max_length_is_accepted() -> None:
    b = dec(batch(values={"a": [0.0] * 10}, period=0.001), limits=Limits(max_batch_len=10))
    assert b.length == 10


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/octet-stream",
        "garbage",
        "audio/",
        "/l16",
        "audio/L16 x",
        "audio/L16",  # no rate
        "audio/L16;rate=0",
        "audio/L16;rate=384001",
        "audio/L16;rate=abc",
        "audio/L16;rate=-8000",
        "audio/L16;rate=48000;channels=0",
        "audio/L16;rate=48000;channels=33",
        "audio/L16;rate=48000;rate=44100",
        "audio/L16;rate",
        "audio/L16;=48000",
        "application/vnd.anbo.samples;rate=48000",  # no dtype
        "application/vnd.anbo.samples;dtype=int16le",  # no rate
        "application/vnd.anbo.samples;dtype=int16le;rate=48000;endian=big",
        "application/json;charset=latin-1",
        "audio/L16;rate=48000;" + "x=y;" * 100,  # too long
    ],
)
def test_bad_content_type(content_type: str) -> None:
    rejects(Reason.BAD_CONTENT_TYPE, STEREO.astype(">i2").tobytes(), content_type, V5_PROPS)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.anbo.samples;dtype=int24le;rate=48000",
        "application/vnd.anbo.samples;dtype=float64le;rate=48000",
        "application/vnd.anbo.samples;dtype=int16;rate=48000",
        "audio/L24;rate=48000;channels=2",
        "audio/L8;rate=8000",
    ],
)
def test_unsupported_dtype(content_type: str) -> None:
    rejects(Reason.UNSUPPORTED_DTYPE, STEREO.astype(">i2").tobytes(), content_type, V5_PROPS)


@pytest.mark.parametrize(
    "payload",
    [
        MAGIC,
        MAGIC + b"\x01\x02",
        header()[:-1],
        header(version=0) + b"\x00\x00",
        header(version=2) + b"\x00\x00",
        header(code=0) + b"\x00\x00",
        header(code=5) + b"\x00\x00",
        header(channels=0) + b"\x00\x00",
        header(channels=33) + b"\x00" * 66,
        header(rate=0) + b"\x00\x00",
        header(rate=384_001) + b"\x00\x00",
    ],
)
def test_bad_header(payload: bytes) -> None:
    rejects(Reason.BAD_HEADER, payload)


@pytest.mark.parametrize(
    ("code", "channels", "nbytes"),
    [(2, 1, 0), (2, 1, 3), (1, 2, 2), (1, 2, 6), (4, 1, 2), (3, 2, 4), (3, 2, 12)],
)
def test_bad_length_v311(code: int, channels: int, nbytes: int) -> None:
    rejects(Reason.BAD_LENGTH, header(code=code, channels=channels) + b"\x00" * nbytes)


@pytest.mark.parametrize(
    ("dtype", "channels", "nbytes"),
    [("int16le", 1, 0), ("int16be", 1, 5), ("int16le", 2, 6), ("float32le", 1, 6), ("float32be", 3, 8)],
)
def test_bad_length_v5(dtype: str, channels: int, nbytes: int) -> None:
    ct = f"application/vnd.anbo.samples;dtype={dtype};rate=16000;channels={channels}"
    rejects(Reason.BAD_LENGTH, b"\x00" * nbytes, ct, V5_PROPS)
    if dtype == "int16be":
        rejects(Reason.BAD_LENGTH, b"\x00" * nbytes, f"audio/L16;rate=16000;channels={channels}", V5_PROPS)


@pytest.mark.parametrize("bad", [16.5, -17.0, 1e30, -3.0e38])
def test_out_of_range(bad: float) -> None:
    x = np.zeros(8, dtype="<f4")
    x[5] = bad
    ct = "application/vnd.anbo.samples;dtype=float32le;rate=8000"
    err = rejects(Reason.OUT_OF_RANGE, x.tobytes(), ct, V5_PROPS)
    assert "exceeds 16" in err.detail
    rejects(Reason.OUT_OF_RANGE, header(code=3) + x.astype(">f4").tobytes())


def test_out_of_range_bound_is_configurable_and_inclusive() -> None:
    x = np.array([16.0, -16.0], dtype="<f4")
    ct = "application/vnd.anbo.samples;dtype=float32le;rate=8000"
    assert dec(x.tobytes(), ct, V5_PROPS).samples.tolist() == [[16.0], [-16.0]]
    rejects(Reason.OUT_OF_RANGE, x.tobytes(), ct, V5_PROPS, limits=Limits(max_sample_abs=2.0))


@pytest.mark.parametrize(
    "props",
    [None, [], [("ts", repr(NOW))], [("seq", "1")], [("TS", repr(NOW)), ("SEQ", "1")], [("x", "y")]],
)
def test_missing_property(props: list[tuple[str, str]] | None) -> None:
    rejects(Reason.MISSING_PROPERTY, STEREO.astype("<i2").tobytes(), V5_CT, props)
    rejects(Reason.MISSING_PROPERTY, STEREO.astype(">i2").tobytes(), "audio/L16;rate=8000", props)


@pytest.mark.parametrize(
    "topic",
    [
        "anbo/s/t",
        "anbo/s/t/u/v",
        "anbo//t/u",
        "anbo/s//u",
        "anbo/s/t/",
        "/anbo/s/t/u",
        "anbo/s/t/u/",
        "anbo/+/t/u",
        "anbo/s/t/#",
        "anbo/s t/t/u",
        "anbo/s/tä/u",
        "anbo/" + "s" * 65 + "/t/u",
        "anbox/s/t/u",
        "anb/s/t/u",
        "ANBO/s/t/u",
        "other/s/t/u",
        "anbo/s/t/u\n",
        "",
        "anbo",
    ],
)
def test_topic_malformed(topic: str) -> None:
    with pytest.raises(DecodeError) as info:
        TopicParser().parse(topic)
    assert info.value.reason is Reason.TOPIC_MALFORMED


# --------------------------------------------------------------------------- accepted payloads


def test_readings_decode() -> None:
    p = b"""{"ts": 1750000000.25, "seq": 42, "values": {"rf_level_dbuv": 61.2,
        "mer_db": 33, "lock": true, "fault": false}, "info": {"rds_pi": "C201"}}"""
    r = dec(p)
    assert r == Readings(
        ts=1750000000.25,
        seq=42,
        values={"rf_level_dbuv": 61.2, "mer_db": 33.0, "lock": 1.0, "fault": 0.0},
        info={"rds_pi": "C201"},
    )
    assert all(type(v) is float for v in r.values.values())


def test_readings_may_be_empty_heartbeat_and_info_is_optional() -> None:
    assert dec(reading(values={})) == Readings(NOW, 1, {}, {})
    assert dec(reading(values={}, info={"service_id": "0x0101"})).info == {"service_id": "0x0101"}


def test_readings_round_trip() -> None:
    values = {"rf_level_dbuv": 61.2, "mer_db": 33.0, "lock": True, "fault": False, "x": -1e-300}
    p = encode_readings(NOW, 3, values, info={"rds_pi": "C201", "ts_id": "中文"})
    r = dec(p)
    assert (r.ts, r.seq) == (NOW, 3)
    assert r.values == {"rf_level_dbuv": 61.2, "mer_db": 33.0, "lock": 1.0, "fault": 0.0, "x": -1e-300}
    assert r.info == {"rds_pi": "C201", "ts_id": "中文"}


def test_batch_decode_and_round_trip() -> None:
    b = dec(batch())
    assert isinstance(b, Batch)
    assert (b.period, b.length) == (0.5, 2)
    assert b.values["rf_level_dbuv"].dtype == np.float64
    assert b.values["lock"].tolist() == [1.0, 0.0]
    rng = np.random.default_rng(1)
    series = {"rf_level_dbuv": rng.normal(60, 3, 1000), "lock": np.ones(1000)}
    p = encode_batch(NOW - 100, 9, 0.1, series, info={"rds_pi": "C201"})
    out = dec(p)
    assert (out.ts, out.seq, out.period) == (NOW - 100, 9, 0.1)
    for k, v in series.items():
        np.testing.assert_array_equal(out.values[k], v)
    assert out.info == {"rds_pi": "C201"}


def test_batch_accepts_integers_huge_integers_and_booleans() -> None:
    b = dec(batch(values={"a": [1, 2], "b": [True, 2.5], "c": [2**64, 3]}))
    assert b.values["a"].tolist() == [1.0, 2.0]
    assert b.values["b"].tolist() == [1.0, 2.5]
    assert b.values["c"].tolist() == [float(2**64), 3.0]
    assert all(v.dtype == np.float64 for v in b.values.values())


def test_header_layout() -> None:
    assert HEADER_SIZE == 28 == struct.calcsize(">4sBBHIqd")
    assert HEADER.format == ">4sBBHIqd"
    p = encode_block_v311(STEREO, ts=NOW, seq=513, rate=44100, dtype="int16be")
    assert p[:28] == struct.pack(">4sBBHIqd", b"ANBO", 1, 1, 2, 44100, 513, NOW)
    assert p[28:] == struct.pack(">8h", *STEREO.ravel().tolist())
    codes = {"int16be": 1, "int16le": 2, "float32be": 3, "float32le": 4}
    for fmt, code in codes.items():
        q = encode_block_v311(STEREO, ts=NOW, seq=0, rate=8000, dtype=fmt)  # type: ignore[arg-type]
        assert q[5] == code


FORMATS = ["int16le", "int16be", "float32le", "float32be"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("framing", ["v311", "v5"])
def test_block_round_trip(fmt: Any, channels: int, framing: str) -> None:
    rng = np.random.default_rng(channels)
    codes = rng.integers(-32768, 32768, size=(480, channels)).astype(np.int16)
    expected = codes.astype(np.float32) / np.float32(32768.0)
    if framing == "v311":
        block = dec(encode_block_v311(codes, ts=NOW, seq=5, rate=48000, dtype=fmt))
    else:
        payload, ct, props = encode_block_v5(codes, ts=NOW, seq=5, rate=48000, dtype=fmt)
        assert ct.endswith(f"dtype={fmt};rate=48000;channels={channels}")
        assert props == [("ts", repr(NOW)), ("seq", "5")]
        block = dec(payload, ct, props)
    assert isinstance(block, SampleBlock)
    assert (block.ts, block.seq, block.rate) == (NOW, 5, 48000)
    assert block.samples.dtype == np.float32
    assert block.samples.shape == (480, channels) == (block.frames, block.channels)
    assert block.duration == pytest.approx(0.01)
    np.testing.assert_array_equal(block.samples, expected)
    block.samples[0, 0] = 0.5  # owned and writable, not a view of the payload


@pytest.mark.parametrize("fmt", ["float32le", "float32be"])
def test_float_block_passes_samples_through(fmt: Any) -> None:
    x = np.array([[0.1, -0.2], [1.5, -1.0], [15.9, 1e-30]], dtype=np.float32)
    payload, ct, props = encode_block_v5(x, ts=NOW, seq=0, rate=96000, dtype=fmt)
    np.testing.assert_array_equal(dec(payload, ct, props).samples, x)
    np.testing.assert_array_equal(dec(encode_block_v311(x, ts=NOW, seq=0, rate=96000, dtype=fmt)).samples, x)


def test_mono_1d_input_is_one_channel() -> None:
    block = dec(encode_block_v311(np.array([0.5, -0.5]), ts=NOW, seq=0, rate=8000))
    assert block.samples.shape == (2, 1)
    assert block.samples[:, 0].tolist() == [0.5, -0.5]


def test_l16_is_big_endian_interleaved() -> None:
    # Hand-packed RFC 3551 L16: network byte order, left/right interleaved.
    frames = [(0x0102, -2), (0x7FFF, -0x8000)]
    body = struct.pack(">4h", *[s for frame in frames for s in frame])
    assert body[:2] == b"\x01\x02"
    props = [("ts", repr(NOW)), ("seq", "0")]
    block = dec(body, "audio/L16;rate=48000;channels=2", props)
    assert block.samples.tolist() == [[0x0102 / 32768, -2 / 32768], [0x7FFF / 32768, -1.0]]
    payload, ct, props = encode_block_v5(
        np.array(frames, dtype=np.int16), ts=NOW, seq=0, rate=48000, l16=True
    )
    assert ct == "audio/L16;rate=48000;channels=2"
    assert payload == body
    # The same bytes read as little-endian are different samples.
    le = dec(body, "application/vnd.anbo.samples;dtype=int16le;rate=48000;channels=2", props)
    assert le.samples[0, 0] == 0x0201 / 32768


def test_l16_channels_default_to_one_and_extra_rfc_parameters_are_ignored() -> None:
    body = struct.pack(">2h", 16384, -16384)
    block = dec(body, "audio/L16;rate=8000;emphasis=50-15", V5_PROPS)
    assert block.samples.tolist() == [[0.5], [-0.5]]


def test_encode_block_v5_l16_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="L16"):
        encode_block_v5(STEREO, ts=NOW, seq=0, rate=8000, dtype="int16le", l16=True)


@pytest.mark.parametrize(
    "content_type",
    [
        "audio/L16;rate=48000;channels=2",
        "AUDIO/l16; RATE=48000 ;Channels = 2",
        "audio/l16 ; channels=2 ; rate=48000 ;",
        'audio/L16;rate="48000";channels="2"',
        " audio/L16\t;\trate=48000;channels=2 ",
    ],
)
def test_content_type_is_case_order_and_whitespace_tolerant(content_type: str) -> None:
    assert dec(STEREO.astype(">i2").tobytes(), content_type, V5_PROPS).samples.shape == (4, 2)


def test_vnd_content_type_parameters_are_case_insensitive() -> None:
    ct = "Application/Vnd.Anbo.Samples; Channels=2; DTYPE=Int16LE; rate=16000"
    spec = parse_content_type(ct)
    assert spec is not None
    assert (spec.fmt, spec.rate, spec.channels) == ("int16le", 16000, 2)
    assert parse_content_type("application/json") is None
    assert parse_content_type("Application/JSON; charset=UTF-8") is None


def test_dispatch() -> None:
    p = reading()
    # JSON with or without the JSON content type; empty content type means absent.
    for ct in (None, "", "application/json", "application/json; charset=utf-8"):
        assert isinstance(dec(p, ct), Readings)
    # A 3.1.1 header block is recognised whatever the (non-sample) content type says.
    block = encode_block_v311(STEREO, ts=NOW, seq=1, rate=8000)
    for ct in (None, "", "application/json", "application/octet-stream", "x"):
        assert isinstance(dec(block, ct), SampleBlock)
    # A sample content type wins over the magic: raw samples may start with b"ANBO".
    body = MAGIC * 2
    out = dec(body, "application/vnd.anbo.samples;dtype=int16be;rate=8000", V5_PROPS)
    assert out.samples.shape == (4, 1)
    assert out.samples[0, 0] == 0x414E / 32768
    # An unknown content type on a non-ANBO payload is rejected, not parsed as JSON.
    rejects(Reason.BAD_CONTENT_TYPE, p, "text/plain")


def test_v5_ts_property_forms() -> None:
    body = STEREO.astype("<i2").tobytes()
    for ts, expected in [("1750000000", NOW), ("1750000000.5", NOW + 0.5), ("1.75e9", NOW)]:
        assert dec(body, V5_CT, [("x", "y"), ("seq", "0"), ("ts", ts)]).ts == expected


def test_limits_validation() -> None:
    for bad in (
        {"max_payload_bytes": 10},
        {"max_future_s": -1.0},
        {"max_past_s": float("nan")},
        {"max_batch_len": 0},
        {"max_sample_abs": 0.5},
    ):
        with pytest.raises(ValueError, match="must be"):
            Limits(**bad)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode_readings(NOW, 0, {"A": 1.0}), "key"),
        (lambda: encode_readings(NOW, 0, {"a": float("nan")}), "finite"),
        (lambda: encode_readings(NOW, -1, {"a": 1.0}), "seq"),
        (lambda: encode_readings(NOW, True, {"a": 1.0}), "seq"),
        (lambda: encode_readings(0.0, 0, {"a": 1.0}), "ts"),
        (lambda: encode_readings(NOW, 0, {"a": 1.0}, info={"a": "x" * 65}), "info"),
        (lambda: encode_batch(NOW, 0, 0.0, {"a": [1.0]}), "period"),
        (lambda: encode_batch(NOW, 0, 1.0, {"a": [1.0], "b": [1.0, 2.0]}), "samples"),
        (lambda: encode_batch(NOW, 0, 1.0, {}), "at least one"),
        (lambda: encode_batch(NOW, 0, 1.0, {"a": []}), "1-D"),
        (lambda: encode_batch(NOW, 0, 1.0, {"a": [np.inf]}), "finite"),
        (lambda: encode_block_v311(np.zeros((0, 2)), ts=NOW, seq=0, rate=8000), "frames"),
        (lambda: encode_block_v311(np.zeros((2, 33)), ts=NOW, seq=0, rate=8000), "channels"),
        (lambda: encode_block_v311(np.zeros(2), ts=NOW, seq=0, rate=0), "rate"),
        (lambda: encode_block_v311([np.nan], ts=NOW, seq=0, rate=8000), "finite"),
        (
            lambda: encode_block_v311([17.0], ts=NOW, seq=0, rate=8000, dtype="float32le"),
            "magnitude",
        ),
        (lambda: encode_block_v311([0.0], ts=NOW, seq=0, rate=8000, dtype="int8"), "dtype"),  # type: ignore[arg-type]
    ],
)
def test_encoders_refuse_what_decode_would_reject(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_int16_encoding_quantizes_and_clips() -> None:
    p = encode_block_v311(np.array([1.0, -1.0, 0.25, 2.0]), ts=NOW, seq=0, rate=8000, dtype="int16le")
    assert struct.unpack("<4h", p[28:]) == (32767, -32768, 8192, 32767)


# --------------------------------------------------------------------------- topics


def test_topic_default_prefix() -> None:
    tp = TopicParser()
    assert tp.parse("anbo/site-1/fm_101.5/readings") == StationTopic("site-1", "fm_101.5", "readings")
    assert tp.parse("anbo/eb/ep-0042/status") == EndpointTopic("ep-0042", "status")
    assert tp.parse("anbo/site/eb/readings") == StationTopic("site", "eb", "readings")
    assert tp.parse("anbo/EB/x/y") == StationTopic("EB", "x", "y")  # only lowercase eb is reserved
    assert tp.subscriptions() == ["anbo/+/+/+"]
    assert tp.prefix == "anbo"


def test_topic_prefix_with_slashes() -> None:
    tp = TopicParser("bureau/city.tv/anbo")
    assert tp.parse("bureau/city.tv/anbo/s/t/u") == StationTopic("s", "t", "u")
    assert tp.parse("bureau/city.tv/anbo/eb/e/u") == EndpointTopic("e", "u")
    assert tp.subscriptions() == ["bureau/city.tv/anbo/+/+/+"]
    for bad in ("bureau/cityXtv/anbo/s/t/u", "anbo/s/t/u", "bureau/city.tv/anbo/s/t"):
        with pytest.raises(DecodeError):
            tp.parse(bad)


def test_topic_segment_length_limit() -> None:
    seg = "a" * 64
    assert TopicParser().parse(f"anbo/{seg}/{seg}/{seg}") == StationTopic(seg, seg, seg)


@pytest.mark.parametrize("prefix", ["", "a//b", "/a", "a/", "a/+", "#", "a b", "x" * 65])
def test_bad_prefix_is_a_value_error(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        TopicParser(prefix)


def test_topic_cache_is_bounded_and_transparent() -> None:
    tp = TopicParser(cache_size=3)
    topics = [f"anbo/s{i % 5}/t/u" for i in range(20)] + ["anbo/eb/e/u"] * 3
    for topic in topics:
        station = topic.split("/")[1]
        expected = EndpointTopic("e", "u") if station == "eb" else StationTopic(station, "t", "u")
        assert tp.parse(topic) == expected
        assert len(tp._cache) <= 3
    for _ in range(2):  # a rejected topic is never cached
        with pytest.raises(DecodeError):
            tp.parse("anbo/bad topic/t/u")


def test_topic_error_detail_names_the_topic() -> None:
    with pytest.raises(DecodeError) as info:
        TopicParser().parse("anbo/only/two")
    assert "'anbo/only/two'" in info.value.detail


# --------------------------------------------------------------------------- sequences


def events(tracker: SeqTracker, seqs: list[int]) -> list[tuple[str, int]]:
    return [(r.event.value, r.missing) for r in map(tracker.observe, seqs)]


def test_seq_in_order() -> None:
    t = SeqTracker()
    assert events(t, [5, 6, 7]) == [("first", 0), ("in_order", 0), ("in_order", 0)]
    assert (t.highest, t.missing, t.observed) == (7, 0, 3)


def test_seq_start_anywhere_including_zero() -> None:
    assert SeqTracker().observe(0) == SeqResult(SeqEvent.FIRST, 0)
    assert SeqTracker().observe(2**63 - 1).event is SeqEvent.FIRST


def test_seq_gap() -> None:
    t = SeqTracker()
    assert events(t, [1, 2, 6, 7]) == [("first", 0), ("in_order", 0), ("gap", 3), ("in_order", 0)]
    assert t.missing == 3
    r = t.observe(10)
    assert r == SeqResult(SeqEvent.GAP, 2)
    assert r.accepted


def test_seq_duplicate() -> None:
    t = SeqTracker()
    assert events(t, [1, 2, 2, 1, 3, 2]) == [
        ("first", 0),
        ("in_order", 0),
        ("duplicate", 0),
        ("duplicate", 0),
        ("in_order", 0),
        ("duplicate", 0),
    ]
    assert t.duplicates == 3
    assert not SeqResult(SeqEvent.DUPLICATE).accepted


def test_seq_late_fills_gap() -> None:
    t = SeqTracker()
    assert events(t, [1, 4, 3, 2, 3, 5]) == [
        ("first", 0),
        ("gap", 2),
        ("late", -1),
        ("late", -1),
        ("duplicate", 0),
        ("in_order", 0),
    ]
    assert (t.missing, t.late) == (0, 2)


def test_seq_late_before_baseline_does_not_correct_missing() -> None:
    t = SeqTracker()
    assert events(t, [10, 9, 9, 11]) == [("first", 0), ("late", 0), ("duplicate", 0), ("in_order", 0)]
    assert t.missing == 0


def test_seq_reset_beyond_window() -> None:
    t = SeqTracker(window=8)
    assert events(t, [100, 101, 94]) == [("first", 0), ("in_order", 0), ("late", 0)]  # 7 back
    assert events(t, [93]) == [("reset", 0)]  # 8 back: beyond the window
    assert (t.highest, t.resets) == (93, 1)
    assert events(t, [94, 95, 97]) == [("in_order", 0), ("in_order", 0), ("gap", 1)]


def test_seq_publisher_restart_from_zero() -> None:
    t = SeqTracker()
    for s in range(5000):
        t.observe(s)
    assert t.observe(0).event is SeqEvent.RESET
    assert t.observe(1).event is SeqEvent.IN_ORDER


def test_seq_restart_within_window_detected_by_timestamp() -> None:
    t = SeqTracker()
    for s in range(100):
        t.observe(s, ts=1000.0 + s)
    # A redelivery carries its original timestamp: a duplicate, not a restart.
    assert t.observe(50, ts=1050.0).event is SeqEvent.DUPLICATE
    assert t.observe(99, ts=1099.0).event is SeqEvent.DUPLICATE
    # A restarted publisher counts from 0 again, with a newer timestamp.
    assert t.observe(0, ts=1200.0).event is SeqEvent.RESET
    assert t.observe(1, ts=1201.0).event is SeqEvent.IN_ORDER
    assert t.observe(1, ts=1201.0).event is SeqEvent.DUPLICATE


def test_seq_timestamp_rule_needs_a_known_newest_timestamp() -> None:
    t = SeqTracker()
    t.observe(5)
    t.observe(6)
    assert t.observe(5, ts=1e9).event is SeqEvent.DUPLICATE


def test_seq_huge_forward_jump_is_a_reset_not_missing_messages() -> None:
    t = SeqTracker()
    t.observe(0)
    assert t.observe(2**62).event is SeqEvent.RESET
    assert t.missing == 0 and t.resets == 1
    assert t.observe(2**62 + 1).event is SeqEvent.IN_ORDER


def test_seq_huge_forward_jump_allowed_as_a_gap_stays_cheap() -> None:
    t = SeqTracker(max_gap=2**63)
    t.observe(0)
    r = t.observe(2**62)
    assert r == SeqResult(SeqEvent.GAP, 2**62 - 1)
    assert t.observe(2**62 + 1).event is SeqEvent.IN_ORDER
    assert t.observe(2**62 - 5).event is SeqEvent.LATE
    assert t.observe(3).event is SeqEvent.RESET


def test_seq_window_of_one() -> None:
    t = SeqTracker(window=1)
    assert events(t, [1, 2, 2, 1, 3]) == [
        ("first", 0),
        ("in_order", 0),
        ("duplicate", 0),
        ("reset", 0),
        ("gap", 1),
    ]
    with pytest.raises(ValueError, match="window"):
        SeqTracker(window=0)
