"""The policy interface and the simple built-in policies.

A policy maps a batched `Observation` to actions [B, 2] = (acceleration m/s^2, steering rad)
inside `ACTION_LOW`..`ACTION_HIGH`; the rollout rejects anything else instead of clipping it.
Or to a `Trajectory` (sim/trajectory.py: ego-frame poses over a horizon) that the simulator's
controller tracks until the next decision (docs/trajectory_policies.md).
A policy may also have `prepare_batch(batch) -> batch`, which the rollout calls once before it
builds the simulator (`LogReplay` uses it to make the ego replay its log).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch

from drivesim.traffic.idm import IDMConfig
from drivesim.core.types import ControlMode
from drivesim.traffic.reactive import ReactiveConfig, lane_frenet, longitudinal, next_lanes, pure_pursuit
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
        """Actions [B, 2] (or a sim.trajectory.Trajectory) for a batch of observations."""


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
    route lanes; never changes lane. The same code that drives reactive traffic. On a logged
    scene its desired speed is the speed limit of the lane it is on (capped for the curves ahead,
    as for reactive agents), not the scenario's `desired_speed` of agent 0 (an importer sets that
    to the logged ego's top speed, 1 m/s on a log that crawls); a generated or procedural scenario
    keeps the ego speed it was made with (an event's ego-speed knob)."""

    name = "idm"

    def __init__(self, config: ReactiveConfig | None = None):
        self.config = config or ReactiveConfig(idm=IDMConfig(max_accel=1.5, comfort_decel=3.0))
        self._views = (None, None)  # (batch, the same batch with the ego's desired speed at the limit)

    def reset(self, batch) -> None:
        self._views = (batch, ego_at_speed_limit(batch))

    def act(self, obs: Observation) -> torch.Tensor:
        state = obs.state
        if self._views[0] is not obs.batch:
            self.reset(obs.batch)
        batch = self._views[1]
        fr = lane_frenet(state, batch)
        nxt = next_lanes(state.lane, batch)
        acc, _ = longitudinal(state, fr, nxt, batch, self.config, state.row_step * batch.dt)
        lat = torch.full_like(fr.d, self.config.lat_speed)
        steer = pure_pursuit(state, fr, state.lane, nxt, batch, lat, self.config)
        return clip_action(torch.stack([acc[:, 0], steer[:, 0]], dim=-1))


class LaneConstantSpeed:
    """The ego that does not react but keeps its lane: zero acceleration (it keeps its speed)
    and the route-lane steering of `idm` (pure pursuit on its route lanes); it brakes for
    nothing. Unlike `constant_velocity` it follows a curving route, so an event planned along the
    route meets it; the no-reaction reference of real-scene cut-ins (events/generate.py)."""

    name = "lane_constant_speed"

    def __init__(self, config: ReactiveConfig | None = None):
        self.config = config or ReactiveConfig()

    def reset(self, batch) -> None:
        pass

    def act(self, obs: Observation) -> torch.Tensor:
        state, batch = obs.state, obs.batch
        fr = lane_frenet(state, batch)
        nxt = next_lanes(state.lane, batch)
        lat = torch.full_like(fr.d, self.config.lat_speed)
        steer = pure_pursuit(state, fr, state.lane, nxt, batch, lat, self.config)[:, 0]
        return clip_action(torch.stack([torch.zeros_like(steer), steer], dim=-1))


def ego_at_speed_limit(batch):
    """The batch with agent 0's desired speed [B] set, on rows whose ego has a log (imported
    scenes), to the highest speed limit on its route lanes (`desired_speed` caps it further to the
    current lane's limit and the curves ahead); other rows keep theirs."""
    lanes = batch.route_lanes  # [B, R], -1 pad
    limits = batch.bank.lane_speed[lanes.clamp(min=0)].masked_fill(lanes < 0, 0.0)
    logged = batch.log_valid[:, 0].any(dim=1)  # [B]
    desired = batch.init["desired_speed"].clone()
    desired[:, 0] = torch.where(logged, limits.amax(dim=1), desired[:, 0])
    return dataclasses.replace(batch, init={**batch.init, "desired_speed": desired})


class LogReplay:
    """The logged ego, the human reference: agent 0 replays its log exactly (the simulator's
    REPLAY mode for the ego, so positions, headings and speeds, and hence every metric, are the
    log's), scored up to its last logged step; its actions are ignored. A replay rather than the
    bicycle's inverse actions: logged poses are not bicycle-consistent and the actuator limits
    (jerk, steering rate) would clip the spikes of the source, so a re-driven log would drift
    from the human one and its metrics would no longer be the log's. A scenario whose ego has
    no log from the first step is an error naming it."""

    name = "log"

    def prepare_batch(self, batch):
        """The batch with the ego in REPLAY mode and each row's steps cut to its ego's last
        logged step (raises ValueError naming the scenarios whose ego is not logged at step 0)."""
        ego_valid = batch.log_valid[:, 0]  # [B, T+1]
        missing = [n for n, ok in zip(batch.names, ego_valid[:, 0].tolist()) if not ok]
        if missing:
            raise ValueError(f"policy 'log': scenario(s) {missing[:5]} have no logged ego at their first step "
                             "(the log policy replays the recorded ego; use it on imported logs)")
        T1 = ego_valid.shape[1]
        last = T1 - 1 - ego_valid.flip(1).to(torch.uint8).argmax(dim=1)  # [B] last logged step
        mode = batch.init["mode"].clone()
        mode[:, 0] = int(ControlMode.REPLAY)
        return dataclasses.replace(batch, init={**batch.init, "mode": mode},
                                   num_steps=torch.minimum(batch.num_steps, last))

    def reset(self, batch) -> None:
        pass

    def act(self, obs: Observation) -> torch.Tensor:
        return torch.zeros(obs.batch_size, 2, device=obs.state.device)


BUILTIN_POLICIES = {"constant_velocity": ConstantVelocity, "idm": IDMLaneKeeping, "log": LogReplay,
                    "lane_constant_speed": LaneConstantSpeed}
