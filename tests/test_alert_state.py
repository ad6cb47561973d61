"""The alert state file (issue #11 item 6): written beside and renamed atomically, one
previous generation kept; a corrupt file is set aside (renamed, never deleted), the
previous generation restored, and it is said in the log and in ``/-/ready``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from structlog.testing import capture_logs

from monitor.daemon import Daemon
from monitor.evaluation import STATE_FILE, Evaluator, previous_generation
from monitor.pipeline import Pipeline
from monitor.settings import Settings, load_settings
from monitor.stats import Stats
from tests.simulator.helpers import station

WALL = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def evaluator(settings: Settings, path: Path, clock: Clock) -> Evaluator:
    return Evaluator(
        settings, Pipeline(settings, Stats()), state_path=path, mono=clock, wall=lambda: WALL + clock.t
    )


def lost_everywhere(tmp_path: Path, extra: str = "") -> tuple[Settings, Path, int]:
    """Run an evaluator until TelemetryLost fires on every target; save twice (two generations)."""
    settings = station(tmp_path, extra=extra)
    path = tmp_path / "state" / STATE_FILE
    clock = Clock()
    ev = evaluator(settings, path, clock)
    for t in (0.0, 1.0, settings.alerting.stale_after + 2):
        clock.t = t
        asyncio.run(ev.tick())
    n = len(ev.engine.active())
    assert n == len(settings.targets) > 0
    ev.save_now()
    return settings, path, n


def test_saving_keeps_one_previous_generation(tmp_path: Path) -> None:
    _, path, _ = lost_everywhere(tmp_path)
    prev = previous_generation(path)
    assert path.exists() and prev.exists()
    assert json.loads(prev.read_text())["version"] == json.loads(path.read_text())["version"]
    assert sorted(p.name for p in path.parent.iterdir()) == [STATE_FILE, prev.name]  # no temporaries


def test_a_corrupt_state_file_is_set_aside_and_the_previous_generation_restored(tmp_path: Path) -> None:
    settings, path, n = lost_everywhere(tmp_path)
    path.write_text('{"version": 1, "station": "trunc')  # a torn or corrupted write
    with capture_logs() as logs:
        ev = evaluator(settings, path, Clock())
    assert len(ev.engine.active()) == n
    [aside] = list(path.parent.glob(f"{STATE_FILE}.corrupt-*"))
    assert aside.read_text() == '{"version": 1, "station": "trunc'  # kept, not deleted
    assert not path.exists()
    assert ev.state_notice is not None and aside.name in ev.state_notice
    assert "previous generation" in ev.state_notice
    events = [e["event"] for e in logs]
    assert "alert state file unreadable; set aside" in events
    assert "alert state restored from the previous generation" in events


def test_both_generations_corrupt_start_empty_and_both_are_kept(tmp_path: Path) -> None:
    settings, path, _ = lost_everywhere(tmp_path)
    path.write_text("not json")
    previous_generation(path).write_text('{"version": 1, "station": "x", "engine": {"version": 99}}')
    ev = evaluator(settings, path, Clock())
    assert ev.engine.active() == []
    assert len(list(path.parent.glob("*.corrupt-*"))) == 1  # the other is for another station: ignored
    assert ev.state_notice is not None and "unreadable" in ev.state_notice


def test_a_malformed_snapshot_of_this_station_is_set_aside_too(tmp_path: Path) -> None:
    settings, path, n = lost_everywhere(tmp_path)
    data = json.loads(path.read_text())
    data["engine"]["instances"][0]["state"] = "no-such-state"
    path.write_text(json.dumps(data))
    ev = evaluator(settings, path, Clock())
    assert len(ev.engine.active()) == n  # from the previous generation
    assert len(list(path.parent.glob(f"{STATE_FILE}.corrupt-*"))) == 1


def test_ready_details_say_the_state_file_was_set_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lost_everywhere(tmp_path, extra=f'state_directory = "{state}"\n[metrics]\nlisten = "127.0.0.1:0"\n')
    (state / STATE_FILE).write_text("garbage")
    loaded = load_settings(tmp_path / "station.toml")
    assert loaded.state_directory == state

    async def main() -> str:
        daemon = Daemon(loaded)
        await daemon._start_http()
        try:
            daemon.ingest.subscribed.set()
            url = f"http://127.0.0.1:{daemon.metrics_port}/-/ready"
            with await asyncio.to_thread(urllib.request.urlopen, url, None, 5) as r:
                assert r.status == 200
                return str(r.read().decode())
        finally:
            await daemon.http.stop()

    body = asyncio.run(main())
    assert body.startswith("anbo is ready.")
    assert "note: alert state file" in body and ".corrupt-" in body
