from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.servers import Mosquitto

STATION_TOML = """
state_directory = "state"

[station]
name = "teststation"

[mqtt]
url = "{url}"
client_id = "{client_id}"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5

[metrics]
listen = "127.0.0.1:0"

[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
labels = {{ county = "Qingshan" }}

[[targets]]
name = "dtv-ds21"
kind = "dtv"
service = "Mux 1"
channel = "DS-21"

[[targets]]
name = "tx-a"
kind = "tx"
service = "FM transmitter A"
serves = ["fm-97.5"]
"""


@pytest.fixture
def station_toml() -> str:
    return STATION_TOML


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(url: str = "mqtt://127.0.0.1:1", client_id: str = "anbo-test", text: str | None = None) -> Path:
        path = tmp_path / "anbo.toml"
        path.write_text((text or STATION_TOML).format(url=url, client_id=client_id))
        return path

    return write


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _plain_logging() -> Iterator[None]:
    """Tests log through structlog's defaults unless they configure logging themselves."""
    yield
    structlog.reset_defaults()
