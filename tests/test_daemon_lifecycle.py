"""`anbo run` as a real process under a fake systemd: notify order, reload, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: a real AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, limit: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(msg)
            if key in msg:
                return msg
        raise AssertionError(f"no {key} within {limit} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()

    def order(self) -> list[str]:
        """The sequence of state keys, with repeated WATCHDOG pings collapsed."""
        keys: list[str] = []
        for msg in self.messages:
            for key in ("READY", "RELOADING", "STOPPING", "WATCHDOG"):
                if key in msg and (not keys or keys[-1] != key):
                    keys.append(key)
        return keys


def test_notify_protocol_order(mosquitto: Mosquitto, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSystemd(tmp_path / "notify.sock")
    port = free_port()
    config = write_config(url=mosquitto.url)
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    env = {**os.environ, "NOTIFY_SOCKET": str(fake.path), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "anbo", "run", "--config", str(config), "--log-format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = fake.wait_for("READY")
        assert "subscribed to anbo/+/+/+" in ready["STATUS"]
        # READY means the metrics listener is up too.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
            assert resp.status == 200
        fake.wait_for("WATCHDOG")

        # SIGHUP: a new target appears without dropping the connection.
        config.write_text(config.read_text() + '\n[[targets]]\nname = "tx-b"\nkind = "tx"\n')
        proc.send_signal(signal.SIGHUP)
        reloading = fake.wait_for("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        fake.wait_for("READY")
        fake.wait_for("WATCHDOG")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'target="tx-b"' in text
        assert 'anbo_config_reloads_total{result="success"} 1.0' in text
        assert "anbo_mqtt_reconnects_total 0.0" in text

        # A bad config on reload is refused and anbo keeps running on the old one.
        good = config.read_text()
        config.write_text(good + "\nnonsense = 1\n")
        proc.send_signal(signal.SIGHUP)
        fake.wait_for("RELOADING")
        again = fake.wait_for("READY")
        assert "reload failed" in again["STATUS"]

        proc.send_signal(signal.SIGTERM)
        fake.wait_for("STOPPING")
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
    finally:
        fake.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    order = fake.order()
    assert [k for k in order if k != "WATCHDOG"] == [
        "READY",
        "RELOADING",
        "READY",
        "RELOADING",
        "READY",
        "STOPPING",
    ]
    # Watchdog pings may start before READY (harmless: the loop is alive while the
    # broker connection is still being made); after READY they go on.
    after_ready = order[order.index("READY") :]
    assert after_ready[:4] == ["READY", "WATCHDOG", "RELOADING", "READY"]
    lines = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "anbo ready" in events and "configuration reloaded" in events and "anbo stopped" in events
    rejected = [line for line in lines if line["event"].startswith("configuration reload rejected")]
    assert rejected and "nonsense" in rejected[0]["problem"]
