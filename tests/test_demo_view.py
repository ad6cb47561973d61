"""The demo's live view: transmitter values in their own column; emergency-broadcast
regions with "not yet reported" apart from offline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from anbo.demo.run import _demo_settings, _with_eb_inventory
from anbo.demo.view import EventLog, render
from monitor.daemon import Daemon
from simulator.scenario import resolve_scenario


def test_view_columns_and_eb_regions_at_start(tmp_path: Path) -> None:
    scenario = resolve_scenario("demo")
    args = argparse.Namespace(config=None, alertmanager=[])
    loaded = _demo_settings(args, "mqtt://127.0.0.1:1", "3.1.1", "127.0.0.1:1", tmp_path / "state")
    loaded = _with_eb_inventory(loaded, scenario, tmp_path / "endpoints.csv")
    daemon = Daemon(loaded)
    assert daemon.eb is not None
    daemon.eb.evaluate(time.time(), now=0.0)  # just started: nobody heard from yet
    console = Console(record=True, width=200, color_system=None)
    console.print(render(daemon, EventLog(), "header"))
    out = console.export_text()
    header = next(line for line in out.splitlines() if "target" in line and "service" in line)
    cells = [c.strip() for c in header.split("┃")]
    assert "programme" in cells and "transmitter" in cells and "audio" not in cells
    tx_row = next(line for line in out.splitlines() if "VSWR" in line)
    assert "Pf" in tx_row
    eb_header = next(line for line in out.splitlines() if "not yet reported" in line)
    assert "offline" in eb_header and "online" in eb_header
    assert daemon.eb.status is not None
    assert int(daemon.eb.status.unreported.sum()) == daemon.eb.fleet.size
    assert int(daemon.eb.status.offline.sum()) == 0
