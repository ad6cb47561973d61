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

import json
import math
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from probes.audio import SilenceDetector, channel_power, clipping_ratio
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


@dataclass(slots=True)
class Audio:
    """An opened recording: its format and a reader of float32 (frames, channels) blocks in ±1.0."""

    rate: int
    channels: int
    sample_format: str
    #: Frames expected (for progress and the duration when the reader is cut short).
    frames: int
    blocks: Callable[[int], Iterator[NDArray[np.float32]]]
    warnings: list[str] = field(default_factory=list)
    #: Wall-clock time of the first sample (BWF ``bext`` origination), when the file says.
    origin: datetime | None = None


# ------------------------------------------------------------------------------- WAV
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: Path) -> tuple[int, NDArray[np.float32]]:
    """A whole WAV file as (rate, float32 (frames, channels) array in ±1.0); for short files
    (the simulator's programme loops)."""
    if not path.is_file():
        raise AnalyzeError("no such file")
    try:
        audio = open_wav(path)
    except struct.error:
        raise AnalyzeError("not a WAV file anbo can read (a chunk header is cut short)") from None
    if audio is None:
        raise AnalyzeError("not a PCM or float WAV file")
    return audio.rate, np.concatenate(list(audio.blocks(max(1, audio.frames))))


def open_wav(path: Path) -> Audio | None:
    """Open a RIFF WAV file (PCM 8/16/24/32-bit or IEEE float, plain or extensible) read
    block by block; None when it is a WAV whose codec ffmpeg must decode.

    A data chunk longer than the file (a recorder that died, a copy cut short) is read
    up to the cut, with a warning.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise AnalyzeError("not a WAV file anbo can read (no RIFF/WAVE header)")
        fmt: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block_align, bits
        origin: datetime | None = None
        data: tuple[int, int] | None = None  # offset, declared size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            body = pos + 8
            if chunk_id == b"fmt ":
                raw = fh.read(min(chunk_size, 40))
                if len(raw) < 16:
                    raise AnalyzeError("not a WAV file anbo can read (short fmt chunk)")
                tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", raw[:16])
                if tag == _EXTENSIBLE and len(raw) >= 26:
                    tag = struct.unpack("<H", raw[24:26])[0]  # the sub-format GUID's first field
                fmt = (tag, channels, rate, block_align, bits)
            elif chunk_id == b"bext":
                origin = _bext_origin(fh.read(min(chunk_size, 346)), fmt[2] if fmt else 0)
            elif chunk_id == b"data":
                data = (body, chunk_size)
                if fmt is not None and body + chunk_size >= size:
                    break  # the audio runs to the end of the file (or past it: cut short)
            pos = body + chunk_size + (chunk_size & 1)
    if fmt is None or data is None:
        raise AnalyzeError(f"not a WAV file anbo can read (no {'fmt' if fmt is None else 'data'} chunk)")
    tag, channels, rate, block_align, bits = fmt
    if tag not in (_PCM, _FLOAT):
        return None  # e.g. MPEG or ADPCM inside a WAV: ffmpeg decodes it
    if channels == 0 or rate <= 0:
        raise AnalyzeError(f"not a WAV file anbo can read ({channels} channels at {rate} Hz)")
    width = {8: 1, 16: 2, 24: 3, 32: 4, 64: 8}.get(bits)
    if width is None or (tag == _FLOAT and bits not in (32, 64)) or block_align != width * channels:
        raise AnalyzeError(f"unsupported sample format: {bits}-bit {'float' if tag == _FLOAT else 'PCM'}")
    offset, declared = data
    warnings: list[str] = []
    available = max(0, size - offset)
    frames = declared // block_align
    if declared in (0, 0xFFFFFFFF) and available:
        frames = available // block_align  # a recorder that never wrote the final size
        warnings.append("the data chunk has no size (recording not finalised); read to the end of the file")
    elif declared > available:
        frames = available // block_align
        warnings.append(
            f"the file is cut short: {declared // block_align / rate:.3f} s declared, "
            f"{frames / rate:.3f} s present; analysed up to the cut"
        )
    if frames == 0:
        raise AnalyzeError("the file holds no audio")
    if tag == _FLOAT:
        name, dtype, shift, divisor = f"float{bits}", np.dtype(f"<f{width}"), 0.0, 1.0
    elif bits == 8:
        name, dtype, shift, divisor = "uint8", np.dtype("u1"), 128.0, 128.0
    elif bits == 24:
        name, dtype, shift, divisor = "int24", np.dtype("u1"), 0.0, float(2**23)
    else:
        name, dtype, shift, divisor = f"int{bits}", np.dtype(f"<i{width}"), 0.0, float(2 ** (bits - 1))

    def blocks(block: int) -> Iterator[NDArray[np.float32]]:
        cols = channels * (3 if bits == 24 else 1)
        # Read block by block (not a memory map, whose pages would stay resident: the
        # memory would grow with the file's length).
        with path.open("rb") as fh:
            fh.seek(offset)
            for start in range(0, frames, block):
                count = min(block, frames - start)
                raw = np.fromfile(fh, dtype=dtype, count=count * cols).reshape(-1, cols)
                if raw.shape[0] < count:
                    return  # the file shrank while being read
                yield _convert(raw)

    def _convert(raw: NDArray[Any]) -> NDArray[np.float32]:
        if bits == 24:
            b = raw.reshape(raw.shape[0], channels, 3).astype(np.int32)
            ints = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
            x = (ints - ((ints & 0x800000) << 1)).astype(np.float32)
        else:
            x = raw.astype(np.float32)
        if shift:
            x -= shift
        x /= divisor
        return x

    return Audio(rate, channels, name, frames, blocks, warnings, origin)


def _bext_origin(raw: bytes, rate: int) -> datetime | None:
    """BWF ``bext``: OriginationDate/Time, refined by TimeReference (samples since midnight)."""
    if len(raw) < 346:
        return None
    date = raw[320:330].decode("ascii", "replace")
    clock = raw[330:338].decode("ascii", "replace")
    reference = struct.unpack("<Q", raw[338:346])[0]
    try:
        day = datetime.strptime(date.replace("/", "-").replace(":", "-"), "%Y-%m-%d")
    except ValueError:
        return None
    if reference and rate > 0:
        return day + timedelta(seconds=reference / rate)
    try:
        t = datetime.strptime(clock.replace("-", ":").replace(".", ":"), "%H:%M:%S")
    except ValueError:
        return day
    return day.replace(hour=t.hour, minute=t.minute, second=t.second)


# ---------------------------------------------------------------------------- ffmpeg
def read_with_ffmpeg(path: Path) -> Audio:
    """Any format ffmpeg decodes (MP3, FLAC, Ogg, M4A, RF64...): format from ffprobe, then
    the first audio stream decoded to float32 at its own rate and channel count, streamed."""
    ffprobe, ffmpeg = shutil.which("ffprobe"), shutil.which("ffmpeg")
    if ffprobe is None or ffmpeg is None:
        raise AnalyzeError("not a WAV file, and decoding other formats needs ffmpeg/ffprobe on PATH")
    probe = subprocess.run(
        [
            ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,sample_fmt,bits_per_raw_sample,bits_per_sample"
            ":format=duration,format_name",
            str(path),
        ],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        info = json.loads(probe.stdout or "{}")
        stream = info["streams"][0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (ValueError, KeyError, IndexError, TypeError):
        why = (probe.stderr.strip().splitlines() or ["no audio stream"])[-1].removeprefix(f"{path}: ")
        raise AnalyzeError(f"not an audio file anbo can read (ffprobe: {why})") from None
    if rate <= 0 or channels <= 0:
        raise AnalyzeError(f"not an audio file anbo can read ({channels} channels at {rate} Hz)")
    codec = str(stream.get("codec_name", "?"))
    bits = int(stream.get("bits_per_raw_sample") or stream.get("bits_per_sample") or 0)
    lossless = codec in {"flac", "alac", "wavpack", "tta"} or codec.startswith("pcm_")
    name = f"{codec} int{bits}" if lossless and bits else codec
    try:
        duration = float(info.get("format", {}).get("duration", "nan"))
    except ValueError:
        duration = math.nan
    frames = int(duration * rate) if math.isfinite(duration) and duration > 0 else 0
    audio = Audio(rate, channels, name, frames, lambda block: iter(()))

    def blocks(block: int) -> Iterator[NDArray[np.float32]]:
        cmd = [
            ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
            "-f", "f32le", "-acodec", "pcm_f32le", "-",
        ]  # fmt: skip
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL) as proc,
        ):
            assert proc.stdout is not None
            got = 0
            try:
                size = block * channels * 4
                while True:
                    buf = proc.stdout.read(size)
                    usable = len(buf) - len(buf) % (channels * 4)
                    if usable:
                        got += usable // (channels * 4)
                        yield np.frombuffer(buf[:usable], dtype="<f4").reshape(-1, channels).copy()
                    if len(buf) < size:
                        break
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            err.seek(0)
            problem = err.read().decode("utf-8", "replace").strip().splitlines()
            if proc.returncode != 0 or problem:
                why = problem[-1] if problem else f"ffmpeg exited with {proc.returncode}"
                if got == 0:
                    raise AnalyzeError(f"cannot decode the audio (ffmpeg: {why})")
                audio.warnings.append(
                    f"the decoder stopped early or found damage ({why}); analysed what it gave"
                )

    audio.blocks = blocks
    return audio


def open_audio(path: Path) -> Audio:
    """The recording at ``path``: WAV read directly, anything else through ffmpeg."""
    if path.is_dir():
        raise AnalyzeError("is a directory, not an audio file")
    if not path.exists():
        raise AnalyzeError("no such file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
        if not magic:
            raise AnalyzeError("the file is empty")
        if magic == b"RIFF":
            audio = open_wav(path)
            if audio is not None:
                return audio
        return read_with_ffmpeg(path)
    except OSError as exc:
        raise AnalyzeError(f"cannot read: {exc.strerror or exc}") from None
    except struct.error:
        raise AnalyzeError("not a WAV file anbo can read (a chunk header is cut short)") from None


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
