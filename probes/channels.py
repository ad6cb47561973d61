"""The broadcast channel plans anbo validates against (pure; settings re-export them).

- FM: 87–108 MHz on a 0.1 MHz raster.
- Chinese UHF television channels DS-13…DS-48, 8 MHz wide: DS-13…DS-24 from 470 MHz
  (lower edge 470 + 8·(n−13)), DS-25…DS-48 from 606 MHz (lower edge 606 + 8·(n−25)).
"""

from __future__ import annotations

import math
import re

FM_MIN_MHZ, FM_MAX_MHZ = 87.0, 108.0
DS_MIN, DS_MAX = 13, 48
_DS_RE = re.compile(r"^(?:DS-?)?(\d{1,2})$", re.IGNORECASE)


def ds_channel_number(value: int | str) -> int:
    """Accept ``21``, ``"21"``, ``"DS-21"`` or ``"ds21"``; return the channel number."""
    if isinstance(value, bool):
        raise ValueError("channel must be a DS channel such as 'DS-21'")
    if isinstance(value, int):
        number = value
    else:
        m = _DS_RE.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} is not a DS channel such as 'DS-21'")
        number = int(m.group(1))
    if not DS_MIN <= number <= DS_MAX:
        raise ValueError(f"DS-{number} is outside the UHF plan DS-{DS_MIN}…DS-{DS_MAX}")
    return number


def ds_channel_lower_edge_mhz(number: int) -> float:
    """Lower band edge of a Chinese UHF DS channel (8 MHz wide)."""
    if DS_MIN <= number <= 24:
        return 470.0 + 8.0 * (number - 13)
    if 25 <= number <= DS_MAX:
        return 606.0 + 8.0 * (number - 25)
    raise ValueError(f"DS-{number} is outside the UHF plan")


def ds_channel_centre_mhz(number: int) -> float:
    return ds_channel_lower_edge_mhz(number) + 4.0


def fm_frequency_problem(mhz: float) -> str | None:
    """Why ``mhz`` is not a valid FM frequency (87–108 MHz, 0.1 MHz raster), or None."""
    if isinstance(mhz, bool) or not isinstance(mhz, int | float) or not math.isfinite(mhz):
        return f"{mhz!r} is not a frequency in MHz"
    if not FM_MIN_MHZ <= mhz <= FM_MAX_MHZ:
        return f"{mhz} MHz is outside the FM band {FM_MIN_MHZ:g}–{FM_MAX_MHZ:g} MHz"
    if abs(mhz * 10 - round(mhz * 10)) > 1e-6:
        return f"{mhz} MHz is off the 0.1 MHz raster"
    return None
