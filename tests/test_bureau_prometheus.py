"""config/prometheus for the bureau tier, by the real promtool and two real Prometheus servers:
the shipped station agent (agent mode, remote_write) sends a scraped target's samples to the
shipped central configuration (remote-write receiver), where they carry the station label."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.servers import find_binary, free_port, wait_for_port

PROMETHEUS = Path(__file__).resolve().parent.parent / "config" / "prometheus"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


@pytest.mark.parametrize("name", ["station-agent.yml", "bureau-central.yml"])
def test_promtool_check_config(name: str) -> None:
    out = run(find_binary("promtool"), "check", "config", name)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_bureau_rules_and_their_tests() -> None:
    out = run(find_binary("promtool"), "check", "rules", "bureau-rules.yml")
    assert out.returncode == 0 and "warning" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
    out = run(find_binary("promtool"), "test", "rules", "bureau-rules.test.yml")
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    names = {
        r["alert"]
        for g in yaml.safe_load((PROMETHEUS / "bureau-rules.yml").read_text())["groups"]
        for r in g["rules"]
    }
    cases = yaml.safe_load((PROMETHEUS / "bureau-rules.test.yml").read_text())["tests"]
    fired = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for c in cases for t in c["alert_rule_test"] if not t["exp_alerts"]}
    assert names == fired == quiet


class Prom:
    def __init__(self, folder: Path, config: str, *flags: str) -> None:
        folder.mkdir(parents=True)
        self.port = free_port()
        (folder / "prometheus.yml").write_text(config)
        self.log = (folder / "log").open("wb")
        self.proc = subprocess.Popen(
            [
                find_binary("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        wait_for_port(self.port, 30)

    def query(self, expr: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            return list(json.loads(r.read())["data"]["result"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture
def target() -> Iterator[int]:
    """Something for the agent to scrape (standing for the station's anbo)."""
    registry = CollectorRegistry()
    Gauge("anbo_target_info", "configured targets", ["station", "target"], registry=registry).labels(
        "qingshan", "fm-97.5"
    ).set(1)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    yield port
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.integration
@pytest.mark.slow
def test_station_agent_remote_writes_to_the_central_prometheus(tmp_path: Path, target: int) -> None:
    central_text = (PROMETHEUS / "bureau-central.yml").read_text()
    central_doc = yaml.safe_load(central_text)
    central_doc.pop("rule_files")  # the rules are checked above; here: the receiver
    central_doc.pop("alerting")
    central_doc["scrape_configs"] = []
    central = Prom(tmp_path / "central", yaml.safe_dump(central_doc), "--web.enable-remote-write-receiver",
                   f"--storage.tsdb.path={tmp_path / 'central' / 'data'}")  # fmt: skip
    agent_doc = yaml.safe_load((PROMETHEUS / "station-agent.yml").read_text())
    agent_doc["global"]["scrape_interval"] = "1s"
    agent_doc["global"]["scrape_timeout"] = "1s"
    agent_doc["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{target}"]}]
    rw = agent_doc["remote_write"][0]
    rw["url"] = f"http://127.0.0.1:{central.port}/api/v1/write"
    rw.pop("tls_config")  # TLS of the receiver is --web.config.file's business, not this file's
    rw["queue_config"]["batch_send_deadline"] = "1s"
    agent = Prom(tmp_path / "agent", yaml.safe_dump(agent_doc), "--enable-feature=agent",
                 f"--storage.agent.path={tmp_path / 'agent' / 'wal'}")  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline and not found:
            found = central.query('up{job="anbo", station="qingshan"}')
            time.sleep(0.5)
        assert found, "the agent's samples did not reach the central Prometheus"
        (info,) = central.query('anbo_target_info{job="anbo"}')
        assert info["metric"]["station"] == "qingshan"  # type: ignore[index]
    finally:
        agent.stop()
        central.stop()


def test_bureau_alertmanager_config_and_routes() -> None:
    config = PROMETHEUS.parent / "alertmanager" / "bureau.yml"
    amtool = find_binary("amtool")
    out = run(amtool, "check-config", str(config))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    for labels, receivers in (
        (["alertname=CarrierLoss", "severity=critical", "station=qingshan"], "bureau-oncall"),
        (["alertname=StationUnreachable", "severity=critical"], "bureau-oncall"),
        (["alertname=StationLinkDown", "severity=warning"], "bureau-platform"),
        (["alertname=LowRF", "severity=warning"], "bureau-duty"),
    ):
        out = run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
        assert out.stdout.strip() == receivers, (labels, out.stdout + out.stderr)
