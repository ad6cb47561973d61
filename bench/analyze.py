"""``anbo analyze`` end to end against ffmpeg doing the same measurements on the same files.

Run on demand from the repository root (``scripts/bench analyze``; ``tests/test_bench.py``
runs ``--quick``)::

    .venv/bin/python bench/analyze.py              # 20 min, mono and stereo, WAV and FLAC
    .venv/bin/python bench/analyze.py --hour       # and the 1 h files
    .venv/bin/python bench/analyze.py --quick      # 1 min stereo WAV, one round: a smoke test

The files: 48 kHz 16-bit programme-like audio (bench/kernels.py's generator: tones,
percussion, a level that changes every minute, silences of dither at known places),
written as WAV and as FLAC (ffmpeg's encoder) in a temporary folder (in RAM, /dev/shm,
when there is one). Each file is analysed by whole processes, as a user runs them:

- **full**: ``anbo analyze --json --silence-threshold-db -50 FILE`` (silences, levels,
  clipping, EBU R128 integrated loudness and range, momentary/short-term maxima, true
  peak) against ``ffmpeg -af silencedetect=noise=-50dB:d=2,ebur128=peak=true -f null -``
  (silences, R128 integrated loudness and range, true peak);
- **silence only**: ``anbo analyze --json --silence-only`` (silences and levels)
  against ``ffmpeg -af silencedetect=noise=-50dB:d=2 -f null -``.

Printed: wall time (median of ``--rounds``, process start included on both sides),
peak RSS, and ffmpeg's time over anbo's (above 1: anbo is faster). Goals (issue #19):
≥ 3× ffmpeg on the full analysis, ≥ 10× ffmpeg silencedetect with ``--silence-only``,
memory under 200 MB for any length.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_model, proc_rss_mb  # noqa: E402

RATE = 48_000


def measure(cmd: list[str]) -> tuple[float, float, str, str]:
    """Wall time and peak RSS (MB) of ``cmd``; raises if it fails.

    The peak is the child's ``VmHWM`` sampled from /proc while it runs (``wait4``'s
    ``ru_maxrss`` would count this process's memory, forked before the exec).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak = [0.0]
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                peak.append(proc_rss_mb(proc.pid, "VmHWM"))
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {stderr[-2000:]}")
    return wall, max(peak), stdout, stderr


def write_files(folder: Path, minutes: int, layouts: list[int], flac: bool) -> list[Path]:
    from bench.kernels import make_hour

    stereo = make_hour(minutes)
    paths = []
    for channels in layouts:
        pcm = stereo if channels == 2 else stereo[:, :1]
        path = folder / f"programme-{minutes}min-{'stereo' if channels == 2 else 'mono'}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.astype("<i2").tobytes())
        paths.append(path)
        if flac:
            subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(path),
                    "-c:a",
                    "flac",
                    str(path.with_suffix(".flac")),
                ],
                check=True,
            )
            paths.append(path.with_suffix(".flac"))
    return paths


_FF_START = re.compile(r"silence_start: (-?[0-9.]+)")
_FF_I = re.compile(r"I:\s+(-?[0-9.]+) LUFS")
_FF_LRA = re.compile(r"LRA:\s+([0-9.]+) LU")
_FF_PEAK = re.compile(r"Peak:\s+(-?[0-9.]+|-inf) dBFS")


def anbo_cmd(path: Path, silence_only: bool) -> list[str]:
    cmd = [sys.executable, "-m", "anbo", "analyze", "--json", "--silence-threshold-db", "-50", str(path)]
    return cmd + (["--silence-only"] if silence_only else [])


def ffmpeg_cmd(path: Path, silence_only: bool) -> list[str]:
    af = "silencedetect=noise=-50dB:d=2" + ("" if silence_only else ",ebur128=peak=true")
    return ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-af", af, "-f", "null", "-"]


def summary_anbo(out: str) -> str:
    r = json.loads(out)
    s = f"{len(r['silences'])} silences"
    if r.get("integrated_lufs") is not None:
        tp = ", ".join(f"{v:.1f}" for v in r["true_peak_dbtp"])
        s += f", I {r['integrated_lufs']:.1f} LUFS, LRA {r['loudness_range_lu']:.1f} LU, TP {tp} dBTP"
    return s


def summary_ffmpeg(err: str) -> str:
    s = f"{len(_FF_START.findall(err))} silences"
    i, lra = _FF_I.findall(err), _FF_LRA.findall(err)
    if i:
        s += f", I {float(i[-1]):.1f} LUFS, LRA {float(lra[-1]):.1f} LU, TP {_FF_PEAK.findall(err)[-1]} dBTP"
    return s


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
    return out.split()[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each command (median)")
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--hour", action="store_true", help="also the 60 min files")
    parser.add_argument("--quick", action="store_true", help="1 min stereo WAV, one round")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is not installed (scripts/setup --bench installs it)")
    lengths = [1] if args.quick else [args.minutes] + ([60] if args.hour else [])
    layouts = [2] if args.quick else [1, 2]
    rounds = 1 if args.quick else args.rounds

    model = cpu_model()
    import numpy
    import scipy

    print(
        f"machine: {model}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy "
        f"{numpy.__version__}, scipy {scipy.__version__}, ffmpeg {ffmpeg_version()}"
    )
    tmproot = "/dev/shm" if os.path.isdir("/dev/shm") else None
    header = (
        f"{'file':34} {'work':13} {'ffmpeg s':>9} {'anbo s':>8} {'ffmpeg/anbo':>12} {'RSS ff/anbo MB':>15}"
    )
    rows: list[str] = []
    with tempfile.TemporaryDirectory(dir=tmproot) as tmp:
        for minutes in lengths:
            for path in write_files(Path(tmp), minutes, layouts, flac=not args.quick):
                for silence_only in (False, True):
                    work = "silence only" if silence_only else "full"
                    ff, an = [], []
                    for _ in range(rounds):
                        ff.append(measure(ffmpeg_cmd(path, silence_only)))
                        an.append(measure(anbo_cmd(path, silence_only)))
                    ff_t = statistics.median(r[0] for r in ff)
                    an_t = statistics.median(r[0] for r in an)
                    rss = f"{max(r[1] for r in ff):.0f} / {max(r[1] for r in an):.0f}"
                    line = f"{path.name:34} {work:13} {ff_t:9.2f} {an_t:8.2f} {ff_t / an_t:11.2f}× {rss:>15}"
                    print(line, flush=True)
                    print(f"    ffmpeg: {summary_ffmpeg(ff[-1][3])}; anbo: {summary_anbo(an[-1][2])}")
                    rows.append(line)
                path.unlink()
                path.with_suffix(".wav").unlink(missing_ok=True)
    print(f"\nmedian of {rounds} round(s), wall time of the whole process (start included)")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
