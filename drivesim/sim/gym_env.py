"""A gymnasium vector environment over a batch of scenarios (one sub-environment per scenario).

Observations are the ego-centric vector observation as a dict of numpy arrays; actions are
(acceleration m/s^2, steering rad) per sub-environment. Reward: route progress of the step in
units of (speed limit × dt), so ~1 per step at the speed limit; an episode terminates on any
ego collision or on leaving the drivable area (0.3 m tolerance), with no reward for that step,
and is truncated at the scenario's duration. Actions outside `action_space` or not finite raise
`simulator.ActionError` (never clipped silently). Finished sub-environments reset on the next step
(gymnasium's NEXT_STEP autoreset mode); each keeps its own clock (`SimState.clock`), so signal
phases, scripted events and logs restart with it.

`action="trajectory"`: an action is a trajectory per sub-environment, [H, 3] = `horizon` poses
(x forward m, y left m, heading rad) in the ego frame, pose i at (i + 1) * `traj_dt` s
(sim/trajectory.py); one env step tracks it with the simulator's controller
(`TrajectoryTracker`) for `replan_every` simulation steps. Its reward is the sum over those
sub-steps; a sub-environment that terminates (or is truncated) in a sub-step stops there (its
later sub-steps are not simulated and give no reward) and restarts on the next env step. A
trajectory outside `action_space`, not finite or shorter than `replan_every` steps raises
`ActionError` naming the scenario and step.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.map.bank import CHUNK
from drivesim.metrics.collisions import ego_overlaps
from drivesim.metrics.drivable import max_corner_distance
from drivesim.sim.observation import (AGENT_FEATURES, EGO_FEATURES, LANE_FEATURES, ObservationConfig, observe,
                                      route_position)
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.simulator import ActionError, SimConfig, Simulator
from drivesim.sim.trajectory import Trajectory, TrackerConfig, TrajectoryTracker, check_trajectory

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
                 obs_config: ObservationConfig | None = None, device: str = "cpu", action: str = "control",
                 horizon: int = 8, traj_dt: float = 0.5, replan_every: int = 5, tracker: TrackerConfig | None = None):
        if action not in ("control", "trajectory"):
            raise ValueError(f"DriveVectorEnv: action must be 'control' or 'trajectory', got {action!r}")
        self.batch = ScenarioBatch.build(scenarios, device=device)
        self.sim = Simulator(self.batch, sim_config)
        self.obs_config = obs_config or ObservationConfig()
        self.num_envs = self.batch.batch_size
        self.single_observation_space = _spaces(self.obs_config)
        self.action_mode = action
        if action == "control":
            self.single_action_space = gym.spaces.Box(ACTION_LOW.numpy(), ACTION_HIGH.numpy(), dtype=np.float32)
        else:
            self.horizon, self.traj_dt, self.replan_every = int(horizon), float(traj_dt), int(replan_every)
            if self.horizon < 1 or not self.traj_dt > 0 or self.replan_every < 1:
                raise ValueError(f"DriveVectorEnv: horizon {horizon!r} and replan_every {replan_every!r} must be >= 1, "
                                 f"traj_dt {traj_dt!r} > 0")
            self.tracker = TrajectoryTracker(tracker)
            self.single_action_space = _trajectory_space(self.horizon, self.traj_dt, self.sim.config.dynamics.max_speed)
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
        if self.action_mode == "trajectory":
            return self._step_trajectory(actions)
        a = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.batch.device)
        # Simulator.step checks the actions (finite, inside action_space) and raises ActionError naming the
        # scenario and step; it never clips: an agent whose samples can leave the box clips them itself
        # (e.g. gymnasium.wrappers.vector.ClipAction)
        restart = torch.as_tensor(self._done, device=a.device)
        s_before, _ = route_position(self.batch, self.state.xy[:, 0])
        nxt = self.sim.step(self.state, a)
        if bool(restart.any()):  # NEXT_STEP autoreset: finished rows restart (clock 0), their action ignored
            nxt = merge_rows(nxt, self._initial, restart)
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

    def _step_trajectory(self, actions):
        poses = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.batch.device)
        self._check_trajectory(poses)
        restart = torch.as_tensor(self._done, device=poses.device)
        self.tracker.plan(Trajectory(poses, self.traj_dt), self.state)
        state, stopped = self.state, restart.clone()  # stopped: rows not simulated any further this env step
        zeros = torch.zeros(self.num_envs, dtype=torch.bool, device=poses.device)
        terminated, truncated, crashed, off = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
        reward = torch.zeros(self.num_envs, device=poses.device)
        for k in range(self.replan_every):
            s_before, _ = route_position(self.batch, state.xy[:, 0])
            nxt = self.sim.step(state, self.tracker.act(state, self.batch.dt))
            nxt = merge_rows(nxt, self._initial if k == 0 else state, stopped)  # k = 0: NEXT_STEP autoreset
            live = ~stopped
            s_after, _ = route_position(self.batch, nxt.xy[:, 0])
            crash = ego_overlaps(nxt).any(dim=1) & live
            offroad = (max_corner_distance(self.batch.bank, self.batch.map_idx, nxt.corners()[:, 0]) > OFFROAD_TOLERANCE) & live
            term = crash | offroad
            trunc = (nxt.row_step >= self.batch.num_steps) & ~term & live
            limit = self.batch.bank.lane_speed[nxt.lane[:, 0].clamp(min=0)] * self.batch.dt
            reward = reward + torch.where(live & ~term, (s_after - s_before) / limit, torch.zeros_like(s_after))
            terminated, truncated = terminated | term, truncated | trunc
            crashed, off = crashed | crash, off | offroad
            stopped = stopped | term | trunc
            state = nxt
            if bool(stopped.all()):
                break
        self.state = state
        self._done = (terminated | truncated).cpu().numpy()
        info = {"collision": crashed.cpu().numpy(), "offroad": off.cpu().numpy()}
        return (self._obs(), reward.cpu().numpy().astype(np.float32), terminated.cpu().numpy(),
                truncated.cpu().numpy(), info)

    def _check_trajectory(self, poses: torch.Tensor) -> None:
        """Raise ActionError naming the first scenario whose trajectory is malformed, not finite,
        too short or outside the action space (never clipped)."""
        B, step = self.num_envs, self.state.row_step.tolist()
        reasons = check_trajectory(Trajectory(poses, self.traj_dt), B, self.replan_every * self.batch.dt)
        if not any(reasons) and tuple(poses.shape[1:]) != (self.horizon, 3):
            reasons = [f"trajectory poses {tuple(poses.shape)}, expected [{B}, {self.horizon}, 3]"] * B
        if not any(reasons):
            low = torch.as_tensor(self.single_action_space.low, device=poses.device)
            high = torch.as_tensor(self.single_action_space.high, device=poses.device)
            outside = ((poses < low) | (poses > high)).flatten(1).any(dim=1)
            reasons = [f"trajectory outside the action space (|x|, |y| <= {high[0, 0]:g} m, |heading| <= pi)" if o else ""
                       for o in outside.tolist()]
        bad = [(b, why) for b, why in enumerate(reasons) if why]
        if bad:
            b, why = bad[0]
            more = f" (and {len(bad) - 1} more scenario(s))" if len(bad) > 1 else ""
            raise ActionError(f"scenario {self.batch.names[b]!r}, step {step[b]}: {why}{more}")

    def _obs(self) -> dict[str, np.ndarray]:
        o = observe(self.state, self.batch, self.obs_config)
        names = ("agents", "agents_mask", "lanes", "lane_attrs", "lanes_mask", "route", "ego")
        return {n: getattr(o, n).cpu().numpy().astype(np.int8 if n.endswith("mask") else np.float32) for n in names}


def _trajectory_space(horizon: int, dt: float, max_speed: float) -> gym.spaces.Box:
    """Box [H, 3]: x, y within what max_speed covers over the horizon, heading in [-pi, pi]."""
    reach = float(max_speed * horizon * dt)
    low = np.tile(np.array([-reach, -reach, -np.pi], np.float32), (horizon, 1))
    return gym.spaces.Box(low, -low, dtype=np.float32)


def merge_rows(state, initial, rows: torch.Tensor):
    """State with the given rows [B] taken from `initial` (the scenarios' start)."""
    pick = lambda new, old: torch.where(rows.view(-1, *([1] * (new.dim() - 1))), old, new)
    names = [f.name for f in dataclasses.fields(state) if f.name != "step"]
    return state.replace(**{n: pick(getattr(state, n), getattr(initial, n)) for n in names})
