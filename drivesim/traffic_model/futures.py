"""Variations of a seed scenario: N alternative futures of the same scene from a stochastic
(learned) traffic model, each returned as an ordinary logged `Scenario`.

`alternative_futures(scenario, behavior, n, seed)` rolls out n copies of the scenario (copy k
gets `Scenario.seed = k`, so each row samples its own future; see traffic_model/model.py) with its
vehicles driven by the learned model, then turns each rollout into a scenario whose non-ego
agents replay the sampled future as their log. Such a scenario can be saved with
`io.scenario_file.save_scenario`, replayed, or evaluated like any imported log; its metadata
names the seed scenario, the future's seed and the model's hash.
"""

from __future__ import annotations

import copy

import numpy as np

from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.types import ControlMode
from drivesim.sim.policy import ConstantVelocity, IDMLaneKeeping
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import SimConfig

DRIVEN = (ControlMode.REACTIVE, ControlMode.HYBRID, ControlMode.CONSTANT_VELOCITY, ControlMode.LEARNED)


def learned_copy(scenario: Scenario) -> Scenario:
    """The scenario with its traffic handed to the learned model: a logged scenario gets the
    `learned` traffic mode (its ego replays the log); otherwise REACTIVE/HYBRID/CONSTANT_VELOCITY
    agents become LEARNED."""
    if scenario.log is not None and scenario.log_valid is not None and not (np.asarray(scenario.mode) == ControlMode.LEARNED).any():
        ego = "replay" if scenario.log_valid[0].all() else "policy"
        return with_traffic(scenario, "learned", ego=ego)
    out = copy.copy(scenario)
    mode = np.asarray(scenario.mode).copy()
    mode[1:][np.isin(mode[1:], DRIVEN)] = int(ControlMode.LEARNED)
    out.mode = mode
    return out


def scenario_from_trajectory(scenario: Scenario, traj: dict, row: int, name: str, meta: dict | None = None) -> Scenario:
    """A logged scenario whose agents' log is row `row` of a recorded rollout (`traj`: SimState
    fields [T+1, B, A], as in `RolloutResult.trajectory`). The ego keeps mode POLICY (its log
    is its simulated path, the progress reference); every other agent that moved replays it."""
    n = scenario.num_agents
    pick = lambda k: np.asarray(traj[k])[:, row, :n].T  # [A, T+1]
    log = np.stack([pick("x"), pick("y"), pick("yaw"), pick("speed")], axis=-1).astype(float)
    valid = pick("valid").astype(bool)
    steps = log.shape[1] - 1
    out = copy.copy(scenario)
    out.name = name
    first = np.where(valid.any(axis=1), valid.argmax(axis=1), 0)
    start = log[np.arange(n), first]
    out.x, out.y, out.yaw, out.speed = (start[:, k].copy() for k in range(4))
    mode = np.asarray(scenario.mode).copy()
    mode[1:] = np.where(mode[1:] == ControlMode.STATIC, int(ControlMode.STATIC), int(ControlMode.REPLAY))
    mode[0] = int(ControlMode.POLICY)
    out.mode = mode
    out.log, out.log_valid = log, valid
    out.script_accel = out.script_lane = out.script_lat_speed = None
    out.duration = steps * scenario.dt
    out.meta = {**{k: v for k, v in scenario.meta.items() if k not in ("content_hash", "scenario_file")}, **(meta or {})}
    return out


def alternative_futures(scenario: Scenario, behavior, n: int, seed: int = 0, ego_policy=None,
                        sim_config: SimConfig | None = None, device: str = "cpu") -> list[Scenario]:
    """N alternative futures of `scenario` sampled from `behavior` (a `LearnedTraffic`), as
    logged scenarios named `<name>~future<k>`. The ego replays its log when it has a complete
    one, otherwise `ego_policy` (default: IDM lane keeping) drives it. Future k is rollout row k
    (scenario seed k) with behaviour seed `seed`: deterministic in (scenario, seed, k)."""
    if n < 1:
        raise ValueError(f"alternative_futures: n must be >= 1, got {n}")
    base = learned_copy(scenario)
    copies = []
    for k in range(n):
        c = copy.copy(base)
        c.seed = k
        copies.append(c)
    batch = ScenarioBatch.build(copies, device=device)
    behavior.seed = int(seed)
    ego_replays = int(base.mode[0]) == ControlMode.REPLAY
    policy = ego_policy or (ConstantVelocity() if ego_replays else IDMLaneKeeping())
    res = rollout(batch, policy, sim_config=sim_config, record=True, behavior=behavior)
    card = getattr(behavior, "card", {}) or {}
    lineage = {"future_of": scenario.name, "future_seed": int(seed), "future_index": 0, "traffic_model": "learned",
               "traffic_model_sha256": card.get("sha256", ""), "temperature": float(getattr(behavior, "temperature", 1.0)),
               "ego": "replay" if ego_replays else getattr(policy, "name", "policy")}
    return [scenario_from_trajectory(scenario, res.trajectory, k, f"{scenario.name}~future{k}", {**lineage, "future_index": k})
            for k in range(n)]
