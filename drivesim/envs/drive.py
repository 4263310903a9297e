"""`drivesim/Drive-v0`: one driving scenario at a time as a standard `gymnasium.Env`.

    import gymnasium as gym, drivesim
    env = gym.make("drivesim/Drive-v0", suite="nominal", cameras="splat", render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Scenarios come from a suite (`suite=`: a shipped name or a YAML path) or from `scenarios=` (a
folder or file of scenario files, real logs in a format `drivesim import` reads, or a list of
`Scenario`). `reset(seed=...)` picks the scenario with the env's seeded generator; with a suite
and `resample=True` (the default) it also draws the suite seed that scenario is built with, so
every episode has fresh map parameters and background traffic from the same distribution, and
the same seed gives the same episodes. `options={"scenario": name or index}` picks one.
`traffic=` sets the mode of logged agents (`replay`, `reactive`, `hybrid`, `constant_velocity`).

Observation: the vector observation of `sim/observation.py` (the spaces of `DriveVectorEnv`);
with `cameras="splat" | "refined"` also `cameras` uint8 [C, H, W, 3] and the rig's `intrinsics`
[C, 3, 3] (at the rendered size) and `extrinsics` [C, 4, 4] (camera to ego). Action: (accel m/s^2,
steer rad) float32. Reward: route progress in units of speed limit x dt; an episode terminates
on a collision or on leaving the drivable area and is truncated at the scenario's duration. An
action outside `action_space` raises `ActionError` (never clipped silently): an agent whose
samples can leave the box wraps the env in `gymnasium.wrappers.ClipAction`. `render()` gives
the BEV frame as rgb_array (with the cameras beside it when the env has cameras).

`gym.make_vec("drivesim/Drive-v0", num_envs=N)` gives the batched `DriveVectorEnv` (one torch
simulator over N scenarios, vector observations); `vectorization_mode="sync"` stacks N of these
single envs instead (cameras included).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

from drivesim.core.config import ConfigError
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.state import SimState
from drivesim.io.scenario_file import load_scenarios
from drivesim.io.suite import build_scenario, find_suite, load_suite
from drivesim.render.cameras import CameraConfig, camera_matrices, make_cameras, to_uint8
from drivesim.sim.env import DriveEnv, RouteProgressReward
from drivesim.sim.gym_env import DriveVectorEnv, vector_observation_space
from drivesim.sim.observation import ObservationConfig, observe
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.simulator import SimConfig
from drivesim.traffic.log_modes import TRAFFIC_MODES, with_traffic

VECTOR_KEYS = ("agents", "agents_mask", "lanes", "lane_attrs", "lanes_mask", "route", "ego")


def scenario_pool(suite: str | None, scenarios, traffic: str | None) -> tuple[list[Scenario], object]:
    """(the scenarios to draw from, the parsed suite or None) for the env's arguments."""
    if scenarios is None:
        parsed = load_suite(find_suite(suite or "nominal"))
        pool = [build_scenario(parsed, g, i) for g, grp in enumerate(parsed.groups) for i in range(grp.count)]
    else:
        parsed = None
        pool = list(scenarios) if isinstance(scenarios, (list, tuple)) else load_scenarios(scenarios)[0]
    pool = [s for s in pool if s.error is None]
    if not pool:
        raise ConfigError(f"drivesim/Drive-v0: no scenario could be built from suite={suite!r} scenarios={scenarios!r}")
    if traffic is not None:
        if traffic not in TRAFFIC_MODES:
            raise ConfigError(f"drivesim/Drive-v0: traffic {traffic!r}; expected one of {', '.join(TRAFFIC_MODES)}")
        unlogged = [s.name for s in pool if s.log_valid is None or not s.log_valid.any()]
        if unlogged:
            raise ConfigError(f"drivesim/Drive-v0: traffic={traffic!r} sets the modes of logged agents; {unlogged[:3]} "
                              "have no log (procedural suites set their traffic in the suite file)")
        pool = [with_traffic(s, traffic) for s in pool]
    return pool, parsed


class DriveGymEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, suite: str | None = "nominal", scenarios=None, traffic: str | None = None,
                 cameras: str | CameraConfig | None = None, render_mode: str | None = None, resample: bool = True,
                 obs_config: ObservationConfig | None = None, sim_config: SimConfig | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"drivesim/Drive-v0: render_mode {render_mode!r}; expected None or 'rgb_array'")
        self.pool, self.suite = scenario_pool(suite, scenarios, traffic)
        # the suite slot (group, index) of each pool scenario (scenarios that could not be built are not in the pool)
        self.slots = [(s.meta["suite"]["group"], s.meta["suite"]["index"]) for s in self.pool] if self.suite else None
        self.resample, self.render_mode = bool(resample) and self.suite is not None, render_mode
        self.obs_config, self.sim_config = obs_config or ObservationConfig(), sim_config
        self.cameras = make_cameras(cameras) if cameras is not None else None
        spaces = dict(vector_observation_space(self.obs_config).spaces)
        if self.cameras is not None:
            self.intrinsics, self.extrinsics = camera_matrices(self.cameras)
            C, H, W = len(self.cameras.rig), self.cameras.height, self.cameras.width
            spaces["cameras"] = gymnasium.spaces.Box(0, 255, (C, H, W, 3), np.uint8)
            spaces["intrinsics"] = gymnasium.spaces.Box(-np.inf, np.inf, (C, 3, 3), np.float32)
            spaces["extrinsics"] = gymnasium.spaces.Box(-np.inf, np.inf, (C, 4, 4), np.float32)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        self.action_space = gymnasium.spaces.Box(ACTION_LOW.numpy(), ACTION_HIGH.numpy(), dtype=np.float32)
        self._maps: dict = {}
        self._frames = None  # the camera frames of the current state
        self.env = self.scenario = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.scenario = self._pick((options or {}).get("scenario"))
        batch = ScenarioBatch.build([self.scenario])
        self.env = DriveEnv(batch, RouteProgressReward(batch), self.sim_config)
        if hasattr(self.cameras, "reset"):
            self.cameras.reset()  # the refiner's previous frame belongs to the last episode
        return self._obs(), {"scenario": self.scenario.name}

    def _pick(self, which) -> Scenario:
        if which is not None:
            names = [s.name for s in self.pool]
            if isinstance(which, (int, np.integer)) and 0 <= which < len(self.pool):
                k = int(which)
            elif which in names:
                k = names.index(which)
            else:
                raise ValueError(f"drivesim/Drive-v0: no scenario {which!r} (an index < {len(self.pool)} or a name, "
                                 f"e.g. {names[0]!r})")
        else:
            k = int(self.np_random.integers(len(self.pool)))
        if not self.resample:
            return self.pool[k]
        g, i = self.slots[k]
        built = build_scenario(self.suite, g, i, seed=int(self.np_random.integers(2**31)), maps=self._maps)
        return built if built.error is None else self.pool[k]  # an unbuildable draw: the suite's own scenario

    def step(self, action):
        if self.env is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        a = torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, -1)
        out = self.env.step(a)  # ActionError (naming the scenario and step) for an action outside action_space
        info = {name: bool(flag[0]) for name, flag in out.events.items()}
        return self._obs(), float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info

    def _obs(self) -> dict[str, np.ndarray]:
        state, batch = self.env.state, self.env.batch
        o = observe(state, batch, self.obs_config)
        obs = {n: getattr(o, n)[0].cpu().numpy().astype(np.int8 if n.endswith("mask") else np.float32) for n in VECTOR_KEYS}
        if self.cameras is not None:
            self._frames = to_uint8(self.cameras(state, batch)[0])  # render() shows these: no second render
            obs["cameras"] = self._frames.copy()
            obs["intrinsics"], obs["extrinsics"] = self.intrinsics.copy(), self.extrinsics.copy()
        return obs

    def render(self):
        if self.render_mode != "rgb_array" or self.env is None:
            return None
        from drivesim.render.bev import render_frames
        from drivesim.render.splat.sensors import surround_frame

        traj = {k: v.cpu().numpy() for k, v in SimState.stack_time([self.env.state]).items()}
        bev = lambda size: render_frames(self.scenario, traj, 0, view="ego", size=size, trail=False,
                                         start_step=int(self.env.state.row_step[0]))[0]
        if self.cameras is None:
            return bev((480, 360))
        images = self._frames  # [C, H, W, 3]: what the policy saw at this state
        f = max(1, round(180 / images.shape[1]))  # camera tiles at least ~180 px tall beside a square BEV
        images = np.repeat(np.repeat(images, f, axis=1), f, axis=2)
        side = 2 * images.shape[1] + 2
        return surround_frame(images, bev((side, side)), names=self.cameras.rig.names)


def make_vector_env(num_envs: int = 8, suite: str | None = "nominal", scenarios=None, traffic: str | None = None,
                    cameras=None, **kwargs) -> DriveVectorEnv:
    """The batched vector env over the first `num_envs` scenarios of the pool (repeated when
    fewer): `gymnasium.make_vec("drivesim/Drive-v0", num_envs=N)`."""
    if cameras is not None:
        raise ConfigError("drivesim/Drive-v0: the batched vector env has vector observations only; for cameras use "
                          "gymnasium.make_vec(..., vectorization_mode='sync')")
    pool, _ = scenario_pool(suite, scenarios, traffic)
    return DriveVectorEnv([pool[k % len(pool)] for k in range(num_envs)], **kwargs)
