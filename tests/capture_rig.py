"""The capture gateway's integration rig: a real ``anbo run`` daemon and a real
``anbo capture`` as subprocesses, and a poller of the daemon's alert API and /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port


def station_config(path: Path, broker: str, *, tick: float = 0.5, extra: str = "") -> tuple[Path, int]:
    """A station with one FM target (fm-97.5) and a transmitter; returns (file, metrics port)."""
    port = free_port()
    path.write_text(
        f"""state_directory = "state"

[station]
name = "teststation"

[mqtt]
url = "{broker}"
client_id = "anbo-daemon-test"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5

[metrics]
listen = "127.0.0.1:{port}"

[probes]
tick = {tick}
silence_on_s = 3.0
silence_off_s = 2.0

[capture]
listen = "127.0.0.1:0"
backoff_min = 0.3
backoff_max = 1.0
stall_timeout = 3.0
{extra}
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
"""
    )
    return path, port


def anbo(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "anbo", *args], stdout=out, stderr=subprocess.STDOUT)


def get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        try:
            get(f"http://127.0.0.1:{port}/-/ready", 0.5)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise TimeoutError("the daemon did not become ready")


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The daemon's /metrics as {(sample name, labels): value}."""
    text = get(f"http://127.0.0.1:{port}/metrics").decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    want = set(labels.items())
    for (n, lv), v in metrics.items():
        if n == name and want <= set(lv):
            return v
    return None


@dataclass
class Episode:
    alert: str
    target: str
    fired_at: float
    resolved_at: float | None = None
    description: str = ""


@dataclass
class Watcher:
    """Polls the daemon's /api/v1/alerts and a few /metrics values every ``period`` s."""

    port: int
    period: float = 0.2
    episodes: list[Episode] = field(default_factory=list)
    #: (wall time, anbo_loudness_integrated_lufs, anbo_audio_peak_dbfs) of fm-97.5, when known
    levels: list[tuple[float, float, float]] = field(default_factory=list)
    errors: int = 0
    #: wall time − the daemon's newest audio sample time, per poll (delivery lag)
    lags: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._open: dict[tuple[str, str], Episode] = {}

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                self.errors += 1
            self._stop.wait(self.period)

    def poll(self) -> None:
        now = time.time()
        alerts = json.loads(get(f"http://127.0.0.1:{self.port}/api/v1/alerts"))["alerts"]
        firing = {(a["alertname"], a["target"]): a for a in alerts if a["state"] == "firing"}
        for key, a in firing.items():
            if key not in self._open:
                ep = Episode(key[0], key[1], now, description=a.get("description", ""))
                self._open[key] = ep
                self.episodes.append(ep)
        for key in list(self._open):
            if key not in firing:
                self._open.pop(key).resolved_at = now
        m = samples(self.port)
        last = value(m, "anbo_last_sample_timestamp_seconds", target="fm-97.5", stream="audio")
        if last is not None and last == last and last > 0:
            self.lags.append(now - last)
        lufs = value(m, "anbo_loudness_integrated_lufs", target="fm-97.5")
        peak = value(m, "anbo_audio_peak_dbfs", target="fm-97.5")
        if lufs is not None and peak is not None and lufs == lufs and peak == peak:
            self.levels.append((now, lufs, peak))

    def of(self, alert: str) -> list[Episode]:
        return [e for e in self.episodes if e.alert == alert]


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def analyze_json(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "anbo", "analyze", "--json", str(path)],
        capture_output=True,
        check=True,
        env={**os.environ},
    )
    return dict(json.loads(out.stdout))
