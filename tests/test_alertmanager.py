"""Unit tests of the Alertmanager notifier against an in-process stand-in for ``POST /api/v2/alerts``.

Resend timing runs on an injected monotonic clock (whether an alert is queued is decided
synchronously in ``update``); real time only passes while a POST or a short backoff is
awaited, and no test asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from structlog.testing import capture_logs

from monitor.alertmanager import (
    MAX_BATCH_BYTES,
    AlertmanagerNotifier,
    AlertmanagerTarget,
    FailureReason,
    OutgoingAlert,
    alert_payload,
    rfc3339,
)
from tests.servers import find_binary, free_port

BASE = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: list[dict[str, Any]]
    size: int


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class FakeAlertmanager:
    """Answers ``POST /api/v2/alerts`` on 127.0.0.1 and records every request.

    ``statuses`` are the answers to the first requests, in order (then 200); the first
    ``hang`` requests get no answer until the server stops.
    """

    statuses: list[int] = field(default_factory=list)
    hang: int = 0
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    requests: list[Recorded] = field(default_factory=list)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [a for r in self.requests for a in r.body]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), json.loads(raw), len(raw)))
        n = len(self.requests)
        if n <= self.hang:
            await self._release.wait()
        status = self.statuses[n - 1] if n <= len(self.statuses) else 200
        if status >= 400:
            return web.Response(status=status, text=f"refused by the test (status {status})")
        return web.Response(status=status)

    async def __aenter__(self) -> FakeAlertmanager:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        assert self._runner is not None
        await self._runner.cleanup()


def alert(
    name: str = "DeadAir",
    *,
    target: str = "fm-97.5",
    starts_at: float = BASE - 10,
    ends_at: float | None = None,
    **annotations: str,
) -> OutgoingAlert:
    return OutgoingAlert(
        labels={"alertname": name, "severity": "critical", "station": "s1", "target": target},
        annotations={"summary": f"{name} on {target}", **annotations},
        starts_at=starts_at,
        ends_at=ends_at,
    )


def notifier_for(*urls: str, clock: FakeClock | None = None, **kwargs: Any) -> AlertmanagerNotifier:
    clk = clock or FakeClock()
    kwargs.setdefault("backoff_initial", 0.01)
    kwargs.setdefault("wall", lambda: BASE + clk.t)
    return AlertmanagerNotifier([AlertmanagerTarget(u, timeout=5.0) for u in urls], clock=clk, **kwargs)


@contextlib.asynccontextmanager
async def running(notifier: AlertmanagerNotifier) -> AsyncIterator[None]:
    task = asyncio.create_task(notifier.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``cond`` (state changed by other tasks) until it holds; fail after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


# -- payload -------------------------------------------------------------------------------
def test_payload_is_exactly_what_api_v2_wants() -> None:
    async def main() -> None:
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url)
            a = OutgoingAlert(
                labels={
                    "alertname": "DeadAir",
                    "severity": "critical",
                    "station": "s1",
                    "target": "fm-97.5",
                    "county": "",
                },
                annotations={
                    "summary": "静音 on fm-97.5",
                    "runbook_url": "https://anbo.example/runbooks/DeadAir",
                },
                starts_at=BASE - 9.5,
                ends_at=None,
                generator_url="http://anbo-s1.example:9464/alerts",
            )
            async with running(n):
                n.update([a], [])
                await until(lambda: len(am.requests) == 1)
            req = am.requests[0]
            assert req.path == "/api/v2/alerts"
            assert req.headers["Content-Type"] == "application/json"
            assert req.headers["User-Agent"].startswith("anbo/")
            assert "Authorization" not in req.headers
            assert req.body == [
                {
                    "labels": {
                        "alertname": "DeadAir",
                        "severity": "critical",
                        "station": "s1",
                        "target": "fm-97.5",
                    },
                    "annotations": {
                        "summary": "静音 on fm-97.5",
                        "runbook_url": "https://anbo.example/runbooks/DeadAir",
                    },
                    "startsAt": "2023-11-14T22:13:10.500Z",
                    # 4 × max(resend 60 s, evaluation 1 s) after the (injected) wall clock.
                    "endsAt": "2023-11-14T22:17:20.000Z",
                    "generatorURL": "http://anbo-s1.example:9464/alerts",
                }
            ]

    asyncio.run(main())


def test_ends_at_arithmetic() -> None:
    n = AlertmanagerNotifier([], resend_interval=10, evaluation_interval=30)
    assert n.valid_for == 120
    n = AlertmanagerNotifier([], resend_interval=60, evaluation_interval=15)
    assert n.valid_for == 240
    firing = alert(starts_at=BASE)
    assert alert_payload(firing, now=BASE + 5, valid_for=240)["endsAt"] == rfc3339(BASE + 245)
    resolved = alert(starts_at=BASE, ends_at=BASE + 7.25)
    assert alert_payload(resolved, now=BASE + 100, valid_for=240)["endsAt"] == "2023-11-14T22:13:27.250Z"
    # Never before startsAt (Alertmanager would refuse the whole batch).
    early = alert(starts_at=BASE, ends_at=BASE - 3)
    assert alert_payload(early, now=BASE, valid_for=240)["endsAt"] == rfc3339(BASE)
    # A generator URL that is not absolute http(s) is left out rather than refused by Alertmanager.
    odd = OutgoingAlert({"alertname": "X"}, {}, BASE, None, generator_url="/relative")
    assert "generatorURL" not in alert_payload(odd, now=BASE, valid_for=1)
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


# -- resend schedule -----------------------------------------------------------------------
def test_firing_alert_is_resent_every_interval_with_a_stable_starts_at() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, clock=clock, resend_interval=60, evaluation_interval=1)
            a = alert(starts_at=BASE - 10)
            async with running(n):
                n.update([a], [])
                assert n.pending() == 1  # queued at once
                await until(lambda: len(am.requests) == 1)
                for t in (1, 30, 59.9):
                    clock.t = t
                    n.update([a], [])
                    assert n.pending() == 0, f"resent early at t={t}"
                clock.t = 60
                n.update([a], [])
                assert n.pending() == 1
                await until(lambda: len(am.requests) == 2)
                clock.t = 90
                n.update([a], [])
                assert n.pending() == 0
                clock.t = 121
                n.update([a], [])
                await until(lambda: len(am.requests) == 3)
            starts = [r.body[0]["startsAt"] for r in am.requests]
            ends = [r.body[0]["endsAt"] for r in am.requests]
            assert starts == [rfc3339(BASE - 10)] * 3
            assert ends == [rfc3339(BASE + 240), rfc3339(BASE + 60 + 240), rfc3339(BASE + 121 + 240)]
            assert n.stats[am.url].sent == 3

    asyncio.run(main())


def test_resolved_alert_is_sent_at_once_then_resent_for_the_retention() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, clock=clock, resend_interval=60, resolved_retention=900)
            a = alert(starts_at=BASE)
            async with running(n):
                n.update([a], [])
                await until(lambda: len(am.requests) == 1)
                clock.t = 10
                n.update([], [alert(starts_at=BASE, ends_at=BASE + 9)])
                assert n.pending() == 1  # at once, not at the next resend
                await until(lambda: len(am.requests) == 2)
                assert am.requests[1].body[0]["endsAt"] == rfc3339(BASE + 9)
                resends = 0
                for t in range(11, 1000):
                    clock.t = t
                    n.update([], [])
                    if n.pending():
                        resends += 1
                        assert (t - 10) % 60 == 0 and t - 10 < 900
                        await until(lambda: n.pending() == 0)
                assert resends == 14  # at +60 s … +840 s
                assert all(a["endsAt"] == rfc3339(BASE + 9) for a in am.alerts[1:])
                assert all(a["startsAt"] == rfc3339(BASE) for a in am.alerts)
            assert len(am.requests) == 2 + 14
            samples = collect_samples(n)
            assert samples[("anbo_alertmanager_alerts", (("state", "resolved"),))] == 0  # forgotten

    asyncio.run(main())


def test_alert_gone_from_the_firing_set_is_resolved_at_once() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, clock=clock)
            async with running(n):
                n.update([alert("DeadAir"), alert("Hiss")], [])
                await until(lambda: len(am.alerts) == 2)
                clock.t = 5
                n.update([alert("Hiss")], [])  # DeadAir vanished without a resolution
                await until(lambda: len(am.alerts) == 3)
            last = am.alerts[-1]
            assert last["labels"]["alertname"] == "DeadAir"
            assert last["endsAt"] == rfc3339(BASE + 5)

    asyncio.run(main())


def test_refiring_sends_the_new_incident_at_once() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, clock=clock)
            async with running(n):
                n.update([alert(starts_at=BASE)], [])
                await until(lambda: len(am.alerts) == 1)
                clock.t = 2
                n.update([], [alert(starts_at=BASE, ends_at=BASE + 2)])
                await until(lambda: len(am.alerts) == 2)
                clock.t = 3
                n.update([], [alert(starts_at=BASE, ends_at=BASE + 2)])  # told again: nothing new
                assert n.pending() == 0
                clock.t = 4
                n.update([alert(starts_at=BASE + 4)], [])  # a new incident, same labels, within 60 s
                assert n.pending() == 1
                await until(lambda: len(am.alerts) == 3)
            assert am.alerts[1]["endsAt"] == rfc3339(BASE + 2)
            assert am.alerts[2]["startsAt"] == rfc3339(BASE + 4)
            assert am.alerts[2]["endsAt"] == rfc3339(BASE + 4 + 240)

    asyncio.run(main())


# -- failures ------------------------------------------------------------------------------
def test_4xx_is_counted_logged_and_not_retried() -> None:
    async def main() -> None:
        async with FakeAlertmanager(statuses=[400]) as am:
            n = notifier_for(am.url)
            with capture_logs() as logs:
                async with running(n):
                    n.update([alert()], [])
                    await until(lambda: n.stats[am.url].failed_posts[FailureReason.HTTP_4XX] == 1)
                    assert n.pending() == 0
                    await asyncio.sleep(0.1)  # a retry would have happened by now (backoff 10 ms)
            assert len(am.requests) == 1
            s = n.stats[am.url]
            assert s.failed["http_4xx"] == 1 and s.sent == 0 and s.last_success is None
            rejected = [e for e in logs if e["event"] == "alertmanager_rejected"]
            assert rejected and rejected[0]["status"] == 400
            assert "refused by the test" in rejected[0]["body"]
            assert rejected[0]["rate_key"] == f"{am.url}:400"
            assert rejected[0]["log_level"] == "warning"

    asyncio.run(main())


def test_5xx_is_retried_with_backoff_until_accepted() -> None:
    async def main() -> None:
        async with FakeAlertmanager(statuses=[500, 503, 502]) as am:
            n = notifier_for(am.url)
            with capture_logs() as logs:
                async with running(n):
                    n.update([alert()], [])
                    await until(lambda: n.stats[am.url].sent == 1)
            assert len(am.requests) == 4
            assert all(r.body == am.requests[0].body for r in am.requests)
            s = n.stats[am.url]
            assert s.failed[FailureReason.HTTP_5XX] == 3 and s.failed_posts["http_5xx"] == 3
            assert s.consecutive_failures == 0 and s.last_success == BASE and s.queue_depth == 0
            failed = [e for e in logs if e["event"] == "alertmanager_send_failed"]
            assert [e["failures"] for e in failed] == [1, 2, 3]
            assert all(e["rate_key"] == f"{am.url}:http_5xx" and e["retry_in_s"] <= 60 for e in failed)
            assert any(e["event"] == "alertmanager_recovered" for e in logs)

    asyncio.run(main())


def test_timeout_is_retried() -> None:
    async def main() -> None:
        async with FakeAlertmanager(hang=1) as am:
            n = AlertmanagerNotifier([AlertmanagerTarget(am.url, timeout=0.2)], backoff_initial=0.01)
            async with running(n):
                n.update([alert()], [])
                await until(lambda: n.stats[am.url].sent == 1)
            assert n.stats[am.url].failed["timeout"] == 1
            assert len(am.requests) == 2

    asyncio.run(main())


def test_alertmanager_down_then_back_gets_what_was_queued() -> None:
    async def main() -> None:
        clock = FakeClock()
        port = free_port()
        n = notifier_for(f"http://127.0.0.1:{port}", clock=clock, resend_interval=60)
        url = f"http://127.0.0.1:{port}"
        async with running(n):
            n.update([alert("DeadAir")], [])
            await until(lambda: n.stats[url].failed_posts["connection"] >= 2)
            # Resends while down coalesce: one queue entry per alert, nothing dropped.
            for t in (60, 120, 180):
                clock.t = t
                n.update([alert("DeadAir"), alert("Hiss")], [])
                assert n.stats[url].queue_depth == 2
            clock.t = 200
            n.update([alert("Hiss")], [alert("DeadAir", ends_at=BASE + 200)])
            async with FakeAlertmanager(port=port) as am:
                await until(lambda: n.pending() == 0)
        s = n.stats[url]
        assert s.dropped == 0 and s.sent == 2
        by_name = {a["labels"]["alertname"]: a for a in am.alerts}
        assert by_name["DeadAir"]["endsAt"] == rfc3339(BASE + 200)  # the resolution arrived
        assert by_name["Hiss"]["startsAt"] == rfc3339(BASE - 10)

    asyncio.run(main())


def test_queue_is_bounded_oldest_dropped_and_counted() -> None:
    async def main() -> None:
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, queue_size=3)
            with capture_logs() as logs:
                n.update([alert(f"A{i}") for i in range(5)], [])  # nothing is running yet
            s = n.stats[am.url]
            assert s.dropped == 2 and s.queue_depth == 3
            full = [e for e in logs if e["event"] == "alertmanager_queue_full"]
            assert len(full) == 2 and full[0]["rate_key"] == am.url
            assert full[0]["dropped_labels"]["alertname"] == "A0"
            await n.flush(10)  # delivers with its own short-lived session
            assert sorted(a["labels"]["alertname"] for a in am.alerts) == ["A2", "A3", "A4"]
            assert n.pending() == 0

    asyncio.run(main())


def test_one_alertmanager_down_never_delays_the_other() -> None:
    async def main() -> None:
        async with FakeAlertmanager(hang=10**6) as stuck, FakeAlertmanager() as ok:
            n = AlertmanagerNotifier(
                [AlertmanagerTarget(stuck.url, timeout=60), AlertmanagerTarget(ok.url, timeout=60)]
            )
            async with running(n):
                n.update([alert("DeadAir")], [])
                await until(lambda: len(ok.requests) == 1 and len(stuck.requests) == 1)
                n.update([alert("DeadAir"), alert("Hiss")], [])
                await until(lambda: len(ok.alerts) == 2)
                assert len(stuck.requests) == 1  # still waiting for its first answer
                assert n.stats[ok.url].sent == 2 and n.stats[stuck.url].sent == 0
                assert n.stats[stuck.url].queue_depth == 2

    asyncio.run(main())


def test_invalid_alerts_are_refused_before_they_poison_a_batch() -> None:
    async def main() -> None:
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url)
            bad = [
                OutgoingAlert({"alert-name": "X"}, {}, BASE),
                OutgoingAlert({}, {}, BASE),
                OutgoingAlert({"alertname": ""}, {}, BASE),  # empty value = no label
                OutgoingAlert({"alertname": 5}, {}, BASE),  # type: ignore[dict-item]
                OutgoingAlert({"alertname": "X"}, {"bad name": "y"}, BASE),
                OutgoingAlert({"alertname": "X"}, {}, math.nan),
                OutgoingAlert({"alertname": "X"}, {}, BASE, ends_at=math.inf),
            ]
            with capture_logs() as logs:
                n.update([*bad, alert()], [])
            assert n.invalid == len(bad)
            assert sum(e["event"] == "alertmanager_invalid_alert" for e in logs) == len(bad)
            await n.flush(10)
            assert [a["labels"]["alertname"] for a in am.alerts] == ["DeadAir"]
            assert am.requests[0].size > 0

    asyncio.run(main())


def test_a_bad_update_of_a_known_alert_neither_resolves_nor_poisons_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        clock = FakeClock()
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url, clock=clock)
            n.update([alert(starts_at=BASE)], [])
            await n.flush(10)
            clock.t = 30
            n.update([alert(starts_at=math.nan)], [])  # refused; the known alert stays firing
            assert n.invalid == 1 and n.pending() == 0
            clock.t = 31
            n.update([alert(starts_at=BASE)], [])
            assert n.pending() == 0  # still the same incident: not re-sent before its time
            assert [a["startsAt"] for a in am.alerts] == [rfc3339(BASE)]

            # Last guard: an entry that cannot be serialized is dropped and counted, not retried forever.
            import monitor.alertmanager as module

            real = module.alert_payload

            def payload(a: OutgoingAlert, *, now: float, valid_for: float) -> dict[str, object]:
                if a.labels["alertname"] == "Poison":
                    raise ValueError("cannot serialize")
                return real(a, now=now, valid_for=valid_for)

            monkeypatch.setattr(module, "alert_payload", payload)
            clock.t = 32
            with capture_logs() as logs:
                n.update([alert(starts_at=BASE), alert("Poison"), alert("Hiss")], [])
                await n.flush(10)
            assert n.invalid == 2 and n.pending() == 0
            assert [a["labels"]["alertname"] for a in am.alerts] == ["DeadAir", "Hiss"]
            assert any(e["event"] == "alertmanager_unusable_alert" for e in logs)

    asyncio.run(main())


def test_large_sets_are_batched_under_the_size_limit() -> None:
    async def main() -> None:
        async with FakeAlertmanager() as am:
            n = notifier_for(am.url)
            alerts = [alert("DeadAir", target=f"t{i:04d}", description="x" * 600) for i in range(400)]
            async with running(n):
                n.update(alerts, [])
                await until(lambda: n.stats[am.url].sent == 400)
            assert len(am.requests) > 1
            assert all(r.size <= MAX_BATCH_BYTES for r in am.requests)
            assert sorted(a["labels"]["target"] for a in am.alerts) == [f"t{i:04d}" for i in range(400)]

    asyncio.run(main())


# -- flush ---------------------------------------------------------------------------------
def test_flush_while_running_cuts_the_backoff_short() -> None:
    async def main() -> None:
        async with FakeAlertmanager(statuses=[503]) as am:
            # A backoff of a minute: without flush, the retry would come far too late for the test.
            n = AlertmanagerNotifier([AlertmanagerTarget(am.url)], backoff_initial=60)
            async with running(n):
                n.update([alert()], [])
                await until(lambda: n.stats[am.url].failed_posts["http_5xx"] == 1)
                await n.flush(10)
                assert n.pending() == 0 and n.stats[am.url].sent == 1

    asyncio.run(main())


def test_flush_gives_up_at_its_time_limit() -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}"
        n = notifier_for(url)
        n.update([alert()], [])
        with capture_logs() as logs:
            await n.flush(0.3)
        assert n.pending() == 1
        assert n.stats[url].failed_posts["connection"] >= 1
        incomplete = [e for e in logs if e["event"] == "alertmanager_flush_incomplete"]
        assert incomplete and incomplete[0]["pending"] == {url: 1}
        await n.flush(0.1)  # again: still nothing raised, nothing left running

    asyncio.run(main())


def test_no_alertmanagers_is_a_quiet_no_op() -> None:
    async def main() -> None:
        n = AlertmanagerNotifier([])
        n.update([alert()], [])
        await n.flush(1)
        task = asyncio.create_task(n.run())
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert n.pending() == 0

    asyncio.run(main())


# -- auth and TLS --------------------------------------------------------------------------
def test_basic_and_bearer_auth_headers() -> None:
    async def main() -> None:
        async with FakeAlertmanager() as am:
            basic = AlertmanagerNotifier(
                [AlertmanagerTarget(am.url, basic_auth_user="anbo", basic_auth_password="s3cret:é")]
            )
            bearer = AlertmanagerNotifier([AlertmanagerTarget(am.url, bearer_token="tok-123")])
            for n in (basic, bearer):
                n.update([alert()], [])
                await n.flush(10)
            assert am.requests[0].headers["Authorization"] == (
                "Basic " + base64.b64encode("anbo:s3cret:é".encode()).decode()
            )
            assert am.requests[1].headers["Authorization"] == "Bearer tok-123"

    asyncio.run(main())


def test_target_settings_are_checked() -> None:
    t = AlertmanagerTarget("http://am1.example:9093/prefix/", basic_auth_user="u", basic_auth_password="pw")
    assert t.name == "http://am1.example:9093/prefix"
    assert t.api_url == "http://am1.example:9093/prefix/api/v2/alerts"
    assert "pw" not in repr(t)
    assert "tok" not in repr(AlertmanagerTarget("http://am", bearer_token="tok"))
    assert AlertmanagerTarget("http://[::1]:9093").name == "http://[::1]:9093"
    for bad in [
        {"url": "am1:9093"},
        {"url": "ftp://am1"},
        {"url": "http://user:pw@am1:9093"},
        {"url": "http://am1:9093/?x=1"},
        {"url": "http://am1", "tls_ca_file": Path("ca.pem")},
        {"url": "https://am1", "tls_cert_file": Path("c.pem")},
        {"url": "http://am1", "basic_auth_user": "u", "bearer_token": "t"},
        {"url": "http://am1", "basic_auth_password": "p"},
        {"url": "http://am1", "basic_auth_user": "a:b"},
        {"url": "http://am1", "timeout": 0},
    ]:
        with pytest.raises(ValueError, match="Alertmanager"):
            AlertmanagerTarget(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        AlertmanagerNotifier([AlertmanagerTarget("http://am1:9093"), AlertmanagerTarget("http://am1:9093/")])
    with pytest.raises(ValueError, match="queue_size"):
        AlertmanagerNotifier([], queue_size=0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-days", "1", "-subj", "/CN=anbo-test-ca", "-keyout", "ca.key", "-out", "ca.pem"
    )
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
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
    return d


def test_tls_with_private_ca_and_client_certificate(pki: Path) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    async def main() -> None:
        async with FakeAlertmanager(ssl_context=server_ctx) as am:
            good = AlertmanagerTarget(
                am.url,
                tls_ca_file=pki / "ca.pem",
                tls_cert_file=pki / "client.pem",
                tls_key_file=pki / "client.key",
                bearer_token="t",
            )
            n = AlertmanagerNotifier([good])
            n.update([alert()], [])
            await n.flush(10)
            assert n.stats[am.url].sent == 1 and len(am.requests) == 1

            # Without the private CA the server's certificate is not trusted.
            untrusted = AlertmanagerNotifier([AlertmanagerTarget(am.url)], backoff_initial=0.01)
            untrusted.update([alert()], [])
            await untrusted.flush(0.3)
            assert untrusted.stats[am.url].failed["tls"] >= 1 and untrusted.pending() == 1

            # An unreadable CA file is a TLS failure of that Alertmanager, logged, not a crash.
            missing = AlertmanagerNotifier(
                [AlertmanagerTarget(am.url, tls_ca_file=pki / "nope.pem")], backoff_initial=0.01
            )
            missing.update([alert()], [])
            with capture_logs() as logs:
                await missing.flush(0.3)
            assert missing.stats[am.url].failed_posts["tls"] >= 1
            assert any(e["event"] == "alertmanager_tls_setup_failed" for e in logs)
            assert len(am.requests) == 1

    asyncio.run(main())


# -- metrics -------------------------------------------------------------------------------
class _Wrap(Collector):
    def __init__(self, n: AlertmanagerNotifier) -> None:
        self.n = n

    def collect(self) -> Iterator[Metric]:
        return self.n.collect()


def collect_samples(n: AlertmanagerNotifier) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in n.collect() for s in m.samples}


def test_metrics_names_labels_and_promtool_lint() -> None:
    async def main() -> AlertmanagerNotifier:
        async with FakeAlertmanager(statuses=[500]) as am:
            down = f"http://127.0.0.1:{free_port()}"
            n = notifier_for(am.url, down, queue_size=2)
            n.update([alert("A"), alert("B"), alert("C"), OutgoingAlert({"bad-name": "x"}, {}, BASE)], [])
            await n.flush(0.5)
            return n

    n = asyncio.run(main())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Wrap(n))
    am, down = (t.name for t in n.targets)
    get = registry.get_sample_value
    assert get("anbo_alertmanager_notifications_sent_total", {"alertmanager": am}) == 2
    assert (
        get("anbo_alertmanager_notifications_failed_total", {"alertmanager": am, "reason": "http_5xx"}) == 2
    )
    assert get("anbo_alertmanager_requests_failed_total", {"alertmanager": am, "reason": "http_5xx"}) == 1
    assert (
        get("anbo_alertmanager_requests_failed_total", {"alertmanager": down, "reason": "connection"}) or 0
    ) >= 1
    assert get("anbo_alertmanager_notifications_failed_total", {"alertmanager": down, "reason": "tls"}) == 0
    assert get("anbo_alertmanager_notifications_dropped_total", {"alertmanager": am}) == 1
    assert get("anbo_alertmanager_queue_length", {"alertmanager": am}) == 0
    assert get("anbo_alertmanager_queue_length", {"alertmanager": down}) == 2
    assert get("anbo_alertmanager_queue_capacity") == 2
    assert get("anbo_alertmanager_last_success_timestamp_seconds", {"alertmanager": am}) == BASE
    assert get("anbo_alertmanager_last_success_timestamp_seconds", {"alertmanager": down}) == 0
    assert get("anbo_alertmanager_alerts_invalid_total") == 1
    assert get("anbo_alertmanager_alerts", {"state": "firing"}) == 3
    exposition = generate_latest(registry)
    lint = subprocess.run(
        [find_binary("promtool"), "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert lint.returncode == 0 and lint.stdout == b"", lint.stdout + lint.stderr
