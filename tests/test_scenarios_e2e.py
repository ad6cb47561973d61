"""The bundled scenarios against anbo's own pipeline and rules, and one through a real broker.

(a) quiet-day raises nothing at all, pending or firing, over two simulated hours;
(b) every bundled fault scenario raises exactly its expected alerts, on the right
    targets, within each expectation's window, and nothing else;
(c) a scenario in real time through a real Mosquitto and the real daemon.

(a) and (b) run broker-less on simulated time (``run_accelerated``): the messages go
through the same Pipeline, Evaluator and emergency-broadcast monitor the daemon uses
(with an inventory of the simulated fleet), so hours take seconds. The
audio probes dominate the cost (~15 ms per target and second of 48 kHz stereo), so the
long runs simulate the audio of fewer targets, at 8 kHz mono, and only where the
scenario needs it; full-fidelity audio (48 kHz stereo, every service) runs in (a)'s
second test and in (c). ``anbo simulate --verify`` runs any scenario with all of its
audio at 48 kHz stereo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest
import structlog

from monitor.daemon import Daemon
from monitor.settings import Settings, TargetKind, load_settings
from monitor.stats import Result
from monitor.wire import Reason
from simulator.accelerated import TransitionRecorder, counts_from, run_accelerated, verify
from simulator.publisher import Publisher
from simulator.scenario import (
    CarrierLoss,
    Clipping,
    DeadAir,
    DtvLockLoss,
    DuplicateBlocks,
    Hiss,
    PhaseReversal,
    ReorderedBlocks,
    Scenario,
    StuckTone,
    TelemetrySilence,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
)
from simulator.station import SimOptions, StationSimulator
from tests.servers import Mosquitto

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "anbo.example.toml"
#: Monday 2 June 2025, 11:00 Beijing time: outside the example's Tuesday maintenance window.
START = 1_748_833_200.0
FAULT_SCENARIOS = sorted(n for n in bundled_scenarios() if n != "quiet-day")


@pytest.fixture(scope="module")
def example() -> Settings:
    return load_settings(EXAMPLE).settings


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    """The runs log every alert; keep the test output to failures (conftest resets structlog)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def _needs_audio(scenario: Scenario, settings: Settings) -> frozenset[str]:
    """Targets whose faults show in their audio (or its delivery)."""
    audio = {t.name for t in settings.targets if t.kind in (TargetKind.FM, TargetKind.DTV)}
    wanted: set[str] = set()
    for f in scenario.timeline:
        target = str(getattr(f, "target", ""))
        in_audio = DeadAir | Hiss | StuckTone | Clipping | PhaseReversal | CarrierLoss | DtvLockLoss
        if (
            isinstance(f, in_audio)
            or (isinstance(f, DuplicateBlocks | ReorderedBlocks) and f.stream == "audio")
            or (isinstance(f, TelemetrySilence) and f.streams == ["audio"])
        ):
            wanted.add(target)
    return frozenset(wanted & audio)


# --------------------------------------------------------------------------- (a) quiet day


def test_quiet_day_two_simulated_hours_raise_nothing(example: Settings) -> None:
    """Every reading of every target (RF, MER, transmitters), the emergency-broadcast
    fleet: two hours of drift and noise, evaluated every second, and not one alert,
    not even pending."""
    scenario = load_scenario(bundled_scenarios()["quiet-day"])
    options = SimOptions(start=START, audio_targets=frozenset())
    result = asyncio.run(run_accelerated(example, scenario, options, until=2 * 3600.0))
    assert result.simulated == 7200.0
    assert result.episodes == [] and result.pending == []
    assert result.stats.count(Result.ACCEPTED, "ok") >= 7200 * 10  # every reading of every target
    assert sum(result.stats.count(Result.REJECTED, r.value) for r in Reason) == 0
    assert len(result.evaluator.engine.active()) == 0


def test_quiet_day_programme_on_every_service_raises_nothing(example: Settings) -> None:
    """Full fidelity: 48 kHz stereo programme on all seven audio services at once."""
    scenario = load_scenario(bundled_scenarios()["quiet-day"])
    result = asyncio.run(run_accelerated(example, scenario, SimOptions(start=START), until=60.0))
    assert result.episodes == [] and result.pending == []
    m = result.evaluator.measurements
    for t in example.targets:
        if t.kind in (TargetKind.FM, TargetKind.DTV):
            assert m[t.name]["silence"] == 0.0 and m[t.name]["hiss"] == 0.0 and m[t.name]["stuck_tone"] == 0.0
            loudness = m[t.name]["loudness_shortterm_lufs"]
            assert isinstance(loudness, float) and -25.0 < loudness < -5.0


# --------------------------------------------------------------------------- (b) fault scenarios


@pytest.mark.parametrize("name", FAULT_SCENARIOS)
def test_fault_scenario_raises_exactly_its_expected_alerts(example: Settings, name: str) -> None:
    scenario = load_scenario(bundled_scenarios()[name])
    # Mono at 8 kHz keeps the runs quick; a polarity inversion needs both channels.
    stereo = any(isinstance(f, PhaseReversal) for f in scenario.timeline)
    options = SimOptions(
        start=START,
        audio_rate=8000,
        audio_channels=2 if stereo else 1,
        audio_targets=_needs_audio(scenario, example),
    )
    result = asyncio.run(run_accelerated(example, scenario, options))
    verdict = verify(scenario, result.episodes, result.count)
    assert verdict.ok, f"{name}:\n{verdict.format()}"
    assert verdict.matched


# --------------------------------------------------------------------------- (c) real time, real broker

REALTIME = """\
name: realtime
description: Short faults for a daemon with short probe timings, in real time.
duration: 24s
timeline:
  - {id: dead, at: 2s, for: 10s, target: fm-97.5, fault: dead_air}
  - {id: carrier, at: 4s, for: 10s, target: dtv-ds21, fault: carrier_loss}
  - {id: silent, at: 6s, for: 8s, target: tx-a, fault: telemetry_silence}
  - {id: dup, at: 2s, for: 20s, target: fm-97.5, fault: duplicate_blocks, share: 0.2}
expect:
  # silence after 3 s, DeadAir's `for` 5 s, a 0.5 s tick
  - {alert: DeadAir, target: fm-97.5, fault: dead, fire_within: 12s, resolve_within: 5s}
  - {alert: CarrierLoss, target: dtv-ds21, fire_within: 9s, resolve_within: 8s}
  - {alert: DeadAir, target: dtv-ds21, fault: carrier, fire_within: 12s, resolve_within: 5s,
     suppressed: inhibited}
  # [alerting] stale_after 4 s
  - {alert: TelemetryLost, target: tx-a, fire_within: 6s, resolve_within: 3s}
expect_counts:
  - {counter: duplicates, target: fm-97.5, stream: audio, min: 10}
  - {counter: gaps, target: tx-a, stream: status, min: 1, max: 1}
"""


@pytest.mark.integration
def test_scenario_in_real_time_through_mosquitto_and_the_daemon(
    mosquitto: Mosquitto,
    write_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    config = write_config(url=mosquitto.url)
    config.write_text(
        config.read_text().replace(
            "[station]",
            "[probes]\ntick = 0.5\nsilence_on_s = 3.0\nsilence_off_s = 1.0\n\n"
            "[alerting]\nstale_after = 4\n\n[station]",
            1,
        )
    )
    loaded = load_settings(config)
    scenario = parse_scenario(REALTIME, "realtime.yml")

    async def main() -> tuple[TransitionRecorder, float, Daemon]:
        daemon = Daemon(loaded, drain_timeout=3.0)
        recorder = TransitionRecorder()
        start = 0.0
        tick = daemon.evaluator.tick

        async def recording_tick():  # type: ignore[no-untyped-def]
            transitions = await tick()
            if start:
                recorder.add(transitions, time.time() - start)
            return transitions

        daemon.evaluator.tick = recording_tick  # type: ignore[method-assign]
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            start = time.time()
            sim = StationSimulator(loaded.settings, scenario, SimOptions(start=start, protocol="5"))
            pub = Publisher(mosquitto.url, client_id="sim-e2e")
            stats = await pub.run(sim.messages(), scenario=scenario)
            assert stats.dropped == 0 and stats.published == stats.generated
            await asyncio.sleep(1.0)  # the last messages through the daemon
        finally:
            daemon.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(run, 15)
        return recorder, time.time() - start, daemon

    recorder, ended, daemon = asyncio.run(main())
    verdict = verify(
        scenario, recorder.episodes, counts_from(daemon.pipeline, daemon.stats), ended_at=ended, slack=1.0
    )
    assert verdict.ok, verdict.format()
    assert sum(daemon.stats.count(Result.REJECTED, r.value) for r in Reason) == 0
    assert daemon.pipeline.targets["fm-97.5"].streams["audio"].accepted > 200
