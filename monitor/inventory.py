"""The emergency-broadcast (应急广播) endpoint inventory: CSV and TOML files → arrays.

Every endpoint (a village terminal or adapter) has an ``id`` (its MQTT topic segment in
``anbo/eb/<id>/<stream>``: ``[A-Za-z0-9_.-]{1,64}``), a ``name``, and its region at two
levels: ``county`` (旗县/county/banner) and ``township`` (乡镇). Coordinates ``lat`` and
``lon`` (WGS 84 degrees) are optional, both or neither.

CSV (UTF-8, with or without a byte-order mark, as Excel's "CSV UTF-8" writes it)::

    id,name,county,township,lat,lon
    qs-001,青山村大喇叭,青山旗,青山镇,41.12,109.85
    qs-002,"Hongqi, east",青山旗,红旗乡,,

The header names the columns, in any order; ``id``, ``county`` and ``township`` are
required, ``name`` (default: the id), ``lat`` and ``lon`` optional; other columns are
errors (a typo must not silently drop data). Blank lines are skipped. TOML::

    [[endpoints]]
    id = "qs-001"
    name = "青山村大喇叭"
    county = "青山旗"
    township = "青山镇"
    lat = 41.12
    lon = 109.85

Every problem is reported, all at once, as ``file:line: column: message`` (the CSV
line where the record starts; for TOML the line of its ``[[endpoints]]`` header and the
key). Nothing raises anything but :class:`InventoryError` on bad input.

A township is identified by its county *and* its name: 城关镇 in two counties are two
townships. Region indices follow the order of first appearance.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from monitor.wire import is_segment
from probes.eb import Fleet

__all__ = [
    "COLUMNS",
    "EndpointRecord",
    "Inventory",
    "InventoryError",
    "InventoryProblem",
    "Level",
    "inventory_from_csv",
    "inventory_from_toml",
    "load_inventory",
    "parse_csv",
    "parse_toml",
    "read_inventory_file",
]

Level = Literal["county", "township"]

#: Columns (CSV) and keys (TOML) of an endpoint.
COLUMNS: Final = ("id", "name", "county", "township", "lat", "lon")
REQUIRED: Final = ("id", "county", "township")
MAX_NAME_LEN: Final = 128
MAX_REGION_LEN: Final = 64
#: How many problems an error message lists before summarising the rest.
MAX_LISTED: Final = 50
_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_TOML_LINE_RE: Final = re.compile(r"\(at line (\d+), column (\d+)\)")
_ENDPOINTS_HEADER_RE: Final = re.compile(r"^[ \t]*\[\[[ \t]*endpoints[ \t]*\]\][ \t]*(?:#.*)?\r?$")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class InventoryProblem:
    """One problem: where (file, line, column or key) and what."""

    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class InventoryError(Exception):
    """The inventory could not be loaded; :attr:`problems` says every reason and where."""

    def __init__(self, problems: Sequence[InventoryProblem]) -> None:
        if not problems:
            raise ValueError("an InventoryError needs at least one problem")
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"… and {len(self.problems) - MAX_LISTED} more problems")
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One validated endpoint with the place it was read from."""

    id: str
    name: str
    county: str
    township: str
    lat: float | None
    lon: float | None
    file: str = ""
    line: int | None = None


def _text(value: str, column: str, limit: int, problems: list[tuple[str, str]]) -> str:
    text = value.strip()
    if len(text) > limit:
        problems.append((column, f"longer than {limit} characters"))
    elif not text.isprintable():
        problems.append((column, "contains control characters or line breaks"))
    return text


def _coordinate(raw: object, column: str, limit: float, problems: list[tuple[str, str]]) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if _NUMBER_RE.fullmatch(text) is None:
            problems.append((column, f"{text[:40]!r} is not a number of degrees"))
            return None
        value = float(text)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        problems.append((column, f"expected a number of degrees, got {type(raw).__name__}"))
        return None
    if not math.isfinite(value) or not -limit <= value <= limit:
        hint = " (are lat and lon swapped?)" if column == "lat" and -180 <= value <= 180 else ""
        problems.append((column, f"{value:g} is outside −{limit:g}…{limit:g} degrees{hint}"))
        return None
    return value


def _given(raw: object) -> bool:
    return raw is not None and not (isinstance(raw, str) and not raw.strip())


def _validate(fields: Mapping[str, object]) -> tuple[EndpointRecord | None, list[tuple[str, str]]]:
    """An endpoint from its raw fields (strings from CSV, TOML values), or its problems."""
    problems: list[tuple[str, str]] = []
    texts: dict[str, str] = {}
    for column in ("id", "name", "county", "township"):
        raw = fields.get(column)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            problems.append((column, f"expected a string, got {type(raw).__name__}"))
            continue
        limit = {"id": len(raw), "name": MAX_NAME_LEN}.get(column, MAX_REGION_LEN)  # id: checked below
        texts[column] = _text(raw, column, limit, problems)
    ident = texts.get("id")
    if ident is not None:
        if not ident:
            problems.append(("id", "must not be empty"))
        elif not is_segment(ident):
            problems.append(
                ("id", f"{ident[:70]!r} is not a valid MQTT topic segment (1–64 of A–Z a–z 0–9 _ . -)")
            )
    for column in ("county", "township"):
        if texts.get(column) == "":
            problems.append((column, "must not be empty"))
    lat = _coordinate(fields.get("lat"), "lat", 90.0, problems)
    lon = _coordinate(fields.get("lon"), "lon", 180.0, problems)
    lat_given, lon_given = _given(fields.get("lat")), _given(fields.get("lon"))
    if lat_given != lon_given:
        missing = "lon" if lat_given else "lat"
        problems.append((missing, "lat and lon must be given together (leave both empty when unknown)"))
    elif lat == 0.0 and lon == 0.0:
        problems.append(("lat", "0, 0 is not a place in China: leave both empty when unknown"))
    if problems:
        return None, problems
    return EndpointRecord(
        id=texts["id"],
        name=texts["name"] or texts["id"],
        county=texts["county"],
        township=texts["township"],
        lat=lat,
        lon=lon,
    ), []


# --------------------------------------------------------------------------- CSV


def parse_csv(text: str, source: str = "<csv>") -> list[EndpointRecord]:
    """Endpoints of a CSV text; raises :class:`InventoryError` naming line and column."""
    if text.startswith("\ufeff"):
        text = text[1:]
    problems: list[InventoryProblem] = []
    records: list[EndpointRecord] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    line = 1  # where the next record starts
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
                problems.extend(
                    InventoryProblem(source, start, col, msg) for col, msg in _header_problems(header)
                )
                if problems:
                    break
                continue
            if len(row) != len(header):
                expected = f"expected {len(header)} fields ({', '.join(header)}), got {len(row)}"
                problems.append(InventoryProblem(source, start, None, expected))
                continue
            record, bad = _validate(dict(zip(header, row, strict=True)))
            if record is None:
                problems.extend(InventoryProblem(source, start, col, msg) for col, msg in bad)
            else:
                records.append(_at(record, source, start))
    except csv.Error as exc:
        problems.append(InventoryProblem(source, reader.line_num or line, None, f"malformed CSV: {exc}"))
    if header is None and not problems:
        problems.append(InventoryProblem(source, 1, None, f"no header line (expected {', '.join(COLUMNS)})"))
    if problems:
        raise InventoryError(problems)
    return records


def _header_problems(header: list[str]) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    seen: set[str] = set()
    for name in header:
        if name not in COLUMNS:
            shown = name[:40] if name else "(empty)"
            problems.append((None, f"unknown column {shown!r} (columns: {', '.join(COLUMNS)})"))
        elif name in seen:
            problems.append((name, "column given twice"))
        seen.add(name)
    for name in REQUIRED:
        if name not in seen:
            problems.append((name, "required column missing from the header"))
    if ("lat" in seen) != ("lon" in seen):
        problems.append(("lon" if "lat" in seen else "lat", "lat and lon columns go together"))
    return problems


def _at(record: EndpointRecord, source: str, line: int | None) -> EndpointRecord:
    return dataclasses.replace(record, file=source, line=line)


# --------------------------------------------------------------------------- TOML


def parse_toml(text: str, source: str = "<toml>") -> list[EndpointRecord]:
    """Endpoints of a TOML text (``[[endpoints]]`` tables); raises :class:`InventoryError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE_RE.search(str(exc))
        line = int(m.group(1)) if m else None
        message = _TOML_LINE_RE.sub("", str(exc)).strip()
        raise InventoryError([InventoryProblem(source, line, None, f"invalid TOML: {message}")]) from None
    problems: list[InventoryProblem] = []
    for key in data:
        if key != "endpoints":
            problems.append(
                InventoryProblem(source, None, key, "unknown key (an inventory has [[endpoints]])")
            )
    entries = data.get("endpoints", [])
    if not isinstance(entries, list):
        problems.append(
            InventoryProblem(source, None, "endpoints", "must be an array of tables ([[endpoints]])")
        )
        raise InventoryError(problems)
    headers = [i + 1 for i, ln in enumerate(text.split("\n")) if _ENDPOINTS_HEADER_RE.match(ln)]
    lines: list[int | None] = list(headers) if len(headers) == len(entries) else [None] * len(entries)
    records: list[EndpointRecord] = []
    for i, entry in enumerate(entries):
        where = f"endpoints[{i}]"
        if not isinstance(entry, dict):
            problems.append(InventoryProblem(source, lines[i], where, "must be a table"))
            continue
        for key in entry:
            if key not in COLUMNS:
                problems.append(
                    InventoryProblem(
                        source, lines[i], f"{where}.{key}", f"unknown key (keys: {', '.join(COLUMNS)})"
                    )
                )
        missing = [key for key in REQUIRED if key not in entry]
        problems.extend(InventoryProblem(source, lines[i], f"{where}.{key}", "required") for key in missing)
        record, bad = _validate(entry)
        bad = [(col, msg) for col, msg in bad if col not in missing]  # reported just above
        if record is None:
            problems.extend(InventoryProblem(source, lines[i], f"{where}.{col}", msg) for col, msg in bad)
        else:
            records.append(_at(record, source, lines[i]))
    if problems:
        raise InventoryError(problems)
    return records


# --------------------------------------------------------------------------- files


def read_inventory_file(path: Path | str) -> list[EndpointRecord]:
    """Endpoints of one file, by suffix: ``.csv`` or ``.toml``."""
    p = Path(path)
    source = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".toml"):
        raise InventoryError([InventoryProblem(source, None, None, "expected a .csv or .toml file")])
    try:
        data = p.read_bytes()
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise InventoryError([InventoryProblem(source, None, None, reason)]) from None
    text = _decode(data, source)
    return parse_csv(text, source) if suffix == ".csv" else parse_toml(text, source)


def _decode(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InventoryError(
            [
                InventoryProblem(
                    source, 1, None, "the file is UTF-16; save it as UTF-8 (in Excel: 'CSV UTF-8')"
                )
            ]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InventoryError(
            [
                InventoryProblem(
                    source,
                    line,
                    None,
                    f"not UTF-8 (byte 0x{data[exc.start]:02x}); if it was saved as GBK, save it as UTF-8 "
                    "(in Excel: 'CSV UTF-8')",
                )
            ]
        ) from None


def load_inventory(paths: Iterable[Path | str]) -> Inventory:
    """The inventory of every endpoint in ``paths`` (CSV and TOML files, in order).

    All files are read and every problem is reported at once; ids must be unique
    across the files.
    """
    problems: list[InventoryProblem] = []
    records: list[EndpointRecord] = []
    for path in paths:
        try:
            records.extend(read_inventory_file(path))
        except InventoryError as exc:
            problems.extend(exc.problems)
    try:
        inventory = Inventory.from_records(records)
    except InventoryError as exc:
        problems.extend(exc.problems)
    if problems:
        raise InventoryError(problems)
    return inventory


def inventory_from_csv(text: str, source: str = "<csv>") -> Inventory:
    """:meth:`Inventory.from_records` of :func:`parse_csv`."""
    return Inventory.from_records(parse_csv(text, source))


def inventory_from_toml(text: str, source: str = "<toml>") -> Inventory:
    """:meth:`Inventory.from_records` of :func:`parse_toml`."""
    return Inventory.from_records(parse_toml(text, source))


# --------------------------------------------------------------------------- the inventory


def _first_appearance(keys: Sequence[Any]) -> tuple[list[Any], NDArray[np.int32]]:
    order: dict[Any, int] = {}
    idx = np.fromiter((order.setdefault(k, len(order)) for k in keys), dtype=np.int32, count=len(keys))
    return list(order), idx


@dataclass(frozen=True, eq=False)
class Inventory:
    """Endpoints as parallel arrays, indexed ``0 … N−1`` in file order.

    ``county[i]`` indexes ``county_names``; ``township[i]`` indexes ``townships``
    (``(county, township)`` pairs); ``township_county[t]`` is the county of township
    ``t``. ``lat``/``lon`` are NaN where not given.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    county: NDArray[np.int32]
    township: NDArray[np.int32]
    county_names: tuple[str, ...]
    townships: tuple[tuple[str, str], ...]
    township_county: NDArray[np.int32]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    index: Mapping[str, int] = field(repr=False)

    @classmethod
    def from_records(cls, records: Sequence[EndpointRecord]) -> Inventory:
        """Build from validated records; duplicate ids raise :class:`InventoryError`."""
        index: dict[str, int] = {}
        problems: list[InventoryProblem] = []
        for i, r in enumerate(records):
            first = index.setdefault(r.id, i)
            if first != i:
                f = records[first]
                where = f.file if f.line is None else f"{f.file}:{f.line}"
                problems.append(
                    InventoryProblem(
                        r.file or "<inventory>", r.line, "id", f"duplicate id {r.id!r} (first at {where})"
                    )
                )
        if problems:
            raise InventoryError(problems)
        county_names, county = _first_appearance([r.county for r in records])
        townships, township = _first_appearance([(r.county, r.township) for r in records])
        county_of = {name: i for i, name in enumerate(county_names)}
        return cls(
            ids=tuple(r.id for r in records),
            names=tuple(r.name for r in records),
            county=county,
            township=township,
            county_names=tuple(county_names),
            townships=tuple(townships),
            township_county=np.array([county_of[c] for c, _ in townships], dtype=np.int32),
            lat=np.array([math.nan if r.lat is None else r.lat for r in records], dtype=np.float64),
            lon=np.array([math.nan if r.lon is None else r.lon for r in records], dtype=np.float64),
            index=index,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def region(self, level: Level = "township") -> NDArray[np.int32]:
        """Per endpoint, its region index at ``level``."""
        if level == "county":
            return self.county
        if level == "township":
            return self.township
        raise ValueError(f"level must be 'county' or 'township', got {level!r}")

    def region_names(self, level: Level = "township") -> tuple[str, ...]:
        """Region names at ``level``; a township reads ``"county/township"``."""
        if level == "county":
            return self.county_names
        if level == "township":
            return tuple(f"{c}/{t}" for c, t in self.townships)
        raise ValueError(f"level must be 'county' or 'township', got {level!r}")

    def fleet(self, level: Level = "township") -> Fleet:
        """A fresh :class:`~probes.eb.Fleet` over these endpoints, with regions at ``level``."""
        return Fleet(self.region(level), n_regions=len(self.region_names(level)))

    def lookup(self, endpoint_ids: Iterable[str]) -> tuple[NDArray[np.intp], list[str]]:
        """Indices of the known ``endpoint_ids``, and the ids not in the inventory."""
        found: list[int] = []
        unknown: list[str] = []
        for e in endpoint_ids:
            i = self.index.get(e)
            if i is None:
                unknown.append(e)
            else:
                found.append(i)
        return np.array(found, dtype=np.intp), unknown
