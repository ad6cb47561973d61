"""Device maps: which OID or register of a transmitter controller is which reading.

A map is a TOML data file (examples in ``config/devices/``), one per controller model::

    [device]
    protocol = "modbus"             # or "snmp"
    description = "Example 10 kW FM transmitter (adapt to your controller's manual)"

    [[points]]
    reading = "forward_power_w"     # a name of the catalogue's tx status stream
    table = "input"                 # modbus: holding, input, coil, discrete
    address = 0                     # modbus: 0-based register (or bit) address
    type = "uint16"                 # int16, uint16, int32, uint32, float32 (coils: bool)
    scale = 10.0                    # value = raw * scale + offset
    offset = 0.0

    [[points]]
    reading = "on_air"
    oid = "1.3.6.1.4.1.8072.9999.1.5.0"   # snmp: a numeric OID
    enum = { "1" = true, "2" = false }     # raw value (as text) -> reading value

A flag may also come from one ``bit`` of an integer status word. Everything is
checked when the map is loaded: a problem is one line naming the file, the line and
the key (``devices/fm.toml:14: points[on_air].type: ...``).

:func:`convert` turns one raw value (an integer, a float or an SNMP string) into the
reading's value; :func:`decode_registers` turns Modbus registers into a raw value.
Both raise :class:`PointError` with a short reason (a Prometheus label value) and a
detail for the log.
"""

from __future__ import annotations

import difflib
import math
import re
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from monitor.settings import ConfigError, describe_validation_error, key_line
from rules.catalogue import CATALOGUE, valid_name

__all__ = [
    "GATEWAY_READINGS",
    "REGISTER_COUNT",
    "DeviceMap",
    "PointError",
    "PointSpec",
    "convert",
    "decode_registers",
    "encode_registers",
    "load_map",
    "parse_map",
    "tx_status_names",
]

Protocol = Literal["snmp", "modbus"]
Table = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
WordOrder = Literal["big", "little"]
Raw = int | float | str | bool

#: Registers a value of each type occupies.
REGISTER_COUNT: Final[Mapping[str, int]] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "bool": 1,
}
_OID: Final = re.compile(r"\.?[0-2](\.(0|[1-9][0-9]{0,9}))+")
_STRUCT: Final[Mapping[str, str]] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
}


#: Readings of the tx status stream the gateway itself sets (not mapped from a device).
GATEWAY_READINGS: Final = frozenset({"device_reachable"})


def tx_status_names() -> tuple[dict[str, str], set[str]]:
    """The tx status stream's reading names a map may use → type (number/flag), and its info names."""
    values, info = CATALOGUE.readings("tx", "status")
    return {e.name: e.type for e in values if e.name not in GATEWAY_READINGS}, {e.name for e in info}


class PointError(Exception):
    """One point could not be read or converted: ``reason`` is a short label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointSpec(_Strict):
    """One ``[[points]]`` entry."""

    #: a reading beyond the catalogue (a number): the target must list it in extra_readings
    #: (declared before ``reading``, which is checked knowing it)
    extra: bool = False
    reading: str
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    #: raw value as text ("1", "ON", "-3") → reading value
    enum: dict[str, bool | float] | None = None
    #: a flag from one bit (0 = least significant) of an integer status word
    bit: int | None = Field(default=None, ge=0, le=31)
    # SNMP
    oid: str | None = None
    # Modbus
    table: Table | None = None
    address: int | None = Field(default=None, ge=0, le=65535)
    type: RegisterType | None = None
    word_order: WordOrder | None = None

    @field_validator("oid")
    @classmethod
    def _check_oid(cls, oid: str | None) -> str | None:
        if oid is None:
            return None
        if not _OID.fullmatch(oid):
            raise ValueError(f"{oid!r} is not a numeric OID such as 1.3.6.1.4.1.8072.9999.1.1.0")
        return oid.lstrip(".")

    @field_validator("enum")
    @classmethod
    def _check_enum(cls, enum: dict[str, bool | float] | None) -> dict[str, bool | float] | None:
        if enum is None:
            return None
        if not enum:
            raise ValueError("an enum maps at least one raw value")
        for key, value in enum.items():
            if not isinstance(value, bool) and not math.isfinite(value):
                raise ValueError(f"enum[{key!r}]: not a finite number")
        return {_canonical_key(k): v for k, v in enum.items()}

    @field_validator("reading")
    @classmethod
    def _check_reading(cls, reading: str, info: ValidationInfo) -> str:
        names, _ = tx_status_names()
        if info.data.get("extra"):
            if not valid_name(reading) or reading in names or reading in GATEWAY_READINGS:
                raise ValueError(
                    f"{reading!r}: an extra reading is a new name of [a-z][a-z0-9_], not a catalogue one"
                )
            return reading
        if reading not in names:
            close = difflib.get_close_matches(reading, list(names), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(names))})"
            raise ValueError(
                f"{reading!r} is not a reading of the tx status stream{hint} "
                "(a name of your own needs extra = true and the target's extra_readings)"
            )
        return reading

    @property
    def is_flag(self) -> bool:
        return tx_status_names()[0].get(self.reading) == "flag"


def _canonical_key(text: str) -> str:
    """Enum keys compare as text; integral numbers are written without a sign or zeros
    the way :func:`raw_text` writes them ("01" and "1" are the same key)."""
    t = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", t):
        return str(int(t))
    return t


def raw_text(raw: Raw) -> str:
    """A raw value as an enum key: integers (and integral floats) in decimal, text stripped."""
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if math.isfinite(raw) and raw.is_integer():
            return str(int(raw))
        return repr(raw)
    return _canonical_key(raw)


class DeviceSection(_Strict):
    protocol: Protocol
    description: str = ""
    #: default word order of 32-bit Modbus values: "big" (high word first, the Modbus
    #: convention) or "little"
    word_order: WordOrder = "big"


class MapFile(_Strict):
    device: DeviceSection
    points: list[PointSpec] = Field(min_length=1)


def _point_problems(parsed: MapFile) -> list[tuple[int, str, str]]:
    """(point index, key, why) for what a single point's model cannot see."""
    out: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(parsed.points):
        if p.reading in seen:
            out.append((i, "reading", f"{p.reading} is mapped twice (first in points[{seen[p.reading]}])"))
        seen.setdefault(p.reading, i)
        check = _check_snmp if parsed.device.protocol == "snmp" else _check_modbus
        try:
            if p.bit is not None and p.enum is not None:
                raise _PointProblemError("bit", "give either bit or enum, not both")
            if p.bit is not None and not p.is_flag:
                raise _PointProblemError("bit", f"a bit gives a flag, and {p.reading} is a number")
            check(p)
        except _PointProblemError as exc:
            out.append((i, exc.key, exc.why))
    return out


class _PointProblemError(Exception):
    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key
        self.why = why


def _check_snmp(p: PointSpec) -> None:
    if p.oid is None:
        raise _PointProblemError("oid", "an snmp point needs oid")
    for key in ("table", "address", "type", "word_order"):
        if getattr(p, key) is not None:
            raise _PointProblemError(key, "only for modbus points")


def _check_modbus(p: PointSpec) -> None:
    if p.oid is not None:
        raise _PointProblemError("oid", "only for snmp points")
    if p.table is None:
        raise _PointProblemError("table", "a modbus point needs table (holding, input, coil, discrete)")
    if p.address is None:
        raise _PointProblemError("address", "a modbus point needs address")
    bits = p.table in ("coil", "discrete")
    kind = p.type or ("bool" if bits else None)
    if kind is None:
        raise _PointProblemError(
            "type", "a register point needs type (int16, uint16, int32, uint32, float32)"
        )
    if bits and kind != "bool":
        raise _PointProblemError("type", f"a {p.table} is one bit: type is bool")
    if not bits and kind == "bool":
        raise _PointProblemError("type", "bool is for coil and discrete points; use bit for a status bit")
    if p.address + REGISTER_COUNT[kind] - 1 > 65535:
        raise _PointProblemError("address", f"{kind} at {p.address} runs past register 65535")
    if p.bit is not None and (bits or kind == "float32" or p.bit >= 16 * REGISTER_COUNT[kind]):
        raise _PointProblemError("bit", f"{p.bit} is not a bit of a {kind}")


@dataclass(frozen=True, slots=True)
class DeviceMap:
    """A loaded map: where it came from and its points, in file order."""

    path: Path
    protocol: Protocol
    description: str
    word_order: WordOrder
    points: tuple[PointSpec, ...]

    def register_type(self, p: PointSpec) -> RegisterType:
        return p.type or "bool"

    def word_order_of(self, p: PointSpec) -> WordOrder:
        return p.word_order or self.word_order


def parse_map(text: str, where: str, protocol: Protocol | None = None) -> DeviceMap:
    """Parse a map file's text; ``where`` names it in errors. Raises :class:`ConfigError`
    with every problem, one line each: ``file:line: points[2].type: why``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from None
    try:
        parsed = MapFile(**data)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc, data=data, text=text, where=where, root=MapFile, value_lines=True)
        ) from None
    problems = []
    for i, key, why in _point_problems(parsed):
        line = key_line(text, ("points", i, key)) or key_line(text, ("points", i, "reading"))
        problems.append(f"{where}{f':{line}' if line else ''}: points[{i}].{key}: {why}")
    if protocol is not None and parsed.device.protocol != protocol:
        line = key_line(text, ("device", "protocol"))
        problems.append(
            f"{where}{f':{line}' if line else ''}: device.protocol: this is a {parsed.device.protocol} map, "
            f"named by a [[{protocol}]] source"
        )
    if problems:
        raise ConfigError(problems)
    return DeviceMap(
        path=Path(where),
        protocol=parsed.device.protocol,
        description=parsed.device.description,
        word_order=parsed.device.word_order,
        points=tuple(parsed.points),
    )


def load_map(path: Path, protocol: Protocol | None = None) -> DeviceMap:
    """Read and parse a map file. Raises :class:`ConfigError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such map file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    return parse_map(text, str(path), protocol)


# -- values ----------------------------------------------------------------------------------
def decode_registers(regs: Sequence[int], kind: RegisterType, word_order: WordOrder = "big") -> int | float:
    """Registers (16-bit words, each big-endian on the wire) → the raw value of ``kind``."""
    n = REGISTER_COUNT[kind]
    if len(regs) != n:
        raise PointError("short_read", f"{kind} needs {n} registers, got {len(regs)}")
    if any(not 0 <= r <= 0xFFFF for r in regs):
        raise PointError("bad_register", f"register value out of 0..65535: {list(regs)}")
    if kind == "bool":
        return 1 if regs[0] else 0
    words = list(regs) if word_order == "big" else list(reversed(regs))
    data = b"".join(w.to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(_STRUCT[kind], data)[0]
    if isinstance(value, float) and not math.isfinite(value):
        raise PointError("non_finite", f"float32 registers {list(regs)} are not a finite number")
    return value


def encode_registers(value: int | float, kind: RegisterType, word_order: WordOrder = "big") -> list[int]:
    """The inverse of :func:`decode_registers` (tests and the example server use it)."""
    if kind == "bool":
        return [1 if value else 0]
    data = struct.pack(_STRUCT[kind], value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))


def convert(p: PointSpec, raw: Raw) -> float | bool:
    """A raw value → the reading's value: bit, enum, or ``raw * scale + offset``."""
    if p.bit is not None:
        if isinstance(raw, str) or (isinstance(raw, float) and not raw.is_integer()):
            raise PointError("bad_value", f"bit {p.bit} of a non-integer {raw!r}")
        return bool((int(raw) >> p.bit) & 1)
    if p.enum is not None:
        key = raw_text(raw)
        if key not in p.enum:
            raise PointError("unmapped_value", f"raw value {key[:20]!r} is not in the enum")
        mapped = p.enum[key]
        return mapped if isinstance(mapped, bool) or not p.is_flag else mapped != 0
    number: float
    if isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            raise PointError("bad_value", f"{raw[:20]!r} is not a number") from None
    else:
        number = float(raw)
    if p.is_flag:
        return number != 0
    value = number * p.scale + p.offset
    if not math.isfinite(value):
        raise PointError("non_finite", f"{raw!r} * {p.scale} + {p.offset} is not a finite number")
    return value
