"""Logging setup: structlog in front, stdlib ``logging`` behind, one rendering for both.

Under systemd stdout is not a TTY and every record becomes one JSON object per line
(journald stores it; ``journalctl -u anbo -o cat | jq`` reads it back). On a terminal
the same events go through structlog's ConsoleRenderer. Records from libraries that
use stdlib ``logging`` (aiomqtt, paho, aiohttp) pass through the same processors via
``structlog.stdlib.ProcessorFormatter`` and its ``foreign_pre_chain``.

Repeated warnings and errors are rate-limited by :class:`RateLimiter` so that a broken
publisher or an unreachable broker cannot flood the journal.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

__all__ = ["RateLimiter", "configure_logging"]

_LIMITED_LEVELS = frozenset({"warning", "warn", "error", "exception", "critical", "fatal"})


class RateLimiter(logging.Filter):
    """Lets an event with a given key through at most once per ``interval`` seconds.

    The key is the event name plus an optional ``rate_key`` field given by the caller
    (a topic, a reason, ...). Events in between are dropped (``structlog.DropEvent``)
    and counted; the next one let through carries ``suppressed=<count>``. Only
    warnings and worse are limited; debug and info always pass.

    Use it as a structlog processor, and as a ``logging.Filter`` on the handler for
    records from stdlib loggers (keyed by logger name and message template), which
    get the count as a ``suppressed`` record attribute.

    At most ``max_keys`` keys are remembered; the least recently seen is forgotten
    first (with its pending count).
    """

    def __init__(
        self,
        interval: float = 10.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        levels: Collection[str] = _LIMITED_LEVELS,
    ) -> None:
        super().__init__()
        if interval < 0:
            raise ValueError(f"RateLimiter interval must be >= 0, got {interval}")
        if max_keys < 1:
            raise ValueError(f"RateLimiter max_keys must be >= 1, got {max_keys}")
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._levels = frozenset(level.lower() for level in levels)
        # key -> [time last let through, number dropped since]
        self._seen: OrderedDict[tuple[str, ...], list[float]] = OrderedDict()
        self._lock = threading.Lock()  # stdlib records may come from executor threads

    def __len__(self) -> int:
        """The number of keys currently remembered."""
        return len(self._seen)

    def check(self, key: tuple[str, ...]) -> int | None:
        """Record one occurrence of ``key``: None to drop it, else the count suppressed."""
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None:
                self._seen.move_to_end(key)
                if now - entry[0] < self.interval:
                    entry[1] += 1
                    return None
                suppressed = int(entry[1])
                entry[0], entry[1] = now, 0
                return suppressed
            self._seen[key] = [now, 0]
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return 0

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if method_name.lower() not in self._levels:
            return event_dict
        rate_key = event_dict.get("rate_key")
        key: tuple[str, ...] = (str(event_dict.get("event")),)
        if rate_key is not None:
            key += (str(rate_key),)
        suppressed = self.check(key)
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event_dict["suppressed"] = suppressed
        return event_dict

    def filter(self, record: logging.LogRecord) -> bool:
        # structlog's own events were limited by the processor already.
        if isinstance(record.msg, dict) or record.levelno < logging.WARNING:
            return True
        suppressed = self.check(("logging", record.name, str(record.msg)))
        if suppressed is None:
            return False
        if suppressed:
            record.suppressed = suppressed
        return True


class _AnboHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so that configuring again replaces it."""


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    *,
    rate_limiter: RateLimiter | None = None,
) -> None:
    """Configure structlog and the stdlib root logger; calling it again replaces the setup.

    ``fmt="auto"`` renders JSON unless ``stream`` (default: stdout) is a TTY.
    ``rate_limiter`` defaults to ``RateLimiter()`` (10 s per key).
    """
    out = sys.stdout if stream is None else stream
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    limiter = RateLimiter() if rate_limiter is None else rate_limiter
    numeric_level = _level_number(level)

    # Run for structlog events and stdlib records alike, before rendering.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Processor]
    if fmt == "json":
        renderer = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=out.isatty())]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            limiter,  # early: a dropped event costs nothing further
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers must follow a later configure() (a second
        # configure_logging, structlog.testing.capture_logs). Nothing logs per message.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder carries stdlib ``extra=`` fields, including RateLimiter's suppressed.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = _AnboHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(limiter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AnboHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
