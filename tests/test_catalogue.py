"""The measurement catalogue: rules checked against it, the contract generated from it,
the simulator and the probes speaking only its names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anbo.cli import main
from anbo.contract import BEGIN, END, ContractError, generated_section, replace_section
from monitor.settings import ConfigError, load_settings, rule_vocabulary
from monitor.state import StreamVocabulary
from monitor.wire import DecodeError, Readings, decode
from probes.workers import MEASUREMENTS
from rules import RuleFileError, load_rules
from rules.catalogue import CATALOGUE, DERIVED, KINDS, Vocabulary, markdown_tables
from simulator.scenario import bundled_scenarios, load_scenario
from simulator.station import SimOptions, StationSimulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "anbo.example.toml"
CONTRACT = ROOT / "docs" / "telemetry-contract.md"
START = 1_748_833_200.0

STATION = """
[station]
name = "s1"

[mqtt]
url = "mqtt://127.0.0.1:1"

[alerting]
rule_paths = ["rules.d"]

[[targets]]
name = "fm-a"
kind = "fm"
service = "News"
frequency_mhz = 97.5
labels = { county = "Qingshan" }
params = { rf_reference_dbuv = 64.0 }
extra_readings = ["rds_ps"]

[[targets]]
name = "tx-a"
kind = "tx"
service = "TX"
"""

RULE = """\
groups:
  - name: site
    rules:
      - alert: Mine
        selector: {{kind: {kind}}}
        expr: {expr}
        annotations:
          summary: "{summary}"
"""


def _station(
    tmp_path: Path, expr: str, *, kind: str = "fm", summary: str = "on {{ service }}", params: str = ""
) -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "site.yml").write_text(RULE.format(kind=kind, expr=expr, summary=summary))
    path = tmp_path / "anbo.toml"
    path.write_text(STATION.replace("rf_reference_dbuv = 64.0", f"rf_reference_dbuv = 64.0{params}"))
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--config", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


# --------------------------------------------------------------------------- anbo check


@pytest.mark.parametrize(
    ("expr", "kind", "summary", "line", "message"),
    [
        (
            "rf_levl_dbuv < 40",
            "fm",
            "x",
            6,
            "unknown measurement 'rf_levl_dbuv' (did you mean 'rf_level_dbuv'?)",
        ),
        (
            'rf_level_dbuv < param("rf_refrence_dbuv")',
            "fm",
            "x",
            6,
            "column 17 of the expression: unknown param 'rf_refrence_dbuv'",
        ),
        ("rf_level_dbuv < 40", "fmm", "x", 5, "selector.kind: unknown kind 'fmm' (did you mean 'fm'?)"),
        ("vswr > 2", "fm", "x", 6, "measurement 'vswr' belongs to kind tx, not fm"),
        ("silence == 1", "fm", "dead air on {{ targte }}", 8, "unknown placeholder {{ targte }}"),
        ("silence == 1", "fm", "{% if value %}dead{% endif %}", 8, "block tag '{% if value %}"),
        ("silence == 1", "fm", "{# note #} dead", 8, "comment '{# note #}"),
        ("silence == 1", "fm", "{{ measurements.vswr }}", 8, "measurement 'vswr' belongs to kind tx"),
        ("silence == 1", "fm", "{{ params.rated_powr_w }}", 8, "unknown param 'rated_powr_w'"),
        ("silence == 1", "fm", "{{ labels.countyy }}", 8, "unknown label 'countyy'"),
        ("silence == 1", "fm", "{{{ value }}}", 8, "stray brace"),
        ("pilot_lock == 0", "fm", "x", 6, "unknown measurement 'pilot_lock'"),
        ("pa_temperature_celsius > 70", "tx", "x", 6, "unknown measurement 'pa_temperature_celsius'"),
    ],
)
def test_check_refuses_rules_that_could_never_fire(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    expr: str,
    kind: str,
    summary: str,
    line: int,
    message: str,
) -> None:
    code, out = _check(_station(tmp_path, expr, kind=kind, summary=summary), capsys)
    assert code == 1
    where = f"{tmp_path / 'rules.d' / 'site.yml'}:{line}: "
    assert any(ln.startswith(where) and message in ln for ln in out.splitlines()), out


def test_check_refuses_a_bad_rule_given_with_rules_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _station(tmp_path, "silence == 1")
    bad = tmp_path / "more.yml"
    bad.write_text(RULE.format(kind="fm", expr="rf_levl_dbuv < 40", summary="x"))
    code = main(["check", "--config", str(path), "--rules", str(bad)])
    assert code == 1
    assert f"{bad}:6: groups[0].rules[0] (Mine).expr: column 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("expr", "summary"),
    [
        ('rds_ps == "X"', "PS {{ measurements.rds_ps }}"),  # declared by the target
        ('rf_level_dbuv < param("my_floor_dbuv")', "{{ params.my_floor_dbuv }} {{ county }}"),
        ("silence == 1", "floor {{ my_floor_dbuv }}"),
        ("audio_age_seconds > 5 and rf_age_seconds < 5", "{{ value }} {{ labels.county }} {{ for }}"),
        ("silence == 1", "{{ measurements.silence_seconds }} s on {{ service }} ({{ target }})"),
    ],
)
def test_check_accepts_catalogued_and_declared_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expr: str, summary: str
) -> None:
    params = ", my_floor_dbuv = 30.0" if "my_floor_dbuv" in expr + summary else ""
    code, out = _check(_station(tmp_path, expr, summary=summary, params=params), capsys)
    assert code == 0, out


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            ", rf_refrence_dbuv = 60.0",
            "params.rf_refrence_dbuv: no rule reads this param and the catalogue "
            "does not know it for kind fm (did you mean 'rf_reference_dbuv'?)",
        ),
        (", rated_power_w = 1000", "params.rated_power_w: no rule reads this param"),  # a tx param on fm
    ],
)
def test_check_refuses_a_target_param_nothing_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], params: str, message: str
) -> None:
    code, out = _check(_station(tmp_path, "silence == 1", params=params), capsys)
    assert code == 1
    assert f"{tmp_path / 'anbo.toml'}: targets[0] (fm-a).{message}" in out, out


def test_daemon_start_refuses_such_a_rule(tmp_path: Path) -> None:
    # The daemon loads its settings with the same checks (load_settings) before it starts.
    with pytest.raises(ConfigError) as exc:
        load_settings(_station(tmp_path, "vswr > 2"))
    assert "site.yml:6:" in str(exc.value) and "belongs to kind tx" in str(exc.value)


def test_a_rule_without_kind_may_read_what_some_kind_has() -> None:
    text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        selector: {service: X}\n"
    ok = text + "        expr: silence == 1 or vswr > 2\n"
    bad = text + "        expr: silense == 1\n"
    path = Path("/nonexistent")
    from rules.schema import parse_rule_text

    assert parse_rule_text(ok, str(path), Vocabulary())
    with pytest.raises(RuleFileError, match="unknown measurement 'silense'"):
        parse_rule_text(bad, str(path), Vocabulary())


def test_a_kind_regex_is_checked_against_every_kind_it_matches() -> None:
    from rules.schema import parse_rule_text

    text = (
        "groups:\n  - name: g\n    rules:\n      - alert: A\n"
        '        selector_regex: {{kind: "{regex}"}}\n        expr: {expr}\n'
    )
    assert parse_rule_text(text.format(regex="fm|dtv", expr="silence == 1"), "r.yml", Vocabulary())
    with pytest.raises(RuleFileError, match="'pilot_present' belongs to kind fm, not dtv"):
        parse_rule_text(text.format(regex="fm|dtv", expr="pilot_present == 0"), "r.yml", Vocabulary())
    with pytest.raises(RuleFileError, match=r"r.yml:5: .*'fmx\|dvb' matches no kind"):
        parse_rule_text(text.format(regex="fmx|dvb", expr="silence == 1"), "r.yml", Vocabulary())


def test_builtin_packs_and_the_example_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(load_rules(vocabulary=Vocabulary()).rules) > 30
    assert main(["check", "--config", str(EXAMPLE)]) == 0
    loaded = load_settings(EXAMPLE).settings
    load_rules(vocabulary=rule_vocabulary(loaded))


# --------------------------------------------------------------------------- the catalogue itself


def test_the_contract_tables_are_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert generated_section(CONTRACT.read_text(encoding="utf-8")) == markdown_tables(), (
        "docs/telemetry-contract.md is out of date: run `anbo catalogue --write docs/telemetry-contract.md`"
    )
    assert main(["catalogue", "--check", str(CONTRACT)]) == 0


def test_catalogue_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "c.md"
    doc.write_text(f"# contract\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    assert main(["catalogue", "--check", str(doc)]) == 1
    assert main(["catalogue", "--write", str(doc)]) == 0
    assert main(["catalogue", "--check", str(doc)]) == 0
    text = doc.read_text()
    assert (
        text.startswith("# contract\n\n") and text.endswith(f"{END}\n\nafter\n") and "old table" not in text
    )
    doc.write_text("no markers\n")
    assert main(["catalogue", "--check", str(doc)]) == 1
    assert "expected exactly one line" in capsys.readouterr().err


def test_names_are_unique_valid_and_documented() -> None:
    import re

    name = re.compile(r"[a-z][a-z0-9_]{0,63}\*?")
    for s in CATALOGUE.streams:
        names = [e.name for e in (*s.values, *s.info)]
        assert len(names) == len(set(names)), (s.kind, s.stream)
        for e in (*s.values, *s.info):
            assert name.fullmatch(e.name) and e.unit and e.range and e.meaning
    for kind in KINDS:
        assert CATALOGUE.measurements(kind), kind
    params = [p.name for p in CATALOGUE.params]
    assert len(params) == len(set(params))
    assert all(set(p.kinds) <= set(KINDS) for p in CATALOGUE.params)


def test_the_probes_measure_exactly_the_catalogued_derived_names() -> None:
    derived = {e.name for kind in ("fm", "dtv", "tx") for e in DERIVED[kind]}
    assert set(MEASUREMENTS) == derived


def test_one_name_per_fact() -> None:
    fm = CATALOGUE.measurements("fm")
    tx = CATALOGUE.measurements("tx")
    assert "pilot_present" in fm and "pilot_lock" not in fm
    assert "pa_temp_celsius" in tx and "pa_temperature_celsius" not in tx
    text = CONTRACT.read_text(encoding="utf-8")
    assert "pilot_lock" not in text and "pa_temperature_celsius" not in text
    packs = "".join(p.read_text() for p in (ROOT / "rules" / "packs").rglob("*.yml"))
    assert "pilot_present" in packs and "pa_temp_celsius" in packs


# --------------------------------------------------------------------------- the simulator


def _names(payload: Readings) -> tuple[set[str], set[str]]:
    return set(payload.values), set(payload.info)


@pytest.mark.parametrize("scenario", sorted(n for n in bundled_scenarios() if n != "quiet-day"))
def test_the_simulator_sends_only_catalogued_names(scenario: str) -> None:
    """Every JSON reading of every bundled scenario (audio off: it carries no names)."""
    cfg = load_settings(EXAMPLE).settings
    sc = load_scenario(bundled_scenarios()[scenario])
    sim = StationSimulator(cfg, sc, SimOptions(start=START, audio_targets=frozenset()))
    kinds = {t.name: t.kind.value for t in cfg.targets}
    eb = {s.stream: StreamVocabulary.of("eb", s.stream) for s in CATALOGUE.streams if s.kind == "eb"}
    seen = 0
    for m in sim.messages():
        try:
            p = decode(
                m.payload,
                content_type=m.content_type,
                user_properties=m.user_properties,
                now=START + m.t + 1.0,
            )
        except DecodeError:
            continue  # the scenario's deliberately malformed payloads
        if not isinstance(p, Readings):
            continue
        if m.topic.startswith("anbo/eb/"):
            vocab = eb[m.stream]
        else:
            vocab = StreamVocabulary.of(
                kinds.get(m.target, "fm" if "pilot_present" in p.values else "dtv"), m.stream
            )
        assert vocab.unknown(p.values, p.info) == [], (scenario, m.topic, json.loads(m.payload))
        seen += 1
    assert seen > 100


# --------------------------------------------------------------------------- parsers (hypothesis)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%# abvlue.x_")), max_size=40))
def test_a_template_that_passes_the_check_renders_without_leftover_syntax(text: str) -> None:
    from rules.templates import check_template, render

    try:
        check_template(text)
    except ValueError:
        return
    out = render(text, facts={"value": 1.0}, labels={}, measurements={}, params={})
    assert "{" not in out and "}" not in out


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=30).map(lambda s: s.replace("\r", "")),
    old=st.text(max_size=30).map(lambda s: s.replace("\r", "")),
    new=st.text(max_size=30).map(lambda s: s.replace("\r", "")),
    after=st.text(max_size=30),
)
def test_contract_section_round_trip(before: str, old: str, new: str, after: str) -> None:
    assume_ok = BEGIN not in before + old + new + after and END not in before + old + new + after
    if not assume_ok:
        return
    head = before + "\n" if before and not before.endswith("\n") else before
    body = old + "\n" if old and not old.endswith("\n") else old
    doc = f"{head}{BEGIN}\n{body}{END}\n{after}"
    try:
        assert generated_section(doc) == body
    except ContractError:
        # only when the free text itself holds a marker line
        assert any(line in (BEGIN, END) for line in (head + body + after).splitlines())
        return
    updated = replace_section(doc, new)
    expect = new + "\n" if new and not new.endswith("\n") else new
    assert generated_section(updated) == expect
    assert updated.startswith(head + BEGIN + "\n") and updated.endswith(f"{END}\n{after}")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=4))
def test_extra_readings_are_valid_names_or_refused(names: list[str]) -> None:
    from pydantic import ValidationError

    from monitor.settings import TargetSettings
    from rules.catalogue import valid_name

    try:
        t = TargetSettings(name="t", kind="tx", service="s", extra_readings=names)  # type: ignore[arg-type]
    except ValidationError:
        assert not all(valid_name(n) for n in names) or len(set(names)) != len(names)
        return
    assert all(valid_name(n) for n in t.extra_readings) and len(set(names)) == len(names)
    vocab = StreamVocabulary.of("tx", "status", t.extra_readings)
    assert vocab.unknown(dict.fromkeys(names, 1.0), {}) == []


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=6),
    data=st.data(),
    style=st.sampled_from([">-", "|", ">", "plain"]),
    indent=st.integers(min_value=2, max_value=6),
)
def test_an_unknown_name_in_a_multi_line_expression_is_reported_on_its_line(
    n: int, data: st.DataObject, style: str, indent: int
) -> None:
    from rules.schema import parse_rule_text

    bad = data.draw(st.integers(min_value=0, max_value=n - 1))
    terms = ["bogus_name == 1" if i == bad else "silence == 1" for i in range(n)]
    pad = " " * (8 + indent)
    head = "groups:\n  - name: g\n    rules:\n      - alert: A\n        selector: {kind: fm}\n"
    if style == "plain":
        body = "        expr: " + terms[0] + "".join(f"\n{pad}and {t}" for t in terms[1:]) + "\n"
        expected = 6 + bad
    else:
        body = f"        expr: {style}\n" + "".join(
            f"{pad}{'and ' if i else ''}{t}\n" for i, t in enumerate(terms)
        )
        expected = 7 + bad
    with pytest.raises(RuleFileError) as exc:
        parse_rule_text(head + body, "r.yml", Vocabulary())
    assert [e.line for e in exc.value.errors] == [expected], str(exc.value)
