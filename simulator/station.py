"""The station simulator's core: a pure generator of the messages a station's gateways send.

Given a station configuration, a scenario and a start time, :class:`StationSimulator`
yields every message the off-air receivers, transmitter controllers and
emergency-broadcast endpoints of the station would publish, in time order, as
:class:`Message` values stamped with *scenario time* (seconds from the start). It
reads no clock and opens no socket: a publisher paces the messages in real time
(``simulator.publisher``), a test feeds them straight into the daemon's
pipeline with fake clocks (``simulator.accelerated``).

What each kind of target sends (rates, sizes and sequence numbers as a gateway does):

- **fm** — ``rf`` readings once a second: ``rf_level_dbuv`` (``params.rf_reference_dbuv``
  or 65, slow drift and noise), ``freq_offset_khz``, ``peak_deviation_khz`` and
  ``modulation_percent`` from the programme's peaks in that second (plus pilot and RDS),
  ``mpx_power_dbr`` from its power, ``pilot_present``, ``pilot_deviation_khz``; info
  ``rds_pi`` (``params.rds_pi``, else a code derived from the target name). ``audio``:
  100 ms PCM blocks, 48 kHz stereo (int16), ``seq`` +1 per block, frame 0 at ``ts``.
- **dtv** — ``rf`` once a second: ``rf_level_dbuv`` (reference or 60), ``mer_db`` (~34),
  ``ber_pre``, ``ber_post``, ``cn_db``, ``lock``, ``freq_offset_khz``; MER, BER and C/N only
  while locked. ``audio`` as for fm.
- **tx** — ``status`` once a second: ``forward_power_w`` (``params.rated_power_w`` or
  1000), ``reflected_power_w`` (VSWR 1.1–1.2), ``pa_temp_celsius`` (~45, drifting),
  ``on_air``, ``fault``.
- the emergency-broadcast fleet (``simulator.eb``).

Audio blocks use MQTT v5 framing (``audio/L16`` content type and ``ts``/``seq`` user
properties) or, for MQTT 3.1.1, the 28-byte ``ANBO`` header (int16le); JSON readings
carry ``application/json`` on v5.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from monitor.settings import Settings, TargetKind, TargetSettings
from monitor.wire import HEADER, MAGIC, encode_block_v5, encode_block_v311, encode_readings
from simulator import programme as prog
from simulator.eb import EbFleet
from simulator.scenario import (
    MALFORMATIONS,
    CarrierLoss,
    Clipping,
    DeadAir,
    DtvLockLoss,
    DuplicateBlocks,
    EbDispatch,
    EbEndpointFault,
    EbOffline,
    Fault,
    Hiss,
    LowRF,
    MalformedPayloads,
    MerDegradation,
    Overmodulation,
    PaOverTemperature,
    PhaseReversal,
    PilotLoss,
    PowerDrop,
    ReorderedBlocks,
    Scenario,
    StuckTone,
    TelemetrySilence,
    TxFault,
    VacatedEmission,
    VswrSpike,
    WrongRdsPi,
)

__all__ = [
    "BLOCK_SECONDS",
    "DEFAULT_DTV_RF_DBUV",
    "DEFAULT_FM_RF_DBUV",
    "DEFAULT_RATED_POWER_W",
    "Message",
    "SimOptions",
    "StationSimulator",
]

#: Length of one audio block (and the simulator's time step).
BLOCK_SECONDS: Final = 0.1
DEFAULT_FM_RF_DBUV: Final = 65.0
DEFAULT_DTV_RF_DBUV: Final = 60.0
DEFAULT_RATED_POWER_W: Final = 1000.0
#: Share of full deviation (±75 kHz) the programme may use: pilot (9 %) and RDS (3.5 %)
#: take the rest of 100 %.
_AUDIO_MOD: Final = 87.0
_PILOT_MOD: Final = 9.0
_RDS_MOD: Final = 3.5
_MUTED_DBFS: Final = -90.0

Protocol = Literal["5", "3.1.1"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish, at scenario time ``t`` (seconds from the start)."""

    t: float
    topic: str
    payload: bytes
    content_type: str | None
    user_properties: list[tuple[str, str]] | None
    #: Target (or emergency-broadcast endpoint) and stream it belongs to.
    target: str
    stream: str


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How to simulate (independent of the scenario)."""

    #: Wall-clock time (Unix seconds) of scenario time 0: every ``ts`` is ``start + t``.
    start: float
    protocol: Protocol = "5"
    audio_rate: int = 48_000
    audio_channels: int = 2
    #: Programme from WAV files: target name → file, ``"*"`` for every audio target.
    wav: Mapping[str, Path] = field(default_factory=dict)
    #: Targets whose audio is simulated; None: all fm and dtv targets.
    audio_targets: frozenset[str] | None = None
    #: Overrides of the scenario's emergency-broadcast fleet.
    eb_endpoints: int | None = None
    eb_regions: int | None = None
    #: Overrides the scenario's seed.
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (8000 <= self.audio_rate <= 192_000 and self.audio_rate % 10 == 0):
            raise ValueError("audio_rate must be 8000–192000 Hz and a multiple of 10 (100 ms blocks)")
        if self.audio_channels not in (1, 2):
            raise ValueError("audio_channels must be 1 or 2")


def _seed(seed: int, *parts: str) -> list[int]:
    return [seed, *(zlib.crc32(p.encode()) for p in parts)]


def derived_pi(name: str) -> str:
    """A plausible RDS PI code for a target that has none configured (``Cxxx``)."""
    return f"C{zlib.crc32(name.encode()) % 0xFFF:03X}"


class _Drift:
    """A slow, bounded random drift (Ornstein–Uhlenbeck, clipped), stepped once a second."""

    def __init__(self, rng: np.random.Generator, tau: float, sigma: float, limit: float) -> None:
        self.rng = rng
        self.tau = tau
        self.sigma = sigma
        self.limit = limit
        self.value = float(rng.uniform(-limit / 3, limit / 3))

    def step(self, dt: float = 1.0) -> float:
        a = dt / self.tau
        self.value += -a * self.value + self.sigma * math.sqrt(2 * a) * float(self.rng.standard_normal())
        self.value = max(-self.limit, min(self.limit, self.value))
        return self.value


def _active(faults: list[Fault], t: float) -> list[Fault]:
    return [f for f in faults if f.active(t)]


_F = TypeVar("_F")


def _first(faults: Sequence[object], t: float, kind: type[_F]) -> _F | None:
    for f in faults:
        if isinstance(f, kind) and f.active(t):  # type: ignore[attr-defined]
            return f
    return None


# --------------------------------------------------------------------------- streams


class _Stream:
    """One (target, stream): sequence numbers and the delivery faults (silence,
    duplicates, reordering) applied to its messages."""

    def __init__(
        self, sim: StationSimulator, target: str, stream: str, seq_base: int, faults: list[Fault]
    ) -> None:
        self.sim = sim
        self.target = target
        self.stream = stream
        self.topic = f"{sim.prefix}/{sim.station}/{target}/{stream}"
        self.seq = seq_base
        self.rng = np.random.default_rng(_seed(sim.seed, target, stream, "delivery"))
        self.silences = [
            f
            for f in faults
            if isinstance(f, TelemetrySilence) and (f.streams is None or stream in f.streams)
        ]
        self.duplicates = [f for f in faults if isinstance(f, DuplicateBlocks) and f.stream == stream]
        self.reorders = [f for f in faults if isinstance(f, ReorderedBlocks) and f.stream == stream]
        self.held: Message | None = None

    def next_seq(self) -> int:
        s = self.seq
        self.seq += 1
        return s

    def send(
        self,
        out: list[Message],
        t: float,
        payload: bytes,
        ctype: str | None,
        props: list[tuple[str, str]] | None,
    ) -> None:
        if any(f.active(t) for f in self.silences):
            return
        msg = Message(t, self.topic, payload, ctype, props, self.target, self.stream)
        held, self.held = self.held, None
        dup = _first(self.duplicates, t, DuplicateBlocks)
        reorder = _first(self.reorders, t, ReorderedBlocks)
        if held is None and reorder is not None and self.rng.random() < reorder.share:
            self.held = msg  # goes out after the next one
        else:
            out.append(msg)
            if held is not None:
                out.append(
                    Message(
                        t + 0.001,
                        held.topic,
                        held.payload,
                        held.content_type,
                        held.user_properties,
                        held.target,
                        held.stream,
                    )
                )
        if dup is not None and self.rng.random() < dup.share:
            out.append(Message(t + 0.005, self.topic, payload, ctype, props, self.target, self.stream))

    def flush(self, out: list[Message]) -> None:
        if self.held is not None:
            out.append(self.held)
            self.held = None


# --------------------------------------------------------------------------- audio


class _Audio:
    """A target's audio chain: programme, transmitter-side faults, receiver-side faults."""

    def __init__(self, sim: StationSimulator, target: TargetSettings, faults: list[Fault]) -> None:
        o = sim.options
        self.rate = o.audio_rate
        self.channels = o.audio_channels
        self.frames = round(self.rate * BLOCK_SECONDS)
        wav = o.wav.get(target.name) or o.wav.get("*")
        if wav is not None:
            self.source: prog.AudioSource = prog.WavProgramme(wav, self.rate, self.channels)
        else:
            service = target.service.lower()
            talk = (
                0.8
                if ("news" in service or "talk" in service or "traffic" in service)
                else 0.15
                if "music" in service
                else 0.5
            )
            self.source = prog.Programme(
                self.rate,
                self.channels,
                seed=zlib.crc32(f"{sim.seed}:{target.name}".encode()),
                talk_share=talk,
            )
        if self.channels < 2 and any(isinstance(f, PhaseReversal) for f in faults):
            raise ValueError(f"{target.name}: a phase_reversal fault needs stereo audio (audio channels 2)")
        self.faults = faults
        self.rng = np.random.default_rng(_seed(sim.seed, target.name, "audio"))
        self.hiss_state = prog.HissState()
        self.frame = 0
        #: (peak, mean square) of the transmitted audio of the last ten blocks.
        self.recent: deque[tuple[float, float]] = deque(maxlen=10)

    def block(self, t: float) -> NDArray[np.float32]:
        n, ch = self.frames, self.channels
        x = self.source.render(n)
        faults = _active(self.faults, t)
        for f in faults:  # at the transmitter: what goes on air
            if isinstance(f, DeadAir):
                x = prog.dead_air(self.rng, n, ch, f.level_dbfs)
            elif isinstance(f, StuckTone):
                x = prog.tone(self.frame, n, ch, self.rate, f.frequency_hz, f.level_dbfs)
        for f in faults:  # in the programme chain, after the source
            if isinstance(f, Clipping):
                x = np.clip(x * np.float32(10.0 ** (f.gain_db / 20.0)), -1.0, 1.0).astype(np.float32)
            elif isinstance(f, PhaseReversal):
                x = x.copy()
                x[:, 1] = -x[:, 1]
        self.recent.append((float(np.max(np.abs(x))), float(np.mean(np.square(x, dtype=np.float64)))))
        for f in faults:  # at the receiver
            if isinstance(f, CarrierLoss | DtvLockLoss):
                x = prog.dead_air(self.rng, n, ch, _MUTED_DBFS)
            elif isinstance(f, Hiss):
                x = prog.hiss(self.rng, n, ch, self.rate, f.level_dbfs, self.hiss_state)
        self.frame += n
        return x

    def programme_stats(self) -> tuple[float, float]:
        """Peak and RMS (dBFS) of the transmitted audio over the last second."""
        if not self.recent:
            return 0.7, prog.PROGRAMME_DBFS
        peak = max(p for p, _ in self.recent)
        ms = sum(m for _, m in self.recent) / len(self.recent)
        return peak, 10.0 * math.log10(max(ms, 1e-12))


# --------------------------------------------------------------------------- receivers, transmitters


class _Readings:
    """A target's readings stream (rf or status) once a second at its own phase."""

    def __init__(
        self,
        sim: StationSimulator,
        target: TargetSettings,
        stream: _Stream,
        faults: list[Fault],
        audio: _Audio | None,
    ) -> None:
        self.sim = sim
        self.t = target
        self.stream = stream
        self.faults = faults
        self.audio = audio
        self.rng = np.random.default_rng(_seed(sim.seed, target.name, "readings"))
        self.phase = float(self.rng.uniform(0.05, 0.95))
        self.n = 0
        r = self.rng
        self.d1 = _Drift(r, 600.0, 0.6, 2.5)
        self.d2 = _Drift(r, 900.0, 0.4, 0.8)
        self.d3 = _Drift(r, 1800.0, 2.0, 4.0)
        self.offset_khz = float(r.uniform(-0.4, 0.4))
        self.vswr = float(r.uniform(1.10, 1.20))

    def param(self, name: str, default: float) -> float:
        v = self.t.params.get(name)
        return float(v) if isinstance(v, int | float) else default

    def due(self, t0: float, t1: float) -> float | None:
        t = self.n + self.phase
        return t if t0 <= t < t1 else None

    def emit(self, t: float, out: list[Message]) -> None:
        self.n += 1
        values, info = self.values(t)
        ts = self.sim.options.start + t
        payload = encode_readings(ts, self.stream.next_seq(), values, info=info or None)
        self.stream.send(out, t, payload, self.sim.json_type, None)

    def values(self, t: float) -> tuple[dict[str, float | bool], dict[str, str]]:
        # Every reading draws the same random numbers whatever the faults, so a fault
        # changes what it should and leaves the rest of the telemetry as it would be.
        drift = (self.d1.step(), self.d2.step(), self.d3.step())
        z = self.rng.standard_normal(8)
        u = self.rng.random(3)
        vacated = _first(self.faults, t, VacatedEmission)
        if vacated is not None:
            return vacated_values(vacated, float(z[0]))
        kind = self.t.kind
        if kind is TargetKind.FM:
            return self._fm(t, drift, z, u)
        if kind is TargetKind.DTV:
            return self._dtv(t, drift, z), {}
        return self._tx(t, drift, z), {}

    def _fm(
        self, t: float, drift: tuple[float, float, float], z: NDArray[np.float64], u: NDArray[np.float64]
    ) -> tuple[dict[str, float | bool], dict[str, str]]:
        rf = self.param("rf_reference_dbuv", DEFAULT_FM_RF_DBUV) + drift[0] + 0.25 * z[0]
        low = _first(self.faults, t, LowRF)
        if low is not None:
            rf -= low.drop_db
        lost = _first(self.faults, t, CarrierLoss) or _first(self.faults, t, Hiss)
        pilot = lost is None and _first(self.faults, t, PilotLoss) is None
        if self.audio is not None:
            peak, rms_db = self.audio.programme_stats()
        else:
            peak, rms_db = 0.6 + (prog.PEAK_CEILING - 0.6) * u[0], prog.PROGRAMME_DBFS
        audio_mod = min(_AUDIO_MOD, _AUDIO_MOD * peak / prog.PEAK_CEILING)
        mod = min(101.5, audio_mod + (_PILOT_MOD if pilot else 0.0) + _RDS_MOD + 0.3 * z[1])
        mpx = min(-1.0, max(-9.0, -2.0 + 0.5 * (rms_db - prog.PROGRAMME_DBFS))) + 0.08 * z[2]
        over = _first(self.faults, t, Overmodulation)
        if over is not None:
            mod = over.percent + 4.0 * (u[1] - 0.5)
            mpx = over.mpx_power_dbr + 0.08 * z[2]
        offset = self.offset_khz + 0.03 * z[3]
        info: dict[str, str] = {}
        if lost is not None:
            rf = lost.rf_level_dbuv + 0.8 * z[0]
            mod = 25.0 + 20.0 * u[1]  # the receiver measures its own noise
            mpx = -6.0 + 0.5 * z[2]
            offset = 3.0 * z[3]
        else:
            wrong = _first(self.faults, t, WrongRdsPi)
            pi = self.t.params.get("rds_pi")
            info["rds_pi"] = wrong.pi if wrong is not None else str(pi) if pi else derived_pi(self.t.name)
        values: dict[str, float | bool] = {
            "rf_level_dbuv": round(rf, 2),
            "freq_offset_khz": round(offset, 3),
            "peak_deviation_khz": round(mod * 0.75, 2),
            "modulation_percent": round(mod, 2),
            "mpx_power_dbr": round(mpx, 2),
            "pilot_present": pilot,
            "pilot_deviation_khz": round(6.75 + 0.03 * z[4], 3) if pilot else 0.0,
        }
        return values, info

    def _dtv(
        self, t: float, drift: tuple[float, float, float], z: NDArray[np.float64]
    ) -> dict[str, float | bool]:
        a, b = drift[0], drift[1]
        rf = self.param("rf_reference_dbuv", DEFAULT_DTV_RF_DBUV) + 0.8 * a + 0.2 * z[0]
        low = _first(self.faults, t, LowRF)
        if low is not None:
            rf -= low.drop_db
        carrier = _first(self.faults, t, CarrierLoss)
        if carrier is not None:
            rf = carrier.rf_level_dbuv + 0.8 * z[0]
        locked = carrier is None and _first(self.faults, t, DtvLockLoss) is None
        values: dict[str, float | bool] = {"rf_level_dbuv": round(rf, 2), "lock": locked}
        if locked:
            cn = min(38.0 + 0.5 * b, rf - 14.0) + 0.2 * z[1]
            mer = min(34.0 + b + 0.15 * z[2], cn - 1.5)
            degraded = _first(self.faults, t, MerDegradation)
            if degraded is not None:
                mer = degraded.mer_db + 0.3 * z[2]
            ber_pre = min(0.1, 10.0 ** (-(mer - 8.0) / 2.5))
            ber_post = 0.0 if ber_pre < 1e-2 else min(0.01, ber_pre * 1e-3)
            values.update(
                {
                    "mer_db": round(mer, 2),
                    "cn_db": round(cn, 2),
                    "ber_pre": float(f"{ber_pre:.3g}"),
                    "ber_post": float(f"{ber_post:.3g}"),
                    "freq_offset_khz": round(self.offset_khz + 0.02 * z[3], 3),
                }
            )
        return values

    def _tx(
        self, t: float, drift: tuple[float, float, float], z: NDArray[np.float64]
    ) -> dict[str, float | bool]:
        a, b, c = drift
        rated = self.param("rated_power_w", DEFAULT_RATED_POWER_W)
        forward = rated * (1.0 + 0.008 * a + 0.003 * z[0])
        drop = _first(self.faults, t, PowerDrop)
        if drop is not None:
            forward *= drop.ratio
        s = self.vswr + 0.02 * b
        spike = _first(self.faults, t, VswrSpike)
        if spike is not None:
            s = spike.vswr + 0.02 * z[1]
        gamma = (s - 1.0) / (s + 1.0)
        reflected = forward * gamma * gamma
        temp = 45.0 + c + 0.1 * z[2]
        for f in self.faults:
            if isinstance(f, PaOverTemperature) and f.at <= t < f.end + f.ramp:
                ramp = max(f.ramp, 1e-9)
                share = min(1.0, (t - f.at) / ramp) if t < f.end else max(0.0, 1.0 - (t - f.end) / ramp)
                temp += (f.celsius - 45.0) * share
        return {
            "forward_power_w": round(max(forward, 0.0), 1),
            "reflected_power_w": round(max(reflected, 0.0), 2),
            "pa_temp_celsius": round(temp, 2),
            "on_air": True,
            "fault": _first(self.faults, t, TxFault) is not None,
        }


def vacated_values(f: VacatedEmission, z: float) -> tuple[dict[str, float | bool], dict[str, str]]:
    """What a receiver tuned to a vacated channel reads while something still emits there
    (``z``: a standard normal draw for the level's noise)."""
    level = f.level_dbuv + 0.5 * z
    if f.channel is not None:
        return {"rf_level_dbuv": round(level, 2), "lock": level > 30.0}, {"channel": f.channel}
    return (
        {"rf_level_dbuv": round(level, 2), "pilot_present": level > 30.0},
        {"frequency_mhz": f"{f.frequency_mhz:.1f}"},
    )


# --------------------------------------------------------------------------- extra sources


class _VacatedSource:
    """Readings for a vacated channel that is not a configured target."""

    def __init__(self, sim: StationSimulator, fault: VacatedEmission, stream: _Stream) -> None:
        self.sim = sim
        self.fault = fault
        self.stream = stream
        self.rng = np.random.default_rng(_seed(sim.seed, fault.target, "vacated"))
        self.n = 0
        self.phase = float(self.rng.uniform(0.05, 0.95))

    def emit(self, t0: float, t1: float, out: list[Message]) -> None:
        f = self.fault
        t = f.at + self.n + self.phase
        if t0 <= t < t1 and t < f.end:
            self.n += 1
            values, info = vacated_values(f, float(self.rng.standard_normal()))
            payload = encode_readings(self.sim.options.start + t, self.stream.next_seq(), values, info=info)
            self.stream.send(out, t, payload, self.sim.json_type, None)


class _Malformed:
    """Broken messages on a target's topics, besides its good ones."""

    def __init__(self, sim: StationSimulator, fault: MalformedPayloads, target: TargetSettings) -> None:
        self.sim = sim
        self.fault = fault
        base = f"{sim.prefix}/{sim.station}/{target.name}"
        self.json_topic = f"{base}/{'status' if target.kind is TargetKind.TX else 'rf'}"
        self.block_topic = f"{base}/audio" if target.kind is not TargetKind.TX else None
        self.target = target.name
        kinds = list(fault.kinds or MALFORMATIONS)
        if sim.options.protocol != "5":
            kinds = [k for k in kinds if k not in ("bad_content_type", "missing_property")]
        if self.block_topic is None or "audio" not in target.accepted_streams:
            kinds = [
                k
                for k in kinds
                if k not in ("bad_header", "bad_length", "bad_content_type", "missing_property")
            ]
            self.block_topic = None
        self.kinds = kinds
        self.n = 0

    def emit(self, t0: float, t1: float, out: list[Message]) -> None:
        f = self.fault
        while self.kinds:
            t = f.at + self.n / f.rate
            if t >= t1 or t >= f.end:
                return
            kind = self.kinds[self.n % len(self.kinds)]
            self.n += 1
            if t >= t0:
                out.append(self.message(t, kind))

    def message(self, t: float, kind: str) -> Message:
        ts = self.sim.options.start + t
        seq = 1_000_000 + self.n
        ctype = self.sim.json_type
        props: list[tuple[str, str]] | None = None
        topic = self.json_topic
        stream = topic.rsplit("/", 1)[1]
        body: bytes
        if kind == "bad_json":
            body = f'{{"ts": {ts}, "seq": {seq}, "values": {{"rf_level_dbuv": 6'.encode()
        elif kind == "missing_field":
            body = json.dumps({"ts": ts, "values": {"rf_level_dbuv": 61.0}}).encode()
        elif kind == "bad_type":
            body = json.dumps({"ts": ts, "seq": seq, "values": "rf_level_dbuv=61"}).encode()
        elif kind == "bad_key":
            body = json.dumps({"ts": ts, "seq": seq, "values": {"RF Level": 61.0}}).encode()
        elif kind == "non_finite":
            body = f'{{"ts": {ts}, "seq": {seq}, "values": {{"rf_level_dbuv": NaN}}}}'.encode()
        elif kind == "bad_seq":
            body = json.dumps({"ts": ts, "seq": -seq, "values": {"rf_level_dbuv": 61.0}}).encode()
        elif kind == "absurd_timestamp":
            body = json.dumps({"ts": ts + 86_400.0, "seq": seq, "values": {"rf_level_dbuv": 61.0}}).encode()
        else:
            assert self.block_topic is not None
            topic, stream = self.block_topic, "audio"
            rate = self.sim.options.audio_rate
            samples = np.zeros((16, 2), dtype=np.float32)
            if kind == "bad_header":
                body, ctype = MAGIC + bytes(10), None
            elif kind == "bad_length":
                body = HEADER.pack(MAGIC, 1, 2, 2, rate, seq, ts) + bytes(3)
                ctype = None
            elif kind == "bad_content_type":
                body, _, props = encode_block_v5(samples, ts=ts, seq=seq, rate=rate, l16=True)
                ctype = "audio/L16;rate=fast;channels=2"
            else:  # missing_property
                body, ctype, _ = encode_block_v5(samples, ts=ts, seq=seq, rate=rate, l16=True)
                props = [("ts", repr(ts))]
        return Message(t, topic, body, ctype, props, self.target, stream)


# --------------------------------------------------------------------------- the simulator


class StationSimulator:
    """Every message of one station under one scenario, in time order (see the module doc)."""

    def __init__(self, settings: Settings, scenario: Scenario, options: SimOptions) -> None:
        self.settings = settings
        self.scenario = scenario
        self.options = options
        self.seed = scenario.seed if options.seed is None else options.seed
        self.station = settings.station.name
        self.prefix = settings.mqtt.topic_prefix
        self.v5 = options.protocol == "5"
        self.json_type: str | None = "application/json" if self.v5 else None
        self.duration = scenario.duration
        start = options.start
        self._audio: list[tuple[_Audio, _Stream]] = []
        self._readings: list[_Readings] = []
        self._streams: list[_Stream] = []
        self._extra: list[_VacatedSource | _Malformed] = []
        configured = {t.name for t in settings.targets}
        for t in settings.targets:
            faults = scenario.target_faults(t.name)
            streams = t.accepted_streams
            audio: _Audio | None = None
            if (
                t.kind in (TargetKind.FM, TargetKind.DTV)
                and "audio" in streams
                and (options.audio_targets is None or t.name in options.audio_targets)
            ):
                audio = _Audio(self, t, faults)
                s = _Stream(self, t.name, "audio", round(start / BLOCK_SECONDS), faults)
                self._audio.append((audio, s))
                self._streams.append(s)
            readings = "status" if t.kind is TargetKind.TX else "rf"
            if readings in streams:
                s = _Stream(self, t.name, readings, int(start), faults)
                self._readings.append(_Readings(self, t, s, faults, audio))
                self._streams.append(s)
            for f in faults:
                if isinstance(f, MalformedPayloads):
                    self._extra.append(_Malformed(self, f, t))
        for f in scenario.timeline:
            if isinstance(f, VacatedEmission) and f.target not in configured:
                s = _Stream(self, f.target, "rf", int(start + f.at), [])
                self._extra.append(_VacatedSource(self, f, s))
                self._streams.append(s)
        eb_faults = [f for f in scenario.timeline if isinstance(f, EbOffline | EbEndpointFault | EbDispatch)]
        n_eb = scenario.eb.endpoints if options.eb_endpoints is None else options.eb_endpoints
        regions = scenario.eb.regions if options.eb_regions is None else options.eb_regions
        self.eb = EbFleet(
            n_eb,
            regions,
            heartbeat=scenario.eb.heartbeat,
            start=start,
            prefix=self.prefix,
            seed=self.seed,
            faults=eb_faults,
        )
        self._eb_rng = np.random.default_rng(_seed(self.seed, "eb-events"))

    @property
    def audio_targets(self) -> list[str]:
        return [s.target for _, s in self._audio]

    def _block(
        self, audio: _Audio, stream: _Stream, t_block: float, t_send: float, out: list[Message]
    ) -> None:
        x = audio.block(t_block)
        ts = self.options.start + t_block
        seq = stream.next_seq()
        if self.v5:
            body, ctype, props = encode_block_v5(x, ts=ts, seq=seq, rate=audio.rate, l16=True)
            stream.send(out, t_send, body, ctype, props)
        else:
            stream.send(out, t_send, encode_block_v311(x, ts=ts, seq=seq, rate=audio.rate), None, None)

    def window(self, k: int) -> list[Message]:
        """The messages of step ``k``: scenario time ``[k·0.1, (k+1)·0.1)``, in time order."""
        t0 = k * BLOCK_SECONDS
        t1 = (k + 1) * BLOCK_SECONDS
        out: list[Message] = []
        if k >= 1:
            # The block that ended at t0 goes out just after (a gateway sends a block when
            # it is complete); each target's gateway has its own small delay.
            for i, (audio, stream) in enumerate(self._audio):
                self._block(audio, stream, t0 - BLOCK_SECONDS, t0 + 0.002 + 0.0013 * (i % 10), out)
        for r in self._readings:
            t = r.due(t0, t1)
            if t is not None:
                r.emit(t, out)
        for e in self._extra:
            e.emit(t0, t1, out)

        def eb_emit(t: float, topic: str, endpoint: str, stream: str, payload: bytes) -> None:
            out.append(Message(t, topic, payload, self.json_type, None, endpoint, stream))

        self.eb.emit(t0, t1, eb_emit, self._eb_rng)
        out.sort(key=lambda m: m.t)
        return out

    def messages(self, until: float | None = None) -> Iterator[Message]:
        """Every message from scenario time 0 to the end of the scenario (or ``until``), in
        time order. Call once: the simulator's state advances as it goes."""
        end = self.duration if until is None else min(until, self.duration)
        k = 0
        while k * BLOCK_SECONDS < end - 1e-9:
            yield from self.window(k)
            k += 1
        tail: list[Message] = []
        for s in self._streams:
            s.flush(tail)
        yield from sorted(tail, key=lambda m: m.t)
