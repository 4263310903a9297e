"""Ego comfort from its trajectory (x, y, yaw, speed over time).

Bounds: nuPlan `ego_is_comfortable` as listed in REFERENCE.md (also NAVSIM
`pdm_comfort_metrics.py`): longitudinal accel in [-4.05, 2.40] m/s^2, |lateral accel| <= 4.89,
|jerk| <= 8.37 m/s^3, |longitudinal jerk| <= 4.13, |yaw accel| <= 1.93 rad/s^2,
|yaw rate| <= 0.95 rad/s; comfortable (1) only if every bound holds at every sample.

Derivatives: forward finite differences between consecutive samples, each derivative smoothed by
a centred moving average of `window` samples (edges average over the samples that exist). nuPlan
and NAVSIM use Savitzky-Golay filters instead (NAVSIM: one window over the whole horizon), so
values differ slightly near abrupt changes. Signals: yaw rate = wrapped dyaw / dt; longitudinal
accel = dv / dt; lateral accel = v * yaw rate; jerk = d|a| / dt with |a| = hypot(lon, lat);
longitudinal jerk = d(lon accel) / dt; yaw accel = d(yaw rate) / dt. Time is the first axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.core.geometry import wrap_angle


@dataclass(frozen=True)
class ComfortConfig:
    min_lon_accel: float = -4.05  # m/s^2
    max_lon_accel: float = 2.40  # m/s^2
    max_abs_lat_accel: float = 4.89  # m/s^2
    max_abs_jerk: float = 8.37  # m/s^3
    max_abs_lon_jerk: float = 4.13  # m/s^3
    max_abs_yaw_accel: float = 1.93  # rad/s^2
    max_abs_yaw_rate: float = 0.95  # rad/s
    window: int = 5  # samples of the centred moving average (odd; 0.5 s at 10 Hz)


def moving_average(v: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average along dim 0 over the valid samples only ([T, ...])."""
    if window <= 1:
        return v
    h = window // 2
    T = v.shape[0]
    m = valid.to(v.dtype)
    zero = torch.zeros_like(v[:1])
    cs = torch.cat([zero, torch.cumsum(v * m, dim=0)])  # [T+1, ...]
    cn = torch.cat([zero, torch.cumsum(m, dim=0)])
    hi = torch.arange(T, device=v.device).add(h + 1).clamp(max=T)
    lo = torch.arange(T, device=v.device).sub(h).clamp(min=0)
    total, count = cs[hi] - cs[lo], cn[hi] - cn[lo]
    return torch.where(valid, total / count.clamp(min=1), torch.zeros_like(v))


def _derivative(v: torch.Tensor, valid: torch.Tensor, dt: float, window: int):
    """Forward difference [T-1, ...] of v [T, ...], valid where both samples are, then smoothed."""
    ok = valid[1:] & valid[:-1]
    d = torch.where(ok, (v[1:] - v[:-1]) / dt, torch.zeros_like(v[1:]))
    return moving_average(d, ok, window), ok


def comfort_signals(yaw: torch.Tensor, speed: torch.Tensor, dt: float, valid: torch.Tensor | None = None,
                    window: int = ComfortConfig.window) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Kinematic signals {name: (values, valid)} from yaw, speed [T, ...] sampled every dt."""
    if valid is None:
        valid = torch.ones_like(speed, dtype=torch.bool)
    ok1 = valid[1:] & valid[:-1]
    dyaw = torch.where(ok1, wrap_angle(yaw[1:] - yaw[:-1]) / dt, torch.zeros_like(yaw[1:]))
    yaw_rate = moving_average(dyaw, ok1, window)
    lon, _ = _derivative(speed, valid, dt, window)
    lat = moving_average(0.5 * (speed[1:] + speed[:-1]) * dyaw, ok1, window)
    jerk, ok2 = _derivative(torch.hypot(lon, lat), ok1, dt, window)
    lon_jerk, _ = _derivative(lon, ok1, dt, window)
    yaw_accel, _ = _derivative(yaw_rate, ok1, dt, window)
    return {"lon_accel": (lon, ok1), "lat_accel": (lat, ok1), "yaw_rate": (yaw_rate, ok1),
            "jerk": (jerk, ok2), "lon_jerk": (lon_jerk, ok2), "yaw_accel": (yaw_accel, ok2)}


def comfort_checks(signals: dict, cfg: ComfortConfig = ComfortConfig()) -> dict[str, torch.Tensor]:
    """Per-signal pass/fail [...] (bool, True = within bounds at every valid sample)."""
    bounds = {"lon_accel": (cfg.min_lon_accel, cfg.max_lon_accel),
              "lat_accel": (-cfg.max_abs_lat_accel, cfg.max_abs_lat_accel),
              "jerk": (-cfg.max_abs_jerk, cfg.max_abs_jerk),
              "lon_jerk": (-cfg.max_abs_lon_jerk, cfg.max_abs_lon_jerk),
              "yaw_accel": (-cfg.max_abs_yaw_accel, cfg.max_abs_yaw_accel),
              "yaw_rate": (-cfg.max_abs_yaw_rate, cfg.max_abs_yaw_rate)}
    out = {}
    for name, (lo, hi) in bounds.items():
        v, ok = signals[name]
        out[name] = ~(((v < lo) | (v > hi)) & ok).any(dim=0)
    return out


def is_comfortable(yaw: torch.Tensor, speed: torch.Tensor, dt: float, valid: torch.Tensor | None = None,
                   cfg: ComfortConfig = ComfortConfig()) -> torch.Tensor:
    """Comfort 0/1 [...] (float) of trajectories yaw, speed [T, ...]."""
    checks = comfort_checks(comfort_signals(yaw, speed, dt, valid, cfg.window), cfg)
    return torch.stack(list(checks.values())).all(dim=0).float()
