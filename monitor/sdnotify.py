"""The systemd notify protocol (sd_notify(3)), by hand: one datagram per state change.

systemd passes an AF_UNIX datagram socket in ``NOTIFY_SOCKET`` (a path, or an abstract
name written with a leading ``@``). Sends are non-blocking and never raise: the daemon
must keep monitoring even if systemd went away; a failure is logged and forgotten.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify messages; every method is a no-op when disabled (no NOTIFY_SOCKET)."""

    def __init__(self, address: str | None) -> None:
        """``address`` is a filesystem path, or an abstract name starting with NUL."""
        self._address = address
        self._sock: socket.socket | None = None
        if address is not None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as exc:
                log.warning("sdnotify_socket_failed", error=str(exc))
                return
            sock.setblocking(False)
            self._sock = sock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None)
        if raw.startswith("@"):
            return cls("\0" + raw[1:])
        if raw.startswith("/"):
            return cls(raw)
        # sd_notify(3) accepts only these two forms here (vsock: is not supported).
        log.warning("sdnotify_bad_socket", notify_socket=raw)
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def _send(self, *assignments: str) -> None:
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("sdnotify_send_failed", notify=assignments[0], error=str(exc))

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self._send("READY=1")
        else:
            self._send("READY=1", f"STATUS={_one_line(status)}")

    def reloading(self) -> None:
        # systemd >= 253 (Type=notify-reload) wants the CLOCK_MONOTONIC time of the reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={_one_line(text)}")

    @staticmethod
    def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
        """The watchdog timeout in seconds, or None; callers should ping at half of it."""
        env = os.environ if environ is None else environ
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
            pid = env.get("WATCHDOG_PID")
            if pid is not None and int(pid) != os.getpid():
                return None  # meant for another process (e.g. our parent)
        except ValueError:
            return None
        return usec / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
