"""Probe-kernel benchmark: the silence/level path from the wire's bytes, against ffmpeg.

Run on demand from the repository root (``scripts/bench kernels``; not collected by
pytest, ``tests/test_bench.py`` runs it in ``--quick`` mode)::

    .venv/bin/python bench/kernels.py                 # 60 min, 5 runs, 3 ffmpeg runs
    .venv/bin/python bench/kernels.py --minutes 10 --runs 3 --ffmpeg-runs 1
    .venv/bin/python bench/kernels.py --quick         # seconds: a smoke test, no figures

What it does, all in one run so that the ratios compare like with like:

1. Generates, in memory, one hour of 48 kHz int16 programme-like stereo audio (tones
   with harmonics and decays, percussive noise, a level that changes every minute) with
   silences (dither at about −84 dBFS) inserted at known places, some shorter than 2 s.
   Mono is the left channel of the same audio. From it, the bytes a publisher sends:
   L16 big-endian (the wire's default), L16 little-endian and float32 little-endian.
2. Times, for mono and stereo, over the whole length:

   * ``ffmpeg -af silencedetect=n=-60dB:d=2 -f null -`` reading the same samples as
     s16le from a file in RAM (/dev/shm when there is one). ffmpeg's start-up (the same
     command on 0.1 s of audio, median of 5) is measured and subtracted: the ratio is
     against ffmpeg's work on the audio, not its process start (both are printed);
   * one ``numpy.dot(x, x)`` over the float32 samples, a memory-bandwidth-bound pass
     (the "memory bound");
   * anbo's silence/level path, :class:`probes.audio.SilenceDetector` (per-channel RMS
     and peak dBFS of every block, 50 ms silence frames, −60 dBFS / 2 s like ffmpeg),
     fed block by block (0.1 s, 1 s, 10 s) **from the wire's bytes**, every conversion
     included: int16 read directly by the compiled kernel in either byte order
     (``np.frombuffer`` view, no copy), and the daemon's wire decoder
     (``monitor.wire`` ``_samples``: int16 or float32 to a float32 copy) then the kernel;

   and checks that both detectors found the same silences. For information it also
   times the BS.1770 loudness meter (1 s float32 blocks; no goal).
3. Times :meth:`probes.eb.Fleet.evaluate` for 100 000 endpoints per tick; goal < 20 ms.

Goals (issue #19): ≥ 30× ffmpeg and ≥ 40 % of the memory bound at 1 s blocks, mono and
stereo, conversion included. Times are for the length measured; "per hour" only when
the whole hour was measured. The machines are shared and noisy: every figure is the
median of several runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_model  # noqa: E402
from monitor.wire import Limits, SampleFormat  # noqa: E402
from monitor.wire.decode import _samples  # noqa: E402
from probes.audio import Samples, SilenceDetector, SilenceInterval  # noqa: E402
from probes.eb import Fleet  # noqa: E402
from probes.loudness import LoudnessMeter  # noqa: E402

T = TypeVar("T")

RATE = 48_000
#: (start s, duration s) of the inserted silences; the 1.0 and 1.5 s ones are shorter
#: than the 2 s minimum and must not be reported.
SILENCES = [
    (125.3, 3.0),
    (611.0, 12.5),
    (900.0, 1.0),
    (1200.05, 30.0),
    (1500.5, 1.5),
    (1804.7, 2.5),
    (2400.0, 45.0),
    (2999.9, 5.0),
    (3300.2, 8.0),
    (3590.0, 4.0),
]
BLOCK_SECONDS = (0.1, 1.0, 10.0)


# --------------------------------------------------------------------------- audio


def programme_clip(seconds: float, seed: int) -> NDArray[np.float64]:
    """Programme-like stereo audio at about −20 dBFS RMS (float64, full scale 1.0)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n, dtype=np.float64) / RATE
    note_s = 0.3
    seg = (t / note_s).astype(np.int64)
    n_seg = int(seg[-1]) + 1
    scale = 220.0 * 2.0 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12.0)
    f0 = scale[rng.integers(0, scale.size, n_seg)][seg]
    envelope = np.exp(-(t - seg * note_s) / 0.12) * (0.3 + rng.uniform(0.0, 1.0, n_seg)[seg])
    tone = sum(np.sin(2.0 * np.pi * k * f0 * t) / k for k in range(1, 6)) * envelope
    hits = rng.standard_normal(n) * np.exp(-((t % 0.6) / 0.03)) * 0.6
    out = np.stack([tone + 0.3 * hits, 0.7 * tone + 0.6 * hits], axis=1)
    out *= 0.1 / np.sqrt(np.mean(out * out))
    return out


def make_hour(minutes: int) -> NDArray[np.int16]:
    """``minutes`` of int16 stereo programme with the SILENCES that fall inside it."""
    rng = np.random.default_rng(1)
    clip = programme_clip(60.0, seed=2)
    out = np.empty((minutes * 60 * RATE, 2), dtype=np.int16)
    for minute in range(minutes):
        gain = 10.0 ** (rng.uniform(-6.0, 4.0) / 20.0) * 32768.0
        rolled = np.roll(clip, rng.integers(0, clip.shape[0]), axis=0)
        part = out[minute * 60 * RATE : (minute + 1) * 60 * RATE]
        part[:] = np.clip(np.rint(rolled * gain), -32768, 32767)
    for start, dur in SILENCES:
        a, b = round(start * RATE), round((start + dur) * RATE)
        if b <= out.shape[0]:
            out[a:b] = rng.integers(-3, 4, size=(b - a, 2))  # dither, about −84 dBFS
    return out


# --------------------------------------------------------------------------- timed paths


def median_time(fn: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median wall time of ``runs`` calls, and the last result."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def anbo_silence(x: Samples, block: int) -> list[tuple[float, float]]:
    det = SilenceDetector(on_dbfs=-60.0, off_dbfs=-60.0, on_s=2.0, off_s=0.05)
    found: list[SilenceInterval] = []
    for pos in range(0, x.shape[0], block):
        found.extend(det.process(x[pos : pos + block], RATE, pos / RATE).closed)
    return [(iv.start, iv.end) for iv in found]


#: numpy dtype of each wire sample format
WIRE_DTYPES: dict[str, str] = {"int16be": ">i2", "int16le": "<i2", "float32le": "<f4"}


def wire_bytes(pcm: NDArray[np.int16], fmt: str) -> bytes:
    """The samples as a publisher sends them in ``fmt`` (all the blocks back to back)."""
    if fmt.startswith("float32"):
        return (pcm.astype(np.float32) * np.float32(1 / 32768)).astype(WIRE_DTYPES[fmt]).tobytes()
    return pcm.astype(WIRE_DTYPES[fmt]).tobytes()


def anbo_from_wire(
    payload: bytes, fmt: str, channels: int, block: int, decode: bool
) -> list[tuple[float, float]]:
    """Silence and levels block by block from the wire's bytes, every conversion included.

    ``decode``: through the daemon's wire decoder (a float32 copy of each block), else
    int16 read in place by the compiled kernel (a ``np.frombuffer`` view).
    """
    det = SilenceDetector(on_dbfs=-60.0, off_dbfs=-60.0, on_s=2.0, off_s=0.05)
    found: list[SilenceInterval] = []
    dt = np.dtype(WIRE_DTYPES[fmt])
    frame_bytes = dt.itemsize * channels
    view = memoryview(payload)
    limits = Limits()
    wire_fmt: SampleFormat = fmt  # type: ignore[assignment]
    total = len(payload) // frame_bytes
    for pos in range(0, total, block):
        n = min(block, total - pos)
        chunk = view[pos * frame_bytes : (pos + n) * frame_bytes]
        x: Samples
        if decode:
            x = _samples(chunk, 0, wire_fmt, channels, limits)  # type: ignore[arg-type]
        else:
            x = np.frombuffer(chunk, dtype=dt).reshape(n, channels)
        found.extend(det.process(x, RATE, pos / RATE).closed)
    return [(iv.start, iv.end) for iv in found]


def anbo_loudness(x: NDArray[np.float32], block: int) -> float:
    meter = LoudnessMeter()
    for pos in range(0, x.shape[0], block):
        meter.process(x[pos : pos + block], RATE, pos / RATE)
    return meter.integrated_lufs


_START = re.compile(r"silence_start: (-?[0-9.]+)")
_END = re.compile(r"silence_end: ([0-9.]+)")


def ffmpeg_silence(path: str, channels: int) -> list[tuple[float, float]]:
    cmd = [
        "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "info",
        "-f", "s16le", "-ar", str(RATE), "-ac", str(channels), "-i", path,
        "-af", "silencedetect=n=-60dB:d=2", "-f", "null", "-",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    starts = [float(v) for v in _START.findall(proc.stderr)]
    ends = [float(v) for v in _END.findall(proc.stderr)]
    return list(zip(starts, ends, strict=False))


def ffmpeg_version() -> str:
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
        return out.split()[2]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "not installed"


def agreement(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> str:
    if len(a) != len(b):
        return f"MISMATCH: {len(a)} vs {len(b)} silences"
    if not a:
        return "both found none"
    ds = max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True))
    de = max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True))
    return f"same {len(a)} silences, max |Δstart| {ds * 1e3:.0f} ms, |Δend| {de * 1e3:.0f} ms"


@dataclass
class Row:
    label: str
    seconds: float
    note: str = ""
    ours: bool = False


#: (label, wire format, through the wire decoder)
ANBO_PATHS = [
    ("L16 BE, int16 read by the kernel", "int16be", False),
    ("L16 LE, int16 read by the kernel", "int16le", False),
    ("L16 BE, wire decoder → float32", "int16be", True),
    ("float32 LE, wire decoder", "float32le", True),
]


def audio_rows(
    pcm: NDArray[np.int16], runs: int, ffmpeg_runs: int, tmpdir: str, blocks: tuple[float, ...]
) -> dict[str, float]:
    channels = pcm.shape[1]
    audio_s = pcm.shape[0] / RATE
    whole_hour = abs(audio_s - 3600.0) < 1e-6
    rows: list[Row] = []
    notes: list[str] = []
    figures: dict[str, float] = {}

    x = pcm.astype(np.float32) * np.float32(1 / 32768)
    flat = x.reshape(-1)
    dot_t, _ = median_time(lambda: float(np.dot(flat, flat)), max(runs, 5))
    gb = flat.nbytes / 1e9
    rows.append(Row("numpy.dot(x, x) over float32 (memory bound)", dot_t, f"{gb / dot_t:.1f} GB/s"))

    ff_t = float("nan")
    ff_found: list[tuple[float, float]] = []
    if ffmpeg_runs > 0:
        if not shutil.which("ffmpeg"):
            raise SystemExit("ffmpeg is not installed (scripts/setup --bench installs it)")
        path = os.path.join(tmpdir, f"bench-{channels}ch-{os.getpid()}.s16le")
        short = path + ".start"
        np.ascontiguousarray(pcm).tofile(path)
        np.ascontiguousarray(pcm[: RATE // 10]).tofile(short)
        try:
            start_t, _ = median_time(lambda: ffmpeg_silence(short, channels), 5)
            raw_t, ff_found = median_time(lambda: ffmpeg_silence(path, channels), ffmpeg_runs)
        finally:
            os.unlink(path)
            os.unlink(short)
        ff_t = max(raw_t - start_t, 1e-9)
        rows.append(
            Row(
                "ffmpeg silencedetect −60 dB 2 s, net",
                ff_t,
                f"{raw_t * 1e3:.0f} ms as a process, less {start_t * 1e3:.0f} ms start-up",
            )
        )
        figures["ffmpeg_s"] = ff_t
        figures["ffmpeg_start_s"] = start_t

    for label, fmt, decode in ANBO_PATHS:
        payload = wire_bytes(pcm, fmt)
        for block_s in blocks:
            block = round(block_s * RATE)
            t, found = median_time(
                lambda p=payload, f=fmt, b=block, d=decode: anbo_from_wire(p, f, channels, b, d),  # type: ignore[misc]
                runs,
            )
            rows.append(Row(f"anbo {label}, {block_s:g} s blocks", t, ours=True))
            figures[f"{fmt}{'_decoded' if decode else ''}_{block_s:g}s"] = t
            if ff_found and fmt == "int16be" and not decode:
                notes.append(f"{block_s:g} s blocks vs ffmpeg: {agreement(found, ff_found)}")
        del payload
    loud_t, lufs = median_time(lambda: anbo_loudness(x, RATE), min(runs, 3))
    rows.append(Row("anbo BS.1770 loudness, 1 s float32 blocks", loud_t, f"(no goal) {lufs:.1f} LUFS"))
    figures["dot_s"] = dot_t

    layout = "mono" if channels == 1 else "stereo"
    unit = "per hour" if whole_hour else f"for {audio_s / 60:g} min (not scaled)"
    print(f"\n{layout}: {audio_s / 60:g} min, {gb:.2f} GB as float32; times {unit}")
    print(f"{'path':52s} {'time':>10s} {'x realtime':>11s} {'vs ffmpeg':>10s} {'vs dot':>8s}")
    for row in rows:
        rt = audio_s / row.seconds
        vs_ff = ff_t / row.seconds if row.ours else float("nan")
        vs_dot = dot_t / row.seconds if row.ours else float("nan")
        ff_s = f"{vs_ff:9.1f}x" if vs_ff == vs_ff else ""
        dot_s = f"{vs_dot:7.0%}" if vs_dot == vs_dot else ""
        print(f"{row.label:52s} {row.seconds * 1e3:8.1f}ms {rt:10.0f}x {ff_s:>10s} {dot_s:>8s}  {row.note}")
    for note in notes:
        print(f"  {note}")
    return figures


def fleet_row(runs: int) -> None:
    rng = np.random.default_rng(3)
    n, regions = 100_000, 200
    fleet = Fleet(rng.integers(0, regions, n), n_regions=regions)
    now = 1_700_000_000.0
    fleet.heartbeat(np.arange(n), now - rng.uniform(0.0, 300.0, n))
    fleet.set_faults(rng.integers(0, n, 2000), rng.integers(1, 16, 2000))
    eval_times = []
    beat_times = []
    for tick in range(max(runs, 200)):
        now += 1.0
        batch = rng.integers(0, n, n // 60)  # everyone beats once a minute
        t0 = time.perf_counter()
        fleet.heartbeat(batch, now)
        t1 = time.perf_counter()
        status = fleet.evaluate(now, offline_after=180.0)
        t2 = time.perf_counter()
        beat_times.append(t1 - t0)
        eval_times.append(t2 - t1)
        assert status.total.sum() == n and tick >= 0
    ev = statistics.median(eval_times) * 1e3
    hb = statistics.median(beat_times) * 1e3
    print(f"\nEB fleet, {n} endpoints in {regions} regions (median of {len(eval_times)} ticks)")
    print(f"  {'evaluate(now, offline_after)':40s} {ev:7.2f} ms  (goal < 20 ms)")
    print(f"  {f'heartbeat({n // 60} endpoints)':40s} {hb:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60, help="audio length (default 60)")
    parser.add_argument("--runs", type=int, default=5, help="runs per anbo/dot figure (median)")
    parser.add_argument("--ffmpeg-runs", type=int, default=3, help="ffmpeg runs (median; 0 skips)")
    parser.add_argument("--quick", action="store_true", help="a smoke test in seconds: 1 min, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.runs, args.ffmpeg_runs = 1, 1, 1

    print(
        f"probe kernels: {cpu_model()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, ffmpeg {ffmpeg_version()}"
    )
    t0 = time.perf_counter()
    stereo = make_hour(args.minutes)
    mono = np.ascontiguousarray(stereo[:, :1])
    print(f"generated {args.minutes} min of 48 kHz int16 programme in {time.perf_counter() - t0:.1f} s")
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    blocks = (1.0,) if args.quick else BLOCK_SECONDS
    for pcm in (mono, stereo):
        audio_rows(pcm, args.runs, args.ffmpeg_runs, tmpdir, blocks)
    fleet_row(args.runs)


if __name__ == "__main__":
    main()
