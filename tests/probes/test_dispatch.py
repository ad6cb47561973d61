"""Dispatch coverage: targeted-and-online endpoints, confirmations, deadlines, latency, eviction."""

from __future__ import annotations

import numpy as np
import pytest

from probes.dispatch import DispatchTracker, dispatch_measurements, ids_by_region, truncated_ids
from probes.eb import Fleet

T = 1_717_200_000.0
OFFLINE_AFTER = 180.0


def fleet() -> Fleet:
    # Region 0: endpoints 0-4, region 1: 5-7, region 2: 8-9.
    f = Fleet([0, 0, 0, 0, 0, 1, 1, 1, 2, 2], n_regions=3)
    f.heartbeat([0, 1, 2, 3, 5, 6, 8, 9], T - 30.0)
    f.heartbeat([4, 7], T - 600.0)  # endpoints 4 and 7 are offline at dispatch time
    return f


def test_targets_only_online_endpoints_of_the_target_regions() -> None:
    tracker = DispatchTracker()
    assert tracker.dispatch("m1", [0, 1], T, fleet(), OFFLINE_AFTER) == 6  # 0-3, 5, 6
    report = tracker.report("m1", T)
    assert report.targeted == 6
    assert report.missing.tolist() == [0, 1, 2, 3, 5, 6]
    assert report.coverage == (0.0, 0.0, 0.0)
    assert report.passed == (False, False, False)
    assert report.latency_p50_s is None and report.latency_max_s is None


def test_coverage_per_deadline_and_latency_distribution() -> None:
    tracker = DispatchTracker(deadlines=[60, 120, 300])
    tracker.dispatch("m1", [0, 1], T, fleet(), OFFLINE_AFTER)
    assert tracker.confirm("m1", [0, 1], T + 10.0) == 2
    assert tracker.confirm("m1", 2, T + 90.0) == 1
    assert tracker.confirm("m1", [3], T + 200.0) == 1
    assert tracker.confirm("m1", [5], T + 400.0) == 1  # late
    report = tracker.report("m1", T + 500.0)
    assert report.confirmed_within == (2, 3, 4)
    assert report.coverage == pytest.approx((2 / 6, 3 / 6, 4 / 6))
    assert report.confirmed == 5
    assert report.late == 1
    assert report.missing.tolist() == [5, 6]  # 5 confirmed after the last deadline
    assert report.latency_p50_s == pytest.approx(90.0)
    assert report.latency_p90_s == pytest.approx(np.percentile([10, 10, 90, 200, 400], 90))
    assert report.latency_max_s == pytest.approx(400.0)
    assert report.past_deadline
    assert report.final_coverage == pytest.approx(4 / 6)


def test_deadlines_pass_one_by_one() -> None:
    tracker = DispatchTracker(deadlines=[60, 120, 300])
    tracker.dispatch("m1", [2], T, fleet(), OFFLINE_AFTER)
    assert tracker.report("m1", T + 59.9).passed == (False, False, False)
    assert tracker.report("m1", T + 60.0).passed == (True, False, False)
    assert tracker.report("m1", T + 120.0).passed == (True, True, False)
    assert not tracker.report("m1", T + 299.0).past_deadline
    assert tracker.report("m1", T + 300.0).past_deadline


def test_earliest_confirmation_wins_and_duplicates_count_once() -> None:
    tracker = DispatchTracker()
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER)
    assert tracker.confirm("m1", [1, 1, 1], [T + 50.0, T + 20.0, T + 70.0]) == 1
    assert tracker.confirm("m1", [1], T + 5.0) == 0  # already confirmed: not new, but earlier
    report = tracker.report("m1", T + 400.0)
    assert report.confirmed == 1
    assert report.latency_max_s == pytest.approx(5.0)


def test_untargeted_and_unknown_confirmations_are_counted_apart() -> None:
    tracker = DispatchTracker()
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER)
    assert tracker.confirm("m1", [4, 8, 0], T + 1.0) == 1  # 4 offline at dispatch, 8 other region
    assert tracker.confirm("other", [0, 1], T + 1.0) == 0
    report = tracker.report("m1", T + 1.0)
    assert report.untargeted_confirmations == 2
    assert report.confirmed == 1
    assert tracker.unknown_confirmations == 2


def test_confirmation_before_the_dispatch_time_has_latency_zero() -> None:
    tracker = DispatchTracker()
    tracker.dispatch("m1", [2], T, fleet(), OFFLINE_AFTER)
    tracker.confirm("m1", [8, 9], [T - 3.0, T + 4.0])  # endpoint clock 3 s behind
    report = tracker.report("m1", T + 10.0)
    assert report.latency_p50_s == pytest.approx(2.0)
    assert report.confirmed_within[0] == 2


def test_under_delivered_only_once_past_the_last_deadline() -> None:
    tracker = DispatchTracker(deadlines=[60, 300])
    tracker.dispatch("low", [0], T, fleet(), OFFLINE_AFTER)
    tracker.dispatch("good", [1], T, fleet(), OFFLINE_AFTER)
    tracker.dispatch("later", [0], T + 100.0, fleet(), OFFLINE_AFTER + 100.0)
    tracker.confirm("low", [0], T + 5.0)
    tracker.confirm("good", [5, 6], T + 5.0)
    assert tracker.under_delivered(T + 299.0, 0.9) == []
    assert [r.message_id for r in tracker.under_delivered(T + 300.0, 0.9)] == ["low"]
    assert [r.message_id for r in tracker.under_delivered(T + 400.0, 0.9)] == ["low", "later"]
    assert [r.message_id for r in tracker.under_delivered(T + 400.0, 0.2)] == ["later"]


def test_dispatch_with_no_online_endpoint_has_unknown_coverage() -> None:
    f = fleet()
    f.last_heartbeat[:] = np.nan
    tracker = DispatchTracker()
    assert tracker.dispatch("m1", [0, 1, 2], T, f, OFFLINE_AFTER) == 0
    report = tracker.report("m1", T + 1000.0)
    assert report.coverage == (None, None, None)
    assert not report.under_delivered(0.9)


def test_target_whole_counties_through_another_region_array() -> None:
    county = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])  # regions 0 and 1 form county 0
    tracker = DispatchTracker()
    assert tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER, region_of=county) == 6
    with pytest.raises(ValueError, match="one entry per endpoint"):
        tracker.dispatch("m2", [0], T, fleet(), OFFLINE_AFTER, region_of=county[:5])


def test_a_repeated_announcement_is_ignored() -> None:
    tracker = DispatchTracker()
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER)
    tracker.confirm("m1", [0], T + 1.0)
    assert tracker.dispatch("m1", [0, 1, 2], T + 50.0, fleet(), OFFLINE_AFTER) == 4
    assert tracker.duplicate_dispatches == 1
    assert tracker.report("m1", T + 2.0).confirmed == 1


def test_per_dispatch_deadlines() -> None:
    tracker = DispatchTracker()
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER, deadlines=[30])
    assert tracker.report("m1", T + 30.0).past_deadline
    with pytest.raises(ValueError, match="increasing"):
        tracker.dispatch("m2", [0], T, fleet(), OFFLINE_AFTER, deadlines=[60, 30])
    with pytest.raises(ValueError, match="at least one"):
        DispatchTracker(deadlines=[])
    with pytest.raises(ValueError, match="> 0"):
        DispatchTracker(deadlines=[0, 10])


def test_old_dispatches_are_evicted_after_the_retention() -> None:
    tracker = DispatchTracker(deadlines=[60], retention_s=600.0)
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER)
    tracker.dispatch("m2", [1], T + 500.0, fleet(), OFFLINE_AFTER + 500.0)
    assert len(tracker) == 2 and tracker.entries == 6
    assert tracker.evict(T + 660.0) == []
    assert tracker.evict(T + 661.0) == ["m1"]
    assert [r.message_id for r in tracker.reports(T + 2000.0)] == []
    assert tracker.entries == 0
    assert tracker.confirm("m1", [0], T + 700.0) == 0
    assert tracker.unknown_confirmations == 1


def test_memory_is_bounded_by_dispatch_count_and_entries() -> None:
    tracker = DispatchTracker(max_dispatches=3, max_entries=10)
    for i in range(5):
        tracker.dispatch(f"m{i}", [0], T + i, fleet(), OFFLINE_AFTER)  # 4 endpoints each
    assert tracker.message_ids == ["m3", "m4"]  # 12 entries > 10 after m2 arrived, and so on
    assert tracker.entries == 8
    assert tracker.evicted_early == 3
    big = DispatchTracker(max_entries=2)
    big.dispatch("all", [0, 1, 2], T, fleet(), OFFLINE_AFTER)  # alone above the limit: kept
    assert "all" in big


def test_report_is_cached_until_something_changes() -> None:
    tracker = DispatchTracker(deadlines=[60])
    tracker.dispatch("m1", [0], T, fleet(), OFFLINE_AFTER)
    first = tracker.report("m1", T + 1.0)
    assert tracker.report("m1", T + 2.0) is first
    tracker.confirm("m1", [0], T + 3.0)
    second = tracker.report("m1", T + 4.0)
    assert second is not first and second.confirmed == 1
    assert tracker.report("m1", T + 61.0).past_deadline


def test_large_fleet_arithmetic() -> None:
    n = 100_000
    rng = np.random.default_rng(5)
    f = Fleet(rng.integers(0, 200, n), n_regions=200)
    f.heartbeat(np.arange(n), T - rng.uniform(0, 300, n))
    tracker = DispatchTracker(deadlines=[60, 120, 300])
    targeted = tracker.dispatch("all", np.arange(200), T, f, 180.0)
    online = int((f.last_heartbeat >= T - 180.0).sum())
    assert targeted == online
    confirmers = rng.choice(n, 80_000, replace=False)
    latency = rng.exponential(40.0, confirmers.size)
    tracker.confirm("all", confirmers, T + latency)
    report = tracker.report("all", T + 301.0)
    is_online = f.last_heartbeat[confirmers] >= T - 180.0
    for d, within in zip((60, 120, 300), report.confirmed_within, strict=True):
        assert within == int((is_online & (latency <= d)).sum())
    assert report.untargeted_confirmations == int((~is_online).sum())
    assert report.missing.size == targeted - report.confirmed_within[-1]


def test_measurements_for_the_rules() -> None:
    tracker = DispatchTracker(deadlines=[60])
    tracker.dispatch("m1", [0, 1], T, fleet(), OFFLINE_AFTER)
    tracker.confirm("m1", [0, 1, 2], T + 10.0)
    ids = [f"ep-{i:02d}" for i in range(10)]
    m = dispatch_measurements(tracker.report("m1", T + 61.0), ids, max_ids=2)
    assert m["dispatch_coverage"] == pytest.approx(0.5)
    assert m["dispatch_targeted"] == 6.0
    assert m["dispatch_confirmed"] == 3.0
    assert m["dispatch_past_deadline"] == 1.0
    assert m["dispatch_missing_ids"] == "ep-03, ep-05, … (+1 more)"
    assert m["dispatch_latency_p50_seconds"] == pytest.approx(10.0)


def test_truncated_ids() -> None:
    assert truncated_ids(["a", "b"], 5) == "a, b"
    assert truncated_ids(["a", "b", "c"], 2) == "a, b, … (+1 more)"
    assert truncated_ids(["a"], 5, total=4) == "a, … (+3 more)"
    assert truncated_ids(["a", "b"], 0) == "2 endpoints"
    assert truncated_ids([], 5) == ""


def test_ids_by_region() -> None:
    region = np.array([2, 0, 2, 1, 2, 0, 2])
    ids = [f"ep-{i}" for i in range(7)]
    assert ids_by_region([6, 0, 1, 2, 4], region, 4, ids, limit=2) == [
        "ep-1",
        "",
        "ep-6, ep-0, … (+2 more)",
        "",
    ]
    assert ids_by_region(np.array([], dtype=np.intp), region, 3, ids) == ["", "", ""]
