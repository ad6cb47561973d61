"""RF kernels: windowed statistics of readings, FM modulation, MPX power, VSWR."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes import rf
from probes.rf import TimeWindow

# --------------------------------------------------------------------------- VSWR


@pytest.mark.parametrize(
    ("forward", "reflected", "expected_vswr", "expected_rl"),
    [
        (100.0, 0.0, 1.0, math.inf),
        (100.0, 4.0, 1.5, 13.979),  # |Γ| = 0.2
        (1000.0, 1.0, 1.0653, 30.0),
        (5000.0, 555.5556, 2.0, 9.542),  # |Γ| = 1/3
        (100.0, 100.0, math.inf, 0.0),
        (100.0, 150.0, math.inf, -1.761),
    ],
)
def test_vswr_and_return_loss_known_values(
    forward: float, reflected: float, expected_vswr: float, expected_rl: float
) -> None:
    assert float(rf.vswr(forward, reflected)) == pytest.approx(expected_vswr, abs=1e-3)
    assert float(rf.return_loss_db(forward, reflected)) == pytest.approx(expected_rl, abs=1e-3)


@pytest.mark.parametrize(
    ("forward", "reflected"),
    [(0.0, 0.0), (-1.0, 0.1), (100.0, -0.5), (math.nan, 1.0), (100.0, math.nan)],
)
def test_vswr_without_a_measurement_is_nan_not_a_good_match(forward: float, reflected: float) -> None:
    assert math.isnan(float(rf.vswr(forward, reflected)))
    assert math.isnan(float(rf.return_loss_db(forward, reflected)))
    assert math.isnan(float(rf.reflection_coefficient(forward, reflected)))


def test_vswr_is_vectorised_across_transmitters() -> None:
    fwd = np.array([1000.0, 1000.0, 0.0, 500.0])
    refl = np.array([0.0, 40.0, 1.0, 500.0])
    np.testing.assert_allclose(rf.vswr(fwd, refl), [1.0, 1.5, np.nan, np.inf])


@settings(max_examples=200)
@given(
    forward=st.floats(1e-3, 1e6),
    share=st.floats(0.0, 0.999),
)
def test_vswr_round_trips_through_the_reflection_coefficient(forward: float, share: float) -> None:
    s = float(rf.vswr(forward, forward * share))
    gamma = (s - 1.0) / (s + 1.0)
    assert gamma == pytest.approx(math.sqrt(share), abs=1e-9)
    assert s >= 1.0


# --------------------------------------------------------------------------- FM / MPX


def test_fm_modulation_percent() -> None:
    np.testing.assert_allclose(
        rf.fm_modulation_percent([75_000.0, 78_750.0, -37_500.0, 0.0]), [100.0, 105.0, 50.0, 0.0]
    )


def test_mpx_power_of_a_19_khz_sine_deviation_is_0_dbr() -> None:
    t = np.arange(60_000) / 1000.0
    dev = 19_000.0 * np.sin(2 * np.pi * 7.3 * t)
    assert float(rf.mpx_power_dbr(dev)) == pytest.approx(0.0, abs=0.01)
    assert float(rf.mpx_power_dbr(2 * dev)) == pytest.approx(6.02, abs=0.01)
    noisy = dev.copy()
    noisy[::10] = np.nan  # missing samples are ignored, not taken as zero
    assert float(rf.mpx_power_dbr(noisy)) == pytest.approx(0.0, abs=0.05)
    assert math.isnan(float(rf.mpx_power_dbr(np.full(10, np.nan))))


def test_mpx_power_per_row_and_excess_over_the_bs412_limit() -> None:
    phase = 2 * np.pi * np.arange(6000) / 100.0  # 60 whole periods
    rows = np.vstack([19_000.0 * np.sin(phase), 15_000.0 * np.sin(phase)])
    power = rf.mpx_power_dbr(rows, axis=1)
    np.testing.assert_allclose(power, [0.0, 20 * math.log10(15 / 19)], atol=0.01)
    excess = rf.mpx_power_excess_db([0.5, -1.0, np.nan])
    assert excess[0] == pytest.approx(0.5)
    assert excess[1] == pytest.approx(-1.0)
    assert math.isnan(excess[2])


# --------------------------------------------------------------------------- TimeWindow


def test_scalar_readings_and_window_edges() -> None:
    w = TimeWindow(n_series=2, capacity=100, window_s=10.0)
    for k in range(20):
        w.add(0, 100.0 + k, float(k))
    w.add(1, 105.0, 42.0)
    s = w.stats(now=119.0)
    # window (109, 119]: readings at 110…119
    assert list(s.count) == [10, 0]
    assert s.mean[0] == pytest.approx(14.5)
    assert (s.min[0], s.max[0]) == (10.0, 19.0)
    assert math.isnan(s.mean[1]) and math.isnan(s.min[1]) and math.isnan(s.max[1])
    # a reading stamped after `now` is not yet in the window
    assert w.stats(now=109.5).count[0] == 10  # 100…109
    assert w.stats(now=119.0, window_s=30.0).count[1] == 1


def test_batched_readings_are_spread_over_time() -> None:
    w = TimeWindow(n_series=1, capacity=1000, window_s=1.0)
    w.extend(0, ts0=10.0, period=0.01, values=np.arange(300, dtype=float))  # 10.00…12.99
    s = w.stats(now=12.995)
    assert s.count[0] == 100
    assert (s.min[0], s.max[0]) == (200.0, 299.0)
    ts, value = w.last()
    assert ts[0] == pytest.approx(12.99)
    assert value[0] == 299.0


def test_capacity_keeps_the_newest_readings() -> None:
    w = TimeWindow(n_series=2, capacity=8, window_s=1e9)
    w.add(np.zeros(20, dtype=int), np.arange(20.0), np.arange(20.0))  # one call, 20 > 8
    for k in range(20):
        w.add(1, float(k), float(k))
    for series in (0, 1):
        s = w.stats(now=100.0)
        assert s.count[series] == 8
        assert (s.min[series], s.max[series]) == (12.0, 19.0)


def test_out_of_order_and_non_finite_readings() -> None:
    w = TimeWindow(n_series=1, capacity=16, window_s=5.0)
    w.add(0, [9.0, 7.0, 8.0, 6.0], [1.0, 2.0, np.nan, 4.0])
    s = w.stats(now=10.0)
    assert s.count[0] == 3  # NaN is no reading
    assert s.mean[0] == pytest.approx(7 / 3)
    ts, value = w.last()
    assert (ts[0], value[0]) == (9.0, 1.0)  # newest by time, not by arrival
    w.add(0, 5.5, 3.0)  # late arrival does not become "last"
    assert w.last()[0][0] == 9.0
    with pytest.raises(ValueError, match="finite"):
        w.add(0, np.nan, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        w.add(1, 1.0, 1.0)


def test_dtv_style_use_lock_share_and_time_below_mer_limit() -> None:
    # Two DTV targets, one reading per second for a minute.
    w = TimeWindow(n_series=2, capacity=120, window_s=60.0)
    t = np.arange(60.0)
    mer = np.vstack([np.full(60, 33.0), np.where(t % 4 == 0, 25.0, 33.0)])
    lock = np.vstack([np.ones(60), np.where(t < 45, 1.0, 0.0)])
    locks = TimeWindow(n_series=2, capacity=120, window_s=60.0)
    for series in (0, 1):
        w.add(series, t, mer[series])
        locks.add(series, t, lock[series])
    np.testing.assert_allclose(w.fraction_below(28.0, now=59.0), [0.0, 0.25])
    np.testing.assert_allclose(w.fraction_below([34.0, 20.0], now=59.0), [1.0, 0.0])
    np.testing.assert_allclose(locks.stats(now=59.0).mean, [1.0, 0.75])
    np.testing.assert_allclose(w.stats(now=59.0).min, [33.0, 25.0])


@settings(max_examples=60, deadline=None)
@given(
    readings=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.floats(0.0, 100.0),
            st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)),
        ),
        max_size=80,
    ),
    now=st.floats(0.0, 120.0),
    window=st.floats(0.5, 100.0),
    q=st.floats(0.0, 100.0),
    chunk=st.integers(1, 80),
)
def test_window_stats_match_a_plain_python_reference(
    readings: list[tuple[int, float, float]], now: float, window: float, q: float, chunk: int
) -> None:
    capacity = 32
    w = TimeWindow(n_series=3, capacity=capacity, window_s=window)
    for i in range(0, len(readings), chunk):
        part = readings[i : i + chunk]
        w.add([r[0] for r in part], [r[1] for r in part], [r[2] for r in part])
    stats = w.stats(now)
    pct = w.percentile(q, now)
    below = w.fraction_below(0.0, now)
    for series in range(3):
        kept = [r for r in readings if r[0] == series][-capacity:]
        vals = [v for _, t, v in kept if now - window < t <= now and math.isfinite(v)]
        assert stats.count[series] == len(vals)
        if vals:
            assert stats.mean[series] == pytest.approx(np.mean(vals), rel=1e-9, abs=1e-6)
            assert stats.min[series] == min(vals)
            assert stats.max[series] == max(vals)
            assert pct[series] == pytest.approx(np.percentile(vals, q), rel=1e-9, abs=1e-6)
            assert below[series] == pytest.approx(sum(v < 0 for v in vals) / len(vals))
        else:
            assert math.isnan(stats.mean[series]) and math.isnan(pct[series])
            assert math.isnan(below[series])


def test_several_percentiles_at_once() -> None:
    w = TimeWindow(n_series=2, capacity=200, window_s=1000.0)
    w.add(0, np.arange(101.0), np.arange(101.0))
    w.add(1, np.arange(11.0), np.arange(11.0) * 2)
    p = w.percentile([0.0, 50.0, 95.0, 100.0], now=500.0)
    np.testing.assert_allclose(p, [[0.0, 0.0], [50.0, 10.0], [95.0, 19.0], [100.0, 20.0]])
    with pytest.raises(ValueError, match=r"0\.\.100"):
        w.percentile(101.0, now=500.0)


def test_clear_forgets_a_series() -> None:
    w = TimeWindow(n_series=2, capacity=4, window_s=10.0)
    w.add([0, 1], [1.0, 1.0], [5.0, 6.0])
    w.clear(0)
    assert list(w.stats(now=2.0).count) == [0, 1]
    assert math.isnan(w.last()[0][0])
