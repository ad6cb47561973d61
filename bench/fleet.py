"""Emergency-broadcast fleet benchmark: 100 000 endpoints heartbeating through a real Mosquitto.

Run on demand from the repository root (never from pytest)::

    .venv/bin/python bench/fleet.py                      # 100 000 endpoints, 60 s measured
    .venv/bin/python bench/fleet.py --seconds 30 --protocol 3.1.1 --qos 0
    .venv/bin/python bench/fleet.py --client paho        # bare paho receiver, for comparison

What runs, each in its own process, against a private Mosquitto on a free loopback port:

- **publisher**: every endpoint sends one heartbeat every ``--period`` s (60 s), spread
  evenly (100 000 / 60 s ≈ 1 667 messages/s), as the wire contract's JSON reading on
  ``anbo/eb/<id>/status``::

      {"ts": …, "seq": …, "values": {"online": 1, "fault_amplifier": 0,
       "fault_speaker_line": 0}, "info": {"region": "<township>"}}

  2 % of the endpoints never report (offline), so 1 633 messages/s arrive; 0.5 % report
  a fault.
- **receiver**: loads the endpoint inventory (a generated CSV, through
  ``monitor.inventory``), subscribes through the daemon's own ingest
  (``monitor.ingest.MqttIngest``: aiomqtt with anbo's MQTT fast path ``monitor.mqttio``,
  the bounded ``IngestQueue``, latency histogram; MQTT v5 and QoS 1 by default, as the
  daemon does; ``--protocol``/``--qos`` to compare, ``--client aiomqtt`` for a plain
  aiomqtt loop and ``--client paho`` for bare paho's network thread), and
  for every message parses the topic and decodes the payload with ``monitor.wire``,
  then queues the heartbeat. Every 1 s tick it applies the queued heartbeats and
  faults to a ``probes.eb.Fleet`` in one batch, evaluates the fleet and builds the
  per-region measurements (online ratio, counts, truncated offline/faulty id lists):
  what the daemon exports each tick.

Printed: the receiver's CPU share of one core (``process_time / wall`` over the measured
window, after a warm-up that starts with the first message), split into anbo's per-message
handler and the rest (the MQTT client, the ticks), and the tick's evaluation time
(median, p99, max). Goals: under 25 % of one core and under 20 ms per tick.

``ANBO_BENCH_PROFILE=out.prof`` profiles the receiver's measured window with cProfile
(``anbo`` and ``aiomqtt`` clients; the profiler roughly doubles the CPU figure).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COUNTIES = 20
TOWNSHIPS_PER_COUNTY = 10
OFFLINE_SHARE = 0.02
FAULT_SHARE = 0.005
OFFLINE_AFTER_S = 180.0
MAX_IDS = 20
TICK_S = 1.0


def endpoint_id(i: int) -> str:
    return f"ep{i:06d}"


def region_of(i: int) -> tuple[str, str]:
    c = i % COUNTIES
    t = (i // COUNTIES) % TOWNSHIPS_PER_COUNTY
    return f"旗县{c:02d}", f"乡镇{c:02d}-{t:02d}"


def write_inventory(path: Path, n: int) -> None:
    lines = ["id,name,county,township,lat,lon"]
    for i in range(n):
        county, township = region_of(i)
        lines.append(f"{endpoint_id(i)},大喇叭{i},{county},{township},{40 + i % 100 / 100:.2f},{110.5:.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- receiver
def _profiler() -> cProfile.Profile | None:
    """A running profiler if ``ANBO_BENCH_PROFILE`` names a file to write its stats to."""
    if not os.environ.get("ANBO_BENCH_PROFILE"):
        return None
    prof = cProfile.Profile()
    prof.enable()
    return prof


def _dump(prof: cProfile.Profile | None) -> None:
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["ANBO_BENCH_PROFILE"])


class Receiver:
    """The fleet side: per message topic → endpoint → decode → queue; per tick batch → Fleet."""

    def __init__(self, inventory: Path) -> None:
        from monitor.inventory import load_inventory
        from monitor.wire import TopicParser

        t0 = time.perf_counter()
        self.inventory = load_inventory([inventory])
        self.load_s = time.perf_counter() - t0
        self.fleet = self.inventory.fleet("township")
        self.names = self.inventory.region_names("township")
        self.parser = TopicParser("anbo")
        self.hb_idx: list[int] = []
        self.hb_ts: list[float] = []
        self.fault_idx: list[int] = []
        self.fault_val: list[int] = []
        self.messages = 0
        self.decode_errors = 0
        self.unknown_endpoints = 0
        self.handle_s = 0.0
        self.lag = 0.0  # largest publish-to-handle delay since the last tick (s)
        self.measuring = False
        self.tick_ms: list[float] = []
        self.per_tick: list[tuple[int, float]] = []  # (messages, largest delay) per measured tick
        self._last_count = 0
        self.online = self.faulty = 0

    def handle(self, topic: str, payload: bytes, ctype: str | None) -> None:
        from monitor.wire import DecodeError, EndpointTopic, Readings, decode

        t0 = time.perf_counter()
        self.messages += 1
        try:
            parsed = self.parser.parse(topic)
            if not isinstance(parsed, EndpointTopic):
                return
            i = self.inventory.index.get(parsed.endpoint)
            if i is None:
                self.unknown_endpoints += 1
                return
            now = time.time()
            reading = decode(payload, content_type=ctype, user_properties=None, now=now)
            if not isinstance(reading, Readings):
                self.decode_errors += 1
                return
            self.lag = max(self.lag, now - reading.ts)
            values = reading.values
            if values.get("online", 0.0) >= 1.0:
                self.hb_idx.append(i)
                self.hb_ts.append(reading.ts)
            self.fault_idx.append(i)
            self.fault_val.append(
                (1 if values.get("fault_amplifier", 0.0) else 0)
                | (2 if values.get("fault_speaker_line", 0.0) else 0)
            )
        except DecodeError:
            self.decode_errors += 1
        finally:
            self.handle_s += time.perf_counter() - t0

    def tick(self) -> None:
        import numpy as np

        from probes.dispatch import ids_by_region

        t0 = time.perf_counter()
        # Swap the queues out first: with the paho client, handle() runs in another thread.
        hb_idx, hb_ts, self.hb_idx, self.hb_ts = self.hb_idx, self.hb_ts, [], []
        f_idx, f_val, self.fault_idx, self.fault_val = self.fault_idx, self.fault_val, [], []
        n = min(len(hb_idx), len(hb_ts))
        fleet = self.fleet
        if n:
            fleet.heartbeat(np.array(hb_idx[:n], dtype=np.intp), np.array(hb_ts[:n], dtype=np.float64))
        n = min(len(f_idx), len(f_val))
        if n:
            fleet.set_faults(np.array(f_idx[:n], dtype=np.intp), np.array(f_val[:n], dtype=np.int64))
        status = fleet.evaluate(time.time(), OFFLINE_AFTER_S)
        ids = self.inventory.ids
        offline_ids = ids_by_region(
            np.flatnonzero(~status.online_mask), status.region, fleet.n_regions, ids, MAX_IDS
        )
        fault_ids = ids_by_region(
            np.flatnonzero(status.faulty_mask), status.region, fleet.n_regions, ids, MAX_IDS
        )
        ratio = status.online_ratio.tolist()
        online = status.online.tolist()
        total = status.total.tolist()
        faulty = status.faulty.tolist()
        measurements = {
            name: {
                "eb_online_ratio": ratio[r],
                "eb_online": float(online[r]),
                "eb_total": float(total[r]),
                "eb_faults": float(faulty[r]),
                "eb_offline_ids": offline_ids[r],
                "eb_fault_ids": fault_ids[r],
            }
            for r, name in enumerate(self.names)
        }
        assert len(measurements) == fleet.n_regions
        elapsed = (time.perf_counter() - t0) * 1e3
        count = self.messages
        if self.measuring:
            self.tick_ms.append(elapsed)
            self.per_tick.append((count - self._last_count, self.lag))
        self._last_count = count
        self.lag = 0.0
        self.online, self.faulty = int(status.online.sum()), int(status.faulty.sum())

    def result(self, cpu: float, wall: float, messages: int, handle_s: float) -> dict[str, object]:
        return {
            "cpu_s": cpu,
            "wall_s": wall,
            "messages": messages,
            "handle_s": handle_s,
            "tick_ms": self.tick_ms,
            "per_tick": self.per_tick,
            "inventory_load_s": self.load_s,
            "decode_errors": self.decode_errors,
            "unknown_endpoints": self.unknown_endpoints,
            "online": self.online,
            "faulty": self.faulty,
        }


async def ticker(rx: Receiver) -> None:
    nxt = time.monotonic() + TICK_S
    while True:
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        nxt += TICK_S
        rx.tick()


async def measure(rx: Receiver, warmup: float, seconds: float) -> tuple[float, float, int, float]:
    """Wait for the first message and the warm-up, then measure: CPU s, wall s, messages, handler s."""
    while rx.messages == 0:  # the warm-up starts with the publisher  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await asyncio.sleep(warmup)
    rx.measuring = True
    prof = _profiler()
    m0, c0, w0, h0 = rx.messages, time.process_time(), time.monotonic(), rx.handle_s
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    _dump(prof)
    rx.measuring = False
    return cpu, wall, rx.messages - m0, rx.handle_s - h0


async def receive_anbo(
    rx: Receiver, port: int, ready: Path, warmup: float, seconds: float, qos: int, v5: bool
) -> dict[str, object]:
    """The daemon's ingest: ``monitor.ingest.MqttIngest`` (aiomqtt with anbo's fast path, its
    bounded queue, latency histogram, persistent session), ticks on the same event loop."""
    import contextlib

    from monitor.ingest import Credentials, IngestQueue, MqttIngest
    from monitor.settings import MqttSettings
    from monitor.stats import Stats

    settings = MqttSettings(url=[f"mqtt://127.0.0.1:{port}"], protocol="5" if v5 else "3.1.1", qos=qos)
    stats = Stats()
    queue = IngestQueue(settings.queue_size, stats)
    handle = rx.handle

    def handler(topic: str, payload: bytes, ctype: str | None, props: object, rx_time: float) -> None:
        handle(topic, payload, ctype)

    ingest = MqttIngest(
        settings,
        client_id=f"bench-fleet-{os.getpid()}",
        credentials=Credentials(None, None),
        subscriptions=lambda: ["anbo/eb/+/status"],
        handler=handler,
        queue=queue,
        stats=stats,
    )
    task = asyncio.create_task(ingest.run())
    await ingest.subscribed.wait()
    await asyncio.to_thread(ready.touch)
    tick_task = asyncio.create_task(ticker(rx))
    cpu, wall, messages, handle_s = await measure(rx, warmup, seconds)
    for t in (tick_task, task):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    if stats.connects != 1:
        raise SystemExit(f"the receiver connected {stats.connects} times (expected once)")
    return rx.result(cpu, wall, messages, handle_s)


async def receive_aiomqtt(
    rx: Receiver, port: int, ready: Path, warmup: float, seconds: float, qos: int, v5: bool
) -> dict[str, object]:
    """For comparison: plain aiomqtt (``async for message in client.messages``), ticks on the same loop."""
    import aiomqtt

    async def consume(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            props = message.properties
            ctype = getattr(props, "ContentType", None) if props is not None else None
            payload = message.payload
            assert isinstance(payload, bytes)
            rx.handle(message.topic.value, payload, ctype)

    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bench-fleet-{os.getpid()}", protocol=protocol
    ) as client:
        await client.subscribe("anbo/eb/+/status", qos=qos)
        await asyncio.to_thread(ready.touch)
        tasks = [asyncio.create_task(ticker(rx)), asyncio.create_task(consume(client))]
        cpu, wall, messages, handle_s = await measure(rx, warmup, seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return rx.result(cpu, wall, messages, handle_s)


def receive_paho(
    rx: Receiver, port: int, ready: Path, warmup: float, seconds: float, qos: int, v5: bool
) -> dict[str, object]:
    """For comparison: paho's own network thread calling the handler, ticks in the main thread."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        ctype = getattr(props, "ContentType", None) if props is not None else None
        rx.handle(message.topic, message.payload, ctype)

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-fleet-{os.getpid()}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("anbo/eb/+/status", qos=qos)
    client.loop_start()
    time.sleep(0.5)
    ready.touch()
    while rx.messages == 0:
        time.sleep(0.01)

    def run_ticks(until: float) -> None:
        nxt = time.monotonic() + TICK_S
        while nxt <= until:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += TICK_S
            rx.tick()

    run_ticks(time.monotonic() + warmup)
    rx.measuring = True
    m0, c0, w0, h0 = rx.messages, time.process_time(), time.monotonic(), rx.handle_s
    run_ticks(w0 + seconds)
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    messages, handle_s = rx.messages - m0, rx.handle_s - h0
    rx.measuring = False
    client.loop_stop()
    client.disconnect()
    return rx.result(cpu, wall, messages, handle_s)


def receiver_main(
    client: str, port: int, inventory: str, ready: str, warmup: float, seconds: float, qos: int, protocol: str
) -> None:
    from monitor.logs import configure_logging

    configure_logging("warning", "json", sys.stderr)  # stdout carries the result
    rx = Receiver(Path(inventory))
    v5 = protocol == "5"
    if client == "anbo":
        result = asyncio.run(receive_anbo(rx, port, Path(ready), warmup, seconds, qos, v5))
    elif client == "aiomqtt":
        result = asyncio.run(receive_aiomqtt(rx, port, Path(ready), warmup, seconds, qos, v5))
    else:
        result = receive_paho(rx, port, Path(ready), warmup, seconds, qos, v5)
    print(json.dumps(result))


# --------------------------------------------------------------------------- publisher
def publisher_main(port: int, n: int, period: float, duration: float, qos: int) -> None:
    import random

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from monitor.wire import encode_readings

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=paho.MQTTv5
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rng = random.Random(1)
    silent = set(rng.sample(range(n), int(n * OFFLINE_SHARE)))
    faulty = set(rng.sample(range(n), int(n * FAULT_SHARE)))
    order = [i for i in range(n) if i not in silent]
    topics = [f"anbo/eb/{endpoint_id(i)}/status" for i in range(n)]
    regions = [region_of(i)[1] for i in range(n)]
    interval = period / len(order)
    start = time.monotonic()
    seq = 0
    sent = 0
    k = 0
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        due = int((now - start) / interval) + 1  # messages due so far
        while sent < due:
            i = order[k]
            k = (k + 1) % len(order)
            if k == 0:
                seq += 1
            payload = encode_readings(
                time.time(),
                seq,
                {
                    "online": 1,
                    "fault_amplifier": 1 if i in faulty else 0,
                    "fault_speaker_line": 0,
                },
                info={"region": regions[i]},
            )
            client.publish(topics[i], payload, qos=qos)
            sent += 1
        time.sleep(0.005)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}))


# --------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--period", type=float, default=60.0, help="heartbeat period of each endpoint (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (s), at least 30")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1, help="subscription and publish QoS")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument(
        "--client",
        choices=["anbo", "aiomqtt", "paho"],
        default="anbo",
        help="receiver's MQTT client: anbo (the daemon's ingest, monitor.ingest.MqttIngest), "
        "or for comparison plain aiomqtt or bare paho",
    )
    args = parser.parse_args()
    if args.seconds < 30:
        parser.error("--seconds: measure at least 30 s (the heartbeats arrive spread over the period)")

    from bench._servers import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        inventory = tmpdir / "endpoints.csv"
        write_inventory(inventory, args.endpoints)
        broker_dir = tmpdir / "broker"
        broker_dir.mkdir()
        broker = Mosquitto(broker_dir, extra_conf="max_queued_messages 0\nmax_queued_bytes 0\n")
        broker.conf.write_text(
            broker.conf.read_text()
            .replace("persistence true", "persistence false")
            .replace("max_queued_messages 100000\n", "")
        )
        broker.start()
        try:
            ready = tmpdir / "ready"
            recv = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "_receive",
                    args.client,
                    str(broker.port),
                    str(inventory),
                    str(ready),
                    str(args.warmup),
                    str(args.seconds),
                    str(args.qos),
                    args.protocol,
                ],
                stdout=subprocess.PIPE,
            )
            deadline = time.monotonic() + 60
            while not ready.exists():
                if time.monotonic() > deadline or recv.poll() is not None:
                    raise SystemExit("receiver did not subscribe")
                time.sleep(0.05)
            duration = args.warmup + args.seconds + 3
            pub = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "_publish",
                    str(broker.port),
                    str(args.endpoints),
                    str(args.period),
                    str(duration),
                    str(args.qos),
                ],
                stdout=subprocess.PIPE,
            )
            out, _ = recv.communicate(timeout=args.warmup + args.seconds + 120)
            pub_out, _ = pub.communicate(timeout=60)
        finally:
            broker.stop()
    report(args, json.loads(out), json.loads(pub_out))


def report(args: argparse.Namespace, result: dict[str, Any], published: dict[str, Any]) -> None:
    import numpy

    ticks = sorted(result["tick_ms"])
    p99 = ticks[min(len(ticks) - 1, round(0.99 * (len(ticks) - 1)))]
    wall = result["wall_s"]
    cpu_share = result["cpu_s"] / wall
    n = max(result["messages"], 1)
    counts = [c for c, _ in result["per_tick"]]
    delays = [d for _, d in result["per_tick"]]
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    lines = [
        f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}",
        f"fleet: {args.endpoints} endpoints in {COUNTIES * TOWNSHIPS_PER_COUNTY} townships, heartbeat every "
        f"{args.period:g} s; receiver: {args.client}, MQTT {args.protocol}, QoS {args.qos}; "
        f"inventory CSV loaded in {result['inventory_load_s'] * 1e3:.0f} ms",
        f"publisher: {published['sent']} heartbeats in {published['seconds']:.1f} s "
        f"({published['sent'] / published['seconds']:.0f}/s)",
        f"receiver: {result['messages']} messages in {wall:.1f} s measured "
        f"({result['messages'] / wall:.0f}/s), "
        f"decode errors {result['decode_errors']}, unknown endpoints {result['unknown_endpoints']}; "
        f"last tick: {result['online']} online, {result['faulty']} faulty",
        f"messages per tick: min {min(counts)}, median {statistics.median(counts):.0f}, max {max(counts)}; "
        f"largest publish-to-handle delay {max(delays) * 1e3:.0f} ms",
        f"per message: {result['cpu_s'] / n * 1e6:.1f} µs of receiver CPU in all, of which "
        f"{result['handle_s'] / n * 1e6:.1f} µs in anbo's handler (topic, decode, queue); "
        "the rest is the MQTT client and the ticks",
        f"receiver CPU: {cpu_share * 100:.1f} % of one core ({result['cpu_s']:.2f} s CPU / {wall:.1f} s)  "
        f"goal < 25 %: {'MET' if cpu_share < 0.25 else 'NOT MET'}",
        f"tick (apply heartbeats + evaluate + per-region measurements), {len(ticks)} ticks: "
        f"median {statistics.median(ticks):.2f} ms, p99 {p99:.2f} ms, max {ticks[-1]:.2f} ms  "
        f"goal < 20 ms: {'MET' if p99 < 20 else 'NOT MET'}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_receive":
        receiver_main(
            sys.argv[2],
            int(sys.argv[3]),
            sys.argv[4],
            sys.argv[5],
            float(sys.argv[6]),
            float(sys.argv[7]),
            int(sys.argv[8]),
            sys.argv[9],
        )
    elif len(sys.argv) > 1 and sys.argv[1] == "_publish":
        publisher_main(
            int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
        )
    else:
        main()
