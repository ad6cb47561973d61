"""``anbo simulate``'s options: list, check, verify, and clear errors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.logs import _AnboHandler
from simulator import cli
from tests.simulator.helpers import STATION

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "anbo.example.toml"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
    for handler in root.handlers[:]:
        if isinstance(handler, _AnboHandler):
            root.removeHandler(handler)
            handler.close()


def simulate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="anbo simulate")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate("--list") == 0
    out = capsys.readouterr().out
    assert "quiet-day" in out and "fm-faults" in out and "INVALID" not in out


def test_check_ok_and_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert simulate("--config", str(EXAMPLE), "--scenario", "fm-faults", "--check") == 0
    assert "OK — scenario fm-faults" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    head = "name: bad\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: fm-x, fault: dead_air}\n"
    bad.write_text(head + "  - {at: 1s, for: 2s, target: tx-fm-a, fault: oops}\n")
    assert simulate("--config", str(EXAMPLE), "--scenario", str(bad), "--check") == 1
    err = capsys.readouterr().err
    assert f"{bad}:5: timeline[1].fault: unknown fault 'oops'" in err
    bad.write_text(head)
    assert simulate("--config", str(EXAMPLE), "--scenario", str(bad), "--check") == 1
    assert f"{bad}:4: timeline[0].target: no target 'fm-x' in the station config" in capsys.readouterr().err


def test_bad_config_and_unknown_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert simulate("--config", str(tmp_path / "nope.toml"), "--check") == 1
    assert "no such file" in capsys.readouterr().err
    assert simulate("--config", str(EXAMPLE), "--scenario", "nonsense", "--check") == 1
    assert "not a bundled scenario" in capsys.readouterr().err


def test_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text("[probes]\nsilence_on_s = 2.0\nsilence_off_s = 1.0\n\n" + STATION)
    good = tmp_path / "good.yml"
    good.write_text(
        "name: good\nduration: 40s\n"
        "timeline:\n  - {at: 10s, for: 20s, target: tx-c, fault: tx_fault}\n"
        "expect:\n  - {alert: TransmitterFault, target: tx-c, fire_within: 8s,"
        " resolve_within: 8s}\n"
    )
    args = ("--config", str(config), "--audio-rate", "8000", "--audio-channels", "1", "--log-level", "error")
    assert simulate(*args, "--scenario", str(good), "--verify") == 0
    out = capsys.readouterr().out
    assert "ok    expect[0] TransmitterFault on tx-c" in out and out.rstrip().endswith("OK")
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(good.read_text().replace("TransmitterFault", "VswrHigh"))
    assert simulate(*args, "--scenario", str(wrong), "--verify") == 1
    out = capsys.readouterr().out
    assert "FAIL  expect[0] VswrHigh on tx-c: never fired" in out
    assert "FAIL  unexpected alert: TransmitterFault/critical on tx-c" in out


def test_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="anbo simulate")
    cli.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--speed", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--duration", "soon"])
    capsys.readouterr()
    assert (
        simulate(
            "--config",
            str(EXAMPLE),
            "--scenario",
            "quiet-day",
            "--audio-rate",
            "44101",
            "--verify",
            "--duration",
            "1s",
        )
        == 1
    )
    assert "multiple of 10" in capsys.readouterr().err
    assert (
        simulate(
            "--config",
            str(EXAMPLE),
            "--scenario",
            "quiet-day",
            "--wav",
            str(tmp_path / "x.wav"),
            "--verify",
            "--duration",
            "1s",
        )
        == 1
    )
    assert "x.wav: no such file" in capsys.readouterr().err
