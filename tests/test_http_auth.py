"""Optional HTTP basic auth of the listener (bcrypt hash), /metrics optionally open."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import bcrypt
from prometheus_client import CollectorRegistry

from monitor.http import MetricsServer


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _statuses(metrics_open: bool) -> dict[str, int]:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    server = MetricsServer(
        CollectorRegistry(),
        station=lambda: "s",
        ready=lambda: True,
        basic_auth=("duty", hashed),
        metrics_open=metrics_open,
    )
    await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    out: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for name, path, auth in (
                ("none", "/", None),
                ("good", "/", _basic("duty", "s3cret")),
                ("bad_password", "/", _basic("duty", "nope")),
                ("bad_user", "/", _basic("root", "s3cret")),
                ("metrics", "/metrics", None),
            ):
                async with session.get(base + path, headers=auth or {}) as r:
                    out[name] = r.status
            async with session.get(base + "/", headers={"Authorization": "Basic !!!"}) as r:
                out["garbage"] = r.status
    finally:
        await server.stop()
    return out


def test_basic_auth_guards_the_listener() -> None:
    s = asyncio.run(_statuses(metrics_open=False))
    assert s == {
        "none": 401,
        "good": 200,
        "bad_password": 401,
        "bad_user": 401,
        "metrics": 401,
        "garbage": 401,
    }


def test_metrics_can_stay_open() -> None:
    s = asyncio.run(_statuses(metrics_open=True))
    assert s["metrics"] == 200 and s["none"] == 401 and s["good"] == 200
