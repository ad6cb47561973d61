"""``anbo capture``: audio inputs → the wire contract's PCM blocks over MQTT.

One process per station; one :class:`InputRunner` per input (``[[capture.inputs]]`` or
``--input target=URL``), each running ffmpeg as a subprocess (:mod:`gateways.ffmpeg`)
that decodes the source to raw interleaved PCM of the configured rate, channels and
sample type on a pipe. The runner reads the pipe in whole blocks (``[capture] block``
seconds) without ever blocking the event loop (asyncio's non-blocking pipes), stamps each
block with the capture clock (:class:`CaptureClock`) and the next number of the target's
one gap-free sequence, and offers it to the shared :class:`monitor.publisher.MqttPublisher`
(:mod:`monitor.publisher`; QoS 1, bounded: a slow broker costs counted drops, never unbounded memory) for
``<prefix>/<station>/<target>/audio``.

Between the blocks, on the same stream and sequence, the runner publishes a status
reading (catalogue: ``audio_input_lost``, ``audio_input_cause``, ``audio_input_detail``)
when the input comes up or is lost, and every ``status_interval`` seconds. Input lost
(stream ended, device gone, no audio for ``stall_timeout``, ffmpeg failing): no more
audio, a status saying why (the daemon's AudioLost fires at once with that cause), one
log line, and a new attempt after a jittered exponential backoff (``backoff_min`` …
``backoff_max``). ffmpeg's own messages go through structlog, rate-limited per input.

A file input plays in real time (``-re``) unless ``fast``; it plays once, and the process
ends when every input has ended (only files can). The gateway serves its own
``/metrics`` (``[capture] listen``): ``anbo_gateway_*`` per input, ``anbo_capture_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from gateways.ffmpeg import OUTPUT_FORMATS, Cause, detail_text, ffmpeg_command, loss_cause
from monitor.http import MetricsServer
from monitor.ingest import backoff_delay
from monitor.publisher import MqttPublisher, Outgoing, PublisherCollector
from monitor.sdnotify import Notifier
from monitor.settings import (
    CaptureInput,
    CaptureSettings,
    CaptureSource,
    LoadedSettings,
    capture_target_problem,
    parse_capture_source,
    parse_listen,
)
from monitor.wire import (
    JSON_CONTENT_TYPE,
    SEGMENT_RE,
    SampleFormat,
    encode_readings,
    frame_block_v5,
    frame_block_v311,
    sample_width,
)

__all__ = [
    "CaptureClock",
    "CaptureGateway",
    "InputRunner",
    "InputSpec",
    "parse_input_arg",
    "resolve_inputs",
]

log = structlog.get_logger("anbo.capture")

#: In fast mode, block time stamps may run at most this far ahead of the wall clock
#: (the daemon refuses more than its max_future_s, 300 s by default): beyond it, pace.
FAST_MAX_LEAD_S = 240.0
#: A live input's first blocks are held while they come faster than real time (the
#: server's burst on connect), at most this long, to stamp them from the wall clock.
MAX_HOLD_S = 2.0
#: ffmpeg gets this long after stopping before it is killed.
STOP_GRACE_S = 2.0


# --------------------------------------------------------------------------- inputs


def parse_input_arg(text: str) -> tuple[str, str]:
    """``target=URL`` (``--input``) → (target, url); ``ValueError`` says what is wrong."""
    target, sep, url = text.partition("=")
    target = target.strip()
    if not sep or not target:
        raise ValueError(f"{text[:80]!r}: expected TARGET=URL, e.g. fm-news-97.5=http://host:8000/news")
    if SEGMENT_RE.fullmatch(target) is None:
        raise ValueError(f"{target[:80]!r}: a target name matches [A-Za-z0-9_.-]{{1,64}}")
    parse_capture_source(url)
    return target, url


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input as the gateway runs it (settings defaults applied)."""

    target: str
    url: str
    source: CaptureSource
    rate: int
    channels: int


def resolve_inputs(
    loaded: LoadedSettings, overrides: Sequence[tuple[str, str]] = (), *, cwd: Path | None = None
) -> list[InputSpec]:
    """The inputs to run: ``overrides`` (``--input``, files relative to ``cwd``) replace
    the config's inputs for the same target and add the others. ``ValueError`` lists
    every problem (an unknown target, a target given twice)."""
    settings = loaded.settings
    cap = settings.capture
    inputs: dict[str, CaptureInput] = {i.target: i for i in cap.inputs}
    seen: set[str] = set()
    problems: list[str] = []
    for target, url in overrides:
        if target in seen:
            problems.append(f"--input {target}: given twice")
            continue
        seen.add(target)
        problem = capture_target_problem(settings, target)
        if problem is not None:
            problems.append(f"--input {target}: {problem}")
            continue
        src = parse_capture_source(url)
        if src.is_file and not Path(src.location).is_absolute():
            url = f"file:{(cwd or Path.cwd()) / src.location}"
        inputs[target] = CaptureInput(target=target, url=url)
    if problems:
        raise ValueError("\n".join(problems))
    return [
        InputSpec(i.target, i.url, i.source, i.rate or cap.rate, i.channels or cap.channels)
        for i in inputs.values()
    ]


def redact(url: str) -> str:
    """``url`` without a password (for logs and labels)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        cred, _, host = rest.partition("@")
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


# --------------------------------------------------------------------------- the clock


class CaptureClock:
    """Time stamps of one input's blocks: continuous, close to the wall clock, never backwards.

    A block of ``frames`` read at wall time ``now`` started at most ``now − frames/rate``.
    Live (``realtime``), a block starts exactly where the previous one ended, so the
    daemon's detectors see one continuous signal; only when that falls more than
    ``tolerance`` behind the wall clock (data lost, a stall, a source clock slower than
    ours) does it jump forward to the wall clock (``resyncs`` counts the jumps). It never
    moves backwards: the daemon drops a block that starts before the end of the one
    before it as late, and ``ts`` must not decrease along the sequence. So a connection is
    anchored with care: :meth:`anchor` says that the audio read so far (the server's
    burst on connect, read faster than real time) ends *now*. Not live (a file
    ``--fast``): frame-counted from the first block, running ahead of the wall clock.
    """

    def __init__(self, rate: int, *, realtime: bool, tolerance: float = 0.5) -> None:
        self.rate = rate
        self.realtime = realtime
        self.tolerance = tolerance
        self.resyncs = 0
        self._next: float | None = None
        self._floor = 0.0

    def restart(self) -> None:
        """A new connection: the next block is anchored to the wall clock again."""
        self._next = None

    @property
    def next(self) -> float | None:
        """Where the next block would start (the end of the last), None after a restart."""
        return self._next

    def anchor(self, frames: int, now: float) -> None:
        """The next ``frames`` frames (read already) end at ``now``: stamp them from there."""
        self._next = max(now - frames / self.rate, self._floor)

    def stamp(self, frames: int, now: float) -> float:
        dur = frames / self.rate
        wall_start = now - dur
        if self._next is None:
            ts = wall_start
        elif self.realtime and wall_start - self._next > self.tolerance:
            ts = wall_start
            self.resyncs += 1
        else:
            ts = self._next
        ts = max(ts, self._floor)
        self._next = self._floor = ts + dur  # the next block, or reading, starts here or later
        return ts

    def status_ts(self, now: float, *, flowing: bool) -> float:
        """Time stamp of a status reading: while audio flows the end of the last block
        (the next block starts there, no gap), else now (never before the last block's end)."""
        if flowing and self._next is not None:
            ts = max(self._next, self._floor)
        else:
            ts = max(now, self._next or 0.0, self._floor)
        self._floor = ts
        return ts

    def lead(self, now: float) -> float:
        """How far the next block's start is ahead of ``now`` (fast mode's pacing)."""
        return 0.0 if self._next is None else self._next - now


# --------------------------------------------------------------------------- one input


class State(StrEnum):
    STARTING = "starting"
    UP = "up"
    LOST = "lost"
    ENDED = "ended"


@dataclass(slots=True)
class InputStats:
    blocks: int = 0
    published: int = 0
    status_messages: int = 0
    restarts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None
    latency_sum: float = 0.0
    latency_count: int = 0


class InputRunner:
    """Runs one input: ffmpeg attempts, blocks, status readings, backoff."""

    def __init__(
        self,
        spec: InputSpec,
        settings: CaptureSettings,
        publisher: MqttPublisher,
        *,
        topic: str,
        v5: bool,
        fast: bool = False,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.publisher = publisher
        self.topic = topic
        self.v5 = v5
        self.fast = fast and spec.source.is_file
        self.wall = wall
        self._rng = rng
        self.fmt: SampleFormat = OUTPUT_FORMATS[settings.sample_type][1]
        self.frame_bytes = spec.channels * sample_width(self.fmt)
        self.block_frames = max(1, round(settings.block * spec.rate))
        self.clock = CaptureClock(spec.rate, realtime=not self.fast)
        self.seq = 0
        self.state = State.STARTING
        self.cause = Cause.NONE
        self.detail = ""
        self.stats = InputStats()
        self._stderr: deque[str] = deque(maxlen=8)
        self.command = ffmpeg_command(
            settings.ffmpeg,
            spec.source,
            rate=spec.rate,
            channels=spec.channels,
            sample_type=settings.sample_type,
            realtime=not self.fast,
            io_timeout=max(settings.stall_timeout, 5.0),
        )

    @property
    def name(self) -> str:
        return self.spec.target

    # -- messages -------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _publish_block(self, data: bytes) -> None:
        frames = len(data) // self.frame_bytes
        if self.fmt == "float32le":
            x = np.frombuffer(data, dtype="<f4")
            if not np.isfinite(x).all() or np.abs(x).max() > 1.0e3:  # the wire refuses such blocks
                data = np.clip(np.nan_to_num(x, posinf=1.0, neginf=-1.0), -16.0, 16.0).astype("<f4").tobytes()
        ts = self.clock.stamp(frames, self.wall())
        seq = self._next_seq()
        rate, ch = self.spec.rate, self.spec.channels
        end = ts + frames / rate
        if self.v5:
            payload, ctype, props = frame_block_v5(
                data, ts=ts, seq=seq, rate=rate, channels=ch, dtype=self.fmt
            )
            msg = Outgoing(self.topic, payload, ctype, props, key=self.name, on_done=self._confirmed(end))
        else:
            payload = frame_block_v311(data, ts=ts, seq=seq, rate=rate, channels=ch, dtype=self.fmt)
            msg = Outgoing(self.topic, payload, key=self.name, on_done=self._confirmed(end))
        self.stats.blocks += 1
        self.stats.last_success = self.wall()
        self.publisher.offer(msg)

    def _confirmed(self, end: float) -> Callable[[Outgoing], None]:
        def done(_msg: Outgoing) -> None:
            st = self.stats
            st.published += 1
            # From the capture of the block's last frame to the broker's PUBACK.
            latency = self.wall() - end
            if latency >= 0 and not self.fast:
                st.latency_sum += latency
                st.latency_count += 1

        return done

    def publish_status(self) -> None:
        """The input's state as a status reading on the audio stream (same sequence)."""
        if self.state is State.STARTING:
            return
        lost = self.state is not State.UP
        ts = self.clock.status_ts(self.wall(), flowing=not lost)
        # While up the detail is empty: the last loss's detail must not linger in the daemon.
        info = {"audio_input_cause": self.cause.value, "audio_input_detail": ""}
        if lost:
            info["audio_input_detail"] = self.detail or self.cause.value
        payload = encode_readings(ts, self._next_seq(), {"audio_input_lost": lost}, info=info)
        self.stats.status_messages += 1
        self.publisher.offer(
            Outgoing(self.topic, payload, JSON_CONTENT_TYPE if self.v5 else None, None, key=self.name)
        )

    # -- state ----------------------------------------------------------------------
    def _up(self) -> None:
        was = self.state
        self.state, self.cause, self.detail = State.UP, Cause.NONE, ""
        log.info(
            "capture input up",
            target=self.name,
            input=redact(self.spec.url),
            rate=self.spec.rate,
            channels=self.spec.channels,
            after=was.value,
        )
        self.publish_status()

    def _lost(self, cause: Cause, detail: str, retry_in: float | None) -> None:
        self.stats.errors[cause.value] = self.stats.errors.get(cause.value, 0) + 1
        if self.state in (State.LOST, State.ENDED):
            log.debug("capture input still lost", target=self.name, cause=cause.value, detail=detail)
            return
        self.state = State.LOST if retry_in is not None else State.ENDED
        self.cause, self.detail = cause, detail
        event = "capture input lost" if retry_in is not None else "capture input ended"
        (log.warning if retry_in is not None else log.info)(
            event,
            target=self.name,
            input=redact(self.spec.url),
            cause=cause.value,
            detail=detail,
            retry_in_s=None if retry_in is None else round(retry_in, 1),
            seq=self.seq,
        )
        self.publish_status()

    # -- running --------------------------------------------------------------------
    async def run(self) -> None:
        """Attempt, lose, back off, attempt again; returns only when a file has ended."""
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"capture-status-{self.name}")
        attempt = 0
        try:
            while True:
                delivered, cause, detail = await self._attempt()
                if delivered:
                    attempt = 0
                if self.spec.source.is_file and cause in (Cause.END_OF_FILE, Cause.INPUT_ERROR):
                    self._lost(cause, detail, None)
                    return
                delay = backoff_delay(
                    attempt, self.settings.backoff_min, self.settings.backoff_max, self._rng
                )
                attempt += 1
                self._lost(cause, detail, delay)
                await asyncio.sleep(delay)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval)
            self.publish_status()

    async def _attempt(self) -> tuple[bool, Cause, str]:
        """One ffmpeg run: (whether it delivered audio, why it stopped, detail)."""
        self.clock.restart()
        self._stderr.clear()
        self.stats.restarts += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C to the gateway is ours to pass on, not ffmpeg's
            )
        except OSError as exc:
            return (
                False,
                Cause.INPUT_ERROR,
                detail_text([], f"cannot run {self.settings.ffmpeg}: {exc.strerror}"),
            )
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.create_task(self._read_stderr(proc.stderr), name=f"ffmpeg-stderr-{self.name}")
        delivered = stalled = False
        block_bytes = self.block_frames * self.frame_bytes
        # Live: hold the first blocks while they come faster than real time (the server's
        # burst on connect), then stamp them back from now (see CaptureClock.anchor).
        held: list[bytes] | None = [] if self.clock.realtime else None
        hold_max = max(1, round(MAX_HOLD_S / self.settings.block))
        try:
            while True:
                # Probing a network stream takes a while: the first block gets longer.
                timeout = self.settings.stall_timeout * (1 if delivered else 3)
                began = time.monotonic()
                try:
                    async with asyncio.timeout(timeout):
                        data = await proc.stdout.readexactly(block_bytes)
                except asyncio.IncompleteReadError as end:
                    whole = len(end.partial) // self.frame_bytes * self.frame_bytes
                    if held:
                        self._release(held)
                        held = None
                    if whole:
                        delivered = True
                        self._flowing()
                        self._publish_block(end.partial[:whole])
                    break
                except TimeoutError:
                    stalled = True
                    break
                delivered = True
                if held is not None:
                    paced = len(held) > 0 and time.monotonic() - began >= 0.3 * self.settings.block
                    held.append(data)
                    if paced or len(held) >= hold_max:
                        self._release(held)
                        held = None
                    continue
                self._flowing()
                self._publish_block(data)
                if self.fast:
                    # As fast as it decodes, but never faster than the broker takes it
                    # (no drops) nor too far ahead of the wall clock.
                    await self.publisher.wait_below(self.publisher.capacity // 2)
                    lead = self.clock.lead(self.wall())
                    if lead > FAST_MAX_LEAD_S:
                        await asyncio.sleep(lead - FAST_MAX_LEAD_S)
                    elif self.stats.blocks % 20 == 0:
                        await asyncio.sleep(0)  # let the publisher run between bursts
        finally:
            await self._stop(proc, ended=not stalled)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(errors, 1.0)
            errors.cancel()
        rc = proc.returncode
        cause = loss_cause(self.spec.source, delivered=delivered, returncode=rc, stalled=stalled)
        if cause is Cause.DECODER_STALLED:
            detail = f"no audio for {self.settings.stall_timeout:g} s"
        elif cause is Cause.END_OF_FILE:
            detail = "end of file"
        else:
            detail = detail_text(list(self._stderr), f"ffmpeg exited ({rc})")
        return delivered, cause, detail

    def _flowing(self) -> None:
        if self.state is not State.UP:
            self._up()

    def _release(self, held: list[bytes]) -> None:
        """Publish the blocks held at connect, stamped so that the last ends now."""
        self.clock.anchor(sum(len(d) for d in held) // self.frame_bytes, self.wall())
        self._flowing()
        for d in held:
            self._publish_block(d)

    async def _stop(self, proc: asyncio.subprocess.Process, *, ended: bool) -> None:
        """Stop ffmpeg (and reap it). ``ended``: its output ended, so it is exiting on its
        own: wait for that first. (Signalling an exited child makes subprocess reap it
        behind asyncio's child watcher, which then reports a false exit status 255.)"""
        task = asyncio.current_task()
        stopping = task is not None and task.cancelling() > 0  # SIGTERM: no waiting for a self-exit
        if ended and not stopping and proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                # Bounded even so: a child the watcher never reports must not hold a
                # shutdown (systemd would kill us after TimeoutStopSec).
                try:
                    await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
                except TimeoutError:
                    log.error("ffmpeg not reaped after SIGKILL", target=self.name, pid=proc.pid)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line beyond the reader's limit: take what is there
                line = await stream.read(4096)
            if not line:
                return
            text = line.decode("utf-8", errors="replace").rstrip()
            if not text:
                continue
            self._stderr.append(text)
            log.warning("ffmpeg", target=self.name, message=text[:300], rate_key=f"ffmpeg:{self.name}")


# --------------------------------------------------------------------------- metrics


class CaptureCollector(Collector):
    """The capture gateway's metrics per input, read at scrape time (the publisher's
    families: :class:`monitor.publisher.PublisherCollector`)."""

    def __init__(self, gateway: CaptureGateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self.gateway
        station = g.station
        labels = ["station", "gateway", "target"]
        up = GaugeMetricFamily(
            "anbo_gateway_up", "1 while the source delivers (capture: audio flows)", labels=labels
        )
        last = GaugeMetricFamily(
            "anbo_gateway_last_success_timestamp_seconds",
            "Unix time of the source's last success (capture: the last block read)",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "anbo_gateway_errors",
            "Source failures by reason (capture: audio_input_cause)",
            labels=[*labels, "reason"],
        )
        latency = SummaryMetricFamily(
            "anbo_gateway_latency_seconds",
            "capture: from a block's last frame to the broker's confirmation",
            labels=labels,
        )
        blocks = CounterMetricFamily("anbo_capture_blocks", "Audio blocks read", labels=labels)
        restarts = CounterMetricFamily(
            "anbo_capture_ffmpeg_starts", "ffmpeg processes started", labels=labels
        )
        resyncs = CounterMetricFamily(
            "anbo_capture_clock_resyncs",
            "Capture clock jumps to the wall clock (data lost or burst)",
            labels=labels,
        )
        for r in g.runners:
            lv = [station, "capture", r.name]
            st = r.stats
            up.add_metric(lv, 1.0 if r.state is State.UP else 0.0)
            last.add_metric(lv, st.last_success if st.last_success is not None else float("nan"))
            for cause in Cause:
                if cause is not Cause.NONE:
                    errors.add_metric([*lv, cause.value], float(st.errors.get(cause.value, 0)))
            latency.add_metric(lv, count_value=st.latency_count, sum_value=st.latency_sum)
            blocks.add_metric(lv, float(st.blocks))
            restarts.add_metric(lv, float(st.restarts))
            resyncs.add_metric(lv, float(r.clock.resyncs))
        yield from (up, last, errors, latency, blocks, restarts, resyncs)


# --------------------------------------------------------------------------- the gateway


class CaptureGateway:
    """The whole process: publisher, inputs, /metrics; a fixed shutdown order."""

    def __init__(
        self,
        loaded: LoadedSettings,
        inputs: Sequence[InputSpec],
        *,
        fast: bool = False,
        mqtt_url: str | None = None,
        listen: str | None = None,
        systemd: Notifier | None = None,
    ) -> None:
        s = loaded.settings
        self.systemd = systemd or Notifier(None)
        self.settings = s
        self.station = s.station.name
        cap = s.capture
        self.publisher = MqttPublisher.from_settings(
            s.mqtt,
            client_id=cap.client_id or f"anbo-capture-{s.station.name}",
            password=loaded.mqtt_password,
            capacity=cap.queue_blocks,
            brokers=[mqtt_url] if mqtt_url else None,
        )
        v5 = s.mqtt.protocol == "5"
        prefix = s.mqtt.topic_prefix
        self.runners = [
            InputRunner(
                spec,
                cap,
                self.publisher,
                topic=f"{prefix}/{self.station}/{spec.target}/audio",
                v5=v5,
                fast=fast,
            )
            for spec in inputs
        ]
        self.listen = listen or cap.listen
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(CaptureCollector(self))
        self.registry.register(
            PublisherCollector(
                self.publisher,
                station=lambda: self.station,
                gateway="capture",
                targets=lambda: [r.name for r in self.runners],
            )
        )
        self.http = MetricsServer(
            self.registry,
            station=lambda: self.station,
            ready=self.publisher.is_connected,
            index=False,
        )
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def _announce_ready(self) -> None:
        """READY=1 (systemd Type=notify) once /metrics is up and the broker took us."""
        await self.publisher.ever_connected.wait()
        self.systemd.ready(f"publishing {len(self.runners)} inputs to {self.publisher.brokers[0].url}")

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop: a loop that stalls (a blocking call) is restarted."""
        while True:
            self.systemd.watchdog()
            await asyncio.sleep(interval / 2)

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until stopped (SIGTERM/SIGINT) or every input has ended; returns 0.
        Raises OSError if the /metrics listener cannot be opened."""
        loop = asyncio.get_running_loop()
        host, port = parse_listen(self.listen)
        await self.http.start(host, port)  # OSError (port in use...): the caller says so
        if install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
        log.info(
            "anbo capture starting",
            station=self.station,
            inputs=[f"{r.name}={redact(r.spec.url)}" for r in self.runners],
            brokers=[b.url for b in self.publisher.brokers],
            metrics_port=self.http.port,
        )
        sender = asyncio.create_task(self.publisher.run(), name="capture-mqtt")
        helpers = [asyncio.create_task(self._announce_ready(), name="capture-ready")]
        interval = Notifier.watchdog_interval()
        if interval is not None and self.systemd.enabled:
            helpers.append(asyncio.create_task(self._watchdog(interval), name="capture-watchdog"))
        tasks = [asyncio.create_task(r.run(), name=f"capture-{r.name}") for r in self.runners]
        stop = asyncio.create_task(self._stop.wait(), name="capture-stop")
        try:
            pending: set[asyncio.Task[Any]] = set(tasks)
            while pending and not self._stop.is_set():
                done, pending = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop)
                for t in done - {stop}:
                    if not t.cancelled() and t.exception() is not None:
                        log.error("capture input failed", task=t.get_name(), error=repr(t.exception()))
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # What was read is sent before we go (briefly: a dead broker must not hold us).
            try:
                async with asyncio.timeout(5.0):
                    await self.publisher.wait_drained()
            except TimeoutError:
                log.warning(
                    "capture stopping with messages unsent",
                    queued=self.publisher.queued + self.publisher.inflight,
                )
        finally:
            self.systemd.stopping()
            stop.cancel()
            for h in helpers:
                h.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await self.http.stop()
            if install_signal_handlers:
                loop.remove_signal_handler(signal.SIGTERM)
                loop.remove_signal_handler(signal.SIGINT)
        log.info(
            "anbo capture stopped",
            published=self.publisher.stats.published,
            dropped=sum(self.publisher.stats.dropped.values()),
        )
        return 0
