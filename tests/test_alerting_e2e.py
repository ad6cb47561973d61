"""The whole path: audio over a real Mosquitto → probes → rules → a real Alertmanager → webhook.

A gateway publishes 100 ms PCM blocks in real time: programme, then silence, then
programme again. DeadAir (from the built-in pack) must fire once and resolve once at
the webhook; anbo restarted while it fires must not announce it again and must keep
its startsAt.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from monitor.daemon import Daemon
from monitor.settings import load_settings
from monitor.wire import encode_block_v5
from tests.alertmanager_server import Alertmanager, WebhookReceiver
from tests.servers import Mosquitto, find_binary
from tests.test_integration_mqtt import sample, scrape


def same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


pytestmark = pytest.mark.integration

RATE = 48_000
BLOCK = RATE // 10


class Gateway:
    """Publishes one target's audio in real time; ``silent`` switches the programme off."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gw-e2e", protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic = topic
        self.silent = False
        self.seq = 0

    def block(self, ts: float) -> None:
        if self.silent:
            x = np.zeros((BLOCK, 2), np.float32)
        else:
            t = (np.arange(BLOCK) + self.seq * BLOCK) / RATE
            mono = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
            x = np.stack([mono, mono], axis=1).astype(np.float32)
        body, ctype, props = encode_block_v5(x, ts=ts, seq=self.seq, rate=RATE, l16=True)
        p = Properties(PacketTypes.PUBLISH)
        p.ContentType = ctype
        p.UserProperty = props
        self.client.publish(self.topic, body, qos=1, properties=p)
        self.seq += 1

    async def run(self) -> None:
        start = time.time()
        while True:
            self.block(start + self.seq * 0.1)
            await asyncio.sleep(max(0.0, start + self.seq * 0.1 - time.time()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_dead_air_fires_resolves_and_survives_a_restart(
    mosquitto: Mosquitto,
    write_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            am.start()
            try:
                config = write_config(url=mosquitto.url)
                config.write_text(
                    config.read_text().replace(
                        "[station]",
                        "[probes]\nsilence_on_s = 1.0\nsilence_off_s = 1.0\ntick = 0.5\n\n"
                        f'[alerting]\nalertmanagers = [{{url = "{am.url}"}}]\nresend_interval = 2\n'
                        'stale_after = 600\nlanguage = "zh"\n\n[station]',
                        1,
                    )
                )
                await scenario(config, hook, am)
            finally:
                am.stop()

    async def scenario(config: Path, hook: WebhookReceiver, am: Alertmanager) -> None:
        gateway = Gateway(mosquitto.port, "anbo/teststation/fm-97.5/audio")
        feed = asyncio.create_task(gateway.run())
        daemon = Daemon(load_settings(config), drain_timeout=3.0)
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            await asyncio.sleep(3.0)  # programme: nothing fires
            assert not hook.notifications
            gateway.silent = True
            fired = await hook.wait_seen("DeadAir", "firing", logs=[am], limit=30)
            assert fired.labels["target"] == "fm-97.5" and fired.labels["severity"] == "critical"
            assert fired.labels["station"] == "teststation" and fired.labels["service"] == "News"
            # language = "zh": the pager gets the rule's Chinese text, and only that.
            assert fired.annotations["summary"] == "News（fm-97.5）静音（空播）", fired.annotations
            assert "summary_zh" not in fired.annotations and "静音" in fired.annotations["description"]
            port = daemon.metrics_port
            assert port
            text = await asyncio.to_thread(scrape, port)
            assert sample(text, "anbo_alert_active", alertname="DeadAir", target="fm-97.5") == 1.0
            assert sample(text, "anbo_silence", target="fm-97.5") == 1.0
            assert (sample(text, "anbo_silence_seconds", target="fm-97.5") or 0) >= 1.0
            assert sample(text, "anbo_alertmanager_notifications_sent_total", alertmanager=am.url) >= 1
            assert sample(text, "anbo_silence", target="dtv-ds21") is None  # no audio: unknown, absent
            out = await asyncio.to_thread(
                subprocess.run,
                [find_binary("promtool"), "check", "metrics"],
                input=text.encode(),
                capture_output=True,
                timeout=30,
            )
            assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out

            # Restart anbo while DeadAir fires: same startsAt, no second notification.
            daemon.request_stop()
            await asyncio.wait_for(run, 15)
            assert (Path(config).parent / "state" / "alerts.json").exists()
            daemon = Daemon(load_settings(config), drain_timeout=3.0)
            run = asyncio.create_task(daemon.run(install_signal_handlers=False))
            await asyncio.wait_for(daemon.ready.wait(), 20)
            await asyncio.sleep(4.0)  # two resend intervals with the restored alert
            assert len(hook.seen("DeadAir", "firing")) == 1
            active = [a for a in am.alerts() if a["labels"]["alertname"] == "DeadAir"]
            # The same instant, spelt as Alertmanager spells it: its API keeps milliseconds
            # (".500Z"), its webhooks trim trailing zeros (".5Z").
            assert len(active) == 1 and same_instant(active[0]["startsAt"], fired.starts_at)
            assert [a.alertname for a in daemon.evaluator.engine.active()] == ["DeadAir"]

            gateway.silent = False
            resolved = await hook.wait_seen("DeadAir", "resolved", logs=[am], limit=30)
            assert resolved.starts_at == fired.starts_at
            assert len(hook.seen("DeadAir", "firing")) == 1
            # Nothing else was raised along the way (no TelemetryLost across the restart).
            assert {n.alertname for n in hook.notifications} == {"DeadAir"}
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
            gateway.close()
            daemon.request_stop()
            await asyncio.wait_for(run, 15)

    asyncio.run(main())
