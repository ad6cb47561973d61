"""Every query of every dashboard against a real Prometheus scraping a real anbo.

Mosquitto (started here) ← ``anbo simulate`` (a scenario with dead air, overmodulation,
a VSWR spike, faulty emergency-broadcast endpoints and a dispatch) → ``anbo run``
(delivering to a real Alertmanager, with an FM re-frequencing and a 700 MHz DTV
plan whose cutovers pass during the test, an [eb] inventory of the
simulated fleet, and the outage ledger) ← Prometheus (Debian's ``prometheus``, scraping
every second, evaluating config/prometheus/anbo-recording.yml).

Then, for every panel of every dashboard, every query with its template variables
substituted by the values Prometheus has (as Grafana would, from the variables'
``label_values`` queries) must parse and return at least one series over the test's
time range. The test fails listing each dashboard, panel and query that does not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import dashboards
from tests.alertmanager_server import Alertmanager
from tests.servers import Mosquitto, Prometheus, free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "config" / "prometheus" / "anbo-recording.yml"
#: Seconds the simulator runs before the queries. The cutover comes 50 s after the test
#: began (~40 s of simulator), once the identity check has had 30 s of simulcast audio
#: (half its minute-long window), so both phases and their panels have data.
RUN_S = 55.0
CUTOVER_AFTER_S = 50.0

SCENARIO = """
name: dashboards
description: Something for every dashboard panel to show.
duration: 10m
eb: {endpoints: 40, regions: 2}
timeline:
  - {id: dead, at: 3s, for: 15s, target: dtv-ds21, fault: dead_air}
  - {id: vswr, at: 3s, for: 20s, target: tx-a, fault: vswr_spike, vswr: 1.8}
  - {id: overmod, at: 3s, for: 25s, target: fm-101.8, fault: overmodulation}
  - {id: amp, at: 2s, for: 5m, fault: eb_endpoint_fault, region: r01, share: 0.2, kind: amplifier}
  - {id: warn, at: 4s, for: 30s, fault: eb_dispatch, regions: [r01, r02], confirm_share: 0.8,
     latency: [1s, 4s], deadline: 5s, message_id: M-DASH-1}
expect: []
"""

FLEET = """
name: fleet
description: The scenario's fleet alone.
duration: 1m
eb: {endpoints: 40, regions: 2}
timeline: []
expect: []
"""

#: The built-in rules with shorter holds, so their alerts fire within the test.
FAST_RULES = """
groups:
  - name: dashboards-test
    rules:
      - alert: VacatedChannelEmission
        selector: {kind: migration}
        expr: old_rf_level_dbuv > param("vacated_max_dbuv", 30) and phase == 2
        for: 1s
        severity: critical
        annotations: {summary: "Emission on the vacated channel of {{ service }}"}
      - alert: EbEndpointFaults
        selector: {kind: eb_region}
        expr: eb_faults > 0
        for: 1s
        severity: warning
        annotations: {summary: "Faulty endpoints in {{ target }}"}
"""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def station_config(base: str, port: int, cutover: float, alertmanager: str) -> str:
    return (
        base.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        .replace(
            "[station]",
            f"""[probes]
tick = 0.5
silence_on_s = 3.0
silence_off_s = 1.0

[alerting]
rule_paths = ["rules"]
alertmanagers = [{{url = "{alertmanager}"}}]

[eb]
inventory = ["endpoints.csv"]
region_level = "county"
dispatch_deadlines = [5, 10]

[[migrations]]
name = "news-97.5-to-101.8"
service = "News"
kind = "fm"
old_frequency_mhz = 97.5
new_frequency_mhz = 101.8
simulcast_start = {iso(cutover - 3600)}
cutover = {iso(cutover)}
rds_pi = "C201"

[[migrations]]
name = "mux1-ds40-to-ds21"
service = "Mux 1"
kind = "dtv"
old_channel = "DS-40"
new_channel = "DS-21"
simulcast_start = {iso(cutover - 3600)}
cutover = {iso(cutover)}

[station]""",
            1,
        )
        .replace(
            'service = "News"\nfrequency_mhz = 97.5',
            'service = "News"\nfrequency_mhz = 97.5\nparams = { rds_pi = "C201" }',
        )
        + '\n[[targets]]\nname = "fm-101.8"\nkind = "fm"\nservice = "News (new)"\nfrequency_mhz = 101.8\n'
        'params = { rds_pi = "C201" }\n'
        '\n[[targets]]\nname = "dtv-ds40"\nkind = "dtv"\nservice = "Mux 1 (700 MHz)"\nchannel = "DS-40"\n'
    )


def anbo(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "anbo", *args], stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_anbo(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "anbo", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def stack(mosquitto: Mosquitto, write_config, tmp_path: Path) -> Iterator[tuple[Prometheus, float]]:  # type: ignore[no-untyped-def]
    port = free_port()
    start = time.time()
    config = write_config(url=mosquitto.url)
    base = config.read_text()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fast.yml").write_text(FAST_RULES)
    scenario = tmp_path / "scenario.yml"
    scenario.write_text(SCENARIO)
    # The simulated fleet's inventory, written by the simulator (from the plain config:
    # the full one needs the inventory; the fleet's shape is the scenario's `eb`).
    fleet = tmp_path / "fleet.yml"
    fleet.write_text(FLEET)
    run_anbo(
        "simulate", "-c", str(config), "-s", str(fleet), "--eb-inventory", str(tmp_path / "endpoints.csv")
    )
    (tmp_path / "prometheus").mkdir()
    am = Alertmanager(tmp_path / "alertmanager", webhook_url="http://127.0.0.1:9/")
    prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"], rule_files=[RECORDING])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        am.start()
        config.write_text(station_config(base, port, start + CUTOVER_AFTER_S, am.url))
        run_anbo("check", "-c", str(config))
        prom.start()
        procs.append(anbo("run", "-c", str(config), log=tmp_path / "anbo.log"))
        wait_for_port(port, timeout=30)
        procs.append(
            anbo(
                "simulate",
                "-c",
                str(config),
                "-s",
                str(scenario),
                "--audio-rate",
                "8000",
                log=tmp_path / "sim.log",
            )
        )
        yield prom, time.time()
    finally:
        for proc in reversed(procs):
            stop(proc)
        prom.stop()
        am.stop()


# --------------------------------------------------------------------------- Grafana's part


def label_values(prom: Prometheus, query: str, start: float, end: float) -> list[str]:
    """What Grafana's ``label_values(selector, label)`` returns (the series API)."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
    assert m, query
    data = prom.api("series", **{"match[]": m.group(1), "start": str(start), "end": str(end)})
    assert data["status"] == "success", (query, data)
    series: list[dict[str, str]] = data["data"]
    return sorted({s[m.group(2)] for s in series if m.group(2) in s})


def regex_escape(value: str) -> str:
    """Grafana's escape of a multi-value variable's values in a PromQL regex matcher: each
    regex metacharacter behind a backslash, itself escaped for the PromQL string."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def substitute(expr: str, values: dict[str, list[str]], range_s: int) -> str:
    """Template variables as Grafana interpolates them in PromQL: multi-value as a regex
    alternation of the (escaped) values; $__range as the dashboard's range,
    $__rate_interval as four scrape intervals (its value at this range and step)."""
    out = expr.replace("$__range", f"{range_s}s").replace("$__rate_interval", "4s")
    for name in sorted(values, key=len, reverse=True):
        alternation = "|".join(regex_escape(v) for v in values[name])
        out = out.replace(f"${{{name}}}", f"({alternation})").replace(f"${name}", f"({alternation})")
    return out


def resolve_variables(
    prom: Prometheus, board: dict[str, Any], start: float, end: float
) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = substitute(var["query"], values, int(end - start))
        found = label_values(prom, query, start, end)
        assert found, f"{board['uid']}: variable {var['name']} has no values ({query})"
        values[var["name"]] = found
    return values


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for p in board["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
    for a in board["annotations"]["list"]:
        if "expr" in a:
            yield f"annotation {a['name']}", a["expr"]


# --------------------------------------------------------------------------- the test


def test_every_dashboard_query_returns_data(stack: tuple[Prometheus, float], tmp_path: Path) -> None:
    prom, began = stack
    time.sleep(max(0.0, began + RUN_S - time.time()))
    end = time.time()
    start = began
    failures: list[str] = []
    checked = 0
    for name, text in dashboards.rendered().items():
        board = json.loads(text)
        values = resolve_variables(prom, board, start, end)
        for title, expr in expressions(board):
            query = substitute(expr, values, int(end - start))
            data = prom.api("query_range", query=query, start=str(start), end=str(end), step="1")
            checked += 1
            if data.get("status") != "success":
                failures.append(f"{name}: {title}: {query}: {data.get('error')}")
            elif not data["data"]["result"]:
                failures.append(f"{name}: {title}: {query}: no data")
    anbo_log = (tmp_path / "anbo.log").read_text(errors="replace")[-3000:]
    assert not failures, (
        f"{len(failures)} of {checked} queries failed:\n" + "\n".join(failures) + "\n" + anbo_log
    )
    assert checked >= 80, checked  # 88 today: a dashboard lost must not pass unnoticed
