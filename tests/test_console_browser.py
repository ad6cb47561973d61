"""The station console in a real headless Chromium against a real `anbo run`.

Mosquitto (started here) ← the simulator (`anbo simulate`, a scenario with a carrier
loss on the FM service) → the daemon → the page over Server-Sent Events. Screenshots
of each state are saved under the test's temporary directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Mosquitto, find_binary, free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SCENARIO = """
name: console-carrier-loss
description: A carrier loss on the FM service, then back on air.
duration: 10m
timeline:
  - {id: fm-carrier, at: 4s, for: 8s, target: fm-97.5, fault: carrier_loss}
expect: []
"""


def _get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.load(r)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Daemon:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "anbo", "run", "--config", str(self.config)], stdout=out, stderr=out
            )
        wait_for_port(self.port, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def station(mosquitto: Mosquitto, write_config, tmp_path: Path) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    port = free_port()
    config = write_config(url=mosquitto.url)
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    scenario = tmp_path / "scenario.yml"
    scenario.write_text(SCENARIO)
    daemon = Daemon(config, port, tmp_path / "anbo.log")
    daemon.start()
    _wait(lambda: _get_json(port, "/api/v1/status")["header"]["broker"]["connected"], 20, "broker up")
    with (tmp_path / "sim.log").open("ab") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "anbo", "simulate", "--config", str(config), "--scenario", str(scenario)],
            stdout=out,
            stderr=out,
        )
    try:
        yield daemon
    finally:
        sim.terminate()
        sim.wait(timeout=20)
        daemon.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = find_binary("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,800")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(find_binary("chromedriver")), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _tile_state(driver: Any, target: str) -> str | None:
    state = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.dataset.state : null;",
        f"tile-{target}",
    )
    return None if state is None else str(state)


def _console_errors(driver: Any) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "api/v1/events" not in e["message"]  # a restart drops the stream
    ]


def test_console_live_in_chromium(station: Daemon, browser: Any, tmp_path: Path) -> None:
    port = station.port
    shots = tmp_path / "screenshots"
    shots.mkdir()
    browser.get(f"http://127.0.0.1:{port}/")
    services = [s["name"] for s in _get_json(port, "/api/v1/services")["services"]]
    assert services == ["fm-97.5", "dtv-ds21", "tx-a"]
    _wait(lambda: all(_tile_state(browser, s) is not None for s in services), 10, "a tile per service")
    _wait(lambda: _tile_state(browser, "fm-97.5") == "on_air", 15, "fm on air")
    browser.save_screenshot(str(shots / "1-on-air.png"))

    # The carrier loss: once the daemon fires CarrierLoss, the page shows it within 2 s.
    def firing() -> bool:
        alerts = _get_json(port, "/api/v1/alerts")["alerts"]
        return any(a["alertname"] == "CarrierLoss" and a["state"] == "firing" for a in alerts)

    _wait(firing, 30, "CarrierLoss firing in the API")
    t0 = time.monotonic()
    _wait(lambda: _tile_state(browser, "fm-97.5") == "outage", 2, "fm tile in outage")
    _wait(
        lambda: bool(browser.find_elements("css selector", '#alerts tr[data-alertname="CarrierLoss"]')),
        2 - (time.monotonic() - t0) + 0.05,
        "CarrierLoss listed",
    )
    browser.save_screenshot(str(shots / "2-outage.png"))

    # The runbook link opens a rendered page.
    link = browser.find_element("css selector", '#alerts tr[data-alertname="CarrierLoss"] a.runbook')
    href = link.get_attribute("href")
    assert href is not None and "/runbooks/CarrierLoss" in href
    main_window = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(href)
    assert browser.find_element("css selector", "main.runbook h1").text.startswith("CarrierLoss")
    headings = [h.text for h in browser.find_elements("css selector", "main.runbook h2")]
    assert "First checks, in order" in headings
    browser.save_screenshot(str(shots / "2b-runbook.png"))
    browser.get(href.split("?")[0] + "?lang=zh")
    assert "首先检查（按顺序）" in browser.find_element("css selector", "main.runbook").text
    browser.close()
    browser.switch_to.window(main_window)

    # Resolution turns the tile back.
    _wait(lambda: _tile_state(browser, "fm-97.5") == "on_air", 30, "fm back on air")
    browser.save_screenshot(str(shots / "3-resolved.png"))

    # The ledger's interval is listed under recent outages, closed, with its cause.
    def closed_outage() -> list[dict[str, Any]]:
        rows = _get_json(port, "/api/v1/status")["recent_outages"] or []
        return [r for r in rows if r["target"] == "fm-97.5" and r["class"] == "outage" and r["end"]]

    _wait(lambda: bool(closed_outage()), 10, "the closed outage in the ledger")
    (outage,) = closed_outage()
    assert "CarrierLoss" in outage["causes"]
    assert 4.0 <= outage["end"] - outage["start"] <= 14.0
    _wait(
        lambda: bool(browser.find_elements("css selector", f'#outage-list tr[data-id="{outage["id"]}"]')),
        3,
        "the outage row on the page",
    )
    row = browser.find_element("css selector", f'#outage-list tr[data-id="{outage["id"]}"]')
    assert "CarrierLoss" in row.text and "Outage" in row.text

    # Chinese labels.
    browser.get(f"http://127.0.0.1:{port}/?lang=zh")
    _wait(lambda: _tile_state(browser, "fm-97.5") is not None, 10, "tiles in zh")
    body = browser.find_element("tag name", "body").text
    assert "播出业务" in body and "当前告警" in body and "正常播出" in body
    browser.save_screenshot(str(shots / "4-zh.png"))
    browser.get(f"http://127.0.0.1:{port}/?lang=en")

    # A daemon restart: the page shows its data stale, then recovers by itself.
    _wait(lambda: _tile_state(browser, "fm-97.5") is not None, 10, "tiles")
    station.stop()
    _wait(lambda: browser.find_element("id", "stale").is_displayed(), 10, "stale banner")
    browser.save_screenshot(str(shots / "5-stale.png"))
    station.start()
    _wait(lambda: not browser.find_element("id", "stale").is_displayed(), 20, "recovered after restart")
    _wait(lambda: _tile_state(browser, "fm-97.5") == "on_air", 15, "fm on air after restart")
    browser.save_screenshot(str(shots / "6-recovered.png"))

    browser.set_window_size(390, 844)
    browser.save_screenshot(str(shots / "7-phone.png"))
    assert _console_errors(browser) == []
