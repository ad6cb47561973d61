"""Dead air in real speech, through a real Mosquitto and the live daemon, in real time.

The simulator plays a WAV file (``--wav``'s SimOptions.wav) on fm-97.5: espeak-ng
speech, 8 s of dead air, speech again. With ``silence_on_s = 3`` and
``silence_off_s = 2`` (defaults otherwise: −40 dBFS on, −30 dBFS off, half the frames
loud), DeadAir (``for: 5s``) must fire about 3 + 5 s after the dead air began and
resolve about 2 s after the speech resumed, although speech never stays above −30 dBFS
for 2 s without a pause; the logged silence must start and end where the dead air did.
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
from monitor.settings import load_settings
from simulator.accelerated import TransitionRecorder
from simulator.publisher import Publisher
from simulator.scenario import parse_scenario
from simulator.station import SimOptions, StationSimulator
from tests.realaudio import Builder
from tests.servers import Mosquitto

SCENARIO = """\
name: speech-dead-air
description: A WAV file with speech and dead air on fm-97.5; nothing else goes wrong.
duration: 22s
timeline: []
"""
TICK = 0.5


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


@pytest.mark.slow
@pytest.mark.integration
def test_dead_air_in_speech_fires_and_resolves_on_time(
    mosquitto: Mosquitto,
    write_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    prog = Builder(seed=5).talk("en", 170, 2, -14.0).dead_air(8.0).talk("de", 150, 3, -12.0).build()
    (dead_start, dead_end), = prog.dead_air  # fmt: skip
    assert prog.seconds > 22.0 and dead_end + 5.0 < 22.0
    wav = prog.write(tmp_path / "speech.wav")
    config = write_config(url=mosquitto.url)
    config.write_text(
        config.read_text().replace(
            "[station]",
            f"[probes]\ntick = {TICK}\nsilence_on_s = 3.0\nsilence_off_s = 2.0\n\n[station]",
            1,
        )
    )
    loaded = load_settings(config)
    scenario = parse_scenario(SCENARIO, "speech-dead-air.yml")
    silences: list[tuple[float, float, str]] = []

    async def main() -> tuple[TransitionRecorder, float]:
        daemon = Daemon(loaded, drain_timeout=3.0)
        recorder = TransitionRecorder()
        start = 0.0
        tick = daemon.evaluator.tick
        log_closed = daemon.evaluator._log_closed_silences

        async def recording_tick():  # type: ignore[no-untyped-def]
            transitions = await tick()
            if start:
                recorder.add(transitions, time.time() - start)
            return transitions

        def recording_log() -> None:
            silences.extend(
                (a - start, b - start, why) for a, b, why in daemon.evaluator.workers.audio["fm-97.5"].closed
            )
            log_closed()

        daemon.evaluator.tick = recording_tick  # type: ignore[method-assign]
        daemon.evaluator._log_closed_silences = recording_log  # type: ignore[method-assign]
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            start = time.time()
            options = SimOptions(start=start, wav={"fm-97.5": wav}, audio_targets=frozenset({"fm-97.5"}))
            sim = StationSimulator(loaded.settings, scenario, options)
            pub = Publisher(mosquitto.url, client_id="sim-speech")
            stats = await pub.run(sim.messages(), scenario=scenario)
            assert stats.dropped == 0 and stats.published == stats.generated
            await asyncio.sleep(1.0)
        finally:
            daemon.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(run, 15)
        return recorder, time.time() - start

    recorder, _ = asyncio.run(main())
    dead = [e for e in recorder.episodes if e.alert == "DeadAir"]
    others = [e.describe() for e in recorder.episodes if e.alert != "DeadAir"]
    assert others == []
    assert [e.target for e in dead] == ["fm-97.5"], [e.describe() for e in dead]
    (episode,) = dead
    print(f"\n{episode.describe()}; dead air {prog.dead_air}; silences {silences}")
    # fires 3 s (silence_on_s) + 5 s (for) after the dead air began, give or take ticks
    # and delivery on a loaded machine; resolves 2 s (silence_off_s) after speech resumed
    assert dead_start + 8.0 - TICK <= episode.fired_at <= dead_start + 8.0 + 3 * TICK + 1.0, (
        episode.describe()
    )
    assert episode.resolved_at is not None, episode.describe()
    assert dead_end + 2.0 - TICK <= episode.resolved_at <= dead_end + 2.0 + 3 * TICK + 1.0, episode.describe()
    assert [why for *_, why in silences] == ["audio"], silences
    ((start, end, _),) = silences
    assert abs(start - dead_start) <= 0.25 and abs(end - dead_end) <= 0.25, (silences, prog.dead_air)
