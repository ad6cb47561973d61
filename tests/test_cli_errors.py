"""No traceback, ever (issue #18): every ordinary mistake a new user makes with `anbo`,
run as a real subprocess, ends with exit code 1 (bad input, failed run) or 2 (usage),
one or a few lines on stderr naming the problem, no "Traceback" anywhere, and in time.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "anbo.example.toml"
RATE = 8_000


@dataclass(frozen=True)
class Mistake:
    id: str
    #: Arguments after `anbo`; "{tmp}", "{busy_port}" and "{example}" are filled in.
    args: list[str]
    code: int
    #: Text stderr must contain (the problem, named).
    says: str
    #: Files to write first: name (in tmp) → maker.
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    timeout: float = 30.0
    slow: bool = False


def wav(channels: int, seconds: float = 1.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.round(0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    data = np.repeat(x[:, None], channels, axis=1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, RATE, RATE * channels * 2, channels * 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


STATION = '[station]\nname = "s1"\n'
MIGRATION_DS99 = (
    STATION + '[[targets]]\nname = "old"\nkind = "dtv"\nservice = "news"\nchannel = "DS-40"\n'
    '[[migrations]]\nname = "m1"\nservice = "news"\nkind = "dtv"\nold_channel = "DS-40"\n'
    'new_channel = "DS-99"\nsimulcast_start = 2026-12-01T00:00:00+08:00\n'
    "cutover = 2026-12-15T00:00:00+08:00\n"
)
TYPO = STATION + '[mqtt]\nkeepalve = 30\nstate_directory = "/tmp"\n'
GATEWAY = STATION + '\n[[modbus]]\ntarget = "tx-9"\nhost = "127.0.0.1"\nmap = "fm.toml"\n'
BAD_MAP = (
    '[device]\nprotocol = "modbus"\n\n[[points]]\ntable = "input"\nreading = "fwd_power"\n'
    'address = 0\ntype = "uint16"\n'
)


def text(content: str) -> Callable[[], bytes]:
    return lambda: content.encode()


MISTAKES = [
    # -- configuration
    Mistake("check-no-config", ["check", "-c", "{tmp}/nope.toml"], 1, "nope.toml: no such file"),
    Mistake(
        "check-migration-ds99",
        ["check", "-c", "{tmp}/m.toml"],
        1,
        "migrations[m1].new_channel: DS-99 is outside the UHF plan",
        {"m.toml": text(MIGRATION_DS99)},
    ),
    Mistake(
        "run-migration-ds99",
        ["run", "-c", "{tmp}/m.toml"],
        1,
        "migrations[m1].new_channel: DS-99 is outside the UHF plan",
        {"m.toml": text(MIGRATION_DS99)},
    ),
    Mistake(
        "check-key-typo",
        ["check", "-c", "{tmp}/t.toml"],
        1,
        "t.toml:4: mqtt.keepalve: unknown key; did you mean keepalive?",
        {"t.toml": text(TYPO)},
    ),
    Mistake(
        "check-misplaced-key",
        ["check", "-c", "{tmp}/t.toml"],
        1,
        "state_directory is a top-level key",
        {"t.toml": text(TYPO)},
    ),
    Mistake(
        "check-not-toml", ["check", "-c", "{tmp}/x.toml"], 1, "not valid TOML", {"x.toml": text("[station")}
    ),
    Mistake("check-missing-rules", ["check", "-c", "{example}", "--rules", "{tmp}/none.yml"], 1, "none.yml"),
    Mistake("test-rules-missing", ["test-rules", "{tmp}/none.yml"], 1, "none.yml"),
    # -- the transmitter gateway
    Mistake("poll-no-config", ["poll", "-c", "{tmp}/gw.toml"], 1, "gw.toml: no such file"),
    Mistake(
        "poll-no-map",
        ["poll", "-c", "{tmp}/gw.toml"],
        1,
        "fm.toml: no such map file",
        {"gw.toml": text(GATEWAY)},
    ),
    Mistake(
        "check-gateway-bad-map",
        ["check", "--gateway", "{tmp}/gw.toml"],
        1,
        "fm.toml:6: points[0].reading: 'fwd_power' is not a reading of the tx status stream",
        {"gw.toml": text(GATEWAY), "fm.toml": text(BAD_MAP)},
    ),
    Mistake(
        "check-gateway-not-a-tx-target",
        ["check", "-c", "{example}", "--gateway", "{tmp}/gw.toml"],
        1,
        "modbus[0].target: no [[targets]] entry 'tx-9'",
        {
            "gw.toml": text(GATEWAY.replace("s1", "qingshan")),
            "fm.toml": text(BAD_MAP.replace("fwd_power", "vswr")),
        },
    ),
    Mistake(
        "dashboards-output-is-a-file",
        ["dashboards", "--output", "{tmp}/f.txt"],
        1,
        "f.txt: cannot write: File exists",
        {"f.txt": text("x")},
    ),
    # -- usage
    Mistake("no-command", [], 2, "required: COMMAND"),
    Mistake("unknown-command", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    # -- analyze
    Mistake("analyze-min-silence-0", ["analyze", "--min-silence", "0", "x.wav"], 2, "--min-silence: must be"),
    Mistake("analyze-min-programme-neg", ["analyze", "--min-programme", "-1", "x.wav"], 2, "--min-programme"),
    Mistake("analyze-threshold-nan", ["analyze", "--silence-threshold-db", "nan", "x.wav"], 2, "finite"),
    Mistake(
        "analyze-threshold-positive", ["analyze", "--silence-threshold-db", "6", "x.wav"], 2, "at most 0"
    ),
    Mistake("analyze-bad-weights", ["analyze", "--channel-weights", "1,x", "x.wav"], 2, "not a number: 'x'"),
    Mistake(
        "analyze-bad-target", ["analyze", "--loudness-target", "5", "x.wav"], 2, "between -70 and 0 LUFS"
    ),
    Mistake("analyze-no-file", ["analyze", "{tmp}/none.wav"], 1, "none.wav: no such file"),
    Mistake("analyze-directory", ["analyze", "{tmp}"], 1, "is a directory"),
    Mistake("analyze-empty", ["analyze", "{tmp}/e.wav"], 1, "the file is empty", {"e.wav": lambda: b""}),
    Mistake(
        "analyze-not-audio",
        ["analyze", "{tmp}/n.mp3"],
        1,
        "not an audio file anbo can read",
        {"n.mp3": text("this is a shopping list\n")},
    ),
    Mistake(
        "analyze-broken-wav",
        ["analyze", "{tmp}/b.wav"],
        1,
        "not a WAV file anbo can read",
        {"b.wav": lambda: b"RIFF\x10\x00\x00\x00WAVEfmt \x02\x00"},
    ),
    Mistake(
        "analyze-8ch-no-weights",
        ["analyze", "{tmp}/8.wav"],
        1,
        "8-channel audio: give the loudness weight of each channel with --channel-weights",
        {"8.wav": lambda: wav(8)},
    ),
    Mistake(
        "analyze-weights-count",
        ["analyze", "--channel-weights", "1,1,1", "{tmp}/2.wav"],
        1,
        "3 channel weights given for 2-channel audio",
        {"2.wav": lambda: wav(2)},
    ),
    # -- simulate
    Mistake("simulate-negative-duration", ["simulate", "--duration", "-1"], 2, "--duration"),
    Mistake("simulate-bad-duration", ["simulate", "--duration", "2x"], 2, "expected a duration such as"),
    Mistake("simulate-speed-0", ["simulate", "--speed", "0"], 2, "--speed: must be > 0"),
    Mistake("simulate-negative-endpoints", ["simulate", "--eb-endpoints", "-5"], 2, "must not be negative"),
    Mistake("simulate-zero-regions", ["simulate", "--eb-regions", "0"], 2, "at least 1 region"),
    Mistake("simulate-audio-rate", ["simulate", "--audio-rate", "12"], 2, "a sample rate between"),
    Mistake("simulate-no-scenario", ["simulate", "-c", "{example}", "-s", "nope", "--check"], 1, "nope"),
    # -- demo
    Mistake("demo-negative-duration", ["demo", "--duration", "-5"], 2, "--duration"),
    Mistake("demo-bad-duration", ["demo", "--duration", "5x"], 2, "expected a duration such as"),
    Mistake("demo-bad-mqtt-url", ["demo", "--mqtt-url", "http://x"], 2, "scheme must be mqtt:// or mqtts://"),
    Mistake("demo-bad-listen", ["demo", "--metrics-listen", "nowhere"], 2, "expected host:port"),
    Mistake("demo-bad-alertmanager", ["demo", "--alertmanager", "ftp://x"], 2, "--alertmanager"),
    Mistake("demo-no-scenario", ["demo", "--scenario", "nope"], 1, "no such scenario"),
    Mistake("demo-no-config", ["demo", "--config", "{tmp}/none.toml"], 1, "none.toml: no such file"),
    Mistake(
        "demo-log-file-unwritable",
        ["demo", "--duration", "2", "--log-file", "{tmp}/no/such/dir/demo.log"],
        1,
        "--log-file",
        slow=True,
    ),
    # The broker that is not there: a clear line within --duration, not a TimeoutError after 30 s.
    Mistake(
        "demo-no-broker",
        [
            "demo",
            "--no-view",
            "--mqtt-url",
            "mqtt://127.0.0.1:1",
            "--duration",
            "5",
            "--log-file",
            "{tmp}/d.log",
        ],
        1,
        "no connection to the MQTT broker at mqtt://127.0.0.1:1 within 5 s",
        timeout=25.0,
        slow=True,
    ),
    # -- the bureau
    Mistake("bureau-no-arguments", ["bureau"], 2, "give --config FILE, or --mqtt-url URL and --database URL"),
    Mistake("bureau-no-config", ["bureau", "-c", "{tmp}/nope.toml"], 1, "nope.toml: no such file"),
    Mistake(
        "bureau-typo",
        ["bureau", "-c", "{tmp}/b.toml"],
        1,
        "b.toml: database.uri: Extra inputs are not permitted",
        {"b.toml": text('[database]\nurl = "postgresql://x@127.0.0.1/b"\nuri = "x"\n')},
    ),
    Mistake(
        "bureau-password-in-url",
        ["bureau", "--mqtt-url", "mqtt://127.0.0.1:1", "--database", "postgresql://u:secret@h/b"],
        1,
        "a password does not belong in the URL",
    ),
    Mistake("report-bureau-no-database", ["report", "--bureau", "--quarter", "2026Q3"], 2, "give --database"),
    Mistake(
        "report-bureau-unreachable",
        ["report", "--bureau", "--database", "postgresql://anbo@127.0.0.1:1/x", "--quarter", "2026Q3"],
        1,
        "the bureau database:",
    ),
    # The capture gateway: inputs named wrongly, for a target that is not there, none at all.
    Mistake(
        "capture-input-without-target",
        ["capture", "-c", "{example}", "--input", "http://host:8000/news"],
        2,
        "expected TARGET=URL",
    ),
    Mistake(
        "capture-input-bad-scheme",
        ["capture", "-c", "{example}", "--input", "fm-news-97.5=ftp://host/x"],
        2,
        "unknown input scheme",
    ),
    Mistake(
        "capture-input-unknown-target",
        ["capture", "-c", "{example}", "--input", "fm-news-97.6=file:x.wav"],
        1,
        "--input fm-news-97.6: 'fm-news-97.6' is not a configured target; did you mean fm-news-97.5?",
    ),
    Mistake(
        "capture-input-tx-target",
        ["capture", "-c", "{example}", "--input", "tx-fm-a=alsa:hw:1,0"],
        1,
        "'tx-fm-a' is a tx target: audio goes to fm and dtv targets",
    ),
    Mistake(
        "capture-busy-metrics-port",
        [
            "capture",
            "-c",
            "{example}",
            "--input",
            "fm-news-97.5=file:/nonexistent.wav",
            "--mqtt-url",
            "mqtt://127.0.0.1:1",
            "--listen",
            "127.0.0.1:{busy_port}",
        ],
        1,
        "address already in use",
    ),
    # A busy /metrics port: a clear line, and the embedded broker stopped (no hang).
    Mistake(
        "demo-busy-metrics-port",
        ["demo", "--no-view", "--metrics-listen", "127.0.0.1:{busy_port}", "--duration", "5"],
        1,
        "address already in use",
        timeout=25.0,
        slow=True,
    ),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def anbo(args: list[str], cwd: Path, timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBO_")}
    env["TMPDIR"] = str(cwd)  # the demo's default log file lands here
    options: dict[str, object] = {"capture_output": True, **kw}
    try:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [sys.executable, "-m", "anbo", *args],
            cwd=cwd,
            env=env,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **options,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"anbo {' '.join(args)} did not end within {timeout} s (a hang)")


@pytest.mark.parametrize(
    "mistake",
    [pytest.param(m, id=m.id, marks=[pytest.mark.slow] if m.slow else []) for m in MISTAKES],
)
def test_mistake_gets_one_clear_line(mistake: Mistake, tmp_path: Path, busy_port: int) -> None:
    for name, make in mistake.files.items():
        (tmp_path / name).write_bytes(make())
    args = [
        a.format(tmp=tmp_path, busy_port=busy_port, example=EXAMPLE) if "{" in a else a for a in mistake.args
    ]
    started = time.monotonic()
    result = anbo(args, tmp_path, mistake.timeout)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "Future exception was never retrieved" not in output, output
    assert result.returncode == mistake.code, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert mistake.says in result.stderr, result.stderr
    if mistake.code == 2:  # argparse: the usage, then one line "anbo X: error: ..."
        assert ": error: " in lines[-1] and sum(": error: " in line for line in lines) == 1, lines
    else:
        assert 1 <= len(lines) <= 4, lines
    assert elapsed < mistake.timeout


def test_analyze_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`anbo analyze x.wav | head`: the reader gone before the report is written."""
    path = tmp_path / "2.wav"
    path.write_bytes(wav(2, seconds=3.0))
    read, write = os.pipe()
    os.close(read)  # the reader has gone before anbo writes a byte
    try:
        result = anbo(
            ["analyze", str(path)], tmp_path, 30.0, stdout=write, capture_output=False, stderr=subprocess.PIPE
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and result.stderr == "", result.stderr
    assert result.returncode == 1


def test_every_command_has_a_one_line_description() -> None:
    from anbo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = getattr(sub, "choices", {})
    assert set(choices) >= {"run", "check", "analyze", "simulate", "demo", "test-rules"}
    for name, command in choices.items():
        assert command.description, name
        assert "\n" not in command.description and len(command.description) < 100, name
        assert command.description in " ".join(command.format_help().split()), name
