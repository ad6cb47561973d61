"""An MQTT broker inside the demo process: amqtt, pure Python, MQTT 3.1.1.

Only for ``anbo demo`` on a machine that has nothing else; stations run a real broker
(Mosquitto) and anbo connects to it like any other client.
"""

from __future__ import annotations

import logging
import socket
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start/stop an amqtt broker on a loopback port (a free one unless given)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported here: only the demo needs it

        # amqtt logs every connection at INFO; the demo's view is the place to look.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
