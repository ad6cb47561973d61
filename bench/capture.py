"""Capture benchmark: CPU per captured stereo 48 kHz channel, ffmpeg included.

Run on demand from the repository root::

    .venv/bin/python bench/capture.py                      # 1, 8 and 16 inputs, 20 s each
    .venv/bin/python bench/capture.py --inputs 32 --seconds 30

A private Icecast2 on a free port carries one live programme (espeak-ng speech and
chords, stereo 48 kHz, MP3 at 128 kb/s from an ffmpeg source client playing in real
time, as a station's off-air receiver stream would). ``anbo capture`` runs as its own
process with N inputs, every one a listener of that mount feeding its own FM target,
and publishes to a private Mosquitto. After a warm-up, the CPU time of the gateway and
of its N ffmpeg children (from /proc: user + system) is taken over ``--seconds`` of wall
time; the figure is CPU seconds per second per input (1.0 = one core), with the split
between the gateway's Python process and ffmpeg. The gateway's own
``anbo_gateway_latency_seconds`` (from the last frame of a block read to the broker's
PUBACK) gives the latency. The Icecast server, its source and the broker are not counted.

Goal (issue #17): 32 stereo 48 kHz channels in under one core, ffmpeg included.
The machines are shared and noisy: take the figures as an order of magnitude.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.icecast import FfmpegSource, Icecast  # noqa: E402
from tests.realaudio import Builder  # noqa: E402
from tests.servers import Mosquitto, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


WANTED = (
    "anbo_gateway_latency_seconds_sum",
    "anbo_gateway_latency_seconds_count",
    "anbo_capture_blocks_total",
    "anbo_gateway_dropped_messages_total",
)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(WANTED):
            name = line.split("{", 1)[0]
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def config(path: Path, broker: str, n: int) -> Path:
    targets = "".join(
        f'\n[[targets]]\nname = "fm-{i}"\nkind = "fm"\nservice = "Bench {i}"\n'
        f"frequency_mhz = {88.0 + 0.1 * i:.1f}\n"
        for i in range(n)
    )
    path.write_text(f'[station]\nname = "bench"\n\n[mqtt]\nurl = "{broker}"\n{targets}')
    return path


def run(n: int, seconds: float, icecast: Icecast, broker: Mosquitto, work: Path) -> dict[str, float]:
    cfg = config(work / f"bench-{n}.toml", broker.url, n)
    port = free_port()
    args = [sys.executable, "-m", "anbo", "capture", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"]
    args += ["--log-level", "warning", "--log-format", "json"]
    for i in range(n):
        args += ["--input", f"fm-{i}={icecast.url('bench')}"]
    with (work / f"capture-{n}.log").open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < n or not scrape_ok(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"capture did not start its {n} inputs: see {work}/capture-{n}.log")
            time.sleep(0.2)
        time.sleep(3.0)  # warm-up: connected, probed, steady
        kids = children(proc.pid)
        t0, g0 = time.monotonic(), cpu_seconds(proc.pid)
        f0 = sum(cpu_seconds(k) for k in kids)
        m0 = scrape(port)
        time.sleep(seconds)
        wall = time.monotonic() - t0
        g1 = cpu_seconds(proc.pid)
        if set(children(proc.pid)) != set(kids):
            raise RuntimeError(f"an input restarted while measuring: see {work}/capture-{n}.log")
        f1 = sum(cpu_seconds(k) for k in kids)
        m1 = scrape(port)
    finally:
        proc.terminate()
        proc.wait(20)
    lat_n = m1["anbo_gateway_latency_seconds_count"] - m0["anbo_gateway_latency_seconds_count"]
    lat_s = m1["anbo_gateway_latency_seconds_sum"] - m0["anbo_gateway_latency_seconds_sum"]
    return {
        "inputs": n,
        "gateway_cores": (g1 - g0) / wall,
        "ffmpeg_cores": (f1 - f0) / wall,
        "per_input_cores": ((g1 - g0) + (f1 - f0)) / wall / n,
        "blocks_per_s": (m1["anbo_capture_blocks_total"] - m0["anbo_capture_blocks_total"]) / wall,
        "dropped": m1.get("anbo_gateway_dropped_messages_total", 0.0),
        "latency_ms": 1000 * lat_s / lat_n if lat_n else float("nan"),
    }


def scrape_ok(port: int) -> bool:
    try:
        return scrape(port).get("anbo_capture_blocks_total", 0.0) > 0
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", default="1,8,16", help="comma-separated input counts (default 1,8,16)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured wall time per count")
    args = parser.parse_args()
    counts = [int(x) for x in args.inputs.split(",")]
    with tempfile.TemporaryDirectory(prefix="anbo-bench-capture-") as tmp:
        work = Path(tmp)
        prog = Builder(seed=7).talk("en", 170, 4, -16.0).music(8.0, -14.0).talk("de", 150, 2, -15.0).build()
        wav = work / "programme.wav"
        import numpy as np
        import scipy.io.wavfile

        stereo = np.stack([prog.audio, np.roll(prog.audio, 15) * 0.9], axis=1)
        scipy.io.wavfile.write(wav, 48000, np.clip(np.rint(stereo * 32768), -32768, 32767).astype(np.int16))
        icecast = Icecast(work / "icecast")
        icecast.start()
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        source = FfmpegSource(icecast, "bench", wav, loop=True)
        try:
            source.start()
            head = (
                f"{'inputs':>6} {'gateway':>9} {'ffmpeg':>9} {'per input':>10} {'blocks/s':>9} {'latency':>9}"
            )
            print(f"{head} dropped")
            for n in counts:
                r = run(n, args.seconds, icecast, broker, work)
                print(
                    f"{r['inputs']:>6} {r['gateway_cores']:>8.3f}c {r['ffmpeg_cores']:>8.3f}c "
                    f"{r['per_input_cores']:>9.4f}c {r['blocks_per_s']:>9.1f} {r['latency_ms']:>7.1f}ms "
                    f"{int(r['dropped'])}",
                    flush=True,
                )
        finally:
            source.stop()
            broker.stop()
            icecast.stop()


if __name__ == "__main__":
    main()
