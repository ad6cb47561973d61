"""Programme-like audio for the station simulator, and the audio of faults.

A monitoring receiver's audio output carries *programme*: processed speech and music
at broadcast levels. Detectors are tuned on programme, so the simulator makes
something with the same properties, not a test tone:

- **speech**: a glottal pulse train with intonation (declination, accents, jitter)
  through three formant resonators that change vowel every syllable, fricative noise
  at some syllable onsets, a syllabic envelope (4–6 syllables a second) that dips but
  never drops out, and breaths between phrases;
- **music**: chords of tones with harmonics (a diatonic progression), a bass line, a
  melody with piano-like decays, kick and hi-hat, panned in stereo;
- **level variation**: per segment (±2 dB), per phrase or bar (±2.5 dB), as an
  announcer's and a record's level varies behind the processor;
- **pauses** (below −40 dBFS) only at some segment changes and rarely within talk,
  0.25–1.1 s long (≤ 1.25 s with their edges) and at least 10 s apart: shorter than
  any dead-air threshold, and leaving runs of programme long enough (≥ 8 s) for a
  silence detector to see the audio come back.

Phrases and bars are synthesised once per sample rate into a small bank (a fraction of
a second at 48 kHz) and then sequenced per target with its own random generator, so
rendering a 100 ms block costs a slice and a multiply. Everything is deterministic for
a given seed.

Fault audio (:func:`dead_air`, :func:`hiss`, :func:`tone`) is rendered per block.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import scipy.signal
from numpy.typing import NDArray

__all__ = [
    "BREATH_DBFS",
    "MAX_PAUSE_S",
    "MIN_PAUSE_SPACING_S",
    "PAUSE_DBFS",
    "PROGRAMME_DBFS",
    "AudioSource",
    "Bank",
    "Programme",
    "WavError",
    "WavProgramme",
    "bank",
    "dead_air",
    "hiss",
    "tone",
]

F32 = NDArray[np.float32]

#: RMS level of programme phrases and bars before level variation (processed FM audio).
PROGRAMME_DBFS: Final = -15.0
#: Level of the breaths and room tone between phrases.
BREATH_DBFS: Final = -26.0
#: Level of a pause (room noise).
PAUSE_DBFS: Final = -65.0
#: Longest pause, its fades included (a DeadAir threshold is never shorter than 2 s).
MAX_PAUSE_S: Final = 1.25
#: Pauses are at least this far apart.
MIN_PAUSE_SPACING_S: Final = 10.0
#: Peaks are soft-limited to this (the processor's ceiling; no clipping).
PEAK_CEILING: Final = 0.89

_SEGMENT_GAIN_DB: Final = 2.0
_ITEM_GAIN_DB: Final = 2.5
_EDGE_S: Final = 0.005

# Vowel formants (Hz) of an adult male voice: F1, F2, F3.
_VOWELS: Final = np.array(
    [
        [730, 1090, 2440],  # a
        [270, 2290, 3010],  # i
        [300, 870, 2240],  # u
        [530, 1840, 2480],  # e
        [570, 840, 2410],  # o
        [660, 1720, 2410],  # æ
        [490, 1350, 1690],  # ɚ
    ],
    dtype=np.float64,
)
_BANDWIDTHS: Final = np.array([90.0, 110.0, 170.0])

# Diatonic triads (semitones above the key's root) of a I–V–vi–IV–ii world.
_CHORDS: Final = ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12), (2, 5, 9), (4, 7, 11))
_MAJOR: Final = (0, 2, 4, 5, 7, 9, 11)


def _db(x: float) -> float:
    return float(10.0 ** (x / 20.0))


def _rms(x: NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _limit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Soft limiter: linear below 60 % of the ceiling, tanh knee above, never over it."""
    c = PEAK_CEILING
    knee = 0.6 * c
    a = np.abs(x)
    over = a > knee
    if not over.any():
        return x
    out = x.copy()
    head = c - knee
    out[over] = np.sign(x[over]) * (knee + head * np.tanh((a[over] - knee) / head))
    return out


def _normalise(x: NDArray[np.float64], rms_dbfs: float) -> NDArray[np.float32]:
    r = _rms(x)
    y = x * (_db(rms_dbfs) / r) if r > 0 else x
    y = _limit(y)
    r2 = _rms(y)  # make up for what the limiter took
    if r2 > 0:
        y = _limit(y * (_db(rms_dbfs) / r2))
    return y.astype(np.float32)


def _edges(x: F32, rate: int, seconds: float = _EDGE_S) -> F32:
    """Short raised-cosine fade at both ends (no clicks at item boundaries)."""
    n = min(max(1, round(seconds * rate)), x.shape[0] // 2)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    y = x.copy()
    y[:n] *= ramp[:, None] if y.ndim == 2 else ramp
    y[-n:] *= ramp[::-1, None] if y.ndim == 2 else ramp[::-1]
    return y


def _resonator(freq: float, bw: float, rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two-pole resonator at ``freq`` with bandwidth ``bw``, unit gain at its peak (about)."""
    freq = min(freq, 0.45 * rate)
    r = math.exp(-math.pi * bw / rate)
    theta = 2.0 * math.pi * freq / rate
    a = np.array([1.0, -2.0 * r * math.cos(theta), r * r])
    b = np.array([(1.0 - r) * math.sqrt(1.0 - 2.0 * r * math.cos(2 * theta) + r * r)])
    return b, a


# --------------------------------------------------------------------------- speech


def _speech_phrase(rng: np.random.Generator, rate: int, female: bool) -> F32:
    n_syll = int(rng.integers(6, 20))
    durs = rng.uniform(0.14, 0.30, n_syll)
    bounds = np.concatenate([[0], np.cumsum(np.round(durs * rate).astype(np.int64))])
    n = int(bounds[-1])
    t = np.arange(n) / rate
    base = 205.0 if female else 115.0
    # Intonation: declination across the phrase, an accent per syllable, slow jitter.
    centres = (bounds[:-1] + bounds[1:]) / 2 / rate
    decl = np.linspace(1.12, 0.86, n_syll)
    accents = decl * (1.0 + rng.uniform(-0.08, 0.14, n_syll))
    f0 = base * np.interp(t, centres, accents)
    f0 *= 1.0 + 0.004 * np.sin(2 * np.pi * 5.3 * t + rng.uniform(0, 6.28))
    phase = np.cumsum(f0 / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    # Glottal tilt (−12 dB/octave above ~150 Hz) then lip radiation (+6 dB/octave).
    pole = math.exp(-2.0 * math.pi * 150.0 / rate)
    src = scipy.signal.lfilter([1.0], [1.0, -pole], pulses)
    src = scipy.signal.lfilter([1.0], [1.0, -pole], src)
    src = np.diff(src, prepend=0.0)
    # Formants change per syllable; each resonator keeps its state across syllables.
    scale = 1.17 if female else 1.0
    voiced = np.zeros(n)
    states = [np.zeros(2) for _ in range(3)]
    for k in range(n_syll):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        seg = src[lo:hi]
        vowel = _VOWELS[int(rng.integers(0, len(_VOWELS)))] * scale * rng.uniform(0.95, 1.05)
        out = np.zeros_like(seg)
        for j in range(3):
            b, a = _resonator(float(vowel[j]), float(_BANDWIDTHS[j]), rate)
            y, states[j] = scipy.signal.lfilter(b, a, seg, zi=states[j])
            out += y * (1.0, 0.6, 0.3)[j]
        voiced[lo:hi] = out
    # Syllabic envelope: a rounded bump per syllable over a floor (speech never drops
    # out within a phrase), a little longer attack than release.
    env = np.empty(n)
    for k in range(n_syll):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        pos = np.linspace(0.0, 1.0, hi - lo, endpoint=False)
        env[lo:hi] = np.sin(np.pi * np.clip(pos * 1.05, 0.0, 1.0)) ** 0.7
    env = 0.5 + 0.5 * env
    x = voiced / max(_rms(voiced), 1e-12) * env
    # Fricatives / plosives: short high-band noise at some syllable onsets.
    hb_b, hb_a = scipy.signal.butter(2, min(3500.0, 0.35 * rate) / (rate / 2), btype="high")
    for k in range(n_syll):
        if rng.random() < 0.45:
            lo = int(bounds[k])
            m = min(int(rng.uniform(0.04, 0.09) * rate), int(bounds[k + 1]) - lo)
            burst = scipy.signal.lfilter(hb_b, hb_a, rng.standard_normal(m))
            burst *= np.hanning(m) * rng.uniform(0.3, 0.7)
            x[lo : lo + m] += burst / max(_rms(burst), 1e-12) * 0.3
    return _edges(_normalise(x, PROGRAMME_DBFS), rate)


@functools.lru_cache(maxsize=8)
def _breath_filter(rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b, a = scipy.signal.butter(2, [300.0 / (rate / 2), min(2500.0, 0.45 * rate) / (rate / 2)], btype="band")
    return b, a


@functools.lru_cache(maxsize=8)
def _room_filter(rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b, a = scipy.signal.butter(2, 800.0 / (rate / 2), btype="low")
    return b, a


def _breath(rng: np.random.Generator, rate: int, seconds: float) -> F32:
    n = max(1, round(seconds * rate))
    x = scipy.signal.lfilter(*_breath_filter(rate), rng.standard_normal(n + 512))[512:]
    x *= 0.8 + 0.2 * np.hanning(n)
    out: F32 = (x / max(_rms(x), 1e-12) * _db(BREATH_DBFS)).astype(np.float32)
    return out


# --------------------------------------------------------------------------- music


def _partials(
    freq: np.ndarray, t: np.ndarray, amps: tuple[float, ...], rate: int, phase0: float
) -> NDArray[np.float64]:
    """Sum of harmonics ``amps`` of a (possibly time-varying) fundamental, band-limited."""
    ph = 2.0 * np.pi * (np.cumsum(freq) / rate) + phase0
    out = np.zeros_like(t)
    top = float(np.max(freq))
    for k, a in enumerate(amps, start=1):
        if k * top >= 0.45 * rate:
            break
        out += a * np.sin(k * ph)
    return out


def _music_bar(rng: np.random.Generator, rate: int, key: int, degree: int, tempo: float) -> F32:
    beat = 60.0 / tempo
    beats = 4
    n = round(beats * beat * rate)
    t = np.arange(n) / rate
    left = np.zeros(n)
    right = np.zeros(n)
    chord = _CHORDS[degree % len(_CHORDS)]

    def midi(m: float) -> float:
        return float(440.0 * 2.0 ** ((m - 69.0) / 12.0))

    # Pad: the chord in the middle register, slow attack, gentle tremolo, panned voices.
    pad_amps = (1.0, 0.5, 0.33, 0.2, 0.12)
    att = np.clip(t / 0.08, 0.0, 1.0)
    for i, st in enumerate(chord):
        f = np.full(n, midi(57 + key + st)) * (1.0 + 0.002 * np.sin(2 * np.pi * 4.5 * t + i))
        v = _partials(f, t, pad_amps, rate, rng.uniform(0, 6.28)) * att
        v *= 0.8 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + i)
        pan = (0.35, 0.5, 0.65)[i % 3]
        left += v * (1.0 - pan) * 0.6
        right += v * pan * 0.6
    # Bass: the root, one note per beat, plucked.
    for b in range(beats):
        lo = round(b * beat * rate)
        hi = min(n, round((b + 1) * beat * rate))
        tt = t[lo:hi] - t[lo]
        f = np.full(hi - lo, midi(40 + key + chord[0] + (0 if b % 2 == 0 else 7)))
        v = _partials(f, tt, (1.0, 0.6, 0.3, 0.15), rate, 0.0) * np.exp(-tt / 0.35)
        left[lo:hi] += 0.7 * v
        right[lo:hi] += 0.7 * v
    # Melody: eighth notes from the scale near the chord, piano-like decay.
    step = beat / 2
    for q in range(beats * 2):
        if rng.random() < 0.2:
            continue
        lo = round(q * step * rate)
        hi = min(n, round((q + 1.6) * step * rate))
        tt = t[lo:hi] - t[lo]
        note = 69 + key + _MAJOR[int(rng.integers(0, 7))] + (12 if rng.random() < 0.2 else 0)
        f = np.full(hi - lo, midi(note))
        v = _partials(f, tt, (1.0, 0.45, 0.3, 0.12, 0.08, 0.05), rate, 0.0)
        v *= np.minimum(tt / 0.006, 1.0) * np.exp(-tt / 0.28) * 0.55
        left[lo:hi] += v * 0.9
        right[lo:hi] += v * 1.1
    # Drums: kick on the beats, hi-hat on the off-beats.
    hb_b, hb_a = scipy.signal.butter(2, min(6000.0, 0.4 * rate) / (rate / 2), btype="high")
    for b in range(beats):
        lo = round(b * beat * rate)
        m = min(n - lo, round(0.18 * rate))
        tt = np.arange(m) / rate
        sweep = 2 * np.pi * np.cumsum(50.0 + 90.0 * np.exp(-tt / 0.03)) / rate
        kick = np.sin(sweep) * np.exp(-tt / 0.07) * 0.9
        left[lo : lo + m] += kick
        right[lo : lo + m] += kick
        lo2 = round((b + 0.5) * beat * rate)
        m2 = min(n - lo2, round(0.06 * rate))
        if m2 > 8:
            hat = scipy.signal.lfilter(hb_b, hb_a, rng.standard_normal(m2))
            hat *= np.exp(-np.arange(m2) / rate / 0.015)
            left[lo2 : lo2 + m2] += 0.12 * hat
            right[lo2 : lo2 + m2] += 0.18 * hat
    x = np.stack([left, right], axis=1)
    return _edges(_normalise(x, PROGRAMME_DBFS), rate)


# --------------------------------------------------------------------------- the bank


@dataclass(frozen=True, slots=True)
class Bank:
    """Synthesised material at one sample rate: mono speech phrases, stereo music bars."""

    rate: int
    speech_male: tuple[F32, ...]
    speech_female: tuple[F32, ...]
    music: tuple[F32, ...]


@functools.lru_cache(maxsize=4)
def bank(rate: int) -> Bank:
    """The material for ``rate`` (built once per process and rate; fixed seed)."""
    if not 8000 <= rate <= 192_000:
        raise ValueError(f"programme synthesis needs a rate of 8–192 kHz, got {rate}")
    rng = np.random.default_rng(0x616E626F)  # "anbo"
    male = tuple(_speech_phrase(rng, rate, female=False) for _ in range(8))
    female = tuple(_speech_phrase(rng, rate, female=True) for _ in range(8))
    music = []
    for key in (0, 5, 7, -3):
        tempo = float(rng.uniform(92, 124))
        for degree in range(4):
            music.append(_music_bar(rng, rate, key, (degree + key) % len(_CHORDS), tempo))
    return Bank(rate, male, female, tuple(music))


# --------------------------------------------------------------------------- sequencing


class AudioSource(Protocol):
    """Something that renders a target's programme, block after block."""

    rate: int
    channels: int

    def render(self, frames: int) -> F32: ...


class Programme:
    """One target's endless programme: talk and music segments, phrases, bars and pauses.

    ``talk_share`` is the share of segments that are talk (a news service talks more).
    :meth:`render` returns the next ``frames`` frames, shape ``(frames, channels)``.
    """

    def __init__(
        self, rate: int = 48_000, channels: int = 2, *, seed: int = 0, talk_share: float = 0.5
    ) -> None:
        if channels not in (1, 2):
            raise ValueError("programme audio has 1 or 2 channels")
        self.rate = rate
        self.channels = channels
        self.talk_share = talk_share
        self._bank = bank(rate)
        self._rng = np.random.default_rng(seed)
        self._female = bool(self._rng.random() < 0.5)
        self._queue: deque[F32] = deque()
        self._offset = 0
        self._segment_left = 0.0
        self._talk = True
        self._segment_gain = 1.0
        self._item_gain_db = 0.0
        self._since_pause = MIN_PAUSE_SPACING_S  # may pause at the first segment change
        self._music_at = int(self._rng.integers(0, len(self._bank.music)))
        #: Pauses made so far (start offset in frames from the first frame, length in frames).
        self.pauses: list[tuple[int, int]] = []
        self._made = 0

    # -- items
    def _stereo(self, x: F32) -> F32:
        if x.ndim == 1:
            x = x[:, None]
        if self.channels == 2 and x.shape[1] == 1:
            return np.repeat(x, 2, axis=1)
        if self.channels == 1 and x.shape[1] == 2:
            mono: F32 = x.mean(axis=1, keepdims=True, dtype=np.float32)
            return mono
        return x

    def _push(self, x: F32, gain: float = 1.0) -> None:
        y = self._stereo(x)
        if gain != 1.0:
            y = y * np.float32(gain)
        self._queue.append(y)
        self._made += y.shape[0]
        self._since_pause += y.shape[0] / self.rate
        self._segment_left -= y.shape[0] / self.rate

    def _pause(self) -> None:
        rng = self._rng
        seconds = float(rng.uniform(0.25, MAX_PAUSE_S - 2 * 0.03 - 0.1))
        n = round(seconds * self.rate)
        # Room tone: low-passed noise (ventilation, the studio), far below −40 dBFS.
        w = scipy.signal.lfilter(*_room_filter(self.rate), rng.standard_normal(n + 256))[256:]
        noise = (w / max(_rms(w), 1e-12) * _db(PAUSE_DBFS)).astype(np.float32)
        self.pauses.append((self._made, n))
        self._push(noise)
        self._since_pause = 0.0

    def _next_segment(self) -> None:
        rng = self._rng
        was_talk = self._talk
        self._talk = bool(rng.random() < self.talk_share)
        self._segment_left = float(rng.uniform(25, 90) if self._talk else rng.uniform(30, 120))
        self._segment_gain = _db(float(rng.uniform(-_SEGMENT_GAIN_DB, _SEGMENT_GAIN_DB)))
        if (
            (self._talk != was_talk or rng.random() < 0.5)
            and self._since_pause >= MIN_PAUSE_SPACING_S
            and rng.random() < 0.7
        ):
            self._pause()

    def _next_item(self) -> None:
        rng = self._rng
        if self._segment_left <= 0.0:
            self._next_segment()
        b = self._bank
        if self._talk:
            phrases = b.speech_female if self._female else b.speech_male
            if rng.random() < 0.15:  # a second voice
                phrases = b.speech_male if self._female else b.speech_female
            gain = self._segment_gain * _db(float(rng.uniform(-_ITEM_GAIN_DB, _ITEM_GAIN_DB)))
            self._push(phrases[int(rng.integers(0, len(phrases)))], gain)
            if self._since_pause >= MIN_PAUSE_SPACING_S and rng.random() < 0.04:
                self._pause()
            else:
                self._push(_breath(rng, self.rate, float(rng.uniform(0.12, 0.4))))
        else:
            self._item_gain_db = float(
                np.clip(self._item_gain_db + rng.uniform(-0.6, 0.6), -_ITEM_GAIN_DB, _ITEM_GAIN_DB)
            )
            # Bars follow each other in their progression, now and then jumping to another.
            if rng.random() < 0.2:
                self._music_at = int(rng.integers(0, len(b.music)))
            else:
                self._music_at = (self._music_at // 4) * 4 + (self._music_at + 1) % 4
            self._push(b.music[self._music_at], self._segment_gain * _db(self._item_gain_db))

    def render(self, frames: int) -> F32:
        out = np.empty((frames, self.channels), dtype=np.float32)
        filled = 0
        while filled < frames:
            if not self._queue:
                self._next_item()
                continue
            head = self._queue[0]
            take = min(frames - filled, head.shape[0] - self._offset)
            out[filled : filled + take] = head[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= head.shape[0]:
                self._queue.popleft()
                self._offset = 0
        if float(np.max(np.abs(out))) > 0.6 * PEAK_CEILING:  # gain variation pushed a peak up
            out = _limit(out.astype(np.float64)).astype(np.float32)
        return out


class WavError(Exception):
    """A WAV file cannot be used as programme; the message says why."""


class WavProgramme:
    """A WAV file played in a loop as a target's programme.

    Any PCM or float WAV; mono is duplicated to stereo, extra channels are dropped. A
    file at another sample rate is resampled once when loaded (up to 15 minutes).
    """

    MAX_RESAMPLE_S: Final = 900.0

    def __init__(self, path: Path, rate: int = 48_000, channels: int = 2) -> None:
        from monitor.audiofile import AudioFileError, read_wav

        self.rate = rate
        self.channels = channels
        try:
            file_rate, data = read_wav(path)
        except AudioFileError as exc:
            raise WavError(f"{path}: {exc}") from None
        if data.ndim == 1:
            data = data[:, None]
        if data.shape[0] == 0:
            raise WavError(f"{path}: no audio in the file")
        kind, size = data.dtype.kind, data.dtype.itemsize
        if kind == "f":
            offset, scale = 0.0, 1.0
        elif kind == "u" and size == 1:
            offset, scale = 128.0, 128.0
        elif kind == "i":
            offset, scale = 0.0, float(2 ** (8 * size - 1))
        else:
            raise WavError(f"{path}: unsupported sample format {data.dtype}")
        self._offset = offset
        self._scale = scale
        self._data = data
        if file_rate != rate:
            seconds = data.shape[0] / file_rate
            if seconds > self.MAX_RESAMPLE_S:
                raise WavError(
                    f"{path}: {file_rate} Hz; files at another rate than {rate} Hz are resampled "
                    f"in memory, up to {self.MAX_RESAMPLE_S:g} s (convert it first, e.g. "
                    f"ffmpeg -i in.wav -ar {rate} out.wav)"
                )
            g = math.gcd(file_rate, rate)
            x = (np.asarray(data, dtype=np.float64) - offset) / scale
            self._data = scipy.signal.resample_poly(x, rate // g, file_rate // g, axis=0).astype(np.float32)
            self._offset, self._scale = 0.0, 1.0
        self._pos = 0

    def render(self, frames: int) -> F32:
        data = self._data
        n = data.shape[0]
        idx = (self._pos + np.arange(frames)) % n
        self._pos = (self._pos + frames) % n
        x = (np.asarray(data[idx], dtype=np.float32) - np.float32(self._offset)) / np.float32(self._scale)
        if x.shape[1] >= self.channels:
            return np.ascontiguousarray(x[:, : self.channels])
        return np.repeat(x[:, :1], self.channels, axis=1)


# --------------------------------------------------------------------------- fault audio


def dead_air(rng: np.random.Generator, frames: int, channels: int, level_dbfs: float) -> F32:
    """Near silence: independent noise at ``level_dbfs`` RMS on each channel."""
    return (rng.standard_normal((frames, channels)) * _db(level_dbfs)).astype(np.float32)


@dataclass(slots=True)
class HissState:
    """Filter state of a de-emphasised noise generator (continuous across blocks)."""

    zi: NDArray[np.float64] | None = None


def hiss(
    rng: np.random.Generator,
    frames: int,
    channels: int,
    rate: int,
    level_dbfs: float,
    state: HissState,
    deemphasis_us: float = 50.0,
) -> F32:
    """What a receiver without carrier outputs: white FM noise through its de-emphasis
    (a first-order low-pass, 50 µs in China), at ``level_dbfs`` RMS."""
    tau = deemphasis_us * 1e-6
    p = math.exp(-1.0 / (rate * tau))
    b, a = [1.0 - p], [1.0, -p]
    w = rng.standard_normal((frames, channels))
    if state.zi is None:
        state.zi = np.zeros((1, channels))
    y, state.zi = scipy.signal.lfilter(b, a, w, axis=0, zi=state.zi)
    # The RMS of first-order low-passed unit white noise: sqrt((1-p)/(1+p)).
    gain = _db(level_dbfs) / math.sqrt((1.0 - p) / (1.0 + p))
    out: F32 = (y * gain).astype(np.float32)
    return out


def tone(start_frame: int, frames: int, channels: int, rate: int, freq: float, level_dbfs: float) -> F32:
    """A steady sine, phase-continuous from frame ``start_frame``, at ``level_dbfs`` RMS."""
    n = np.arange(start_frame, start_frame + frames, dtype=np.float64)
    x = math.sqrt(2.0) * _db(level_dbfs) * np.sin(2.0 * np.pi * freq * (n / rate))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)
