"""The disk holding the ledger fills up during an outage, or is read-only: nothing is lost.

A real `anbo run` keeps its state directory on a small tmpfs mounted by the test (so the
disk really is full: SQLite gets ENOSPC, not a simulated error), fed through a real
Mosquitto, alerting a real Alertmanager whose webhook the test reads. While the disk is
full a carrier loss comes and goes: the daemon goes on monitoring and alerting
(CarrierLoss fires and resolves at Alertmanager), raises LedgerUnavailable, says so in
`/-/ready` (503), and keeps the rows in memory; once space is freed it writes them, the
alert resolves, and the ledger holds the outage with its true start and end.

Mounting a tmpfs needs root (CI runs as root): without it this test fails, it does not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monitor.ledger import IntervalClass, LedgerStore
from tests.alertmanager_server import Alertmanager, Notification, WebhookReceiver
from tests.servers import Mosquitto, free_port
from tests.test_ledger_crash import Feeder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
state_directory = "{state}"
[station]
name = "crash"
[mqtt]
url = "{url}"
keepalive = 5
backoff_min = 0.05
backoff_max = 0.5
[metrics]
listen = "127.0.0.1:{port}"
[probes]
tick = 0.5
[alerting]
alertmanagers = [{{url = "{am}"}}]
resend_interval = 2
[ledger]
heartbeat = 1.0
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "News"
frequency_mhz = 97.5
streams = ["rf"]
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state"
    mount.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"this test mounts a tmpfs and needs root: {out.stderr.strip()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros until the file system is full; the file that fills it."""
    path = directory / "filler"
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)
    return path


def ready(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def outages(path: Path) -> list:  # type: ignore[type-arg]
    store = LedgerStore(path, readonly=True)
    try:
        store.open()
        return store.current(classes=[IntervalClass.OUTAGE])
    finally:
        store.close()


@pytest.fixture
def feeder(mosquitto: Mosquitto) -> Iterator[Feeder]:
    f = Feeder(mosquitto.port)
    f.level = 60.0  # on air
    f.start()
    yield f
    f.stop()


@contextlib.asynccontextmanager
async def station(
    mosquitto: Mosquitto, state: Path, tmp_path: Path
) -> AsyncIterator[tuple[WebhookReceiver, Alertmanager, int]]:
    """A real Alertmanager with its webhook receiver and `anbo run` keeping its state in
    ``state``: (the receiver, the Alertmanager, the daemon's HTTP port)."""
    async with WebhookReceiver() as hook:
        am = Alertmanager(tmp_path / "am", webhook_url=hook.url)
        am.start()
        port = free_port()
        config = tmp_path / "anbo.toml"
        config.write_text(CONFIG.format(state=state, url=mosquitto.url, port=port, am=am.url))
        log = (tmp_path / "anbo.log").open("wb")
        cmd = [sys.executable, "-m", "anbo", "run", "--config", str(config), "--log-format", "json"]
        daemon = await asyncio.to_thread(subprocess.Popen, cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield hook, am, port
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.close()
            am.stop()


async def ledger_unavailable(
    hook: WebhookReceiver, am: Alertmanager, port: int, limit: float
) -> Notification:
    """LedgerUnavailable reaches Alertmanager and /-/ready says so (503)."""
    unavailable = await hook.wait_seen("LedgerUnavailable", "firing", [am], limit=limit)
    assert "ledger.sqlite3" in unavailable.annotations["description"]
    # /-/ready names the first thing missing: on a loaded machine the alert can come
    # before the broker subscription, and "no broker subscription yet" is said first.
    await hook.wait_for(
        lambda: "outage ledger unavailable" in ready(port)[1], 20, "ready says the ledger", [am]
    )
    code, text = ready(port)
    assert code == 503 and "outage ledger unavailable" in text, (code, text)
    return unavailable


async def carrier_loss(hook: WebhookReceiver, am: Alertmanager, feeder: Feeder) -> tuple[float, float]:
    """A carrier loss that comes and goes, alerted as usual: (its onset, its clear)."""
    feeder.level = 10.0
    t_lost = time.time()
    await hook.wait_seen("CarrierLoss", "firing", [am], limit=30)
    await asyncio.sleep(2.0)
    feeder.level = 60.0
    t_back = time.time()
    await hook.wait_seen("CarrierLoss", "resolved", [am], limit=30)
    return t_lost, t_back


async def recovered(hook: WebhookReceiver, am: Alertmanager, port: int) -> float:
    """Seconds until LedgerUnavailable resolves; then /-/ready is 200 again."""
    t0 = time.monotonic()
    await hook.wait_seen("LedgerUnavailable", "resolved", [am], limit=30)
    took = time.monotonic() - t0
    await hook.wait_for(lambda: ready(port)[0] == 200, 20, "ready again", [am])
    return took


def assert_the_outage(state: Path, t_lost: float, t_back: float) -> None:
    """The ledger holds the one outage, with the true onset and clear (first low / first
    good reading, 0.5 s apart), not when `for` elapsed nor when the ledger healed."""
    (outage,) = outages(state / "ledger.sqlite3")
    assert outage.causes == ("CarrierLoss",) and outage.end is not None
    assert t_lost - 0.5 <= outage.start <= t_lost + 1.5, outage.start - t_lost
    assert t_back - 0.5 <= outage.end <= t_back + 1.5, outage.end - t_back


def test_disk_full_during_an_outage_loses_nothing(
    mosquitto: Mosquitto, small_disk: Path, tmp_path: Path, feeder: Feeder
) -> None:
    async def scenario() -> tuple[float, float, float, float]:
        async with station(mosquitto, small_disk, tmp_path) as (hook, am, port):
            await hook.wait_for(lambda: ready(port)[0] == 200, 40, "anbo ready", [am])
            await asyncio.sleep(2.0)  # a few heartbeats written
            filler = await asyncio.to_thread(fill, small_disk)
            t_full = time.monotonic()
            # Monitoring and alerting go on with the ledger down: a carrier loss on a full disk.
            lost = asyncio.create_task(carrier_loss(hook, am, feeder))
            unavailable = await ledger_unavailable(hook, am, port, limit=30)
            detected_s = time.monotonic() - t_full
            assert unavailable.labels["station"] == "crash"
            t_lost, t_back = await lost
            filler.unlink()  # space again
            return t_lost, t_back, detected_s, await recovered(hook, am, port)

    t_lost, t_back, detected_s, recovered_s = asyncio.run(scenario())
    assert_the_outage(small_disk, t_lost, t_back)
    events = [
        json.loads(line) for line in (tmp_path / "anbo.log").read_text().splitlines() if line.startswith("{")
    ]
    names = [e.get("event", "") for e in events]
    assert any(n.startswith("outage ledger cannot be written") for n in names)
    assert any(n.startswith("outage ledger writable again") for n in names)
    assert not any("pending rows over the limit" in n for n in names)  # nothing dropped
    print(
        f"disk full: LedgerUnavailable at Alertmanager {detected_s:.1f} s after the disk filled; "
        f"rows written and the alert resolved {recovered_s:.1f} s after space was freed"
    )


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A state directory on a tmpfs seen through a read-only bind mount (as a file system
    remounted read-only after a disk error looks to anbo); ``remount,rw`` heals it."""
    base, state = tmp_path / "base", tmp_path / "state"
    base.mkdir()
    state.mkdir()
    steps = [
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(base)],
        ["mount", "--bind", str(base), str(state)],
        ["mount", "-o", "remount,bind,ro", str(state)],
    ]
    for step in steps:
        out = subprocess.run(step, capture_output=True, text=True)
        assert out.returncode == 0, f"this test mounts file systems and needs root: {out.stderr.strip()}"
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
        subprocess.run(["umount", "-l", str(base)], check=False)


def test_read_only_state_directory_loses_nothing(
    mosquitto: Mosquitto, read_only_disk: Path, tmp_path: Path, feeder: Feeder
) -> None:
    async def scenario() -> tuple[float, float, float]:
        async with station(mosquitto, read_only_disk, tmp_path) as (hook, am, port):
            # It starts and monitors on a read-only state directory, and says so.
            await ledger_unavailable(hook, am, port, limit=40)
            t_lost, t_back = await carrier_loss(hook, am, feeder)
            out = await asyncio.to_thread(
                subprocess.run,
                ["mount", "-o", "remount,bind,rw", str(read_only_disk)],
                capture_output=True,
                text=True,
            )
            assert out.returncode == 0, out.stderr
            return t_lost, t_back, await recovered(hook, am, port)

    t_lost, t_back, recovered_s = asyncio.run(scenario())
    assert_the_outage(read_only_disk, t_lost, t_back)
    print(
        f"read-only state directory: rows written and LedgerUnavailable resolved {recovered_s:.1f} s after rw"
    )
