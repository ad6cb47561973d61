"""The MQTT fast path (monitor.mqttio) without a broker: the buffered socket under paho's
real packet reader, the write cork and the write path on a real event loop, the lean v5
properties against paho's own, and the version guard."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import selectors
import socket
import ssl
import struct
import types
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from monitor import mqttio
from monitor.mqttio import READ_SIZE, BufferedSocket, LeanProperties, UnsupportedClientError


# --------------------------------------------------------------------------- fakes
class FakeSocket:
    """A non-blocking stream socket: ``inbox`` is what the kernel holds for us."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.eof = False
        self.sent = bytearray()
        self.send_calls = 0
        self.capacity: int | None = None  # bytes the kernel takes before EAGAIN; None: all
        self.recv_sizes: list[int] = []
        self.closed = False

    def recv(self, n: int) -> bytes:
        self.recv_sizes.append(n)
        if not self.inbox:
            if self.eof:
                return b""
            raise BlockingIOError(errno.EAGAIN, "would block")
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def readable(self) -> bool:
        """What a level-triggered epoll reports."""
        return bool(self.inbox) or self.eof

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self.send_calls += 1
        k = len(data) if self.capacity is None else min(self.capacity, len(data))
        if k == 0:
            raise BlockingIOError(errno.EAGAIN, "would block")
        if self.capacity is not None:
            self.capacity -= k
        self.sent += bytes(data[:k])
        return k

    def fileno(self) -> int:
        return 42

    def setblocking(self, flag: bool) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeTLSSocket(FakeSocket):
    """TLS: bytes are decrypted a record at a time into the TLS layer's own buffer, which
    epoll cannot see (``pending()``); an empty kernel buffer is SSLWantReadError."""

    def __init__(self, record: int) -> None:
        super().__init__()
        self.record = record
        self.decrypted = bytearray()

    def recv(self, n: int) -> bytes:
        self.recv_sizes.append(n)
        if not self.decrypted:
            if not self.inbox:
                if self.eof:
                    return b""
                raise ssl.SSLWantReadError("The operation did not complete (read)")
            self.decrypted += self.inbox[: self.record]
            del self.inbox[: self.record]
        data = bytes(self.decrypted[:n])
        del self.decrypted[:n]
        return data

    def pending(self) -> int:
        return len(self.decrypted)


# --------------------------------------------------------------------------- packets
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass(frozen=True)
class Pub:
    topic: str
    payload: bytes
    qos: int
    mid: int
    content_type: str | None = None

    def encode(self, v5: bool) -> bytes:
        t = self.topic.encode()
        body = struct.pack("!H", len(t)) + t
        if self.qos:
            body += struct.pack("!H", self.mid)
        if v5:
            props = b""
            if self.content_type is not None:
                ct = self.content_type.encode()
                props = b"\x03" + struct.pack("!H", len(ct)) + ct
            body += varint(len(props)) + props
        body += self.payload
        return bytes([0x30 | (self.qos << 1)]) + varint(len(body)) + body


class PahoReader:
    """paho's real client reading from a BufferedSocket, driven the way aiomqtt drives it."""

    def __init__(self, fake: FakeSocket, v5: bool) -> None:
        self.fake = fake
        self.sock = BufferedSocket(fake)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5 if v5 else paho.MQTTv311
        )
        self.got: list[Pub] = []
        self.client.on_message = self._on_message
        self.client._sock = self.sock
        self.wakes = 0
        self.refills_per_wake: list[int] = []

    def _on_message(self, client: paho.Client, userdata: object, m: paho.MQTTMessage) -> None:
        props = getattr(m, "properties", None)
        self.got.append(
            Pub(m.topic, bytes(m.payload), m.qos, m.mid if m.qos else 0, getattr(props, "ContentType", None))
        )

    def wake(self) -> None:
        """One reader callback of aiomqtt (``Client._on_socket_open.callback``)."""
        self.wakes += 1
        before = sum(1 for n in self.fake.recv_sizes if n == READ_SIZE)
        while True:
            assert self.client.loop_read() == paho.MQTT_ERR_SUCCESS
            if self.sock.pending() > 0:
                continue
            break
        self.refills_per_wake.append(sum(1 for n in self.fake.recv_sizes if n == READ_SIZE) - before)

    def feed(self, chunk: bytes) -> None:
        """The kernel receives ``chunk``; the event loop wakes the reader while it is readable."""
        self.fake.inbox += chunk
        for _ in range(10_000):
            if not self.fake.readable():
                return
            self.wake()
        raise AssertionError("the reader does not make progress")

    def pubacks(self) -> list[int]:
        sent = bytes(self.fake.sent)
        assert len(sent) % 4 == 0
        mids = []
        for i in range(0, len(sent), 4):
            cmd, length, mid = struct.unpack("!BBH", sent[i : i + 4])
            assert (cmd, length) == (0x40, 2)
            mids.append(mid)
        return mids


def feed_in_chunks(reader: PahoReader, stream: bytes, cuts: Sequence[int]) -> None:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        reader.feed(stream[a:b])


def messages(n: int, v5: bool, size: int = 40) -> list[Pub]:
    return [
        Pub(
            f"anbo/s/t{i % 3}/rf",
            bytes([i % 251]) * (size + i % 7),
            qos=i % 2,
            mid=(i + 1) if i % 2 else 0,
            content_type="application/json" if v5 and i % 4 == 1 else None,
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- reading
@pytest.mark.parametrize("v5", [True, False])
def test_every_split_point_gives_the_same_packets(v5: bool) -> None:
    pubs = messages(4, v5, size=130)  # remaining length takes two bytes
    stream = b"".join(p.encode(v5) for p in pubs)
    for cut in range(len(stream) + 1):
        reader = PahoReader(FakeSocket(), v5)
        feed_in_chunks(reader, stream, [cut])
        assert reader.got == pubs, cut
        assert reader.pubacks() == [p.mid for p in pubs if p.qos == 1]
        assert reader.sock.pending() == 0


@st.composite
def publishes(draw: st.DrawFn) -> tuple[bool, list[Pub]]:
    v5 = draw(st.booleans())
    n = draw(st.integers(1, 25))
    pubs = []
    for i in range(n):
        qos = draw(st.integers(0, 1))
        pubs.append(
            Pub(
                topic=draw(st.sampled_from(["a/b", "anbo/eb/ep000001/status", "anbo/station/fm-97.5/audio"])),
                payload=draw(st.binary(max_size=400)),
                qos=qos,
                mid=i + 1 if qos else 0,
                content_type=draw(st.none() | st.sampled_from(["application/json", "audio/L16"]))
                if v5
                else None,
            )
        )
    return v5, pubs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(publishes(), st.lists(st.integers(0, 20_000), max_size=12))
def test_packets_arrive_whole_and_in_order_however_the_stream_is_cut(
    case: tuple[bool, list[Pub]], cuts: list[int]
) -> None:
    v5, pubs = case
    reader = PahoReader(FakeSocket(), v5)
    feed_in_chunks(reader, b"".join(p.encode(v5) for p in pubs), cuts)
    assert reader.got == pubs
    assert reader.pubacks() == [p.mid for p in pubs if p.qos == 1]
    # One refill (one system call) per wake-up, never more.
    assert max(reader.refills_per_wake) <= 1


def test_a_burst_is_read_with_one_system_call() -> None:
    pubs = messages(200, v5=True)
    reader = PahoReader(FakeSocket(), v5=True)
    reader.feed(b"".join(p.encode(True) for p in pubs))
    assert reader.got == pubs
    assert reader.wakes == 1
    assert reader.fake.recv_sizes == [READ_SIZE]


def test_a_backlog_is_taken_a_buffer_per_wake_up() -> None:
    """Bounded work per wake-up: a backlog much larger than one read is taken in several
    wake-ups (the consumer runs in between), not in one unbounded loop."""
    pubs = messages(3000, v5=True, size=100)
    stream = b"".join(p.encode(True) for p in pubs)
    assert len(stream) > 4 * READ_SIZE
    reader = PahoReader(FakeSocket(), v5=True)
    reader.feed(stream)
    assert reader.got == pubs
    assert reader.wakes >= len(stream) // READ_SIZE
    assert max(reader.refills_per_wake) == 1


@pytest.mark.parametrize("size", [READ_SIZE - 10, READ_SIZE, READ_SIZE + 1, 3 * READ_SIZE + 17])
def test_large_messages_around_the_buffer_size(size: int) -> None:
    pubs = [
        Pub("a/big", bytes(range(256)) * (size // 256) + b"x" * (size % 256), 1, 1),
        Pub("a/small", b"after", 1, 2),
        Pub("a/big2", b"y" * size, 0, 0),
    ]
    stream = b"".join(p.encode(True) for p in pubs)
    for cuts in ([], [1], [3], [READ_SIZE // 2], [len(stream) - 1], list(range(1000, len(stream), 9000))):
        reader = PahoReader(FakeSocket(), v5=True)
        feed_in_chunks(reader, stream, cuts)
        assert reader.got == pubs


def test_end_of_file_after_buffered_packets() -> None:
    fake = FakeSocket()
    pubs = messages(3, v5=False)
    fake.inbox += b"".join(p.encode(False) for p in pubs)
    fake.eof = True
    stream = b"".join(p.encode(False) for p in pubs)
    sock = BufferedSocket(fake)
    data = b""
    while len(data) < len(stream):
        data += sock.recv(7)
    assert data == stream
    with pytest.raises(BlockingIOError):  # this wake-up's one refill is used up
        sock.recv(1)
    assert sock.pending() == 0
    assert sock.recv(1) == b""  # end of file is reported, not swallowed or buffered
    assert sock.recv(1) == b""


def test_end_of_file_reaches_paho_as_a_lost_connection() -> None:
    reader = PahoReader(FakeSocket(), v5=True)
    lost: list[object] = []
    reader.client.on_disconnect = lambda *args: lost.append(args[3])
    pubs = messages(2, v5=True)
    reader.fake.inbox += b"".join(p.encode(True) for p in pubs)
    reader.fake.eof = True
    reader.wake()
    assert reader.got == pubs
    assert reader.client.loop_read() == paho.MQTT_ERR_CONN_LOST  # the next wake-up
    assert lost and reader.fake.closed


def test_no_data_is_would_block_and_changes_nothing() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    assert sock.pending() == 0
    fake.inbox += b"abc"
    assert sock.recv(1) == b"a"
    assert sock.pending() == 2
    assert sock.recv(10) == b"bc"
    # Drained after a refill: "would block" until the wake-up ends (pending() == 0) ...
    fake.inbox += b"d"
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    # ... then the next wake-up reads the socket again.
    assert sock.pending() == 0
    assert sock.recv(1) == b"d"


def test_tls_want_read_reaches_paho_unchanged() -> None:
    fake = FakeTLSSocket(record=5)
    sock = BufferedSocket(fake)
    with pytest.raises(ssl.SSLWantReadError):
        sock.recv(1)


def test_tls_decrypted_bytes_are_always_read() -> None:
    """Bytes the TLS layer has decrypted wake no one up: they count in pending() and are
    read even after this wake-up's refill."""
    fake = FakeTLSSocket(record=5)
    fake.inbox += b"0123456789"
    fake.decrypted += b"ab"
    sock = BufferedSocket(fake)
    assert sock.pending() == 2
    assert sock.recv(1) == b"a"  # refill: "ab"
    assert sock.pending() == 1
    assert sock.recv(5) == b"b"
    assert sock.pending() == 0
    assert sock.recv(3) == b"012"  # new wake-up: the next record
    assert sock.pending() == 2  # "34" is decrypted, in ours
    assert sock.recv(9) == b"34"
    with pytest.raises(BlockingIOError):  # refilled once already, nothing decrypted
        sock.recv(1)


@pytest.mark.parametrize("record", [1, 7, 100, 16384])
def test_tls_records_of_any_size(record: int) -> None:
    pubs = messages(300, v5=True)
    stream = b"".join(p.encode(True) for p in pubs)
    reader = PahoReader(FakeTLSSocket(record), v5=True)
    feed_in_chunks(reader, stream, list(range(0, len(stream), 997)))
    assert reader.got == pubs
    assert reader.pubacks() == [p.mid for p in pubs if p.qos == 1]


# --------------------------------------------------------------------------- writing
def test_corked_writes_leave_in_one_send() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    sock.cork()
    assert sock.send(b"\x40\x02\x00\x01") == 4
    assert sock.send(b"\x40\x02\x00\x02") == 4
    assert fake.send_calls == 0
    sock.uncork()
    assert fake.send_calls == 1
    assert bytes(fake.sent) == b"\x40\x02\x00\x01\x40\x02\x00\x02"
    assert sock.send(b"xyz") == 3  # uncorked: straight through
    assert fake.send_calls == 2


def test_what_the_kernel_refuses_is_kept_in_order() -> None:
    fake = FakeSocket()
    fake.capacity = 5
    sock = BufferedSocket(fake)
    sock.cork()
    sock.send(b"abcdef")
    sock.send(b"ghij")
    sock.uncork()
    assert bytes(fake.sent) == b"abcde"
    assert sock.unsent == 5
    assert sock.send(b"kl") == 2  # queued behind, never overtaking
    assert bytes(fake.sent) == b"abcde"
    fake.capacity = None
    sock.flush()
    assert bytes(fake.sent) == b"abcdefghijkl"
    assert sock.unsent == 0


def test_close_sends_what_is_buffered_first() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    sock.cork()
    sock.send(b"\xe0\x00")  # DISCONNECT: paho closes the socket right after writing it
    sock.close()
    assert bytes(fake.sent) == b"\xe0\x00"
    assert fake.closed


def test_close_on_a_broken_connection_does_not_raise() -> None:
    class Broken(FakeSocket):
        def send(self, data: bytes | bytearray | memoryview) -> int:
            raise BrokenPipeError(errno.EPIPE, "broken pipe")

    fake = Broken()
    sock = BufferedSocket(fake)
    sock.cork()
    sock.send(b"\xe0\x00")
    sock.close()
    assert fake.closed


def test_other_socket_methods_are_the_sockets() -> None:
    fake = FakeSocket()
    sock = BufferedSocket(fake)
    assert sock.fileno() == 42
    assert sock.recv_sizes is fake.recv_sizes  # anything else: delegated
    assert "BufferedSocket" in repr(sock)


# --------------------------------------------------------------------------- v5 properties
user_properties = st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), min_size=1, max_size=3)


@st.composite
def publish_properties(draw: st.DrawFn) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if draw(st.booleans()):
        props.PayloadFormatIndicator = draw(st.integers(0, 1))
    if draw(st.booleans()):
        props.MessageExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props.ContentType = draw(st.text(max_size=20))
    if draw(st.booleans()):
        props.ResponseTopic = draw(st.text(min_size=1, max_size=20))
    if draw(st.booleans()):
        props.CorrelationData = draw(st.binary(max_size=10))
    if draw(st.booleans()):
        props.TopicAlias = draw(st.integers(1, 65535))
    for sid in draw(st.lists(st.integers(1, 268_435_455), max_size=2)):
        props.SubscriptionIdentifier = sid
    for pair in draw(st.none() | user_properties) or []:
        props.UserProperty = pair
    return props


def decoded(cls: type[Properties], packet_type: int, data: bytes) -> tuple[object, ...]:
    """Everything observable about decoding ``data``, errors included."""
    props = cls(packet_type)
    try:
        _, length = props.unpack(data)
    except Exception as exc:  # compared, not handled
        return ("error", type(exc), str(exc))
    return ("ok", length, props.json(), str(props), props.isEmpty(), props.pack())


@given(publish_properties(), st.binary(max_size=30))
def test_lean_properties_decode_like_pahos(props: Properties, payload: bytes) -> None:
    packed = props.pack() + payload
    assert decoded(LeanProperties, PacketTypes.PUBLISH, packed) == decoded(
        Properties, PacketTypes.PUBLISH, packed
    )


@given(
    st.sampled_from(
        [
            PacketTypes.PUBLISH,
            PacketTypes.CONNACK,
            PacketTypes.PUBACK,
            PacketTypes.SUBACK,
            PacketTypes.DISCONNECT,
        ]
    ),
    st.binary(max_size=40),
)
def test_lean_properties_reject_what_paho_rejects(packet_type: int, data: bytes) -> None:
    assert decoded(LeanProperties, packet_type, data) == decoded(Properties, packet_type, data)


def test_lean_properties_share_tables_but_not_values() -> None:
    a = LeanProperties(PacketTypes.PUBLISH)
    b = LeanProperties(PacketTypes.CONNACK)
    a.ContentType = "application/json"
    a.UserProperty = ("k", "v")
    assert not hasattr(b, "ContentType") and b.isEmpty()
    assert a.names is b.names
    with pytest.raises(MQTTException):  # paho's validation still applies
        b.ContentType = "x"
    a.unpack(b"\x00")  # unpack starts afresh
    assert a.isEmpty()


def test_the_packet_decoder_uses_lean_properties() -> None:
    mqttio.install_lean_properties()
    packet = Pub("a/b", b"hello", 1, 9, "application/json").encode(True)
    result = paho_packet.decode_publish(packet[0], packet[2:], MQTTProtocolVersion.MQTTv5)
    assert isinstance(result.properties, LeanProperties)
    assert result.properties.ContentType == "application/json"
    assert (result.topic, result.mid, result.payload) == (b"a/b", 9, b"hello")


# --------------------------------------------------------------------------- the guard
def test_an_unsupported_paho_version_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paho.mqtt.__version__", "2.1.0")
    with pytest.raises(UnsupportedClientError, match=r"paho-mqtt 2\.1\.0 \(supported: 2\.2\.x\)"):
        mqttio.check_supported()


def test_a_missing_hook_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(paho.Client, "_create_socket")
    with pytest.raises(UnsupportedClientError, match=r"Client\._create_socket is missing"):
        mqttio.check_supported()


def test_an_aiomqtt_client_without_the_expected_insides_is_refused() -> None:
    with pytest.raises(UnsupportedClientError, match=r"aiomqtt\.Client\._disconnected is not a Future"):
        mqttio.speed_up(types.SimpleNamespace(_client=paho.Client(CallbackAPIVersion.VERSION2)))  # type: ignore[arg-type]


def test_the_installed_versions_are_supported() -> None:
    mqttio.check_supported()


def test_speed_up_installs_on_a_real_client() -> None:
    async def main() -> aiomqtt.Client:
        client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
        mqttio.speed_up(client)
        return client

    client = asyncio.run(main())
    inner = client._client
    assert inner._create_socket.__name__ == "buffered_socket"
    assert inner.on_socket_register_write.__name__ == "on_register_write"
    assert inner.on_socket_close.__name__ == "on_close"
    assert inner.on_socket_unregister_write is None  # the writer is the flush's alone
    assert inner.on_socket_open == client._on_socket_open  # aiomqtt's reader stays


def test_what_the_kernel_refuses_goes_out_when_the_socket_is_writable() -> None:
    """The write path on a real event loop and kernel socket: paho queues more than the
    socket takes; the flush watches for writability and everything arrives, in order."""
    packets = [bytes([i]) * 100_000 for i in range(40)]  # 4 MB: more than the socket buffers

    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
        mqttio.speed_up(client)
        inner = client._client
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        inner._sock = BufferedSocket(ours)
        for p in packets:
            inner._packet_queue(0x40, p, 0, 1)  # paho calls "register write" once: one flush
        await asyncio.sleep(0.05)
        assert inner._sock.unsent > 0  # the kernel said "enough for now" ...
        assert loop._selector.get_key(ours.fileno()).events & selectors.EVENT_WRITE  # ... so we watch
        received = bytearray()
        expected = b"".join(packets)
        while len(received) < len(expected):
            received += await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 5)
        assert received == expected
        await asyncio.sleep(0.01)
        assert inner._sock.unsent == 0
        with contextlib.suppress(KeyError):  # no longer watched for writability
            assert not loop._selector.get_key(ours.fileno()).events & selectors.EVENT_WRITE
        assert not client._disconnected.done()
        inner._sock_close()
        peer.close()

    asyncio.run(main())


def _fast_client() -> aiomqtt.Client:
    async def main() -> aiomqtt.Client:
        client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
        mqttio.speed_up(client)
        return client

    return asyncio.run(main())


def test_receive_into_hands_on_topic_payload_and_properties() -> None:
    client = _fast_client()
    got: list[mqttio.Received] = []
    mqttio.receive_into(client, got.append)
    inner = client._client
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    message = paho.MQTTMessage(mid=7, topic=b"anbo/s/t/rf")
    message.payload = b'{"ts": 1}'
    message.properties = props
    inner._handle_on_message(message)  # what paho calls for every PUBLISH it decodes
    # A topic that is not UTF-8 (aiomqtt's own callback raised inside paho) is passed on
    # with the bad bytes replaced, for the pipeline to reject and count.
    bad = paho.MQTTMessage(mid=8, topic=b"anbo/s/\xff/rf")
    bad.payload = b"x"
    inner._handle_on_message(bad)
    assert got[0] == ("anbo/s/t/rf", b'{"ts": 1}', props)
    assert got[1][0] == "anbo/s/\ufffd/rf" and got[1][1] == b"x"
    assert client._queue.empty()  # aiomqtt's own queue is no longer fed


def test_paho_debug_lines_are_skipped_unless_debug_is_on(caplog: pytest.LogCaptureFixture) -> None:
    inner = _fast_client()._client
    assert inner.logger is not None  # aiomqtt's
    name = inner.logger.name
    with caplog.at_level("INFO", logger=name):
        inner._easy_log(paho.MQTT_LOG_DEBUG, "Received PUBLISH %s", "x")
        inner._easy_log(paho.MQTT_LOG_WARNING, "something %s", "odd")
    assert [r.getMessage() for r in caplog.records] == ["something odd"]
    caplog.clear()
    with caplog.at_level("DEBUG", logger=name):
        inner._easy_log(paho.MQTT_LOG_DEBUG, "Received PUBLISH %s", "y")
    assert [r.getMessage() for r in caplog.records] == ["Received PUBLISH y"]
    seen: list[str] = []
    inner.on_log = lambda _c, _u, _level, buf: seen.append(buf)
    inner._easy_log(paho.MQTT_LOG_DEBUG, "Sending PUBACK %s", "z")  # an on_log callback sees all
    assert seen == ["Sending PUBACK z"]
