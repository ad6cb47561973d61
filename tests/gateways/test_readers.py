"""The protocol readers against real peers: per-point errors, block splitting, credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateways.config import ModbusSource, Secrets, SnmpSource
from gateways.mapping import encode_registers, parse_map
from gateways.modbus import ModbusReader
from gateways.poller import DeviceError
from gateways.snmp import SnmpReader
from tests.gateways.servers import ModbusServer, Snmpd

pytestmark = pytest.mark.integration

OIDS = "1.3.6.1.4.1.8072.9999.9999.3"
SNMP_MAP = f"""
[device]
protocol = "snmp"

[[points]]
reading = "forward_power_w"
oid = "{OIDS}.1.0"
scale = 0.1

[[points]]
reading = "vswr"
oid = "{OIDS}.2.0"

[[points]]
reading = "on_air"
oid = "{OIDS}.3.0"
enum = {{ "1" = true, "2" = false }}

[[points]]
reading = "pa_temp_celsius"
oid = "{OIDS}.9.0"
"""
MODBUS_MAP = """
[device]
protocol = "modbus"

[[points]]
reading = "forward_power_w"
table = "holding"
address = 10
type = "uint32"

[[points]]
reading = "reflected_power_w"
table = "holding"
address = 12
type = "int16"

[[points]]
reading = "vswr"
table = "holding"
address = 198
type = "float32"

[[points]]
reading = "pa_temp_celsius"
table = "holding"
address = 205
type = "uint16"

[[points]]
reading = "on_air"
table = "coil"
address = 5

[[points]]
reading = "fault"
table = "discrete"
address = 2
"""


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[Snmpd]:
    agent = Snmpd(
        tmp_path / "snmpd",
        subtree=OIDS,
        community="c0mmunity",
        user="anbo",
        auth_key="auth-key-1",
        priv_key="priv-key-1",
    )
    agent.set(
        {f"{OIDS}.1.0": ("gauge", 12345), f"{OIDS}.2.0": ("string", "1.35"), f"{OIDS}.3.0": ("integer", 7)}
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def snmp_reader(agent: Snmpd, **kw: object) -> SnmpReader:
    secrets = kw.pop("secrets", Secrets(community="c0mmunity"))
    args: dict[str, object] = {
        "target": "tx",
        "host": "127.0.0.1",
        "port": agent.port,
        "map": "m",
        "timeout": 0.5,
        "retries": 0,
        "community_file": "c",
    }
    args.update(kw)
    return SnmpReader(SnmpSource(**args), parse_map(SNMP_MAP, "m.toml"), secrets)  # type: ignore[arg-type]


def test_snmp_points_and_their_errors(snmpd: Snmpd) -> None:
    async def main() -> None:
        reader = snmp_reader(snmpd)
        try:
            result = await reader.read()
        finally:
            await reader.close()
        assert result.values == {"forward_power_w": pytest.approx(1234.5), "vswr": pytest.approx(1.35)}
        assert result.errors["on_air"].reason == "unmapped_value"  # 7 is not in the enum
        assert result.errors["pa_temp_celsius"].reason == "no_such_object"

    asyncio.run(main())


def test_snmp_v3_and_wrong_credentials(snmpd: Snmpd) -> None:
    v3 = {"version": "3", "user": "anbo", "auth_key_file": "a", "priv_key_file": "p", "community_file": None}

    async def main() -> None:
        good = snmp_reader(snmpd, secrets=Secrets(auth_key="auth-key-1", priv_key="priv-key-1"), **v3)
        no_user = snmp_reader(
            snmpd, secrets=Secrets(auth_key="auth-key-1", priv_key="priv-key-1"), **{**v3, "user": "eve"}
        )
        wrong_community = snmp_reader(snmpd, secrets=Secrets(community="public"))
        try:
            assert (await good.read()).values["forward_power_w"] == pytest.approx(1234.5)
            with pytest.raises(DeviceError) as info:
                await no_user.read()
            assert (info.value.reason, info.value.detail) == ("auth", "SNMPv3 Unknown USM user")
            with pytest.raises(DeviceError) as info:
                await wrong_community.read()
            assert info.value.reason == "timeout" and "wrong community" in info.value.detail
        finally:
            for r in (good, no_user, wrong_community):
                await r.close()

    asyncio.run(main())


def test_modbus_blocks_split_around_a_bad_address_and_devices_fail_whole() -> None:
    server = ModbusServer(unit=3)
    server.start()
    try:
        server.set("holding", 10, *encode_registers(70_000, "uint32"), *encode_registers(-12, "int16"))
        server.set("holding", 198, *encode_registers(1.25, "float32"))
        server.set("coil", 5, 1)
        server.set("discrete", 2, 1)
        dmap = parse_map(MODBUS_MAP, "m.toml")

        def reader(unit: int) -> ModbusReader:
            src = ModbusSource(
                target="tx", host="127.0.0.1", port=server.port, map=Path("m"), unit=unit, timeout=1
            )
            return ModbusReader(src, dmap)

        async def main() -> None:
            r = reader(3)
            try:
                # 198..199 and 205 share a request: 205 is past the 200 registers served.
                assert [(b.table, b.start, b.count) for b in r.blocks] == [
                    ("holding", 10, 3),
                    ("holding", 198, 8),
                    ("coil", 5, 1),
                    ("discrete", 2, 1),
                ]
                for _ in range(2):  # the split holds for the next poll
                    result = await r.read()
                    assert result.values == {
                        "forward_power_w": 70_000.0,
                        "reflected_power_w": -12.0,
                        "vswr": 1.25,
                        "on_air": True,
                        "fault": True,
                    }
                    assert result.errors["pa_temp_celsius"].reason == "illegal_address"
                assert [(b.table, b.start, b.count) for b in r.blocks][1:3] == [
                    ("holding", 198, 2),
                    ("holding", 205, 1),
                ]
                wrong = reader(4)
                with pytest.raises(DeviceError) as info:
                    await wrong.read()
                assert info.value.reason == "device_failure"
                await wrong.close()
                server.stop()
                with pytest.raises(DeviceError) as info:
                    await r.read()
                assert info.value.reason in {"lost", "timeout", "refused"}
                with pytest.raises(DeviceError) as info:
                    await r.read()
                assert (info.value.reason, info.value.detail) == (
                    "refused",
                    f"connection refused by 127.0.0.1:{server.port}",
                )
            finally:
                await r.close()

        asyncio.run(main())
    finally:
        server.stop()
