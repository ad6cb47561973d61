"""Device maps: parsing (errors with file and line), register decoding, value conversion."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.mapping import (
    REGISTER_COUNT,
    PointError,
    PointSpec,
    convert,
    decode_registers,
    encode_registers,
    load_map,
    parse_map,
    raw_text,
)
from gateways.modbus import plan_blocks
from monitor.settings import ConfigError

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200)
DEVICES = Path(__file__).resolve().parents[2] / "config" / "devices"
LINE = re.compile(r"^m\.toml(:(\d+))?: ")
SNMP = '[device]\nprotocol = "snmp"\n\n[[points]]\n'
MODBUS = '[device]\nprotocol = "modbus"\n\n[[points]]\n'


def problems(text: str, protocol: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_map(text, "m.toml", protocol)  # type: ignore[arg-type]
    return info.value.problems


# -- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(DEVICES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_map_loads(path: Path) -> None:
    dmap = load_map(path)
    assert dmap.points
    assert "adapt" in dmap.description.lower()  # clearly marked as an example


def test_a_modbus_map_with_every_kind_of_point() -> None:
    dmap = parse_map(
        """
[device]
protocol = "modbus"
word_order = "little"

[[points]]
reading = "forward_power_w"
table = "input"
address = 0
type = "uint32"
scale = 0.5
offset = -1

[[points]]
reading = "on_air"
table = "coil"
address = 7

[[points]]
reading = "fault"
table = "holding"
address = 3
type = "uint16"
bit = 15

[[points]]
extra = true
reading = "psu_voltage_v"
table = "holding"
address = 4
type = "int16"
word_order = "big"
""",
        "m.toml",
    )
    fwd, on_air, fault, psu = dmap.points
    assert dmap.register_type(on_air) == "bool" and dmap.word_order_of(fwd) == "little"
    assert dmap.word_order_of(psu) == "big" and psu.extra and not psu.is_flag
    assert fault.bit == 15 and fault.is_flag


@pytest.mark.parametrize(
    ("text", "line", "key", "why"),
    [
        (
            SNMP + 'reading = "fwd_power"\noid = "1.3.6.1"\n',
            5,
            "points[0].reading",
            "not a reading",
        ),
        (
            SNMP + 'reading = "vswr"\noid = "1.3.x"\n',
            6,
            "points[0].oid",
            "numeric OID",
        ),
        (
            SNMP + 'reading = "vswr"\noid = "1.3.6"\nscael = 2\n',
            7,
            "points[0].scael",
            "did you mean scale",
        ),
        (
            MODBUS + 'reading = "vswr"\ntable = "input"\naddress = 1\ntype = "int64"\n',
            8,
            "points[0].type",
            "Input should be",
        ),
        (
            MODBUS + 'reading = "vswr"\ntable = "input"\naddress = 1\n',
            5,
            "points[0].type",
            "needs type",
        ),
        (
            MODBUS + 'reading = "fault"\ntable = "input"\naddress = 1\ntype = "uint16"\nbit = 16\n',
            9,
            "points[0].bit",
            "not a bit",
        ),
        (
            MODBUS + 'reading = "vswr"\ntable = "input"\naddress = 1\ntype = "uint16"\nbit = 1\n',
            9,
            "points[0].bit",
            "is a number",
        ),
        (
            MODBUS + 'reading = "on_air"\ntable = "coil"\naddress = 1\ntype = "uint16"\n',
            8,
            "points[0].type",
            "one bit",
        ),
        (
            MODBUS + 'reading = "vswr"\ntable = "input"\naddress = 65535\ntype = "float32"\n',
            7,
            "points[0].address",
            "runs past",
        ),
        (
            MODBUS + 'reading = "vswr"\noid = "1.3.6"\n',
            6,
            "points[0].oid",
            "only for snmp",
        ),
        (
            SNMP + 'reading = "vswr"\noid = "1.3.6"\n\n[[points]]\nreading = "vswr"\noid = "1.3.7"\n',
            9,
            "points[1].reading",
            "mapped twice",
        ),
        (
            SNMP + 'reading = "on_air"\noid = "1.3.6"\nenum = {"x" = nan}\n',
            7,
            "points[0].enum",
            "finite",
        ),
    ],
)
def test_a_bad_map_says_where_and_why(text: str, line: int, key: str, why: str) -> None:
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"m.toml:{line}: {key}: "), found
    assert why in found[0]


def test_not_toml_and_wrong_protocol() -> None:
    assert problems("[device\n")[0].startswith("m.toml: not valid TOML")
    found = problems(SNMP + 'reading = "vswr"\noid = "1.3.6"\n', "modbus")
    assert found == ["m.toml:2: device.protocol: this is a snmp map, named by a [[modbus]] source"]
    assert "points" in problems('[device]\nprotocol = "snmp"\n')[0]


@PROPS
@given(st.text(max_size=300))
def test_any_text_is_a_map_or_a_list_of_located_problems(text: str) -> None:
    try:
        parse_map(text, "m.toml")
    except ConfigError as exc:
        found = exc.problems
    else:
        return
    assert found
    for p in found:
        assert LINE.match(p), p
        assert "\n" not in p


_POINT_KEYS = st.sampled_from(
    ["reading", "oid", "table", "address", "type", "scale", "offset", "bit", "enum", "word_order", "extra"]
)
_VALUES = st.one_of(
    st.sampled_from(
        ['"vswr"', '"on_air"', '"fault"', '"input"', '"coil"', '"int16"', '"float32"', '"1.3.6.1"']
    ),
    st.integers(-5, 70000).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.just("true"),
    st.just('{ "1" = true }'),
)


@PROPS
@given(
    st.sampled_from(["snmp", "modbus"]),
    st.lists(st.dictionaries(_POINT_KEYS, _VALUES, max_size=7), min_size=1, max_size=4),
)
def test_generated_maps_load_or_fail_with_lines(protocol: str, points: list[dict[str, str]]) -> None:
    text = f'[device]\nprotocol = "{protocol}"\n'
    for p in points:
        text += "\n[[points]]\n" + "".join(f"{k} = {v}\n" for k, v in p.items())
    try:
        dmap = parse_map(text, "m.toml")
    except ConfigError as exc:
        for problem in exc.problems:
            assert LINE.match(problem), problem
        return
    # What loads is usable: every point converts a raw value or says why, never crashes.
    for p in dmap.points:
        for raw in (0, 1, 3.5, "7"):
            try:
                value = convert(p, raw)
            except PointError as exc:
                reason: str | None = exc.reason
            else:
                reason = None
                assert isinstance(value, bool) or math.isfinite(value)
            assert reason in {None, "bad_value", "unmapped_value", "non_finite"}
    if protocol == "modbus":
        blocks = plan_blocks(dmap)
        assert sorted(q.reading for b in blocks for q in b.points) == sorted(q.reading for q in dmap.points)


# -- registers ------------------------------------------------------------------------------
_RANGES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
}


@PROPS
@given(st.data(), st.sampled_from(sorted(_RANGES)), st.sampled_from(["big", "little"]))
def test_registers_round_trip(data: st.DataObject, kind: str, order: str) -> None:
    value = data.draw(_RANGES[kind])
    regs = encode_registers(value, kind, order)  # type: ignore[arg-type]
    assert len(regs) == REGISTER_COUNT[kind] and all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(regs, kind, order) == value  # type: ignore[arg-type]


def test_register_layouts_follow_modbus_conventions() -> None:
    assert decode_registers([0xFFFE], "int16") == -2
    assert decode_registers([0xFFFE], "uint16") == 65534
    assert decode_registers([0x0001, 0x0002], "uint32") == 0x00010002
    assert decode_registers([0x0002, 0x0001], "uint32", "little") == 0x00010002
    hi, lo = struct.unpack(">HH", struct.pack(">f", 1.5))
    assert decode_registers([hi, lo], "float32") == 1.5
    assert decode_registers([lo, hi], "float32", "little") == 1.5


@PROPS
@given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), st.sampled_from(["big", "little"]))
def test_float_registers_decode_or_say_not_finite(regs: list[int], order: str) -> None:
    try:
        value = decode_registers(regs, "float32", order)  # type: ignore[arg-type]
    except PointError as exc:
        assert exc.reason == "non_finite"  # noqa: PT017 (a property: either outcome is checked)
    else:
        assert math.isfinite(value)


def test_wrong_register_counts_and_values() -> None:
    with pytest.raises(PointError, match="short_read"):
        decode_registers([1], "int32")
    with pytest.raises(PointError, match="bad_register"):
        decode_registers([70000], "uint16")


# -- conversion -----------------------------------------------------------------------------
def point(**kw: object) -> PointSpec:
    return PointSpec(oid="1.3.6", **kw)  # type: ignore[arg-type]


@PROPS
@given(
    st.integers(-(2**31), 2**32),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
)
def test_scale_and_offset(raw: int, scale: float, offset: float) -> None:
    p = point(reading="forward_power_w", scale=scale, offset=offset)
    assert convert(p, raw) == pytest.approx(raw * scale + offset)
    assert convert(p, f" {raw} ") == pytest.approx(raw * scale + offset)  # a string holding a number


@PROPS
@given(st.integers(0, 2**32 - 1), st.integers(0, 31))
def test_bits_are_flags(word: int, bit: int) -> None:
    assert convert(point(reading="fault", bit=bit), word) is bool((word >> bit) & 1)


def test_enums_compare_as_canonical_text() -> None:
    p = point(reading="on_air", enum={"01": True, "2": False, " ON ": True})
    assert convert(p, 1) is True and convert(p, 2.0) is False and convert(p, "ON") is True
    with pytest.raises(PointError, match="unmapped_value"):
        convert(p, 3)
    numeric = point(reading="pa_temp_celsius", enum={"-1": -40.0})
    assert convert(numeric, -1) == -40.0
    assert raw_text(True) == "1" and raw_text(2.5) == "2.5" and raw_text("+07") == "7"


def test_flags_without_enum_and_bad_raw_values() -> None:
    assert convert(point(reading="on_air"), 5) is True and convert(point(reading="on_air"), 0) is False
    with pytest.raises(PointError, match="bad_value"):
        convert(point(reading="vswr"), "n/a")
    with pytest.raises(PointError, match="bad_value"):
        convert(point(reading="fault", bit=1), 2.5)
    with pytest.raises(PointError, match="non_finite"):
        convert(point(reading="vswr", scale=1e308), 1e308)
