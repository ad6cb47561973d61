"""The CONNACK's session-present flag, read on every connect, against a real Mosquitto
(issue #11 item 1): a broker that kept anbo's session is silent; one that lost it (here:
persistence off, restarted) gives one clear warning and ``anbo_mqtt_sessions_lost_total``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.daemon import Daemon
from tests.servers import Mosquitto
from tests.test_integration_mqtt import eventually, run_daemon, sample, scrape

pytestmark = pytest.mark.integration

LOST = "the broker did not keep anbo's session"


def restart_and_reconnect(
    broker: Mosquitto, write_config: Any, kill: bool
) -> tuple[Daemon, list[dict[str, Any]]]:
    config = write_config(url=broker.url, client_id="anbo-session-test")
    scraped: list[str] = []

    async def scenario(daemon: Daemon) -> None:
        await asyncio.sleep(1.5)  # the broker autosaves (every second) with our session in it
        await asyncio.to_thread(broker.stop, kill)
        await asyncio.to_thread(broker.start)

        async def resubscribed() -> bool:
            return daemon.stats.reconnects >= 1 and daemon.ingest.listening_since is not None

        await eventually(resubscribed, limit=15, what="resubscribed after the broker restart")
        assert daemon.metrics_port is not None
        scraped.append(await asyncio.to_thread(scrape, daemon.metrics_port))

    with capture_logs() as logs:
        daemon = run_daemon(config, scenario)
    assert sample(scraped[0], "anbo_mqtt_sessions_lost_total") == daemon.stats.sessions_lost
    return daemon, logs


def subscribed(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "subscribed"]


def test_a_broker_that_kept_the_session_says_so(tmp_path: Path, write_config: Any) -> None:
    broker = Mosquitto(tmp_path / "mq", persistence=True)
    broker.start()
    try:
        daemon, logs = restart_and_reconnect(broker, write_config, kill=False)
    finally:
        broker.stop()
    assert daemon.stats.sessions_lost == 0
    assert not [e for e in logs if e["event"].startswith(LOST)]
    first, again = subscribed(logs)[:2]
    assert first["reconnected_in_s"] is None
    assert again["session_present"] is True and again["reconnected_in_s"] is not None


def test_a_broker_that_lost_the_session_is_one_clear_warning_and_counted(
    tmp_path: Path, write_config: Any
) -> None:
    broker = Mosquitto(tmp_path / "mq", persistence=False)
    broker.start()
    try:
        daemon, logs = restart_and_reconnect(broker, write_config, kill=False)
    finally:
        broker.stop()
    assert daemon.stats.sessions_lost == 1
    [warning] = [e for e in logs if e["event"].startswith(LOST)]
    assert warning["log_level"] == "warning" and warning["broker"] == broker.url
    assert warning["resubscribed_in_s"] >= 0
    assert subscribed(logs)[1]["session_present"] is False
