"""`anbo analyze` on what station loggers record: MP3, FLAC, Ogg, M4A, 24-bit WAV, 5.1,
BWF, files cut short. Each is made from one WAV here with the real ffmpeg, and must give
the same silences (within 50 ms) and loudness (within 0.1 LU) as the WAV it came from.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from anbo.analyze import WEIGHTS_5_1, AnalyzeError, Report, analyze

RATE = 48_000
FFMPEG = shutil.which("ffmpeg")


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    if FFMPEG is None:  # a missing binary fails loudly, never skips
        pytest.fail("ffmpeg is not installed (scripts/setup installs it)")
    return FFMPEG


def tone(seconds: float, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return level * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))


def programme_with_gaps(channels: int = 2) -> np.ndarray:
    """20 s programme, 4 s silence at 20 s, 10 s programme, 3 s silence to the end (37 s)."""
    mono = np.concatenate([tone(20), np.zeros(4 * RATE), tone(10), np.zeros(3 * RATE)])
    gains = [1.0, 0.9, 0.7, 0.5, 0.6, 0.6][:channels]
    return np.stack([g * mono for g in gains], axis=1)


def wav_bytes(x: np.ndarray, *, bits: int = 16, chunks: bytes = b"") -> bytes:
    """A PCM WAV (``chunks`` inserted between fmt and data, e.g. a BWF bext chunk)."""
    channels = x.shape[1]
    width = bits // 8
    ints = np.round(x * (2 ** (bits - 1) - 1)).astype(np.int32)
    if bits == 16:
        data = ints.astype("<i2").tobytes()
    else:  # 24-bit little-endian, three bytes a sample
        data = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, RATE, RATE * channels * width, channels * width, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + chunks
    body += b"data" + struct.pack("<I", len(data)) + data
    return bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def bext_chunk(date: str, clock: str, time_reference: int) -> bytes:
    body = bytearray(602)
    body[0:18] = b"anbo test recorder"
    body[320:330] = date.encode()
    body[330:338] = clock.encode()
    body[338:346] = struct.pack("<Q", time_reference)
    return b"bext" + struct.pack("<I", len(body)) + bytes(body)


def convert(ffmpeg: str, src: Path, dst: Path, *args: str) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


def spans(report: Report) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in report.silences]


def assert_same_analysis(report: Report, reference: Report, *, loudness_lu: float = 0.1) -> None:
    got, want = spans(report), spans(reference)
    assert len(got) == len(want), (got, want)
    for (s, e), (rs, re_) in zip(got, want, strict=True):
        assert s == pytest.approx(rs, abs=0.05) and e == pytest.approx(re_, abs=0.05), (got, want)
    assert report.integrated_lufs is not None and reference.integrated_lufs is not None
    assert report.integrated_lufs == pytest.approx(reference.integrated_lufs, abs=loudness_lu)
    assert report.duration == pytest.approx(reference.duration, abs=0.05)
    assert report.channels == reference.channels and report.rate == reference.rate


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    path = tmp_path_factory.mktemp("formats") / "offair.wav"
    path.write_bytes(wav_bytes(programme_with_gaps()))
    report = analyze(path)
    assert spans(report) == [pytest.approx((20.0, 24.0), abs=0.06), pytest.approx((34.0, 37.0), abs=0.06)]
    return path, report


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "args", "sample_format"),
    [
        ("flac", [], "flac int16"),
        # 24-bit FLAC from 16-bit input still says what the file holds.
        ("24.flac", ["-sample_fmt", "s32", "-bits_per_raw_sample", "24"], "flac int24"),
        ("ogg", ["-c:a", "libvorbis", "-q:a", "6"], "vorbis"),
        # AAC in MP4: the encoder's 1024-sample priming is in the edit list ffmpeg honours.
        ("m4a", ["-c:a", "aac", "-b:a", "256k"], "aac"),
        # MP3 encoder delay: LAME writes its delay and padding in the Xing/LAME header and
        # ffmpeg's decoder trims them (gapless), so times match to the sample. 320 kb/s: at
        # 192 kb/s this LAME build lowers the level by 0.26 dB (more than the 0.1 LU asked).
        ("mp3", ["-c:a", "libmp3lame", "-b:a", "320k"], "mp3"),
        ("24.wav", ["-c:a", "pcm_s24le"], "int24"),
    ],
)
def test_formats_give_the_same_silences_and_loudness_as_their_wav(
    ffmpeg: str, source: tuple[Path, Report], tmp_path: Path, suffix: str, args: list[str], sample_format: str
) -> None:
    wav, reference = source
    report = analyze(convert(ffmpeg, wav, tmp_path / f"offair.{suffix}", *args))
    assert report.sample_format == sample_format
    assert report.warnings == []
    assert_same_analysis(report, reference)


def test_mp3_without_lame_header_is_late_by_the_encoder_delay(
    ffmpeg: str, source: tuple[Path, Report], tmp_path: Path
) -> None:
    """Without the LAME header nothing in the file says how long the encoder delay is:
    576 + 529 samples (23 ms at 48 kHz) of lead-in the decoder cannot trim. Every time is
    that much later, rounded up to the silence detector's 50 ms frames: so up to 75 ms,
    more than the 50 ms that files with the header (all LAME writes by default) meet."""
    wav, reference = source
    mp3 = convert(
        ffmpeg, wav, tmp_path / "nolame.mp3", "-c:a", "libmp3lame", "-b:a", "320k", "-write_xing", "0"
    )
    report = analyze(mp3)
    assert report.integrated_lufs == pytest.approx(reference.integrated_lufs, abs=0.1)
    assert report.duration - reference.duration == pytest.approx(1105 / RATE, abs=0.03)
    for got, want in zip(spans(report), spans(reference), strict=True):
        assert 0.0 < got[0] - want[0] <= 0.075 + 1e-9


def test_24_bit_wav_is_read_as_24_bit(tmp_path: Path) -> None:
    x = programme_with_gaps()
    path16, path24 = tmp_path / "a16.wav", tmp_path / "a24.wav"
    path16.write_bytes(wav_bytes(x))
    path24.write_bytes(wav_bytes(x, bits=24))
    r16, r24 = analyze(path16), analyze(path24)
    assert r24.sample_format == "int24"
    assert r24.peak_dbfs == pytest.approx(r16.peak_dbfs, abs=0.01)
    assert_same_analysis(r24, r16, loudness_lu=0.01)


@pytest.mark.slow
def test_5_1_uses_bs1770_weights_and_ignores_lfe(ffmpeg: str, tmp_path: Path) -> None:
    stereo = programme_with_gaps(2)
    six = np.zeros((stereo.shape[0], 6))
    six[:, :2] = stereo
    six[:, 3] = 0.5 * np.concatenate([tone(37, freq=60.0)])  # LFE: does not count
    wav6, wav2 = tmp_path / "surround.wav", tmp_path / "stereo.wav"
    wav6.write_bytes(wav_bytes(six))
    wav2.write_bytes(wav_bytes(stereo))
    r6, r2 = analyze(wav6), analyze(wav2)
    assert r6.channels == 6
    # L and R carry the programme, the LFE a rumble BS.1770 leaves out: the same loudness.
    assert r6.integrated_lufs == pytest.approx(r2.integrated_lufs, abs=0.01)
    # The option changes it: counting the LFE makes it louder.
    louder = analyze(wav6, channel_weights=(1.0, 1.0, 1.0, 1.0, 1.41, 1.41))
    assert louder.integrated_lufs is not None and r6.integrated_lufs is not None
    assert louder.integrated_lufs > r6.integrated_lufs + 0.2
    assert analyze(wav6, channel_weights=WEIGHTS_5_1).integrated_lufs == r6.integrated_lufs
    # And a 5.1 FLAC (channel layout 5.1) gives what its WAV gives.
    flac = convert(ffmpeg, wav6, tmp_path / "surround.flac")
    assert_same_analysis(analyze(flac), r6)
    with pytest.raises(AnalyzeError, match="3 channel weights given for 6-channel audio"):
        analyze(wav6, channel_weights=(1.0, 1.0, 1.0))


def test_truncated_wav_is_analysed_up_to_the_cut(source: tuple[Path, Report], tmp_path: Path) -> None:
    wav, reference = source
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    header = 44  # RIFF + fmt (16) + data header
    cut.write_bytes(data[: header + int(36.0 * RATE) * 4 + 3])  # 36 s and a partial frame
    warnings: list[str] = []
    report = analyze(cut, warn=warnings.append)
    assert report.duration == pytest.approx(36.0)
    assert len(warnings) == 1 and "cut short: 37.000 s declared, 36.000 s present" in warnings[0]
    assert report.warnings == warnings
    assert spans(report)[0] == spans(reference)[0]
    assert spans(report)[1] == pytest.approx((spans(reference)[1][0], 36.0), abs=0.05)


def test_bwf_origination_gives_wall_clock_silences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from anbo.cli import main

    start = 23 * 3600 + 59 * 60 + 50  # 23:59:50, ten seconds before midnight
    path = tmp_path / "bwf.wav"
    chunk = bext_chunk("2026-12-04", "23:59:50", start * RATE)
    path.write_bytes(wav_bytes(programme_with_gaps(), chunks=chunk))
    report = analyze(path)
    assert report.origin is not None and report.origin.isoformat() == "2026-12-04T23:59:50"
    first = report.silences[0]
    assert first["wall_start"].startswith("2026-12-05T00:00:10.0")  # 20 s in: after midnight
    assert main(["analyze", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["origin"] == "2026-12-04T23:59:50.000" and "wall_end" in out["silences"][1]
    assert main(["analyze", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Recorded from 2026-12-04 23:59:50.000 (BWF bext)" in text and "at 2026-12-05T00:00:10" in text


def test_loudness_target_deviation(source: tuple[Path, Report], capsys: pytest.CaptureFixture[str]) -> None:
    from anbo.cli import main

    wav, reference = source
    assert reference.integrated_lufs is not None
    assert main(["analyze", str(wav), "--json", "--loudness-target", "-23"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loudness_target_lufs"] == -23.0
    assert out["loudness_deviation_lu"] == pytest.approx(reference.integrated_lufs + 23.0, abs=0.01)
    assert main(["analyze", str(wav), "--loudness-target=-24LKFS"]) == 0
    assert f"Target:    -24.0 LUFS: {reference.integrated_lufs + 24.0:+.1f} LU" in capsys.readouterr().out


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="is a directory"):
        analyze(tmp_path)


def test_16_bit_flac_decodes_to_the_wavs_own_samples(
    ffmpeg: str, source: tuple[Path, Report], tmp_path: Path
) -> None:
    """A 16-bit FLAC comes through ffmpeg as s16le: every block is the WAV's, to the bit."""
    from monitor.audiofile import open_audio

    wav, _ = source
    flac = open_audio(convert(ffmpeg, wav, tmp_path / "offair.flac"))
    assert flac.sample_format == "flac int16"
    want = open_audio(wav)
    block = 7_000  # not a divisor of the length: the last block is short
    got_blocks = list(flac.blocks(block))
    want_blocks = list(want.blocks(block))
    assert [b.shape for b in got_blocks] == [b.shape for b in want_blocks]
    for got, exp in zip(got_blocks, want_blocks, strict=True):
        assert got.dtype == np.float32 and got.flags.writeable
        np.testing.assert_array_equal(got, exp)
