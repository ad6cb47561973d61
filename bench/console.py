"""Station console benchmark: 200 services, ~100 active alerts, 20 live clients.

Run on demand from the repository root (never from pytest)::

    .venv/bin/python bench/console.py                 # 200 services, 20 clients, 30 s windows
    .venv/bin/python bench/console.py --services 50 --clients 5 --seconds 10   # a quick look

What runs, against a private Mosquitto on a free loopback port:

- a real ``anbo run`` (its own process) with a generated station of ``--services``
  targets: four in five FM services, one in five transmitters;
- a publisher sending every target's JSON readings once a second (the off-air receiver's
  rate); ``--alerts`` FM services (100) report a carrier below the floor, so CarrierLoss
  fires on them and the console has that many active alerts to show;
- then, in turn: the daemon's CPU over ``--seconds`` with no console client (the
  baseline, same run), the same with ``--clients`` Server-Sent-Events clients connected
  to ``/api/v1/events`` (each reads every snapshot, as a browser tab does), and the first
  render of the page in a real headless Chromium (Debian's chromium via chromedriver):
  from navigation until every service's tile is on the page, median of five loads.

Printed: the daemon's CPU share of one core without and with the clients, the difference
(goal: under 5 % of a core added for 20 clients), the snapshot size and the events each
client received, and the first-render times. The figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

STATION = "benchstation"


def station_toml(url: str, listen: str, services: int) -> str:
    out = [
        'state_directory = "state"',
        "",
        "[station]",
        f'name = "{STATION}"',
        "",
        "[mqtt]",
        f'url = "{url}"',
        "",
        "[metrics]",
        f'listen = "{listen}"',
        "",
        "[logging]",
        'level = "warning"',
    ]
    for i in range(services):
        out.append("")
        out.append("[[targets]]")
        if i % 5 == 4:
            out += [f'name = "tx-{i:03d}"', 'kind = "tx"', f'service = "Transmitter {i}"']
        else:
            out += [
                f'name = "fm-{i:03d}"',
                'kind = "fm"',
                f'service = "FM service {i}"',
                f"frequency_mhz = {87.5 + 0.1 * (i % 200):.1f}",
            ]
    return "\n".join(out) + "\n"


def targets(services: int) -> list[str]:
    return [f"tx-{i:03d}" if i % 5 == 4 else f"fm-{i:03d}" for i in range(services)]


class Publisher:
    """Every target's readings once a second; the first ``lost`` FM services without a carrier."""

    def __init__(self, port: int, names: list[str], lost: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-console-pub")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.names = names
        fm = [n for n in names if n.startswith("fm-")]
        self.lost = set(fm[:lost])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from monitor.wire import encode_readings

        seq = 0
        start = time.time()
        while not self.stop.is_set():
            ts = time.time()
            for name in self.names:
                if name.startswith("tx-"):
                    values: dict[str, float | bool] = {
                        "forward_power_w": 1000.0,
                        "reflected_power_w": 5.0,
                        "vswr": 1.15,
                        "pa_temp_celsius": 45.0,
                    }
                    stream = "status"
                else:
                    lost = name in self.lost
                    values = {
                        "rf_level_dbuv": 10.0 if lost else 65.0,
                        "modulation_percent": 0.0 if lost else 85.0,
                        "pilot_present": not lost,
                    }
                    stream = "rf"
                self.client.publish(
                    f"anbo/{STATION}/{name}/{stream}", encode_readings(ts, seq, values), qos=1
                )
            seq += 1
            self.stop.wait(max(0.0, start + seq - time.time()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.client.loop_stop()
        self.client.disconnect()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def sse_client(url: str, stop: asyncio.Event, counts: list[int], sizes: list[int], i: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as r:
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if event.startswith(b"event: status"):
                    counts[i] += 1
                    sizes.append(len(event))
            if stop.is_set():
                return


def with_clients(port: int, pid: int, clients: int, seconds: float) -> tuple[float, list[int], list[int]]:
    counts = [0] * clients
    sizes: list[int] = []
    result: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()
        url = f"http://127.0.0.1:{port}/api/v1/events"
        tasks = [asyncio.create_task(sse_client(url, stop, counts, sizes, i)) for i in range(clients)]
        await asyncio.sleep(3.0)  # every client connected and fed
        result.append(await asyncio.to_thread(cpu_share, pid, seconds))
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return result[0], counts, sizes


def first_render(port: int, services: int, loads: int = 5) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.servers import find_binary

    opts = webdriver.ChromeOptions()
    opts.binary_location = find_binary("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(find_binary("chromedriver")), options=opts)
    times = []
    try:
        for _ in range(loads):
            driver.get("about:blank")
            t0 = time.perf_counter()
            driver.get(f"http://127.0.0.1:{port}/")
            while driver.execute_script("return document.querySelectorAll('#tiles .tile').length") < services:
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("the page did not show every tile within 30 s")
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
    finally:
        driver.quit()
    return times


def get_json(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.load(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--alerts", type=int, default=100, help="FM services without a carrier")
    ap.add_argument("--seconds", type=float, default=30.0, help="each CPU window")
    args = ap.parse_args()

    from tests.servers import Mosquitto, free_port

    with tempfile.TemporaryDirectory(prefix="anbo-bench-console-") as tmp:
        base = Path(tmp)
        broker = Mosquitto(base / "mosquitto")
        broker.start()
        port = free_port()
        config = base / "station.toml"
        config.write_text(station_toml(broker.url, f"127.0.0.1:{port}", args.services))
        log = (base / "anbo.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "anbo", "run", "--config", str(config)], cwd=base, stdout=log, stderr=log
        )
        names = targets(args.services)
        pub = Publisher(broker.port, names, args.alerts)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    get_json(port, "/api/v1/status")
                    break
                except OSError:
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise SystemExit("anbo run did not start; see its log") from None
                    time.sleep(0.2)
            pub.thread.start()
            # Let CarrierLoss fire (for: 5s) and the history fill a little.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                alerts = get_json(port, "/api/v1/alerts")["alerts"]  # type: ignore[index]
                if sum(a["state"] == "firing" for a in alerts) >= min(args.alerts, args.services * 4 // 5):
                    break
                time.sleep(1.0)
            status = get_json(port, "/api/v1/status")
            firing = sum(a["state"] == "firing" for a in status["alerts"])  # type: ignore[index]
            size = len(json.dumps(status, separators=(",", ":")))

            base_cpu = cpu_share(daemon.pid, args.seconds)
            loaded_cpu, counts, sizes = with_clients(port, daemon.pid, args.clients, args.seconds)
            renders = first_render(port, args.services)
        finally:
            pub.close()
            daemon.terminate()
            daemon.wait(timeout=30)
            broker.stop()

    print(
        f"anbo console bench · {args.services} services · {firing} alerts firing · {args.clients} SSE clients"
    )
    print(
        f"snapshot: {size / 1024:.0f} KiB JSON; events per client in the window: "
        f"min {min(counts)}, max {max(counts)}; {sum(sizes) / 1e6:.1f} MB sent to the clients in all"
    )
    print(f"daemon CPU, no console client: {base_cpu * 100:5.1f} % of a core (baseline, same run)")
    print(f"daemon CPU, {args.clients} clients:      {loaded_cpu * 100:5.1f} % of a core")
    added = (loaded_cpu - base_cpu) * 100
    print(f"added by the clients: {added:+.1f} % of a core (goal < 5 %): {'met' if added < 5 else 'NOT met'}")
    print(
        f"first render in Chromium (navigation → all {args.services} tiles): "
        f"median {statistics.median(renders) * 1000:.0f} ms, max {max(renders) * 1000:.0f} ms "
        f"({len(renders)} loads)"
    )


if __name__ == "__main__":
    main()
