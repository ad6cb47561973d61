"""Migration plans: channel plan arithmetic, validation, overlaps and every phase transition."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.settings import ds_channel_centre_mhz, ds_channel_lower_edge_mhz
from probes.migration import (
    VACATED_BAND_MHZ,
    Expectation,
    MigrationKind,
    MigrationPlan,
    Phase,
    channel_span_mhz,
    expectation,
    fm_frequency_problem,
    is_vacated_channel,
    phase,
    phase_array,
    phases,
    seconds_to_cutover,
    seconds_to_cutover_array,
    vacated_channels,
    validate_plan,
    validate_plans,
)

DAY = 86400.0
START = 1_717_200_000.0  # 2024-06-01T00:00:00Z
CUT = START + 30 * DAY


def dtv(
    name: str = "mig-cctv1",
    old: int = 38,
    new: int | None = 30,
    *,
    service: str = "CCTV-1",
    start: float = START,
    cut: float = CUT,
    **kw: object,
) -> MigrationPlan:
    return MigrationPlan(
        name=name,
        service=service,
        kind=MigrationKind.DTV,
        simulcast_start=start,
        cutover=cut,
        old_channel=old,
        new_channel=new,
        **kw,
    )  # type: ignore[arg-type]


def fm(
    name: str = "mig-news",
    old: float = 97.5,
    new: float = 101.1,
    *,
    service: str = "News",
    start: float = START,
    cut: float = CUT,
    **kw: object,
) -> MigrationPlan:
    return MigrationPlan(
        name=name,
        service=service,
        kind=MigrationKind.FM,
        simulcast_start=start,
        cutover=cut,
        old_frequency_mhz=old,
        new_frequency_mhz=new,
        **kw,
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- channel plan


@pytest.mark.parametrize(
    ("channel", "lower"),
    [(13, 470.0), (24, 558.0), (25, 606.0), (36, 694.0), (37, 702.0), (48, 790.0)],
)
def test_ds_channel_edges(channel: int, lower: float) -> None:
    assert channel_span_mhz(channel) == (lower, lower + 8.0)
    assert ds_channel_lower_edge_mhz(channel) == lower
    assert ds_channel_centre_mhz(channel) == lower + 4.0


def test_no_channel_between_566_and_606_mhz() -> None:
    spans = [channel_span_mhz(n) for n in range(13, 49)]
    assert all(not (lo < 606.0 and hi > 566.0) for lo, hi in spans)
    with pytest.raises(ValueError, match="outside"):
        channel_span_mhz(12)
    with pytest.raises(ValueError, match="outside"):
        channel_span_mhz(49)


def test_vacated_channels_are_ds37_to_ds48_by_the_plan() -> None:
    assert vacated_channels() == tuple(range(37, 49))
    assert not is_vacated_channel(36)  # 694–702 MHz only touches the band edge
    assert is_vacated_channel(37)
    lo, hi = VACATED_BAND_MHZ
    assert channel_span_mhz(37)[0] == lo and channel_span_mhz(48)[1] == hi


@pytest.mark.parametrize(
    ("mhz", "problem"),
    [
        (87.0, None),
        (108.0, None),
        (97.5, None),
        (101.1, None),
        (86.9, "outside the FM band"),
        (108.1, "outside the FM band"),
        (97.55, "off the 0.1 MHz raster"),
        (float("nan"), "not a frequency"),
    ],
)
def test_fm_frequency_checks(mhz: float, problem: str | None) -> None:
    why = fm_frequency_problem(mhz)
    if problem is None:
        assert why is None
    else:
        assert why is not None and problem in why


def test_labels() -> None:
    assert dtv().label("old") == "DS-38 (714 MHz)"
    assert dtv().label("new") == "DS-30 (650 MHz)"
    assert fm().label("new") == "101.1 MHz"
    with pytest.raises(ValueError, match="old"):
        fm().label("other")


# --------------------------------------------------------------------------- phases


def test_every_phase_transition() -> None:
    plan = dtv()
    assert phase(plan, START - 1.0) is Phase.BEFORE
    assert phase(plan, START) is Phase.SIMULCAST  # the simulcast starts at its start time
    assert phase(plan, CUT - 0.001) is Phase.SIMULCAST
    assert phase(plan, CUT) is Phase.AFTER  # the old channel must be off from the cutover on
    assert phase(plan, CUT + 10 * DAY) is Phase.AFTER
    assert [int(p) for p in (Phase.BEFORE, Phase.SIMULCAST, Phase.AFTER)] == [0, 1, 2]


def test_hard_cut_without_simulcast_goes_straight_to_after() -> None:
    plan = fm(start=CUT, cut=CUT)
    assert validate_plan(plan) == []
    assert phase(plan, CUT - 1.0) is Phase.BEFORE
    assert phase(plan, CUT) is Phase.AFTER


def test_seconds_to_cutover_counts_down_then_goes_negative() -> None:
    plan = dtv()
    assert seconds_to_cutover(plan, CUT - 90.0) == 90.0
    assert seconds_to_cutover(plan, CUT + 5.0) == -5.0


def test_phases_vectorized_match_the_scalar_function() -> None:
    rng = np.random.default_rng(3)
    starts = START + rng.uniform(0, 10 * DAY, 500)
    cuts = starts + rng.choice([0.0, DAY, 5 * DAY], 500)
    plans = [dtv(f"p{i}", start=s, cut=c) for i, (s, c) in enumerate(zip(starts, cuts, strict=True))]
    for now in (START - 1, START + 3 * DAY, START + 7 * DAY, START + 20 * DAY, float(cuts[17])):
        expected = [int(phase(p, now)) for p in plans]
        assert phases(plans, now).tolist() == expected
        assert phase_array(starts, cuts, now).dtype == np.int8
        np.testing.assert_array_equal(seconds_to_cutover_array(cuts, now), cuts - now)


@given(st.floats(-1e10, 1e10), st.floats(0, 1e8), st.floats(-1e10, 1e10))
def test_phase_is_monotonic_in_time(start: float, length: float, now: float) -> None:
    plan = fm(start=start, cut=start + length)
    assert phase(plan, now) <= phase(plan, now + 1.0)
    assert int(phase_array([start], [start + length], now)[0]) == int(phase(plan, now))


def test_expectations_per_phase() -> None:
    assert expectation(Phase.BEFORE) == (Expectation.ON, Expectation.ANY)
    assert expectation(Phase.SIMULCAST) == (Expectation.ON, Expectation.ON)
    assert expectation(Phase.AFTER) == (Expectation.OFF, Expectation.ON)


# --------------------------------------------------------------------------- validation of one plan


def test_valid_plans_have_no_problems() -> None:
    assert validate_plan(dtv(service_id=1001, ts_id=1)) == []
    assert validate_plan(fm(rds_pi="C201")) == []
    assert validate_plans([dtv(), fm(), dtv("mig-cctv2", 39, 31, service="CCTV-2")]) == []


@pytest.mark.parametrize("new", range(37, 49))
def test_new_dtv_channel_in_the_vacated_band_is_an_error(new: int) -> None:
    problems = validate_plan(dtv(old=21, new=new))
    assert len(problems) == 1
    assert problems[0].startswith(f"new_channel: DS-{new} (")
    assert "702–798 MHz" in problems[0]


def test_new_dtv_channel_just_below_the_band_is_fine() -> None:
    assert validate_plan(dtv(old=40, new=36)) == []


@pytest.mark.parametrize(
    ("plan", "field", "text"),
    [
        (dtv(old=12), "old_channel", "outside the UHF plan"),
        (dtv(new=49), "new_channel", "outside the UHF plan"),
        (dtv(old=30, new=30), "new_channel", "same as old_channel"),
        (dtv(new=None), "new_channel", "required"),
        (dtv(service_id=70000), "service_id", "0…65535"),
        (dtv(ts_id=-1), "ts_id", "0…65535"),
        (dtv(rds_pi="C201"), "rds_pi", "not rds_pi"),
        (fm(old=86.0), "old_frequency_mhz", "outside the FM band"),
        (fm(new=108.5), "new_frequency_mhz", "outside the FM band"),
        (fm(new=101.15), "new_frequency_mhz", "off the 0.1 MHz raster"),
        (fm(old=97.5, new=97.5), "new_frequency_mhz", "same as old_frequency_mhz"),
        (fm(rds_pi="XYZ1"), "rds_pi", "four hex digits"),
        (fm(service_id=3), "service_id", "not service_id"),
        (fm(start=CUT + 1, cut=CUT), "simulcast_start", "after the cutover"),
        (fm(cut=float("inf")), "cutover", "not a time"),
        (fm(service=""), "service", "must not be empty"),
        (fm(name=""), "name", "must not be empty"),
    ],
)
def test_plan_problems_name_the_field(plan: MigrationPlan, field: str, text: str) -> None:
    problems = validate_plan(plan)
    assert any(p.startswith(f"{field}: ") and text in p for p in problems), problems


def test_unknown_kind() -> None:
    plan = dataclasses.replace(fm(), kind="am")  # type: ignore[arg-type]
    assert validate_plan(plan) == ["kind: 'am' is not 'fm' or 'dtv'"]


def test_simulcast_after_cutover_names_both_times() -> None:
    (problem,) = validate_plan(fm(start=CUT + DAY, cut=CUT))
    assert problem == "simulcast_start: 2024-07-02T00:00:00Z is after the cutover 2024-07-01T00:00:00Z"


# --------------------------------------------------------------------------- overlaps between plans


def test_problems_are_prefixed_with_the_plan_index() -> None:
    problems = validate_plans([fm(), dtv(new=40)], key="migrations")
    assert problems == [
        "migrations[1].new_channel: DS-40 (726–734 MHz) lies in the 700 MHz band being vacated "
        "(702–798 MHz); choose a channel below 702 MHz"
    ]


def test_same_old_channel_in_two_plans_overlaps() -> None:
    problems = validate_plans([dtv("a", 38, 30, service="A"), dtv("b", 38, 31, service="B")])
    assert problems == ["migrations[1].old_channel: DS-38 is also the old channel of migrations[0] (a)"]


def test_same_new_channel_in_two_plans_overlaps_whatever_the_dates() -> None:
    a = dtv("a", 38, 30, service="A")
    b = dtv("b", 39, 30, service="B", start=CUT + 100 * DAY, cut=CUT + 130 * DAY)
    assert validate_plans([a, b]) == [
        "migrations[1].new_channel: DS-30 is also the new channel of migrations[0] (a)"
    ]


def test_new_channel_taken_over_before_the_other_service_left_it_overlaps() -> None:
    # B vacates DS-30 at CUT; A moves onto DS-30 from START (< CUT): both on DS-30 meanwhile.
    a = dtv("a", 38, 30, service="A")
    b = dtv("b", 30, 22, service="B")
    (problem,) = validate_plans([a, b])
    assert problem.startswith("migrations[1].old_channel: DS-30 is also the new channel of migrations[0] (a)")
    assert "2024-06-01T00:00:00Z" in problem


def test_chain_of_moves_after_the_channel_is_free_is_fine() -> None:
    b = dtv("b", 30, 22, service="B", cut=START)
    a = dtv("a", 38, 30, service="A", start=START, cut=CUT)  # simulcast starts as B leaves DS-30
    assert validate_plans([b, a]) == []


def test_fm_frequencies_overlap_on_the_raster() -> None:
    a = fm("a", 97.5, 101.1, service="A")
    b = fm("b", 99.0, 101.1 + 1e-9, service="B")
    assert validate_plans([a, b]) == [
        "migrations[1].new_frequency_mhz: 101.1 MHz is also the new frequency of migrations[0] (a)"
    ]


def test_dtv_and_fm_never_collide() -> None:
    assert validate_plans([dtv("a", 38, 30), fm("b", 97.5, 101.1)]) == []


def test_one_service_moving_twice_must_do_it_in_sequence() -> None:
    first = dtv("a1", 38, 30)
    then = dtv("a2", 30, 22, start=CUT + DAY, cut=CUT + 10 * DAY)
    assert validate_plans([first, then]) == []
    overlapping = dtv("a2", 30, 22, start=CUT - DAY, cut=CUT + 10 * DAY)
    (problem,) = validate_plans([first, overlapping])
    assert problem.startswith(
        "migrations[1].simulcast_start: 'CCTV-1' is already being moved by migrations[0]"
    )


def test_duplicate_names() -> None:
    problems = validate_plans([dtv("x", 38, 30, service="A"), fm("x")])
    assert problems == ["migrations[1].name: 'x' is already the name of migrations[0]"]


def test_invalid_plans_are_left_out_of_the_overlap_check() -> None:
    bad = dtv("a", 38, 40, service="A")  # new channel vacated
    other = dtv("b", 39, 40, service="B")  # same (invalid) new channel
    problems = validate_plans([bad, other])
    assert len(problems) == 2
    assert all("lies in the 700 MHz band" in p for p in problems)
