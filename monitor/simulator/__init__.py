"""The station simulator: every target's telemetry, broken at will by scripted scenarios.

- :mod:`~monitor.simulator.scenario` — scenario files (YAML), validated with file:line errors;
- :mod:`~monitor.simulator.programme` — programme-like audio (speech, music) and fault audio;
- :mod:`~monitor.simulator.station` — :class:`StationSimulator`, a pure generator of the
  messages a station's gateways publish, on a simulated clock;
- :mod:`~monitor.simulator.eb` — the emergency-broadcast endpoints and dispatch platform;
- :mod:`~monitor.simulator.publisher` — :class:`Publisher`, real-time pacing over MQTT;
- :mod:`~monitor.simulator.accelerated` — run a scenario through anbo's pipeline and rules
  without a broker, faster than real time, and :func:`verify` its expectations;
- :mod:`~monitor.simulator.cli` — ``anbo simulate``.
"""

from monitor.simulator.accelerated import (
    Episode,
    RunResult,
    TransitionRecorder,
    Verdict,
    counts_from,
    run_accelerated,
    verify,
)
from monitor.simulator.programme import Programme, WavError, WavProgramme
from monitor.simulator.publisher import Publisher, PublishStats
from monitor.simulator.scenario import (
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
from monitor.simulator.station import BLOCK_SECONDS, Message, SimOptions, StationSimulator

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
