"""The compiled one-pass block kernel (probes/_kernels.c) against a float64 numpy reference."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from probes import _kernels
from probes.audio import _channel_stats, _frame_stats


def reference(x: NDArray[np.floating], head: int, fl: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """What frame_stats must compute, the slow obvious way."""
    n, c = x.shape
    m = (n - head) // fl
    sq = x.astype(np.float64) ** 2
    rows = [sq[:head].sum(axis=0)]
    rows += [sq[head + i * fl : head + (i + 1) * fl].sum(axis=0) for i in range(m)]
    rows.append(sq[head + m * fl :].sum(axis=0))
    peak = np.abs(x).max(axis=0).astype(np.float64) if n else np.zeros(c)
    return np.array(rows), np.stack([sq.sum(axis=0), peak * peak])


def assert_close(x: NDArray[np.floating], head: int, fl: int) -> None:
    sums, totals = _frame_stats(x, head, fl)
    want_sums, want_totals = reference(x, head, fl)
    assert sums.shape == want_sums.shape
    # float32 lanes are flushed into float64 every 8192 samples: relative error < 3e-5
    # (and exact zeros stay zero); float64 input is accumulated in float64.
    rtol = 3e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sums, want_sums, rtol=rtol, atol=0.0)
    np.testing.assert_allclose(totals[0], want_totals[0], rtol=rtol, atol=0.0)
    # The peak power is the exact square of the peak sample.
    np.testing.assert_array_equal(totals[1], want_totals[1])


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    channels=st.sampled_from([1, 2, 3, 4, 5, 6, 8, 16, 17]),
    frames=st.integers(0, 3000),
    head_share=st.floats(0.0, 1.0),
    fl=st.integers(1, 700),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 3.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_reference_for_any_layout(
    dtype: type[np.floating], channels: int, frames: int, head_share: float, fl: int, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((frames, channels)) * scale).astype(dtype)
    assert_close(x, round(head_share * frames), fl)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_segments_span_several_flushes(dtype: type[np.floating]) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, (48_000 * 3 + 17, 2)).astype(dtype)
    assert_close(x, 5, 48_000)  # segments of 96 000 samples = 12 flushes each
    assert_close(x, x.shape[0], 1)  # one segment of the whole block


def test_quiet_channel_next_to_a_full_scale_one_keeps_its_own_level() -> None:
    """Each channel has its own lanes: no cancellation between a loud and a silent channel."""
    t = np.arange(48_000) / 48_000
    x = np.stack([np.sin(2 * np.pi * 997 * t), 1e-5 * np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32)
    energy, peak_power = _channel_stats(x)
    want = (x.astype(np.float64) ** 2).sum(axis=0)
    np.testing.assert_allclose(energy, want, rtol=1e-5)
    assert peak_power[1] == np.float64(np.abs(x[:, 1]).max()) ** 2


def test_peak_is_exact_for_negative_and_extreme_values() -> None:
    x = np.array([[0.5, -0.25], [-1.0, 0.125], [0.75, -3.0e38]], dtype=np.float32)
    peak_power = _channel_stats(x)[1]
    assert peak_power.tolist() == [1.0, float(np.float32(3.0e38)) ** 2]


def test_nan_poisons_the_sum_of_its_segment_only() -> None:
    x = np.ones((10, 1), dtype=np.float32)
    x[3, 0] = np.nan
    sums, totals = _frame_stats(x, 0, 5)
    assert np.isnan(sums[1, 0]) and sums[2, 0] == 5.0 and sums[0, 0] == 0.0
    assert np.isnan(totals[0, 0]) and totals[1, 0] == 1.0


def test_bad_arguments_are_refused_with_clear_errors() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    sums, totals = np.empty((4, 2)), np.empty((2, 2))
    _kernels.frame_stats(x, 2, 2, 4, sums, totals)  # (10 − 2) // 4 = 2 frames + head + tail
    with pytest.raises(ValueError, match="sums must hold"):
        _kernels.frame_stats(x, 2, 0, 3, sums, totals)  # 3 frames: 5 rows needed
    with pytest.raises(ValueError, match="head"):
        _kernels.frame_stats(x, 2, 11, 4, np.empty((2, 2)), totals)
    with pytest.raises(ValueError, match="totals 2 x 2"):
        _kernels.frame_stats(x, 2, 2, 4, sums, np.empty(2))
    with pytest.raises(ValueError, match="frame_len >= 1"):
        _kernels.frame_stats(x, 2, 0, 0, sums, totals)
    with pytest.raises(ValueError, match="whole frames"):
        _kernels.frame_stats(x, 3, 0, 4, sums, totals)
    with pytest.raises(TypeError, match="float32 or float64"):
        _kernels.frame_stats(x.astype(np.int32), 2, 2, 4, sums, totals)
    with pytest.raises(TypeError, match="float32 or float64"):
        _kernels.frame_stats(x.astype(">f4"), 2, 2, 4, sums, totals)
    with pytest.raises(TypeError, match="float64"):
        _kernels.frame_stats(x, 2, 2, 4, sums.astype(np.float32), totals)
    with pytest.raises(TypeError, match="C-contiguous"):
        _kernels.frame_stats(np.zeros((10, 4), dtype=np.float32)[:, ::2], 2, 2, 4, sums, totals)
    with pytest.raises(TypeError, match="writable"):
        _kernels.frame_stats(x, 2, 2, 4, b"\0" * 64, totals)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"frame_stats\(samples"):
        _kernels.frame_stats(x, 2)  # type: ignore[call-arg]


def test_portable_build_matches_the_sse2_build(tmp_path: Path) -> None:
    """The compare-and-select path used off x86-64, built here with ANBO_PORTABLE_SIMD."""
    source = Path(_kernels.__file__).with_name("_kernels.c")
    target = tmp_path / f"_kernels{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build probes/_kernels.c (scripts/setup installs it)"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O3", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-DANBO_PORTABLE_SIMD", f"-I{include}", str(source), "-o", str(target)],
        check=True,
    )  # fmt: skip
    spec = importlib.util.spec_from_file_location("_kernels", target)
    assert spec and spec.loader
    portable = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(portable)
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64, np.dtype("<i2"), np.dtype(">i2")):
        for channels in (1, 2, 3, 4):
            x = (rng.standard_normal((5000, channels)) * 0.3).astype(np.float32)
            if np.dtype(dtype).kind == "i":
                x = np.rint(x * 32767).clip(-32768, 32767).astype(dtype)
            else:
                x = x.astype(dtype)
                x[17, 0] = np.nan  # ignored by the peak in both builds
            out = []
            for module in (_kernels, portable):
                sums, totals = np.empty((2 + 4990 // 480, channels)), np.empty((2, channels))
                module.frame_stats(x, channels, 10, 480, sums, totals)
                out.append((sums, totals))
            np.testing.assert_array_equal(out[0][0], out[1][0])
            np.testing.assert_array_equal(out[0][1], out[1][1])


@settings(max_examples=200, deadline=None)
@given(
    order=st.sampled_from(["<i2", ">i2"]),
    channels=st.sampled_from([1, 2, 3, 4, 6, 8, 16, 17]),
    frames=st.integers(0, 3000),
    head_share=st.floats(0.0, 1.0),
    fl=st.integers(1, 700),
    seed=st.integers(0, 2**32 - 1),
)
def test_int16_in_either_byte_order_gives_the_float32_results_exactly(
    order: str, channels: int, frames: int, head_share: float, fl: int, seed: int
) -> None:
    """The wire's L16 samples are read as they are, scaled by 1/32768, with no float32 copy."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-32768, 32768, (frames, channels)).astype(order)
    if frames:
        codes[rng.integers(0, frames), 0] = -32768  # the one code whose magnitude is 2^15
    as_float = codes.astype(np.float32) * np.float32(1 / 32768)
    head = round(head_share * frames)
    got = _frame_stats(codes, head, fl)
    want = _frame_stats(as_float, head, fl)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert_close(as_float, head, fl)  # and those are right


def test_silence_detector_reads_wire_int16_like_the_decoded_float32() -> None:
    from probes.audio import SilenceDetector

    rng = np.random.default_rng(5)
    codes = (rng.standard_normal((48_000 * 8, 2)) * 3000).astype(">i2")
    codes[48_000 * 2 : 48_000 * 5] = rng.integers(-3, 4, (48_000 * 3, 2))  # 3 s of dither
    as_float = codes.astype(np.float32) * np.float32(1 / 32768)
    results = []
    for x in (codes, as_float):
        det = SilenceDetector(on_dbfs=-60.0, off_dbfs=-60.0, on_s=2.0, off_s=0.05)
        out = [det.process(x[p : p + 4800], 48_000, p / 48_000) for p in range(0, x.shape[0], 4800)]
        results.append(
            (
                [iv for u in out for iv in u.closed],
                [u.levels.rms_dbfs.tolist() + u.levels.peak_dbfs.tolist() for u in out],
            )
        )
    assert results[0] == results[1]
    assert len(results[0][0]) == 1


@settings(max_examples=100, deadline=None)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    channels=st.sampled_from([1, 2, 3, 5, 6]),
    frames=st.integers(1, 3000),
    seed=st.integers(0, 2**32 - 1),
)
def test_sos_power_is_sosfilt_squared_and_weighted(
    dtype: type[np.floating], channels: int, frames: int, seed: int
) -> None:
    """The K-weighting pass gives scipy's sosfilt results, and the same filter state."""
    import scipy.signal

    from probes.loudness import k_weighting_sos

    rng = np.random.default_rng(seed)
    sos = np.ascontiguousarray(k_weighting_sos(48_000))
    x = (rng.standard_normal((frames, channels)) * 0.3).astype(dtype)
    weights = rng.uniform(0.0, 1.5, channels)
    zi = rng.standard_normal((2, channels, 2)) * 1e-2
    y, want_zi = scipy.signal.sosfilt(sos, x.T.astype(np.float64), axis=-1, zi=zi)
    want = weights @ (y * y)
    got_zi = zi.copy()
    got = np.empty(frames)
    _kernels.sos_power(x, sos, got_zi, weights, got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got_zi, want_zi, rtol=1e-12, atol=1e-15)


def test_sos_power_refuses_bad_arguments() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    sos, zi, w, out = np.zeros((2, 6)), np.zeros((2, 2, 2)), np.ones(2), np.empty(10)
    _kernels.sos_power(x, sos, zi, w, out)
    with pytest.raises(ValueError, match="zi of"):
        _kernels.sos_power(x, sos, np.zeros((2, 1, 2)), w, out)
    with pytest.raises(ValueError, match="one value per frame"):
        _kernels.sos_power(x, sos, zi, w, np.empty(9))
    with pytest.raises(TypeError, match="float32 or float64"):
        _kernels.sos_power(x.astype(np.int16), sos, zi, w, out)
    with pytest.raises(TypeError, match="must be float64"):
        _kernels.sos_power(x, sos.astype(np.float32), zi, w, out)
    with pytest.raises(TypeError, match=r"sos_power\(samples"):
        _kernels.sos_power(x, sos)  # type: ignore[call-arg]


@settings(max_examples=100, deadline=None)
@given(
    channels=st.sampled_from([1, 2, 5]),
    frames=st.integers(0, 2000),
    scale=st.sampled_from([0.0, 1e-7, 1e-3, 1.0]),
    floor_db=st.sampled_from([-120.0, -60.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_levels_mode_is_numpy_floored_db(
    channels: int, frames: int, scale: float, floor_db: float, seed: int
) -> None:
    """With floor_power the totals come back as RMS and peak dBFS, as numpy would make them."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((frames, channels)) * scale).astype(np.float32)
    floor = 10.0 ** (floor_db / 10.0)
    _, totals = _frame_stats(x, 0, 7)
    _, levels = _frame_stats(x, 0, 7, floor)
    rms = totals[0] / frames if frames else np.zeros(channels)
    want = 10.0 * np.log10(np.maximum(np.stack([rms, totals[1]]), floor))
    np.testing.assert_allclose(levels, want, rtol=0, atol=1e-9)
    assert (levels >= floor_db - 1e-9).all()


def test_levels_mode_rejects_a_floor_that_is_not_positive() -> None:
    x = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="floor_power"):
        _kernels.frame_stats(x, 1, 0, 2, np.empty((4, 1)), np.empty((2, 1)), 0.0)
    with pytest.raises(TypeError):
        _kernels.frame_stats(x, 1, 0, 2, np.empty((4, 1)), np.empty((2, 1)), "x")  # type: ignore[arg-type]
