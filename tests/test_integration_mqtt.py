"""The daemon against a real Mosquitto started by the test on a free port."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from monitor.daemon import Daemon
from monitor.settings import load_settings
from monitor.stats import Result
from tests.servers import Mosquitto, find_binary, free_port

pytestmark = pytest.mark.integration

T = "anbo/teststation"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def sample(text: str, metric: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited {limit} s in vain for {what or check}")


def run_daemon(config: Path, scenario: Callable[[Daemon], Awaitable[None]]) -> Daemon:
    """Run the daemon until ``scenario`` returns, then shut it down cleanly."""
    daemon_box: list[Daemon] = []

    async def main() -> None:
        daemon = Daemon(load_settings(config), drain_timeout=5.0)
        daemon_box.append(daemon)
        done = asyncio.Event()

        async def drive() -> None:
            try:
                await asyncio.wait_for(daemon.ready.wait(), 20)
                await scenario(daemon)
            finally:
                done.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(daemon.run(done.wait, install_signal_handlers=False))
            tg.create_task(drive())

    asyncio.run(main())
    return daemon_box[0]


def v5_publisher(port: int, client_id: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_readings_and_blocks_reach_metrics(mosquitto: Mosquitto, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(url=mosquitto.url)
    now = time.time()

    async def scenario(daemon: Daemon) -> None:
        port = daemon.metrics_port
        assert port
        # JSON readings with the real mosquitto_pub, v5 and v3.1.1.
        await asyncio.to_thread(
            mosquitto.publish,
            f"{T}/fm-97.5/rf",
            f'{{"ts": {now}, "seq": 1, "values": {{"rf_level_dbuv": 61.2, "pilot_present": true}},'
            f' "info": {{"rds_pi": "C201"}}}}',
        )
        await asyncio.to_thread(
            mosquitto.publish,
            f"{T}/dtv-ds21/rf",
            f'{{"ts": {now}, "seq": 1, "period": 1.0, "values": {{"mer_db": [33.1, 33.4, 32.9]}}}}',
            1,
            False,
        )
        # A binary block in the 3.1.1 header framing, with mosquitto_pub.
        from monitor.wire import encode_block_v5, encode_block_v311

        block = (0.25 * np.sin(np.arange(4800) * 2 * np.pi * 1000 / 48000)).astype(np.float32)
        stereo = np.stack([block, block], axis=1)
        await asyncio.to_thread(
            mosquitto.publish,
            f"{T}/dtv-ds21/audio",
            encode_block_v311(stereo, ts=now, seq=1, rate=48000),
            1,
            False,
        )
        # An audio/L16 block with v5 properties, with paho.
        body, ctype, props = encode_block_v5(stereo, ts=now, seq=1, rate=48000, l16=True)
        pub = v5_publisher(mosquitto.port, "test-pub-v5")
        try:
            p = Properties(PacketTypes.PUBLISH)
            p.ContentType = ctype
            p.UserProperty = props
            pub.publish(f"{T}/fm-97.5/audio", body, qos=1, properties=p).wait_for_publish(5)
            pub.publish(f"{T}/rogue/rf", b"{}", qos=1).wait_for_publish(5)
            pub.publish(f"{T}/fm-97.5/rf", b"garbage", qos=1).wait_for_publish(5)
        finally:
            pub.loop_stop()
            pub.disconnect()

        async def all_seen() -> bool:
            return sum(daemon.stats.messages.values()) >= 6

        await eventually(all_seen, what="six messages")
        text = await asyncio.to_thread(scrape, port)
        labels = {"station": "teststation", "target": "fm-97.5", "kind": "fm", "service": "News"}
        assert sample(text, "anbo_reading", **labels, stream="rf", name="rf_level_dbuv") == 61.2
        assert sample(text, "anbo_reading", **labels, stream="rf", name="pilot_present") == 1.0
        assert sample(text, "anbo_reading_info", **labels, name="rds_pi", value="C201") == 1.0
        assert sample(text, "anbo_reading", target="dtv-ds21", name="mer_db") == 32.9
        assert sample(text, "anbo_stream_messages_total", target="dtv-ds21", stream="audio") == 1.0
        assert sample(text, "anbo_stream_messages_total", target="fm-97.5", stream="audio") == 1.0
        age = sample(text, "anbo_sample_age_seconds", target="fm-97.5", stream="rf")
        assert age is not None and 0 <= age < 30
        assert sample(text, "anbo_messages_total", result="accepted", reason="ok") == 4.0
        assert sample(text, "anbo_messages_total", result="dropped", reason="unknown_target") == 1.0
        assert sample(text, "anbo_messages_total", result="rejected", reason="bad_json") == 1.0
        assert sample(text, "anbo_mqtt_connected", broker=mosquitto.url) == 1.0
        assert sample(text, "anbo_build_info", version="0.1.0") == 1.0
        assert (sample(text, "anbo_processing_latency_seconds_count") or 0) >= 6
        assert "rogue" not in text
        # promtool, the real one, has nothing to say about the exposition.
        out = await asyncio.to_thread(
            subprocess.run,
            [find_binary("promtool"), "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0 and out.stdout.strip() == b"" and out.stderr.strip() == b"", out

    run_daemon(config, scenario)


def test_broker_restart_loses_nothing(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    """Mosquitto stopped and restarted (with persistence) while a publisher keeps sending:
    anbo reconnects within seconds and sees every sequence number, with no gap."""
    broker = Mosquitto(tmp_path / "mq")
    broker.start()
    config = write_config(url=broker.url, client_id="anbo-restart-test")
    total = 800
    stop_publisher = threading.Event()
    published: list[int] = []

    def publisher() -> None:
        # A gateway-like publisher: persistent session, QoS 1, paho's own reconnects,
        # publishes queued while the broker is away.
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="gateway-1", clean_session=False, protocol=paho.MQTTv311
        )
        client.reconnect_delay_set(0.05, 0.5)
        client.connect("127.0.0.1", broker.port, keepalive=5)
        client.loop_start()
        try:
            for seq in range(total):
                if stop_publisher.is_set():
                    break
                payload = f'{{"ts": {time.time()}, "seq": {seq}, "values": {{"forward_power_w": {seq}}}}}'
                client.publish(f"{T}/tx-a/status", payload, qos=1)
                published.append(seq)
                time.sleep(0.01)
            deadline = time.monotonic() + 30
            while client.want_write() or (client._out_messages and time.monotonic() < deadline):
                time.sleep(0.05)
        finally:
            client.loop_stop()
            client.disconnect()

    async def scenario(daemon: Daemon) -> None:
        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        # Let the broker autosave (every second) at least once with our session in it,
        # then SIGKILL it: no goodbye and no final save, as in a power cut.
        await asyncio.sleep(3.0)
        await asyncio.to_thread(broker.stop, True)
        await asyncio.sleep(1.0)
        down_at = time.monotonic()
        await asyncio.to_thread(broker.start)

        async def reconnected() -> bool:
            return all(daemon.ingest.connected.values()) and daemon.stats.reconnects >= 1

        await eventually(reconnected, limit=10, what="reconnect")
        assert time.monotonic() - down_at < 10
        await asyncio.to_thread(thread.join, 60)
        stream = daemon.pipeline.targets["tx-a"].streams["status"]

        async def all_seen() -> bool:
            return stream.accepted >= total

        await eventually(all_seen, limit=30, what=f"{total} messages")
        # Every sequence number arrived exactly once: none is missing in the end. (Around
        # the restart the broker may deliver its restored queue after newer messages;
        # that shows up as a gap filled by late arrivals, which is reordering, not loss.)
        assert stream.accepted == total
        assert stream.seq.missing == 0
        assert stream.late == stream.missing
        assert stream.values["forward_power_w"] == total - 1

    try:
        daemon = run_daemon(config, scenario)
    finally:
        stop_publisher.set()
        broker.stop()
    assert daemon.stats.connects >= 2


def test_bad_credentials_are_a_clear_error_not_a_hammer(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    passwd = tmp_path / "passwd"
    subprocess.run([find_binary("mosquitto_passwd"), "-c", "-b", str(passwd), "anbo", "right"], check=True)
    broker = Mosquitto(tmp_path / "mq", extra_conf=f"password_file {passwd}\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    (tmp_path / "pw").write_text("wrong\n")
    text = (
        write_config(url=broker.url)
        .read_text()
        .replace("keepalive = 5", 'keepalive = 5\nusername = "anbo"\npassword_file = "pw"')
    )
    config = tmp_path / "auth.toml"
    config.write_text(text)

    async def main() -> None:
        daemon = Daemon(load_settings(config))
        task = asyncio.create_task(daemon.run(install_signal_handlers=False))
        await asyncio.sleep(2.0)
        assert not daemon.ready.is_set()
        # Retried at the slowest backoff (0.5 s in this config), not in a tight loop.
        assert 1 <= daemon.stats.connect_errors["auth"] <= 5
        port = daemon.metrics_port
        assert port
        text = await asyncio.to_thread(scrape, port)
        assert sample(text, "anbo_mqtt_connected", broker=broker.url) == 0.0
        assert (
            sample(text, "anbo_mqtt_connection_errors_total", reason="auth")
            == daemon.stats.connect_errors["auth"]
        )
        daemon.request_stop()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
    finally:
        broker.stop()


def test_metrics_over_tls(mosquitto: Mosquitto, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    text = (
        write_config(url=mosquitto.url)
        .read_text()
        .replace(
            'listen = "127.0.0.1:0"',
            f'listen = "127.0.0.1:{port}"\ntls_cert_file = "cert.pem"\ntls_key_file = "key.pem"',
        )
    )
    config = tmp_path / "tls.toml"
    config.write_text(text)

    async def scenario(daemon: Daemon) -> None:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False

        def get() -> str:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=5) as r:
                return str(r.read().decode())

        assert "anbo_build_info" in await asyncio.to_thread(get)

    run_daemon(config, scenario)


def test_mqtts_with_private_ca(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    """mqtts:// to a Mosquitto TLS listener whose certificate a private CA signed."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    broker = Mosquitto(
        tmp_path / "mq",
        extra_conf=(
            f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
            f"keyfile {tmp_path / 'server.key'}\n"
        ),
    )
    broker.start()
    text = (
        write_config(url=f"mqtts://127.0.0.1:{broker.port}")
        .read_text()
        .replace("keepalive = 5", 'keepalive = 5\ntls_ca_file = "ca.pem"')
    )
    config = tmp_path / "tls.toml"
    config.write_text(text)

    async def scenario(daemon: Daemon) -> None:
        assert daemon.ingest.connected == {f"mqtts://127.0.0.1:{broker.port}": True}

    try:
        run_daemon(config, scenario)
    finally:
        broker.stop()


def test_mqtt_311_with_header_blocks(mosquitto: Mosquitto, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 3.1.1 session (brokers without v5, such as the demo's amqtt): persistent session,
    JSON readings and ANBO-header sample blocks."""
    from monitor.wire import encode_block_v311

    config = write_config(url=mosquitto.url)
    config.write_text(config.read_text().replace("keepalive = 5", 'keepalive = 5\nprotocol = "3.1.1"'))

    async def scenario(daemon: Daemon) -> None:
        now = time.time()
        block = np.zeros((4800, 2), np.float32)
        await asyncio.to_thread(
            mosquitto.publish,
            f"{T}/fm-97.5/audio",
            encode_block_v311(block, ts=now, seq=7, rate=48000),
            1,
            False,
        )
        await asyncio.to_thread(
            mosquitto.publish,
            f"{T}/fm-97.5/rf",
            f'{{"ts": {now}, "seq": 1, "values": {{"rf_level_dbuv": 55.0}}}}',
            1,
            False,
        )

        async def both() -> bool:
            return daemon.stats.count(Result.ACCEPTED, "ok") == 2

        await eventually(both, what="two messages over 3.1.1")
        assert daemon.pipeline.targets["fm-97.5"].streams["audio"].block_format == (48000, 2)

    run_daemon(config, scenario)
