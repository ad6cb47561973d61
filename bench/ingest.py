"""Ingest benchmark: CPU microseconds per message through a real Mosquitto on loopback.

Run on demand from the repository root::

    .venv/bin/python bench/ingest.py            # both cases, 3 rounds each
    .venv/bin/python bench/ingest.py --rounds 5 --json-messages 40000 --audio-seconds 3

For each case it measures, in the same run and against the same private broker:

- ``bare``: a bare aiomqtt receive loop (``async for m in client.messages: n += 1``)
  on unmodified aiomqtt and paho-mqtt (checked: anbo's fast path, ``monitor.mqttio``,
  is not installed in that process), the floor a plain aiomqtt consumer pays;
- ``anbo``: anbo's real ingest path (MqttIngest with its MQTT fast path → IngestQueue →
  Pipeline: topic parse, routing, strict decode, sequence tracking, store).

Since the fast path (batched socket reads and writes, lighter v5 properties, one
consumer wake-up per burst), anbo's whole path costs less than the bare aiomqtt loop:
a ratio below 1 is that saving net of anbo's own per-message work.

Each receiver runs in its own process and reports ``time.process_time()`` from its
first to its last message, divided by the message count; the publisher is another
process. Cases:

(a) one JSON reading per message, spread over 10 configured targets.
    Goal: anbo within 1.3x of the bare loop.
(b) audio: 300 stereo 48 kHz channels in 100 ms int16 blocks (3000 blocks/s of
    19.2 kB each), published as fast as the broker takes them.
    Goal: anbo's CPU per block x 3000 blocks/s < 1 core (held in real time).

The machines are shared and noisy: rounds alternate bare/anbo and medians are
printed, with the ratio, not absolute times, as the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
        await asyncio.to_thread(ready.touch)
        n = 0
        start = 0.0
        async for _ in client.messages:
            if n == 0:
                start = time.process_time()
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
    first: list[float] = []
    handle = pipeline.handle
    seen = 0

    def handler(
        topic: str, payload: bytes, ctype: str | None, props: list[tuple[str, str]] | None, rx: float
    ) -> None:
        nonlocal seen
        if not first:
            first.append(time.process_time())
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
    await asyncio.to_thread(ready.touch)
    await done.wait()
    cpu = time.process_time() - first[0]
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
    print(json.dumps({"cpu_s": cpu, "n": n}))


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
                        now, i // JSON_TARGETS, {"rf_level_dbuv": 60.0 + (i % 7) * 0.1, "pilot_khz": 6.8}
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
def one_round(broker_port: int, mode: str, kind: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        recv = subprocess.Popen(
            [sys.executable, __file__, "_receive", mode, str(broker_port), str(count), str(ready), kind],
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or recv.poll() is not None:
                raise SystemExit(f"{mode} receiver did not subscribe")
            time.sleep(0.02)
        subprocess.run([sys.executable, __file__, "_publish", str(broker_port), str(count), kind], check=True)
        out, _ = recv.communicate(timeout=300)
        result = json.loads(out)
        return float(result["cpu_s"]) / int(result["n"]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-messages", type=int, default=30_000)
    parser.add_argument(
        "--audio-seconds", type=float, default=2.0, help="seconds of the 300-channel audio load per round"
    )
    args = parser.parse_args()

    from bench._servers import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(
            Path(tmp), extra_conf="max_queued_messages 0\nmax_queued_bytes 0\nmessage_size_limit 0\n"
        )
        broker.conf.write_text(
            broker.conf.read_text()
            .replace("persistence true", "persistence false")
            .replace("max_queued_messages 100000\n", "")
        )
        broker.start()
        try:
            cases = [("json", args.json_messages), ("audio", int(args.audio_seconds * 10 * AUDIO_CHANNELS))]
            results: dict[str, dict[str, list[float]]] = {}
            for kind, count in cases:
                results[kind] = {"bare": [], "anbo": []}
                for r in range(args.rounds):
                    for mode in ("bare", "anbo") if r % 2 == 0 else ("anbo", "bare"):
                        us = one_round(broker.port, mode, kind, count)
                        results[kind][mode].append(us)
                        print(f"  {kind:5} round {r + 1} {mode:4}: {us:8.2f} µs CPU/message", flush=True)
        finally:
            broker.stop()

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = cpu
    print(f"\nmachine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'case':34} {'bare µs/msg':>12} {'anbo µs/msg':>12} {'ratio':>7}  goal")
    j_b, j_a = (statistics.median(results["json"][m]) for m in ("bare", "anbo"))
    print(
        f"{'(a) JSON reading per message':34} {j_b:12.2f} {j_a:12.2f} {j_a / j_b:7.2f}  ≤ 1.30 "
        f"{'MET' if j_a / j_b <= 1.3 else 'NOT MET'}"
    )
    a_b, a_a = (statistics.median(results["audio"][m]) for m in ("bare", "anbo"))
    load = a_a * 3000 / 1e6
    print(
        f"{'(b) 100 ms stereo 48 kHz block':34} {a_b:12.2f} {a_a:12.2f} {a_a / a_b:7.2f}  "
        f"300 channels = 3000 blocks/s → {load:.2f} of one core "
        f"{'MET' if load < 1.0 else 'NOT MET'} (bare loop alone: {a_b * 3000 / 1e6:.2f})"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_receive":
        receiver_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) > 1 and sys.argv[1] == "_publish":
        publisher_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
