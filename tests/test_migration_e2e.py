"""A migration plan whose cutover passes during the test, through a real Mosquitto.

FM re-frequencing 97.5 → 101.8 MHz with the expected RDS PI C201: after the cutover
the old frequency still carries a carrier (VacatedChannelEmission), and the new one
carries the wrong PI (WrongProgramme).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.daemon import Daemon
from monitor.settings import load_settings
from monitor.wire import encode_readings
from tests.servers import Mosquitto
from tests.test_integration_mqtt import sample, scrape

pytestmark = pytest.mark.integration

FAST_RULES = """
groups:
  - name: test-overrides
    rules:
      - alert: VacatedChannelEmission
        selector: {kind: migration}
        expr: old_rf_level_dbuv > param("vacated_max_dbuv", 30) and phase == 2
        for: 1s
        severity: critical
        annotations: {summary: "Emission on the vacated channel of {{ service }}: {{ value }} dBµV"}
      - alert: WrongProgramme
        selector: {kind: migration}
        expr: phase >= 1 and (pi_match == 0 or service_id_match == 0)
        for: 1s
        severity: critical
        outage_class: outage
        annotations: {summary: "Wrong programme on the new channel of {{ service }}"}
"""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_cutover_vacated_emission_and_wrong_programme(
    mosquitto: Mosquitto,
    write_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    cutover = time.time() + 6.0
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fast.yml").write_text(FAST_RULES)
    config = write_config(url=mosquitto.url)
    text = config.read_text().replace(
        "[station]",
        f"""[alerting]
rule_paths = ["rules"]
stale_after = 600

[[migrations]]
name = "news-97.5-to-101.8"
service = "News"
kind = "fm"
old_frequency_mhz = 97.5
new_frequency_mhz = 101.8
simulcast_start = {iso(cutover - 3600)}
cutover = {iso(cutover)}
rds_pi = "C201"

[station]""",
        1,
    )
    text += '\n[[targets]]\nname = "fm-101.8"\nkind = "fm"\nservice = "News (new)"\nfrequency_mhz = 101.8\n'
    config.write_text(text)

    async def main() -> None:
        daemon = Daemon(load_settings(config), drain_timeout=3.0)
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            seq = 0
            end = cutover + 15
            fired: set[str] = set()
            phase_before = None
            while time.time() < end and fired != {"VacatedChannelEmission", "WrongProgramme"}:
                now = time.time()
                for target, values, info in (
                    ("fm-97.5", {"rf_level_dbuv": 48.0}, {"rds_pi": "C201"}),
                    ("fm-101.8", {"rf_level_dbuv": 62.0}, {"rds_pi": "D999"}),
                ):
                    await asyncio.to_thread(
                        mosquitto.publish,
                        f"anbo/teststation/{target}/rf",
                        encode_readings(now, seq, values, info=info),
                    )
                seq += 1
                if phase_before is None and now < cutover - 2:
                    port = daemon.metrics_port
                    assert port
                    await asyncio.sleep(1.2)
                    phase_before = sample(await asyncio.to_thread(scrape, port), "anbo_migration_phase")
                fired = {a.alertname for a in daemon.evaluator.engine.active() if a.state.value == "firing"}
                await asyncio.sleep(0.5)
            assert phase_before == 1.0  # simulcast before the cutover
            assert fired == {"VacatedChannelEmission", "WrongProgramme"}
            vacated = [a for a in daemon.evaluator.engine.active() if a.alertname == "VacatedChannelEmission"]
            assert vacated[0].target == "news-97.5-to-101.8"
            assert "48" in vacated[0].annotations["summary"]
            assert vacated[0].starts_at >= cutover  # only after the cutover
            port = daemon.metrics_port
            assert port
            text = await asyncio.to_thread(scrape, port)
            assert sample(text, "anbo_migration_phase", migration="news-97.5-to-101.8") == 2.0
            assert sample(text, "anbo_migration_pi_match") == 0.0
            assert (sample(text, "anbo_migration_seconds_to_cutover") or 0) < 0
            assert sample(text, "anbo_migration_old_rf_level_dbuv", old="97.5 MHz", new="101.8 MHz") == 48.0
        finally:
            daemon.request_stop()
            await asyncio.wait_for(run, 15)

    asyncio.run(main())
