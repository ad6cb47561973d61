"""The station simulator: every target's telemetry, broken at will by scripted scenarios.

- :mod:`~simulator.scenario` — scenario files (YAML), validated with file:line errors;
- :mod:`~simulator.programme` — programme-like audio (speech, music) and fault audio;
- :mod:`~simulator.station` — :class:`StationSimulator`, a pure generator of the
  messages a station's gateways publish, on a simulated clock;
- :mod:`~simulator.eb` — the emergency-broadcast endpoints and dispatch platform;
- :mod:`~simulator.publisher` — :class:`Publisher`, real-time pacing over MQTT;
- :mod:`~simulator.accelerated` — run a scenario through anbo's pipeline and rules
  without a broker, faster than real time, and :func:`verify` its expectations;
- :mod:`~simulator.cli` — ``anbo simulate``.
"""

from simulator.accelerated import (
    Episode,
    RunResult,
    TransitionRecorder,
    Verdict,
    counts_from,
    run_accelerated,
    verify,
)
from simulator.programme import Programme, WavError, WavProgramme
from simulator.publisher import Publisher, PublishStats
from simulator.scenario import (
    FAULT_KINDS,
    Expectation,
    Fault,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    resolve_scenario,
    scenario_problems,
)
from simulator.station import BLOCK_SECONDS, Message, SimOptions, StationSimulator

__all__ = [
    "BLOCK_SECONDS",
    "FAULT_KINDS",
    "Episode",
    "Expectation",
    "Fault",
    "Message",
    "Programme",
    "PublishStats",
    "Publisher",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SimOptions",
    "StationSimulator",
    "TransitionRecorder",
    "Verdict",
    "WavError",
    "WavProgramme",
    "bundled_scenarios",
    "counts_from",
    "load_scenario",
    "parse_scenario",
    "resolve_scenario",
    "run_accelerated",
    "scenario_problems",
    "verify",
]
