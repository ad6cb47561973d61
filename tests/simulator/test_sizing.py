"""simulator.sizing: a generated station of any size is an ordinary, valid config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from monitor.settings import TargetKind, load_settings
from simulator.sizing import sized_station


@pytest.mark.parametrize(("targets", "audio"), [(1, 0), (10, 7), (1000, 10)])
def test_a_sized_station_loads_with_the_example_proportions(tmp_path: Path, targets: int, audio: int) -> None:
    (tmp_path / "eb.csv").write_text("id,name,county,township\neb-r01-00001,v1,r01,r01\n")
    path = tmp_path / "anbo.toml"
    path.write_text(
        sized_station(targets, audio=audio, eb_inventory="eb.csv", alertmanager="http://127.0.0.1:9")
    )
    settings = load_settings(path).settings
    kinds = Counter(t.kind for t in settings.targets)
    assert sum(kinds.values()) == targets
    if targets >= 10:
        assert kinds[TargetKind.TX] == targets * 3 // 10
        assert kinds[TargetKind.DTV] == (targets - kinds[TargetKind.TX]) * 3 // 7
    with_audio = [t for t in settings.targets if "audio" in t.accepted_streams]
    assert len(with_audio) == audio
    # Every service is fed by one transmitter (a station that has any).
    if not kinds[TargetKind.TX]:
        return
    served = [s for t in settings.targets if t.kind is TargetKind.TX for s in t.serves]
    assert sorted(served) == sorted(t.name for t in settings.targets if t.kind is not TargetKind.TX)
    assert settings.eb is not None


def test_more_audio_than_services_is_refused() -> None:
    with pytest.raises(ValueError, match="only 7 FM and DTV services"):
        sized_station(10, audio=8)
