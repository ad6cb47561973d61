"""Emergency-broadcast endpoints through the pipeline: heartbeats, faults, dispatch coverage."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.daemon import Daemon
from monitor.ebfleet import EbMonitor
from monitor.inventory import load_inventory
from monitor.pipeline import Pipeline
from monitor.settings import EbSettings, load_settings
from monitor.stats import DropReason, Result, Stats
from monitor.wire import encode_readings
from tests.servers import Mosquitto

INVENTORY = """id,name,county,township,lat,lon
eb-001,东村大喇叭,青山县,东镇,40.81,111.65
eb-002,西村大喇叭,青山县,东镇,,
eb-003,南村,青山县,东镇,,
eb-004,北村,青山县,西镇,,
eb-005,河村,青山县,西镇,,
eb-006,山村,青山县,西镇,,
"""
NOW = 1_790_000_000.0


@pytest.fixture
def eb(tmp_path: Path) -> EbMonitor:
    path = tmp_path / "endpoints.csv"
    path.write_text(INVENTORY, encoding="utf-8")
    settings = EbSettings(inventory=[path], offline_after=180, dispatch_deadlines=[60, 120])
    return EbMonitor(settings, load_inventory([path]), "teststation")


@pytest.fixture
def pipe(write_config, eb: EbMonitor) -> Pipeline:  # type: ignore[no-untyped-def]
    p = Pipeline(load_settings(write_config()).settings, Stats(), wall=lambda: NOW)
    p.endpoints = eb
    return p


def send(p: Pipeline, topic: str, payload: bytes) -> None:
    p.handle(topic, payload, None, None, 0.0)


def test_heartbeats_faults_and_region_views(pipe: Pipeline, eb: EbMonitor) -> None:
    for i, ep in enumerate(["eb-001", "eb-002", "eb-004", "eb-005", "eb-006"]):
        send(
            pipe,
            f"anbo/eb/{ep}/status",
            encode_readings(
                NOW - 10, i, {"online": 1, "fault_amplifier": ep == "eb-005", "fault_speaker_line": 0}
            ),
        )
    send(pipe, "anbo/eb/eb-999/status", encode_readings(NOW, 1, {"online": 1}))
    send(pipe, "anbo/eb/eb-001/video", encode_readings(NOW, 1, {"online": 1}))
    assert pipe.stats.count(Result.ACCEPTED, "ok") == 5
    assert pipe.stats.count(Result.DROPPED, DropReason.UNKNOWN_ENDPOINT.value) == 1
    assert pipe.stats.count(Result.DROPPED, DropReason.UNKNOWN_STREAM.value) == 1
    eb.started = NOW - 1000  # anbo has been up longer than offline_after
    views = {v.name: v for v in eb.evaluate(NOW, now=0.0)}
    east, west = views["eb:青山县/东镇"], views["eb:青山县/西镇"]
    assert east.measurements["eb_online_ratio"] == pytest.approx(2 / 3)
    assert east.measurements["eb_offline_ids"] == "eb-003"
    assert west.measurements["eb_online_ratio"] == 1.0
    assert west.measurements["eb_faults"] == 1.0 and west.measurements["eb_fault_ids"] == "eb-005"
    status = eb.status_json()
    assert [r["region"] for r in status["regions"]] == ["青山县/东镇", "青山县/西镇"]
    assert status["regions"][0]["offline"] == [{"id": "eb-003", "name": "南村"}]
    # Later, without heartbeats, everyone goes offline.
    later = {v.name: v for v in eb.evaluate(NOW + 600, now=600.0)}
    assert later["eb:青山县/西镇"].measurements["eb_online_ratio"] == 0.0


def test_the_console_gets_counts_and_the_first_faulty_endpoints(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "endpoints.csv"
    path.write_text(INVENTORY, encoding="utf-8")
    eb = EbMonitor(EbSettings(inventory=[path], max_ids=1), load_inventory([path]), "teststation")
    p = Pipeline(load_settings(write_config()).settings, Stats(), wall=lambda: NOW)
    p.endpoints = eb
    for i, ep in enumerate(["eb-001", "eb-004", "eb-005", "eb-006"]):
        faulty = ep in ("eb-005", "eb-006")
        send(
            p, f"anbo/eb/{ep}/status", encode_readings(NOW - 10, i, {"online": 1, "fault_amplifier": faulty})
        )
    eb.started = NOW - 1000
    eb.evaluate(NOW, now=0.0)
    full = {r["region"]: r for r in eb.status_json()["regions"]}
    live = {r["region"]: r for r in eb.console_json()["regions"]}
    assert [e["id"] for e in full["青山县/东镇"]["offline"]] == ["eb-002", "eb-003"]
    assert live["青山县/东镇"]["offline"] == 2 and live["青山县/东镇"]["not_yet_reported"] == 0
    assert [e["id"] for e in full["青山县/西镇"]["faulty"]] == ["eb-005", "eb-006"]
    assert live["青山县/西镇"]["faulty"] == [{"id": "eb-005", "name": "河村"}]  # max_ids = 1
    assert live["青山县/西镇"]["faulty_count"] == 2
    for region, row in live.items():
        assert {k: row[k] for k in ("total", "online", "online_ratio")} == {
            k: full[region][k] for k in ("total", "online", "online_ratio")
        }


def test_online_ratio_unknown_until_every_endpoint_was_due(pipe: Pipeline, eb: EbMonitor) -> None:
    send(pipe, "anbo/eb/eb-001/status", encode_readings(NOW, 1, {"online": 1}))
    first = {v.name: v for v in eb.evaluate(NOW, now=0.0)}
    east = first["eb:青山县/东镇"].measurements
    assert east["eb_online_ratio"] is None  # just started: not yet known
    # The two not heard from are "not yet reported", neither online nor offline.
    assert (east["eb_online"], east["eb_unreported"], east["eb_offline"]) == (1.0, 2.0, 0.0)
    assert east["eb_offline_ids"] == ""
    later = {v.name: v for v in eb.evaluate(NOW + 181, now=181.0)}
    east = later["eb:青山县/东镇"].measurements
    assert east["eb_online_ratio"] == 0.0
    assert (east["eb_online"], east["eb_unreported"], east["eb_offline"]) == (0.0, 0.0, 3.0)


def test_dispatch_coverage(pipe: Pipeline, eb: EbMonitor) -> None:
    for i, ep in enumerate(["eb-001", "eb-002", "eb-003", "eb-004"]):
        send(pipe, f"anbo/eb/{ep}/status", encode_readings(NOW - 5, i, {"online": 1}))
    send(
        pipe,
        "anbo/eb/platform/dispatch",
        encode_readings(NOW, 1, {"deadline_s": 60}, info={"message_id": "M1", "regions": "青山县/东镇"}),
    )
    for ep, delay in (("eb-001", 10), ("eb-002", 90)):
        send(
            pipe,
            f"anbo/eb/{ep}/playback",
            encode_readings(NOW + delay, 1, {"playing": 1}, info={"message_id": "M1"}),
        )
    views = {v.name: v for v in eb.evaluate(NOW + 30, now=30.0)}
    m = views["dispatch:M1"].measurements
    assert m["dispatch_targeted"] == 3.0  # eb-004 is in the other township
    assert m["dispatch_past_deadline"] == 0.0
    views = {v.name: v for v in eb.evaluate(NOW + 200, now=200.0)}
    m = views["dispatch:M1"].measurements
    assert m["dispatch_past_deadline"] == 1.0
    assert m["dispatch_coverage"] == pytest.approx(2 / 3)  # eb-002 confirmed late for 60 s, in time for 120 s
    assert m["dispatch_missing_ids"] == "eb-003"


@pytest.mark.integration
def test_status_endpoint_through_a_real_broker(mosquitto: Mosquitto, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "endpoints.csv").write_text(INVENTORY, encoding="utf-8")
    config = write_config(url=mosquitto.url)
    config.write_text(
        config.read_text().replace("[station]", '[eb]\ninventory = ["endpoints.csv"]\n\n[station]', 1)
    )

    async def main() -> None:
        daemon = Daemon(load_settings(config), drain_timeout=3.0)
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            for i, ep in enumerate(["eb-001", "eb-004"]):
                await asyncio.to_thread(
                    mosquitto.publish, f"anbo/eb/{ep}/status", encode_readings(time.time(), i, {"online": 1})
                )
            await asyncio.sleep(2.5)

            def get() -> dict[str, object]:
                url = f"http://127.0.0.1:{daemon.metrics_port}/api/v1/eb/status"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return dict(json.loads(resp.read()))

            status = await asyncio.to_thread(get)
            regions = {r["region"]: r for r in status["regions"]}  # type: ignore[attr-defined]
            assert regions["青山县/东镇"]["online"] == 1
            # Just started: the two silent endpoints are not yet reported, not offline.
            assert regions["青山县/东镇"]["offline"] == []
            assert [e["id"] for e in regions["青山县/东镇"]["not_yet_reported"]] == ["eb-002", "eb-003"]
            metrics = await asyncio.to_thread(
                lambda: (
                    urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5)
                    .read()
                    .decode()
                )
            )
            assert 'anbo_eb_endpoints_unreported{region="青山县/东镇",station=' in metrics
            assert regions["青山县/西镇"]["online"] == 1
        finally:
            daemon.request_stop()
            await asyncio.wait_for(run, 15)

    asyncio.run(main())


def test_the_fleet_exposes_its_own_metrics(pipe: Pipeline, eb: EbMonitor) -> None:
    """EbMonitor.collect(): per region and per dispatch, never per endpoint."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    for i, ep in enumerate(["eb-001", "eb-002", "eb-004", "eb-005"]):
        send(
            pipe,
            f"anbo/eb/{ep}/status",
            encode_readings(NOW - 5, i, {"online": 1, "fault_amplifier": ep == "eb-005"}),
        )
    send(
        pipe,
        "anbo/eb/platform/dispatch",
        encode_readings(NOW, 1, {"deadline_s": 60}, info={"message_id": "M1", "regions": "青山县/东镇"}),
    )
    send(
        pipe,
        "anbo/eb/eb-001/playback",
        encode_readings(NOW + 10, 1, {"playing": 1}, info={"message_id": "M1"}),
    )
    eb.started = NOW - 1000
    eb.evaluate(NOW + 100, now=100.0)  # heartbeats 105 s old: online; the 60 s deadline passed

    class Fleet(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return eb.collect("teststation")

    registry = CollectorRegistry()
    registry.register(Fleet())
    east = {"station": "teststation", "region": "青山县/东镇"}
    west = {"station": "teststation", "region": "青山县/西镇"}
    assert registry.get_sample_value("anbo_eb_endpoints", east) == 3
    assert registry.get_sample_value("anbo_eb_endpoints_online", east) == 2
    assert registry.get_sample_value("anbo_eb_online_ratio", east) == pytest.approx(2 / 3)
    assert registry.get_sample_value("anbo_eb_endpoints_faulty", west) == 1
    assert registry.get_sample_value("anbo_eb_messages_total", {"kind": "heartbeat"}) == 4
    assert registry.get_sample_value("anbo_eb_messages_total", {"kind": "confirmation"}) == 1
    m1 = {"station": "teststation", "message_id": "M1"}
    assert registry.get_sample_value("anbo_eb_dispatch_targeted_endpoints", m1) == 2
    assert registry.get_sample_value("anbo_eb_dispatch_coverage_ratio", {**m1, "within_seconds": "60"}) == 0.5
    names = {s.name for metric in registry.collect() for s in metric.samples}
    assert not any("eb-00" in str(s.labels) for metric in registry.collect() for s in metric.samples)
    assert "anbo_eb_dispatch_latency_p50_seconds" in names
