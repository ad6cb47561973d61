from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anbo.cli import main
from monitor.settings import (
    ConfigError,
    ds_channel_lower_edge_mhz,
    ds_channel_number,
    load_settings,
    parse_broker_url,
    parse_listen,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "anbo.example.toml"


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value.problems


def test_example_config_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "station qingshan" in out


def test_example_config_is_realistic() -> None:
    s = load_settings(EXAMPLE).settings
    kinds = [t.kind.value for t in s.targets]
    assert kinds.count("fm") >= 2 and kinds.count("dtv") >= 2 and kinds.count("tx") >= 2


def test_loads_station(write_config) -> None:  # type: ignore[no-untyped-def]
    loaded = load_settings(write_config(url="mqtt://10.1.2.3:1884"))
    s = loaded.settings
    assert s.station.name == "teststation"
    assert s.mqtt.url == ["mqtt://10.1.2.3:1884"]
    assert s.target("dtv-ds21") is not None and s.target("dtv-ds21").ds_channel == 21  # type: ignore[union-attr]
    assert s.target("fm-97.5").labels == {"county": "Qingshan"}  # type: ignore[union-attr]
    assert s.target("fm-97.5").accepted_streams == ("rf", "audio")  # type: ignore[union-attr]


def test_environment_overrides_file(write_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANBO_MQTT__URL", '["mqtt://a:1883","mqtts://b:8883"]')
    monkeypatch.setenv("ANBO_METRICS__LISTEN", "[::1]:9999")
    s = load_settings(write_config()).settings
    assert s.mqtt.url == ["mqtt://a:1883", "mqtts://b:8883"]
    assert s.metrics.address == ("::1", 9999)
    assert s.station.name == "teststation"


def test_unknown_keys_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[station]\nname = "x"\ncolour = "red"\n[mqtt]\nqso = 1\n[[targets]]\nname="a"\n'
        'kind="fm"\nservice="s"\nfrequency_mhz=97.5\nfrequncy=1\n'
    )
    out = problems(path)
    assert f"{path}:3: station.colour: unknown key (known here: description, name, station_class)" in out
    assert f"{path}:5: mqtt.qso: unknown key; did you mean qos?" in out
    assert f"{path}:11: targets[a].frequncy: unknown key; did you mean frequency_mhz?" in out


def test_misplaced_keys_say_where_they_belong(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'keepalive = 30\n[station]\nname = "x"\n[mqtt]\nkeepalve = 30\nstate_directory = "/tmp"\n'
    )
    out = problems(path)
    assert f"{path}:1: keepalive: unknown key: keepalive belongs in [mqtt]" in out
    assert f"{path}:5: mqtt.keepalve: unknown key; did you mean keepalive?" in out
    assert any(p.startswith(f"{path}:6: mqtt.state_directory:") and "is a top-level key" in p for p in out)


def test_migration_channel_off_the_plan_is_a_config_problem(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[station]\nname = "x"\n[[migrations]]\nname = "m1"\nservice = "news"\nkind = "dtv"\n'
        'old_channel = "DS-40"\nnew_channel = "DS-99"\n'
        "simulcast_start = 2026-12-01T00:00:00+08:00\ncutover = 2026-12-15T00:00:00+08:00\n"
    )
    out = problems(path)
    assert out == [f"{path}: migrations[m1].new_channel: DS-99 is outside the UHF plan DS-13…DS-48"]


def test_unknown_environment_setting(write_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANBO_MQTTT__URL", "mqtt://x")
    monkeypatch.setenv("ANBO_MQTT__QSO", "1")
    out = problems(write_config())
    assert any(p.startswith("environment ANBO_MQTTT__URL: unknown setting") for p in out)
    assert any(p.startswith("environment ANBO_MQTT__QSO: mqtt.qso:") for p in out)


def test_bad_env_value_names_the_variable(write_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANBO_MQTT__KEEPALIVE", "often")
    out = problems(write_config())
    assert len(out) == 1 and out[0].startswith("environment ANBO_MQTT__KEEPALIVE: mqtt.keepalive:")


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('kind="fm"\nservice="s"\nfrequency_mhz=108.5', "outside the FM band"),
        ('kind="fm"\nservice="s"\nfrequency_mhz=97.55', "off the 0.1 MHz raster"),
        ('kind="fm"\nservice="s"', "needs frequency_mhz"),
        ('kind="dtv"\nservice="s"\nchannel="DS-49"', "outside the UHF plan"),
        ('kind="dtv"\nservice="s"\nchannel="K21"', "is not a DS channel"),
        ('kind="dtv"\nservice="s"', "needs channel"),
        ('kind="fm"\nfrequency_mhz=97.5', "needs service"),
        ('kind="am"\nservice="s"', "targets[a].kind"),
        ('kind="fm"\nservice="s"\nfrequency_mhz=97.5\nlabels={station="x"}', "reserved"),
        (
            'kind="fm"\nservice="s"\nfrequency_mhz=97.5\nlabels={"bad-name"="x"}',
            "not a valid Prometheus label",
        ),
        ('kind="fm"\nservice="s"\nfrequency_mhz=97.5\nserves=["a"]', "only for tx"),
    ],
)
def test_target_validation(tmp_path: Path, snippet: str, expected: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[station]\nname="s1"\n[[targets]]\nname="a"\n{snippet}\n')
    out = problems(path)
    assert len(out) == 1, out
    assert out[0].startswith(f"{path}: targets[a]") and expected in out[0], out


def test_duplicate_targets_and_unknown_served(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[station]\nname="s1"\n'
        '[[targets]]\nname="a"\nkind="tx"\nserves=["zz"]\n'
        '[[targets]]\nname="a"\nkind="tx"\n'
    )
    out = problems(path)
    assert any("duplicate target names: a" in p for p in out)


def test_password_in_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[station]\nname="s1"\n[mqtt]\nusername="u"\npassword="hunter2"\n')
    out = problems(path)
    assert any("mqtt.password: secrets are not accepted" in p for p in out)
    assert not any("hunter2" in p for p in out)


def test_password_file_and_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    path = tmp_path / "t.toml"
    path.write_text('[station]\nname="s1"\n[mqtt]\nusername="u"\npassword_file="mqtt-password"\n')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_settings(path).mqtt_password == "s3cret"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    out = problems(path)
    assert len(out) == 1 and "mqtt.password_file: mqtt-password: cannot read secret" in out[0]
    (tmp_path / "mqtt-password").write_text("beside\n")  # relative to the config file
    assert load_settings(path).mqtt_password == "beside"


def test_missing_tls_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[station]\nname="s1"\n[metrics]\ntls_cert_file="c.pem"\ntls_key_file="k.pem"\n')
    out = problems(path)
    assert f"{path}: metrics.tls_cert_file: c.pem: no such file" in out
    assert f"{path}: metrics.tls_key_file: k.pem: no such file" in out


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: no such file"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[station\nname=")
    out = problems(bad)
    assert len(out) == 1 and out[0].startswith(f"{bad}: not valid TOML")


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[station]\nname="s1"\n[mqtt]\nurl="http://x"\nqos=3\n')
    assert main(["check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith(f"{bad}: mqtt.") for line in err)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://h", "h", 1883, False),
        ("mqtts://h", "h", 8883, True),
        ("mqtt://[::1]:1999", "::1", 1999, False),
    ],
)
def test_broker_urls(url: str, host: str, port: int, tls: bool) -> None:
    b = parse_broker_url(url)
    assert (b.host, b.port, b.tls) == (host, port, tls)


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://u:p@h", "mqtt://h/x", "mqtt://h:99999"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt"):
        parse_broker_url(url)


@given(st.text(max_size=40))
def test_url_and_listen_parsers_fail_only_with_value_error(text: str) -> None:
    for parse in (parse_broker_url, parse_listen):
        with contextlib.suppress(ValueError):
            parse(text)  # type: ignore[operator]


@given(st.integers(min_value=13, max_value=48))
def test_ds_channel_plan(n: int) -> None:
    edge = ds_channel_lower_edge_mhz(n)
    assert ds_channel_number(f"DS-{n}") == n == ds_channel_number(n)
    assert (470 <= edge < 566) if n <= 24 else (606 <= edge < 798)
    if n not in (24, 48):
        assert ds_channel_lower_edge_mhz(n + 1) - edge == 8.0


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ("mqtt://a:1883", ["mqtt://a:1883"]),
        ("mqtt://a:1883, mqtts://b:8883", ["mqtt://a:1883", "mqtts://b:8883"]),
        ('["mqtt://a:1883","mqtts://b:8883"]', ["mqtt://a:1883", "mqtts://b:8883"]),
    ],
)
def test_broker_url_from_environment_forms(
    write_config,
    monkeypatch: pytest.MonkeyPatch,
    value: str,  # type: ignore[no-untyped-def]
    urls: list[str],
) -> None:
    monkeypatch.setenv("ANBO_MQTT__URL", value)
    assert load_settings(write_config()).settings.mqtt.url == urls


def test_bad_json_in_environment_is_a_problem_line(write_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANBO_TARGETS", "[{not json")
    out = problems(write_config())
    assert len(out) == 1 and out[0].startswith("environment ANBO_TARGETS: targets: not valid JSON")


def test_tls_paths_are_made_absolute(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    path = tmp_path / "t.toml"
    path.write_text(
        '[station]\nname="s1"\n[mqtt]\nurl="mqtts://b"\ntls_ca_file="ca.pem"\n'
        '[metrics]\ntls_cert_file="c.pem"\ntls_key_file="k.pem"\n'
    )
    s = load_settings(path).settings
    assert s.mqtt.tls_ca_file == tmp_path / "ca.pem"
    assert s.metrics.tls_cert_file == tmp_path / "c.pem"
    assert s.metrics.tls_key_file == tmp_path / "k.pem"


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ('["http://am:9093"]', ["http://am:9093"]),
        ("http://am:9093", ["http://am:9093"]),
        ("http://am-1:9093, http://am-2:9093", ["http://am-1:9093", "http://am-2:9093"]),
        (
            '[{"url": "http://am-1:9093", "timeout": 3}, "http://am-2:9093"]',
            ["http://am-1:9093", "http://am-2:9093"],
        ),
        ('{"url": "https://am:9093/"}', ["https://am:9093"]),
    ],
)
def test_alertmanagers_from_environment_forms(
    write_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    urls: list[str],
) -> None:
    """A bare URL, a JSON list of URLs or of tables, a mix (issue #11 item 9)."""
    monkeypatch.setenv("ANBO_ALERTING__ALERTMANAGERS", value)
    s = load_settings(write_config()).settings
    assert [a.url for a in s.alerting.alertmanagers] == urls


def test_alertmanagers_in_toml_as_strings_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "am.toml"
    path.write_text(
        '[station]\nname="s1"\n[alerting]\n'
        'alertmanagers = ["http://am-1:9093", { url = "http://am-2:9093", timeout = 2 }]\n'
    )
    ams = load_settings(path).settings.alerting.alertmanagers
    assert [(a.url, a.timeout) for a in ams] == [("http://am-1:9093", 10.0), ("http://am-2:9093", 2.0)]


def test_bad_alertmanager_in_environment_is_a_problem_line(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANBO_ALERTING__ALERTMANAGERS", '["ftp://am:9093"]')
    out = problems(write_config())
    assert len(out) == 1 and out[0].startswith("environment ANBO_ALERTING__ALERTMANAGERS:"), out
    assert "expected http(s)://host:port" in out[0]
