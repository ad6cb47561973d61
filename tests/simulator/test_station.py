"""The station generator: the wire contract, rates, sequences, normal values, and what each
fault changes (compared with the same seed without the fault)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from monitor.settings import Settings
from monitor.wire import (
    HEADER_SIZE,
    MAGIC,
    DecodeError,
    EndpointTopic,
    Readings,
    SampleBlock,
    StationTopic,
    TopicParser,
    decode,
)
from probes.audio import clipping_ratio
from simulator.scenario import MALFORMATIONS
from simulator.station import Message, derived_pi
from tests.simulator.helpers import START, by_topic, decoded, simulate, station

FM_KEYS = {
    "rf_level_dbuv",
    "freq_offset_khz",
    "peak_deviation_khz",
    "modulation_percent",
    "mpx_power_dbr",
    "pilot_present",
    "pilot_deviation_khz",
}
DTV_KEYS = {"rf_level_dbuv", "mer_db", "ber_pre", "ber_post", "cn_db", "lock", "freq_offset_khz"}
TX_KEYS = {"forward_power_w", "reflected_power_w", "pa_temp_celsius", "on_air", "fault"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return station(tmp_path_factory.mktemp("station"))


@pytest.fixture(scope="module")
def calm(settings: Settings) -> list[Message]:
    return simulate(settings, "name: calm\nduration: 12s\n")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_every_message_follows_the_wire_contract(settings: Settings, protocol: str) -> None:
    messages = simulate(settings, "name: calm\nduration: 12s\n", protocol=protocol)
    assert [m.t for m in messages] == sorted(m.t for m in messages)
    parser = TopicParser("anbo")
    streams = by_topic(messages)
    assert set(streams) == {
        f"anbo/sim/{t}/{s}"
        for t, s in [
            ("fm-a", "rf"),
            ("fm-a", "audio"),
            ("fm-plain", "rf"),
            ("fm-plain", "audio"),
            ("dtv-b", "rf"),
            ("dtv-b", "audio"),
            ("tx-c", "status"),
        ]
    }
    for topic, msgs in streams.items():
        where = parser.parse(topic)
        assert isinstance(where, StationTopic) and where.station == "sim"
        payloads = [decoded(m) for m in msgs]
        seqs = [p.seq for p in payloads]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), topic
        stamps = [p.ts for p in payloads]
        assert stamps == sorted(stamps)
        for m, p in zip(msgs, payloads, strict=True):
            assert p.ts <= START + m.t + 1e-6  # published after it was measured
        if where.stream == "audio":
            assert len(msgs) in (118, 119)  # 10 blocks a second, the first out at 0.1 s
            for m, p in zip(msgs, payloads, strict=True):
                assert isinstance(p, SampleBlock) and p.rate == 48_000 and p.samples.shape == (4800, 2)
                if protocol == "5":
                    assert m.content_type == "audio/L16;rate=48000;channels=2"
                    assert dict(m.user_properties or []) == {"ts": repr(p.ts), "seq": str(p.seq)}
                else:
                    assert m.content_type is None and m.payload[:4] == MAGIC
                    assert len(m.payload) == HEADER_SIZE + 4800 * 2 * 2
            assert np.allclose(np.diff(stamps), 0.1, atol=1e-6)
            assert stamps[0] == START
        else:
            assert len(msgs) == 12  # once a second
            assert all(isinstance(p, Readings) for p in payloads)
            assert all(m.content_type == ("application/json" if protocol == "5" else None) for m in msgs)
            assert np.allclose(np.diff(stamps), 1.0, atol=1e-6)


def test_readings_carry_the_expected_keys(settings: Settings, calm: list[Message]) -> None:
    streams = by_topic(calm)
    fm = [decoded(m) for m in streams["anbo/sim/fm-a/rf"]]
    assert all(isinstance(p, Readings) and set(p.values) == FM_KEYS for p in fm)
    assert {p.info["rds_pi"] for p in fm if isinstance(p, Readings)} == {"C201"}
    plain = [decoded(m) for m in streams["anbo/sim/fm-plain/rf"]]
    assert {p.info["rds_pi"] for p in plain if isinstance(p, Readings)} == {derived_pi("fm-plain")}
    dtv = [decoded(m) for m in streams["anbo/sim/dtv-b/rf"]]
    assert all(isinstance(p, Readings) and set(p.values) == DTV_KEYS and not p.info for p in dtv)
    tx = [decoded(m) for m in streams["anbo/sim/tx-c/status"]]
    assert all(isinstance(p, Readings) and set(p.values) == TX_KEYS for p in tx)


def test_same_seed_same_messages_other_seed_other_programme(settings: Settings, calm: list[Message]) -> None:
    again = simulate(settings, "name: calm\nduration: 12s\n")
    assert [(m.t, m.topic, m.payload) for m in again] == [(m.t, m.topic, m.payload) for m in calm]
    other = simulate(settings, "name: calm\nduration: 12s\nseed: 7\n")
    assert [m.payload for m in other] != [m.payload for m in calm]


def test_audio_target_selection_and_format(settings: Settings) -> None:
    msgs = simulate(
        settings,
        "name: calm\nduration: 3s\n",
        audio_targets=frozenset({"dtv-b"}),
        audio_rate=8000,
        audio_channels=1,
    )
    audio = [m for m in msgs if m.stream == "audio"]
    assert {m.target for m in audio} == {"dtv-b"}
    assert all(m.content_type == "audio/L16;rate=8000;channels=1" for m in audio)
    block = decoded(audio[0])
    assert isinstance(block, SampleBlock) and block.samples.shape == (800, 1)
    with pytest.raises(ValueError, match="multiple of 10"):
        simulate(settings, "name: calm\nduration: 3s\n", audio_rate=44_101)


def test_a_long_quiet_span_stays_in_the_normal_ranges(settings: Settings) -> None:
    """An hour of readings (no audio): drift and noise never approach an alarm threshold."""
    msgs = simulate(settings, "name: calm\nduration: 1h\n", audio_targets=frozenset())
    values: dict[str, dict[str, list[float]]] = {}
    for m in msgs:
        p = decoded(m)
        assert isinstance(p, Readings)
        series = values.setdefault(m.target, {})
        for k, v in p.values.items():
            series.setdefault(k, []).append(v)
    fm, plain, dtv, tx = (values[t] for t in ("fm-a", "fm-plain", "dtv-b", "tx-c"))
    assert min(fm["rf_level_dbuv"]) > 66 - 3.5 and max(fm["rf_level_dbuv"]) < 66 + 3.5
    assert min(plain["rf_level_dbuv"]) > 65 - 3.5 and max(plain["rf_level_dbuv"]) < 65 + 3.5
    for s in (fm, plain):
        assert max(s["modulation_percent"]) <= 102.5 and min(s["modulation_percent"]) > 60
        assert max(s["mpx_power_dbr"]) < -0.5
        assert min(s["pilot_present"]) == 1.0 and min(s["pilot_deviation_khz"]) > 6.5
        assert max(np.abs(s["freq_offset_khz"])) < 0.6
    assert min(dtv["rf_level_dbuv"]) > 60 - 3 and max(dtv["rf_level_dbuv"]) < 60 + 3
    assert min(dtv["mer_db"]) > 31.5 and max(dtv["mer_db"]) < 36.5 and min(dtv["cn_db"]) > 36
    assert max(dtv["ber_pre"]) < 1e-8 and max(dtv["ber_post"]) == 0.0 and min(dtv["lock"]) == 1.0
    forward = np.array(tx["forward_power_w"])
    reflected = np.array(tx["reflected_power_w"])
    assert forward.min() > 2000 * 0.96 and forward.max() < 2000 * 1.04
    rho = np.sqrt(reflected / forward)
    vswr = (1 + rho) / (1 - rho)
    assert vswr.min() > 1.05 and vswr.max() < 1.25
    assert min(tx["pa_temp_celsius"]) > 40 and max(tx["pa_temp_celsius"]) < 50
    assert min(tx["on_air"]) == 1.0 and max(tx["fault"]) == 0.0


# --------------------------------------------------------------------------- faults

AUDIO = "audio"
FM_RF_LOST = {
    "rf_level_dbuv",
    "freq_offset_khz",
    "peak_deviation_khz",
    "modulation_percent",
    "mpx_power_dbr",
    "pilot_present",
    "pilot_deviation_khz",
    "info.rds_pi",
}
DTV_UNLOCKED = {"lock", "mer_db", "cn_db", "ber_pre", "ber_post", "freq_offset_khz"}

#: fault → (target, extra YAML, {stream: keys that change (AUDIO: the samples)})
CHANGES: dict[str, tuple[str, str, dict[str, object]]] = {
    "dead_air": (
        "fm-a",
        "",
        {"audio": AUDIO, "rf": {"peak_deviation_khz", "modulation_percent", "mpx_power_dbr"}},
    ),
    "stuck_tone": (
        "fm-a",
        "",
        {"audio": AUDIO, "rf": {"peak_deviation_khz", "modulation_percent", "mpx_power_dbr"}},
    ),
    "clipping": (
        "fm-a",
        "",
        {"audio": AUDIO, "rf": {"peak_deviation_khz", "modulation_percent", "mpx_power_dbr"}},
    ),
    "phase_reversal": ("fm-a", "", {"audio": AUDIO}),  # same levels: nothing else changes
    "hiss": ("fm-a", "", {"audio": AUDIO, "rf": FM_RF_LOST}),
    "carrier_loss": ("fm-a", "", {"audio": AUDIO, "rf": FM_RF_LOST}),
    "low_rf": ("fm-a", ", drop_db: 10", {"rf": {"rf_level_dbuv"}}),
    "overmodulation": ("fm-a", "", {"rf": {"peak_deviation_khz", "modulation_percent", "mpx_power_dbr"}}),
    "pilot_loss": (
        "fm-a",
        "",
        {"rf": {"pilot_present", "pilot_deviation_khz", "modulation_percent", "peak_deviation_khz"}},
    ),
    "wrong_rds_pi": ("fm-a", ", pi: C2FF", {"rf": {"info.rds_pi"}}),
    "mer_degradation": ("dtv-b", "", {"rf": {"mer_db", "ber_pre"}}),
    "dtv_lock_loss": ("dtv-b", "", {"audio": AUDIO, "rf": DTV_UNLOCKED}),
    "vswr_spike": ("tx-c", "", {"status": {"reflected_power_w"}}),
    "pa_over_temperature": ("tx-c", ", ramp: 2s", {"status": {"pa_temp_celsius"}}),
    "power_drop": ("tx-c", "", {"status": {"forward_power_w", "reflected_power_w"}}),
    "tx_fault": ("tx-c", "", {"status": {"fault"}}),
}
CHANGES["carrier_loss@dtv"] = ("dtv-b", "", {"audio": AUDIO, "rf": {"rf_level_dbuv"} | DTV_UNLOCKED})
AT, FOR = 5.0, 8.0


def _flat(p: Readings) -> dict[str, object]:
    return {**p.values, **{f"info.{k}": v for k, v in p.info.items()}}


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_a_fault_changes_exactly_what_it_should(settings: Settings, case: str) -> None:
    fault = case.split("@")[0]
    target, extra, changes = CHANGES[case]
    base = simulate(settings, "name: x\nduration: 20s\n")
    faulted = simulate(
        settings,
        f"name: x\nduration: 20s\ntimeline:\n  - {{at: {AT}s, for: {FOR}s, "
        f"target: {target}, fault: {fault}{extra}}}\n",
    )
    a, b = by_topic(base), by_topic(faulted)
    assert set(a) == set(b)
    settle = 3.0 if fault == "pa_over_temperature" else 1.1  # cooling ramp; a second of audio stats
    for topic in a:
        tgt, stream = topic.split("/")[2:]
        expected = changes.get(stream) if tgt == target else None
        assert [m.t for m in a[topic]] == [m.t for m in b[topic]]
        changed: set[str] = set()
        for ma, mb in zip(a[topic], b[topic], strict=True):
            in_fault = AT <= ma.t < AT + FOR + (0.1 if stream == "audio" else 0.0)
            after = ma.t >= AT + FOR + settle
            if expected is None or ma.t < AT or after:
                assert ma.payload == mb.payload, (topic, ma.t)
                continue
            pa, pb = decoded(ma), decoded(mb)
            if expected == AUDIO:
                assert isinstance(pa, SampleBlock) and isinstance(pb, SampleBlock)
                if in_fault and pa.ts >= START + AT:
                    assert not np.array_equal(pa.samples, pb.samples), (topic, ma.t)
                    changed.add(AUDIO)
                continue
            assert isinstance(pa, Readings) and isinstance(pb, Readings)
            fa, fb = _flat(pa), _flat(pb)
            diff = {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
            assert diff <= expected, (topic, ma.t, diff - expected)  # type: ignore[operator]
            changed |= diff
        if expected is not None:
            assert changed == ({AUDIO} if expected == AUDIO else expected), (topic, changed)


def test_fault_values(settings: Settings) -> None:
    msgs = simulate(
        settings,
        """\
name: x
duration: 20s
timeline:
  - {at: 2s, for: 15s, target: fm-a, fault: overmodulation, percent: 120}
  - {at: 2s, for: 15s, target: dtv-b, fault: mer_degradation, mer_db: 14}
  - {at: 2s, for: 15s, target: tx-c, fault: vswr_spike, vswr: 2.5}
  - {at: 2s, for: 15s, target: fm-plain, fault: low_rf, drop_db: 50}
""",
        audio_targets=frozenset(),
    )
    during = [(m.target, decoded(m)) for m in msgs if 3 <= m.t < 17]
    for target, p in during:
        assert isinstance(p, Readings)
        v = p.values
        if target == "fm-a":
            assert 118 <= v["modulation_percent"] <= 122
            assert v["peak_deviation_khz"] == pytest.approx(0.75 * v["modulation_percent"], abs=0.01)
        elif target == "dtv-b":
            assert 13 < v["mer_db"] < 15 and v["ber_pre"] > 1e-3  # BER follows MER
        elif target == "tx-c":
            rho = math.sqrt(v["reflected_power_w"] / v["forward_power_w"])
            assert (1 + rho) / (1 - rho) == pytest.approx(2.5, abs=0.1)
        else:
            assert 12 < v["rf_level_dbuv"] < 19


def test_audio_of_faults(settings: Settings) -> None:
    msgs = simulate(
        settings,
        """\
name: x
duration: 6s
timeline:
  - {at: 1s, for: 5s, target: fm-a, fault: dead_air, level_dbfs: -70}
  - {at: 1s, for: 5s, target: fm-plain, fault: stuck_tone, frequency_hz: 1000, level_dbfs: -18}
  - {at: 1s, for: 5s, target: dtv-b, fault: carrier_loss}
""",
    )
    levels: dict[str, list[float]] = {}
    tone: list[np.ndarray] = []
    for m in msgs:
        p = decoded(m)
        if isinstance(p, SampleBlock) and p.ts >= START + 1.0:
            x = p.samples.astype(np.float64)
            levels.setdefault(m.target, []).append(10 * math.log10(max(float(np.mean(x * x)), 1e-30)))
            if m.target == "fm-plain":
                tone.append(p.samples[:, 0])
    assert max(levels["fm-a"]) < -65
    assert max(levels["dtv-b"]) < -85  # muted receiver
    assert all(abs(v + 18.0) < 0.3 for v in levels["fm-plain"])
    # The tone continues in phase from block to block (no clicks).
    joined = np.concatenate(tone)
    assert np.max(np.abs(np.diff(joined))) < 2 * math.pi * 1000 / 48000 * 0.2


def test_audio_of_programme_chain_faults(settings: Settings) -> None:
    text = """\
name: x
duration: 6s
timeline:
  - {at: 1s, for: 5s, target: fm-a, fault: clipping, gain_db: 18}
  - {at: 1s, for: 5s, target: fm-plain, fault: phase_reversal}
"""
    base = {(m.target, m.t): decoded(m) for m in simulate(settings, "name: x\nduration: 6s\n")}
    for m in simulate(settings, text):
        p = decoded(m)
        if not isinstance(p, SampleBlock) or p.ts < START + 1.0:
            continue
        before = base[(m.target, m.t)]
        assert isinstance(before, SampleBlock)
        if m.target == "fm-a":  # pinned at the rails (int16 full scale) where it was loud
            assert clipping_ratio(p.samples).min() > 0.01 and np.abs(p.samples).max() >= 0.999
        elif m.target == "fm-plain":  # the same programme, right channel inverted
            np.testing.assert_array_equal(p.samples[:, 0], before.samples[:, 0])
            np.testing.assert_array_equal(p.samples[:, 1], -before.samples[:, 1])


def test_phase_reversal_needs_stereo(settings: Settings) -> None:
    text = "name: x\nduration: 4s\ntimeline:\n  - {at: 1s, for: 2s, target: fm-a, fault: phase_reversal}\n"
    with pytest.raises(ValueError, match="fm-a: a phase_reversal fault needs stereo audio"):
        simulate(settings, text, audio_channels=1)


def test_telemetry_silence_removes_only_that_target(settings: Settings, calm: list[Message]) -> None:
    msgs = simulate(
        settings,
        "name: calm\nduration: 12s\ntimeline:\n  - {at: 3s, for: 4s, target: fm-a, "
        "fault: telemetry_silence}\n  - {at: 3s, for: 4s, target: dtv-b, "
        "fault: telemetry_silence, streams: [audio]}\n",
    )

    def silenced(m: Message) -> bool:
        return 3 <= m.t < 7 and (m.target == "fm-a" or (m.target == "dtv-b" and m.stream == "audio"))

    assert [(m.topic, m.payload) for m in msgs] == [(m.topic, m.payload) for m in calm if not silenced(m)]
    # The sequence numbers keep counting: the silence shows up as a gap.
    seqs = [decoded(m).seq for m in msgs if m.topic == "anbo/sim/fm-a/audio"]
    assert max(np.diff(seqs)) == 41


def test_duplicates_and_reordering(settings: Settings, calm: list[Message]) -> None:
    msgs = simulate(
        settings,
        "name: calm\nduration: 12s\ntimeline:\n"
        "  - {at: 2s, for: 8s, target: fm-a, fault: duplicate_blocks, share: 0.3}\n"
        "  - {at: 2s, for: 8s, target: dtv-b, fault: reordered_blocks, share: 0.3}\n",
    )
    base = by_topic(calm)
    got = by_topic(msgs)
    for topic in base.keys() - {"anbo/sim/fm-a/audio", "anbo/sim/dtv-b/audio"}:
        assert [m.payload for m in got[topic]] == [m.payload for m in base[topic]]
    dup = got["anbo/sim/fm-a/audio"]
    extra = len(dup) - len(base["anbo/sim/fm-a/audio"])
    assert 10 < extra < 45  # about 30 % of 80 blocks
    assert sorted({m.payload for m in dup}) == sorted(m.payload for m in base["anbo/sim/fm-a/audio"])
    assert all(2 <= m.t < 10.1 for m in dup if sum(x.payload == m.payload for x in dup) > 1)
    reordered = got["anbo/sim/dtv-b/audio"]
    assert sorted(m.payload for m in reordered) == sorted(m.payload for m in base["anbo/sim/dtv-b/audio"])
    seqs = [decoded(m).seq for m in reordered]
    swaps = [i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1]]
    assert 10 < len(swaps) < 40
    assert all(seqs[i] == seqs[i - 1] - 1 for i in swaps)  # one block late, right after its successor
    times = [m.t for m in reordered]
    assert all(2 <= times[i] < 10.2 for i in swaps)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_malformed_payloads_are_rejected_for_their_reason(
    settings: Settings, calm: list[Message], protocol: str
) -> None:
    base = calm if protocol == "5" else simulate(settings, "name: calm\nduration: 12s\n", protocol=protocol)
    msgs = simulate(
        settings,
        "name: calm\nduration: 12s\ntimeline:\n  - {at: 1s, for: 10s, target: fm-a, "
        "fault: malformed_payloads, rate: 3}\n",
        protocol=protocol,
    )
    good = {(m.topic, m.payload) for m in base}
    extra = [m for m in msgs if (m.topic, m.payload) not in good]
    assert len(msgs) - len(base) == len(extra) == 30
    reasons = []
    for m in extra:
        assert m.topic in ("anbo/sim/fm-a/rf", "anbo/sim/fm-a/audio")
        with pytest.raises(DecodeError) as info:
            decode(m.payload, content_type=m.content_type, user_properties=m.user_properties, now=START + m.t)
        reasons.append(info.value.reason.value)
    expected = set(MALFORMATIONS) - ({"bad_content_type", "missing_property"} if protocol != "5" else set())
    assert set(reasons) == expected


def test_vacated_emission_for_an_unconfigured_and_a_configured_receiver(
    settings: Settings, calm: list[Message]
) -> None:
    msgs = simulate(
        settings,
        "name: calm\nduration: 12s\ntimeline:\n"
        "  - {at: 2s, for: 5s, target: dtv-ds38-old, fault: vacated_emission,"
        " channel: DS-38, level_dbuv: 48}\n"
        "  - {at: 2s, for: 5s, target: fm-plain, fault: vacated_emission,"
        " frequency_mhz: 101.8, level_dbuv: 30}\n",
    )
    old = [decoded(m) for m in msgs if m.topic == "anbo/sim/dtv-ds38-old/rf"]
    assert len(old) == 5
    for p in old:
        assert isinstance(p, Readings) and p.info == {"channel": "DS-38"}
        assert abs(p.values["rf_level_dbuv"] - 48) < 3 and p.values["lock"] == 1.0
    plain = [(m.t, decoded(m)) for m in msgs if m.topic == "anbo/sim/fm-plain/rf"]
    for t, p in plain:
        assert isinstance(p, Readings)
        if 2 <= t < 7:
            assert p.info == {"frequency_mhz": "101.8"} and abs(p.values["rf_level_dbuv"] - 30) < 3
        else:
            assert "rds_pi" in p.info
    others = [(m.topic, m.payload) for m in msgs if m.target not in ("dtv-ds38-old", "fm-plain")]
    assert others == [(m.topic, m.payload) for m in calm if m.target != "fm-plain"]


def test_the_fleet_rides_along(tmp_path: Path) -> None:
    settings = station(tmp_path)
    msgs = simulate(
        settings, "name: calm\nduration: 70s\neb: {endpoints: 30, regions: 3}\n", audio_targets=frozenset()
    )
    eb = [m for m in msgs if m.topic.startswith("anbo/eb/")]
    assert len(eb) == 30 + len([m for m in eb if m.t >= 60])
    parser = TopicParser("anbo")
    assert all(isinstance(parser.parse(m.topic), EndpointTopic) for m in eb)
