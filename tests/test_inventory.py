"""Emergency-broadcast endpoint inventory: CSV and TOML import, validation with locations, arrays."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.inventory import (
    COLUMNS,
    EndpointRecord,
    Inventory,
    InventoryError,
    InventoryProblem,
    inventory_from_csv,
    inventory_from_toml,
    load_inventory,
    parse_csv,
    parse_toml,
    read_inventory_file,
)

CSV = """id,name,county,township,lat,lon
qs-001,青山村大喇叭,青山旗,青山镇,41.12,109.85
qs-002,"Hongqi, east",青山旗,红旗乡,,
by-001,城关镇一号,白云县,城关镇,40.5,110.25
qs-003,城关镇二号,青山旗,城关镇,,
"""

TOML = """
# Village loudspeakers of Qingshan banner
[[endpoints]]
id = "qs-001"
name = "青山村大喇叭"
county = "青山旗"
township = "青山镇"
lat = 41.12
lon = 109.85

[[endpoints]]
id = "qs-002"
county = "青山旗"
township = "红旗乡"
"""


def problems(exc: pytest.ExceptionInfo[InventoryError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# --------------------------------------------------------------------------- CSV


def test_csv_with_chinese_names() -> None:
    inv = inventory_from_csv(CSV, "eb.csv")
    assert inv.ids == ("qs-001", "qs-002", "by-001", "qs-003")
    assert inv.names[0] == "青山村大喇叭" and inv.names[1] == "Hongqi, east"
    assert inv.county_names == ("青山旗", "白云县")
    assert inv.county.tolist() == [0, 0, 1, 0]
    # 城关镇 in two counties is two townships.
    assert inv.townships == (
        ("青山旗", "青山镇"),
        ("青山旗", "红旗乡"),
        ("白云县", "城关镇"),
        ("青山旗", "城关镇"),
    )
    assert inv.township.tolist() == [0, 1, 2, 3]
    assert inv.township_county.tolist() == [0, 0, 1, 0]
    assert inv.region_names("township")[2] == "白云县/城关镇"
    assert inv.index["by-001"] == 2
    np.testing.assert_allclose(inv.lat, [41.12, math.nan, 40.5, math.nan])
    assert len(inv) == 4


def test_csv_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "eb.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV.replace("\n", "\r\n").encode())
    records = read_inventory_file(path)
    assert [r.id for r in records] == ["qs-001", "qs-002", "by-001", "qs-003"]
    assert records[2] == EndpointRecord(
        "by-001", "城关镇一号", "白云县", "城关镇", 40.5, 110.25, str(path), 4
    )
    assert parse_csv("\ufeff" + CSV)[0].id == "qs-001"  # a BOM left in the text


def test_csv_columns_in_any_order_optional_columns_and_blank_lines() -> None:
    text = "Township , ID,County\n\n青山镇,qs-001,青山旗\n,,\n红旗乡,qs-002,青山旗\n"
    inv = inventory_from_csv(text)
    assert inv.ids == ("qs-001", "qs-002")
    assert inv.names == ("qs-001", "qs-002")  # the name defaults to the id
    assert np.isnan(inv.lat).all()


def test_csv_problems_name_file_line_and_column() -> None:
    text = (
        "id,name,county,township,lat,lon\n"
        "qs 001,a,青山旗,青山镇,,\n"  # 2: space in id
        ",b,青山旗,青山镇,,\n"  # 3: empty id
        "qs-003,c,,青山镇,,\n"  # 4: empty county
        "qs-004,d,青山旗,青山镇,141.1,41.0\n"  # 5: swapped
        "qs-005,e,青山旗,青山镇,41.0,\n"  # 6: lat without lon
        "qs-006,f,青山旗,青山镇,北纬41,110\n"  # 7: not a number
        "qs-007,g,青山旗\n"  # 8: too few fields
        '"qs-008","multi\nline",青山旗,青山镇,,\n'  # 9-10: line break in a name
        "qs-009,h,青山旗,青山镇,0,0\n"  # 11: null island
        f"{'x' * 65},i,青山旗,青山镇,,\n"  # 12: id too long
    )
    with pytest.raises(InventoryError) as exc:
        parse_csv(text, "eb.csv")
    assert problems(exc) == [
        "eb.csv:2: id: 'qs 001' is not a valid MQTT topic segment (1–64 of A–Z a–z 0–9 _ . -)",
        "eb.csv:3: id: must not be empty",
        "eb.csv:4: county: must not be empty",
        "eb.csv:5: lat: 141.1 is outside −90…90 degrees (are lat and lon swapped?)",
        "eb.csv:6: lon: lat and lon must be given together (leave both empty when unknown)",
        "eb.csv:7: lat: '北纬41' is not a number of degrees",
        "eb.csv:8: expected 6 fields (id, name, county, township, lat, lon), got 3",
        "eb.csv:9: name: contains control characters or line breaks",
        "eb.csv:11: lat: 0, 0 is not a place in China: leave both empty when unknown",
        f"eb.csv:12: id: '{'x' * 65}' is not a valid MQTT topic segment (1–64 of A–Z a–z 0–9 _ . -)",
    ]
    assert "eb.csv:2: id:" in str(exc.value)


def test_csv_header_problems() -> None:
    with pytest.raises(InventoryError) as exc:
        parse_csv("id,名称,county,county\nx,y,z,w\n", "eb.csv")
    assert problems(exc) == [
        "eb.csv:1: unknown column '名称' (columns: id, name, county, township, lat, lon)",
        "eb.csv:1: county: column given twice",
        "eb.csv:1: township: required column missing from the header",
    ]
    with pytest.raises(InventoryError) as exc:
        parse_csv("\n\n", "eb.csv")
    assert problems(exc) == ["eb.csv:1: no header line (expected id, name, county, township, lat, lon)"]


def test_csv_malformed_quoting_names_the_line() -> None:
    with pytest.raises(InventoryError) as exc:
        parse_csv('id,county,township\na,b,c\n"d"x,e,f\n', "eb.csv")
    (problem,) = exc.value.problems
    assert problem.line == 3 and "malformed CSV" in problem.message


def test_oversized_field_and_nul_bytes_are_located_errors() -> None:
    with pytest.raises(InventoryError) as exc:
        parse_csv('id,county,township\na,c,t\n"' + "x" * 200_000 + '",c,t\n', "eb.csv")
    assert exc.value.problems[0].line == 3
    with pytest.raises(InventoryError) as exc:
        parse_csv("id,county,township\na\x00,c,t\n", "eb.csv")
    assert exc.value.problems[0].line == 2


def test_duplicate_ids_name_both_places() -> None:
    with pytest.raises(InventoryError) as exc:
        inventory_from_csv("id,county,township\na,c,t\nb,c,t\na,c,u\n", "eb.csv")
    assert problems(exc) == ["eb.csv:4: id: duplicate id 'a' (first at eb.csv:2)"]


def test_gbk_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "eb.csv"
    path.write_bytes("id,county,township\nqs-1,青山旗,青山镇\n".encode("gbk"))
    with pytest.raises(InventoryError) as exc:
        read_inventory_file(path)
    (problem,) = exc.value.problems
    assert problem.line == 2 and "not UTF-8" in problem.message and "CSV UTF-8" in problem.message


def test_utf16_and_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "eb.csv"
    path.write_bytes("id,county,township\n".encode("utf-16"))
    with pytest.raises(InventoryError, match="UTF-16"):
        read_inventory_file(path)
    with pytest.raises(InventoryError, match=r"expected a \.csv or \.toml file"):
        read_inventory_file(tmp_path / "eb.xlsx")
    with pytest.raises(InventoryError, match="cannot read"):
        read_inventory_file(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- TOML


def test_toml_inventory() -> None:
    inv = inventory_from_toml(TOML, "eb.toml")
    assert inv.ids == ("qs-001", "qs-002")
    assert inv.names == ("青山村大喇叭", "qs-002")
    assert inv.lat[0] == 41.12 and math.isnan(inv.lat[1])
    records = parse_toml(TOML, "eb.toml")
    assert [r.line for r in records] == [3, 11]


def test_toml_problems_name_line_and_key() -> None:
    text = """
[[endpoints]]
id = "a"
county = "c"

[[endpoints]]
id = 7
county = "c"
township = "t"
lat = true
lon = 100
colour = "red"

[station]
name = "x"
"""
    with pytest.raises(InventoryError) as exc:
        parse_toml(text, "eb.toml")
    assert problems(exc) == [
        "eb.toml: station: unknown key (an inventory has [[endpoints]])",
        "eb.toml:2: endpoints[0].township: required",
        "eb.toml:6: endpoints[1].colour: unknown key (keys: id, name, county, township, lat, lon)",
        "eb.toml:6: endpoints[1].id: expected a string, got int",
        "eb.toml:6: endpoints[1].lat: expected a number of degrees, got bool",
    ]


def test_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(InventoryError) as exc:
        parse_toml('[[endpoints]]\nid = "a"\ncounty = \n', "eb.toml")
    (problem,) = exc.value.problems
    assert problem.line == 3 and problem.message.startswith("invalid TOML:")
    with pytest.raises(InventoryError, match="array of tables"):
        parse_toml('endpoints = "x"\n', "eb.toml")


def test_load_inventory_from_several_files_reports_everything(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "b.toml").write_text(TOML.replace("qs-001", "qs-101").replace("qs-002", "qs-102"))
    inv = load_inventory([tmp_path / "a.csv", tmp_path / "b.toml"])
    assert len(inv) == 6 and inv.index["qs-102"] == 5
    with pytest.raises(InventoryError) as exc:
        load_inventory([tmp_path / "a.csv", tmp_path / "a.csv", tmp_path / "nope.csv"])
    lines = problems(exc)
    assert lines[0].startswith(f"{tmp_path / 'nope.csv'}: cannot read")
    assert lines[1] == f"{tmp_path / 'a.csv'}:2: id: duplicate id 'qs-001' (first at {tmp_path / 'a.csv'}:2)"
    assert len(lines) == 5


# --------------------------------------------------------------------------- arrays and the fleet


def test_fleet_at_both_levels() -> None:
    inv = inventory_from_csv(CSV)
    township_fleet = inv.fleet()
    assert township_fleet.size == 4 and township_fleet.n_regions == 4
    county_fleet = inv.fleet("county")
    assert county_fleet.n_regions == 2
    county_fleet.heartbeat([0, 2], 1000.0)
    status = county_fleet.evaluate(1000.0, offline_after=60.0)
    assert status.online.tolist() == [1, 1] and status.total.tolist() == [3, 1]
    with pytest.raises(ValueError, match="level"):
        inv.region("village")  # type: ignore[arg-type]


def test_lookup_ids() -> None:
    inv = inventory_from_csv(CSV)
    idx, unknown = inv.lookup(["qs-003", "nope", "qs-001"])
    assert idx.tolist() == [3, 0] and unknown == ["nope"]


def test_empty_inventory() -> None:
    inv = inventory_from_csv("id,county,township\n")
    assert len(inv) == 0 and inv.fleet().size == 0


def test_error_message_lists_at_most_50_problems() -> None:
    text = "id,county,township\n" + "".join(f"bad id {i},c,t\n" for i in range(60))
    with pytest.raises(InventoryError) as exc:
        parse_csv(text, "eb.csv")
    assert len(exc.value.problems) == 60
    assert str(exc.value).splitlines()[-1] == "… and 10 more problems"
    with pytest.raises(ValueError, match="at least one problem"):
        InventoryError([])
    assert str(InventoryProblem("f", None, None, "m")) == "f: m"


# --------------------------------------------------------------------------- properties


def _check_any(text: str) -> None:
    try:
        inv = inventory_from_csv(text, "fuzz.csv")
    except InventoryError as exc:
        located = exc.problems
    else:
        assert isinstance(inv, Inventory)
        assert len(set(inv.ids)) == len(inv.ids)
        assert inv.county.shape == inv.township.shape == (len(inv),)
        return
    assert located
    for p in located:
        assert p.file == "fuzz.csv"
        assert p.line is not None and p.line >= 1
        assert p.message


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_gives_an_inventory_or_a_located_error(text: str) -> None:
    _check_any(text)


CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["青山旗", "城关镇", "qs-001", "41.5", "-200", "1e999", "nan", "", " ", '"', "\r", "\n"]),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.permutations(COLUMNS).flatmap(lambda cols: st.integers(3, 6).map(lambda k: list(cols[:k]))),
    st.lists(st.lists(CELL, min_size=3, max_size=7), max_size=8),
    st.booleans(),
)
def test_csv_like_text_gives_an_inventory_or_a_located_error(
    header: list[str], rows: list[list[str]], bom: bool
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    _check_any(("\ufeff" if bom else "") + buf.getvalue())


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
            st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and s.isprintable()),
            st.sampled_from(["青山旗", "白云县", "Qingshan"]),
            st.sampled_from(["城关镇", "红旗乡", "Hongqi"]),
        ),
        max_size=20,
        unique_by=lambda r: r[0],
    )
)
def test_valid_rows_round_trip(rows: list[tuple[str, str, str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "name", "county", "township"])
    writer.writerows(rows)
    inv = inventory_from_csv(buf.getvalue())
    assert inv.ids == tuple(r[0] for r in rows)
    assert inv.names == tuple(r[1].strip() for r in rows)
    for i, (_, _, county, township) in enumerate(rows):
        assert inv.county_names[inv.county[i]] == county
        assert inv.townships[inv.township[i]] == (county, township)
