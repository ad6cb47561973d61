"""The MQTT client's hot path, made cheaper: batched socket reads and writes, lighter v5 properties.

At fleet rates (100 000 endpoints, ~1 700 messages/s) most of the receiver's CPU went
into the MQTT client, not into anbo. paho-mqtt 2.x, driven by aiomqtt 2.x, pays per
message:

- three or four ``recv`` system calls (``Client._packet_read`` reads one byte of
  command, one byte per remaining-length byte, then the rest) and one event-loop
  wake-up, because ``loop_read`` reads one packet per call;
- for QoS 1, one ``send`` per PUBACK, plus (through aiomqtt's write callback) a
  thread-safe wake-up of the event loop, an ``add_writer`` and a ``remove_writer``
  per burst;
- for MQTT v5, building a ``Properties`` object whose constructor rebuilds paho's
  lookup tables (~15 µs, more than decoding the whole message).

:func:`speed_up` installs three remedies on one ``aiomqtt.Client``:

1. paho's socket is wrapped, as paho creates it, in :class:`BufferedSocket`: ``recv``
   is served from a buffer refilled by one large ``recv``, and ``pending()`` reports the
   buffered bytes, so aiomqtt's reader callback (which loops ``while sock.pending()``,
   meant for TLS) takes every packet of a burst in one wake-up with one system call.
   The buffer also corks writes: the PUBACKs of a burst leave in one ``send``.
2. paho's "register write" callback becomes a plain ``call_soon`` of one flush on the
   event loop thread (thread-safe wake-up only when paho calls from aiomqtt's connect
   thread); the socket is watched for writability only while the kernel refuses bytes.
   aiomqtt's reader, its keepalive task and its other callbacks stay as they are.
3. (process-wide, once) paho's packet decoder builds v5 properties with
   :class:`LeanProperties`: paho's own class, sharing its constant lookup tables
   instead of rebuilding them per packet. Parsing itself is paho's, unchanged.
4. paho's two debug lines per message ("Received PUBLISH", "Sending PUBACK") are
   skipped before they reach :mod:`logging` unless its logger is enabled for DEBUG
   (or an ``on_log`` callback is set); every other level goes through paho's own
   ``_easy_log`` as before.

:func:`receive_into` (optional, for a consumer of its own such as anbo's ingest) then
replaces aiomqtt's per-message callback, which wraps every paho message in an
``aiomqtt.Message`` and a validated ``aiomqtt.Topic`` for ``client.messages``, with a
call ``put((topic, payload, properties))``: the same three facts, without the two
objects. ``client.messages`` is then no longer fed.

All of this touches private attributes of aiomqtt (``_client``, ``_loop``,
``_disconnected``) and of paho (``Client._create_socket``, ``_packet.Properties``).
They are all named here and only here; :func:`check_supported` verifies them and the
versions it was written for (aiomqtt 2.x with paho-mqtt 2.2.x) and raises
:class:`UnsupportedClientError` naming what is missing, so an upgrade fails at start-up,
loudly, instead of silently misbehaving or losing the speed-up. anbo's consumer waits on
``aiomqtt.Client._disconnected`` (see :func:`disconnected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

import aiomqtt
import paho.mqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

#: What :func:`speed_up` was written against (major.minor of each, and the private
#: attributes it uses). Anything else: :class:`UnsupportedClientError`.
SUPPORTED_PAHO = ((2, 2),)
SUPPORTED_AIOMQTT = ((2,),)

#: Bytes asked of the kernel per refill: large enough for a whole burst of small
#: messages, below glibc's mmap threshold so that each refill stays a cheap allocation.
READ_SIZE = 64 * 1024


class UnsupportedClientError(RuntimeError):
    """The installed aiomqtt / paho-mqtt is not the one the fast path was written for."""


class SocketLike(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...
    def send(self, data: bytes | bytearray | memoryview, /) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def setblocking(self, flag: bool, /) -> None: ...


class BufferedSocket:
    """paho's socket, read in large chunks and written in whole bursts.

    **Reading.** ``recv(n)`` returns up to ``n`` bytes from the buffer; an empty buffer
    is refilled with one ``recv(READ_SIZE)`` of the real socket (whose exceptions,
    ``BlockingIOError``, ``ssl.SSLWantReadError``, ``OSError``, and end of file ``b""``
    reach paho unchanged). A request of ``READ_SIZE`` or more on an empty buffer (the
    rest of a large message) goes straight to the socket. ``pending()`` is the number
    of buffered bytes, plus the TLS layer's own decrypted-but-unread bytes.

    One wake-up takes at most one refill: once the buffer has been refilled and emptied
    again, ``recv`` answers ``BlockingIOError`` (paho: "no more for now") until
    ``pending()`` has reported 0, which is how aiomqtt's reader ends a wake-up. What the
    kernel still holds wakes the event loop again, so a long backlog (a persistent
    session's queue after a restart) is taken a buffer at a time, interleaved with the
    consumer, instead of in one unbounded loop. Bytes the TLS layer has already
    decrypted are always read, since no wake-up would come for them.

    **Writing.** Between :meth:`cork` and :meth:`uncork`, ``send`` appends to a buffer
    and reports everything sent; ``uncork`` sends the lot in one call. Bytes the kernel
    refuses stay buffered (:attr:`unsent`) and go first on the next write or
    :meth:`flush`; later sends queue behind them, keeping the order on the wire.

    Everything else (``fileno``, ``close``, ``setblocking``, ``setsockopt``, ...) is the
    real socket's.
    """

    __slots__ = ("_buf", "_corked", "_out", "_pos", "_refilled", "_ssl_pending", "sock")

    def __init__(self, sock: SocketLike) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0
        self._refilled = False
        # Only TLS sockets have their own buffer of decrypted bytes.
        self._ssl_pending: Callable[[], int] | None = getattr(sock, "pending", None)
        self._out = bytearray()
        self._corked = False

    # -- reading ----------------------------------------------------------------------
    def recv(self, bufsize: int) -> bytes:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail == 0:
            if self._refilled and not (self._ssl_pending is not None and self._ssl_pending()):
                self._refilled = False
                raise BlockingIOError(errno.EAGAIN, "read buffer drained; more on the next wake-up")
            if bufsize >= READ_SIZE:
                return self.sock.recv(bufsize)
            data = self.sock.recv(READ_SIZE)
            self._refilled = bool(data)  # end of file (b"") stays end of file
            if len(data) <= bufsize:
                return data
            self._buf = data
            self._pos = bufsize
            return data[:bufsize]
        if bufsize >= avail:
            self._buf = b""
            self._pos = 0
            return buf[pos:] if pos else buf
        self._pos = pos + bufsize
        return buf[pos : pos + bufsize]

    def pending(self) -> int:
        n = len(self._buf) - self._pos
        if self._ssl_pending is not None:
            n += self._ssl_pending()
        if n == 0:
            self._refilled = False
        return n

    # -- writing ----------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self._corked or self._out:
            self._out += data
            if not self._corked:
                self.flush()
            return len(data)
        return self.sock.send(data)

    def cork(self) -> None:
        self._corked = True

    def uncork(self) -> None:
        """Send what was written while corked (what the kernel refuses stays in :attr:`unsent`)."""
        self._corked = False
        if self._out:
            self.flush()

    @property
    def unsent(self) -> int:
        return len(self._out)

    def flush(self) -> None:
        """Send buffered bytes; those the kernel does not take now stay buffered."""
        out = self._out
        while out:
            try:
                n = self.sock.send(out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            if n <= 0:
                return
            del out[:n]

    # -- everything else ---------------------------------------------------------------
    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def close(self) -> None:
        """Close the socket, first handing the kernel what is still buffered (paho closes
        right after writing DISCONNECT, which must not be lost in the cork)."""
        self._corked = False
        if self._out:
            with contextlib.suppress(OSError):  # the connection is gone anyway
                self.flush()
        self._buf = b""
        self._pos = 0
        self._out.clear()
        self.sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def __repr__(self) -> str:
        buffered = len(self._buf) - self._pos
        return f"BufferedSocket({self.sock!r}, buffered={buffered}, unsent={len(self._out)})"


# ------------------------------------------------------------------------ v5 properties
_PROTOTYPE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


class LeanProperties(Properties):
    """paho's ``Properties``, sharing its constant lookup tables instead of rebuilding them.

    paho's constructor rebuilds the property-name and property-type tables (through its
    validating ``__setattr__``) for every packet, and ``unpack`` starts by deleting every
    property one could have set. Here the tables are the prototype's (paho never changes
    them) and a fresh object has nothing to clear. Reading and validating properties is
    paho's own code.
    """

    def __init__(self, packetType: int) -> None:  # noqa: N803  (paho's name)
        d = self.__dict__
        d["packetType"] = packetType
        d["types"] = _PROTOTYPE.types
        d["names"] = _PROTOTYPE.names
        d["properties"] = _PROTOTYPE.properties

    def clear(self) -> None:
        if len(self.__dict__) > 4:  # anything beyond the four table attributes
            super().clear()  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------ installation
def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for p in text.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_supported(client: aiomqtt.Client | None = None) -> None:
    """Raise :class:`UnsupportedClientError` unless every assumption of this module holds."""
    problems: list[str] = []
    paho_v, aiomqtt_v = paho.mqtt.__version__, aiomqtt.__version__
    if _version(paho_v) not in SUPPORTED_PAHO:
        problems.append(
            f"paho-mqtt {paho_v} (supported: "
            + ", ".join(".".join(map(str, v)) + ".x" for v in SUPPORTED_PAHO)
            + ")"
        )
    if _version(aiomqtt_v)[:1] not in SUPPORTED_AIOMQTT:
        problems.append(f"aiomqtt {aiomqtt_v} (supported: 2.x)")
    for owner, name in (
        (mqtt.Client, "_create_socket"),
        (mqtt.Client, "_easy_log"),
        (mqtt.Client, "on_message"),
        (mqtt.Client, "loop_write"),
        (mqtt.Client, "want_write"),
        (mqtt.Client, "on_socket_register_write"),
        (paho_packet, "decode_publish"),
        (paho_packet, "Properties"),
    ):
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    packet_props = getattr(paho_packet, "Properties", None)
    if packet_props is not None and not (
        isinstance(packet_props, type) and issubclass(packet_props, Properties)
    ):
        problems.append("paho.mqtt._packet.Properties is not paho's Properties class")
    if client is not None:
        for name, kind in (
            ("_client", mqtt.Client),
            ("_loop", asyncio.AbstractEventLoop),
            ("_disconnected", asyncio.Future),
        ):
            if not isinstance(getattr(client, name, None), kind):
                problems.append(f"aiomqtt.Client.{name} is not a {kind.__name__}")
    if problems:
        raise UnsupportedClientError(
            "anbo's MQTT fast path (monitor/mqttio.py) does not support the installed MQTT client: "
            + "; ".join(problems)
            + ". Install the versions anbo pins, or update monitor/mqttio.py."
        )


_lean_properties_installed = False


def install_lean_properties() -> None:
    """Make paho's packet decoder build :class:`LeanProperties` (process-wide, idempotent)."""
    global _lean_properties_installed
    if _lean_properties_installed:
        return
    check_supported()
    setattr(paho_packet, "Properties", LeanProperties)  # noqa: B010  (not re-exported by paho)
    _lean_properties_installed = True


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """aiomqtt's "connection lost" future of the current connection (new on every connect)."""
    return client._disconnected


def retrieve_disconnect_error(client: aiomqtt.Client) -> BaseException | None:
    """Take the exception of a connection lost unexpectedly, if any, after ``async with client``.

    aiomqtt sets it on its "disconnected" future and, when nobody awaits that future
    (``__aexit__`` returns early, a reconnect replaces it), asyncio later prints
    "Future exception was never retrieved ... MqttCodeError('Unexpected disconnection')".
    The loss itself is already handled (logged, counted) by the caller.
    """
    future = getattr(client, "_disconnected", None)
    if not isinstance(future, asyncio.Future):
        return None
    if not future.done():
        # Cancelled mid-connection (a shutdown): paho may still report the disconnection
        # after we are gone; take that exception when it comes, so nothing is printed.
        future.add_done_callback(_consume)
        return None
    return None if future.cancelled() else future.exception()


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class SessionFlag:
    """The CONNACK's session-present flag of the client's latest connection.

    aiomqtt 2.x (up to 2.5 at least) receives paho's ``ConnectFlags`` in its
    ``_on_connect`` callback and ignores them; :func:`watch_session` wraps that callback
    (paho's ``Client.on_connect``, set by aiomqtt's constructor) to keep the flag.
    """

    __slots__ = ("present",)

    def __init__(self) -> None:
        #: None until a CONNACK arrived; then whether the broker kept our session.
        self.present: bool | None = None


def watch_session(client: aiomqtt.Client) -> SessionFlag:
    """Record every CONNACK's session-present flag of ``client`` (call before connecting)."""
    paho: mqtt.Client = client._client
    original = paho.on_connect
    if original is None:
        raise UnsupportedClientError("aiomqtt did not install paho's on_connect callback")
    flag = SessionFlag()

    def on_connect(c: mqtt.Client, userdata: object, flags: Any, *rest: Any) -> None:
        flag.present = bool(getattr(flags, "session_present", False))
        original(c, userdata, flags, *rest)

    paho.on_connect = on_connect
    return flag


def speed_up(client: aiomqtt.Client) -> None:
    """Install the buffered socket and the cheap write path on ``client`` (before connecting).

    Must be called on the thread of the event loop the client belongs to.
    """
    check_supported(client)
    install_lean_properties()
    paho: mqtt.Client = client._client
    loop: asyncio.AbstractEventLoop = client._loop
    loop_thread = threading.get_ident()
    create_socket = paho._create_socket
    on_socket_close = paho.on_socket_close
    writer_fd = -1  # the fd we watch for writability, if any

    def buffered_socket() -> BufferedSocket:
        return BufferedSocket(cast("SocketLike", create_socket()))

    def stop_watching() -> None:
        nonlocal writer_fd
        if writer_fd >= 0:
            if threading.get_ident() == loop_thread:
                loop.remove_writer(writer_fd)
            else:  # paho closing the old socket in aiomqtt's connect thread
                loop.call_soon_threadsafe(loop.remove_writer, writer_fd)
            writer_fd = -1

    def fail(exc: Exception) -> None:
        # What aiomqtt's own write callback does: the connection is broken.
        stop_watching()
        lost = client._disconnected
        if not lost.done():
            lost.set_exception(exc)

    def flush() -> None:
        """Write everything paho has queued, in one ``send``; watch the socket for
        writability only while the kernel has not taken it all."""
        nonlocal writer_fd
        try:
            sock = paho.socket()
            if sock is None:  # closed meanwhile
                stop_watching()
                return
            cork = sock if isinstance(sock, BufferedSocket) else None
            if cork is not None:
                cork.cork()
            try:
                paho.loop_write()  # paho writes every queued packet (into the cork)
            finally:
                if cork is not None:
                    cork.uncork()
            if (cork is not None and cork.unsent) or paho.want_write():
                writer_fd = sock.fileno()
                loop.add_writer(writer_fd, flush)
            else:
                stop_watching()
        except Exception as exc:
            fail(exc)

    def on_register_write(_c: mqtt.Client, _userdata: object, _sock: object) -> None:
        # paho calls this once per burst (until its "unregister write"), from our loop
        # or, while connecting, from aiomqtt's executor thread.
        if threading.get_ident() == loop_thread:
            loop.call_soon(flush)
        else:
            loop.call_soon_threadsafe(flush)

    def on_close(c: mqtt.Client, userdata: object, sock: Any) -> None:
        # Before the fd is closed (and perhaps reused): forget it, as aiomqtt's own
        # callback does for the reader.
        stop_watching()
        if on_socket_close is not None:
            on_socket_close(c, userdata, sock)

    easy_log = paho._easy_log

    def lean_easy_log(level: int, fmt: str, *args: Any) -> None:
        if level == mqtt.MQTT_LOG_DEBUG and paho.on_log is None:
            logger = paho.logger
            if logger is None or not logger.isEnabledFor(logging.DEBUG):
                return
        easy_log(level, fmt, *args)  # type: ignore[arg-type]

    paho._easy_log = lean_easy_log  # type: ignore[method-assign]
    paho._create_socket = buffered_socket  # type: ignore[method-assign]
    paho.on_socket_register_write = on_register_write
    # The writer is flush's alone: aiomqtt's "unregister" would remove it while bytes
    # are still unsent in the cork.
    paho.on_socket_unregister_write = None
    paho.on_socket_close = on_close


#: What :func:`receive_into` hands on per message: topic, payload, v5 properties (or None).
Received = tuple[str, bytes, "Properties | None"]


def receive_into(client: aiomqtt.Client, put: Callable[[Received], None]) -> None:
    """Hand every message ``client`` receives to ``put`` as ``(topic, payload, properties)``.

    Replaces aiomqtt's ``on_message`` callback on paho (set by aiomqtt's constructor), so
    ``client.messages`` is no longer fed: for a consumer that reads ``put``'s queue. A
    topic that is not valid UTF-8 (which aiomqtt's callback would raise on, inside paho)
    is passed on with the invalid bytes replaced, for the consumer to reject and count.
    Call before connecting, after :func:`speed_up` (it checks the same assumptions).
    """
    check_supported(client)
    paho: mqtt.Client = client._client

    def on_message(_c: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = bytes(message._topic).decode("utf-8", "replace")
        # paho's decoder always gives bytes (its type says bytes | bytearray)
        put((topic, cast("bytes", message.payload), getattr(message, "properties", None)))

    paho.on_message = on_message
