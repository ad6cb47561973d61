"""Ingest benchmark: CPU per message and RSS, anbo against what a station would run instead.

Run on demand from the repository root (``scripts/bench ingest``; ``tests/test_bench.py``
runs ``--quick``)::

    .venv/bin/python bench/ingest.py            # both cases, 3 rounds each
    .venv/bin/python bench/ingest.py --rounds 5 --json-messages 40000 --audio-seconds 3

For each case it measures, in the same run, against the same private Mosquitto, on the
same messages (one publisher process, QoS 1, MQTT 3.1.1), each receiver in its own
process subscribed at QoS 1 over MQTT 5, every message counted at the receiver:

- ``mosquitto_sub -C N`` to /dev/null: the C client, the floor of receiving a message;
- ``bare``: a bare aiomqtt receive loop (``async for m in client.messages: n += 1``) on
  unmodified aiomqtt and paho-mqtt (checked: anbo's fast path, ``monitor.mqttio``, is
  not installed in that process): what any aiomqtt consumer pays;
- ``mqtt-exporter`` (kpetremann/mqtt-exporter, from PyPI into its own virtualenv under
  ``~/.cache/anbo-bench``, never anbo's; JSON case only): the Python MQTT → Prometheus
  exporter a station might run instead. It subscribes at QoS 0 with no setting for it:
  the bench raises its subscriptions to QoS 1 around paho's ``subscribe``; its own code
  runs unchanged. Messages are counted from its ``mqtt_message_total``;
- ``anbo``: anbo's ingest path as the daemon wires it (MqttIngest with its MQTT fast
  path → IngestQueue → Pipeline: topic parse, routing, strict decode, sequence
  tracking, store; not the evaluation ticks).

CPU is from the moment the receiver is subscribed to its last message (the Python
receivers' ``process_time``, the others' utime + stime from /proc and ``wait4``),
divided by the message count; RSS is the peak. Cases:

(a) one JSON reading per message, spread over 10 configured targets. Goal (issue #19):
    anbo ≤ ⅓ of mqtt-exporter's CPU per message at QoS 1, with 0 loss.
(b) audio: 300 stereo 48 kHz channels in 100 ms L16 blocks (3000 blocks/s of 19.2 kB
    each), published as fast as the broker takes them. Goal: anbo's CPU per block ×
    3000 blocks/s < 1 core (held in real time).

The machines are shared and noisy: rounds alternate the order of the receivers and
medians are printed, with the ratios as the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_model, proc_cpu_s, proc_rss_mb  # noqa: E402

JSON_TARGETS = 10
AUDIO_CHANNELS = 300
RATE = 48_000
BLOCK_FRAMES = RATE // 10  # 100 ms


def station_toml(port: int, kind: str) -> str:
    lines = [
        '[station]\nname = "bench"\n',
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nclient_id = "anbo-bench-{kind}-{os.getpid()}"\n'
        "queue_size = 1000000\n",
        '[metrics]\nlisten = "127.0.0.1:0"\n',
    ]
    n = JSON_TARGETS if kind == "json" else AUDIO_CHANNELS
    for i in range(n):
        lines.append(f'[[targets]]\nname = "fm-{i}"\nkind = "fm"\nservice = "S{i}"\nfrequency_mhz = 97.5\n')
    return "\n".join(lines)


# --------------------------------------------------------------------------- receivers
async def receive_bare(port: int, count: int, ready: Path) -> tuple[float, int]:
    import aiomqtt
    import paho.mqtt._packet
    from paho.mqtt.properties import Properties

    # The baseline is plain aiomqtt: nothing of monitor.mqttio in this process.
    if paho.mqtt._packet.Properties is not Properties:
        raise SystemExit("bare baseline: paho is patched by anbo's fast path; the ratio would be wrong")
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bare-{os.getpid()}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe("anbo/+/+/+", qos=1)
        start = time.process_time()
        await asyncio.to_thread(ready.touch)
        n = 0
        async for _ in client.messages:
            n += 1
            if n == count:
                break
        return time.process_time() - start, n


async def receive_anbo(port: int, count: int, ready: Path, kind: str) -> tuple[float, int]:
    from monitor.ingest import Credentials, IngestQueue, MqttIngest
    from monitor.pipeline import Pipeline
    from monitor.settings import load_settings
    from monitor.stats import Result, Stats

    cfg = Path(tempfile.mkdtemp()) / "bench.toml"
    cfg.write_text(station_toml(port, kind))
    settings = load_settings(cfg).settings
    stats = Stats()
    pipeline = Pipeline(settings, stats)
    queue = IngestQueue(settings.mqtt.queue_size, stats)
    done = asyncio.Event()
    handle = pipeline.handle
    seen = 0

    def handler(
        topic: str, payload: bytes, ctype: str | None, props: list[tuple[str, str]] | None, rx: float
    ) -> None:
        nonlocal seen
        handle(topic, payload, ctype, props, rx)
        seen += 1
        if seen == count:
            done.set()

    ingest = MqttIngest(
        settings.mqtt,
        client_id=settings.client_id,
        credentials=Credentials(None, None),
        subscriptions=lambda: pipeline.subscriptions,
        handler=handler,
        queue=queue,
        stats=stats,
    )
    task = asyncio.create_task(ingest.run())
    await ingest.subscribed.wait()
    start = time.process_time()
    await asyncio.to_thread(ready.touch)
    await done.wait()
    cpu = time.process_time() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    accepted = stats.count(Result.ACCEPTED, "ok")
    if accepted != count:
        raise SystemExit(f"anbo accepted {accepted} of {count}: {stats.messages}")
    return cpu, accepted


def receiver_main(mode: str, port: int, count: int, ready: str, kind: str) -> None:
    from monitor.logs import configure_logging

    configure_logging("warning", "json", sys.stderr)  # stdout carries the result
    if mode == "bare":
        cpu, n = asyncio.run(receive_bare(port, count, Path(ready)))
    else:
        cpu, n = asyncio.run(receive_anbo(port, count, Path(ready), kind))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu_s": cpu, "n": n, "rss_mb": rss_mb}))


# --------------------------------------------------------------------------- publisher
def publisher_main(port: int, count: int, kind: str) -> None:
    import numpy as np
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from monitor.wire import encode_block_v311, encode_readings

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}", protocol=paho.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = time.time()
    messages: list[tuple[str, bytes]] = []
    if kind == "json":
        for i in range(count):
            t = i % JSON_TARGETS
            messages.append(
                (
                    f"anbo/bench/fm-{t}/rf",
                    encode_readings(
                        now,
                        i // JSON_TARGETS,
                        {"rf_level_dbuv": 60.0 + (i % 7) * 0.1, "pilot_deviation_khz": 6.8},
                    ),
                )
            )
    else:
        rng = np.random.default_rng(1)
        block = (rng.standard_normal((BLOCK_FRAMES, 2)) * 0.1).astype(np.float32)
        for i in range(count):
            c = i % AUDIO_CHANNELS
            seq = i // AUDIO_CHANNELS
            messages.append(
                (
                    f"anbo/bench/fm-{c}/audio",
                    encode_block_v311(block, ts=now + seq * 0.1, seq=seq, rate=RATE, dtype="int16be"),
                )
            )
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


# --------------------------------------------------------------------------- driver
#: mqtt-exporter from PyPI, in its own virtualenv (never part of anbo's)
EXPORTER = "mqtt-exporter==1.12.1"
EXPORTER_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "anbo-bench" / "mqtt-exporter"
)
#: mqtt-exporter subscribes at QoS 0 and has no setting for it: raise its subscriptions to
#: QoS 1, anbo's default, around paho's subscribe (its own code runs unchanged).
EXPORTER_QOS1 = (
    "import paho.mqtt.client as m\n"
    "_sub = m.Client.subscribe\n"
    "m.Client.subscribe = lambda self, topic, qos=0, *a, **k: _sub(self, topic, 1, *a, **k)\n"
    "from mqtt_exporter.main import main_mqtt_exporter\n"
    "main_mqtt_exporter()\n"
)


def exporter_python() -> str:
    """The mqtt-exporter virtualenv's python, made on first use (pip from PyPI)."""
    py = EXPORTER_VENV / "bin" / "python"
    if not py.exists():
        print(f"installing {EXPORTER} into {EXPORTER_VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EXPORTER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", EXPORTER], check=True)
    return str(py)


class Broker:
    """The private Mosquitto, logging subscriptions (how the bench knows a C or foreign client is ready)."""

    def __init__(self, workdir: Path) -> None:
        from bench._servers import Mosquitto

        self.mosquitto = Mosquitto(
            workdir,
            persistence=False,
            max_queued_messages=0,
            extra_conf="max_queued_bytes 0\nmessage_size_limit 0\n"
            + "".join(f"log_type {t}\n" for t in ("error", "warning", "notice", "information", "subscribe")),
        )
        self.port = self.mosquitto.port

    def wait_subscribed(self, client_id: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while f" {client_id} 1 anbo/" not in self.mosquitto.log.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{client_id} did not subscribe")
            time.sleep(0.02)


def publish(port: int, count: int, kind: str) -> None:
    subprocess.run([sys.executable, __file__, "_publish", str(port), str(count), kind], check=True)


def round_python(broker: Broker, mode: str, kind: str, count: int) -> tuple[float, float]:
    """bare aiomqtt or anbo: (µs CPU per message, peak RSS MB), measured in the receiver."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        recv = subprocess.Popen(
            [sys.executable, __file__, "_receive", mode, str(broker.port), str(count), str(ready), kind],
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or recv.poll() is not None:
                raise SystemExit(f"{mode} receiver did not subscribe")
            time.sleep(0.02)
        publish(broker.port, count, kind)
        out, _ = recv.communicate(timeout=300)
        result = json.loads(out)
        if int(result["n"]) != count:
            raise SystemExit(f"{mode} received {result['n']} of {count}")
        return float(result["cpu_s"]) / count * 1e6, float(result["rss_mb"])


def round_sub(broker: Broker, count: int, kind: str) -> tuple[float, float]:
    """mosquitto_sub -C count to /dev/null: exits after exactly ``count`` messages."""
    from bench._servers import find_binary

    cid = f"sub-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [find_binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-i", cid,
         "-q", "1", "-V", "mqttv5", "-t", "anbo/+/+/+", "-C", str(count)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    broker.wait_subscribed(cid, proc)
    cpu0 = proc_cpu_s(proc.pid)
    # Peak RSS from /proc while it runs (wait4's ru_maxrss would count the forked Python
    # before the exec).
    peak = [proc_rss_mb(proc.pid, "VmHWM")]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            with contextlib.suppress(OSError, ValueError):
                peak.append(proc_rss_mb(proc.pid, "VmHWM"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    publish(broker.port, count, kind)
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"mosquitto_sub exited {proc.returncode} before {count} messages")
    return (usage.ru_utime + usage.ru_stime - cpu0) / count * 1e6, max(peak)


def exporter_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mqtt_message_total{")
        )
    )


def round_exporter(broker: Broker, count: int, kind: str) -> tuple[float, float]:
    """mqtt-exporter (PyPI, its own venv), subscriptions raised to QoS 1; count from its /metrics."""
    from bench._servers import free_port

    cid = f"exporter-{os.getpid()}-{time.monotonic_ns()}"
    prom = free_port()
    env = {
        **os.environ,
        "MQTT_ADDRESS": "127.0.0.1",
        "MQTT_PORT": str(broker.port),
        "MQTT_TOPIC": "anbo/+/+/+",
        "MQTT_CLIENT_ID": cid,
        "MQTT_V5_PROTOCOL": "True",
        "PROMETHEUS_ADDRESS": "127.0.0.1",
        "PROMETHEUS_PORT": str(prom),
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([exporter_python(), "-c", EXPORTER_QOS1], env=env, stdout=subprocess.DEVNULL)
    try:
        broker.wait_subscribed(cid, proc)
        cpu0 = proc_cpu_s(proc.pid)
        publish(broker.port, count, kind)
        deadline = time.monotonic() + 120
        while (n := exporter_count(prom)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"mqtt-exporter counted {n} of {count}")
            time.sleep(0.2)
        if n != count:
            raise SystemExit(f"mqtt-exporter counted {n} messages, {count} were sent")
        return (proc_cpu_s(proc.pid) - cpu0) / count * 1e6, proc_rss_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(10)


def one_round(broker: Broker, mode: str, kind: str, count: int) -> tuple[float, float]:
    if mode == "mosquitto_sub":
        return round_sub(broker, count, kind)
    if mode == "mqtt-exporter":
        return round_exporter(broker, count, kind)
    return round_python(broker, mode, kind, count)


def versions() -> str:
    from importlib.metadata import version

    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return (
        f"Python {platform.python_version()}, aiomqtt {version('aiomqtt')}, "
        f"paho-mqtt {version('paho-mqtt')}, {mosq}, {EXPORTER}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-messages", type=int, default=30_000)
    parser.add_argument(
        "--audio-seconds", type=float, default=2.0, help="seconds of the 300-channel audio load per round"
    )
    parser.add_argument("--no-exporter", action="store_true", help="leave mqtt-exporter out (no PyPI)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 000 messages: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.json_messages, args.audio_seconds = 1, 2000, 0.2
    if not shutil.which("mosquitto_sub"):
        raise SystemExit("mosquitto_sub is not installed (scripts/setup --bench installs it)")

    json_modes = ["mosquitto_sub", "bare", "anbo"] + ([] if args.no_exporter else ["mqtt-exporter"])
    if not args.no_exporter:
        exporter_python()
    cases = [
        ("json", args.json_messages, json_modes),
        ("audio", int(args.audio_seconds * 10 * AUDIO_CHANNELS), ["mosquitto_sub", "bare", "anbo"]),
    ]
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp))
        broker.mosquitto.start()
        try:
            for kind, count, modes in cases:
                results[kind] = {m: [] for m in modes}
                for r in range(args.rounds):
                    for mode in modes if r % 2 == 0 else modes[::-1]:
                        us, rss = one_round(broker, mode, kind, count)
                        results[kind][mode].append((us, rss))
                        print(
                            f"  {kind:5} round {r + 1} {mode:13}: {us:8.2f} µs CPU/message, "
                            f"RSS {rss:5.0f} MB",
                            flush=True,
                        )
        finally:
            broker.mosquitto.stop()

    model = cpu_model()
    print(f"\nmachine: {model}, {os.cpu_count()} cores; {versions()}")
    print(
        "every receiver: its own process, MQTT 5, QoS 1 subscription (mqtt-exporter raised from its fixed "
        "QoS 0), every message counted at the receiver; CPU from subscribed to the last message; RSS = peak"
    )
    labels = {
        "mosquitto_sub": "mosquitto_sub -C N > /dev/null (C floor)",
        "bare": "bare aiomqtt loop",
        "mqtt-exporter": "mqtt-exporter (JSON → Prometheus)",
        "anbo": "anbo ingest → Pipeline",
    }
    for kind, count, modes in cases:
        title = "(a) one JSON reading per message" if kind == "json" else "(b) 100 ms stereo 48 kHz L16 block"
        print(f"\n{title}, {count} messages per round, median of {args.rounds}")
        print(f"{'receiver':42} {'µs/msg':>9} {'RSS MB':>7} {'anbo is':>10}")
        med = {m: statistics.median(u for u, _ in results[kind][m]) for m in modes}
        for m in modes:
            rss = statistics.median(r for _, r in results[kind][m])
            ratio = "" if m == "anbo" else f"{med['anbo'] / med[m]:9.2f}×"
            print(f"{labels[m]:42} {med[m]:9.1f} {rss:7.0f} {ratio:>10}")
        if "mqtt-exporter" in med:
            share = med["anbo"] / med["mqtt-exporter"]
            print(
                f"goal anbo ≤ ⅓ of mqtt-exporter's CPU per message: {share:.2f} "
                f"{'MET' if share <= 1 / 3 else 'NOT MET'}"
            )
        if kind == "audio":
            load = med["anbo"] * 3000 / 1e6
            print(
                f"300 channels = 3000 blocks/s → {load:.2f} of one core {'MET' if load < 1.0 else 'NOT MET'}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_receive":
        receiver_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) > 1 and sys.argv[1] == "_publish":
        publisher_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
