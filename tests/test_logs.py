"""Logging setup: JSON lines for journald, stdlib records through the same chain, rate limits."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.logs import RateLimiter, configure_logging


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    # Only ours: pytest's own capture handlers come and go on the root logger too.
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def _configured(level: str = "info", **limiter: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, "json", stream, rate_limiter=RateLimiter(**limiter))
    return stream


# --- rendering -----------------------------------------------------------------------------


def test_json_is_one_object_per_line() -> None:
    stream = _configured()
    log = structlog.get_logger("monitor.test")
    log.info("started", targets=3, station="桂林")
    log.warning("broker_unreachable", url="mqtt://broker:1883")
    records = _json_lines(stream)
    assert len(records) == 2
    first = records[0]
    assert first["event"] == "started"
    assert first["level"] == "info"
    assert first["logger"] == "monitor.test"
    assert first["targets"] == 3
    assert first["station"] == "桂林"
    assert first["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert "T" in first["timestamp"]
    assert records[1]["level"] == "warning"


def test_stdlib_records_share_the_rendering() -> None:
    stream = _configured()
    logging.getLogger("paho.mqtt.client").warning("Connection to %s failed", "broker")
    logging.getLogger("aiohttp.access").info("GET /metrics 200")
    paho, aiohttp = _json_lines(stream)
    assert paho["event"] == "Connection to broker failed"
    assert paho["level"] == "warning"
    assert paho["logger"] == "paho.mqtt.client"
    assert paho["timestamp"].endswith("Z")
    assert aiohttp["logger"] == "aiohttp.access"
    assert "_record" not in paho
    assert "_from_structlog" not in paho


def test_stdlib_extra_fields_are_kept() -> None:
    stream = _configured()
    logging.getLogger("aiomqtt").warning("lost", extra={"topic": "anbo/x/y/z"})
    (record,) = _json_lines(stream)
    assert record["topic"] == "anbo/x/y/z"


def test_exceptions_render_as_structured_tracebacks() -> None:
    stream = _configured()
    log = structlog.get_logger("monitor.test")
    try:
        raise ValueError("bad frame")
    except ValueError:
        log.exception("decode_failed")
        logging.getLogger("aiomqtt").exception("callback failed")
    ours, theirs = _json_lines(stream)
    for record in (ours, theirs):
        assert record["level"] == "error"
        (exc,) = record["exception"]
        assert exc["exc_type"] == "ValueError"
        assert exc["exc_value"] == "bad frame"
        assert exc["frames"]


def test_level_filters_both_worlds() -> None:
    stream = _configured(level="warning")
    structlog.get_logger("monitor.test").info("hidden")
    logging.getLogger("paho.mqtt.client").info("hidden too")
    structlog.get_logger("monitor.test").error("shown")
    assert [r["event"] for r in _json_lines(stream)] == ["shown"]


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="loud"):
        configure_logging("loud", "json", io.StringIO())


def test_auto_is_json_when_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(fmt="auto", stream=stream)
    structlog.get_logger().info("hello")
    assert _json_lines(stream)[0]["event"] == "hello"


def test_auto_is_console_on_a_tty() -> None:
    stream = TTYStream()
    configure_logging(fmt="auto", stream=stream)
    structlog.get_logger().info("hello", key="value")
    logging.getLogger("paho.mqtt.client").warning("from stdlib")
    out = stream.getvalue()
    assert "hello" in out
    assert "key" in out
    assert "from stdlib" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_console_without_tty_has_no_colour_codes() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)
    structlog.get_logger().warning("plain")
    assert "plain" in stream.getvalue()
    assert "\x1b[" not in stream.getvalue()


def test_configuring_twice_does_not_duplicate() -> None:
    first = io.StringIO()
    second = io.StringIO()
    configure_logging("info", "json", first)
    before = len(logging.getLogger().handlers)
    configure_logging("info", "json", second)
    assert len(logging.getLogger().handlers) == before
    structlog.get_logger().info("once")
    logging.getLogger("paho").info("once too")
    assert first.getvalue() == ""
    assert [r["event"] for r in _json_lines(second)] == ["once", "once too"]


def test_module_level_loggers_follow_reconfiguration() -> None:
    log = structlog.get_logger("monitor.somewhere")  # as a module would hold it
    first = _configured()
    log.info("a")
    with capture_logs() as logs:
        log.info("b")
    second = _configured()
    log.info("c")
    assert [r["event"] for r in _json_lines(first)] == ["a"]
    assert [entry["event"] for entry in logs] == ["b"]
    assert [r["event"] for r in _json_lines(second)] == ["c"]


def test_configured_rate_limit_applies_to_structlog_and_stdlib() -> None:
    clock = FakeClock()
    stream = _configured(interval=10.0, clock=clock)
    log = structlog.get_logger("monitor.ingest")
    paho = logging.getLogger("paho.mqtt.client")
    for _ in range(5):
        log.warning("decode_failed", topic="anbo/a/b/c", rate_key="anbo/a/b/c")
        paho.warning("Connection to %s failed", "broker")
    clock.now += 10.0
    log.warning("decode_failed", topic="anbo/a/b/c", rate_key="anbo/a/b/c")
    paho.warning("Connection to %s failed", "broker")
    records = _json_lines(stream)
    assert [(r["logger"], r.get("suppressed")) for r in records] == [
        ("monitor.ingest", None),
        ("paho.mqtt.client", None),
        ("monitor.ingest", 4),
        ("paho.mqtt.client", 4),
    ]


# --- RateLimiter ---------------------------------------------------------------------------


def _emit(limiter: RateLimiter, method: str = "warning", **event: Any) -> dict[str, Any] | None:
    """Run one event through the limiter: the event dict, or None when it was dropped."""
    event.setdefault("event", "broker_unreachable")
    try:
        return dict(limiter(None, method, event))
    except structlog.DropEvent:
        return None


def test_first_passes_repeats_dropped_then_suppressed_reported() -> None:
    clock = FakeClock()
    limiter = RateLimiter(interval=10.0, clock=clock)
    assert _emit(limiter) == {"event": "broker_unreachable"}
    clock.now += 1
    assert _emit(limiter) is None
    clock.now += 8.9
    assert _emit(limiter) is None
    clock.now += 0.1  # exactly one interval since the last one let through
    assert _emit(limiter) == {"event": "broker_unreachable", "suppressed": 2}
    clock.now += 5
    assert _emit(limiter) is None
    clock.now += 5
    assert _emit(limiter) == {"event": "broker_unreachable", "suppressed": 1}
    clock.now += 100
    assert _emit(limiter) == {"event": "broker_unreachable"}  # nothing was suppressed


def test_works_as_a_processor_with_capture_logs() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    log = structlog.get_logger()
    with capture_logs(processors=[limiter]) as logs:
        for _ in range(3):
            log.error("persist_failed", path="/var/lib/anbo/ledger")
        clock.now += 10
        log.error("persist_failed", path="/var/lib/anbo/ledger")
    assert [entry.get("suppressed") for entry in logs] == [None, 2]


def test_keys_are_independent() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert _emit(limiter, event="decode_failed", rate_key="anbo/s/a/rf") is not None
    assert _emit(limiter, event="decode_failed", rate_key="anbo/s/b/rf") is not None
    assert _emit(limiter, event="decode_failed") is not None
    assert _emit(limiter, event="other_event", rate_key="anbo/s/a/rf") is not None
    assert _emit(limiter, event="decode_failed", rate_key="anbo/s/a/rf") is None
    assert _emit(limiter, event="decode_failed") is None
    # rate_key stays in the output: it is context the caller chose to give.
    out = _emit(limiter, event="decode_failed", rate_key="anbo/s/c/rf")
    assert out is not None
    assert out["rate_key"] == "anbo/s/c/rf"


@pytest.mark.parametrize("method", ["debug", "info"])
def test_debug_and_info_are_never_limited(method: str) -> None:
    limiter = RateLimiter(clock=FakeClock())
    for _ in range(50):
        assert _emit(limiter, method, event="tick") == {"event": "tick"}
    assert len(limiter) == 0


@pytest.mark.parametrize("method", ["warning", "warn", "error", "exception", "critical"])
def test_warning_and_worse_are_limited(method: str) -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert _emit(limiter, method) is not None
    assert _emit(limiter, method) is None


def test_key_memory_is_bounded_evicting_least_recent() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_keys=3, clock=clock)
    for name in ("a", "b", "c"):
        assert _emit(limiter, event=name) is not None
    assert _emit(limiter, event="a") is None  # a is now the most recently seen
    assert _emit(limiter, event="d") is not None  # evicts b
    assert len(limiter) == 3
    assert _emit(limiter, event="b") is not None  # forgotten, so let through again; evicts c
    assert _emit(limiter, event="a") is None
    assert _emit(limiter, event="d") is None
    for i in range(10_000):
        _emit(limiter, event=f"flood-{i}")
    assert len(limiter) == 3


def test_stdlib_filter_limits_by_logger_and_template() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)

    def record(name: str, msg: str, *args: object, level: int = logging.WARNING) -> Any:
        return logging.LogRecord(name, level, __file__, 1, msg, args, None)

    assert limiter.filter(record("paho", "failed %s", "x"))
    assert not limiter.filter(record("paho", "failed %s", "y"))  # same template
    assert limiter.filter(record("aiomqtt", "failed %s", "x"))  # other logger
    assert limiter.filter(record("paho", "chatty", level=logging.INFO))
    assert limiter.filter(record("paho", "chatty", level=logging.INFO))
    structlog_record = record("monitor", "x")
    structlog_record.msg = {"event": "already limited"}
    assert limiter.filter(structlog_record)
    assert limiter.filter(structlog_record)
    clock.now += 10
    again = record("paho", "failed %s", "z")
    assert limiter.filter(again)
    assert again.suppressed == 1


@pytest.mark.parametrize("kwargs", [{"interval": -1.0}, {"max_keys": 0}])
def test_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RateLimiter"):
        RateLimiter(**kwargs)


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0, max_value=25)),
        max_size=60,
    )
)
def test_every_occurrence_is_emitted_or_counted(steps: list[tuple[str, float]]) -> None:
    """Nothing is lost silently: emitted + reported suppressed + still pending = occurrences."""
    clock = FakeClock()
    limiter = RateLimiter(interval=10.0, clock=clock)
    accounted = {"a": 0, "b": 0, "c": 0}
    pending = {"a": 0, "b": 0, "c": 0}
    last_emitted: dict[str, float] = {}
    for key, dt in steps:
        clock.now += dt
        out = _emit(limiter, event=key)
        if out is None:
            pending[key] += 1
            assert clock.now - last_emitted[key] < 10.0
        else:
            if key in last_emitted:
                assert clock.now - last_emitted[key] >= 10.0
            last_emitted[key] = clock.now
            accounted[key] += 1 + out.get("suppressed", 0)
            assert out.get("suppressed", 0) == pending[key]
            pending[key] = 0
    for key in accounted:
        assert accounted[key] + pending[key] == sum(1 for k, _ in steps if k == key)
