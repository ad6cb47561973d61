"""Emergency-broadcast fleet: heartbeats, faults, per-region online ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.eb import Fleet

NOW = 1_700_000_000.0


def small_fleet() -> Fleet:
    # Region 0: endpoints 0-3, region 1: 4-5, region 2: none, region 3: 6.
    return Fleet([0, 0, 0, 0, 1, 1, 3], n_regions=4)


def test_online_ratio_per_region() -> None:
    fleet = small_fleet()
    fleet.heartbeat([0, 1, 2], NOW - 10.0)
    fleet.heartbeat(3, NOW - 400.0)  # too old
    fleet.heartbeat([4, 5], [NOW - 299.0, NOW - 301.0])
    status = fleet.evaluate(NOW, offline_after=300.0)
    assert list(status.total) == [4, 2, 0, 1]
    assert list(status.online) == [3, 1, 0, 0]  # endpoint 6 never heard
    assert list(status.offline) == [1, 1, 0, 1]
    np.testing.assert_allclose(status.online_ratio[[0, 1, 3]], [0.75, 0.5, 0.0])
    assert math.isnan(status.online_ratio[2])  # no endpoints: no ratio
    assert list(status.offline_indices(0)) == [3]
    assert list(status.offline_indices()) == [3, 5, 6]


def test_faults_count_only_for_online_endpoints() -> None:
    fleet = small_fleet()
    fleet.heartbeat(range(6), NOW)
    fleet.set_faults([1, 2, 4, 6], [0b01, 0b10, 0b11, 0b01])  # 6 is offline
    status = fleet.evaluate(NOW, offline_after=60.0)
    assert list(status.faulty) == [2, 1, 0, 0]
    assert list(status.faulty_indices(0)) == [1, 2]
    assert list(status.faulty_indices()) == [1, 2, 4]
    speaker_line_only = fleet.evaluate(NOW, offline_after=60.0, fault_mask=0b10)
    assert list(speaker_line_only.faulty) == [1, 1, 0, 0]
    fleet.set_faults(2, 0)  # cleared
    assert list(fleet.evaluate(NOW, offline_after=60.0).faulty_indices(0)) == [1]


def test_heartbeats_never_move_backwards_and_duplicates_keep_the_newest() -> None:
    fleet = small_fleet()
    fleet.heartbeat([0, 0, 0], [NOW - 5.0, NOW - 1.0, NOW - 3.0])
    assert fleet.last_heartbeat[0] == NOW - 1.0
    fleet.heartbeat(0, NOW - 100.0)  # late, out-of-order delivery
    assert fleet.last_heartbeat[0] == NOW - 1.0
    fleet.heartbeat(0, np.nan)
    assert fleet.last_heartbeat[0] == NOW - 1.0
    assert np.isnan(fleet.last_heartbeat[1:]).all()


def test_future_heartbeats_count_as_fresh() -> None:
    fleet = small_fleet()
    fleet.heartbeat(0, NOW + 30.0)  # endpoint clock ahead
    assert fleet.evaluate(NOW, offline_after=60.0).online_mask[0]


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Fleet([0, 1, 2], n_regions=2)
    with pytest.raises(ValueError, match="integers"):
        Fleet([0.5, 1.0])
    fleet = small_fleet()
    with pytest.raises(ValueError, match="out of range"):
        fleet.heartbeat([7], NOW)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        fleet.set_faults(0, -1)
    with pytest.raises(ValueError, match="region index"):
        fleet.evaluate(NOW, 60.0).offline_indices(4)
    with pytest.raises(ValueError, match="offline_after"):
        fleet.evaluate(NOW, -1.0)


def test_large_fleet_matches_a_per_region_reference() -> None:
    rng = np.random.default_rng(0)
    n, regions = 100_000, 137
    region = rng.integers(0, regions, n)
    fleet = Fleet(region, n_regions=regions)
    heard = rng.random(n) < 0.9
    ages = rng.uniform(0.0, 900.0, n)
    fleet.heartbeat(np.flatnonzero(heard), NOW - ages[heard])
    faults = np.where(rng.random(n) < 0.02, rng.integers(1, 16, n), 0)
    fleet.set_faults(np.arange(n), faults)
    status = fleet.evaluate(NOW, offline_after=600.0)
    online = heard & (ages <= 600.0)
    for r in (0, 1, 50, 136):
        in_r = region == r
        assert status.total[r] == in_r.sum()
        assert status.online[r] == (online & in_r).sum()
        assert status.online_ratio[r] == pytest.approx((online & in_r).sum() / in_r.sum())
        assert status.faulty[r] == (online & in_r & (faults != 0)).sum()
        np.testing.assert_array_equal(status.offline_indices(r), np.flatnonzero(in_r & ~online))
    assert status.online.sum() == online.sum()


def test_never_heard_is_not_yet_reported_until_due() -> None:
    fleet = Fleet([0, 0, 0, 1])
    fleet.heartbeat([0, 3], NOW)
    fleet.heartbeat([1], NOW - 500)  # heard once, long ago: offline
    early = fleet.evaluate(NOW, 60.0, started=NOW - 10)
    assert list(early.online) == [1, 1]
    assert list(early.unreported) == [1, 0] and list(early.unreported_indices()) == [2]
    assert list(early.offline) == [1, 0] and list(early.offline_indices()) == [1]
    due = fleet.evaluate(NOW, 60.0, started=NOW - 61)
    assert list(due.unreported) == [0, 0] and list(due.offline_indices()) == [1, 2]
    assert list(fleet.evaluate(NOW, 60.0).offline_indices()) == [1, 2]  # no start given: long ago


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 400),
    regions=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_indices_per_region_match_the_mask_of_each_region(n: int, regions: int, seed: int) -> None:
    """The indices are grouped by region in one pass; the same as masking region by region."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, regions, n)
    fleet = Fleet(region, n_regions=regions)
    heard = rng.random(n) < 0.7
    fleet.heartbeat(np.flatnonzero(heard), NOW - rng.uniform(0.0, 600.0, int(heard.sum())))
    faulty = np.flatnonzero(rng.random(n) < 0.2)
    fleet.set_faults(faulty, rng.integers(1, 4, faulty.shape[0]))
    status = fleet.evaluate(NOW, offline_after=300.0, started=NOW - rng.choice([10.0, 1000.0]))
    masks = {
        "offline": ~status.online_mask & ~status.unreported_mask,
        "unreported": status.unreported_mask,
        "faulty": status.faulty_mask,
    }
    for r in rng.permutation(regions):  # any order of asking
        for kind, mask in masks.items():
            got = getattr(status, f"{kind}_indices")(int(r))
            np.testing.assert_array_equal(got, np.flatnonzero(mask & (region == r)))
    for kind, mask in masks.items():
        np.testing.assert_array_equal(getattr(status, f"{kind}_indices")(), np.flatnonzero(mask))
