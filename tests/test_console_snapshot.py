"""The console's snapshot: services followed every tick, the rest built when someone looks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from monitor.console import CLIENT_QUEUE, Console
from monitor.daemon import Daemon
from monitor.settings import load_settings


def counting(console: Console) -> list[int]:
    """Count the console's builds (each reads the migrations once)."""
    calls = [0]
    inner: Callable[[], Any] = console._migrations

    def wrapped() -> Any:
        calls[0] += 1
        return inner()

    console._migrations = wrapped
    return calls


def test_services_are_followed_every_tick_and_the_rest_built_on_demand(write_config) -> None:  # type: ignore[no-untyped-def]
    daemon = Daemon(load_settings(write_config()))
    console = daemon.console
    builds = counting(console)
    clock = [1000.0]
    console._wall = lambda: clock[0]
    for _ in range(3):  # nobody watching
        console.on_tick()
        clock[0] += 1.0
    assert builds[0] == 0
    names = list(daemon.pipeline.targets)
    assert names and set(console._since) == set(names)
    since = {n: s for n, (_, s) in console._since.items()}
    assert set(since.values()) == {1000.0}  # the state seen at the first tick, kept since

    snap = console.snapshot()
    assert builds[0] == 1 and console.snapshot() is snap  # one build until the next tick
    assert [s["name"] for s in snap["services"]] == names
    assert {s["since"] for s in snap["services"]} == {1000.0}
    console.on_tick()
    assert builds[0] == 1 and console.snapshot() is not snap and builds[0] == 2

    q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=CLIENT_QUEUE)
    console._clients.add(q)  # a page open: every tick builds and pushes
    console.on_tick()
    console.on_tick()
    assert builds[0] == 4 and q.qsize() == 2
    event = q.get_nowait().decode()
    assert event.startswith("event: status\ndata: ")
    body = json.loads(event.split("data: ", 1)[1])
    assert [s["name"] for s in body["services"]] == names
