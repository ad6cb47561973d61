"""Type stub of the compiled one-pass audio kernel (probes/_kernels.c)."""

from typing import Any

from numpy.typing import NDArray

def frame_stats(
    samples: NDArray[Any],
    channels: int,
    head: int,
    frame_len: int,
    sums: NDArray[Any],
    totals: NDArray[Any],
    floor_power: float = ...,
    /,
) -> None:
    """Per-segment, per-channel sums of squares (head, whole frames, tail) and per-channel
    block totals (``Σx²``, peak power; with ``floor_power``: RMS and peak dBFS, floored).

    ``samples``: float32 or float64 (native order), or int16 in either byte order (full
    scale 32768, read in place: no float32 copy).
    """

def sos_power(
    samples: NDArray[Any],
    sos: NDArray[Any],
    zi: NDArray[Any],
    weights: NDArray[Any],
    power: NDArray[Any],
    /,
) -> None:
    """Second-order sections over interleaved (frames, channels) samples, squared and
    weighted-summed over channels per frame; ``zi`` (sections, channels, 2) updated in place."""
