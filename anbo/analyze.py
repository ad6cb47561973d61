"""``anbo analyze FILE``: offline analysis of a recorded off-air audio file.

Stations keep off-air recordings; when a listener complains or the bureau asks about
an incident, the engineer runs the same kernels the daemon runs on live audio:
silence intervals (level and time hysteresis), levels, EBU R128 loudness (integrated,
range, momentary and short-term maxima), true peak, clipping.
WAV (PCM 8/16/24/32-bit, float; plain, extensible or BWF) is read in place, block by
block, so the memory does not grow with the recording's length; everything else station loggers
record (MP3, FLAC, Ogg, M4A, RF64...) is decoded by ffmpeg as a subprocess and streamed
in the same blocks. A progress bar shows on a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from monitor.audiofile import AudioFileError, open_audio
from probes.audio import SilenceDetector, channel_power, clipping_ratio
from probes.loudness import LoudnessMeter, TruePeakMeter

BLOCK_SECONDS = 10.0


#: The file cannot be analysed; the message says why (reading errors come from
#: monitor/audiofile.py, analysis errors from here: one exception for both).
AnalyzeError = AudioFileError


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
    warnings: list[str] = field(default_factory=list)
    #: Wall-clock time of the first sample (BWF ``bext``), if the file gives it.
    origin: datetime | None = None
    loudness_target_lufs: float | None = None
    #: False with ``--silence-only``: loudness and true peak were not measured.
    loudness_measured: bool = True

    @property
    def loudness_deviation_lu(self) -> float | None:
        """Integrated loudness minus the target (positive: too loud)."""
        if self.loudness_target_lufs is None or self.integrated_lufs is None:
            return None
        return _db(self.integrated_lufs - self.loudness_target_lufs)

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
            "loudness_measured": self.loudness_measured,
            "integrated_lufs": self.integrated_lufs,
            "loudness_range_lu": self.loudness_range_lu,
            "max_momentary_lufs": self.max_momentary_lufs,
            "max_short_term_lufs": self.max_short_term_lufs,
            "true_peak_dbtp": self.true_peak_dbtp,
            "loudness_target_lufs": self.loudness_target_lufs,
            "loudness_deviation_lu": self.loudness_deviation_lu,
            "origin": None if self.origin is None else self.origin.isoformat(timespec="milliseconds"),
            "warnings": self.warnings,
        }


#: BS.1770-4 channel weights for 5.1 in WAV / ffmpeg order (L, R, C, LFE, Ls, Rs):
#: the LFE channel does not count, the surrounds count +1.5 dB.
WEIGHTS_5_1: Final = (1.0, 1.0, 1.0, 0.0, 1.41, 1.41)
#: Channels the default weights cover: mono, stereo, L R C, L R C Ls Rs (probes' defaults), 5.1.
DEFAULT_CHANNELS: Final = 6


def default_weights(channels: int) -> tuple[float, ...]:
    """BS.1770 weights for 1 to 5 channels (L R C Ls Rs) and 5.1 (L R C LFE Ls Rs)."""
    if channels == 6:
        return WEIGHTS_5_1
    if channels > DEFAULT_CHANNELS:
        raise AnalyzeError(
            f"{channels}-channel audio: give the loudness weight of each channel with --channel-weights"
        )
    return (1.0, 1.0, 1.0, 1.41, 1.41)[:channels]


def analyze(
    path: Path,
    *,
    silence_on_dbfs: float = -40.0,
    silence_off_dbfs: float | None = None,
    min_silence: float = 2.0,
    min_programme: float = 1.0,
    channel_weights: Sequence[float] | None = None,
    loudness_target: float | None = None,
    silence_only: bool = False,
    progress: Callable[[float, float], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Report:
    """Analyse a recording. ``progress``, if given, is called with (done_s, total_s);
    ``warn`` with each warning as it is found (they are in the report too).
    ``silence_only``: silences and levels (RMS, peak, clipping), no loudness or true peak
    (the common question, "where were the gaps?", answered in one light pass)."""
    audio = open_audio(path)
    rate, channels = audio.rate, audio.channels
    weights = default_weights(channels) if channel_weights is None else tuple(channel_weights)
    if len(weights) != channels:
        raise AnalyzeError(f"{len(weights)} channel weights given for {channels}-channel audio")
    off = silence_on_dbfs + 10.0 if silence_off_dbfs is None else silence_off_dbfs
    if off < silence_on_dbfs:
        raise AnalyzeError("the silence off threshold must be at or above the on threshold")
    detector = SilenceDetector(on_dbfs=silence_on_dbfs, off_dbfs=off, on_s=min_silence, off_s=min_programme)
    meter = LoudnessMeter(channel_weights=weights)
    true_peak = TruePeakMeter()
    report = Report(str(path), rate, channels, audio.frames / rate, audio.sample_format)
    report.origin = audio.origin
    report.loudness_target_lufs = loudness_target
    energy = np.zeros(channels)
    peak = np.zeros(channels)
    clipped = 0
    max_m = max_s = -math.inf
    block = max(1, int(BLOCK_SECONDS * rate))
    frames = 0
    for warning in audio.warnings:
        if warn is not None:
            warn(warning)
    seen_warnings = len(audio.warnings)
    for x in audio.blocks(block):
        if not np.isfinite(x).all():
            raise AnalyzeError(f"non-finite samples near {frames / rate:.1f} s")
        ts = frames / rate  # times are seconds from the start of the file
        update = detector.process(x, rate, ts)
        report.silences.extend(_interval(i.start, i.end) for i in update.closed)
        if silence_only:
            pass
        elif (loud := meter.process(x, rate, ts)).momentary.size:
            max_m = max(max_m, float(np.nanmax(loud.momentary, initial=-math.inf)))
            max_s = max(max_s, float(np.nanmax(loud.short_term, initial=-math.inf)))
        if not silence_only:
            true_peak.process(x, rate, ts)
        power = channel_power(x)  # Σx² and max x² per channel, one pass
        energy += power[0]
        peak = np.maximum(peak, np.sqrt(power[1]))
        clipped += int(clipping_ratio(x).sum() * x.shape[0])
        frames += x.shape[0]
        if progress is not None:
            progress(frames / rate, max(frames, audio.frames) / rate)
    for warning in audio.warnings[seen_warnings:]:
        if warn is not None:
            warn(warning)
    report.warnings = list(audio.warnings)
    if frames == 0:
        raise AnalyzeError("the file holds no audio")
    report.duration = frames / rate
    open_silence = detector.open_interval
    if open_silence is not None:  # silent to the very end of the recording
        report.silences.append(_interval(open_silence.start, frames / rate))
    if audio.origin is not None:
        for s in report.silences:
            s["wall_start"] = (audio.origin + timedelta(seconds=s["start"])).isoformat(
                timespec="milliseconds"
            )
            s["wall_end"] = (audio.origin + timedelta(seconds=s["end"])).isoformat(timespec="milliseconds")
    report.rms_dbfs = [_db(10 * math.log10(e / frames)) if e > 0 else -120.0 for e in energy]
    report.peak_dbfs = [_db(20 * math.log10(p)) if p > 0 else -120.0 for p in peak]
    report.clip_ratio = clipped / (frames * channels)
    if silence_only:
        report.loudness_measured = False
        return report
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
        wall = f"  at {s['wall_start']} – {s['wall_end']}" if "wall_start" in s else ""
        lines.append(f"  {_clock(s['start'])} – {_clock(s['end'])}  ({s['duration']:.1f} s){wall}")
    lines += [
        "",
        "Levels:    RMS "
        + " / ".join(f"{v:.1f}" for v in report.rms_dbfs)
        + " dBFS, peak "
        + " / ".join(f"{v:.1f}" for v in report.peak_dbfs)
        + " dBFS (per channel)",
        f"Clipping:  {100 * report.clip_ratio:.3f} % of samples at full scale",
    ]
    if not report.loudness_measured:
        lines.append("Loudness and true peak: not measured (--silence-only)")
    else:
        lines += _loudness_lines(report)
    if report.origin is not None:
        lines.insert(
            1, f"Recorded from {report.origin.isoformat(sep=' ', timespec='milliseconds')} (BWF bext)"
        )
    return "\n".join(lines)


def _loudness_lines(report: Report) -> list[str]:
    lines = [
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
    if report.loudness_target_lufs is not None:
        deviation = report.loudness_deviation_lu
        lines.append(
            f"Target:    {report.loudness_target_lufs:.1f} LUFS: "
            + ("n/a" if deviation is None else f"{deviation:+.1f} LU")
        )
    return lines


def _lufs(value: float | None) -> str:
    return "n/a (too short or too quiet)" if value is None else f"{value:.1f} LUFS"
