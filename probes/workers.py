"""Probe workers: each target's streaming measurement state, evaluated per tick.

The daemon pushes decoded telemetry in as it arrives (cheap: blocks are only queued)
and calls :meth:`ProbeWorkers.evaluate` once per tick; heavy audio work happens
there, batched: each target's queued blocks are sorted, joined into contiguous runs
and run through the detectors once per run, not once per 100 ms block. Evaluation
may run in a worker thread; pushes happen on the event loop. The hand-over is
:meth:`ProbeWorkers.take` (on the loop), then :meth:`ProbeWorkers.evaluate` on what
was taken (anywhere), so detector state is only ever touched by one evaluation at a
time.

Measurements are plain ``dict[str, float | str | None]`` per target, named with
their unit as suffix (see :data:`MEASUREMENTS`). ``None`` means *unknown*: no
telemetry recently, or not enough of it. Missing telemetry never reads as silence,
and never as healthy.

Pure: no clock reads (``now`` is the monotonic time of the tick, ``rx`` the
monotonic receive time of each push), no I/O, no logging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from probes.audio import (
    DetectionState,
    HissDetector,
    SilenceDetector,
    StuckToneDetector,
    channel_correlation,
    clipping_ratio,
    dc_offset,
    level_imbalance_db,
)
from probes.loudness import LoudnessMeter
from probes.rf import fm_modulation_percent, vswr

Value = float | str | None
Measurements = dict[str, Value]

#: Every measurement the workers produce: name → help text (unit in the name).
#: Only these become Prometheus series (``anbo_<name>``), so the set is bounded.
MEASUREMENTS: Final[dict[str, str]] = {
    "audio_rms_dbfs": "RMS level of the loudest channel over the last tick (dBFS).",
    "audio_peak_dbfs": "Sample peak of the loudest channel over the last tick (dBFS).",
    "silence": "1 while the audio is silent (with level and time hysteresis), 0 when not.",
    "silence_seconds": "Duration of the silence in progress, 0 when none (s).",
    "hiss": "1 while the audio is noise instead of programme (carrier lost at the receiver).",
    "spectral_flatness": "Spectral flatness of the audio, 0 tonal … 1 white noise (ratio).",
    "stuck_tone": "1 while a steady single tone replaces the programme.",
    "tone_frequency_hz": "Frequency of the dominant spectral peak (Hz).",
    "clip_ratio": "Share of samples at full scale over the last tick (ratio).",
    "dc_offset": "Largest DC offset of a channel over the last tick (full scale = 1).",
    "lr_imbalance_db": "Left minus right RMS level (dB).",
    "lr_correlation": "Correlation of left and right: 1 mono, 0 unrelated, -1 phase-inverted.",
    "loudness_momentary_lufs": "EBU R128 momentary loudness, 400 ms (LUFS).",
    "loudness_shortterm_lufs": "EBU R128 short-term loudness, 3 s (LUFS).",
    "loudness_integrated_lufs": "EBU R128 gated integrated loudness since start or last gap (LUFS).",
    "modulation_percent": "FM modulation from peak deviation, 100 % = ±75 kHz (%).",
    "vswr": "Voltage standing wave ratio from forward and reflected power (ratio).",
}

#: Those computed from a target's readings (the rest from its audio).
READINGS_MEASUREMENTS: Final = ("modulation_percent", "vswr")
AUDIO_MEASUREMENTS: Final = tuple(k for k in MEASUREMENTS if k not in READINGS_MEASUREMENTS)


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """Detector thresholds; defaults follow broadcast-monitor practice (domain.md)."""

    silence_on_dbfs: float = -40.0
    silence_off_dbfs: float = -30.0
    silence_on_s: float = 10.0
    silence_off_s: float = 5.0
    hiss_on_s: float = 5.0
    tone_on_s: float = 10.0
    #: FM de-emphasis of the off-air receiver's audio (µs), for hiss detection.
    deemphasis_us: float | None = None
    #: No audio block for this long makes every audio measurement unknown.
    stale_after_s: float = 3.0


@dataclass(slots=True)
class _Block:
    samples: NDArray[np.float32]
    rate: int
    ts: float
    #: arrival (monotonic)
    rx: float = math.nan


@dataclass(slots=True)
class AudioProbe:
    """One target's audio chain: silence, hiss, stuck tone, loudness, levels."""

    settings: AudioSettings
    pending: list[_Block] = field(default_factory=list)
    last_rx: float | None = None
    #: End (publisher time) of the audio evaluated so far; older blocks are too late.
    evaluated_until: float | None = None
    late_blocks: int = 0
    silence: SilenceDetector = field(init=False)
    hiss: HissDetector = field(init=False)
    tone: StuckToneDetector = field(init=False)
    loudness: LoudnessMeter = field(init=False)
    latest: Measurements = field(default_factory=dict)
    #: Arrival of the block in which ``silence`` last became 1 (monotonic), None until then.
    silence_rx: float | None = None
    #: Silences closed since the last :meth:`take_closed`, as (start, end, ended_by).
    closed: list[tuple[float, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.silence = SilenceDetector(
            on_dbfs=s.silence_on_dbfs, off_dbfs=s.silence_off_dbfs, on_s=s.silence_on_s, off_s=s.silence_off_s
        )
        self.hiss = HissDetector(on_s=s.hiss_on_s, deemphasis_us=s.deemphasis_us)
        self.tone = StuckToneDetector(on_s=s.tone_on_s)
        self.loudness = LoudnessMeter()

    def push(self, samples: NDArray[np.float32], rate: int, ts: float, rx: float) -> None:
        self.pending.append(_Block(samples, rate, ts, rx))
        self.last_rx = rx

    def take(self) -> list[_Block]:
        blocks, self.pending = self.pending, []
        return blocks

    def evaluate(self, blocks: list[_Block], now: float) -> Measurements:
        """Run the detectors over ``blocks`` (taken with :meth:`take`)."""
        if self.last_rx is None or now - self.last_rx > self.settings.stale_after_s:
            self._interrupt()
            self.latest = dict.fromkeys(AUDIO_MEASUREMENTS)
            return self.latest
        blocks.sort(key=lambda b: b.ts)
        runs = self._runs(blocks)
        if not runs:
            return self.latest
        rms = peak = clip = dc = -math.inf
        imbalance = correlation = math.nan
        for samples, rate, ts in runs:
            sil = self.silence.process(samples, rate, ts)
            hiss = self.hiss.process(samples, rate, ts)
            tone = self.tone.process(samples, rate, ts)
            loud = self.loudness.process(samples, rate, ts)
            self.closed.extend((i.start, i.end, i.ended_by.value) for i in sil.closed)
            rms = max(rms, float(np.max(sil.levels.rms_dbfs)))
            peak = max(peak, float(np.max(sil.levels.peak_dbfs)))
            clip = max(clip, float(np.max(clipping_ratio(samples))))
            dc = max(dc, float(np.max(np.abs(dc_offset(samples)))))
            if samples.shape[1] == 2:
                imbalance = float(level_imbalance_db(samples)[0])
                correlation = float(channel_correlation(samples)[0])
        open_silence = sil.open
        if sil.state is DetectionState.ACTIVE and self.latest.get("silence") != 1.0 and open_silence:
            # It turned silent in this batch: when the block holding the moment the
            # silence reached silence_on_s arrived (the data said so from then on).
            flip = open_silence.start + self.settings.silence_on_s
            self.silence_rx = next(
                (b.rx for b in blocks if b.ts + b.samples.shape[0] / b.rate > flip), blocks[-1].rx
            )
        self.latest = {
            "audio_rms_dbfs": rms,
            "audio_peak_dbfs": peak,
            "silence": _flag(sil.state),
            "silence_seconds": (
                open_silence.duration
                if open_silence is not None
                else (0.0 if sil.state is not DetectionState.UNKNOWN else None)
            ),
            "hiss": _flag(hiss.state),
            "spectral_flatness": _finite(hiss.flatness),
            "stuck_tone": _flag(tone.state),
            "tone_frequency_hz": _finite(tone.peak_hz),
            "clip_ratio": clip,
            "dc_offset": dc,
            "lr_imbalance_db": _finite(imbalance),
            "lr_correlation": _finite(correlation),
            "loudness_momentary_lufs": _finite(loud.momentary_lufs),
            "loudness_shortterm_lufs": _finite(loud.short_term_lufs),
            "loudness_integrated_lufs": _finite(loud.integrated_lufs),
        }
        return self.latest

    def take_closed(self) -> list[tuple[float, float, str]]:
        closed, self.closed = self.closed, []
        return closed

    def _runs(self, blocks: list[_Block]) -> list[tuple[NDArray[np.float32], int, float]]:
        """Join time-contiguous blocks of one format; drop blocks older than what was
        already evaluated (a streaming detector cannot go back in time)."""
        runs: list[tuple[list[NDArray[np.float32]], int, float, float]] = []
        for b in blocks:
            frames, channels = b.samples.shape
            if self.evaluated_until is not None and b.ts < self.evaluated_until - 0.5 / b.rate:
                self.late_blocks += 1
                continue
            end = b.ts + frames / b.rate
            self.evaluated_until = end
            if runs:
                parts, rate, ts, run_end = runs[-1]
                if rate == b.rate and parts[0].shape[1] == channels and abs(b.ts - run_end) <= 2.0 / b.rate:
                    parts.append(b.samples)
                    runs[-1] = (parts, rate, ts, end)
                    continue
            runs.append(([b.samples], b.rate, b.ts, end))
        return [
            (parts[0] if len(parts) == 1 else np.concatenate(parts), rate, ts) for parts, rate, ts, _ in runs
        ]

    def _interrupt(self) -> None:
        for i in self.silence.interrupt():
            self.closed.append((i.start, i.end, i.ended_by.value))
        self.hiss.interrupt()
        self.tone.interrupt()
        self.loudness.interrupt()
        self.pending.clear()


def _flag(state: DetectionState) -> float | None:
    if state is DetectionState.UNKNOWN:
        return None
    return 1.0 if state is DetectionState.ACTIVE else 0.0


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(slots=True)
class ReadingsProbe:
    """One target's latest readings (as published), with their receive time."""

    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    last_rx: float | None = None
    #: ``last_rx`` when the derived measurements were last computed (their data's arrival)
    used_rx: float | None = None

    def push(self, values: Mapping[str, float], info: Mapping[str, str], rx: float) -> None:
        self.values.update(values)
        self.info.update(info)
        self.last_rx = rx


@dataclass(frozen=True, slots=True)
class TargetSpec:
    name: str
    kind: str  # fm | dtv | tx


class ProbeWorkers:
    """All targets' probes for one station, grouped by kind for vectorized evaluation."""

    def __init__(
        self,
        targets: list[TargetSpec],
        *,
        audio: AudioSettings | None = None,
        readings_stale_after_s: float = 30.0,
    ) -> None:
        self.audio_settings = audio or AudioSettings()
        self.readings_stale_after_s = readings_stale_after_s
        self.specs: dict[str, TargetSpec] = {}
        self.audio: dict[str, AudioProbe] = {}
        self.readings: dict[str, ReadingsProbe] = {}
        self.reconfigure(targets)

    def reconfigure(self, targets: list[TargetSpec]) -> None:
        """Keep the state of targets that stay; add and drop the others."""
        self.specs = {t.name: t for t in targets}
        self.audio = {
            n: self.audio.get(n) or AudioProbe(self.audio_settings)
            for n, t in self.specs.items()
            if t.kind in ("fm", "dtv")
        }
        self.readings = {n: self.readings.get(n) or ReadingsProbe() for n in self.specs}

    # -- input, on the event loop ------------------------------------------------------
    def push_block(self, target: str, samples: NDArray[np.float32], rate: int, ts: float, rx: float) -> None:
        probe = self.audio.get(target)
        if probe is not None:
            probe.push(samples, rate, ts, rx)

    def push_readings(
        self, target: str, values: Mapping[str, float], info: Mapping[str, str], rx: float
    ) -> None:
        probe = self.readings.get(target)
        if probe is not None:
            probe.push(values, info, rx)

    def data_times(self, target: str) -> dict[str, float]:
        """When the data behind each of ``target``'s measurements arrived (monotonic): the
        newest audio block for the audio measurements, the newest readings for those
        derived from readings (``TargetView.data_times``)."""
        out: dict[str, float] = {}
        audio = self.audio.get(target)
        if audio is not None and audio.last_rx is not None:
            out.update(dict.fromkeys(AUDIO_MEASUREMENTS, audio.last_rx))
            if audio.silence_rx is not None and audio.latest.get("silence") == 1.0:
                out["silence"] = audio.silence_rx
        readings = self.readings.get(target)
        if readings is not None and readings.used_rx is not None:
            out.update(dict.fromkeys(READINGS_MEASUREMENTS, readings.used_rx))
        return out

    def pending_samples(self) -> int:
        """Samples queued for the next evaluation (to decide whether to leave the loop)."""
        return sum(b.samples.size for p in self.audio.values() for b in p.pending)

    def take(self) -> dict[str, list[_Block]]:
        """Hand the queued audio over to an evaluation (call on the event loop)."""
        return {name: probe.take() for name, probe in self.audio.items()}

    # -- evaluation (may run in a worker thread) ------------------------------------------
    def evaluate(self, taken: dict[str, list[_Block]], now: float) -> dict[str, Measurements]:
        """Measurements of every target at monotonic time ``now``."""
        out = self.derived(now)
        for name, m in self.evaluate_audio(taken, now).items():
            out[name].update(m)
        return out

    def evaluate_audio(self, taken: dict[str, list[_Block]], now: float) -> dict[str, Measurements]:
        """The audio measurements alone (the heavy part: may run in a worker thread)."""
        return {name: probe.evaluate(taken.get(name, []), now) for name, probe in self.audio.items()}

    def derived(self, now: float) -> dict[str, Measurements]:
        """The readings-derived measurements of every target (call on the event loop, at
        the tick's start: the readings they use, and their arrival, are those of ``now``)."""
        out: dict[str, Measurements] = {name: {} for name in self.specs}
        for probe in self.readings.values():
            probe.used_rx = probe.last_rx
        self._derived(out, now)
        return out

    def _fresh(self, name: str, now: float) -> ReadingsProbe | None:
        probe = self.readings.get(name)
        if probe is None or probe.last_rx is None or now - probe.last_rx > self.readings_stale_after_s:
            return None
        return probe

    def _column(self, names: list[str], key: str, now: float) -> NDArray[np.float64]:
        col = np.full(len(names), np.nan)
        for i, name in enumerate(names):
            probe = self._fresh(name, now)
            if probe is not None:
                col[i] = probe.values.get(key, math.nan)
        return col

    def _derived(self, out: dict[str, Measurements], now: float) -> None:
        """Readings-derived measurements, computed per kind as arrays over its targets."""
        fm = [n for n, t in self.specs.items() if t.kind == "fm"]
        if fm:
            percent = fm_modulation_percent(self._column(fm, "peak_deviation_khz", now) * 1e3)
            published = self._column(fm, "modulation_percent", now)
            percent = np.where(np.isnan(published), percent, published)
            for name, value in zip(fm, percent, strict=True):
                out[name]["modulation_percent"] = _finite(float(value))
        tx = [n for n, t in self.specs.items() if t.kind == "tx"]
        if tx:
            ratio = vswr(self._column(tx, "forward_power_w", now), self._column(tx, "reflected_power_w", now))
            published = self._column(tx, "vswr", now)
            ratio = np.where(np.isnan(published), ratio, published)
            for name, value in zip(tx, ratio, strict=True):
                v = float(value)
                out[name]["vswr"] = v if not math.isnan(v) else None
