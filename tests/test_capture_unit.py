"""The capture gateway's pure parts: input URLs and ``--input``, block framing, the capture
clock, why an input is lost, ffmpeg's command line, the bounded publish queue, and what
the daemon's own pipeline makes of the gateway's messages."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.capture import (
    CaptureClock,
    CaptureGateway,
    InputRunner,
    parse_input_arg,
    redact,
    resolve_inputs,
)
from gateways.ffmpeg import Cause, detail_text, ffmpeg_command, loss_cause
from monitor.pipeline import Pipeline
from monitor.publisher import MqttPublisher, Outgoing
from monitor.settings import (
    CAPTURE_SCHEMES,
    CaptureSource,
    ConfigError,
    MqttSettings,
    load_settings,
    parse_capture_source,
)
from monitor.stats import Stats
from monitor.wire import MAX_INFO_LEN, Readings, SampleBlock, decode, frame_block_v5, frame_block_v311

NOW = 1_750_000_000.0

# --------------------------------------------------------------------------- input URLs

GOOD = {
    "http://127.0.0.1:8000/news": ("http", "http://127.0.0.1:8000/news"),
    "https://cdn.example/live/news.m3u8": ("https", "https://cdn.example/live/news.m3u8"),
    "udp://239.1.2.3:1234": ("udp", "udp://239.1.2.3:1234"),
    "rtp://239.1.2.3:5004": ("rtp", "rtp://239.1.2.3:5004"),
    "srt://rx.example:9000?mode=caller": ("srt", "srt://rx.example:9000?mode=caller"),
    "rtsp://rx.example/audio": ("rtsp", "rtsp://rx.example/audio"),
    "alsa:hw:1,0": ("alsa", "hw:1,0"),
    "alsa:default": ("alsa", "default"),
    "pulse:": ("pulse", "default"),
    "pulse:alsa_input.usb-0d8c_USB-00.analog-stereo": ("pulse", "alsa_input.usb-0d8c_USB-00.analog-stereo"),
    "file:prog.wav": ("file", "prog.wav"),
    "file:/srv/prog.wav": ("file", "/srv/prog.wav"),
    "file:///srv/prog.wav": ("file", "/srv/prog.wav"),
    "FILE:-odd-name.wav": ("file", "-odd-name.wav"),
}
BAD = {
    "": "empty input URL",
    "news.wav": "unknown input scheme",
    "ftp://host/x": "unknown input scheme",
    "http:/host": "needs http://host",
    "http://": "needs http://host",
    "udp://239.1.2.3": "needs a port",
    "udp://239.1.2.3:99999": "bad port",
    "alsa:": "names its device",
    "alsa:-f": "names its device",
    "file:": "file:PATH",
    "file://host/x.wav": "file:PATH",
    "http://host/a b": "spaces and control characters",
    "file:x\nwav": "spaces and control characters",
}


@pytest.mark.parametrize(("url", "want"), GOOD.items())
def test_good_input_urls(url: str, want: tuple[str, str]) -> None:
    src = parse_capture_source(url)
    assert (src.scheme, src.location) == want


@pytest.mark.parametrize(("url", "why"), BAD.items())
def test_bad_input_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_capture_source(url)


@given(st.text(max_size=120))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        src = parse_capture_source(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert src.scheme in CAPTURE_SCHEMES
        assert src.location and not any(c.isspace() for c in src.location)
        return
    assert message


_segment = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=64)


@given(_segment, st.sampled_from(sorted(GOOD)))
def test_input_argument_splits_at_the_first_equals(target: str, url: str) -> None:
    assert parse_input_arg(f"{target}={url}") == (target, url)


@given(st.text(max_size=80))
def test_input_argument_parses_or_says_why(text: str) -> None:
    try:
        target, url = parse_input_arg(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert target and url and target.strip() + "=" + url in text.strip() + url
        parse_capture_source(url)
        return
    assert message


def test_input_argument_errors() -> None:
    with pytest.raises(ValueError, match="expected TARGET=URL"):
        parse_input_arg("http://host:8000/news")
    with pytest.raises(ValueError, match=r"A-Za-z0-9_\.-"):
        parse_input_arg("fm news=http://host/x")
    with pytest.raises(ValueError, match="unknown input scheme"):
        parse_input_arg("fm-1=news.wav")


def test_redact_hides_a_password() -> None:
    assert redact("http://user:secret@host:8000/news") == "http://user:***@host:8000/news"
    assert redact("http://host:8000/news") == "http://host:8000/news"
    assert redact("alsa:hw:1,0") == "alsa:hw:1,0"


# --------------------------------------------------------------------------- settings

STATION = """
[station]
name = "s1"

[[targets]]
name = "fm-1"
kind = "fm"
service = "News"
frequency_mhz = 97.5

[[targets]]
name = "tx-1"
kind = "tx"
"""


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "anbo.toml"
    path.write_text(STATION + extra)
    return path


def test_capture_section_loads_and_resolves_files(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '\n[capture]\nsample_type = "float32"\n[[capture.inputs]]\ntarget = "fm-1"\nurl = "file:p.wav"\n',
    )
    loaded = load_settings(path)
    (inp,) = loaded.settings.capture.inputs
    assert inp.url == f"file:{tmp_path / 'p.wav'}"  # relative to the config file
    assert loaded.settings.capture.sample_type == "float32"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            '[[capture.inputs]]\ntarget = "fm-2"\nurl = "alsa:hw:0"\n',
            "'fm-2' is not a configured target; did you mean fm-1?",
        ),
        ('[[capture.inputs]]\ntarget = "tx-1"\nurl = "alsa:hw:0"\n', "'tx-1' is a tx target"),
        (
            '[[capture.inputs]]\ntarget = "fm-1"\nurl = "udp://1.2.3.4"\n',
            "capture.inputs[0].url: 'udp://1.2.3.4': a udp input needs a port",
        ),
        (
            '[[capture.inputs]]\ntarget = "fm-1"\nurl = "alsa:hw:0"\n'
            '[[capture.inputs]]\ntarget = "fm-1"\nurl = "alsa:hw:1"\n',
            "more than one input for target fm-1",
        ),
        ("[capture]\nblok = 0.1\n", "capture.blok: unknown key; did you mean block?"),
        ("[capture]\nbackoff_min = 5\nbackoff_max = 1\n", "backoff_min must not exceed backoff_max"),
    ],
)
def test_capture_config_mistakes_get_one_clear_line(tmp_path: Path, extra: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, "\n" + extra))
    assert len(info.value.problems) == 1, info.value.problems
    assert says in info.value.problems[0], info.value.problems


def test_command_line_inputs_replace_and_add(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '\n[[targets]]\nname = "dtv-1"\nkind = "dtv"\nservice = "Mux"\nchannel = "DS-21"\n'
        '\n[capture]\nchannels = 1\n[[capture.inputs]]\ntarget = "fm-1"\nurl = "alsa:hw:0"\nchannels = 2\n',
    )
    loaded = load_settings(path)
    assert [(i.target, i.source.scheme, i.channels) for i in resolve_inputs(loaded)] == [("fm-1", "alsa", 2)]
    specs = resolve_inputs(loaded, [("fm-1", "http://h:8000/x"), ("dtv-1", "file:a.wav")], cwd=Path("/srv"))
    assert [(i.target, i.url, i.channels) for i in specs] == [
        ("fm-1", "http://h:8000/x", 1),
        ("dtv-1", "file:/srv/a.wav", 1),
    ]
    with pytest.raises(ValueError, match="--input tx-1: 'tx-1' is a tx target") as info:
        resolve_inputs(loaded, [("tx-1", "alsa:hw:0"), ("fm-1", "alsa:x"), ("fm-1", "alsa:y")])
    assert "--input fm-1: given twice" in str(info.value)


def test_the_example_config_passes_check_with_its_capture_section() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "anbo.example.toml"
    loaded = load_settings(example)
    assert loaded.settings.capture.inputs, "the example shows capture inputs"


# --------------------------------------------------------------------------- framing


@settings(max_examples=60)
@given(
    st.integers(1, 4800),
    st.integers(1, 8),
    st.sampled_from(["int16le", "float32le"]),
    st.booleans(),
    st.integers(0, 2**62),
    st.integers(0, 2**32 - 1),
)
def test_ffmpeg_bytes_framed_decode_to_the_same_samples(
    frames: int, channels: int, dtype: str, v5: bool, seq: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    if dtype == "int16le":
        codes = rng.integers(-32768, 32768, (frames, channels)).astype("<i2")
        want = codes.astype(np.float32) / 32768.0
    else:
        codes = rng.uniform(-1.0, 1.0, (frames, channels)).astype("<f4")
        want = codes.astype(np.float32)
    body = codes.tobytes()
    ts = NOW + seed / 10**6
    if v5:
        payload, ctype, props = frame_block_v5(
            body, ts=ts, seq=seq, rate=48000, channels=channels, dtype=dtype
        )  # type: ignore[arg-type]
        block = decode(payload, content_type=ctype, user_properties=props, now=NOW + 10**4)
    else:
        payload = frame_block_v311(body, ts=ts, seq=seq, rate=48000, channels=channels, dtype=dtype)  # type: ignore[arg-type]
        block = decode(payload, content_type=None, user_properties=None, now=NOW + 10**4)
    assert isinstance(block, SampleBlock)
    assert block.seq == seq and block.ts == ts and block.rate == 48000
    np.testing.assert_array_equal(block.samples, want)


def test_framing_refuses_partial_frames() -> None:
    with pytest.raises(ValueError, match="whole, non-zero number"):
        frame_block_v5(b"\x00" * 6, ts=NOW, seq=0, rate=48000, channels=2, dtype="int16le")
    with pytest.raises(ValueError, match="whole, non-zero number"):
        frame_block_v311(b"", ts=NOW, seq=0, rate=48000, channels=1)
    with pytest.raises(ValueError, match="channels"):
        frame_block_v311(b"\x00\x00", ts=NOW, seq=0, rate=48000, channels=0)


# --------------------------------------------------------------------------- the clock


def test_clock_is_continuous_live_and_jumps_only_forward() -> None:
    clock = CaptureClock(48000, realtime=True, tolerance=0.5)
    ts = [clock.stamp(4800, NOW + 0.1 * k + 0.003 * (k % 3)) for k in range(1, 11)]  # jittery reads
    assert ts[0] == pytest.approx(NOW)  # 0.1 s block read at NOW + 0.1
    assert np.allclose(np.diff(ts), 0.1)  # continuous, jitter ignored
    late = clock.stamp(4800, NOW + 3.0)  # 1.9 s without data: a jump forward
    assert late == pytest.approx(NOW + 2.9) and clock.resyncs == 1


def test_clock_anchors_a_connect_burst_to_now() -> None:
    clock = CaptureClock(48000, realtime=True)
    clock.anchor(5 * 4800, NOW)  # half a second read at once, the last at NOW
    ts = [clock.stamp(4800, NOW + 0.001 * k) for k in range(5)]
    assert ts[0] == pytest.approx(NOW - 0.5) and ts[-1] + 0.1 == pytest.approx(NOW)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(1, 9600), st.floats(0.0, 2.0), st.sampled_from(["block", "status", "anchor"])),
        min_size=1,
        max_size=60,
    ),
    st.booleans(),
)
def test_clock_never_goes_back_and_never_overlaps(
    steps: list[tuple[int, float, str]], realtime: bool
) -> None:
    clock = CaptureClock(48000, realtime=realtime)
    now = NOW
    last_ts = 0.0
    last_end = 0.0
    for frames, dt, what in steps:
        now += dt
        if what == "anchor":
            clock.anchor(frames, now)
            continue
        if what == "status":
            ts = clock.status_ts(now, flowing=bool(frames % 2))
            assert ts >= last_ts and ts >= last_end - 1e-9
            last_ts = ts
            continue
        ts = clock.stamp(frames, now)
        assert ts >= last_ts  # ts never decreases along the sequence
        assert ts >= last_end - 1e-9  # a block never starts before the previous one ended
        if realtime:
            assert ts >= now - frames / 48000 - clock.tolerance - 1e-9  # never far behind
        last_ts, last_end = ts, ts + frames / 48000


# --------------------------------------------------------------------------- causes, ffmpeg

HTTP, ALSA, FILE = (
    CaptureSource("http", "http://h/x"),
    CaptureSource("alsa", "hw:1,0"),
    CaptureSource("file", "a.wav"),
)


@pytest.mark.parametrize(
    ("source", "delivered", "rc", "stalled", "cause"),
    [
        (HTTP, True, 0, False, Cause.STREAM_ENDED),
        (HTTP, True, 1, False, Cause.STREAM_ENDED),
        (HTTP, False, 1, False, Cause.CONNECT_FAILED),
        (HTTP, True, None, True, Cause.DECODER_STALLED),
        (HTTP, True, -9, False, Cause.INPUT_ERROR),
        (ALSA, False, 1, False, Cause.DEVICE_GONE),
        (ALSA, True, 0, False, Cause.DEVICE_GONE),
        (FILE, True, 0, False, Cause.END_OF_FILE),
        (FILE, True, 255, False, Cause.END_OF_FILE),
        (FILE, False, 1, False, Cause.INPUT_ERROR),
        (FILE, True, -15, False, Cause.INPUT_ERROR),
    ],
)
def test_loss_causes(
    source: CaptureSource, delivered: bool, rc: int | None, stalled: bool, cause: Cause
) -> None:
    assert loss_cause(source, delivered=delivered, returncode=rc, stalled=stalled) is cause


@given(st.lists(st.text(max_size=200), max_size=5))
def test_detail_is_printable_and_short(lines: list[str]) -> None:
    text = detail_text(lines, "ffmpeg exited (1)")
    assert text and text.isprintable() and len(text) <= MAX_INFO_LEN


def test_detail_drops_ffmpeg_addresses() -> None:
    assert (
        detail_text(["[http @ 0x55d0c1] HTTP error 404 Not Found", ""], "x")
        == "[http] HTTP error 404 Not Found"
    )


def test_ffmpeg_commands() -> None:
    live = ffmpeg_command("ffmpeg", FILE, rate=48000, channels=2, sample_type="int16")
    assert live[live.index("-i") - 1] == "-re" and live[live.index("-i") + 1] == "file:a.wav"
    fast = ffmpeg_command("ffmpeg", FILE, rate=48000, channels=2, sample_type="float32", realtime=False)
    assert "-re" not in fast and fast[fast.index("-f", fast.index("-i")) + 1] == "f32le"
    alsa = ffmpeg_command("ffmpeg", ALSA, rate=44100, channels=1, sample_type="int16")
    assert alsa[alsa.index("-i") - 2 : alsa.index("-i") + 2] == ["-f", "alsa", "-i", "hw:1,0"]
    assert alsa[alsa.index("-ac") + 1] == "1" and alsa[alsa.index("-ar") + 1] == "44100"
    http = ffmpeg_command("ffmpeg", HTTP, rate=48000, channels=2, sample_type="int16", io_timeout=5)
    assert http[http.index("-rw_timeout") + 1] == "5000000" and http[-1] == "pipe:1"
    assert http[http.index("-f", http.index("-i")) + 1] == "s16le"


# --------------------------------------------------------------------------- the publish queue


def test_a_full_queue_drops_the_oldest_and_counts_per_target() -> None:
    pub = MqttPublisher.from_settings(MqttSettings(), client_id="t", capacity=3)
    for i in range(10):
        pub.offer(Outgoing("a/b/c/audio", bytes([i]), key="fm-1" if i % 2 else "fm-2"))
    assert pub.queued == 3
    assert [m.payload for m in pub._queue] == [bytes([7]), bytes([8]), bytes([9])]
    assert pub.stats.dropped == {"fm-2": 4, "fm-1": 3} and pub.stats.offered == 10


def test_the_publisher_families_are_the_shared_ones_with_station_gateway_target(tmp_path: Path) -> None:
    loaded = load_settings(_config(tmp_path, ""))
    gw = CaptureGateway(loaded, resolve_inputs(loaded, [("fm-1", "http://h:8000/x")]))
    gw.publisher.offer(Outgoing("a/b/fm-1/audio", b"x", key="fm-1"))
    base = {"station": loaded.settings.station.name, "gateway": "capture"}
    get = gw.registry.get_sample_value
    assert get("anbo_gateway_published_messages_total", {**base, "target": "fm-1"}) == 0.0
    assert get("anbo_gateway_dropped_messages_total", {**base, "target": "fm-1"}) == 0.0
    assert get("anbo_gateway_publish_queue_messages", base) == 1.0
    assert get("anbo_gateway_mqtt_connection_errors_total", {**base, "reason": "refused"}) == 0.0
    assert get("anbo_gateway_up", {**base, "target": "fm-1"}) == 0.0
    assert (
        get("anbo_capture_dropped_messages_total", {**base, "target": "fm-1"}) is None
    )  # one name, one place


# --------------------------------------------------------------------------- what the daemon sees


def test_the_daemons_pipeline_keeps_blocks_and_status_in_one_sequence(tmp_path: Path) -> None:
    loaded = load_settings(_config(tmp_path, ""))
    spec = resolve_inputs(loaded, [("fm-1", "http://h:8000/x")])[0]
    seen: list[object] = []
    pipe = Pipeline(
        loaded.settings, Stats(), consumers=[lambda t, s, p, rx: seen.append(p)], wall=lambda: NOW
    )
    for v5 in (True, False):
        pub = MqttPublisher.from_settings(loaded.settings.mqtt, client_id="t", capacity=100)
        start = NOW if v5 else NOW + 50  # the second run: a restarted gateway, later
        ticks = iter(np.arange(start, start + 40, 0.1))

        def wall(ticks=ticks) -> float:  # type: ignore[no-untyped-def]
            return float(next(ticks))

        runner = InputRunner(
            spec,
            loaded.settings.capture,
            pub,
            topic="anbo/s1/fm-1/audio",
            v5=v5,
            wall=wall,
        )
        runner._up()
        for _ in range(3):
            runner._publish_block(b"\x01\x00" * 2 * runner.block_frames)
        runner._lost(Cause.STREAM_ENDED, "http://h:8000/x: Input/output error", 1.0)
        for m in pub._queue:
            pipe.handle(m.topic, m.payload, m.content_type, m.user_properties, rx=0.0)
    state = pipe.targets["fm-1"].streams["audio"]
    assert state.gaps == 0 and state.resets == 1 and state.accepted == 10  # 2 × (up, 3 blocks, lost)
    assert state.unknown_values == 0
    assert state.values["audio_input_lost"] == 1.0
    assert state.info == {
        "audio_input_cause": "stream_ended",
        "audio_input_detail": "http://h:8000/x: Input/output error",
    }
    blocks = [p for p in seen if isinstance(p, SampleBlock)]
    assert len(blocks) == 6 and all(b.samples.shape == (4800, 2) for b in blocks)
    assert sum(isinstance(p, Readings) for p in seen) == 4
