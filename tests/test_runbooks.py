"""Every built-in alert has a runbook in English and Chinese, served rendered by the console."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from monitor.console import RUNBOOKS, runbook_path
from rules.engine import FLAPPING, MAINTENANCE_OVERRUN, TELEMETRY_LOST

ROOT = Path(__file__).resolve().parents[1]
SECTIONS_EN = ("## What it means", "## Likely causes", "## First checks", "## When to escalate")
SECTIONS_ZH = ("## 含义", "## 台站常见原因", "## 首先检查", "## 何时上报")


def builtin_alerts() -> set[str]:
    # LedgerUnavailable is raised by monitor/evaluation.py itself (about anbo, not a target).
    names = {TELEMETRY_LOST, FLAPPING, MAINTENANCE_OVERRUN, "LedgerUnavailable"}
    files = [*sorted((ROOT / "rules" / "packs").glob("*.yml")), ROOT / "config/prometheus/anbo-alerts.yml"]
    for f in files:
        doc = yaml.safe_load(f.read_text())
        for group in doc["groups"]:
            names.update(r["alert"] for r in group["rules"] if "alert" in r)
    return names


def test_runbooks_directory_is_found() -> None:
    assert RUNBOOKS.is_dir()


def test_every_builtin_alert_has_a_runbook_in_both_languages() -> None:
    alerts = builtin_alerts()
    assert len(alerts) > 40
    missing = sorted(
        f"{name}{suffix}"
        for name in alerts
        for suffix in (".md", ".zh.md")
        if not (RUNBOOKS / f"{name}{suffix}").is_file()
    )
    assert missing == [], f"alerts without a runbook: {missing}"


def test_runbooks_have_the_four_sections() -> None:
    for path in sorted(RUNBOOKS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        sections = SECTIONS_ZH if path.name.endswith(".zh.md") else SECTIONS_EN
        for s in sections:
            assert s in text, f"{path.name}: no '{s}' section"


def test_runbook_path_refuses_path_tricks() -> None:
    assert runbook_path("../README", "en") is None
    assert runbook_path("CarrierLoss/../x", "en") is None
    assert runbook_path("NoSuchAlert", "en") is None
    zh = runbook_path("CarrierLoss", "zh")
    assert zh is not None and zh.name == "CarrierLoss.zh.md"


def test_runbook_links_come_from_the_configured_base() -> None:
    from monitor.evaluation import build_engine, runbook_base
    from monitor.settings import Settings

    def settings(**alerting: object) -> Settings:
        return Settings.model_validate(
            {"station": {"name": "s"}, "metrics": {"listen": "127.0.0.1:9310"}, "alerting": alerting}
        )

    assert runbook_base(settings()) == "http://127.0.0.1:9310/runbooks/"
    wiki = settings(runbook_base_url="https://wiki.bureau.example/anbo")
    assert runbook_base(wiki) == "https://wiki.bureau.example/anbo/"
    engine = build_engine(wiki)
    assert engine.config.runbook_base == "https://wiki.bureau.example/anbo/"


@pytest.mark.slow
def test_a_built_wheel_carries_the_runbooks_and_the_console(tmp_path: Path) -> None:
    """An installed (not editable) anbo serves the runbooks: the build copies them in."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("anbo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "monitor/console/runbooks/CarrierLoss.md" in names
    assert "monitor/console/runbooks/CarrierLoss.zh.md" in names
    assert "monitor/console/templates/console.html" in names
    assert "monitor/console/static/console.js" in names
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("monitor/console/runbooks/")}
    assert shipped == {p.name for p in RUNBOOKS.glob("*.md")}
