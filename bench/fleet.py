"""Emergency-broadcast fleet benchmark: the daemon itself, 100 000 endpoints, a real Mosquitto.

Run on demand from the repository root (``scripts/bench fleet``; ``tests/test_bench.py``
runs ``--quick``)::

    .venv/bin/python bench/fleet.py                # 100 000 endpoints, 60 s period, 300 s measured
    .venv/bin/python bench/fleet.py --quick        # 2 000 endpoints, seconds: a smoke test

What runs, against a private Mosquitto and a private Alertmanager on free loopback ports:

- **the daemon**: ``monitor.daemon.Daemon``, built and run exactly as ``anbo run``
  does (settings loaded from a generated ``anbo.toml``): MQTT ingest with anbo's fast
  path, the Pipeline, ``monitor/ebfleet.py`` (the endpoint inventory, a generated CSV
  of 100 000 endpoints in 200 townships), the built-in rule packs evaluated every 1 s
  tick, the Alertmanager sink and the metrics listener, whose ``/metrics`` (the
  collector) the bench scrapes every 15 s like Prometheus. Its own process; the only
  addition is a timer around ``Evaluator.tick`` (the whole tick: workers, EB fleet
  evaluation, rules, ledger, Alertmanager hand-over);
- **publisher**: every endpoint sends one heartbeat every ``--period`` s, spread evenly,
  as the wire contract's JSON reading on ``anbo/eb/<id>/status``; 2 % of the endpoints
  never report (they go offline, and the region alerts fire), 0.5 % report a fault;
- **baseline**: ``mosquitto_sub`` (the C client) subscribed to the same topics at the
  same QoS, to /dev/null, in the same run: the floor of receiving these messages.

Measured after a warm-up of one full heartbeat period plus 10 s (every reporting
endpoint has been heard from: steady state), over ``--seconds`` (default 300 s = five
periods, 300 ticks): the daemon's CPU share of one core (utime + stime from /proc over
the window), the baseline's, their ratio, and the tick's p50/p99/max over every tick in
the window. Goals: under 25 % of one core and p99 tick under 20 ms.

``BENCH_PROFILE=out.prof`` profiles the daemon over the window with cProfile (which
slows it down: the CPU and tick figures of such a run are not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_model, proc_cpu_s, proc_rss_mb  # noqa: E402

COUNTIES = 20
TOWNSHIPS_PER_COUNTY = 10
OFFLINE_SHARE = 0.02
FAULT_SHARE = 0.005
OFFLINE_AFTER_S = 180.0
SCRAPE_S = 15.0


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


CONFIG = """
state_directory = "state"

[station]
name = "bench"

[mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "anbo-bench"
qos = {qos}

[metrics]
listen = "127.0.0.1:{metrics_port}"

[logging]
level = "warning"
format = "json"

[alerting]
alertmanagers = [{{ url = "{alertmanager}" }}]

[eb]
inventory = ["endpoints.csv"]
region_level = "township"
offline_after = {offline_after}

[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
"""


# --------------------------------------------------------------------------- the daemon
def daemon_main(config: str, ready: str, result: str, warmup: float, seconds: float) -> None:
    """``anbo run``'s daemon, with a timer around each tick; the result as JSON in ``result``."""
    from monitor.daemon import Daemon
    from monitor.evaluation import Evaluator
    from monitor.logs import configure_logging
    from monitor.settings import load_settings

    loaded = load_settings(Path(config))
    configure_logging(loaded.settings.logging.level, loaded.settings.logging.format)
    ticks: list[tuple[float, float]] = []  # (monotonic end, duration s)
    tick = Evaluator.tick

    async def timed_tick(self: Evaluator) -> Any:
        t0 = time.perf_counter()
        out = await tick(self)
        ticks.append((time.monotonic(), time.perf_counter() - t0))
        return out

    Evaluator.tick = timed_tick  # type: ignore[method-assign]

    profile = os.environ.get("BENCH_PROFILE")

    async def main() -> dict[str, Any]:
        t0 = time.perf_counter()
        daemon = Daemon(loaded, freeze_heap=True)  # as anbo run builds it
        load_s = time.perf_counter() - t0
        run = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 60)
        await asyncio.to_thread(Path(ready).write_text, str(daemon.metrics_port))
        await asyncio.sleep(warmup)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        m0, c0 = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        m1, c1 = time.monotonic(), time.process_time()
        # Tell the driver the window ended, and wait until it has read the baseline's CPU
        # and this process's RSS (a daemon that stopped first would leave it no end mark).
        await asyncio.to_thread(Path(ready + ".end").write_text, "")
        for _ in range(200):
            if await asyncio.to_thread(Path(ready + ".ack").exists):
                break
            await asyncio.sleep(0.05)
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        eb = daemon.eb
        status = eb.status if eb is not None else None
        out = {
            "load_s": load_s,
            "wall_s": m1 - m0,
            "cpu_s": c1 - c0,
            "tick_ms": [d * 1e3 for end, d in ticks if m0 < end <= m1],
            "heartbeats": eb.counters.heartbeats if eb is not None else 0,
            "online": int(status.online.sum()) if status is not None else 0,
            "faulty": int(status.faulty.sum()) if status is not None else 0,
            "total": int(status.total.sum()) if status is not None else 0,
            "firing": sorted(
                {a.labels.get("alertname", "") for a in daemon.evaluator.engine.active() if a.notify}
            ),
        }
        daemon.request_stop()
        await asyncio.wait_for(run, 30)
        return out

    Path(result).write_text(json.dumps(asyncio.run(main())))


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
def scrape(port: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        size = len(r.read())
    return time.perf_counter() - t0, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--period", type=float, default=60.0, help="heartbeat period of each endpoint (s)")
    parser.add_argument("--seconds", type=float, default=300.0, help="measured window (s)")
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1, help="subscription and publish QoS")
    parser.add_argument("--quick", action="store_true", help="2 000 endpoints, 2 s period, 6 s measured")
    args = parser.parse_args()
    if args.quick:
        args.endpoints, args.period, args.seconds = 2000, 2.0, 6.0
    elif args.seconds < 2 * args.period:
        parser.error("--seconds: measure at least two full heartbeat periods")
    warmup = args.period + (1.0 if args.quick else 10.0)

    from bench._servers import Alertmanager, Mosquitto, find_binary, free_port

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        write_inventory(tmpdir / "endpoints.csv", args.endpoints)
        broker_dir = tmpdir / "broker"
        broker_dir.mkdir()
        broker = Mosquitto(
            broker_dir, persistence=False, max_queued_messages=0, extra_conf="max_queued_bytes 0\n"
        )
        # The sink: a real Alertmanager whose webhook goes nowhere (nothing listens there).
        am = Alertmanager(tmpdir / "am", webhook_url=f"http://127.0.0.1:{free_port()}/")
        config = tmpdir / "anbo.toml"
        config.write_text(
            CONFIG.format(
                port=broker.port,
                qos=args.qos,
                metrics_port=free_port(),
                alertmanager=am.url,
                offline_after=max(OFFLINE_AFTER_S, 3 * args.period),
            )
        )
        broker.start()
        am.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            ready, result = tmpdir / "ready", tmpdir / "result.json"
            end, ack = tmpdir / "ready.end", tmpdir / "ready.ack"
            argv = [sys.executable, __file__, "_daemon", str(config), str(ready), str(result)]
            daemon = subprocess.Popen([*argv, str(warmup), str(args.seconds)])
            procs.append(daemon)
            deadline = time.monotonic() + 120
            while not ready.exists():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.05)
            metrics_port = int(ready.read_text())
            t_ready = time.monotonic()
            sub = subprocess.Popen(
                [find_binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port),
                 "-q", str(args.qos), "-t", "anbo/eb/+/status", "-V", "mqttv5"],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(sub)
            pub = subprocess.Popen(
                [sys.executable, __file__, "_publish", str(broker.port), str(args.endpoints),
                 str(args.period), str(warmup + args.seconds + 2), str(args.qos)],
                stdout=subprocess.PIPE,
            )  # fmt: skip
            procs.append(pub)
            # Mark the window's start as the daemon does (warmup s after ready) and its
            # end when the daemon says so; sample the baseline's CPU and the daemon's RSS
            # at both ends.
            scrapes: list[tuple[float, int]] = []
            next_scrape = time.monotonic()
            marks: dict[str, tuple[float, float, float]] = {}
            while daemon.poll() is None:
                now = time.monotonic()
                if now >= next_scrape:
                    scrapes.append(scrape(metrics_port))
                    next_scrape += SCRAPE_S
                if "start" not in marks and now - t_ready >= warmup:
                    marks["start"] = (now, proc_cpu_s(sub.pid), proc_rss_mb(daemon.pid))
                if "end" not in marks and end.exists():  # the daemon's window ended
                    marks["end"] = (now, proc_cpu_s(sub.pid), proc_rss_mb(daemon.pid))
                    ack.write_text("")
                time.sleep(0.05)
            pub_out, _ = pub.communicate(timeout=60)
            if daemon.returncode != 0:
                raise SystemExit(f"the daemon failed (exit {daemon.returncode})")
            res = json.loads(result.read_text())
            if "end" not in marks:
                raise SystemExit("the daemon stopped before the end of its window")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
            am.stop()
            broker.stop()
    report(args, res, json.loads(pub_out), marks, scrapes, warmup)


def report(
    args: argparse.Namespace,
    res: dict[str, Any],
    published: dict[str, Any],
    marks: dict[str, tuple[float, float, float]],
    scrapes: list[tuple[float, int]],
    warmup: float,
) -> None:
    import numpy

    ticks = sorted(res["tick_ms"])
    wall = res["wall_s"]
    share = res["cpu_s"] / wall
    (m0, s0, _), (m1, s1, rss) = marks["start"], marks["end"]
    sub_share = (s1 - s0) / (m1 - m0)
    rate = published["sent"] / published["seconds"]
    model = cpu_model()
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]

    def pct(q: float) -> float:
        return float(numpy.percentile(ticks, q))

    n_tot = COUNTIES * TOWNSHIPS_PER_COUNTY
    scrape_ms = statistics.median(t for t, _ in scrapes) * 1e3
    verdict_cpu = "MET" if share < 0.25 else "NOT MET"
    verdict_tick = "MET" if pct(99) < 20 else "NOT MET"
    lines = [
        f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, {mosq}",
        f"fleet: {args.endpoints} endpoints in {n_tot} townships, heartbeat every {args.period:g} s, "
        f"QoS {args.qos}; the daemon built in {res['load_s']:.2f} s",
        f"publisher: {published['sent']} heartbeats ({rate:.0f}/s); "
        f"the daemon applied {res['heartbeats']} in all",
        f"window: {wall:.0f} s after a {warmup:g} s warm-up; last tick: {res['online']} of "
        f"{res['total']} online, {res['faulty']} faulty",
        f"firing: {', '.join(res['firing']) or 'none'}",
        f"/metrics scraped {len(scrapes)} times: median {scrape_ms:.0f} ms, "
        f"{scrapes[-1][1] / 1e3:.0f} kB; daemon RSS at the end {rss:.0f} MB",
        f"baseline mosquitto_sub (C, same topics, QoS {args.qos}): {sub_share * 100:.1f} % of one core",
        f"anbo daemon: {share * 100:.1f} % of one core ({res['cpu_s']:.1f} s CPU / {wall:.0f} s), "
        f"{res['cpu_s'] / max(rate * wall, 1) * 1e6:.0f} µs per message, "
        f"{share / max(sub_share, 1e-9):.1f}× the baseline  goal < 25 %: {verdict_cpu}",
        f"tick (whole Evaluator.tick), {len(ticks)} ticks: p50 {pct(50):.2f} ms, "
        f"p99 {pct(99):.2f} ms, max {ticks[-1]:.2f} ms  goal p99 < 20 ms: {verdict_tick}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_daemon":
        daemon_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_publish":
        publisher_main(
            int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
        )
    else:
        main()
