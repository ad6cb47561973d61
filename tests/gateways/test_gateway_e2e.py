"""Real transmitter controllers → `anbo poll` → a real Mosquitto → a real `anbo run`.

Two real peers: Debian's snmpd (SNMPv3 authPriv, serving the example FM map's OIDs
from a pass script) and pymodbus's own TCP server (the example Modbus map's registers),
plus sources with wrong credentials (a v2c community, a v3 key, a Modbus unit id). The
values the agents serve arrive at the daemon scaled and named as the maps say; a VSWR
rise on both fires VswrHigh; stopping both raises TransmitterUnreachable with the cause
(and not TelemetryLost: the gateway is alive), the gateway's `up` goes 0 and the values
go stale; starting them again recovers. The figures (poll latency, recovery time) are
printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateways.mapping import encode_registers
from tests.gateways.servers import ModbusServer, Snmpd
from tests.servers import Mosquitto, free_port
from tests.test_integration_mqtt import sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ROOT / "config" / "devices"
SUBTREE = "1.3.6.1.4.1.8072.9999.9999.1"
AUTH_KEY, PRIV_KEY = "auth-key-for-tests", "priv-key-for-tests"

STATION = """
state_directory = "{state}"

[station]
name = "teststation"

[mqtt]
url = "{url}"
client_id = "anbo-e2e"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5

[metrics]
listen = "127.0.0.1:{port}"

[probes]
tick = 0.5
readings_stale_after = 3

[alerting]
stale_after = 5
"""
TX = """
[[targets]]
name = "{name}"
kind = "tx"
service = "{name}"
params = {{ rated_power_w = 1000 }}
"""
GATEWAY = """
[station]
name = "teststation"

[mqtt]
url = "{url}"
backoff_min = 0.05
backoff_max = 0.5

[metrics]
listen = "127.0.0.1:{port}"

[[snmp]]
target = "tx-snmp"
host = "127.0.0.1"
port = {snmp_port}
version = "3"
user = "anbo"
auth_protocol = "sha"
auth_key_file = "auth-key"
priv_protocol = "aes128"
priv_key_file = "priv-key"
map = "{devices}/example-fm-snmp.toml"
interval = 1
timeout = 1
retries = 0
backoff_max = 2

[[snmp]]
target = "tx-snmp-community"
host = "127.0.0.1"
port = {snmp_port}
community_file = "wrong-community"
map = "{devices}/example-fm-snmp.toml"
interval = 1
timeout = 1
retries = 0
backoff_max = 2

[[snmp]]
target = "tx-snmp-key"
host = "127.0.0.1"
port = {snmp_port}
version = "3"
user = "anbo"
auth_protocol = "sha"
auth_key_file = "wrong-key"
priv_key_file = "priv-key"
map = "{devices}/example-fm-snmp.toml"
interval = 1
timeout = 1
retries = 0
backoff_max = 2

[[modbus]]
target = "tx-modbus"
host = "127.0.0.1"
port = {modbus_port}
unit = 1
map = "{devices}/example-fm-modbus.toml"
interval = 1
timeout = 1
backoff_max = 2

[[modbus]]
target = "tx-modbus-unit"
host = "127.0.0.1"
port = {modbus_port}
unit = 9
map = "{devices}/example-fm-modbus.toml"
interval = 1
timeout = 1
backoff_max = 2
"""
TARGETS = ("tx-snmp", "tx-snmp-community", "tx-snmp-key", "tx-modbus", "tx-modbus-unit")


def snmp_values(vswr: str, forward_tenths: int = 10_000) -> dict[str, tuple[str, object]]:
    return {
        f"{SUBTREE}.1.0": ("gauge", forward_tenths),  # 1000.0 W
        f"{SUBTREE}.2.0": ("gauge", 100),  # 10.0 W
        f"{SUBTREE}.3.0": ("string", vswr),
        f"{SUBTREE}.4.0": ("integer", 415),  # 41.5 °C
        f"{SUBTREE}.5.0": ("integer", 1),  # on air
        f"{SUBTREE}.6.0": ("integer", 1),  # no alarm
    }


def set_modbus(server: ModbusServer, vswr: float, forward: int = 1000) -> None:
    server.set("input", 0, forward, 100, encode_registers(-52, "int16")[0])  # 1000 W, 10.0 W, -5.2 °C
    server.set("input", 4, *encode_registers(vswr, "float32", "little"))
    server.set("holding", 0, 0b01)  # on air, no fault


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait(check: Callable[[], Any], limit: float, what: str) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"waited {limit} s in vain for {what}")


class Daemon:
    """`anbo run` and `anbo poll`, as the real commands."""

    def __init__(self, tmp: Path, args: list[str], port: int, name: str) -> None:
        self.port = port
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "anbo", *args, "--log-format", "json"],
                stdout=out,
                stderr=out,
                cwd=ROOT,
            )

    def metrics(self) -> str:
        return get(f"http://127.0.0.1:{self.port}/metrics")[1]

    def alerts(self) -> list[dict[str, Any]]:
        status, body = get(f"http://127.0.0.1:{self.port}/api/v1/alerts")
        if status != 200:
            return []
        data = json.loads(body)
        return list(data["alerts"] if isinstance(data, dict) else data)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with_json = line[line.find("{") :] if "{" in line else ""
            try:
                out.append(json.loads(with_json))
            except json.JSONDecodeError:
                continue
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[Snmpd, ModbusServer]]:
    snmpd = Snmpd(
        tmp_path / "snmpd",
        subtree=SUBTREE,
        community="right-community",
        user="anbo",
        auth_key=AUTH_KEY,
        priv_key=PRIV_KEY,
    )
    modbus = ModbusServer(unit=1)
    snmpd.set(snmp_values("1.22"))
    snmpd.start()
    modbus.start()
    set_modbus(modbus, 1.2)
    try:
        yield snmpd, modbus
    finally:
        snmpd.stop()
        modbus.stop()


def firing(daemon: Daemon, alertname: str, target: str) -> dict[str, Any] | None:
    for a in daemon.alerts():
        if a["alertname"] == alertname and a["target"] == target and a["state"] == "firing":
            return a
    return None


def test_snmp_and_modbus_transmitters_reach_the_daemon_and_their_faults_alert(
    mosquitto: Mosquitto, tmp_path: Path, peers: tuple[Snmpd, ModbusServer]
) -> None:
    snmpd, modbus = peers
    daemon_port, gateway_port = free_port(), free_port()
    station = tmp_path / "anbo.toml"
    station.write_text(
        STATION.format(state=tmp_path / "state", url=mosquitto.url, port=daemon_port)
        + "".join(TX.format(name=n) for n in TARGETS)
    )
    for name, secret in (
        ("auth-key", AUTH_KEY),
        ("priv-key", PRIV_KEY),
        ("wrong-key", "not-the-auth-key"),
        ("wrong-community", "not-the-community"),
    ):
        (tmp_path / name).write_text(secret + "\n")
    gw_config = tmp_path / "gateway.toml"
    gw_config.write_text(
        GATEWAY.format(
            url=mosquitto.url,
            port=gateway_port,
            snmp_port=snmpd.port,
            modbus_port=modbus.port,
            devices=DEVICES,
        )
    )
    check = subprocess.run(
        [sys.executable, "-m", "anbo", "check", "--config", str(station), "--gateway", str(gw_config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert check.returncode == 0, check.stderr

    daemon = Daemon(tmp_path, ["run", "--config", str(station)], daemon_port, "daemon")
    gateway = Daemon(tmp_path, ["poll", "--config", str(gw_config)], gateway_port, "gateway")
    try:
        wait(lambda: get(f"http://127.0.0.1:{daemon_port}/-/ready")[0] == 200, 30, "the daemon ready")
        wait(lambda: get(f"http://127.0.0.1:{gateway_port}/-/ready")[0] == 200, 30, "the gateway ready")
        t0 = time.monotonic()

        def reading(target: str, name: str) -> float | None:
            return sample(daemon.metrics(), "anbo_reading", target=target, stream="status", name=name)

        # 1. Values arrive named and scaled as the maps say.
        wait(lambda: reading("tx-snmp", "forward_power_w") == 1000.0, 20, "SNMP forward power at the daemon")
        wait(
            lambda: reading("tx-modbus", "forward_power_w") == 1000.0,
            20,
            "Modbus forward power at the daemon",
        )
        first_values_s = time.monotonic() - t0
        assert reading("tx-snmp", "reflected_power_w") == pytest.approx(10.0)
        assert reading("tx-snmp", "pa_temp_celsius") == pytest.approx(41.5)
        assert reading("tx-snmp", "vswr") == pytest.approx(1.22)
        assert reading("tx-snmp", "on_air") == 1.0 and reading("tx-snmp", "fault") == 0.0
        assert reading("tx-modbus", "reflected_power_w") == pytest.approx(10.0)
        assert reading("tx-modbus", "pa_temp_celsius") == pytest.approx(-5.2)
        assert reading("tx-modbus", "vswr") == pytest.approx(1.2)
        assert reading("tx-modbus", "on_air") == 1.0 and reading("tx-modbus", "fault") == 0.0
        # ... and follow the devices.
        snmpd.set(snmp_values("1.22", forward_tenths=9_500))
        modbus.set("input", 0, 950)
        wait(lambda: reading("tx-snmp", "forward_power_w") == 950.0, 10, "the new SNMP value")
        wait(lambda: reading("tx-modbus", "forward_power_w") == 950.0, 10, "the new Modbus value")

        # 2. A VSWR rise on both transmitters fires VswrHigh (critical at 2.0).
        snmpd.set(snmp_values("2.10", forward_tenths=9_500))
        modbus.set("input", 4, *encode_registers(2.1, "float32", "little"))
        for target in ("tx-snmp", "tx-modbus"):
            alert = wait(lambda t=target: firing(daemon, "VswrHigh", t), 25, f"VswrHigh on {target}")
            assert alert["severity"] == "critical"

        # 3. Wrong credentials: each source says why, once.
        causes = {
            "tx-snmp-community": ("timeout", "wrong community"),
            "tx-snmp-key": ("auth", "Wrong SNMP PDU digest"),
            "tx-modbus-unit": ("device_failure", "device failure"),
        }
        for target, (reason, cause) in causes.items():
            alert = wait(
                lambda t=target: firing(daemon, "TransmitterUnreachable", t), 15, f"{target} unreachable"
            )
            assert cause in alert["description"], alert["description"]
            # One log line for the lasting cause, however many polls it failed (a first
            # attempt slowed by the start-up of everything may add one of its own).
            lines = [
                e
                for e in gateway.events()
                if e.get("event") == "device unreachable" and e["target"] == target and e["reason"] == reason
            ]
            assert len(lines) == 1, lines

        # 4. The devices stop: TransmitterUnreachable with the cause, up 0, values stale.
        snmpd.stop(kill=True)
        modbus.stop()
        t_stop = time.monotonic()
        gw_labels = {"tx-snmp": "snmp", "tx-modbus": "modbus"}
        for target, protocol in gw_labels.items():
            wait(
                lambda t=target, p=protocol: (
                    sample(
                        get(f"http://127.0.0.1:{gateway_port}/metrics")[1],
                        "anbo_gateway_up",
                        source=t,
                        protocol=p,
                    )
                    == 0.0
                ),
                10,
                f"anbo_gateway_up 0 for {target}",
            )
        snmp_down = wait(
            lambda: firing(daemon, "TransmitterUnreachable", "tx-snmp"), 20, "tx-snmp unreachable"
        )
        modbus_down = wait(
            lambda: firing(daemon, "TransmitterUnreachable", "tx-modbus"), 20, "tx-modbus unreachable"
        )
        alert_after_stop_s = time.monotonic() - t_stop
        assert "no answer" in snmp_down["description"], snmp_down["description"]
        assert "connection refused" in modbus_down["description"], modbus_down["description"]
        assert reading("tx-snmp", "forward_power_w") is None  # stale: unknown, not frozen
        assert reading("tx-modbus", "forward_power_w") is None
        assert not [a for a in daemon.alerts() if a["alertname"] == "TelemetryLost"]

        # 5. They come back: readings again, and the alert resolves.
        snmpd.start()
        modbus.start()
        t_back = time.monotonic()
        wait(
            lambda: reading("tx-snmp", "device_reachable") == 1.0 and reading("tx-snmp", "forward_power_w"),
            10,
            "SNMP readings again",
        )
        snmp_recovery_s = time.monotonic() - t_back
        wait(
            lambda: (
                reading("tx-modbus", "device_reachable") == 1.0 and reading("tx-modbus", "forward_power_w")
            ),
            10,
            "Modbus readings again",
        )
        modbus_recovery_s = time.monotonic() - t_back
        for target in ("tx-snmp", "tx-modbus"):
            wait(lambda t=target: not firing(daemon, "TransmitterUnreachable", t), 15, f"{target} resolved")
        assert not [a for a in daemon.alerts() if a["alertname"] == "TelemetryLost"]
        metrics = daemon.metrics()
        for target in TARGETS:
            assert sample(metrics, "anbo_sequence_gaps_total", target=target, stream="status") == 0.0, target

        # Figures.
        gw = get(f"http://127.0.0.1:{gateway_port}/metrics")[1]
        latency = {}
        for target, protocol in gw_labels.items():
            total = sample(gw, "anbo_gateway_poll_latency_seconds_sum", source=target)
            count = sample(gw, "anbo_gateway_poll_latency_seconds_count", source=target)
            fast = sample(gw, "anbo_gateway_poll_latency_seconds_bucket", source=target, le="0.05")
            assert total is not None and count and fast is not None
            latency[protocol] = (total / count, fast / count)
        print(
            f"\ngateway figures: first values at the daemon {first_values_s:.1f} s after ready; "
            f"mean poll latency snmp {latency['snmp'][0] * 1000:.1f} ms, "
            f"modbus {latency['modbus'][0] * 1000:.1f} ms "
            f"(share <= 50 ms: {latency['snmp'][1]:.0%}, {latency['modbus'][1]:.0%}); "
            f"TransmitterUnreachable {alert_after_stop_s:.1f} s after the stop; readings again "
            f"{snmp_recovery_s:.1f} s (snmp), {modbus_recovery_s:.1f} s (modbus) after the restart"
        )
        assert re.search(r"device reachable again", gateway.log.read_text())
    finally:
        gateway.stop()
        daemon.stop()
