"""The gateway config: the example loads, mistakes are located, any text is handled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.config import SnmpSource, load_gateway, station_problems
from monitor.settings import ConfigError, load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"
SNMP = '[[snmp]]\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\n'


def test_the_example_loads_and_fits_the_example_station() -> None:
    gw = load_gateway(CONFIG / "gateway.example.toml")
    c = gw.config
    assert [s.target for s in c.snmp] == ["tx-fm-a", "tx-dtv-1"] and [m.target for m in c.modbus] == [
        "tx-fm-b"
    ]
    assert gw.secrets["tx-fm-a"].community == "example-community-change-me"
    assert gw.secrets["tx-dtv-1"].priv_key == "example-priv-key-change-me"
    assert c.snmp[0].interval == 5.0 and c.modbus[0].timeout == 1.0
    assert {m.protocol for m in gw.maps.values()} == {"snmp", "modbus"}
    station = load_settings(CONFIG / "anbo.example.toml")
    assert station_problems(gw, station.settings, station.path) == []


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "community").write_text("c0mmunity\n")
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "m.toml").write_text(
        '[device]\nprotocol = "snmp"\n\n[[points]]\nreading = "vswr"\noid = "1.3.6.1"\n'
    )
    path = tmp_path / "gw.toml"
    path.write_text('[station]\nname = "s1"\n\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "gw.toml: (top level): no [[snmp]] or [[modbus]] source: nothing to poll"),
        (
            '[[snmp]]\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\n',
            "gw.toml: snmp[0]: SNMP v2c needs community_file",
        ),
        (
            SNMP + 'community_file = "community"\nintervall = 3\n',
            "gw.toml:9: snmp[0].intervall: unknown key; did you mean interval?",
        ),
        (
            SNMP + 'version = "3"\nuser = "u"\nauth_key_file = "short"\n',
            "gw.toml:10: snmp[0].auth_key_file: an SNMPv3 key has at least 8 characters",
        ),
        (
            '[[modbus]]\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\nunit = 300\n',
            "gw.toml:8: modbus[0].unit: Input should be less than or equal to 255",
        ),
        (
            '[[modbus]]\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\n',
            "gw.toml:7: modbus[0].map: ",
        ),
        (
            '[[modbus]]\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\n\n'
            '[[modbus]]\nname = "b"\ntarget = "tx"\nhost = "h"\nmap = "m.toml"\n',
            "gw.toml: (top level): duplicate targets (one source per target): tx",
        ),
        ('[mqtt]\npassword = "x"\n', "gw.toml:5: mqtt.password: secrets are not accepted"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_gateway(write(tmp_path, text))
    assert any(p.replace(str(tmp_path) + "/", "").startswith(expected) for p in info.value.problems), (
        info.value.problems
    )


def test_sources_default_to_their_target_and_take_durations() -> None:
    src = SnmpSource(target="tx-a", host="h", map=Path("m"), community_file="c", interval="1m30s")  # type: ignore[arg-type]
    assert src.source == "tx-a" and src.interval == 90.0


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400))
def test_any_text_loads_or_gives_located_problems(tmp_path: Path, text: str) -> None:
    path = tmp_path / "any.toml"
    path.write_text(text, encoding="utf-8", errors="replace")
    try:
        load_gateway(path)
    except ConfigError as exc:
        found = exc.problems
    else:
        return
    assert found
    for problem in found:
        assert re.match(rf"^{re.escape(str(path))}(:\d+)?: ", problem), problem
