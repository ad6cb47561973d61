"""`anbo analyze`: a recorded WAV file in, silences, levels and loudness out."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from hypothesis import given, settings
from hypothesis import strategies as st

from anbo.analyze import AnalyzeError, analyze
from anbo.cli import main

RATE = 48_000


def programme(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return np.stack([x, 0.9 * x], axis=1)


def recording(tmp_path: Path, dtype: str = "int16") -> Path:
    # 30 s programme, 12 s silence at 30 s, 25 s programme, 1 s pause (too short), 20 s programme,
    # then 5 s of silence to the very end.
    parts = [
        programme(30),
        np.zeros((12 * RATE, 2)),
        programme(25),
        np.zeros((RATE, 2)),
        programme(20),
        np.zeros((5 * RATE, 2)),
    ]
    x = np.concatenate(parts)
    path = tmp_path / f"offair-{dtype}.wav"
    if dtype == "int16":
        scipy.io.wavfile.write(path, RATE, (x * 32767).astype(np.int16))
    elif dtype == "uint8":
        scipy.io.wavfile.write(path, RATE, (x * 127 + 128).astype(np.uint8))
    else:
        scipy.io.wavfile.write(path, RATE, x.astype(np.float32))
    return path


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8"])
def test_silences_found_at_known_places(tmp_path: Path, dtype: str) -> None:
    report = analyze(recording(tmp_path, dtype), silence_on_dbfs=-40.0, min_silence=2.0)
    starts = [(s["start"], s["end"]) for s in report.silences]
    assert len(starts) == 2, starts
    assert starts[0] == pytest.approx((30.0, 42.0), abs=0.06)
    assert starts[1] == pytest.approx((88.0, 93.0), abs=0.06)  # open to the end of the file
    assert report.duration == pytest.approx(93.0)
    assert report.channels == 2
    assert report.rms_dbfs[0] > report.rms_dbfs[1]


def test_json_output_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(recording(tmp_path)), "--json", "--min-silence", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [round(s["duration"]) for s in out["silences"]] == [12]
    assert set(out["silences"][0]) == {"start", "end", "duration"}
    assert -25 < out["integrated_lufs"] < -10
    assert out["max_short_term_lufs"] >= out["integrated_lufs"]
    assert out["loudness_range_lu"] >= 0.0
    # 440 Hz at 0.3 × 1.5 full scale: no inter-sample overshoot to speak of.
    assert out["true_peak_dbtp"] == pytest.approx(out["peak_dbfs"], abs=0.05)


def test_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(recording(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "Silences (2," in out and "00:00:30.000 – 00:00:42.000" in out
    assert "LUFS" in out and "LU," in out and "dBTP (per channel)" in out


def test_silence_only_gives_the_same_silences_and_levels_without_loudness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = recording(tmp_path)
    full = analyze(path)
    assert main(["analyze", str(path), "--json", "--silence-only"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["silences"] == full.silences
    assert out["rms_dbfs"] == full.rms_dbfs and out["peak_dbfs"] == full.peak_dbfs
    assert out["clip_ratio"] == full.clip_ratio
    assert out["loudness_measured"] is False and out["integrated_lufs"] is None
    assert out["true_peak_dbtp"] == []
    assert main(["analyze", str(path), "--silence-only"]) == 0
    text = capsys.readouterr().out
    assert "Silences (2," in text and "not measured (--silence-only)" in text and "dBTP" not in text


def test_loudness_of_a_calibrated_tone(tmp_path: Path) -> None:
    # A 1 kHz sine at -20 dBFS peak, mono... EBU Tech 3341: -23 dBFS stereo sine reads -23 LUFS.
    t = np.arange(20 * RATE) / RATE
    x = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "tone.wav"
    scipy.io.wavfile.write(path, RATE, np.stack([x, x], axis=1).astype(np.float32))
    report = analyze(path)
    assert report.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert report.loudness_range_lu == pytest.approx(0.0, abs=0.1)


def test_loudness_range_and_true_peak(tmp_path: Path) -> None:
    """EBU Tech 3342 signal 1 (1 kHz at −20 then −30 dBFS: LRA 10 LU), and a quarter-rate
    sine at 45° whose samples all lie 3 dB under its −6 dBFS peak."""
    t = np.arange(20 * RATE) / RATE
    tone = np.sin(2 * np.pi * 1000 * t)
    x = np.concatenate([10 ** (-20 / 20) * tone, 10 ** (-30 / 20) * tone])
    path = tmp_path / "lra.wav"
    scipy.io.wavfile.write(path, RATE, np.stack([x, x], axis=1).astype(np.float32))
    assert analyze(path).loudness_range_lu == pytest.approx(10.0, abs=0.3)

    q = 0.5 * np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4)
    path = tmp_path / "true-peak.wav"
    scipy.io.wavfile.write(path, RATE, np.stack([q, 0.5 * q], axis=1).astype(np.float32))
    report = analyze(path)
    assert report.peak_dbfs == pytest.approx([-9.03, -15.05], abs=0.02)
    assert report.true_peak_dbtp == pytest.approx([-6.02, -12.04], abs=0.05)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a WAV file"),
        (b"ID3\x03\x00 an mp3 perhaps", "not an audio file anbo can read (ffprobe: "),
    ],
)
def test_corrupt_files_get_a_clear_error(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    assert main(["analyze", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"anbo analyze: {path}: ") and message in err


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="no such file"):
        analyze(tmp_path / "nope.wav")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_report_or_a_clear_error(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.wav"
        path.write_bytes(b"RIFF" + len(data).to_bytes(4, "little") + b"WAVE" + data)
        with contextlib.suppress(AnalyzeError):
            analyze(path)
