"""Realistic programme for silence tests: espeak-ng speech, music-like chords, background.

Everything is generated on the fly (espeak-ng and ffmpeg are Debian tools the setup
installs; a missing binary fails loudly). A *programme* is a list of pieces: speech in
several voices and rates with the word and sentence pauses of real speech, chords with
envelopes, and deliberate dead air (dither about −84 dBFS) of known length. The true
dead-air intervals are returned beside the audio, and :func:`ffmpeg_silences` gives
ffmpeg ``silencedetect``'s view of the same file for comparison.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import scipy.signal
from numpy.typing import NDArray

RATE = 48_000

SENTENCES = {
    "en": [
        "Good evening, this is the news at nine o'clock.",
        "The weather for tomorrow is cloudy with some rain in the north.",
        "Traffic on the ring road is moving slowly after an accident near the bridge.",
        "And now, music until the top of the hour.",
    ],
    "de": [
        "Guten Abend, hier sind die Nachrichten.",
        "Morgen wird es im Norden regnerisch und kühl.",
    ],
    "zh": ["各位听众晚上好，现在是新闻时间。", "明天本市多云，局部有小雨。"],
    "fr": ["Bonsoir, voici le journal de vingt et une heures.", "Demain, le temps sera nuageux."],
    "es": ["Buenas noches, estas son las noticias.", "Mañana habrá lluvias en el norte."],
}


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (scripts/setup installs it)")
    return path


def speech(text: str, voice: str, wpm: int) -> NDArray[np.float64]:
    """espeak-ng speech of ``text`` at 48 kHz mono, unscaled (its own pauses kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([_need("espeak-ng"), "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True)
        rate, data = scipy.io.wavfile.read(out)
    x = data.astype(np.float64) / 32768.0
    x = np.trim_zeros(x)  # espeak's leading and trailing padding: the gaps are ours
    g = np.gcd(int(rate), RATE)
    return np.asarray(scipy.signal.resample_poly(x, RATE // g, int(rate) // g), dtype=np.float64)


def chords(seconds: float, seed: int) -> NDArray[np.float64]:
    """Music-like: chords of harmonic tones with attack/decay envelopes and a bass, mono."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    bar = 2.0
    roots = 110.0 * 2.0 ** (np.array([0, 5, 7, 3, 8, 10]) / 12.0)
    for b in range(int(np.ceil(seconds / bar))):
        root = roots[rng.integers(0, roots.size)]
        a, z = round(b * bar * RATE), min(n, round((b + 1) * bar * RATE))
        tt = t[a:z] - b * bar
        env = (1.0 - np.exp(-tt / 0.02)) * (0.35 + 0.65 * np.exp(-tt / 0.6))
        for step in (0, 4, 7, 12):
            f = root * 2.0 ** (step / 12.0) * 2.0
            out[a:z] += (
                sum(np.sin(2 * np.pi * k * f * tt + rng.uniform(0, 6.3)) / k**1.5 for k in (1, 2, 3)) * env
            )
        out[a:z] += 0.8 * np.sin(2 * np.pi * root * tt) * env
    return out


def background(n: int, level_dbfs: float, seed: int) -> NDArray[np.float64]:
    """Room/crowd-like background: low-passed noise at ``level_dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    b, a = scipy.signal.butter(2, 2000.0 / (RATE / 2))
    x = scipy.signal.lfilter(b, a, rng.standard_normal(n))
    return np.asarray(x / np.sqrt(np.mean(x * x)) * 10.0 ** (level_dbfs / 20.0), dtype=np.float64)


def _at_level(x: NDArray[np.float64], dbfs: float) -> NDArray[np.float64]:
    """Scale to ``dbfs`` RMS measured over the active part (|x| above −50 dB of peak)."""
    active = np.abs(x) > np.abs(x).max() * 10 ** (-50 / 20)
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0
    return x * (10.0 ** (dbfs / 20.0) / rms)


@dataclass
class Programme:
    """Audio (float64 mono, 48 kHz) with the true dead-air and programme spans (s)."""

    audio: NDArray[np.float64]
    dead_air: list[tuple[float, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / RATE

    def write(self, path: Path) -> Path:
        pcm = np.clip(np.rint(self.audio * 32768.0), -32768, 32767).astype(np.int16)
        scipy.io.wavfile.write(path, RATE, pcm)
        return path


class Builder:
    """Concatenates pieces; ``bed_dbfs`` adds a background bed under programme (not dead air)."""

    def __init__(self, seed: int, bed_dbfs: float | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.parts: list[NDArray[np.float64]] = []
        self.bed: list[bool] = []
        self.dead: list[tuple[float, float]] = []
        self.pos = 0
        self.bed_dbfs = bed_dbfs
        self.seed = seed

    def _add(self, x: NDArray[np.float64], bed: bool) -> None:
        self.parts.append(x)
        self.bed.append(bed)
        self.pos += x.shape[0]

    def talk(self, voice: str, wpm: int, sentences: int, dbfs: float) -> Builder:
        """Sentences of one voice with 0.2–0.9 s pauses between them (a bed fills them)."""
        texts = SENTENCES[voice]
        for i in range(sentences):
            if i:
                self._add(np.zeros(round(self.rng.uniform(0.2, 0.9) * RATE)), True)
            self._add(_at_level(speech(texts[i % len(texts)], voice, wpm), dbfs), True)
        return self

    def music(self, seconds: float, dbfs: float) -> Builder:
        self._add(_at_level(chords(seconds, int(self.rng.integers(1 << 30))), dbfs), True)
        return self

    def pause(self, seconds: float) -> Builder:
        """A pause within programme (the bed, if any, goes on under it)."""
        self._add(np.zeros(round(seconds * RATE)), True)
        return self

    def dead_air(self, seconds: float) -> Builder:
        """Dead air: everything gone, dither only (about −84 dBFS)."""
        n = round(seconds * RATE)
        self.dead.append((self.pos / RATE, (self.pos + n) / RATE))
        self._add(self.rng.integers(-2, 3, n).astype(np.float64) / 32768.0, False)
        return self

    def build(self) -> Programme:
        audio = np.concatenate(self.parts)
        if self.bed_dbfs is not None:
            mask = np.concatenate([np.full(p.shape[0], b) for p, b in zip(self.parts, self.bed, strict=True)])
            audio = audio + background(audio.shape[0], self.bed_dbfs, self.seed) * mask
        return Programme(audio, self.dead)


_START = re.compile(r"silence_start: (-?[0-9.e+-]+)")
_END = re.compile(r"silence_end: ([0-9.e+-]+)")


def ffmpeg_silences(path: Path, noise_db: float, duration_s: float) -> list[tuple[float, float | None]]:
    """ffmpeg ``silencedetect`` intervals (an open silence at the end has end None)."""
    cmd = [_need("ffmpeg"), "-hide_banner", "-nostats", "-i", str(path)]
    cmd += ["-af", f"silencedetect=n={noise_db}dB:d={duration_s}", "-f", "null", "-"]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    starts = [float(v) for v in _START.findall(err)]
    ends: list[float | None] = [float(v) for v in _END.findall(err)]
    ends += [None] * (len(starts) - len(ends))
    return list(zip(starts, ends, strict=True))
