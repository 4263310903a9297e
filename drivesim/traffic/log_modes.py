"""Traffic modes on logged scenarios: how the non-ego agents of an imported log move.

- replay: every agent follows its log.
- reactive: vehicles follow IDM/MOBIL along their lanes from the moment they appear in the log
  (nuPlan's reactive agents); parked vehicles, pedestrians, cyclists and static objects keep
  replaying.
- hybrid: vehicles replay until the ego comes within `SimConfig.hybrid_distance` or
  `hybrid_time_gap`, then react.
- constant_velocity: every moving agent keeps the speed and heading it has at the start.
- learned: vehicles as for `reactive`, driven by a learned behaviour model from the moment
  they appear (ControlMode.LEARNED; the simulator needs `behavior=`, see traffic_model/model.py).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from drivesim.core.scenario import Scenario, ScenarioError
from drivesim.core.types import AgentType, ControlMode

TRAFFIC_MODES = ("replay", "reactive", "hybrid", "constant_velocity")  # modes that need nothing but the scenario
MODEL_MODES = ("learned",)  # modes whose simulation needs a behaviour model (Simulator(behavior=...))
PARKED_SPEED = 0.5  # m/s: a logged vehicle never faster than this is parked and is replayed in every mode


def with_traffic(scenario: Scenario, mode: str, ego: str = "policy") -> Scenario:
    """A copy of a logged scenario with its agents' control modes set for `mode`; the ego is
    driven by the policy (`ego='policy'`) or replays its log (`ego='replay'`)."""
    if mode not in TRAFFIC_MODES + MODEL_MODES:
        raise ScenarioError(f"unknown traffic mode {mode!r}; expected one of {TRAFFIC_MODES + MODEL_MODES}")
    if scenario.log is None or scenario.log_valid is None:
        raise ScenarioError(f"scenario {scenario.name!r}: traffic mode {mode!r} needs a logged scenario")
    out = copy.copy(scenario)
    types = np.asarray(scenario.agent_type)
    logged_speed = np.where(scenario.log_valid, scenario.log[..., 3], 0.0).max(axis=1)
    vehicle = (types == int(AgentType.VEHICLE)) & (logged_speed >= PARKED_SPEED)  # parked vehicles keep replaying
    moving = types != int(AgentType.STATIC)
    modes = np.full(len(types), int(ControlMode.REPLAY))
    if mode == "reactive":
        modes[vehicle] = int(ControlMode.REACTIVE)
    elif mode == "hybrid":
        modes[vehicle] = int(ControlMode.HYBRID)
    elif mode == "constant_velocity":
        modes[moving] = int(ControlMode.CONSTANT_VELOCITY)
    elif mode == "learned":
        modes[vehicle] = int(ControlMode.LEARNED)
    modes[0] = int(ControlMode.POLICY if ego == "policy" else ControlMode.REPLAY)
    out.mode = modes
    out.meta = {**scenario.meta, "traffic": mode, "ego": ego}
    return out


def window(scenario: Scenario, start: int, steps: int, keep_all: bool = False) -> Scenario:
    """The part of a logged scenario from log step `start` for `steps` steps: agents start from
    their logged state at `start` (or at their first visible step inside the window). Agents not
    logged in the window are dropped unless `keep_all` (then they stay invisible)."""
    log, valid = scenario.log, scenario.log_valid
    if log is None or valid is None:
        raise ScenarioError(f"scenario {scenario.name!r}: a window needs a logged scenario")
    if start < 0 or steps < 1 or start + steps >= log.shape[1]:
        raise ScenarioError(f"scenario {scenario.name!r}: window {start}+{steps} steps exceeds its log of {log.shape[1] - 1} steps")
    part, part_valid = log[:, start : start + steps + 1].copy(), valid[:, start : start + steps + 1].copy()
    seen = part_valid.any(axis=1)
    first = np.where(seen, part_valid.argmax(axis=1), 0)
    state = part[np.arange(len(part)), first]  # [A, 4]
    keep = np.ones_like(seen) if keep_all else seen.copy()
    keep[0] = True
    if not part_valid[0, 0]:
        raise ScenarioError(f"scenario {scenario.name!r}: the ego is not logged at step {start}")
    out = copy.copy(scenario)
    out.name = f"{scenario.name}@{start}"
    for f, col in (("x", 0), ("y", 1), ("yaw", 2), ("speed", 3)):
        setattr(out, f, state[keep, col])
    for f in ("length", "width", "agent_type", "mode", "desired_speed"):
        setattr(out, f, np.asarray(getattr(scenario, f))[keep])
    out.log, out.log_valid = part[keep], part_valid[keep]
    out.script_accel = out.script_lane = out.script_lat_speed = None
    out.duration = steps * scenario.dt
    out.meta = {**scenario.meta, "window": [int(start), int(steps)]}
    if scenario.road.signal_log is not None and start > 0:  # logged signal states follow the window
        sig = scenario.road.signal_log
        out.road = dataclasses.replace(scenario.road, signal_log=dataclasses.replace(sig, state=sig.state[min(start, len(sig.state) - 1):]))
    return out
