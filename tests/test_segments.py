"""The topic-segment rule: one definition (monitor.wire.is_segment), matched whole.

A name with a trailing newline (an escape in TOML or the environment) or any character
outside ``[A-Za-z0-9_.-]`` used to pass ``anbo check`` (``re.match`` with ``$`` accepts a
final newline) and then crash the daemon at start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anbo.cli import main
from monitor.wire import SEGMENT_PATTERN, is_segment

VALID = st.text(alphabet="ABCXYZabcxyz0189_.-", min_size=1, max_size=64)


@given(VALID)
def test_valid_segments_pass(name: str) -> None:
    assert is_segment(name)


@given(VALID, st.sampled_from(["\n", "\r", " ", "/", "+", "#", "\x00", "é", "台", "\u0130"]))
def test_any_foreign_character_is_refused(name: str, bad: str) -> None:
    assert not is_segment(name + bad)
    assert not is_segment(bad + name)


def test_length_and_empty() -> None:
    assert is_segment("a" * 64)
    assert not is_segment("a" * 65)
    assert not is_segment("")
    assert SEGMENT_PATTERN == r"[A-Za-z0-9_.-]{1,64}"


CONFIG = """
[station]
name = {station}

[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = {prefix}

[[targets]]
name = {target}
kind = "fm"
frequency_mhz = 97.5
"""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("station", '"st\\n"'),
        ("station", '"st ation"'),
        ("target", '"fm-97.5\\n"'),
        ("target", '"fm/97.5"'),
        ("prefix", '"anbo\\n"'),
        ("prefix", '"an bo/x"'),
    ],
)
def test_anbo_check_refuses_bad_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    values = {"station": '"st1"', "prefix": '"anbo"', "target": '"fm-97.5"'}
    values[field] = value
    path = tmp_path / "anbo.toml"
    path.write_text(CONFIG.format(**values), encoding="utf-8")
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "anbo.toml" in err
    assert "Traceback" not in err
    assert any(word in err for word in ("station", "target", "prefix")), err
