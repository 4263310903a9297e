"""The learned policy's trajectory vocabulary: longitudinal profiles x lateral options.

A decision is (acceleration a, lateral option j). Its trajectory, built along the ego's route the
way the expert builds its proposals (sim/expert.py), is: speed v(t) = max(0, v0 + a t) (the car
comes to rest and stays), arc length s(t) its integral, and lateral offset d(t) from the route
centreline moving from the ego's offset now towards the option's target at `lateral_speed` and at
most `lateral_slope` metres sideways per metre driven. Lateral options (targets, metres from the
route centreline, left positive):

    keep 0 | nudge_left +nudge | nudge_right -nudge | change_left +w | change_right -w

with w the width of the ego's lane; a lane change is offered only where the map has a lane that
way (`bank.lane_left/lane_right` of the ego's lane) or the ego is already on that side of its
route (so holding the other lane is "change again"). Keep, the nudges and a stop (the most
negative accelerations) are always available, so braking is always reachable.

`plan(obs, accel, option, cfg)` gives the world-frame plan (xy [B, T+1, 2], yaw, speed, at
`plan_dt`), `to_trajectory` the policy's output (ego-frame poses, sim/trajectory.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.core.geometry import to_local, wrap_angle
from drivesim.sim.observation import Observation, route_frame_to_world, route_position

LATERAL_OPTIONS = ("keep", "nudge_left", "nudge_right", "change_left", "change_right")


@dataclass(frozen=True)
class VocabularyConfig:
    lateral: tuple = LATERAL_OPTIONS  # the options offered, a subset of LATERAL_OPTIONS in this order
    nudge: float = 0.5  # m sideways of a nudge
    lateral_speed: float = 1.0  # m/s towards the target offset ...
    lateral_slope: float = 0.08  # ... and at most this many metres sideways per metre driven (a lane change over ~45 m)
    horizon: int = 40  # poses of a trajectory ...
    plan_dt: float = 0.1  # ... this many seconds apart (4 s at 10 Hz, nuPlan's rate)

    def validate_config(self, where: str = "vocabulary") -> None:
        from drivesim.core.config import ConfigError

        bad = [o for o in self.lateral if o not in LATERAL_OPTIONS]
        if bad or not self.lateral or self.lateral[0] != "keep":
            raise ConfigError(f"{where}.lateral: options must start with 'keep' and come from {LATERAL_OPTIONS}, got {self.lateral}")
        if self.horizon < 2 or self.plan_dt <= 0 or self.lateral_speed <= 0 or self.lateral_slope <= 0:
            raise ConfigError(f"{where}: horizon >= 2 and plan_dt, lateral_speed, lateral_slope > 0 needed")


def lateral_targets(obs: Observation, cfg: VocabularyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d0 [B] the ego's offset from its route now, targets [B, L] m, allowed [B, L] bool)."""
    state, bank = obs.state, obs.batch.bank
    lane = state.lane[:, 0].clamp(min=0)
    width = bank.lane_width[lane]
    _, d0 = route_position(obs.batch, state.xy[:, 0])
    on_lane = state.lane[:, 0] >= 0
    left = (on_lane & (bank.lane_left[lane] >= 0)) | (d0 > 0.5 * width)
    right = (on_lane & (bank.lane_right[lane] >= 0)) | (d0 < -0.5 * width)
    every = torch.ones_like(left)
    table = {"keep": (0.0 * width, every), "nudge_left": (cfg.nudge + 0.0 * width, every),
             "nudge_right": (-cfg.nudge + 0.0 * width, every), "change_left": (width, left), "change_right": (-width, right)}
    targets = torch.stack([table[o][0] for o in cfg.lateral], -1)
    allowed = torch.stack([table[o][1] for o in cfg.lateral], -1)
    return d0, targets, allowed


def plan(obs: Observation, accel: torch.Tensor, target: torch.Tensor, d0: torch.Tensor, cfg: VocabularyConfig) -> dict:
    """World-frame plan of acceleration accel [B] towards lateral offset target [B]:
    {xy [B, T+1, 2], yaw [B, T+1], speed [B, T+1]}, index 0 = now."""
    state = obs.state
    T = cfg.horizon
    t = torch.arange(T + 1, device=accel.device, dtype=accel.dtype) * cfg.plan_dt  # [T+1]
    v0 = state.speed[:, 0]
    a = accel.unsqueeze(1)
    speed = (v0.unsqueeze(1) + a * t).clamp(min=0.0)
    t_stop = torch.where(a < 0, (v0.unsqueeze(1) / (-a).clamp(min=1e-6)), torch.full_like(a, float("inf")))
    tt = torch.minimum(t.unsqueeze(0), t_stop)
    dist = v0.unsqueeze(1) * tt + 0.5 * a * tt ** 2  # [B, T+1] metres driven
    s0, _ = route_position(obs.batch, state.xy[:, 0])
    to_go = (target - d0).unsqueeze(1)
    room = torch.minimum(cfg.lateral_speed * t.unsqueeze(0), cfg.lateral_slope * dist)
    d = d0.unsqueeze(1) + to_go.sign() * torch.minimum(to_go.abs(), room)
    xy = route_frame_to_world(obs.batch, s0.unsqueeze(1) + dist, d)  # [B, T+1, 2]
    xy = xy - xy[:, :1] + state.xy[:, 0].unsqueeze(1)  # starts at the ego (its route projection can differ by cm)
    step = torch.diff(xy, dim=1)
    yaw = torch.atan2(step[..., 1], step[..., 0])
    moving = step.norm(dim=-1) > 1e-3
    yaw0 = state.yaw[:, 0]
    yaw = torch.where(moving, yaw, yaw0.unsqueeze(1))
    yaw = torch.cat([yaw0.unsqueeze(1), yaw], 1)
    # an unmoved pose keeps the heading of the last moved one (a stop keeps its heading)
    for i in range(1, T + 1):
        yaw[:, i] = torch.where(moving[:, i - 1], yaw[:, i], yaw[:, i - 1])
    return {"xy": xy, "yaw": yaw, "speed": speed}


def to_ego_poses(p: dict, xy0: torch.Tensor, yaw0: torch.Tensor) -> torch.Tensor:
    """Poses [B, T, 3] (x, y, heading) of the plan after now, in the ego frame at (xy0, yaw0)."""
    local = to_local(p["xy"][:, 1:], xy0.unsqueeze(1), yaw0.unsqueeze(1))
    return torch.cat([local, wrap_angle(p["yaw"][:, 1:] - yaw0.unsqueeze(1)).unsqueeze(-1)], -1)


__all__ = ["VocabularyConfig", "LATERAL_OPTIONS", "lateral_targets", "plan", "to_ego_poses"]
