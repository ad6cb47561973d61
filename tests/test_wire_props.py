"""Property tests for the wire contract: decode is total, encoders round-trip, SeqTracker is sound."""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor.wire import (
    MAGIC,
    Batch,
    DecodeError,
    EndpointTopic,
    Limits,
    Readings,
    Reason,
    SampleBlock,
    SampleFormat,
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
)

NOW = 1_750_000_000.0
SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
FORMATS: list[SampleFormat] = ["int16le", "int16be", "float32le", "float32be"]

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

keys = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
timestamps = st.floats(min_value=NOW - 7 * 86400, max_value=NOW + 300)
seqs = st.integers(min_value=0, max_value=2**63 - 1)
info_values = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=64
).filter(str.isprintable)
infos = st.none() | st.dictionaries(keys, info_values, max_size=4)

content_types = st.none() | st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            "application/json",
            "audio/L16;rate=48000;channels=2",
            "audio/L16;rate=8000",
            "application/vnd.anbo.samples;dtype=int16le;rate=48000;channels=2",
            "application/vnd.anbo.samples;dtype=float32be;rate=1;channels=3",
            "application/vnd.anbo.samples;dtype=float32le;rate=384000",
            "application/octet-stream",
        ]
    ),
)
prop_values = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    st.sampled_from([repr(NOW), "0", "1", "nan", "inf", "-1"]),
)
user_props = st.none() | st.lists(
    st.tuples(st.sampled_from(["ts", "seq", "x", "TS"]) | st.text(max_size=5), prop_values), max_size=4
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=70),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10) | keys, inner, max_size=5)
    ),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(timestamps, json_values),
        "seq": st.one_of(seqs, json_values),
        "values": st.one_of(
            st.dictionaries(keys, st.one_of(finite, st.booleans(), st.lists(finite, max_size=4))),
            json_values,
        ),
        "info": st.one_of(infos, json_values),
        "period": st.one_of(st.floats(min_value=1e-3, max_value=10), json_values),
        "extra": json_values,
    },
)


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()


headers = st.builds(
    lambda v, code, ch, rate, seq, ts, body: (
        struct.pack(">4sBBHIqd", MAGIC, v, code, ch, rate, seq, ts) + body
    ),
    st.sampled_from([1, 1, 1, 0, 2, 255]),
    st.integers(0, 6),
    st.integers(0, 40),
    st.sampled_from([0, 1, 8000, 48000, 384000, 384001, 2**32 - 1]),
    st.integers(-(2**63), 2**63 - 1),
    st.one_of(timestamps, st.floats()),
    st.binary(max_size=200),
)

payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: MAGIC + b, st.binary(max_size=100)),
    headers,
    envelopes.map(json_bytes),
    json_values.map(json_bytes),
)

Message = tuple[bytes, str | None, list[tuple[str, str]] | None]


@st.composite
def valid_messages(draw: st.DrawFn) -> Message:
    """Messages the encoders produce: every payload kind and framing."""
    ts = draw(st.floats(min_value=NOW - 86400, max_value=NOW))
    seq = draw(seqs)
    kind = draw(st.sampled_from(["readings", "batch", "v311", "v5", "l16"]))
    if kind == "readings":
        values = draw(st.dictionaries(keys, finite | st.booleans(), max_size=6))
        return (
            encode_readings(ts, seq, values, info=draw(infos)),
            draw(st.sampled_from([None, "application/json"])),
            None,
        )
    if kind == "batch":
        n = draw(st.integers(1, 8))
        names = draw(st.lists(keys, min_size=1, max_size=3, unique=True))
        series = {k: draw(st.lists(finite, min_size=n, max_size=n)) for k in names}
        return encode_batch(ts, seq, draw(st.floats(1e-3, 1.0)), series, info=draw(infos)), None, None
    x = draw(hnp.arrays(np.float32, sample_shapes, elements=st.floats(-2, 2, width=32)))
    if kind == "v311":
        return (
            encode_block_v311(x, ts=ts, seq=seq, rate=48000, dtype=draw(st.sampled_from(FORMATS))),
            None,
            None,
        )
    if kind == "l16":
        return encode_block_v5(x, ts=ts, seq=seq, rate=8000, l16=True)
    return encode_block_v5(x, ts=ts, seq=seq, rate=48000, dtype=draw(st.sampled_from(FORMATS)))


@st.composite
def mutated_messages(draw: st.DrawFn) -> Message:
    """A valid message with one thing broken: bytes flipped, cut, inserted, or its metadata swapped."""
    payload, ct, props = draw(valid_messages())
    how = draw(st.sampled_from(["flip", "cut", "insert", "ct", "props"]))
    if how == "flip" and payload:
        i = draw(st.integers(0, len(payload) - 1))
        payload = payload[:i] + bytes([payload[i] ^ draw(st.integers(1, 255))]) + payload[i + 1 :]
    elif how == "cut":
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif how == "insert":
        i = draw(st.integers(0, len(payload)))
        payload = payload[:i] + draw(st.binary(min_size=1, max_size=8)) + payload[i:]
    elif how == "ct":
        ct = draw(content_types)
    else:
        props = draw(user_props)
    return payload, ct, props


messages = st.one_of(
    valid_messages(),
    mutated_messages(),
    st.tuples(payloads, content_types, user_props),
)


def check_payload(out: object) -> None:
    """Whatever decode returns satisfies the contract's guarantees."""
    assert isinstance(out, Readings | Batch | SampleBlock)
    assert math.isfinite(out.ts)
    assert out.ts > 0
    assert NOW - 7 * 86400 <= out.ts <= NOW + 300
    assert type(out.seq) is int
    assert 0 <= out.seq <= 2**63 - 1
    if isinstance(out, Readings):
        for k, v in out.values.items():
            assert KEY.fullmatch(k)
            assert type(v) is float
            assert math.isfinite(v)
    if isinstance(out, Readings | Batch):
        for k, s in out.info.items():
            assert KEY.fullmatch(k)
            assert isinstance(s, str)
            assert len(s) <= 64
    if isinstance(out, Batch):
        assert math.isfinite(out.period)
        assert out.period > 0
        lengths = {v.shape for v in out.values.values()}
        assert len(lengths) == 1
        for k, arr in out.values.items():
            assert KEY.fullmatch(k)
            assert arr.dtype == np.float64
            assert arr.ndim == 1
            assert 1 <= arr.shape[0] <= 100_000
            assert np.isfinite(arr).all()
    if isinstance(out, SampleBlock):
        assert out.samples.dtype == np.float32
        assert out.samples.ndim == 2
        assert out.samples.shape[0] >= 1
        assert 1 <= out.samples.shape[1] <= 32
        assert 1 <= out.rate <= 384_000
        assert np.isfinite(out.samples).all()
        assert np.abs(out.samples).max() <= 16.0


# --------------------------------------------------------------------------- decode is total


def decode_or_error(
    payload: bytes,
    content_type: str | None = None,
    props: list[tuple[str, str]] | None = None,
    limits: Limits | None = None,
) -> object:
    """Decode, returning the DecodeError instead of raising it (anything else propagates)."""
    try:
        return decode(
            payload,
            content_type=content_type,
            user_properties=props,
            now=NOW,
            limits=limits or Limits(),
        )
    except DecodeError as exc:
        return exc


@PROPS
@given(message=messages)
def test_decode_returns_a_valid_payload_or_raises_decode_error(message: Message) -> None:
    out = decode_or_error(*message)
    if isinstance(out, DecodeError):
        assert isinstance(out.reason, Reason)
        assert out.detail
    else:
        check_payload(out)


@PROPS
@given(
    payload=payloads | st.binary(max_size=400),
    content_type=content_types,
    props=user_props,
    limit=st.integers(30, 200),
)
def test_oversize_wins_whatever_the_bytes(
    payload: bytes, content_type: str | None, props: list[tuple[str, str]] | None, limit: int
) -> None:
    payload = payload + b"\x00" * (limit + 1 - len(payload))
    out = decode_or_error(payload, content_type, props, Limits(max_payload_bytes=limit))
    assert isinstance(out, DecodeError)
    assert out.reason is Reason.OVERSIZE


@PROPS
@given(topic=st.text(max_size=120) | st.from_regex(r"anbo(/[A-Za-z0-9_.+#-]{0,66}){0,5}", fullmatch=True))
def test_any_topic_parses_or_raises_decode_error(topic: str) -> None:
    tp = TopicParser()
    try:
        t: object = tp.parse(topic)
    except DecodeError as exc:
        t = exc
    if isinstance(t, DecodeError):
        assert t.reason is Reason.TOPIC_MALFORMED
        return
    parts = topic.split("/")
    assert len(parts) == 4
    assert parts[0] == "anbo"
    assert all(SEGMENT.fullmatch(p) for p in parts[1:])
    if parts[1] == "eb":
        assert t == EndpointTopic(parts[2], parts[3])
    else:
        assert t == StationTopic(parts[1], parts[2], parts[3])


segments = st.from_regex(SEGMENT, fullmatch=True)


@PROPS
@given(prefix=st.lists(segments, min_size=1, max_size=3), station=segments, target=segments, stream=segments)
def test_topic_round_trip(prefix: list[str], station: str, target: str, stream: str) -> None:
    tp = TopicParser("/".join(prefix))
    t = tp.parse("/".join([*prefix, station, target, stream]))
    if station == "eb":
        assert t == EndpointTopic(target, stream)
    else:
        assert t == StationTopic(station, target, stream)
    (sub,) = tp.subscriptions()
    assert sub == "/".join([*prefix, "+", "+", "+"])


# --------------------------------------------------------------------------- round trips


@PROPS
@given(
    ts=timestamps,
    seq=seqs,
    values=st.dictionaries(keys, finite | st.booleans() | st.integers(-(2**60), 2**60), max_size=20),
    info=infos,
)
def test_readings_round_trip(
    ts: float, seq: int, values: dict[str, float | bool], info: dict[str, str] | None
) -> None:
    out = decode(
        encode_readings(ts, seq, values, info=info), content_type=None, user_properties=None, now=NOW
    )
    assert isinstance(out, Readings)
    assert (out.ts, out.seq) == (ts, seq)
    assert out.values == {k: float(v) for k, v in values.items()}
    assert out.info == (info or {})
    check_payload(out)


@PROPS
@given(
    ts=st.floats(min_value=NOW - 86400, max_value=NOW),
    seq=seqs,
    period=st.floats(min_value=1e-6, max_value=1.0),
    n=st.integers(1, 50),
    names=st.lists(keys, min_size=1, max_size=5, unique=True),
    data=st.data(),
)
def test_batch_round_trip(
    ts: float, seq: int, period: float, n: int, names: list[str], data: st.DataObject
) -> None:
    series = {
        k: data.draw(hnp.arrays(np.float64, n, elements=st.floats(allow_nan=False, allow_infinity=False)))
        for k in names
    }
    out = decode(
        encode_batch(ts, seq, period, series), content_type="application/json", user_properties=None, now=NOW
    )
    assert isinstance(out, Batch)
    assert (out.ts, out.seq, out.period, out.length) == (ts, seq, period, n)
    for k, v in series.items():
        np.testing.assert_array_equal(out.values[k], v)
    check_payload(out)


sample_shapes = st.tuples(st.integers(1, 64), st.integers(1, 32))


@PROPS
@given(
    codes=hnp.arrays(np.int16, sample_shapes),
    fmt=st.sampled_from(FORMATS),
    framing=st.sampled_from(["v311", "v5", "l16"]),
    ts=timestamps,
    seq=seqs,
    rate=st.integers(100, 384_000),
)
def test_int16_block_round_trip(
    codes: np.ndarray[Any, np.dtype[np.int16]], fmt: Any, framing: str, ts: float, seq: int, rate: int
) -> None:
    assume(ts + (codes.shape[0] - 1) / rate <= NOW + 300)
    if framing == "v311":
        out = decode(
            encode_block_v311(codes, ts=ts, seq=seq, rate=rate, dtype=fmt),
            content_type=None,
            user_properties=None,
            now=NOW,
        )
    else:
        l16 = framing == "l16"
        payload, ct, props = encode_block_v5(
            codes, ts=ts, seq=seq, rate=rate, dtype=None if l16 else fmt, l16=l16
        )
        out = decode(payload, content_type=ct, user_properties=props, now=NOW)
    assert isinstance(out, SampleBlock)
    assert (out.ts, out.seq, out.rate) == (ts, seq, rate)
    np.testing.assert_array_equal(out.samples, codes.astype(np.float32) / np.float32(32768))
    check_payload(out)


@PROPS
@given(
    x=hnp.arrays(np.float32, sample_shapes, elements=st.floats(-16, 16, width=32)),
    fmt=st.sampled_from(["float32le", "float32be"]),
    v5=st.booleans(),
)
def test_float_block_round_trip(x: np.ndarray[Any, np.dtype[np.float32]], fmt: Any, v5: bool) -> None:
    if v5:
        payload, ct, props = encode_block_v5(x, ts=NOW, seq=1, rate=48000, dtype=fmt)
        out = decode(payload, content_type=ct, user_properties=props, now=NOW)
    else:
        out = decode(
            encode_block_v311(x, ts=NOW, seq=1, rate=48000, dtype=fmt),
            content_type=None,
            user_properties=None,
            now=NOW,
        )
    assert isinstance(out, SampleBlock)
    np.testing.assert_array_equal(out.samples, x)
    check_payload(out)


@PROPS
@given(
    x=hnp.arrays(np.float64, sample_shapes, elements=st.floats(-1.5, 1.5)),
    fmt=st.sampled_from(["int16le", "int16be"]),
)
def test_int16_quantization_error_is_within_half_a_step(
    x: np.ndarray[Any, np.dtype[np.float64]], fmt: Any
) -> None:
    out = decode(
        encode_block_v311(x, ts=NOW, seq=1, rate=48000, dtype=fmt),
        content_type=None,
        user_properties=None,
        now=NOW,
    )
    assert isinstance(out, SampleBlock)
    expected = np.clip(x, -1.0, 32767 / 32768)
    assert np.abs(out.samples - expected).max() <= 0.5 / 32768 + 1e-9


# --------------------------------------------------------------------------- SeqTracker


class ReferenceSeq:
    """A slow, obviously-correct model of the SeqTracker rules (a set, no bit tricks)."""

    def __init__(self, window: int, max_gap: int = 10_000, max_rate: float = 1000.0) -> None:
        self.window = window
        self.max_gap = max_gap
        self.max_rate = max_rate
        self.highest: int | None = None
        self.highest_rx: float | None = None
        self.base = 0
        self.seen: set[int] = set()
        self.newest_ts: float | None = None

    def observe(self, seq: int, ts: float | None, rx: float | None = None) -> SeqResult:
        if self.highest is None:
            self._baseline(seq, ts, rx)
            return SeqResult(SeqEvent.FIRST, 0)
        if seq > self.highest:
            d = seq - self.highest
            by_time = (
                rx is not None
                and self.highest_rx is not None
                and d - 1 <= self.max_rate * (rx - self.highest_rx)
            )
            if d - 1 > self.max_gap and not by_time:
                self._baseline(seq, ts, rx)
                return SeqResult(SeqEvent.RESET)
            self.highest = seq
            self.highest_rx = rx
            self.seen.add(seq)
            if ts is not None and (self.newest_ts is None or ts > self.newest_ts):
                self.newest_ts = ts
            return SeqResult(SeqEvent.IN_ORDER) if d == 1 else SeqResult(SeqEvent.GAP, d - 1)
        restarted = ts is not None and self.newest_ts is not None and ts > self.newest_ts
        if self.highest - seq >= self.window or restarted:
            self._baseline(seq, ts, rx)
            return SeqResult(SeqEvent.RESET)
        if seq in self.seen:
            return SeqResult(SeqEvent.DUPLICATE)
        self.seen.add(seq)
        return SeqResult(SeqEvent.LATE, -1 if seq >= self.base else 0)

    def _baseline(self, seq: int, ts: float | None, rx: float | None) -> None:
        self.highest = self.base = seq
        self.highest_rx = rx
        self.seen = {seq}
        self.newest_ts = ts


@PROPS
@given(
    window=st.integers(1, 40),
    steps=st.lists(st.integers(-50, 50), max_size=200),
    start=st.integers(0, 2**40),
    with_ts=st.booleans(),
    ts_jitter=st.lists(st.floats(-5, 5), min_size=200, max_size=200),
)
def test_seq_tracker_matches_reference_model(
    window: int, steps: list[int], start: int, with_ts: bool, ts_jitter: list[float]
) -> None:
    tracker = SeqTracker(window)
    ref = ReferenceSeq(window)
    seq = start
    total_missing = 0
    counts: dict[SeqEvent, int] = dict.fromkeys(SeqEvent, 0)
    for i, step in enumerate(steps):
        seq = max(0, seq + step)
        ts = (1000.0 + seq + ts_jitter[i]) if with_ts else None
        got = tracker.observe(seq, ts)
        assert got == ref.observe(seq, ts), (i, seq)
        total_missing += got.missing
        counts[got.event] += 1
        assert tracker.missing == total_missing >= 0
    assert tracker.observed == len(steps)
    assert tracker.duplicates == counts[SeqEvent.DUPLICATE]
    assert tracker.late == counts[SeqEvent.LATE]
    assert tracker.resets == counts[SeqEvent.RESET]


@PROPS
@given(
    window=st.integers(1, 40),
    max_gap=st.integers(0, 60),
    max_rate=st.sampled_from([0.0, 1.0, 50.0]),
    steps=st.lists(st.integers(-80, 120), max_size=200),
    dt=st.lists(st.floats(0.0, 2.0), min_size=200, max_size=200),
    with_rx=st.booleans(),
)
def test_seq_tracker_plausible_gaps_match_reference_model(
    window: int,
    max_gap: int,
    max_rate: float,
    steps: list[int],
    dt: list[float],
    with_rx: bool,
) -> None:
    tracker = SeqTracker(window, max_gap=max_gap, max_rate=max_rate)
    ref = ReferenceSeq(window, max_gap=max_gap, max_rate=max_rate)
    seq, rx = 1000, 0.0
    for i, step in enumerate(steps):
        seq = max(0, seq + step)
        rx += dt[i]
        got = tracker.observe(seq, None, rx if with_rx else None)
        assert got == ref.observe(seq, None, rx if with_rx else None), (i, seq)
        if got.event is SeqEvent.GAP and not with_rx:
            assert got.missing <= max_gap


POISON = st.one_of(st.integers(0, 2**31 - 1), st.integers(2**31, 2**63 - 1), st.just(0))


@PROPS
@given(
    n=st.integers(1, 400),
    poison=st.lists(st.tuples(st.integers(0, 399), POISON), max_size=8),
    start=st.integers(0, 2**40),
    with_ts=st.booleans(),
)
def test_seq_tracker_far_jumps_do_not_poison_the_missing_count(
    n: int, poison: list[tuple[int, int]], start: int, with_ts: bool
) -> None:
    """An honest stream without loss, with far-away numbers injected (stale replays, a rogue
    client): the injected ones are resets, never billions of missing messages (issue #11)."""
    tracker = SeqTracker(64, max_gap=10_000, max_rate=1000.0)
    at = dict(poison)
    far = 0
    rx = 0.0
    for i in range(n):
        rx += 0.1  # ten messages a second, received now
        seq = start + i
        ts = 1.7e9 + rx if with_ts else None
        if i in at and abs(at[i] - seq) > 10_000 + 64:
            far += 1
            r = tracker.observe(at[i], ts, rx)
            assert r.event in (SeqEvent.RESET, SeqEvent.LATE, SeqEvent.DUPLICATE, SeqEvent.FIRST)
            assert r.missing <= 0
        r = tracker.observe(seq, ts, rx)
        assert r.missing <= 10_000
    # each far number costs at most two resets (into it and back out) and no missing count
    # beyond one plausible gap per injection
    assert tracker.missing <= far * 10_000
    assert tracker.resets <= 2 * far + tracker.observed


def test_seq_tracker_one_far_jump_is_a_reset_not_1_8e9_missing() -> None:
    tracker = SeqTracker()
    for i in range(100):
        tracker.observe(i, 1.7e9 + i, float(i))
    assert tracker.observe(1_800_000_000, 1.7e9 + 100, 100.0).event is SeqEvent.RESET
    r = tracker.observe(100, 1.7e9 + 100.1, 100.1)  # the real publisher, next message
    assert r.event is SeqEvent.RESET
    assert tracker.observe(101, 1.7e9 + 101, 101.0).event is SeqEvent.IN_ORDER
    assert tracker.missing == 0 and tracker.resets == 2


def test_seq_tracker_long_outage_is_still_a_gap() -> None:
    """A link down for two hours at 10 messages/s: 72 000 lost, plausible by the receive clock."""
    tracker = SeqTracker()
    tracker.observe(1, None, 0.0)
    r = tracker.observe(72_002, None, 7200.0)
    assert r == SeqResult(SeqEvent.GAP, 72_000)


@PROPS
@given(seq_list=st.lists(st.integers(0, 60), max_size=300), window=st.integers(61, 200))
def test_seq_tracker_accepts_each_number_once_within_the_window(seq_list: list[int], window: int) -> None:
    """With every number inside one window: distinct accepted + duplicates = observed, no resets."""
    tracker = SeqTracker(window)
    accepted: list[int] = []
    for s in seq_list:
        r = tracker.observe(s)
        assert r.event is not SeqEvent.RESET
        if r.accepted:
            accepted.append(s)
    assert sorted(accepted) == sorted(set(seq_list))
    assert len(accepted) + tracker.duplicates == tracker.observed == len(seq_list)
    if seq_list:
        # Net missing = holes between the first number and the highest.
        first, highest = seq_list[0], max(seq_list)
        holes = set(range(first, highest + 1)) - set(seq_list)
        assert tracker.missing == len(holes)


@PROPS
@given(perm=st.permutations(list(range(30))), dup=st.lists(st.integers(0, 29), max_size=20))
def test_seq_tracker_reordered_stream_loses_nothing(perm: list[int], dup: list[int]) -> None:
    tracker = SeqTracker(64)
    tracker.observe(0)
    for s in [x + 1 for x in perm] + [x + 1 for x in dup]:
        tracker.observe(s)
    assert tracker.missing == 0
    assert tracker.highest == 30
    assert tracker.duplicates == len(dup)
