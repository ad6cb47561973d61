"""Programme synthesis: levels, pauses shorter than any dead-air threshold, not mistaken for
hiss or a stuck tone by anbo's own detectors; and the audio of faults, which must be."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from probes.audio import (
    DetectionState,
    HissDetector,
    SilenceDetector,
    StuckToneDetector,
    channel_correlation,
    frame_rms_dbfs,
)
from simulator import programme as prog
from simulator.programme import Programme, WavError, WavProgramme

STYLES = {"talk": 1.0, "music": 0.0, "mixed": 0.5}


def _frames(p: Programme, seconds: int) -> tuple[np.ndarray, float]:
    """50 ms frame levels (loudest channel, dBFS) of the next ``seconds``, and the peak."""
    levels = []
    peak = 0.0
    for _ in range(seconds):
        x = p.render(p.rate)
        peak = max(peak, float(np.max(np.abs(x))))
        levels.append(frame_rms_dbfs(x, p.rate // 20).max(axis=1))
    return np.concatenate(levels), peak


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@pytest.mark.parametrize(("rate", "channels", "seconds"), [(48_000, 2, 1200), (8_000, 1, 3 * 3600)])
@pytest.mark.parametrize("style", sorted(STYLES))
def test_pauses_never_reach_a_dead_air_threshold(style: str, rate: int, channels: int, seconds: int) -> None:
    p = Programme(rate, channels, seed=11, talk_share=STYLES[style])
    levels, peak = _frames(p, seconds)
    quiet = _runs(levels < -40.0)
    assert quiet, "a programme has pauses"
    # No quiet run (below −40 dBFS) reaches 1.5 s: shorter than any dead-air threshold.
    assert max(n for _, n in quiet) * 0.05 <= prog.MAX_PAUSE_S + 0.05
    # Pauses are rare and spread out; between them the programme is loud (≥ −30 dBFS) in
    # runs long enough for a silence detector to see it come back (5 s) within 8 s.
    starts = [s for s, _ in quiet]
    assert min(np.diff(starts)) * 0.05 >= prog.MIN_PAUSE_SPACING_S - 1.5
    loud = levels >= -30.0
    ready = np.zeros(loud.size, dtype=bool)
    for s, n in _runs(loud):
        if n >= 100:
            ready[s + 99 : s + n] = True  # a 5 s loud run has been completed at these frames
    for s, n in quiet:
        if (levels.size - s) * 0.05 < 10.0:
            continue  # too close to the end of what was rendered
        after = np.flatnonzero(ready[s + n :])
        assert after.size and after[0] * 0.05 <= 8.0, f"no 5 s of programme within 8 s after {s * 0.05} s"
    # Broadcast levels with natural variation; the processor's ceiling is never passed.
    assert -19.0 < float(np.median(levels)) < -12.0
    assert np.percentile(levels, 95) - np.percentile(levels, 5) > 4.0
    assert peak <= prog.PEAK_CEILING + 1e-4
    # The silence detector anbo runs, at the strictest threshold a test may set (1.5 s).
    det = SilenceDetector(on_s=1.5, off_s=5.0)
    p2 = Programme(rate, channels, seed=11, talk_share=STYLES[style])
    for i in range(min(seconds, 600)):
        assert det.process(p2.render(rate), rate, 1000.0 + i).state is not DetectionState.ACTIVE


@pytest.mark.parametrize("deemphasis", [None, 50.0])
@pytest.mark.parametrize("style", sorted(STYLES))
def test_programme_is_neither_hiss_nor_a_stuck_tone(style: str, deemphasis: float | None) -> None:
    rate = 48_000
    p = Programme(rate, 2, seed=5, talk_share=STYLES[style])
    hiss = HissDetector(deemphasis_us=deemphasis, on_s=2.0)
    tone = StuckToneDetector(on_s=2.0)
    states = set()
    for i in range(90):  # 1 s runs, as the daemon evaluates them at a 1 s tick
        x = p.render(rate)
        h = hiss.process(x, rate, 1000.0 + i)
        t = tone.process(x, rate, 1000.0 + i)
        assert not h.hiss_now, (i, h)
        assert not t.tone_now, (i, t)
        states |= {h.state, t.state}
    assert DetectionState.ACTIVE not in states and DetectionState.CLEAR in states


def test_stereo_image_and_determinism() -> None:
    music = Programme(48_000, 2, seed=3, talk_share=0.0).render(48_000 * 20)
    talk = Programme(48_000, 2, seed=3, talk_share=1.0).render(48_000 * 20)
    assert 0.3 < float(channel_correlation(music)[0]) < 0.999  # panned, in phase
    assert float(channel_correlation(talk)[0]) > 0.999  # a centred voice
    again = Programme(48_000, 2, seed=3, talk_share=0.0).render(48_000 * 20)
    assert np.array_equal(music, again)
    assert not np.array_equal(music, Programme(48_000, 2, seed=4, talk_share=0.0).render(48_000 * 20))
    mono = Programme(16_000, 1, seed=3).render(1600)
    assert mono.shape == (1600, 1) and mono.dtype == np.float32


@pytest.mark.parametrize("deemphasis", [None, 50.0])
def test_hiss_is_detected_as_hiss(deemphasis: float | None) -> None:
    rng = np.random.default_rng(1)
    state = prog.HissState()
    det = HissDetector(deemphasis_us=deemphasis, on_s=3.0)
    for i in range(10):
        blocks = [prog.hiss(rng, 4800, 2, 48_000, -22.0, state) for _ in range(10)]
        x = np.concatenate(blocks)
        u = det.process(x, 48_000, 1000.0 + i)
        assert abs(10 * math.log10(float(np.mean(np.square(x, dtype=np.float64)))) + 22.0) < 0.5
    assert u.state is DetectionState.ACTIVE


def test_tone_is_a_stuck_tone_and_dead_air_is_silence() -> None:
    det = StuckToneDetector(on_s=3.0)
    for i in range(5):
        x = np.concatenate(
            [prog.tone(i * 48_000 + k * 4800, 4800, 2, 48_000, 1000.0, -18.0) for k in range(10)]
        )
        u = det.process(x, 48_000, 1000.0 + i)
    assert u.state is DetectionState.ACTIVE and abs(u.peak_hz - 1000.0) < 2.0
    silence = SilenceDetector(on_s=2.0)
    rng = np.random.default_rng(2)
    for i in range(4):
        s = silence.process(prog.dead_air(rng, 48_000, 2, -70.0), 48_000, 2000.0 + i)
    assert s.state is DetectionState.ACTIVE


def test_wav_programme(tmp_path: Path) -> None:
    # A 44.1 kHz mono int16 file: resampled to 48 kHz, duplicated to stereo, looped.
    t = np.arange(44_100) / 44_100
    data = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = tmp_path / "prog.wav"
    scipy.io.wavfile.write(path, 44_100, data)
    w = WavProgramme(path, 48_000, 2)
    x = np.concatenate([w.render(4800) for _ in range(25)])  # 2.5 s: loops
    assert x.shape == (120_000, 2) and np.array_equal(x[:, 0], x[:, 1])
    assert abs(float(np.max(np.abs(x))) - 0.5) < 0.02
    # Same rate, stereo float: passed through exactly.
    st = np.random.default_rng(0).uniform(-0.5, 0.5, (4800, 2)).astype(np.float32)
    scipy.io.wavfile.write(tmp_path / "f.wav", 48_000, st)
    assert np.array_equal(WavProgramme(tmp_path / "f.wav").render(4800), st)
    with pytest.raises(WavError, match="no such file"):
        WavProgramme(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    with pytest.raises(WavError, match=r"junk\.wav"):
        WavProgramme(tmp_path / "junk.wav")


def test_long_wav_at_another_rate_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WavProgramme, "MAX_RESAMPLE_S", 0.5)
    scipy.io.wavfile.write(tmp_path / "long.wav", 22_050, np.zeros(22_050, dtype=np.int16))
    with pytest.raises(WavError, match="convert it first"):
        WavProgramme(tmp_path / "long.wav", 48_000)
