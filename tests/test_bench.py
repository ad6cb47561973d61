"""Each benchmark runs, in its smallest mode, so that none can rot unnoticed.

The figures of a --quick run mean nothing (seconds of audio, a few thousand
messages); what is checked is that every side of each comparison ran and printed its
row, with the same servers and tools a full run uses (Mosquitto, Alertmanager,
mosquitto_sub, ffmpeg, mqtt-exporter from PyPI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(name: str, *args: str, timeout: float = 240) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_kernels_bench_runs_both_sides_and_agrees_with_ffmpeg() -> None:
    out = run_bench("kernels")
    assert "ffmpeg silencedetect" in out and "less" in out and "start-up" in out
    for path in ("L16 BE, int16 read by the kernel", "L16 BE, wire decoder", "float32 LE, wire decoder"):
        assert path in out
    assert "MISMATCH" not in out
    assert "evaluate(now, offline_after)" in out


@pytest.mark.slow
def test_analyze_bench_runs_anbo_and_ffmpeg_on_the_same_file() -> None:
    out = run_bench("analyze")
    assert "full" in out and "silence only" in out
    assert out.count("ffmpeg:") == 2 and "LUFS" in out and "dBTP" in out


@pytest.mark.slow
@pytest.mark.integration
def test_ingest_bench_counts_every_message_at_every_receiver() -> None:
    out = run_bench("ingest")
    for receiver in ("mosquitto_sub", "bare aiomqtt", "mqtt-exporter", "anbo ingest"):
        assert receiver in out
    assert "goal anbo ≤ ⅓ of mqtt-exporter" in out


@pytest.mark.slow
@pytest.mark.integration
def test_fleet_bench_runs_the_daemon_through_a_real_broker() -> None:
    out = run_bench("fleet")
    assert "anbo daemon:" in out and "baseline mosquitto_sub" in out
    assert "tick (whole Evaluator.tick)" in out
    assert " 0 of " not in out  # endpoints came online through the broker


@pytest.mark.slow
@pytest.mark.integration
def test_memory_bench_reads_the_daemons_rss_and_where_it_goes() -> None:
    out = run_bench("memory")
    assert "anbo run RSS:" in out and "goal ≤ 250 MB" in out
    assert "top 10 lines" in out and "top 10 files" in out
    assert "the daemon took 0 " not in out  # the simulator's messages reached the daemon


@pytest.mark.slow
@pytest.mark.integration
def test_latency_bench_times_both_rules_from_the_wire_to_alertmanager() -> None:
    out = run_bench("latency", timeout=150)
    assert "machine:" in out and "anbo daemon:" in out
    assert "agree with the schedule" in out
    for rule in ("VswrHigh (warning", "DeadAir (silence_on_s"):
        row = next(line for line in out.splitlines() if line.startswith(rule))
        assert ", missed 0;" in row and "latency p50" in row and "goal p99 ≤" in row
    assert "missed: 0; alerts without a fault: 0;" in out
