"""Shared bits of the simulator tests: a compact station and message decoding."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from monitor.settings import Settings, load_settings
from monitor.wire import Payload, decode
from simulator.scenario import parse_scenario
from simulator.station import Message, SimOptions, StationSimulator

START = 1_748_833_200.0  # 2025-06-02 11:00 +08:00, a Monday

STATION = """
[station]
name = "sim"

[mqtt]
url = "mqtt://127.0.0.1:1"

[[targets]]
name = "fm-a"
kind = "fm"
service = "News"
frequency_mhz = 97.5
params = { rds_pi = "C201", rf_reference_dbuv = 66.0 }

[[targets]]
name = "fm-plain"
kind = "fm"
service = "Music"
frequency_mhz = 101.8

[[targets]]
name = "dtv-b"
kind = "dtv"
service = "Mux"
channel = "DS-21"

[[targets]]
name = "tx-c"
kind = "tx"
service = "FM transmitter"
serves = ["fm-a"]
params = { rated_power_w = 2000 }
"""


def station(tmp_path: Path, text: str = STATION, extra: str = "") -> Settings:
    path = tmp_path / "station.toml"
    path.write_text(extra + text)
    return load_settings(path).settings


def simulate(settings: Settings, scenario_text: str, **options: object) -> list[Message]:
    sc = parse_scenario(scenario_text, "test.yml")
    opts = SimOptions(start=START, **options)  # type: ignore[arg-type]
    return list(StationSimulator(settings, sc, opts).messages())


def decoded(msg: Message) -> Payload:
    return decode(
        msg.payload,
        content_type=msg.content_type,
        user_properties=msg.user_properties,
        now=START + msg.t + 1.0,
    )


def by_topic(messages: list[Message]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        out[m.topic].append(m)
    return dict(out)
