"""A station configuration of any size, for sizing and memory tests.

:func:`sized_station` writes the TOML of a station with ``targets`` targets in the
example station's proportions (4 FM : 3 DTV : 3 transmitters, each transmitter serving
the services beside it), of which ``audio`` FM and DTV services take audio blocks as
well as their RF readings (the others take RF readings only, as a site with one capture
box and many off-air receivers would). ``anbo simulate`` with the same file publishes
every one of them; ``eb_inventory`` adds an ``[eb]`` section for the fleet that
``anbo simulate --eb-inventory`` writes.

The output is an ordinary config: it passes ``anbo check`` (``tests/simulator``).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["sized_station"]

#: FM raster 87.5–108.0 MHz in 0.1 MHz steps; DTV (DTMB) channels DS-13..DS-48 outside
#: the 700 MHz band. A big generated station reuses them (one site cannot, many can).
_FM_STEPS = 206
_DS_CHANNELS = list(range(13, 37))  # DS-37 and up: 702 MHz and above


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def sized_station(
    targets: int,
    *,
    audio: int = 0,
    station: str = "sized",
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    metrics_listen: str = "127.0.0.1:9872",
    alertmanager: str | None = None,
    state_directory: str = "state",
    eb_inventory: Path | str | None = None,
    eb_offline_after: float = 180.0,
) -> str:
    """TOML of a station with ``targets`` targets, ``audio`` of them with audio."""
    if targets < 1:
        raise ValueError("targets must be at least 1")
    n_tx = max(targets * 3 // 10, 1) if targets >= 3 else 0
    n_dtv = (targets - n_tx) * 3 // 7
    n_fm = targets - n_tx - n_dtv
    if audio > n_fm + n_dtv:
        raise ValueError(f"audio: only {n_fm + n_dtv} FM and DTV services to give audio to")
    lines = [f"state_directory = {_q(state_directory)}", ""]
    lines += ["[station]", f"name = {_q(station)}", ""]
    lines += ["[mqtt]", f"url = {_q(mqtt_url)}", f"client_id = {_q('anbo-' + station)}", ""]
    lines += ["[metrics]", f"listen = {_q(metrics_listen)}", ""]
    lines += ["[logging]", 'level = "warning"', 'format = "json"', ""]
    if alertmanager is not None:
        lines += ["[alerting]", f"alertmanagers = [{{ url = {_q(alertmanager)} }}]", ""]
    if eb_inventory is not None:
        lines += [
            "[eb]",
            f"inventory = [{_q(str(eb_inventory))}]",
            'region_level = "county"',
            f"offline_after = {eb_offline_after:g}",
            "",
        ]
    services: list[str] = []
    with_audio = 0
    for i in range(n_fm + n_dtv):
        fm = i < n_fm
        name = f"fm-{i:04d}" if fm else f"dtv-{i - n_fm:04d}"
        services.append(name)
        lines += ["[[targets]]", f"name = {_q(name)}", f'kind = "{"fm" if fm else "dtv"}"']
        lines.append(f"service = {_q(('FM service ' if fm else 'DTMB mux ') + str(i))}")
        if fm:
            lines.append(f"frequency_mhz = {87.5 + (i % _FM_STEPS) / 10:.1f}")
        else:
            lines.append(f'channel = "DS-{_DS_CHANNELS[(i - n_fm) % len(_DS_CHANNELS)]}"')
        # Audio on every k-th service, spread over FM and DTV alike.
        if with_audio < audio and i * audio >= with_audio * (n_fm + n_dtv):
            with_audio += 1
        else:
            lines.append('streams = ["rf"]')
        lines.append(f'labels = {{ county = "county-{i % 20:02d}" }}')
        lines.append("")
    per_tx = -(-len(services) // n_tx) if n_tx else 0
    for j in range(n_tx):
        served = services[j * per_tx : (j + 1) * per_tx]
        lines += ["[[targets]]", f'name = "tx-{j:04d}"', 'kind = "tx"', f'service = "transmitter {j}"']
        lines.append(f"serves = [{', '.join(_q(s) for s in served)}]")
        lines.append(f"params = {{ rated_power_w = {1000 * (1 + j % 3)} }}")
        lines.append("")
    return "\n".join(lines)
