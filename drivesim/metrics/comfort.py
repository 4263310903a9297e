"""Ego comfort from its trajectory (yaw, speed over time), computed as nuPlan computes it.

Bounds: nuPlan `ego_is_comfortable` as listed in docs/definitions.md (also NAVSIM
`pdm_comfort_metrics.py`): longitudinal accel in [-4.05, 2.40] m/s^2, |lateral accel| <= 4.89,
|jerk| <= 8.37 m/s^3, |longitudinal jerk| <= 4.13, |yaw accel| <= 1.93 rad/s^2,
|yaw rate| <= 0.95 rad/s; comfortable (1) only if every bound holds at every sample.

Derivatives: Savitzky-Golay filters with nuPlan's windows and orders (nuplan-devkit
`nuplan/planning/metrics/utils/state_extractors.py`, `approximate_derivatives`,
`extract_ego_acceleration`, `extract_ego_jerk`, `extract_ego_yaw_rate`, and the metric classes
`ego_yaw_acceleration.py` / `ego_lat_acceleration.py` that call them), scipy `savgol_filter` with
its default `mode='interp'`, each window shortened to the series length as nuPlan does:
- yaw rate: d/dt of the unwrapped heading, window 5, order 2 (`extract_ego_yaw_rate` does not
  pass its `window_length=15` on, so `approximate_derivatives`' default 5 applies);
- yaw accel: d²/dt² of the unwrapped heading, window 5, order 3 (`deriv_order 2, poly_order 3`);
- longitudinal / lateral accel: the per-sample acceleration smoothed with window 8, order 2
  (`extract_ego_acceleration`); nuPlan reads the ego state's acceleration, here the backward
  difference dv/dt of consecutive samples (what the simulator's bicycle applied; the first
  sample repeats the second) and the centripetal v * yaw rate;
- jerk (of |a| = hypot(lon, lat)) and longitudinal jerk: d/dt of the smoothed acceleration,
  window 15, order 2 (`extract_ego_jerk`).
Only valid samples enter a filter: each column's valid samples are taken as one series (the
rollout's counted samples are a prefix, so this is exact there). Time is the first axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.signal import savgol_filter


@dataclass(frozen=True)
class ComfortConfig:
    min_lon_accel: float = -4.05  # m/s^2
    max_lon_accel: float = 2.40  # m/s^2
    max_abs_lat_accel: float = 4.89  # m/s^2
    max_abs_jerk: float = 8.37  # m/s^3
    max_abs_lon_jerk: float = 4.13  # m/s^3
    max_abs_yaw_accel: float = 1.93  # rad/s^2
    max_abs_yaw_rate: float = 0.95  # rad/s
    # Savitzky-Golay windows (samples) and polynomial orders, nuplan-devkit state_extractors.py
    yaw_window: int = 5  # approximate_derivatives default window_length
    yaw_rate_order: int = 2  # extract_ego_yaw_rate poly_order
    yaw_accel_order: int = 3  # EgoYawAccelerationStatistics: deriv_order 2, poly_order 3
    accel_window: int = 8  # extract_ego_acceleration window_length
    accel_order: int = 2
    jerk_window: int = 15  # extract_ego_jerk window_length
    jerk_order: int = 2

    def validate_config(self, where: str = "comfort") -> None:
        from drivesim.core.config import ConfigError

        for w, p in (("yaw_window", "yaw_accel_order"), ("accel_window", "accel_order"), ("jerk_window", "jerk_order")):
            if getattr(self, p) < 0 or getattr(self, w) <= getattr(self, p):
                raise ConfigError(f"{where}.{w}: must exceed {where}.{p} (>= 0), got {getattr(self, w)} and {getattr(self, p)}")
        if not 0 <= self.yaw_rate_order < self.yaw_window:
            raise ConfigError(f"{where}.yaw_rate_order: must be in [0, yaw_window), got {self.yaw_rate_order}")


@lru_cache(maxsize=256)
def _savgol_matrix(n: int, window: int, order: int, deriv: int, dt: float) -> np.ndarray:
    """[n, n] linear map of scipy's savgol_filter (mode 'interp') on a series of n samples, the
    window shortened to n (nuPlan: `min(window_length, len(x))`); zeros when n <= order."""
    w = min(window, n)
    if w <= order:
        return np.zeros((n, n))
    return savgol_filter(np.eye(n), window_length=w, polyorder=order, deriv=deriv, delta=dt, axis=0)


def savgol(v: torch.Tensor, valid: torch.Tensor, window: int, order: int, deriv: int = 0, dt: float = 1.0) -> torch.Tensor:
    """Savitzky-Golay filter (or derivative) along dim 0 of v [T, ...] over each column's valid
    samples taken in order; invalid samples come back 0."""
    T = v.shape[0]
    flat, ok = v.reshape(T, -1), valid.reshape(T, -1)
    order_idx = torch.argsort((~ok).to(torch.uint8), dim=0, stable=True)  # valid samples first, in time order
    packed = flat.gather(0, order_idx)
    n = ok.sum(dim=0)  # [N]
    out = torch.zeros_like(packed)
    for length in n.unique().tolist():
        if length < 2:
            continue
        cols = (n == length).nonzero(as_tuple=True)[0]
        m = torch.as_tensor(_savgol_matrix(int(length), window, order, deriv, float(dt)), dtype=v.dtype, device=v.device)
        out[:length, cols] = m @ packed[:length, cols]
    res = torch.zeros_like(flat).scatter(0, order_idx, out)
    return torch.where(ok, res, torch.zeros_like(res)).reshape(v.shape)


def _unwrap(yaw: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Headings made continuous along dim 0 across the valid samples (nuPlan `phase_unwrap`)."""
    T = yaw.shape[0]
    flat, ok = yaw.reshape(T, -1), valid.reshape(T, -1)
    order_idx = torch.argsort((~ok).to(torch.uint8), dim=0, stable=True)
    packed = flat.gather(0, order_idx)
    step = torch.diff(packed, dim=0)
    wrapped = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
    unwrapped = torch.cat([packed[:1], packed[:1] + torch.cumsum(wrapped, dim=0)])
    return torch.zeros_like(flat).scatter(0, order_idx, unwrapped).reshape(yaw.shape)


def _backward_accel(speed: torch.Tensor, valid: torch.Tensor, dt: float) -> torch.Tensor:
    """Per-sample acceleration (v[t] - v[t-1]) / dt over the valid samples; the first valid
    sample of a column repeats the second."""
    T = speed.shape[0]
    flat, ok = speed.reshape(T, -1), valid.reshape(T, -1)
    order_idx = torch.argsort((~ok).to(torch.uint8), dim=0, stable=True)
    packed = flat.gather(0, order_idx)
    d = torch.diff(packed, dim=0) / dt
    acc = torch.cat([d[:1], d]) if T > 1 else torch.zeros_like(packed)
    return torch.zeros_like(flat).scatter(0, order_idx, acc).reshape(speed.shape)


def comfort_signals(yaw: torch.Tensor, speed: torch.Tensor, dt: float, valid: torch.Tensor | None = None,
                    cfg: ComfortConfig = ComfortConfig()) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Kinematic signals {name: (values [T, ...], valid [T, ...])} from yaw, speed [T, ...] every dt."""
    if valid is None:
        valid = torch.ones_like(speed, dtype=torch.bool)
    heading = _unwrap(yaw, valid)
    yaw_rate = savgol(heading, valid, cfg.yaw_window, cfg.yaw_rate_order, 1, dt)
    yaw_accel = savgol(heading, valid, cfg.yaw_window, cfg.yaw_accel_order, 2, dt)
    lon_raw = _backward_accel(speed, valid, dt)
    lat_raw = speed * yaw_rate
    smooth = lambda x: savgol(x, valid, cfg.accel_window, cfg.accel_order, 0, dt)
    lon, lat, mag = smooth(lon_raw), smooth(lat_raw), smooth(torch.hypot(lon_raw, lat_raw))
    jerk = savgol(mag, valid, cfg.jerk_window, cfg.jerk_order, 1, dt)
    lon_jerk = savgol(lon, valid, cfg.jerk_window, cfg.jerk_order, 1, dt)
    # a single sample has no derivative: nothing to check there
    enough = valid & (valid.sum(dim=0, keepdim=True) >= 2)
    return {"lon_accel": (lon, enough), "lat_accel": (lat, enough), "yaw_rate": (yaw_rate, enough),
            "jerk": (jerk, enough), "lon_jerk": (lon_jerk, enough), "yaw_accel": (yaw_accel, enough)}


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
    checks = comfort_checks(comfort_signals(yaw, speed, dt, valid, cfg), cfg)
    return torch.stack(list(checks.values())).all(dim=0).float()
