"""``anbo analyze FILE``: offline analysis of a recorded off-air audio file.

Stations keep off-air recordings; when a listener complains or the bureau asks about
an incident, the engineer runs the same kernels the daemon runs on live audio:
silence intervals (level and time hysteresis), levels, EBU R128 loudness (integrated,
range, momentary and short-term maxima), true peak, clipping.
The file is read through a memory map in blocks, so an hour-long recording needs
little memory, and a progress bar shows on a terminal.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile
from numpy.typing import NDArray

from probes.audio import SilenceDetector, clipping_ratio
from probes.loudness import LoudnessMeter, TruePeakMeter

BLOCK_SECONDS = 10.0


class AnalyzeError(Exception):
    """The file cannot be analysed; the message says why."""


@dataclass(slots=True)
class Report:
    path: str
    rate: int
    channels: int
    duration: float
    sample_format: str
    silences: list[dict[str, Any]] = field(default_factory=list)
    rms_dbfs: list[float] = field(default_factory=list)
    peak_dbfs: list[float] = field(default_factory=list)
    clip_ratio: float = 0.0
    integrated_lufs: float | None = None
    loudness_range_lu: float | None = None
    max_momentary_lufs: float | None = None
    max_short_term_lufs: float | None = None
    true_peak_dbtp: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "rate": self.rate,
            "channels": self.channels,
            "duration": self.duration,
            "sample_format": self.sample_format,
            "silences": self.silences,
            "silence_total": round(sum(s["duration"] for s in self.silences), 3),
            "rms_dbfs": self.rms_dbfs,
            "peak_dbfs": self.peak_dbfs,
            "clip_ratio": self.clip_ratio,
            "integrated_lufs": self.integrated_lufs,
            "loudness_range_lu": self.loudness_range_lu,
            "max_momentary_lufs": self.max_momentary_lufs,
            "max_short_term_lufs": self.max_short_term_lufs,
            "true_peak_dbtp": self.true_peak_dbtp,
        }


def _scale(data: NDArray[Any]) -> tuple[str, float, float]:
    """Sample format name, offset and divisor that map the file's samples to ±1.0."""
    kind, size = data.dtype.kind, data.dtype.itemsize
    if kind == "f":
        return f"float{8 * size}", 0.0, 1.0
    if kind == "u" and size == 1:
        return "uint8", 128.0, 128.0
    if kind == "i":
        # scipy returns 24-bit PCM left-aligned in int32.
        return f"int{8 * size}", 0.0, float(2 ** (8 * size - 1))
    raise AnalyzeError(f"unsupported sample format {data.dtype}")


def read_wav(path: Path) -> tuple[int, NDArray[Any]]:
    """Open a WAV file (PCM 8/16/24/32-bit or IEEE float) as a (frames, channels) array."""
    if not path.is_file():
        raise AnalyzeError("no such file")
    try:
        with warnings.catch_warnings():
            # Chunks scipy does not know (LIST/INFO metadata from recorders) are skipped.
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            try:
                rate, data = scipy.io.wavfile.read(path, mmap=True)
            except ValueError as exc:
                if "mmap" not in str(exc):
                    raise
                rate, data = scipy.io.wavfile.read(path)  # 24-bit PCM cannot be memory-mapped
    except Exception as exc:
        # scipy's reader fails on corrupt files with ValueError, struct.error, EOFError,
        # even UnboundLocalError: all of them mean "not a file we can read".
        raise AnalyzeError(f"not a WAV file anbo can read ({type(exc).__name__}: {exc})") from None
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[0] == 0:
        raise AnalyzeError("the file holds no audio")
    if rate <= 0:
        raise AnalyzeError(f"bad sample rate {rate}")
    return int(rate), data


def analyze(
    path: Path,
    *,
    silence_on_dbfs: float = -40.0,
    silence_off_dbfs: float | None = None,
    min_silence: float = 2.0,
    min_programme: float = 1.0,
    progress: Any = None,
) -> Report:
    """Analyse a WAV file. ``progress``, if given, is called with (done_s, total_s)."""
    rate, data = read_wav(path)
    fmt, offset, divisor = _scale(data)
    frames, channels = data.shape
    off = silence_on_dbfs + 10.0 if silence_off_dbfs is None else silence_off_dbfs
    if off < silence_on_dbfs:
        raise AnalyzeError("the silence off threshold must be at or above the on threshold")
    detector = SilenceDetector(on_dbfs=silence_on_dbfs, off_dbfs=off, on_s=min_silence, off_s=min_programme)
    meter = LoudnessMeter()
    true_peak = TruePeakMeter()
    report = Report(str(path), rate, channels, frames / rate, fmt)
    energy = np.zeros(channels)
    peak = np.zeros(channels)
    clipped = 0
    max_m = max_s = -math.inf
    block = max(1, int(BLOCK_SECONDS * rate))
    t0 = 0.0  # times are seconds from the start of the file
    for start in range(0, frames, block):
        raw = np.asarray(data[start : start + block])
        x = raw.astype(np.float32)
        if offset:
            x -= offset
        x /= divisor
        if not np.isfinite(x).all():
            raise AnalyzeError(f"non-finite samples near {start / rate:.1f} s")
        ts = t0 + start / rate
        update = detector.process(x, rate, ts)
        report.silences.extend(_interval(i.start, i.end) for i in update.closed)
        loud = meter.process(x, rate, ts)
        true_peak.process(x, rate, ts)
        if loud.momentary.size:
            max_m = max(max_m, float(np.nanmax(loud.momentary, initial=-math.inf)))
            max_s = max(max_s, float(np.nanmax(loud.short_term, initial=-math.inf)))
        x64 = x.astype(np.float64)
        energy += np.einsum("ij,ij->j", x64, x64)
        peak = np.maximum(peak, np.abs(x).max(axis=0))
        clipped += int(clipping_ratio(x).sum() * x.shape[0])
        if progress is not None:
            progress(min(frames, start + block) / rate, frames / rate)
    open_silence = detector.open_interval
    if open_silence is not None:  # silent to the very end of the recording
        report.silences.append(_interval(open_silence.start, frames / rate))
    report.rms_dbfs = [_db(10 * math.log10(e / frames)) if e > 0 else -120.0 for e in energy]
    report.peak_dbfs = [_db(20 * math.log10(p)) if p > 0 else -120.0 for p in peak]
    report.clip_ratio = clipped / (frames * channels)
    integrated = meter.integrated_lufs
    report.integrated_lufs = _db(integrated) if math.isfinite(integrated) else None
    lra = meter.loudness_range_lu
    report.loudness_range_lu = _db(lra) if math.isfinite(lra) else None
    report.true_peak_dbtp = [_db(v) for v in true_peak.true_peak_dbtp]
    report.max_momentary_lufs = _db(max_m) if math.isfinite(max_m) else None
    report.max_short_term_lufs = _db(max_s) if math.isfinite(max_s) else None
    return report


def _db(x: float) -> float:
    return round(x, 2)


def _interval(start: float, end: float) -> dict[str, Any]:
    return {"start": round(start, 3), "end": round(end, 3), "duration": round(end - start, 3)}


def _clock(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def format_report(report: Report) -> str:
    lines = [
        f"{report.path}: {_clock(report.duration)} of {report.channels}-channel {report.sample_format} "
        f"at {report.rate} Hz",
        "",
        f"Silences ({len(report.silences)}, {sum(s['duration'] for s in report.silences):.1f} s in all):",
    ]
    if not report.silences:
        lines.append("  none")
    for s in report.silences:
        lines.append(f"  {_clock(s['start'])} – {_clock(s['end'])}  ({s['duration']:.1f} s)")
    lines += [
        "",
        "Levels:    RMS "
        + " / ".join(f"{v:.1f}" for v in report.rms_dbfs)
        + " dBFS, peak "
        + " / ".join(f"{v:.1f}" for v in report.peak_dbfs)
        + " dBFS (per channel)",
        f"Clipping:  {100 * report.clip_ratio:.3f} % of samples at full scale",
        "Loudness:  integrated "
        + _lufs(report.integrated_lufs)
        + ", range "
        + ("n/a" if report.loudness_range_lu is None else f"{report.loudness_range_lu:.1f} LU")
        + ", max momentary "
        + _lufs(report.max_momentary_lufs)
        + ", max short-term "
        + _lufs(report.max_short_term_lufs),
        "True peak: " + " / ".join(f"{v:.1f}" for v in report.true_peak_dbtp) + " dBTP (per channel)",
    ]
    return "\n".join(lines)


def _lufs(value: float | None) -> str:
    return "n/a (too short or too quiet)" if value is None else f"{value:.1f} LUFS"
