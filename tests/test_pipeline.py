"""The pipeline without a broker: routing, cardinality safety, sequence handling, store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from monitor.collector import AnboCollector
from monitor.ingest import IngestQueue
from monitor.pipeline import MAX_KEYS_PER_STREAM, Pipeline
from monitor.settings import Settings, load_settings
from monitor.state import StreamState, TargetState
from monitor.stats import DropReason, Result, Stats
from monitor.wire import Payload, Reason, SampleBlock, encode_batch, encode_block_v5, encode_readings
from tests.conftest import STATION_TOML

NOW = 1_790_000_000.0


@pytest.fixture
def pipe(write_config) -> Pipeline:  # type: ignore[no-untyped-def]
    return Pipeline(load_settings(write_config()).settings, Stats(), wall=lambda: NOW)


def send(
    p: Pipeline,
    topic: str,
    payload: bytes,
    ctype: str | None = None,
    props: list[tuple[str, str]] | None = None,
) -> None:
    p.handle(topic, payload, ctype, props, 0.0)


def test_reading_updates_store(pipe: Pipeline) -> None:
    send(
        pipe,
        "anbo/teststation/fm-97.5/rf",
        encode_readings(NOW, 7, {"rf_level_dbuv": 61.5, "pilot_present": True}, info={"rds_pi": "C201"}),
    )
    stream = pipe.targets["fm-97.5"].streams["rf"]
    assert stream.values == {"rf_level_dbuv": 61.5, "pilot_present": 1.0}
    assert stream.info == {"rds_pi": "C201"}
    assert stream.last_ts == NOW and stream.accepted == 1
    assert pipe.stats.count(Result.ACCEPTED, "ok") == 1


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("anbo/otherstation/fm-97.5/rf", DropReason.UNKNOWN_STATION),
        ("anbo/teststation/fm-88.0/rf", DropReason.UNKNOWN_TARGET),
        ("anbo/teststation/fm-97.5/video", DropReason.UNKNOWN_STREAM),
        ("anbo/eb/village-0001/heartbeat", DropReason.UNKNOWN_ENDPOINT),
    ],
)
def test_unknown_sources_are_counted_and_dropped(pipe: Pipeline, topic: str, reason: DropReason) -> None:
    send(pipe, topic, encode_readings(NOW, 1, {"x": 1.0}))
    assert pipe.stats.count(Result.DROPPED, reason.value) == 1
    assert pipe.stats.count(Result.ACCEPTED, "ok") == 0


def test_malformed_topic_and_payload_rejected_by_reason(pipe: Pipeline) -> None:
    send(pipe, "anbo/teststation/fm-97.5", b"{}")
    send(pipe, "anbo/teststation/fm-97.5/rf", b"{not json")
    send(pipe, "anbo/teststation/fm-97.5/rf", b'{"ts": 1e30, "seq": 1, "values": {}}')
    assert pipe.stats.count(Result.REJECTED, Reason.TOPIC_MALFORMED.value) == 1
    assert pipe.stats.count(Result.REJECTED, Reason.BAD_JSON.value) == 1
    assert pipe.stats.count(Result.REJECTED, Reason.ABSURD_TIMESTAMP.value) == 1


def test_sequence_gap_duplicate_late(pipe: Pipeline) -> None:
    topic = "anbo/teststation/tx-a/status"
    for seq in (1, 2, 5, 5, 3, 4, 6):
        send(pipe, topic, encode_readings(NOW + seq, seq, {"forward_power_w": 1000.0 + seq}))
    s = pipe.targets["tx-a"].streams["status"]
    assert (s.gaps, s.missing, s.duplicates, s.late) == (1, 2, 1, 2)
    assert s.accepted == 6
    # Late arrivals do not roll the latest value back.
    assert s.values["forward_power_w"] == 1006.0
    assert pipe.stats.count(Result.DROPPED, DropReason.DUPLICATE.value) == 1


def test_batch_keeps_last_value_and_end_time(pipe: Pipeline) -> None:
    send(pipe, "anbo/teststation/dtv-ds21/rf", encode_batch(NOW, 1, 0.5, {"mer_db": [30.0, 31.0, 32.5]}))
    s = pipe.targets["dtv-ds21"].streams["rf"]
    assert s.values == {"mer_db": 32.5}
    assert s.last_ts == NOW + 1.0


def test_sample_block_reaches_consumers(write_config) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str, Payload]] = []

    def consumer(t: TargetState, s: StreamState, p: Payload, rx: float) -> None:
        seen.append((t.settings.name, s.name, p))

    pipe = Pipeline(load_settings(write_config()).settings, Stats(), consumers=[consumer], wall=lambda: NOW)
    block = (np.sin(np.arange(4800) / 10.0)[:, None] * [0.5, -0.5]).astype(np.float32)
    body, ctype, props = encode_block_v5(block, ts=NOW, seq=0, rate=48000, l16=True)
    send(pipe, "anbo/teststation/fm-97.5/audio", body, ctype, props)
    assert len(seen) == 1
    name, stream, payload = seen[0]
    assert (name, stream) == ("fm-97.5", "audio")
    assert isinstance(payload, SampleBlock) and payload.samples.shape == (4800, 2)
    s = pipe.targets["fm-97.5"].streams["audio"]
    assert s.block_format == (48000, 2)
    assert s.last_ts == pytest.approx(NOW + 0.1)


def test_key_limit_protects_cardinality(write_config) -> None:  # type: ignore[no-untyped-def]
    # Names a target declares are kept; the key limit still bounds how many one stream holds.
    names = ", ".join(f'"k{i}"' for i in range(MAX_KEYS_PER_STREAM + 5))
    text = STATION_TOML.replace(
        "frequency_mhz = 97.5\n", f"frequency_mhz = 97.5\nextra_readings = [{names}]\n"
    )
    pipe = Pipeline(load_settings(write_config(text=text)).settings, Stats(), wall=lambda: NOW)
    topic = "anbo/teststation/fm-97.5/rf"
    for i in range(MAX_KEYS_PER_STREAM + 5):
        send(pipe, topic, encode_readings(NOW, i, {f"k{i}": 1.0}))
    s = pipe.targets["fm-97.5"].streams["rf"]
    assert len(s.values) == MAX_KEYS_PER_STREAM
    assert pipe.stats.count(Result.DROPPED, DropReason.KEY_LIMIT.value) == 5


def test_unknown_value_names_create_no_series(pipe: Pipeline) -> None:
    """Only catalogued names are kept: the rest of the message is used, the unknown names
    are counted per stream and dropped, and no scrape ever shows them."""
    topic = "anbo/teststation/fm-97.5/rf"
    for i in range(200):
        values = {"rf_level_dbuv": 61.5, f"rogue_{i}": 1.0, "pilot_lock": True}
        send(pipe, topic, encode_readings(NOW, i + 1, values, info={"rds_pi": "C201", f"id_{i}": "x"}))
    send(pipe, topic, encode_batch(NOW + 1, 201, 0.1, {"x_batch": [1.0, 2.0], "rf_level_dbuv": [60.0, 61.0]}))
    s = pipe.targets["fm-97.5"].streams["rf"]
    assert s.values == {"rf_level_dbuv": 61.0}
    assert s.info == {"rds_pi": "C201"}
    assert s.accepted == 201 and pipe.stats.count(Result.ACCEPTED, "ok") == 201
    assert s.unknown_values == 200 * 3 + 1
    s.last_rx = 99.0
    s.value_rx = dict.fromkeys(s.value_rx, 99.0)
    s.info_rx = dict.fromkeys(s.info_rx, 99.0)
    text = _scrape(pipe)
    assert "rogue_" not in text and "pilot_lock" not in text and "id_" not in text and "x_batch" not in text
    readings = [line for line in text.splitlines() if line.startswith("anbo_reading{")]
    assert len(readings) == 1 and 'name="rf_level_dbuv"' in readings[0]
    assert (
        'anbo_stream_values_dropped_total{kind="fm",reason="unknown_value",service="News",'
        'station="teststation",stream="rf",target="fm-97.5"} 601.0'
    ) in text
    # Audio streams carry no names and have no such counter.
    assert 'reason="unknown_value",service="News",station="teststation",stream="audio"' not in text


def test_a_batch_of_unknown_names_only_still_counts_as_a_message(pipe: Pipeline) -> None:
    topic = "anbo/teststation/tx-a/status"
    send(pipe, topic, encode_batch(NOW, 1, 0.5, {"psu_voltage_v": [48.0, 48.1]}))
    s = pipe.targets["tx-a"].streams["status"]
    assert s.accepted == 1 and s.values == {} and s.unknown_values == 1 and s.last_ts == NOW


def test_declared_extra_readings_are_kept(write_config) -> None:  # type: ignore[no-untyped-def]
    text = STATION_TOML.replace(
        'serves = ["fm-97.5"]\n', 'serves = ["fm-97.5"]\nextra_readings = ["psu_voltage_v"]\n'
    )
    pipe = Pipeline(load_settings(write_config(text=text)).settings, Stats(), wall=lambda: NOW)
    topic = "anbo/teststation/tx-a/status"
    send(pipe, topic, encode_readings(NOW, 1, {"psu_voltage_v": 48.0, "pa_temp_celsius": 40.0, "x": 1.0}))
    s = pipe.targets["tx-a"].streams["status"]
    assert s.values == {"psu_voltage_v": 48.0, "pa_temp_celsius": 40.0} and s.unknown_values == 1


def test_reconfigure_keeps_state_of_remaining_targets(pipe: Pipeline, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    send(pipe, "anbo/teststation/tx-a/status", encode_readings(NOW, 1, {"pa_temp_celsius": 41.0}))
    text = (tmp_path / "anbo.toml").read_text().replace('name = "dtv-ds21"', 'name = "dtv-ds22"')
    text = text.replace('channel = "DS-21"', 'channel = "DS-22"')
    pipe.reconfigure(load_settings(write_config(text=text.replace("{", "{{").replace("}", "}}"))).settings)
    assert set(pipe.targets) == {"fm-97.5", "dtv-ds22", "tx-a"}
    assert pipe.targets["tx-a"].streams["status"].values == {"pa_temp_celsius": 41.0}


def _scrape(pipe: Pipeline) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(
        AnboCollector(
            pipe, pipe.stats, IngestQueue(10, pipe.stats), lambda: {"mqtt://x:1": True}, mono=lambda: 100.0
        )
    )
    return generate_latest(reg).decode()


def test_collector_exposes_only_configured_targets(pipe: Pipeline) -> None:
    send(pipe, "anbo/teststation/fm-97.5/rf", encode_readings(NOW, 1, {"rf_level_dbuv": 61.5}))
    pipe.targets["fm-97.5"].streams["rf"].last_rx = 90.0
    pipe.targets["fm-97.5"].streams["rf"].value_rx["rf_level_dbuv"] = 90.0  # received 10 s ago
    for i in range(200):
        send(pipe, f"anbo/teststation/rogue-{i}/rf", encode_readings(NOW, 1, {"rf_level_dbuv": 1.0}))
    text = _scrape(pipe)
    assert (
        'anbo_reading{kind="fm",name="rf_level_dbuv",service="News",station="teststation",'
        'stream="rf",target="fm-97.5"} 61.5'
    ) in text
    assert (
        'anbo_sample_age_seconds{kind="fm",service="News",station="teststation",stream="rf",'
        'target="fm-97.5"} 10.0' in text
    )
    assert 'stream="audio",target="fm-97.5"} +Inf' in text
    assert "rogue" not in text
    assert 'anbo_messages_total{reason="unknown_target",result="dropped"} 200.0' in text
    assert 'anbo_mqtt_connected{broker="mqtt://x:1"} 1.0' in text


@pytest.fixture(scope="module")
def station_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from tests.conftest import STATION_TOML

    path = tmp_path_factory.mktemp("cfg") / "anbo.toml"
    path.write_text(STATION_TOML.format(url="mqtt://127.0.0.1:1", client_id="anbo-test"))
    return load_settings(path).settings


@settings(max_examples=300, deadline=None)
@given(
    topic=st.one_of(
        st.text(max_size=80),
        st.sampled_from(
            ["anbo/teststation/fm-97.5/rf", "anbo/teststation/fm-97.5/audio", "anbo/teststation/tx-a/status"]
        ),
        st.lists(
            st.sampled_from(["anbo", "teststation", "eb", "fm-97.5", "rf", "audio", "x", "", "+", "#"]),
            max_size=6,
        ).map("/".join),
    ),
    payload=st.binary(max_size=200),
    ctype=st.one_of(
        st.none(),
        st.sampled_from(["audio/L16;rate=48000;channels=2", "application/json", "text/plain", "audio/L16"]),
        st.text(max_size=30),
    ),
    props=st.one_of(
        st.none(), st.lists(st.tuples(st.sampled_from(["ts", "seq", "x"]), st.text(max_size=12)), max_size=3)
    ),
)
def test_any_message_is_decoded_or_counted(
    station_settings: Settings,
    topic: str,
    payload: bytes,
    ctype: str | None,
    props: list[tuple[str, str]] | None,
) -> None:
    pipe = Pipeline(station_settings, Stats(), wall=lambda: NOW)
    send(pipe, topic, payload, ctype, props)
    assert sum(pipe.stats.messages.values()) == 1
    for target in pipe.targets.values():
        for stream in target.streams.values():
            assert all(math.isfinite(v) for v in stream.values.values())


def test_topic_spraying_does_not_grow_memory_or_series(pipe: Pipeline) -> None:
    import random
    import tracemalloc

    rng = random.Random(7)
    payload = encode_readings(NOW, 1, {"rf_level_dbuv": 1.0})

    def spray(n: int) -> None:
        for _ in range(n):
            target = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-", k=12))
            stream = rng.choice(["rf", "audio", "status", "x" + str(rng.randrange(10**6))])
            station = rng.choice(["teststation", "other" + str(rng.randrange(10**6))])
            send(pipe, f"anbo/{station}/{target}/{stream}", payload)
            send(pipe, f"anbo/eb/ep-{rng.randrange(10**9)}/heartbeat", payload)

    spray(2_000)  # warm-up: interned strings, caches
    series_before = _scrape(pipe).count("\n")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    spray(50_000)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # The topic parser's cache is bounded (4096 entries, about 1 MB); nothing else may
    # keep anything: 100 000 rogue messages retaining even 25 bytes each would fail.
    assert grown < 2 * 1024 * 1024, f"{grown} bytes retained after 100 000 rogue messages"
    assert _scrape(pipe).count("\n") == series_before
    assert sum(len(t.streams) for t in pipe.targets.values()) == 5


def test_publisher_restart_is_a_reset_not_duplicates(pipe: Pipeline) -> None:
    topic = "anbo/teststation/tx-a/status"
    for seq in range(50):
        send(pipe, topic, encode_readings(NOW + seq, seq, {"forward_power_w": 1.0}))
    # The gateway restarts and counts from 0 again, with fresh timestamps.
    for seq in range(5):
        send(pipe, topic, encode_readings(NOW + 100 + seq, seq, {"forward_power_w": 2.0}))
    s = pipe.targets["tx-a"].streams["status"]
    assert (s.resets, s.duplicates, s.accepted) == (1, 0, 55)
    assert s.values["forward_power_w"] == 2.0


def test_a_reading_the_publisher_stopped_sending_goes_stale(pipe: Pipeline) -> None:
    from monitor.state import fresh_info, fresh_values

    topic = "anbo/teststation/dtv-ds21/rf"
    pipe.handle(
        topic,
        encode_readings(NOW, 1, {"rf_level_dbuv": 60.0, "mer_db": 34.0}, info={"service_id": "101"}),
        None,
        None,
        10.0,
    )
    # The receiver loses lock: it keeps sending the RF level, no longer MER or ids.
    for i in range(2, 40):
        pipe.handle(topic, encode_readings(NOW + i, i, {"rf_level_dbuv": 20.0}), None, None, 10.0 + i)
    stream = pipe.targets["dtv-ds21"].streams["rf"]
    assert fresh_values(stream, now=49.0, max_age=30.0) == {"rf_level_dbuv": 20.0}
    assert fresh_info(stream, now=49.0, max_age=30.0) == {}
    assert fresh_values(stream, now=30.0, max_age=30.0)["mer_db"] == 34.0  # still within the window


def test_one_far_away_seq_does_not_poison_the_missing_counters(pipe: Pipeline) -> None:
    """A stale replay or a rogue client's ``seq`` 1.8e9 on a configured stream: two resets
    (into it and back out), not 1.8e9 missing messages for ever (issue #11 item 4)."""
    topic = "anbo/teststation/tx-a/status"
    for seq in range(20):
        send(pipe, topic, encode_readings(NOW + seq, seq, {"forward_power_w": 1.0}))
    send(pipe, topic, encode_readings(NOW + 20, 1_800_000_000, {"forward_power_w": 1.0}))
    for seq in range(20, 30):
        send(pipe, topic, encode_readings(NOW + seq + 0.5, seq, {"forward_power_w": 1.0}))
    s = pipe.targets["tx-a"].streams["status"]
    assert (s.gaps, s.missing, s.resets) == (0, 0, 2)
    text = _scrape(pipe)
    missing = [line for line in text.splitlines() if line.startswith("anbo_sequence_missing_messages_total")]
    assert missing and all(float(line.rsplit(" ", 1)[1]) == 0.0 for line in missing), missing
