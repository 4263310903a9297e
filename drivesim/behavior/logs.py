"""Traffic modes on logged scenarios: how the non-ego agents of an imported log move.

- replay: every agent follows its log.
- reactive: vehicles follow IDM/MOBIL along their lanes from the moment they appear in the log
  (nuPlan's reactive agents); pedestrians, cyclists and static objects keep replaying.
- hybrid: vehicles replay until the ego comes within `SimConfig.hybrid_distance` or
  `hybrid_time_gap`, then react.
- constant_velocity: every moving agent keeps the speed and heading it has at the start.
"""

from __future__ import annotations

import copy

import numpy as np

from drivesim.behavior.scenario import Scenario, ScenarioError
from drivesim.core.types import AgentType, ControlMode

TRAFFIC_MODES = ("replay", "reactive", "hybrid", "constant_velocity")


def with_traffic(scenario: Scenario, mode: str, ego: str = "policy") -> Scenario:
    """A copy of a logged scenario with its agents' control modes set for `mode`; the ego is
    driven by the policy (`ego='policy'`) or replays its log (`ego='replay'`)."""
    if mode not in TRAFFIC_MODES:
        raise ScenarioError(f"unknown traffic mode {mode!r}; expected one of {TRAFFIC_MODES}")
    if scenario.log is None or scenario.log_valid is None:
        raise ScenarioError(f"scenario {scenario.name!r}: traffic mode {mode!r} needs a logged scenario")
    out = copy.copy(scenario)
    types = np.asarray(scenario.agent_type)
    vehicle = types == int(AgentType.VEHICLE)
    moving = types != int(AgentType.STATIC)
    modes = np.full(len(types), int(ControlMode.REPLAY))
    if mode == "reactive":
        modes[vehicle] = int(ControlMode.REACTIVE)
    elif mode == "hybrid":
        modes[vehicle] = int(ControlMode.HYBRID)
    elif mode == "constant_velocity":
        modes[moving] = int(ControlMode.CONSTANT_VELOCITY)
    modes[0] = int(ControlMode.POLICY if ego == "policy" else ControlMode.REPLAY)
    out.mode = modes
    out.meta = {**scenario.meta, "traffic": mode, "ego": ego}
    return out
