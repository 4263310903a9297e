"""A gymnasium vector environment over a batch of scenarios (one sub-environment per scenario).

Observations are the ego-centric vector observation as a dict of numpy arrays; actions are
(acceleration m/s^2, steering rad) per sub-environment. Reward: route progress of the step in
units of (speed limit × dt), so ~1 per step at the speed limit; an episode terminates on any
ego collision or on leaving the drivable area (0.3 m tolerance), with no reward for that step,
and is truncated at the scenario's duration. Actions outside `action_space` or not finite raise
`simulator.ActionError` (never clipped silently). Finished sub-environments reset on the next step
(gymnasium's NEXT_STEP autoreset mode); each keeps its own clock (`SimState.clock`), so signal
phases, scripted events and logs restart with it.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from drivesim.behavior.scenario import Scenario, ScenarioBatch
from drivesim.map.bank import CHUNK
from drivesim.metrics.collisions import ego_overlaps
from drivesim.metrics.drivable import max_corner_distance
from drivesim.sim.observation import (AGENT_FEATURES, EGO_FEATURES, LANE_FEATURES, ObservationConfig, observe,
                                      route_position)
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.simulator import SimConfig, Simulator

OFFROAD_TOLERANCE = 0.3  # m, as the DAC metric


def _spaces(cfg: ObservationConfig) -> gym.spaces.Dict:
    box = lambda *shape: gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)
    flag = lambda *shape: gym.spaces.MultiBinary(shape)
    return gym.spaces.Dict({
        "agents": box(cfg.num_agents, AGENT_FEATURES), "agents_mask": flag(cfg.num_agents),
        "lanes": box(cfg.num_lane_chunks, CHUNK, 2), "lane_attrs": box(cfg.num_lane_chunks, LANE_FEATURES),
        "lanes_mask": flag(cfg.num_lane_chunks), "route": box(cfg.route_points, 2), "ego": box(EGO_FEATURES)})


class DriveVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, scenarios: list[Scenario], sim_config: SimConfig | None = None,
                 obs_config: ObservationConfig | None = None, device: str = "cpu"):
        self.batch = ScenarioBatch.build(scenarios, device=device)
        self.sim = Simulator(self.batch, sim_config)
        self.obs_config = obs_config or ObservationConfig()
        self.num_envs = self.batch.batch_size
        self.single_observation_space = _spaces(self.obs_config)
        self.single_action_space = gym.spaces.Box(ACTION_LOW.numpy(), ACTION_HIGH.numpy(), dtype=np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._initial = self.sim.reset()
        self.state = self._initial
        self._done = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # the scenarios are deterministic; the seed only seeds the spaces
        self.state = self._initial
        self._done[:] = False
        return self._obs(), {}

    def step(self, actions):
        a = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.batch.device)
        # Simulator.step checks the actions (finite, inside action_space) and raises ActionError naming the
        # scenario and step; it never clips: an agent whose samples can leave the box clips them itself
        # (e.g. gymnasium.wrappers.vector.ClipAction)
        restart = torch.as_tensor(self._done, device=a.device)
        s_before, _ = route_position(self.batch, self.state.xy[:, 0])
        nxt = self.sim.step(self.state, a)
        if bool(restart.any()):  # NEXT_STEP autoreset: finished rows restart (clock 0), their action ignored
            nxt = _merge_rows(nxt, self._initial, restart)
        s_after, _ = route_position(self.batch, nxt.xy[:, 0])
        crash = ego_overlaps(nxt).any(dim=1)
        offroad = max_corner_distance(self.batch.bank, self.batch.map_idx, nxt.corners()[:, 0]) > OFFROAD_TOLERANCE
        terminated = (crash | offroad) & ~restart
        truncated = (nxt.row_step >= self.batch.num_steps) & ~terminated & ~restart
        limit = self.batch.bank.lane_speed[nxt.lane[:, 0].clamp(min=0)] * self.batch.dt
        reward = torch.where(terminated | restart, torch.zeros_like(s_after), (s_after - s_before) / limit)
        self.state = nxt
        self._done = (terminated | truncated).cpu().numpy()
        info = {"collision": crash.cpu().numpy(), "offroad": offroad.cpu().numpy()}
        return (self._obs(), reward.cpu().numpy().astype(np.float32), terminated.cpu().numpy(),
                truncated.cpu().numpy(), info)

    def _obs(self) -> dict[str, np.ndarray]:
        o = observe(self.state, self.batch, self.obs_config)
        names = ("agents", "agents_mask", "lanes", "lane_attrs", "lanes_mask", "route", "ego")
        return {n: getattr(o, n).cpu().numpy().astype(np.int8 if n.endswith("mask") else np.float32) for n in names}


def _merge_rows(state, initial, rows: torch.Tensor):
    """State with the given rows [B] taken from `initial` (the scenarios' start)."""
    pick = lambda new, old: torch.where(rows.view(-1, *([1] * (new.dim() - 1))), old, new)
    names = [f.name for f in dataclasses.fields(state) if f.name != "step"]
    return state.replace(**{n: pick(getattr(state, n), getattr(initial, n)) for n in names})
