"""The generated Grafana dashboards: no drift from the committed JSON, lint, the SDK's own
models, thresholds from the rule packs, and the recording rules they read (promtool)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm
from hypothesis import given
from hypothesis import strategies as st

import dashboards
from anbo.cli import main
from dashboards.common import STATES, STATION_JOIN
from dashboards.thresholds import Limit, Step, limits, steps
from monitor.ledger import PRIORITY, IntervalClass
from monitor.settings import LedgerSettings
from tests.conftest import STATION_TOML
from tests.servers import find_binary

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "config" / "grafana" / "dashboards"
PROMETHEUS = REPO / "config" / "prometheus"
RECORDING = PROMETHEUS / "anbo-recording.yml"
PANEL_TYPES = {"timeseries", "stat", "state-timeline", "table"}


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.rendered().items()}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])


def queries(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for p in panels(board):
        for t in p.get("targets", []):
            yield p, t


# --------------------------------------------------------------------------- no drift


def test_committed_dashboards_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "--check"]) == 0, capsys.readouterr().out
    assert sorted(p.name for p in COMMITTED.glob("*.json")) == sorted(dashboards.rendered())


def test_regenerating_reproduces_the_committed_json_byte_for_byte(tmp_path: Path) -> None:
    assert main(["dashboards", "--output", str(tmp_path)]) == 0
    for path in COMMITTED.glob("*.json"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_check_names_a_stale_missing_or_stray_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dashboards.write(tmp_path)
    (tmp_path / "anbo-eb-fleet.json").write_text("{}\n")
    (tmp_path / "anbo-migrations.json").unlink()
    (tmp_path / "old.json").write_text("{}\n")
    assert main(["dashboards", "--check", "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "anbo-eb-fleet.json: differs" in out
    assert "anbo-migrations.json: missing" in out
    assert "old.json: not generated" in out
    assert f"anbo dashboards --output {tmp_path}" in out


# --------------------------------------------------------------------------- the SDK's models


def _subset(small: Any, big: Any, where: str = "") -> list[str]:
    """Where ``small`` has something that ``big`` lacks or differs (dict keys recursively)."""
    if isinstance(small, dict) and isinstance(big, dict):
        return [
            e
            for k, v in small.items()
            for e in (_subset(v, big[k], f"{where}.{k}") if k in big else [f"{where}.{k}"])
        ]
    if isinstance(small, list) and isinstance(big, list) and len(small) == len(big):
        return [
            e for i, (a, b) in enumerate(zip(small, big, strict=True)) for e in _subset(a, b, f"{where}[{i}]")
        ]
    return [] if small == big else [f"{where}: {small!r} != {big!r}"]


@pytest.mark.parametrize("name", sorted(dashboards.BUILDERS))
def test_json_loads_into_the_sdk_models_without_loss(name: str) -> None:
    """Load the committed JSON into the SDK's dashboard model and serialise it again: every
    field we wrote is one the model knows (nothing dropped or changed; the model only adds
    its defaults), and a second round is a fixed point."""
    register_default_plugins()
    text = (COMMITTED / f"{name}.json").read_text(encoding="utf-8")
    loaded = dm.Dashboard.from_json(json.loads(text))
    again = json.loads(dashboards.render(loaded))
    assert _subset(json.loads(text), again) == []
    assert dashboards.render(dm.Dashboard.from_json(again)) == dashboards.render(loaded)


# --------------------------------------------------------------------------- lint


def test_uids_are_stable_and_unique() -> None:
    uids = [b["uid"] for b in boards().values()]
    assert uids == [
        "anbo-station-overview",
        "anbo-service-detail",
        "anbo-migrations",
        "anbo-eb-fleet",
        "anbo-outages",
        "anbo-self-health",
    ]
    assert all(f"{b['uid']}.json" == name for name, b in boards().items())


@pytest.mark.parametrize("name", sorted(dashboards.rendered()))
def test_lint(name: str) -> None:
    board = boards()[name]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["station"]["multi"] is True and variables["station"]["includeAll"] is True
    assert board["schemaVersion"] >= 39  # Grafana 11
    for p in panels(board):
        if p["type"] == "row":
            continue
        where = f"{name}: {p['title']}"
        assert p["type"] in PANEL_TYPES, f"{where}: {p['type']} (graph → timeseries, singlestat → stat)"
        assert p["title"] and p.get("description"), where
        defaults = p["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{where}: no unit"
        assert defaults["thresholds"]["steps"][0]["value"] is None, f"{where}: thresholds need a base"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p.get("targets"), f"{where}: no query"
    for p, t in queries(board):
        where = f"{name}: {p['title']}: {t['expr']}"
        assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        selectors = re.findall(r"\b(anbo[a-z_:0-9]*)(\{[^}]*\})?", t["expr"])
        assert selectors, where
        for metric, labels in selectors:
            # anbo's own metrics have no station label: they must be joined to get one.
            assert 'station=~"$station"' in labels or STATION_JOIN in t["expr"], (
                f"{where}: {metric} without the station variable"
            )
    for a in board["annotations"]["list"]:
        if not a.get("builtIn"):
            assert a["datasource"]["uid"] == "${datasource}" and 'station=~"$station"' in a["expr"]


def test_no_hard_coded_station_or_target_names() -> None:
    example = tomllib.loads((REPO / "config" / "anbo.example.toml").read_text())
    test = tomllib.loads(STATION_TOML.format(url="mqtt://x", client_id="x"))
    names = {example["station"]["name"], test["station"]["name"]}
    names |= {t["name"] for cfg in (example, test) for t in cfg["targets"]}
    names |= {t["service"] for cfg in (example, test) for t in cfg["targets"]}
    for name, text in dashboards.rendered().items():
        for n in names:
            assert f'"{n}"' not in text, f"{name} names {n}"


def test_alert_panels_link_every_alert_to_its_runbook() -> None:
    with_alerts = {
        name for name, b in boards().items() if any(p["title"] == "Active alerts" for p in panels(b))
    }
    assert with_alerts == {
        f"{u}.json"
        for u in ("anbo-station-overview", "anbo-service-detail", "anbo-migrations", "anbo-eb-fleet")
    }
    for name, board in boards().items():
        for p in (p for p in panels(board) if p["title"] == "Active alerts"):
            links = [
                prop["value"]
                for o in p["fieldConfig"]["overrides"]
                if o["matcher"] == {"id": "byName", "options": "alertname"}
                for prop in o["properties"]
                if prop["id"] == "links"
            ]
            assert links and links[0][0]["url"].endswith("/runbooks/${__data.fields.alertname}"), name
            assert "${__data.fields.instance}" in links[0][0]["url"]  # the console anbo serves
            assert "instance" in p["targets"][0]["expr"]


# --------------------------------------------------------------------------- thresholds


def _panel(title: str) -> dict[str, Any]:
    found = [p for b in boards().values() for p in panels(b) if p["title"] == title]
    assert found, title
    return found[0]


def _steps(title: str) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in _panel(title)["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def _pack_default(pack: str, param: str) -> float:
    text = (REPO / "rules" / "packs" / pack).read_text()
    m = re.search(rf'param\("{param}", ([0-9.e-]+)\)', text)
    assert m, param
    return float(m.group(1))


def test_thresholds_are_the_rule_packs_numbers() -> None:
    assert _steps("MER") == [
        (None, "red"),
        (_pack_default("dtv.yml", "mer_critical_db"), "orange"),
        (_pack_default("dtv.yml", "mer_warning_db"), "green"),
    ]
    assert _steps("VSWR") == [(None, "green"), (1.5, "orange"), (2.0, "red")]
    assert _steps("PA temperature") == [
        (None, "green"),
        (_pack_default("tx.yml", "pa_temp_max_celsius"), "red"),
    ]
    assert _steps("Online ratio") == [
        (None, "orange"),
        (_pack_default("eb.yml", "eb_online_ratio_min"), "green"),
    ]
    assert _steps("Old channel after vacating") == [
        (None, "green"),
        (_pack_default("migration.yml", "vacated_max_dbuv"), "red"),
    ]
    assert _steps("FM RF level") == [(None, "red"), (_pack_default("fm.yml", "carrier_floor_dbuv"), "green")]


def test_steps_colour_each_region_by_the_worst_alert() -> None:
    assert steps([]) == [Step(None, "green")]
    low = [Limit("A", "warning", "<", 26.0), Limit("A", "critical", "<", 20.0)]
    assert steps(low) == [Step(None, "red"), Step(20.0, "orange"), Step(26.0, "green")]
    high = [Limit("B", "warning", ">=", 1.5), Limit("B", "critical", ">=", 2.0)]
    assert steps(high) == [Step(None, "green"), Step(1.5, "orange"), Step(2.0, "red")]
    band = [Limit("C", "warning", "<", 0.0), Limit("C", "warning", ">", 10.0)]
    assert steps(band) == [Step(None, "orange"), Step(0.0, "green"), Step(10.0, "orange")]


def test_limits_read_params_defaults_and_skip_per_target_references() -> None:
    assert {(x.alert, x.op, x.value) for x in limits("rf_level_dbuv", kind="fm")} == {
        ("CarrierLoss", "<", 20.0)
    }
    assert limits("forward_power_w", kind="tx") == []  # 0.1 * rated_power_w: per target
    assert {x.value for x in limits("ber_pre", kind="dtv")} == {1e-3}


# --------------------------------------------------------------------------- recording rules


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def test_recording_rules_check_and_unit_tests_pass() -> None:
    out = _run(find_binary("promtool"), "check", "rules", RECORDING.name)
    assert out.returncode == 0 and "SUCCESS: 6 rules found" in out.stdout, out.stdout + out.stderr
    out = _run(find_binary("promtool"), "test", "rules", "anbo-recording.test.yml")
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_recording_rules_follow_the_ledger() -> None:
    """The state codes follow the ledger's priority, every class has one, and the filler
    share is the settings default (the one place it is configured)."""
    rules = {
        r["record"]: r["expr"] for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]
    }
    state = rules["anbo:service_state"]
    codes = {
        m.group(1): int(m.group(2)) for m in re.finditer(r'class="(\w+)"\}\[2m\]\) > 0\) \+ (\d)', state)
    }
    assert set(codes) == {c.value for c in IntervalClass}
    by_priority = sorted(codes, key=lambda c: -codes[c])
    assert by_priority == [c.value for c in PRIORITY]
    for cls, code in codes.items():  # the state timeline names each code after its class
        assert cls.replace("_", " ") in STATES[str(code)][0].lower()
    assert STATES["0"][0] == "On air" and "7" in STATES
    share = re.search(
        r'([0-9.]+) \* anbo_outage_seconds_total\{class="filler"\}',
        rules["anbo:service_counted_outage_seconds_total"],
    )
    assert share and float(share.group(1)) == LedgerSettings().filler_share


_limit = st.builds(
    Limit,
    st.just("A"),
    st.sampled_from(["warning", "critical"]),
    st.sampled_from(["<", "<=", ">", ">="]),
    st.integers(-50, 50).map(float),
)


@given(st.lists(_limit, max_size=5), st.integers(-120, 120).map(lambda i: i / 2 + 0.25))
def test_steps_colour_any_value_as_the_worst_alert_firing_there(found: list[Limit], x: float) -> None:
    """Property: away from the limits themselves (x is never an integer here), the step
    Grafana applies to x has the colour of the worst alert that fires at x."""
    from dashboards.thresholds import COLOURS

    result = steps(found)
    assert result[0].value is None
    assert all(a.colour != b.colour for a, b in itertools.pairwise(result))
    applied = [s for s in result if s.value is None or s.value <= x][-1]
    firing = [lim.severity for lim in found if lim.fires(x)]
    worst = "critical" if "critical" in firing else "warning" if firing else None
    assert applied.colour == COLOURS[worst]
