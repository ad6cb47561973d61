"""Durations as written in rule files: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``, ``1h30m``.

All durations are seconds (``float``) inside anbo. A bare number (``10`` or ``2.5``)
in a rule file is seconds too.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = [
    "UNIT_SECONDS",
    "duration_argument",
    "format_duration",
    "parse_duration",
    "positive_duration_argument",
]

#: Seconds per duration unit.
UNIT_SECONDS: Final[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
#: One or more ``<number><unit>`` groups with nothing in between (``1h30m``).
DURATION_RE: Final = re.compile(rf"(?:{_PART})+")
_PART_RE: Final = re.compile(_PART)


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text`` (``"30s"``, ``"1h30m"``, ``"250ms"``, or a number of seconds).

    Raises ``ValueError`` with a message fit for an operator on anything else,
    including negative and non-finite values.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        stripped = text.strip()
        if DURATION_RE.fullmatch(stripped):
            seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in _PART_RE.findall(stripped))
        else:
            try:
                seconds = float(stripped)
            except ValueError:
                raise ValueError(f"expected a duration such as 30s, 5m, 1h or 1h30m, got {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Shortest readable form of ``seconds``: ``10s``, ``5m``, ``1h30m``, ``1.5s``, ``250ms``."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def duration_argument(text: str) -> float:
    """``argparse`` type for a duration option that may be 0: ``90``, ``90s``, ``2m``, ``1h30m``.

    The one parser behind every duration option of every command (``anbo demo --duration``,
    ``anbo simulate --duration``, ``anbo analyze --min-silence`` ...); negatives are refused.
    """
    import argparse

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration_argument(text: str) -> float:
    """:func:`duration_argument` that also refuses 0."""
    import argparse

    seconds = duration_argument(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0 s, got {text!r}")
    return seconds
