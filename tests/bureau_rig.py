"""The bureau tier on one machine, for the end-to-end tests: stations (each its own Mosquitto,
`anbo run` and `anbo simulate`), their bridges over cuttable links to the bureau's Mosquitto
(TLS, client certificates, the shipped config/mosquitto files), `anbo bureau` and a private
PostgreSQL cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bureau.store import BureauReader
from monitor.ledger import LedgerStore
from tests.servers import LinkProxy, Mosquitto, Postgres, free_port, make_pki

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO_CONF = ROOT / "config" / "mosquitto"

STATION = """
state_directory = "{state}"
[station]
name = "{name}"
county = "{county}"
station_class = {cls}
[mqtt]
url = "{url}"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5
[metrics]
listen = "127.0.0.1:0"
[probes]
tick = 0.5
[ledger]
heartbeat = 1.0
[bureau]
heartbeat = 1.0
resend_after = 3.0
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
streams = ["rf"]
[[targets]]
name = "fm-101.8"
kind = "fm"
service = "Music"
frequency_mhz = 101.8
streams = ["rf"]
schedule = {{ tz = "Asia/Shanghai", windows = [{{ start = "05:00", end = "01:00" }}] }}
"""

BUREAU = """
heartbeat_timeout = 4
[mqtt]
url = "mqtts://127.0.0.1:{port}"
client_id = "anbo-bureau"
tls_ca_file = "{ca}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
keepalive = 5
[database]
url = "{db}"
[http]
listen = "127.0.0.1:{http}"
{stations}
"""


def wait(predicate: Callable[[], bool], limit: float, what: str, step: float = 0.2) -> float:
    """Wait until ``predicate()``; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if predicate():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"not within {limit} s: {what}")


class Proc:
    """A command of ours (`python -m anbo ...`) with its output in a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = [sys.executable, "-m", "anbo", *args]
        self.logpath = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.logpath.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Station:
    name: str
    county: str
    cls: int
    folder: Path
    broker: Mosquitto
    link: LinkProxy
    daemon: Proc
    config: Path
    simulators: list[Proc] = field(default_factory=list)

    @property
    def ledger(self) -> Path:
        return self.folder / "state" / "ledger.sqlite3"

    def rows(self) -> set[tuple[str, int]]:
        """Every (event id, revision) in the station's ledger."""
        if not self.ledger.exists():
            return set()
        store = LedgerStore(self.ledger, readonly=True)
        try:
            store.open()
            assert store.conn is not None
            return {
                (str(a), int(b)) for a, b in store.conn.execute("SELECT event_id, revision FROM intervals")
            }
        finally:
            store.close()

    def outbox(self) -> int:
        return len(self.waiting())

    def waiting(self) -> set[int]:
        """Sequence numbers of the events the bureau has not acknowledged yet."""
        store = LedgerStore(self.ledger, readonly=True)
        try:
            store.open()
            assert store.conn is not None
            return {int(seq) for (seq,) in store.conn.execute("SELECT seq FROM outbox")}
        finally:
            store.close()

    def simulate(self, scenario: Path) -> None:
        sim = Proc(
            ["simulate", "--config", str(self.config), "--scenario", str(scenario), "--log-level", "warning"],
            self.folder / f"simulate-{len(self.simulators)}.log",
        )
        sim.start()
        self.simulators.append(sim)


class Rig:
    def __init__(self, folder: Path, stations: list[tuple[str, str, int]]) -> None:
        self.folder = folder
        self.pki = make_pki(folder / "pki", ["bureau-mq"], ["anbo-bureau", *(s[0] for s in stations)])
        ca = self.pki["ca"][0]
        self.pg = Postgres()
        self.pg.start()
        # the bureau's Mosquitto: the shipped bureau.conf and ACL, ports and paths substituted
        bdir = folder / "bureau-mq"
        bdir.mkdir()
        acl = bdir / "anbo-bureau.acl"
        acl.write_text((MOSQUITTO_CONF / "bureau.acl").read_text())
        port = free_port()
        text = (MOSQUITTO_CONF / "bureau.conf").read_text()
        cert, key = self.pki["bureau-mq"]
        for old, new in (
            ("listener 8883", f"listener {port} 127.0.0.1"),
            ("/var/lib/mosquitto/", f"{bdir / 'data'}/"),
            ("autosave_interval 30", "autosave_interval 1"),
            ("/etc/mosquitto/certs/bureau-ca.pem", str(ca)),
            ("/etc/mosquitto/certs/bureau-mq.pem", str(cert)),
            ("/etc/mosquitto/certs/bureau-mq.key", str(key)),
            ("/etc/mosquitto/anbo-bureau.acl", str(acl)),
        ):
            assert old in text, old
            text = text.replace(old, new)
        self.bureau_mq = Mosquitto(bdir, port, text, listener=False)
        self.bureau_mq.start()
        self.stations: list[Station] = []
        for name, county, cls in stations:
            sdir = folder / name
            sdir.mkdir()
            link = LinkProxy(port)
            link.start()
            bridge = (MOSQUITTO_CONF / "station-bridge.conf").read_text()
            cert, key = self.pki[name]
            for old, new in (
                ("bureau-mq.example.gov.cn:8883", f"127.0.0.1:{link.port}"),
                ("/etc/mosquitto/certs/bureau-ca.pem", str(ca)),
                ("/etc/mosquitto/certs/qingshan.pem", str(cert)),
                ("/etc/mosquitto/certs/qingshan.key", str(key)),
                ("restart_timeout 2 30", "restart_timeout 1 2"),
                ("qingshan", name),
            ):
                assert old in bridge, old
                bridge = bridge.replace(old, new)
            broker = Mosquitto(sdir / "mq", extra_conf=bridge)
            broker.start()
            config = sdir / "anbo.toml"
            config.write_text(
                STATION.format(state=sdir / "state", name=name, county=county, cls=cls, url=broker.url)
            )
            daemon = Proc(["run", "--config", str(config), "--log-format", "json"], sdir / "run.log")
            daemon.start()
            self.stations.append(Station(name, county, cls, sdir, broker, link, daemon, config))
        self.http_port = free_port()
        bcert, bkey = self.pki["anbo-bureau"]
        self.bureau_config = folder / "bureau.toml"
        self.bureau_config.write_text(
            BUREAU.format(
                port=port,
                ca=ca,
                cert=bcert,
                key=bkey,
                db=self.pg.url,
                http=self.http_port,
                stations="\n".join(
                    f'[[stations]]\nname = "{n}"\ncounty = "{c}"\nstation_class = {k}' for n, c, k in stations
                ),
            )
        )
        self.bureau = Proc(
            ["bureau", "--config", str(self.bureau_config), "--log-format", "json"], folder / "bureau.log"
        )
        self.bureau.start()

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def page(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def view(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.page("/api/v1/stations"))
        return data

    def gauge(self, metric: str, station: str) -> float | None:
        m = re.search(rf'^{metric}{{station="{re.escape(station)}"}} (\S+)$', self.metrics(), re.M)
        return None if m is None else float(m.group(1))

    def station_up(self, name: str) -> float | None:
        return self.gauge("anbo_bureau_station_up", name)

    def bureau_rows(self, station: str) -> set[tuple[str, int]]:
        try:
            with BureauReader(self.pg.url) as r:
                return {
                    (str(a), int(b))
                    for a, b in r.conn.execute(
                        "SELECT event_id, revision FROM interval_revisions WHERE station = %s", (station,)
                    )
                }
        except Exception:
            return set()

    def close(self) -> None:
        for s in self.stations:
            for sim in s.simulators:
                sim.stop()
            s.daemon.stop()
        self.bureau.stop()
        for s in self.stations:
            s.broker.stop()
            s.link.cut()
        self.bureau_mq.stop()
        self.pg.cleanup()
