"""Test signals shared by the probe tests, and checks that they are what they claim.

All generators return ``float32`` arrays of shape ``(frames, channels)``, full scale 1.0,
the convention of the wire decoder.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
from numpy.typing import NDArray

RATE = 48000


def sine(
    freq: float,
    seconds: float,
    level_dbfs_peak: float = 0.0,
    rate: int = RATE,
    channels: int = 1,
    phase: float = 0.0,
) -> NDArray[np.float32]:
    """A sine of peak amplitude ``level_dbfs_peak`` dBFS on every channel."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    x = 10.0 ** (level_dbfs_peak / 20.0) * np.sin(2.0 * np.pi * freq * t + phase)
    out: NDArray[np.float32] = np.repeat(x[:, None], channels, axis=1).astype(np.float32)
    return out


def white_noise(
    seconds: float, rms_dbfs: float, rate: int = RATE, channels: int = 1, seed: int = 0
) -> NDArray[np.float32]:
    """Independent Gaussian white noise per channel at ``rms_dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    x = rng.standard_normal((n, channels)) * 10.0 ** (rms_dbfs / 20.0)
    out: NDArray[np.float32] = x.astype(np.float32)
    return out


def pink_noise(
    seconds: float, rms_dbfs: float, rate: int = RATE, channels: int = 1, seed: int = 0
) -> NDArray[np.float32]:
    """Approximately pink noise (−3 dB/octave, Kellet's three-pole filter) at ``rms_dbfs``."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    w = rng.standard_normal((n, channels))
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    x = scipy.signal.lfilter(b, a, w, axis=0)
    x *= 10.0 ** (rms_dbfs / 20.0) / np.sqrt(np.mean(x * x))
    out: NDArray[np.float32] = x.astype(np.float32)
    return out


def deemphasised_noise(
    seconds: float, rms_dbfs: float, tau_us: float = 50.0, rate: int = RATE, seed: int = 0
) -> NDArray[np.float32]:
    """White noise through FM de-emphasis (first-order low-pass, time constant ``tau_us``).

    This is what an FM receiver outputs when it has lost the carrier.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    w = rng.standard_normal((n, 1))
    # Bilinear transform of 1 / (1 + s·τ).
    b, a = scipy.signal.bilinear([1.0], [tau_us * 1e-6, 1.0], fs=rate)
    x = scipy.signal.lfilter(b, a, w, axis=0)
    x *= 10.0 ** (rms_dbfs / 20.0) / np.sqrt(np.mean(x * x))
    # Keep it band-limited to the 15 kHz of FM audio, as a receiver does.
    sos = scipy.signal.butter(8, 15000.0, fs=rate, output="sos")
    out: NDArray[np.float32] = scipy.signal.sosfilt(sos, x, axis=0).astype(np.float32)
    return out


def programme(
    seconds: float,
    rms_dbfs: float = -20.0,
    rate: int = RATE,
    channels: int = 2,
    seed: int = 0,
) -> NDArray[np.float32]:
    """Programme-like audio: notes with harmonics and decays, plus percussive noise bursts.

    Level moves by several dB from one 50 ms frame to the next, the spectrum is far from
    flat and changes every few hundred milliseconds, and the channels are related but
    not identical (a stereo mix). The overall RMS is ``rms_dbfs``.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    note_s = 0.3
    seg = (t / note_s).astype(np.int64)
    n_seg = int(seg[-1]) + 1 if n else 1
    scale = 220.0 * 2.0 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12.0)
    f0 = scale[rng.integers(0, scale.size, n_seg)][seg]
    in_note = t - seg * note_s
    envelope = np.exp(-in_note / 0.12) * (0.3 + rng.uniform(0.0, 1.0, n_seg)[seg])
    tone = sum(np.sin(2.0 * np.pi * k * f0 * t) / k for k in range(1, 6))
    beat = np.exp(-((t % 0.6) / 0.03))
    hits = rng.standard_normal(n) * beat * 0.6
    out = np.empty((n, channels))
    for ch in range(channels):
        pan = 1.0 - 0.3 * ch
        out[:, ch] = pan * tone * envelope + (1.3 - pan) * hits
    out *= 10.0 ** (rms_dbfs / 20.0) / np.sqrt(np.mean(out * out))
    return out.astype(np.float32)


def rms_db(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Reference per-channel RMS dBFS computed in float64, no floor."""
    y = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(10.0 * np.log10(np.mean(y * y, axis=0)), dtype=np.float64)


# --------------------------------------------------------------------------- checks


def test_sine_peak_and_rms_are_as_specified() -> None:
    x = sine(1000.0, 1.0, level_dbfs_peak=-6.0, channels=2)
    assert x.shape == (RATE, 2)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.abs(x).max(axis=0), 10 ** (-6 / 20), rtol=1e-6)
    np.testing.assert_allclose(rms_db(x), -6.0 - 3.0103, atol=1e-3)


def test_noise_generators_hit_their_rms() -> None:
    np.testing.assert_allclose(rms_db(white_noise(2.0, -30.0, channels=2)), -30.0, atol=0.05)
    np.testing.assert_allclose(rms_db(pink_noise(2.0, -25.0)), -25.0, atol=1e-3)
    np.testing.assert_allclose(rms_db(programme(3.0, -18.0)).max(), -17.0, atol=1.5)


def test_pink_noise_falls_about_3_db_per_octave() -> None:
    x = pink_noise(20.0, -20.0)[:, 0]
    f, p = scipy.signal.welch(x, fs=RATE, nperseg=8192)
    low = p[(f >= 500) & (f < 1000)].mean()
    high = p[(f >= 1000) & (f < 2000)].mean()
    octave_drop = 10 * np.log10(low / high)
    assert 2.0 < octave_drop < 4.0


def test_programme_level_moves_between_frames() -> None:
    x = programme(5.0)[:, 0].astype(np.float64)
    frames = x[: (x.size // 2400) * 2400].reshape(-1, 2400)
    levels = 10 * np.log10(np.mean(frames**2, axis=1))
    assert levels.std() > 3.0
