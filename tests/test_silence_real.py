"""Silence detection on realistic material, against ffmpeg silencedetect and the truth.

The material (tests/realaudio.py) is espeak-ng speech in five voices at 120–220 words a
minute with the pauses of speech, music-like chords, speech over a background bed, at
−18…−9 dBFS RMS, with dead air of 0.2–25 s between. `anbo analyze` (the daemon's
SilenceDetector) must find the silences ffmpeg finds, starts and ends within 0.25 s;
with the daemon's defaults (−40 dBFS/10 s on, −30 dBFS/5 s off) every dead-air episode
must end within 1 s of the programme's return. `python -m tests.test_silence_real`
prints the agreement table recorded in docs/silence.md.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

from anbo.analyze import analyze
from probes.audio import SilenceDetector, SilenceEnd
from tests.realaudio import RATE, Builder, Programme, ffmpeg_silences

TOLERANCE_S = 0.25
SETTINGS = [(-60.0, 2.0), (-50.0, 2.0), (-40.0, 2.0), (-40.0, 10.0)]


@functools.cache
def material() -> dict[str, Programme]:
    talk = (
        Builder(seed=1)
        .talk("en", 160, 4, -18.0)
        .dead_air(3.0)
        .talk("de", 120, 2, -12.0)
        .dead_air(12.0)
        .talk("zh", 180, 2, -9.0)
        .music(8.0, -14.0)
        .dead_air(25.0)
        .talk("fr", 220, 2, -15.0)
        .dead_air(0.2)
        .talk("es", 140, 2, -16.0)
        .dead_air(2.5)
        .talk("en", 200, 3, -11.0)
        .build()
    )
    bed = (
        Builder(seed=2, bed_dbfs=-45.0)
        .talk("en", 150, 3, -16.0)
        .dead_air(11.0)
        .talk("de", 170, 2, -13.0)
        .dead_air(4.0)
        .music(6.0, -12.0)
        .dead_air(15.0)
        .talk("zh", 130, 2, -18.0)
        .build()
    )
    music = (
        Builder(seed=3)
        .music(12.0, -14.0)
        .dead_air(6.0)
        .music(10.0, -10.0)
        .dead_air(1.0)
        .music(7.0, -18.0)
        .dead_air(14.0)
        .music(9.0, -12.0)
        .build()
    )
    return {"talk": talk, "talk+bed": bed, "music": music}


@functools.cache
def wav(name: str, tmp: Path) -> Path:
    return material()[name].write(tmp / f"{name}.wav")


def compare(
    path: Path, noise_db: float, duration_s: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(ours, ffmpeg's) silences of ``path``; an open silence ends at the end of the file."""
    report = analyze(path, silence_on_dbfs=noise_db, min_silence=duration_s)
    ours = [(s["start"], s["end"]) for s in report.silences]
    theirs = [
        (a, report.duration if b is None else b) for a, b in ffmpeg_silences(path, noise_db, duration_s)
    ]
    return ours, theirs


def deviation(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> tuple[float, float]:
    assert len(ours) == len(theirs), (
        f"{len(ours)} silences against ffmpeg's {len(theirs)}: {ours} vs {theirs}"
    )
    if not ours:
        return 0.0, 0.0
    ds = max(abs(a[0] - b[0]) for a, b in zip(ours, theirs, strict=True))
    de = max(abs(a[1] - b[1]) for a, b in zip(ours, theirs, strict=True))
    return ds, de


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("real")
    return {name: p.write(tmp / f"{name}.wav") for name, p in material().items()}


@pytest.mark.slow
@pytest.mark.parametrize(("noise_db", "duration_s"), SETTINGS)
@pytest.mark.parametrize("name", ["talk", "talk+bed", "music"])
def test_silences_agree_with_ffmpeg(
    files: dict[str, Path], name: str, noise_db: float, duration_s: float
) -> None:
    ours, theirs = compare(files[name], noise_db, duration_s)
    ds, de = deviation(ours, theirs)
    assert ds <= TOLERANCE_S and de <= TOLERANCE_S, (ours, theirs)
    # and they are the dead air that was put there (speech pauses are not silences)
    truth = [(a, b) for a, b in material()[name].dead_air if b - a >= duration_s]
    assert len(ours) == len(truth)
    for (a, b), (ta, tb) in zip(ours, truth, strict=True):
        assert abs(a - ta) <= TOLERANCE_S and abs(b - tb) <= TOLERANCE_S


@pytest.mark.slow
@pytest.mark.parametrize("name", ["talk", "talk+bed", "music"])
@pytest.mark.parametrize("block_s", [0.1, 1.0])
def test_with_the_daemon_defaults_dead_air_ends_when_programme_resumes(name: str, block_s: float) -> None:
    prog = material()[name]
    x = prog.audio.astype(np.float32)[:, None]
    det = SilenceDetector()  # the daemon's defaults: −40 dBFS for 10 s, −30 dBFS for 5 s
    step = round(block_s * RATE)
    closed = []
    for pos in range(0, x.shape[0], step):
        closed.extend(det.process(x[pos : pos + step], RATE, pos / RATE).closed)
    assert all(c.ended_by is SilenceEnd.AUDIO for c in closed)
    truth = [(a, b) for a, b in prog.dead_air if b - a >= 10.0]
    assert len(closed) == len(truth), (closed, truth)
    for c, (ta, tb) in zip(closed, truth, strict=True):
        assert abs(c.start - ta) <= TOLERANCE_S
        assert -TOLERANCE_S <= c.end - tb <= 1.0


def main() -> None:
    """Print the agreement table (for docs/silence.md)."""
    tmp = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp")
    for name, prog in material().items():
        path = prog.write(tmp / f"{name}.wav")
        print(
            f"\n{name}: {prog.seconds:.1f} s; dead air at "
            + ", ".join(f"{a:.2f}–{b:.2f}" for a, b in prog.dead_air)
        )
        for noise_db, duration_s in SETTINGS:
            ours, theirs = compare(path, noise_db, duration_s)
            ds, de = deviation(ours, theirs)
            pairs = "; ".join(
                f"{a:.3f}–{b:.3f} vs {c:.3f}–{d:.3f}" for (a, b), (c, d) in zip(ours, theirs, strict=True)
            )
            print(f"  {noise_db:g} dB / {duration_s:g} s: {len(ours)} silences, max |Δstart| {ds:.3f} s, "
                  f"|Δend| {de:.3f} s  [{pairs or 'none'}]")  # fmt: skip


if __name__ == "__main__":
    main()
