"""Recorded audio files: WAV (PCM 8/16/24/32-bit, float; plain, extensible, BWF with
its ``bext`` origination time) read in place block by block, everything else station
loggers record (MP3, FLAC, Ogg, M4A, RF64...) decoded by ffmpeg as a subprocess and
streamed in the same blocks.

Used by ``anbo analyze`` and by the simulator's ``--wav`` programme; the daemon itself
reads no files (it takes audio over MQTT). Errors are :class:`AudioFileError`, one line
saying why.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray


class AudioFileError(Exception):
    """The file cannot be read as audio; the message says why."""


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
        raise AudioFileError("no such file")
    try:
        audio = open_wav(path)
    except struct.error:
        raise AudioFileError("not a WAV file anbo can read (a chunk header is cut short)") from None
    if audio is None:
        raise AudioFileError("not a PCM or float WAV file")
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
            raise AudioFileError("not a WAV file anbo can read (no RIFF/WAVE header)")
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
                    raise AudioFileError("not a WAV file anbo can read (short fmt chunk)")
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
        raise AudioFileError(f"not a WAV file anbo can read (no {'fmt' if fmt is None else 'data'} chunk)")
    tag, channels, rate, block_align, bits = fmt
    if tag not in (_PCM, _FLOAT):
        return None  # e.g. MPEG or ADPCM inside a WAV: ffmpeg decodes it
    if channels == 0 or rate <= 0:
        raise AudioFileError(f"not a WAV file anbo can read ({channels} channels at {rate} Hz)")
    width = {8: 1, 16: 2, 24: 3, 32: 4, 64: 8}.get(bits)
    if width is None or (tag == _FLOAT and bits not in (32, 64)) or block_align != width * channels:
        raise AudioFileError(f"unsupported sample format: {bits}-bit {'float' if tag == _FLOAT else 'PCM'}")
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
        raise AudioFileError("the file holds no audio")
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
        raise AudioFileError("not a WAV file, and decoding other formats needs ffmpeg/ffprobe on PATH")
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
        raise AudioFileError(f"not an audio file anbo can read (ffprobe: {why})") from None
    if rate <= 0 or channels <= 0:
        raise AudioFileError(f"not an audio file anbo can read ({channels} channels at {rate} Hz)")
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

    # 16-bit (or narrower) lossless sources come as s16le: half the bytes through the
    # pipe of float32, nothing lost, converted here as the WAV reader converts.
    narrow = lossless and 0 < bits <= 16
    wire, dtype, width = ("s16le", np.dtype("<i2"), 2) if narrow else ("f32le", np.dtype("<f4"), 4)

    def blocks(block: int) -> Iterator[NDArray[np.float32]]:
        cmd = [
            ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
            "-f", wire, "-acodec", f"pcm_{wire}", "-",
        ]  # fmt: skip
        frame_bytes = channels * width
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, bufsize=0
            ) as proc,
        ):
            assert proc.stdout is not None
            pipe = cast("io.FileIO", proc.stdout)  # bufsize=0: the pipe itself
            _widen_pipe(pipe.fileno())
            got = 0
            try:
                while True:
                    # Straight from the pipe into the block's own array: one copy.
                    raw = np.empty((block, channels), dtype=dtype)
                    buf = raw.data.cast("B")
                    filled = 0
                    while filled < len(buf):
                        n = pipe.readinto(buf[filled:])
                        if not n:
                            break
                        filled += n
                    frames_read = filled // frame_bytes
                    if frames_read:
                        got += frames_read
                        part = raw[:frames_read]
                        if narrow:
                            x = part.astype(np.float32)
                            x *= np.float32(1.0 / 32768.0)  # exact: a power of two
                            yield x
                        else:
                            yield part
                    if filled < len(buf):
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
                    raise AudioFileError(f"cannot decode the audio (ffmpeg: {why})")
                audio.warnings.append(
                    f"the decoder stopped early or found damage ({why}); analysed what it gave"
                )

    audio.blocks = blocks
    return audio


#: Linux's F_SETPIPE_SZ (fcntl has the name from Python 3.10 on Linux only)
_F_SETPIPE_SZ = 1031
#: Pipe buffer asked for ffmpeg's output: 1 MiB instead of 64 KiB, 16 times fewer
#: wake-ups of both processes (the kernel caps it at /proc/sys/fs/pipe-max-size).
_PIPE_BYTES = 1 << 20


def _widen_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), _PIPE_BYTES)
    except (ImportError, OSError):
        pass  # not Linux, or not allowed: the default buffer works, a little slower


def open_audio(path: Path) -> Audio:
    """The recording at ``path``: WAV read directly, anything else through ffmpeg."""
    if path.is_dir():
        raise AudioFileError("is a directory, not an audio file")
    if not path.exists():
        raise AudioFileError("no such file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
        if not magic:
            raise AudioFileError("the file is empty")
        if magic == b"RIFF":
            audio = open_wav(path)
            if audio is not None:
                return audio
        return read_with_ffmpeg(path)
    except OSError as exc:
        raise AudioFileError(f"cannot read: {exc.strerror or exc}") from None
    except struct.error:
        raise AudioFileError("not a WAV file anbo can read (a chunk header is cut short)") from None
