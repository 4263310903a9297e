"""A gymnasium vector environment over a batch of scenarios (one sub-environment per scenario):
a thin adapter (numpy in and out, spaces, autoreset) over the shared batched environment
`sim.env.DriveEnv` with its `RouteProgressReward`.

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

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.map.bank import CHUNK
from drivesim.sim.env import DriveEnv, RouteProgressReward, merge_rows, raise_for_rows
from drivesim.sim.observation import AGENT_FEATURES, EGO_FEATURES, LANE_FEATURES, ObservationConfig, observe
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.simulator import SimConfig
from drivesim.sim.trajectory import Trajectory, TrackerConfig, check_trajectory


def vector_observation_space(cfg: ObservationConfig) -> gym.spaces.Dict:
    box = lambda *shape: gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)
    flag = lambda *shape: gym.spaces.MultiBinary(shape)
    return gym.spaces.Dict({
        "agents": box(cfg.num_agents, AGENT_FEATURES), "agents_mask": flag(cfg.num_agents),
        "lanes": box(cfg.num_lane_chunks, CHUNK, 2), "lane_attrs": box(cfg.num_lane_chunks, LANE_FEATURES),
        "lanes_mask": flag(cfg.num_lane_chunks), "route": box(cfg.route_points, 2), "ego": box(EGO_FEATURES)})


class DriveVectorEnv(gym.vector.VectorEnv):
    """The gymnasium adapter over `sim.env.DriveEnv` (numpy in and out, spaces, NEXT_STEP
    autoreset); `env` is the shared layer, `state` its current SimState."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, scenarios: list[Scenario], sim_config: SimConfig | None = None,
                 obs_config: ObservationConfig | None = None, device: str = "cpu", action: str = "control",
                 horizon: int = 8, traj_dt: float = 0.5, replan_every: int = 5, tracker: TrackerConfig | None = None):
        if action not in ("control", "trajectory"):
            raise ValueError(f"DriveVectorEnv: action must be 'control' or 'trajectory', got {action!r}")
        self.batch = ScenarioBatch.build(scenarios, device=device)
        self.env = DriveEnv(self.batch, RouteProgressReward(self.batch), sim_config, tracker)
        self.sim = self.env.sim
        self.obs_config = obs_config or ObservationConfig()
        self.num_envs = self.batch.batch_size
        self.single_observation_space = vector_observation_space(self.obs_config)
        self.action_mode = action
        if action == "control":
            self.single_action_space = gym.spaces.Box(ACTION_LOW.numpy(), ACTION_HIGH.numpy(), dtype=np.float32)
        else:
            self.horizon, self.traj_dt, self.replan_every = int(horizon), float(traj_dt), int(replan_every)
            if self.horizon < 1 or not self.traj_dt > 0 or self.replan_every < 1:
                raise ValueError(f"DriveVectorEnv: horizon {horizon!r} and replan_every {replan_every!r} must be >= 1, "
                                 f"traj_dt {traj_dt!r} > 0")
            self.single_action_space = trajectory_space(self.horizon, self.traj_dt, self.sim.config.dynamics.max_speed)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

    @property
    def state(self):
        return self.env.state

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # the scenarios are deterministic; the seed only seeds the spaces
        self.env.reset()
        return self._obs(), {}

    def step(self, actions):
        restart = self.env.done.clone()  # NEXT_STEP autoreset: rows that ended last step restart now, action ignored
        if self.action_mode == "trajectory":
            poses = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.batch.device)
            self._check_trajectory(poses)
            out = self.env.step_trajectory(Trajectory(poses, self.traj_dt), self.replan_every)
        else:
            # Simulator.step checks the actions (finite, inside action_space) and raises ActionError naming the
            # scenario and step; it never clips: an agent whose samples can leave the box clips them itself
            # (e.g. gymnasium.wrappers.vector.ClipAction)
            out = self.env.step(torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.batch.device))
        if bool(restart.any()):
            self.env.restart(restart)
        info = {name: flag.cpu().numpy() for name, flag in out.events.items()}
        return (self._obs(), out.reward.cpu().numpy().astype(np.float32), out.terminated.cpu().numpy(),
                out.truncated.cpu().numpy(), info)

    def _check_trajectory(self, poses: torch.Tensor) -> None:
        """Raise ActionError naming the first scenario whose trajectory is malformed, not finite,
        too short or outside the action space (never clipped)."""
        B = self.num_envs
        reasons = check_trajectory(Trajectory(poses, self.traj_dt), B, self.replan_every * self.batch.dt)
        if not any(reasons) and tuple(poses.shape[1:]) != (self.horizon, 3):
            reasons = [f"trajectory poses {tuple(poses.shape)}, expected [{B}, {self.horizon}, 3]"] * B
        if not any(reasons):
            low = torch.as_tensor(self.single_action_space.low, device=poses.device)
            high = torch.as_tensor(self.single_action_space.high, device=poses.device)
            outside = ((poses < low) | (poses > high)).flatten(1).any(dim=1)
            reasons = [f"trajectory outside the action space (|x|, |y| <= {high[0, 0]:g} m, |heading| <= pi)" if o else ""
                       for o in outside.tolist()]
        raise_for_rows(self.batch, self.state, reasons)

    def _obs(self) -> dict[str, np.ndarray]:
        o = observe(self.state, self.batch, self.obs_config)
        names = ("agents", "agents_mask", "lanes", "lane_attrs", "lanes_mask", "route", "ego")
        return {n: getattr(o, n).cpu().numpy().astype(np.int8 if n.endswith("mask") else np.float32) for n in names}


def trajectory_space(horizon: int, dt: float, max_speed: float) -> gym.spaces.Box:
    """Box [H, 3]: x, y within what max_speed covers over the horizon, heading in [-pi, pi]."""
    reach = float(max_speed * horizon * dt)
    low = np.tile(np.array([-reach, -reach, -np.pi], np.float32), (horizon, 1))
    return gym.spaces.Box(low, -low, dtype=np.float32)


__all__ = ["DriveVectorEnv", "merge_rows", "vector_observation_space", "trajectory_space"]  # merge_rows: re-exported, its earlier home
