"""``anbo capture`` end to end: real Icecast2 → capture (ffmpeg) → real Mosquitto → real ``anbo run``.

1. Icecast: an ffmpeg source client plays, in real time, espeak-ng speech with a known
   10 s of dead air to an Icecast mount; ``anbo capture`` listens to the mount and
   publishes PCM blocks; the daemon's DeadAir fires and resolves within 2 s of when the
   dead air should make it; then the source is cut (the Icecast source killed): AudioLost
   fires at once with the gateway's cause (``stream_ended``), capture reconnects when the
   source returns and AudioLost resolves; the daemon counts no sequence gap on the audio
   stream throughout; its integrated loudness agrees with ``anbo analyze`` of the same
   programme (through an MP3 encoder: within 1 LU).
2. File, faster than real time: ``anbo capture --fast`` plays the WAV in well under its
   length; every block arrives (no gap), and the daemon's integrated loudness and peak
   agree with ``anbo analyze`` of the file (the same samples: within 0.1 LU / 0.1 dB).
3. The broker restarted while a file plays in real time: no block lost, none twice.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from tests.capture_rig import (
    Watcher,
    analyze_json,
    anbo,
    samples,
    station_config,
    stop,
    value,
    wait_ready,
)
from tests.icecast import FfmpegSource, Icecast
from tests.realaudio import RATE, Builder
from tests.servers import Mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The daemon's silence settings in station_config: on after 3 s, off after 2 s; DeadAir `for: 5s`.
SILENCE_ON_S, SILENCE_OFF_S, DEADAIR_FOR_S = 3.0, 2.0, 5.0
TOLERANCE_S = 2.0


def stereo_wav(audio: np.ndarray, path: Path) -> Path:
    """Write mono programme as stereo (right slightly lower and 0.3 ms late, like a real mix)."""
    right = np.concatenate([np.zeros(15), audio[:-15]]) * 0.9
    pcm = np.clip(np.rint(np.stack([audio, right], axis=1) * 32768.0), -32768, 32767).astype(np.int16)
    scipy.io.wavfile.write(path, RATE, pcm)
    return path


@pytest.fixture
def icecast(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = Icecast(tmp_path / "icecast")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_icecast_dead_air_and_stream_cut(mosquitto: Mosquitto, icecast: Icecast, tmp_path: Path) -> None:
    prog = (
        Builder(seed=11)
        .talk("en", 170, 2, -16.0)
        .dead_air(10.0)
        .talk("de", 150, 2, -14.0)
        .talk("en", 160, 4, -15.0)
        .build()
    )
    ((dead_start, dead_end),) = prog.dead_air
    cut_at = dead_end + SILENCE_OFF_S + 3.0  # after DeadAir resolved
    assert prog.seconds > cut_at + 8.0
    wav = stereo_wav(prog.audio, tmp_path / "programme.wav")
    config, port = station_config(tmp_path / "anbo.toml", mosquitto.url)
    daemon = anbo("run", "--config", str(config), "--log-format", "json", log=tmp_path / "daemon.log")
    capture = None
    source = FfmpegSource(icecast, "news", wav)
    try:
        wait_ready(port, daemon)
        watcher = Watcher(port).start()
        t0 = source.start()  # file position p is played at about t0 + p
        capture = anbo(
            "capture", "--config", str(config), "--input", f"fm-97.5={icecast.url('news')}",
            "--log-format", "json", log=tmp_path / "capture.log",
        )  # fmt: skip
        # Let it play past the dead air, then cut the source at cut_at.
        time.sleep(max(0.0, t0 + cut_at - time.time()))
        source.stop()
        cut = time.time()
        before_cut = [lv for lv in watcher.levels if lv[0] < cut]
        time.sleep(3.0)
        back = time.time()
        source.start(start_s=cut_at + 3.0)  # the programme goes on where it would be
        time.sleep(6.0)
        watcher.stop()
        metrics = samples(port)
    finally:
        source.stop()
        if capture is not None:
            assert stop(capture) == 0, (tmp_path / "capture.log").read_text()[-3000:]
        stop(daemon)

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 2)

    lags = sorted(watcher.lags)
    print(f"\ndelivery lag (wall − newest audio sample at the daemon): median {lags[len(lags) // 2]:.2f} s, "
          f"max {lags[-1]:.2f} s")  # fmt: skip
    print(f"episodes: {[(e.alert, rel(e.fired_at), rel(e.resolved_at)) for e in watcher.episodes]}")
    # DeadAir: silence_on_s after the dead air began, plus the rule's 5 s; resolves
    # silence_off_s after the speech resumed. Delivery (Icecast, decoding) adds a little.
    (dead,) = watcher.of("DeadAir")
    fire_expected = t0 + dead_start + SILENCE_ON_S + DEADAIR_FOR_S
    resolve_expected = t0 + dead_end + SILENCE_OFF_S
    assert abs(dead.fired_at - fire_expected) <= TOLERANCE_S, (rel(dead.fired_at), rel(fire_expected))
    assert dead.resolved_at is not None
    assert abs(dead.resolved_at - resolve_expected) <= TOLERANCE_S, (
        rel(dead.resolved_at),
        rel(resolve_expected),
    )
    # The cut: AudioLost at once, with the gateway's cause; resolved once the source is back.
    (lost,) = watcher.of("AudioLost")
    assert 0.0 <= lost.fired_at - cut <= TOLERANCE_S, (rel(lost.fired_at), rel(cut))
    assert "stream_ended" in lost.description, lost.description
    assert lost.resolved_at is not None, "AudioLost did not resolve after the source returned"
    recovery = lost.resolved_at - back
    print(
        f"AudioLost after the cut: {lost.fired_at - cut:.2f} s; "
        f"recovered {recovery:.2f} s after the source returned"
    )
    assert 0.0 < recovery <= 5.0
    # One log line per state change: up, lost (the retries while the mount is gone are
    # not logged again), up again.
    log = [json.loads(line) for line in (tmp_path / "capture.log").read_text().splitlines()]
    changes = [(e["event"], e.get("cause")) for e in log if e["event"].startswith("capture input")]
    assert changes == [
        ("capture input up", None),
        ("capture input lost", "stream_ended"),
        ("capture input up", None),
    ]
    others = [e.alert for e in watcher.episodes if e.alert not in ("DeadAir", "AudioLost")]
    assert others == [], others
    # No sequence gap on the audio stream, no message refused.
    audio = {"target": "fm-97.5", "stream": "audio"}
    assert value(metrics, "anbo_sequence_gaps_total", **audio) == 0
    assert value(metrics, "anbo_sequence_missing_messages_total", **audio) == 0
    assert (value(metrics, "anbo_stream_messages_total", **audio) or 0) > 200
    rejected = sum(
        v for (n, lv), v in metrics.items() if n == "anbo_messages_total" and ("result", "rejected") in lv
    )
    assert rejected == 0
    # Levels: the daemon's integrated loudness just before the cut against anbo analyze of
    # what was played until then (MP3 at 128 kb/s in between: within 1 LU).
    assert before_cut, "no loudness from the daemon before the cut"
    _, lufs, _ = before_cut[-1]
    first = tmp_path / "played.wav"
    stereo_wav(prog.audio[: round((cut - t0) * RATE)], first)
    reference = analyze_json(first)
    print(f"integrated loudness: daemon {lufs:.2f} LUFS, anbo analyze {reference['integrated_lufs']} LUFS")
    assert abs(lufs - float(reference["integrated_lufs"])) <= 1.0  # type: ignore[arg-type]


def test_file_input_faster_than_real_time(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prog = Builder(seed=3).talk("en", 170, 3, -24.0).dead_air(4.0).talk("fr", 160, 3, -20.0).build()
    wav = stereo_wav(prog.audio, tmp_path / "programme.wav")
    config, port = station_config(tmp_path / "anbo.toml", mosquitto.url, tick=0.25)
    daemon = anbo("run", "--config", str(config), "--log-format", "json", log=tmp_path / "daemon.log")
    try:
        wait_ready(port, daemon)
        watcher = Watcher(port, period=0.1).start()
        capture = anbo(
            "capture", "--config", str(config), "--fast", "--input", f"fm-97.5=file:{wav}",
            "--log-format", "json", log=tmp_path / "capture.log",
        )  # fmt: skip
        code = capture.wait(60)
        time.sleep(1.0)  # the daemon's next ticks
        watcher.stop()
        metrics = samples(port)
    finally:
        stop(daemon)
    log = (tmp_path / "capture.log").read_text()
    assert code == 0, log[-3000:]
    events = {e["event"]: e for e in map(json.loads, log.splitlines())}
    up, ended = (
        datetime.fromisoformat(events[k]["timestamp"]) for k in ("capture input up", "capture input ended")
    )
    took = (ended - up).total_seconds()
    print(f"\n{prog.seconds:.1f} s of programme captured in {took:.2f} s")
    assert took < prog.seconds / 4
    assert events["capture input ended"]["cause"] == "end_of_file"
    blocks = int(np.ceil(prog.seconds / 0.1))
    audio = {"target": "fm-97.5", "stream": "audio"}
    assert value(metrics, "anbo_sequence_gaps_total", **audio) == 0
    # every block, plus the status readings (up, ended)
    assert (value(metrics, "anbo_stream_messages_total", **audio) or 0) >= blocks + 2
    assert watcher.levels, "the daemon measured no loudness"
    _, lufs, _ = watcher.levels[-1]
    peak = max(p for _, _, p in watcher.levels)
    reference = analyze_json(wav)
    print(
        f"daemon: {lufs:.2f} LUFS, peak {peak:.2f} dBFS; "
        f"anbo analyze: {reference['integrated_lufs']} LUFS, peak {reference['peak_dbfs']} dBFS"
    )
    assert abs(lufs - float(reference["integrated_lufs"])) <= 0.1  # type: ignore[arg-type]
    assert abs(peak - max(reference["peak_dbfs"])) <= 0.1  # type: ignore[call-overload]
    # The end of the file is an input loss with its cause, not a guess.
    (lost,) = watcher.of("AudioLost")
    assert "end_of_file" in lost.description


def test_broker_restart_loses_no_block(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The broker goes away for a moment while a file plays in real time: the gateway holds
    what it reads in its bounded queue, sends what was unconfirmed again, and the daemon
    sees every block once, in one sequence without a gap."""
    prog = Builder(seed=5).talk("en", 170, 2, -18.0).build()
    wav = stereo_wav(prog.audio, tmp_path / "programme.wav")
    config, port = station_config(tmp_path / "anbo.toml", mosquitto.url)
    daemon = anbo("run", "--config", str(config), "--log-format", "json", log=tmp_path / "daemon.log")
    try:
        wait_ready(port, daemon)
        capture = anbo(
            "capture", "--config", str(config), "--input", f"fm-97.5=file:{wav}",
            "--log-format", "json", log=tmp_path / "capture.log",
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while "capture input up" not in (tmp_path / "capture.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "capture.log").read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(1.5)
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()
        code = capture.wait(60)
        time.sleep(2.0)  # the daemon reconnects (persistent session) and takes the rest
        metrics = samples(port)
    finally:
        stop(daemon)
    log = [json.loads(line) for line in (tmp_path / "capture.log").read_text().splitlines()]
    assert code == 0
    events = [e["event"] for e in log]
    assert "lost the broker" in events and events.count("connected to the broker") >= 2
    (stopped,) = [e for e in log if e["event"] == "anbo capture stopped"]
    assert stopped["dropped"] == 0
    blocks = int(np.ceil(prog.seconds / 0.1))
    audio = {"target": "fm-97.5", "stream": "audio"}
    print(f"\nbroker restart: {stopped['published']} published, daemon {metrics_of(metrics, audio)}")
    assert value(metrics, "anbo_sequence_gaps_total", **audio) == 0
    assert value(metrics, "anbo_sequence_outstanding_messages", **audio) == 0
    assert (value(metrics, "anbo_stream_messages_total", **audio) or 0) >= blocks + 2


def metrics_of(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], labels: dict[str, str]) -> str:
    names = ("anbo_stream_messages_total", "anbo_sequence_gaps_total", "anbo_sequence_duplicates_total")
    return ", ".join(f"{n.removeprefix('anbo_')}={value(metrics, n, **labels)}" for n in names)
