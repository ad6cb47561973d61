"""ffmpeg as the capture gateway's decoder: its command line, and why it stopped.

Pure functions, tested without ffmpeg: :func:`ffmpeg_command` turns a parsed input
(:class:`monitor.settings.CaptureSource`) into an argument vector (no shell: every
argument is passed as is, and a file is always named ``file:PATH`` so that a name
starting with ``-`` cannot become an option); :func:`loss_cause` says, from what ffmpeg
did, why an input is lost, in the words of the catalogue's ``audio_input_cause``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from monitor.settings import CaptureSource, SampleType
from monitor.wire import MAX_INFO_LEN, SampleFormat

__all__ = ["OUTPUT_FORMATS", "Cause", "detail_text", "ffmpeg_command", "loss_cause"]


class Cause(StrEnum):
    """Why an input is lost (``audio_input_cause``; ``none`` while it delivers)."""

    NONE = "none"
    #: a network stream delivered audio, then ended or broke (source gone, server closed)
    STREAM_ENDED = "stream_ended"
    #: a file input reached its end
    END_OF_FILE = "end_of_file"
    #: a network input never delivered audio (refused, 404, no route, timeout)
    CONNECT_FAILED = "connect_failed"
    #: a sound device (ALSA, PulseAudio) cannot be opened or went away
    DEVICE_GONE = "device_gone"
    #: ffmpeg runs but no audio came for stall_timeout
    DECODER_STALLED = "decoder_stalled"
    #: anything else: a file that cannot be read, ffmpeg failing or killed
    INPUT_ERROR = "input_error"


#: Our sample type → (ffmpeg's raw output format, the wire's sample format): ffmpeg writes
#: the wire's little-endian samples directly, so a block's bytes are published as read.
OUTPUT_FORMATS: Final[dict[str, tuple[str, SampleFormat]]] = {
    "int16": ("s16le", "int16le"),
    "float32": ("f32le", "float32le"),
}


def ffmpeg_command(
    ffmpeg: str,
    source: CaptureSource,
    *,
    rate: int,
    channels: int,
    sample_type: SampleType,
    realtime: bool = True,
    io_timeout: float = 10.0,
) -> list[str]:
    """The argument vector that decodes ``source`` to raw interleaved PCM on stdout.

    ``realtime``: a file is read at its own pace (``-re``), as a live source would be;
    False reads it as fast as it decodes. ``io_timeout``: network reads give up after
    this long (ffmpeg's ``-rw_timeout``; the gateway watches for stalls itself too).
    """
    fmt, _ = OUTPUT_FORMATS[sample_type]
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "warning"]
    if source.scheme == "file":
        if realtime:
            cmd.append("-re")
        cmd += ["-i", f"file:{source.location}"]
    elif source.scheme in ("alsa", "pulse"):
        cmd += ["-f", source.scheme, "-i", source.location]
    else:
        if source.scheme in ("http", "https", "rtsp"):
            cmd += ["-rw_timeout", str(round(io_timeout * 1e6))]
        # Start quickly and do not hold audio back: a small probe, no input buffering.
        cmd += ["-fflags", "nobuffer", "-formatprobesize", "8192", "-probesize", "8192"]
        cmd += ["-analyzeduration", "200000"]
        cmd += ["-i", source.location]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", str(channels), "-ar", str(rate)]
    cmd += ["-f", fmt, "-flush_packets", "1", "pipe:1"]
    return cmd


def loss_cause(source: CaptureSource, *, delivered: bool, returncode: int | None, stalled: bool) -> Cause:
    """Why an input stopped: ``delivered`` — it gave audio in this attempt;
    ``returncode`` — ffmpeg's exit status (negative: killed by a signal; None: unknown);
    ``stalled`` — the gateway gave up waiting for audio and stopped ffmpeg."""
    if stalled:
        return Cause.DECODER_STALLED
    if source.scheme in ("alsa", "pulse"):
        return Cause.DEVICE_GONE
    killed = returncode is not None and returncode < 0
    if source.scheme == "file":
        # (not "returncode == 0": asyncio may report 255 for a child it could not reap)
        return Cause.END_OF_FILE if delivered and not killed else Cause.INPUT_ERROR
    if killed:
        return Cause.INPUT_ERROR
    return Cause.STREAM_ENDED if delivered else Cause.CONNECT_FAILED


def detail_text(lines: Sequence[str], fallback: str) -> str:
    """A one-line detail for ``audio_input_detail``: ffmpeg's last message (or
    ``fallback``), printable and at most the wire's 64 characters."""
    text = next((ln.strip() for ln in reversed(lines) if ln.strip()), "") or fallback
    # ffmpeg prefixes messages with "[http @ 0x55d...] ": the address says nothing.
    if text.startswith("[") and "] " in text:
        head, _, rest = text.partition("] ")
        text = f"{head.split(' @ ')[0]}] {rest}"
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean[:MAX_INFO_LEN].strip() or fallback[:MAX_INFO_LEN]
