"""Pure parts of the console: language negotiation, the bounded history, tile states."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from monitor.console import History, service_state
from monitor.console.i18n import CATALOGUE, LANGUAGES, messages, negotiate


def test_catalogue_is_complete_in_both_languages() -> None:
    for key, texts in CATALOGUE.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts.values()), key
    assert messages("zh")["services"] == "播出业务"
    assert messages("xx")["services"] == "Services"


def test_negotiate_order() -> None:
    assert negotiate(None, None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert negotiate(None, None, "en-GB,zh;q=0.5") == "en"
    assert negotiate(None, None, "fr, zh;q=0.3") == "zh"
    assert negotiate("en", "zh", "zh-CN") == "en"
    assert negotiate(None, "zh", "en") == "zh"
    assert negotiate("bogus", None, None) == "en"
    assert negotiate(None, None, "zh;q=abc, en;q=0.1") == "en"


@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=5)))
def test_negotiate_never_fails(header: str, query: str | None) -> None:
    assert negotiate(query, None, header) in LANGUAGES


@given(st.lists(st.floats(min_value=0, max_value=10_000), max_size=400))
def test_history_is_bounded_and_spaced(times: list[float]) -> None:
    h = History(span=60.0, step=5.0)
    for t in sorted(times):
        h.record("fm", "rf", t, 1.0)
    pts = h.json().get("fm", {}).get("rf", [])
    assert len(pts) <= h.maxlen == 12
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pts)]
    assert all(g >= 5.0 - 0.1 for g in gaps)


def test_history_forgets_removed_targets() -> None:
    h = History()
    h.record("a", "rf", 0.0, 1.0)
    h.record("b", "rf", 0.0, None)
    h.forget({"b"})
    assert list(h.json()) == ["b"]


def test_state_without_alerts() -> None:
    assert service_state([], in_maintenance=False, has_data=True) == "on_air"
    assert service_state([], in_maintenance=False, has_data=False) == "no_data"
    assert service_state([], in_maintenance=True, has_data=False) == "maintenance"


def test_alertmanager_language() -> None:
    from monitor.evaluation import localized

    ann = {"summary": "Carrier lost", "summary_zh": "载波丢失", "description": "RF low"}
    assert localized(ann, "en") == {"summary": "Carrier lost", "description": "RF low"}
    assert localized(ann, "zh") == {"summary": "载波丢失", "description": "RF low"}
