"""The HTTP endpoint: ``/metrics`` for Prometheus, plus health probes.

Served by aiohttp inside the daemon's event loop, so the collector reads state
without racing the pipeline. TLS when ``[metrics] tls_cert_file``/``tls_key_file``
are set.
"""

from __future__ import annotations

import base64
import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import bcrypt
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INDEX = """<!doctype html><html><head><title>anbo</title></head><body>
<h1>anbo (安播)</h1><p>Station {station}.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="-/healthy">/-/healthy</a></li>
<li><a href="-/ready">/-/ready</a></li></ul></body></html>
"""


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class MetricsServer:
    """Start/stop an aiohttp site; ``port`` is the bound port (useful with port 0)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        station: Callable[[], str],
        ready: Callable[[], bool],
        problems: Callable[[], list[str]] = list,
        notices: Callable[[], list[str]] = list,
        extra_routes: list[web.AbstractRouteDef] | None = None,
        index: bool = True,
        basic_auth: tuple[str, str] | None = None,
        metrics_open: bool = False,
    ) -> None:
        self.registry = registry
        self._station = station
        self._ready = ready
        self._problems = problems
        self._notices = notices
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        #: (user, bcrypt hash) required on every request, or None.
        self.basic_auth = basic_auth
        self.metrics_open = metrics_open
        self._accepted: dict[str, bool] = {}
        self.app = web.Application(middlewares=[self._auth])
        self.app.add_routes(
            [
                *([web.get("/", self._index)] if index else []),
                web.get("/metrics", self._metrics),
                web.get("/-/healthy", self._healthy),
                web.get("/-/ready", self._readyz),
                *(extra_routes or []),
            ]
        )

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.basic_auth is None or (self.metrics_open and request.path == "/metrics"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        ok = self._accepted.get(header)
        if ok is None:
            ok = self._check(header)
            if len(self._accepted) > 64:  # bounded: bcrypt is slow, so answers are cached
                self._accepted.clear()
            self._accepted[header] = ok
        if not ok:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="anbo"'})
        return await handler(request)

    def _check(self, header: str) -> bool:
        assert self.basic_auth is not None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep or not hmac.compare_digest(user, self.basic_auth[0]):
            return False
        try:
            return bcrypt.checkpw(password.encode(), self.basic_auth[1].encode())
        except ValueError:
            return False

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        log.info("metrics endpoint listening", host=host, port=self.port, tls=ssl_context is not None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=INDEX.format(station=self._station()), content_type="text/html")

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="anbo is healthy.\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            problems = self._problems()
            if problems:  # e.g. the outage ledger cannot be written: monitoring goes on, but say so
                return web.Response(
                    status=503,
                    text="anbo is monitoring but not healthy:\n" + "".join(f"- {p}\n" for p in problems),
                )
            notices = self._notices()  # e.g. a corrupt alert state file set aside at start
            return web.Response(text="anbo is ready.\n" + "".join(f"- note: {n}\n" for n in notices))
        return web.Response(status=503, text="anbo is not ready: no broker subscription yet.\n")
