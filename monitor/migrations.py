"""Migration-aware monitoring at run time: each ``[[migrations]]`` plan as a rule target.

Every tick each plan becomes one :class:`rules.TargetView` of kind ``migration``
(rules in ``rules/packs/migration.yml``) with the measurements:

- ``phase`` (0 before, 1 simulcast, 2 after cutover) and ``seconds_to_cutover``,
  from the wall clock;
- ``old_rf_level_dbuv`` / ``new_rf_level_dbuv``: the RF level read off air on the
  targets that receive the old and the new channel (unknown when stale);
- ``pi_match`` (FM: the RDS PI on the new frequency against the plan's) and
  ``service_id_match`` (DTV: service or TS id in the new channel's telemetry);
- ``identity_similarity`` / ``identity_lag_s``: the loudness envelopes of old and
  new cross-correlated with a lag search (during simulcast, when both carry audio).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from prometheus_client.core import GaugeMetricFamily, Metric

from monitor.pipeline import Pipeline
from monitor.settings import MigrationSettings, Settings
from monitor.state import StreamState, fresh_info, fresh_values
from probes.identity import EnvelopeTracker, IdentityResult, compare, parse_identifier, parse_pi
from probes.migration import MigrationPlan, Phase, phase, seconds_to_cutover
from rules import TargetView

#: Identity is recomputed every this many seconds (a cross-correlation over a minute).
IDENTITY_EVERY_S = 5.0


@dataclass(slots=True)
class _Plan:
    config: MigrationSettings
    plan: MigrationPlan
    old_target: str
    new_target: str
    old_env: EnvelopeTracker
    new_env: EnvelopeTracker
    identity: IdentityResult
    identity_at: float = -1e18


class MigrationMonitor:
    """The station's migration plans, their phase and their checks."""

    def __init__(self, settings: Settings) -> None:
        self.plans: dict[str, _Plan] = {}
        #: The last tick's measurements per plan (for the collector).
        self.latest: dict[str, dict[str, float | str | None]] = {}
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        old_plans = self.plans
        self.plans = {}
        self.readings_stale_after = settings.probes.readings_stale_after
        self.station = settings.station.name
        for m in settings.migrations:
            old, new = settings.migration_targets(m)
            if old is None or new is None:  # load_settings refuses such a config
                continue
            prev = old_plans.get(m.name)
            if prev is not None and (prev.old_target, prev.new_target) == (old.name, new.name):
                prev.config, prev.plan = m, m.plan()
                self.plans[m.name] = prev
            else:
                self.plans[m.name] = _Plan(
                    m,
                    m.plan(),
                    old.name,
                    new.name,
                    EnvelopeTracker(),
                    EnvelopeTracker(),
                    IdentityResult(None, None, 0.0),
                )
        self._by_target: dict[str, list[tuple[_Plan, EnvelopeTracker]]] = {}
        for p in self.plans.values():
            self._by_target.setdefault(p.old_target, []).append((p, p.old_env))
            self._by_target.setdefault(p.new_target, []).append((p, p.new_env))

    def watches(self, target: str) -> bool:
        return target in self._by_target

    def push_audio(self, target: str, samples: NDArray[np.float32], rate: int, ts: float) -> None:
        for _, env in self._by_target.get(target, ()):
            env.push(samples, rate, ts)

    def views(self, pipeline: Pipeline, now: float, wall: float) -> list[TargetView]:
        out = []
        self.latest = {}
        for name, p in self.plans.items():
            ph = phase(p.plan, wall)
            old = pipeline.targets.get(p.old_target)
            new = pipeline.targets.get(p.new_target)
            m: dict[str, float | str | None] = {
                "phase": float(int(ph)),
                "seconds_to_cutover": seconds_to_cutover(p.plan, wall),
                "old_rf_level_dbuv": self._rf(old.streams if old else {}, now),
                "new_rf_level_dbuv": self._rf(new.streams if new else {}, now),
                "pi_match": None,
                "service_id_match": None,
            }
            info = self._info(new.streams if new else {}, now)
            if p.plan.rds_pi is not None:
                seen = parse_pi(info.get("rds_pi"))
                m["pi_match"] = None if seen is None else float(seen == parse_pi(p.plan.rds_pi))
            expected = [
                (k, v)
                for k, v in (("service_id", p.plan.service_id), ("ts_id", p.plan.ts_id))
                if v is not None
            ]
            if expected:
                got = [parse_identifier(info.get(k)) for k, _ in expected]
                if all(g is not None for g in got):
                    m["service_id_match"] = float(
                        all(g == v for g, (_, v) in zip(got, expected, strict=True))
                    )
            if ph is Phase.SIMULCAST:
                if now - p.identity_at >= IDENTITY_EVERY_S:
                    p.identity = compare(p.old_env, p.new_env)
                    p.identity_at = now
                m["identity_similarity"] = p.identity.similarity
                m["identity_lag_s"] = p.identity.lag_s
            labels = {
                "station": self.station,
                "target": name,
                "kind": "migration",
                "service": p.plan.service,
                "old": p.plan.label("old"),
                "new": p.plan.label("new"),
            }
            self.latest[name] = m
            out.append(
                TargetView(
                    name=name,
                    kind="migration",
                    labels=labels,
                    params=dict(p.config.params),
                    measurements=m,
                    last_seen=now,
                )
            )
        return out

    def _rf(self, streams: Mapping[str, StreamState], now: float) -> float | None:
        stream = streams.get("rf")
        if stream is None:
            return None
        return fresh_values(stream, now, self.readings_stale_after).get("rf_level_dbuv")

    def _info(self, streams: Mapping[str, StreamState], now: float) -> dict[str, str | float]:
        stream = streams.get("rf")
        if stream is None:
            return {}
        return {
            **fresh_values(stream, now, self.readings_stale_after),
            **fresh_info(stream, now, self.readings_stale_after),
        }

    def collect(self, station: str) -> Iterator[Metric]:
        """The ``anbo_migration_*`` gauges: one series per plan and value, absent while unknown."""
        labels = ["station", "migration", "service", "old", "new"]
        fams = {
            "phase": GaugeMetricFamily(
                "anbo_migration_phase",
                "Migration phase: 0 before simulcast, 1 simulcast, 2 after cutover.",
                labels=labels,
            ),
            "seconds_to_cutover": GaugeMetricFamily(
                "anbo_migration_seconds_to_cutover",
                "Seconds until the cutover (negative after it).",
                labels=labels,
            ),
            "old_rf_level_dbuv": GaugeMetricFamily(
                "anbo_migration_old_rf_level_dbuv",
                "RF level received on the old channel (dBµV).",
                labels=labels,
            ),
            "new_rf_level_dbuv": GaugeMetricFamily(
                "anbo_migration_new_rf_level_dbuv",
                "RF level received on the new channel (dBµV).",
                labels=labels,
            ),
            "identity_similarity": GaugeMetricFamily(
                "anbo_migration_identity_similarity",
                "Correlation of the old and new channels' loudness envelopes (-1..1).",
                labels=labels,
            ),
            "identity_lag_s": GaugeMetricFamily(
                "anbo_migration_identity_lag_seconds",
                "Delay of the new channel's programme against the old.",
                labels=labels,
            ),
            "pi_match": GaugeMetricFamily(
                "anbo_migration_pi_match",
                "1 if the new frequency carries the expected RDS PI.",
                labels=labels,
            ),
            "service_id_match": GaugeMetricFamily(
                "anbo_migration_service_id_match",
                "1 if the new channel carries the expected DTV service/TS ids.",
                labels=labels,
            ),
        }
        for name, plan in self.plans.items():
            values = [station, name, plan.plan.service, plan.plan.label("old"), plan.plan.label("new")]
            for key, value in self.latest.get(name, {}).items():
                fam = fams.get(key)
                if fam is not None and isinstance(value, float):
                    fam.add_metric(values, value)
        yield from fams.values()
