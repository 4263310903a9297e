"""Kinematic bicycle model with acceleration, steering, jerk and steering-rate limits.

`step` integrates with the mid-point speed so that `inverse` recovers the actions exactly:
    v' = max(0, v + a dt),  v_m = (v + v') / 2
    yaw' = yaw + v_m tan(delta) / L dt
    xy' = xy + v_m dt (cos, sin)(yaw + (yaw' - yaw) / 2)
The wheelbase L is a fixed fraction of the box length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.core.geometry import wrap_angle

# Waymax kinematic infeasibility thresholds (docs/definitions.md, waymax metrics)
INFEASIBLE_ACCEL = 10.4  # m/s^2
INFEASIBLE_CURVATURE = 0.3  # 1/m
WHEELBASE_RATIO = 0.6  # wheelbase / box length


@dataclass(frozen=True)
class BicycleConfig:
    max_accel: float = 4.0  # m/s^2
    max_decel: float = 8.0  # m/s^2 (braking, positive number)
    max_steer: float = 0.6  # rad
    max_jerk: float = 20.0  # m/s^3, applied to the change of the commanded acceleration
    max_steer_rate: float = 1.0  # rad/s
    max_speed: float = 40.0  # m/s


def apply_limits(accel, steer, prev_accel, prev_steer, dt: float, cfg: BicycleConfig):
    """Clamp commanded actions to the actuator range, then to the jerk and steering-rate limits."""
    accel = accel.clamp(-cfg.max_decel, cfg.max_accel)
    steer = steer.clamp(-cfg.max_steer, cfg.max_steer)
    da = cfg.max_jerk * dt
    ds = cfg.max_steer_rate * dt
    accel = torch.minimum(torch.maximum(accel, prev_accel - da), prev_accel + da)
    steer = torch.minimum(torch.maximum(steer, prev_steer - ds), prev_steer + ds)
    return accel, steer


def step(x, y, yaw, speed, accel, steer, length, dt: float, max_speed: float = 40.0):
    """One bicycle step. Returns (x, y, yaw, speed, accel_effective); speed never goes negative."""
    new_speed = (speed + accel * dt).clamp(0.0, max_speed)
    accel_eff = (new_speed - speed) / dt
    v_mid = 0.5 * (speed + new_speed)
    wheelbase = WHEELBASE_RATIO * length
    dyaw = v_mid * torch.tan(steer) / wheelbase * dt
    heading = yaw + 0.5 * dyaw
    return (x + v_mid * torch.cos(heading) * dt, y + v_mid * torch.sin(heading) * dt,
            wrap_angle(yaw + dyaw), new_speed, accel_eff)


def inverse(yaw, speed, length, dt: float, min_speed: float = 1e-3):
    """Actions recovered from motion: yaw, speed [..., T+1] -> accel, steer [..., T].

    length broadcasts against [..., T] (pass [..., 1] for per-agent lengths). Steering is
    undefined while (nearly) stopped and is returned as 0 there.
    """
    accel = (speed[..., 1:] - speed[..., :-1]) / dt
    v_mid = 0.5 * (speed[..., 1:] + speed[..., :-1])
    dyaw = wrap_angle(yaw[..., 1:] - yaw[..., :-1])
    wheelbase = WHEELBASE_RATIO * length
    moving = v_mid > min_speed
    steer = torch.where(moving, torch.atan(dyaw * wheelbase / (v_mid.clamp(min=min_speed) * dt)), torch.zeros_like(v_mid))
    return accel, steer


def kinematically_feasible(accel, steer, length):
    """Waymax infeasibility check: |accel| <= 10.4 m/s^2 and |curvature| <= 0.3 1/m."""
    curvature = torch.tan(steer).abs() / (WHEELBASE_RATIO * length)
    return (accel.abs() <= INFEASIBLE_ACCEL) & (curvature <= INFEASIBLE_CURVATURE)
