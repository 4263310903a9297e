"""The policy interface and the simple built-in policies.

A policy maps a batched `Observation` to actions [B, 2] = (acceleration m/s^2, steering rad)
inside `ACTION_LOW`..`ACTION_HIGH`; the rollout rejects anything else instead of clipping it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from drivesim.behavior.idm import IDMConfig
from drivesim.behavior.reactive import ReactiveConfig, lane_frenet, longitudinal, next_lanes, pure_pursuit
from drivesim.dynamics.bicycle import BicycleConfig
from drivesim.sim.observation import Observation

_DYN = BicycleConfig()
ACTION_LOW = torch.tensor([-_DYN.max_decel, -_DYN.max_steer])
ACTION_HIGH = torch.tensor([_DYN.max_accel, _DYN.max_steer])


class Policy(Protocol):
    name: str

    def reset(self, batch) -> None:
        """Called before a rollout with the ScenarioBatch it will drive."""

    def act(self, obs: Observation) -> torch.Tensor:
        """Actions [B, 2] for a batch of observations."""


def clip_action(action: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(action, ACTION_HIGH.to(action.device)), ACTION_LOW.to(action.device))


class ConstantVelocity:
    """Keeps speed and heading: zero acceleration, zero steering."""

    name = "constant_velocity"

    def reset(self, batch) -> None:
        pass

    def act(self, obs: Observation) -> torch.Tensor:
        return torch.zeros(obs.batch_size, 2, device=obs.state.device)


class IDMLaneKeeping:
    """IDM behind whatever is ahead on the route (agents, red lights) and pure pursuit on the
    route lanes; never changes lane. The same code that drives reactive traffic."""

    name = "idm"

    def __init__(self, config: ReactiveConfig | None = None):
        self.config = config or ReactiveConfig(idm=IDMConfig(max_accel=1.5, comfort_decel=3.0))

    def reset(self, batch) -> None:
        pass

    def act(self, obs: Observation) -> torch.Tensor:
        state, batch = obs.state, obs.batch
        fr = lane_frenet(state, batch)
        nxt = next_lanes(state.lane, batch)
        acc, _ = longitudinal(state, fr, nxt, batch, self.config, state.row_step * batch.dt)
        lat = torch.full_like(fr.d, self.config.lat_speed)
        steer = pure_pursuit(state, fr, state.lane, nxt, batch, lat, self.config)
        return clip_action(torch.stack([acc[:, 0], steer[:, 0]], dim=-1))


BUILTIN_POLICIES = {"constant_velocity": ConstantVelocity, "idm": IDMLaneKeeping}
