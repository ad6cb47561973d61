"""The notifier against a real Alertmanager (Debian's ``prometheus-alertmanager``), started here.

Each test starts its own Alertmanager(s) on free ports, routed to a webhook receiver in
the test with ``group_wait: 0s``, ``group_interval: 1s`` and a long ``repeat_interval``,
so that every notification the webhook sees is one Alertmanager decided to send.
A small evaluation loop stands in for the daemon: it calls ``update`` every tick with
what is firing and what resolved since the last tick. Resend intervals are short
(0.5 s) to keep the file fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.alertmanager import AlertmanagerNotifier, AlertmanagerTarget, OutgoingAlert, rfc3339
from tests.alertmanager_server import Alertmanager, WebhookReceiver
from tests.servers import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
RESEND = 0.5
TICK = 0.1


class Station:
    """Stands in for the daemon's evaluation loop: ``update`` every tick."""

    def __init__(self, notifier: AlertmanagerNotifier, station: str = "s1") -> None:
        self.notifier = notifier
        self.station = station
        self.firing: dict[tuple[str, str], OutgoingAlert] = {}
        self._resolved: list[OutgoingAlert] = []

    def fire(
        self, name: str, target: str = "fm-97.5", starts_at: float | None = None, severity: str = "critical"
    ) -> OutgoingAlert:
        a = OutgoingAlert(
            labels={"alertname": name, "severity": severity, "station": self.station, "target": target},
            annotations={
                "summary": f"{name} on {target}",
                "runbook_url": f"https://anbo.example/runbooks/{name}",
            },
            # Whole milliseconds, so the times Alertmanager hands back compare exactly.
            starts_at=round(time.time() if starts_at is None else starts_at, 3),
        )
        self.firing[(name, target)] = a
        return a

    def resolve(self, name: str, target: str = "fm-97.5") -> OutgoingAlert:
        a = replace(self.firing.pop((name, target)), ends_at=round(time.time(), 3))
        self._resolved.append(a)
        return a

    def tick(self) -> None:
        self.notifier.update(list(self.firing.values()), self._resolved)
        self._resolved = []

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(TICK)


@contextlib.asynccontextmanager
async def running(station: Station) -> AsyncIterator[Station]:
    tasks = [
        asyncio.create_task(station.run(), name="evaluation"),
        asyncio.create_task(station.notifier.run(), name="notifier"),
    ]
    try:
        yield station
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def notifier(*targets: AlertmanagerTarget) -> AlertmanagerNotifier:
    return AlertmanagerNotifier(
        targets, resend_interval=RESEND, evaluation_interval=TICK, backoff_initial=0.05
    )


def same_time(alertmanager_time: str, ts: float) -> bool:
    return datetime.fromisoformat(alertmanager_time) == datetime.fromisoformat(rfc3339(ts))


@contextlib.contextmanager
def started(*ams: Alertmanager) -> Any:
    try:
        for am in ams:
            am.start()
        yield ams
    finally:
        for am in ams:
            am.stop()


def test_alert_fires_and_resolves_end_to_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            with started(am):
                station = Station(notifier(AlertmanagerTarget(am.url)))
                async with running(station):
                    fired = station.fire("DeadAir")
                    await hook.wait_seen("DeadAir", "firing", [am])
                    resolved = station.resolve("DeadAir")
                    await hook.wait_seen("DeadAir", "resolved", [am])
                    await asyncio.sleep(4 * RESEND)  # resends of the resolution go on meanwhile
                firing = hook.seen("DeadAir", "firing")
                done = hook.seen("DeadAir", "resolved")
                assert len(firing) == 1 and len(done) == 1, "one notification each way, whatever the resends"
                assert firing[0].labels == dict(fired.labels)
                assert same_time(firing[0].starts_at, fired.starts_at)
                assert same_time(done[0].starts_at, fired.starts_at)
                assert resolved.ends_at is not None and same_time(done[0].ends_at, resolved.ends_at)
                stats = station.notifier.stats[am.url]
                assert stats.sent >= 3 and sum(stats.failed.values()) == 0

    asyncio.run(main())


def test_alertmanager_down_for_several_resends_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            with started(am):
                station = Station(notifier(AlertmanagerTarget(am.url, timeout=1)))
                stats = station.notifier.stats[am.url]
                async with running(station):
                    dead_air = station.fire("DeadAir")
                    await hook.wait_seen("DeadAir", "firing", [am])

                    am.stop()
                    pilot = station.fire("PilotLoss", target="fm-101.1")  # fires while it is down
                    station.resolve("DeadAir")  # resolves while it is down
                    failures = stats.failed_posts["connection"]
                    await asyncio.sleep(4 * RESEND)
                    assert stats.failed_posts["connection"] > failures

                    am.start()  # same port, same storage (its notification log survives)
                    await hook.wait_seen("PilotLoss", "firing", [am])  # fired while it was down
                    await hook.wait_seen("DeadAir", "resolved", [am])  # resolved while it was down
                    station.resolve("PilotLoss", target="fm-101.1")
                    await hook.wait_seen("PilotLoss", "resolved", [am])
                assert len(hook.seen("DeadAir", "firing")) == 1
                assert same_time(hook.seen("PilotLoss", "firing")[0].starts_at, pilot.starts_at)
                assert same_time(hook.seen("DeadAir", "resolved")[0].starts_at, dead_air.starts_at)
                assert stats.dropped == 0

    asyncio.run(main())


def test_ha_pair_one_killed_delivery_goes_on_to_the_other(tmp_path: Path) -> None:
    async def main() -> None:
        async with WebhookReceiver() as hook:
            p1, p2 = free_port(), free_port()
            am1 = Alertmanager(
                tmp_path / "am1", webhook_url=hook.url, cluster_port=p1, peers=[f"127.0.0.1:{p2}"]
            )
            am2 = Alertmanager(
                tmp_path / "am2", webhook_url=hook.url, cluster_port=p2, peers=[f"127.0.0.1:{p1}"]
            )
            with started(am1, am2):
                deadline = time.monotonic() + 15
                while not (
                    await asyncio.to_thread(am1.cluster_size)
                    == await asyncio.to_thread(am2.cluster_size)
                    == 2
                ):  # a real pair, gossiping
                    assert time.monotonic() < deadline, am1.log_tail() + am2.log_tail()
                    await asyncio.sleep(0.05)
                station = Station(
                    notifier(AlertmanagerTarget(am1.url, timeout=1), AlertmanagerTarget(am2.url, timeout=1))
                )
                s1, s2 = station.notifier.stats[am1.url], station.notifier.stats[am2.url]
                async with running(station):
                    station.fire("CarrierLoss")
                    await hook.wait_seen("CarrierLoss", "firing", [am1, am2])
                    assert s1.sent >= 1 and s2.sent >= 1  # both members get every alert

                    am1.stop(kill=True)
                    sent_before = s2.sent
                    mer = station.fire("MerLow", target="dtv-ds21", severity="warning")
                    await hook.wait_seen("MerLow", "firing", [am2])
                    station.resolve("MerLow", target="dtv-ds21")
                    await hook.wait_seen("MerLow", "resolved", [am2])
                    assert s2.sent > sent_before
                    assert sum(s1.failed_posts[r] for r in ("connection", "timeout")) > 0
                    assert s2.consecutive_failures == 0
                assert same_time(hook.seen("MerLow", "firing")[0].starts_at, mer.starts_at)

    asyncio.run(main())


def test_restarted_notifier_keeps_starts_at_and_does_not_renotify(tmp_path: Path) -> None:
    """anbo restarts while an alert fires: the restored alert (same startsAt) is no new incident."""

    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
            with started(am):
                first = Station(notifier(AlertmanagerTarget(am.url)))
                async with running(first):
                    fired = first.fire("Hiss")
                    await hook.wait_seen("Hiss", "firing", [am])
                # The process is gone; a new one restores the alert from its state file.
                second = Station(notifier(AlertmanagerTarget(am.url)))
                second.firing = dict(first.firing)
                async with running(second):
                    await hook.wait_for(lambda: second.notifier.stats[am.url].sent >= 2, 15, "resends", [am])
                    await asyncio.sleep(2.5)  # more than two group intervals
                    assert len(hook.seen("Hiss", "firing")) == 1
                    held = [
                        a for a in await asyncio.to_thread(am.alerts) if a["labels"]["alertname"] == "Hiss"
                    ]
                    assert len(held) == 1
                    assert same_time(held[0]["startsAt"], fired.starts_at)
                    second.resolve("Hiss")
                    await hook.wait_seen("Hiss", "resolved", [am])
                assert len(hook.seen("Hiss", "firing")) == 1

    asyncio.run(main())


BCRYPT_PASSWORD = "anbo-test-password"
# bcrypt (cost 4, to be quick) of BCRYPT_PASSWORD, for Alertmanager's web config.
BCRYPT_HASH = "$2b$04$fxy4QfbIQQm6GXWseqAM7eeLACuuTZSoKTZAnKkOHQQ8Jldm227iy"


def test_tls_client_certificate_and_basic_auth(tmp_path: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-days", "1", "-subj", "/CN=anbo-test-ca", "-keyout", "ca.key", "-out", "ca.pem"
    )
    (tmp_path / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (tmp_path / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl("req", *ec, "-subj", f"/CN={who}", "-keyout", f"{who}.key", "-out", f"{who}.csr")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            f"{who}.ext",
            "-out",
            f"{who}.pem",
        )
    web_config = (
        "tls_server_config:\n"
        f"  cert_file: {tmp_path / 'server.pem'}\n"
        f"  key_file: {tmp_path / 'server.key'}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {tmp_path / 'ca.pem'}\n"
        "basic_auth_users:\n"
        f"  anbo: '{BCRYPT_HASH}'\n"
    )

    async def main() -> None:
        async with WebhookReceiver() as hook:
            am = Alertmanager(tmp_path / "am", webhook_url=hook.url, web_config_text=web_config)
            with started(am):

                def target(password: str) -> AlertmanagerTarget:
                    return AlertmanagerTarget(
                        am.url,
                        tls_ca_file=tmp_path / "ca.pem",
                        tls_cert_file=tmp_path / "client.pem",
                        tls_key_file=tmp_path / "client.key",
                        basic_auth_user="anbo",
                        basic_auth_password=password,
                    )

                good = target(BCRYPT_PASSWORD)
                station = Station(notifier(good))
                async with running(station):
                    station.fire("RdsPiMismatch")
                    await hook.wait_seen("RdsPiMismatch", "firing", [am])

                wrong = notifier(target("wrong"))
                wrong.update([station.fire("Wrong")], [])
                await wrong.flush(5)
                assert wrong.stats[am.url].failed_posts["http_4xx"] == 1 and wrong.pending() == 0
                assert not hook.seen("Wrong", "firing")

    asyncio.run(main())


def test_example_config_inhibits_consequences(tmp_path: Path) -> None:
    """The shipped example's inhibit rules, in a real Alertmanager: direct push and the Prometheus mirror."""
    config = (REPO / "config/alertmanager/alertmanager.example.yml").read_text()

    async def main() -> None:
        am = Alertmanager(tmp_path / "am", config_text=config)
        with started(am):
            n = notifier(AlertmanagerTarget(am.url))
            now = round(time.time(), 3)

            def mk(name: str, target: str, severity: str, mirror: bool = False) -> OutgoingAlert:
                labels = {"alertname": name, "severity": severity, "station": "s1", "target": target}
                if mirror:
                    labels |= {"alertname": "AnboAlertFiring", "anbo_alertname": name}
                return OutgoingAlert(labels, {"summary": f"{name} on {target}"}, now)

            # (alert name, target, severity, mirrored?) -> expected state in Alertmanager
            expected = {
                ("CarrierLoss", "fm-97.5", "critical", False): "active",
                ("DeadAir", "fm-97.5", "warning", False): "suppressed",
                ("Hiss", "fm-97.5", "warning", False): "suppressed",
                ("PilotLoss", "fm-97.5", "warning", False): "suppressed",
                ("RdsPiMismatch", "fm-97.5", "warning", False): "suppressed",
                ("DeadAir", "fm-101.1", "warning", False): "active",  # another service
                ("VswrHigh", "fm-97.5", "warning", False): "active",  # not a consequence of carrier loss
                ("DtvLockLoss", "dtv-ds21", "critical", False): "active",
                ("MerLow", "dtv-ds21", "warning", False): "suppressed",
                ("MerLow", "dtv-ds22", "critical", False): "active",
                ("MerLow", "dtv-ds22", "warning", False): "suppressed",  # its critical variant fires
                ("CarrierLoss", "fm-97.5", "critical", True): "active",
                ("DeadAir", "fm-97.5", "warning", True): "suppressed",
                ("VswrHigh", "fm-97.5", "warning", True): "active",
            }
            n.update([mk(*key) for key in expected], [])
            await n.flush(10)
            assert n.stats[am.url].sent == len(expected)

            def states() -> dict[tuple[str, str, str, bool], str]:
                out = {}
                for a in am.alerts():
                    labels = a["labels"]
                    name = labels.get("anbo_alertname", labels["alertname"])
                    key = (name, labels["target"], labels["severity"], "anbo_alertname" in labels)
                    out[key] = a["status"]["state"]
                return out

            deadline = time.monotonic() + 15
            while (got := await asyncio.to_thread(states)) != expected:
                assert time.monotonic() < deadline, f"{got}\n{am.log_tail()}"
                await asyncio.sleep(0.1)

    asyncio.run(main())
