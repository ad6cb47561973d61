"""Shared probe helpers: decibels, block continuity, debouncing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes._util import (
    DB_FLOOR,
    BlockContinuity,
    Debouncer,
    DetectionState,
    amplitude_db,
    power_db,
)


def test_decibels_with_floor_and_nan() -> None:
    np.testing.assert_allclose(power_db([1.0, 0.5, 1e-3]), [0.0, -3.0103, -30.0], atol=1e-4)
    np.testing.assert_allclose(amplitude_db([1.0, -0.5, 1e-3]), [0.0, -6.0206, -60.0], atol=1e-4)
    assert list(power_db([0.0, -1.0])) == [DB_FLOOR, DB_FLOOR]
    assert float(amplitude_db(0.0, floor_db=-90.0)) == -90.0
    assert math.isnan(float(power_db(math.nan)))


def test_continuity_tolerates_jitter_but_not_gaps_or_rate_changes() -> None:
    c = BlockContinuity(tolerance=0.01)
    assert not c.advance(100.0, 4800, 48000)  # first block
    assert c.expected == pytest.approx(100.1)
    assert c.advance(100.105, 4800, 48000)  # 5 ms late: jitter
    assert c.expected == pytest.approx(100.205)  # re-anchored on the block's own stamp
    assert not c.advance(100.3, 4800, 48000)  # 95 ms late: gap
    assert not c.advance(100.3, 4410, 44100)  # rate change
    c.reset()
    assert not c.advance(100.4, 4410, 44100)
    with pytest.raises(ValueError, match="finite"):
        c.advance(math.nan, 1, 48000)
    with pytest.raises(ValueError, match="tolerance"):
        BlockContinuity(-1.0)


def test_debouncer_on_off_and_reset() -> None:
    d = Debouncer(on_s=3.0, off_s=2.0)
    assert d.update(0.0, 1.0, True).state is DetectionState.UNKNOWN
    assert d.update(1.0, 2.0, True).state is DetectionState.UNKNOWN
    v = d.update(2.0, 3.0, True)
    assert (v.state, v.since) == (DetectionState.ACTIVE, 0.0)
    assert d.update(3.0, 4.0, False).state is DetectionState.ACTIVE  # 1 s < off_s
    assert d.update(4.0, 5.0, True).state is DetectionState.ACTIVE
    d.update(5.0, 6.0, False)
    v = d.update(6.0, 7.0, False)
    assert (v.state, v.since) == (DetectionState.CLEAR, 5.0)
    d.reset()
    assert d.current.state is DetectionState.UNKNOWN
    assert d.current.since is None


def test_debouncer_restart_begins_a_new_run() -> None:
    d = Debouncer(on_s=2.0, off_s=1.0)
    d.update(0.0, 1.0, True)
    assert d.update(1.0, 2.0, True, restart=True).state is DetectionState.UNKNOWN
    v = d.update(2.0, 3.0, True)
    assert (v.state, v.since) == (DetectionState.ACTIVE, 1.0)
    # from UNKNOWN, off_s of the condition being false proves it absent
    d2 = Debouncer(on_s=2.0, off_s=1.0)
    assert d2.update(0.0, 1.0, False).state is DetectionState.CLEAR
