"""The systemd notify protocol against a fake NOTIFY_SOCKET (a real AF_UNIX datagram socket)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.sdnotify import Notifier


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)  # only guards against a hang; nothing here waits for it
    return sock


def _recv(sock: socket.socket) -> dict[str, str]:
    lines = sock.recv(4096).decode().split("\n")
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def fake_systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, Notifier]]:
    path = str(tmp_path / "notify")
    sock = _receiver(path)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    yield sock, notifier
    notifier.close()
    sock.close()


def test_ready_alone(fake_systemd: tuple[socket.socket, Notifier]) -> None:
    sock, notifier = fake_systemd
    assert notifier.enabled
    notifier.ready()
    assert sock.recv(4096) == b"READY=1"


def test_ready_with_status_is_one_datagram(fake_systemd: tuple[socket.socket, Notifier]) -> None:
    sock, notifier = fake_systemd
    notifier.ready(status="monitoring 3 targets")
    assert sock.recv(4096) == b"READY=1\nSTATUS=monitoring 3 targets"


def test_status_newlines_cannot_inject_assignments(
    fake_systemd: tuple[socket.socket, Notifier],
) -> None:
    sock, notifier = fake_systemd
    notifier.status("broker down\nSTOPPING=1")
    assert sock.recv(4096) == b"STATUS=broker down STOPPING=1"


def test_reloading_carries_monotonic_usec(fake_systemd: tuple[socket.socket, Notifier]) -> None:
    sock, notifier = fake_systemd
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = _recv(sock)
    assert list(message) == ["RELOADING", "MONOTONIC_USEC"]
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_messages_arrive_in_order(fake_systemd: tuple[socket.socket, Notifier]) -> None:
    sock, notifier = fake_systemd
    notifier.ready()
    notifier.watchdog()
    notifier.status("reloading config")
    notifier.reloading()
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    received = [sock.recv(4096).split(b"\n")[0] for _ in range(7)]
    assert received == [
        b"READY=1",
        b"WATCHDOG=1",
        b"STATUS=reloading config",
        b"RELOADING=1",
        b"READY=1",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"anbo-test-{uuid.uuid4().hex}"
    sock = _receiver("\0" + name)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.enabled
        notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        notifier.close()
        sock.close()


def test_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    sock = _receiver(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier.from_env()
    try:
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        notifier.close()
        sock.close()


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_disabled_without_notify_socket(environ: dict[str, str]) -> None:
    notifier = Notifier.from_env(environ)
    assert not notifier.enabled
    with capture_logs() as logs:
        notifier.ready("x")
        notifier.reloading()
        notifier.watchdog()
        notifier.status("x")
        notifier.stopping()
        notifier.close()
        notifier.close()
    assert logs == []


def test_unsupported_address_disables_with_warning() -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "relative/path"})
    assert not notifier.enabled
    assert logs[0]["event"] == "sdnotify_bad_socket"
    assert logs[0]["log_level"] == "warning"


def test_send_failure_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
    notifier.close()
    assert [entry["event"] for entry in logs] == ["sdnotify_send_failed"] * 2
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["notify"] == "READY=1"
    assert logs[1]["notify"] == "WATCHDOG=1"


def test_full_receive_queue_does_not_block_or_raise(
    fake_systemd: tuple[socket.socket, Notifier],
) -> None:
    _sock, notifier = fake_systemd
    # Nobody reads: the receiver's queue fills and sendto would block (EAGAIN).
    with capture_logs() as logs:
        for _ in range(2000):
            notifier.watchdog()
    assert logs, "expected EAGAIN to be logged once the queue was full"
    assert {entry["event"] for entry in logs} == {"sdnotify_send_failed"}


def test_close_disables(fake_systemd: tuple[socket.socket, Notifier]) -> None:
    _sock, notifier = fake_systemd
    notifier.close()
    assert not notifier.enabled
    notifier.ready()  # no-op, no error


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1500000"}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": ""}, None),
        ({}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": "3.5e6"}, None),
        ({"WATCHDOG_USEC": "garbage"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert Notifier.watchdog_interval(environ) == expected


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.watchdog_interval() == 20.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Notifier.watchdog_interval() is None
