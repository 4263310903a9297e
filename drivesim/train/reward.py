"""The RL reward, built from the metric code (CaRL-style, docs/definitions.md "IL then RL").

Per simulation step and scenario row:

    r = progress × f_ttc × f_comfort × f_lane

- progress: the ego's route-progress gain of the step (`route_position`, as the gym adapter and
  the metric accumulator measure it) in units of (lane speed limit × dt), so ~1 per step at the
  limit; clipped to [-progress_cap, progress_cap] (driving faster than the limit earns nothing).
- f_ttc: 1 while the nuPlan TTC (`metrics.ttc.ego_ttc`, 3 s horizon) is at least the threshold
  (0.95 s), falling linearly to `ttc_min_factor` at TTC 0.
- f_comfort: 1 within the nuPlan comfort bounds (`metrics.comfort`: the same signals and
  smoothing, on the last few samples); the worst relative excess e over a bound lowers it
  linearly to `comfort_min_factor` at e = 1 (twice the bound).
- f_lane: lateral offset from the route centreline and heading error to it, each from 1 at its
  `*_ok` value to `lane_min_factor` at its `*_bad` value (product); off inside junctions.

The episode terminates with reward 0 on any ego collision (`ego_overlaps`' SAT test, read from
the TTC candidates) or when an ego corner is more than 0.3 m off the drivable area (the DAC
tolerance). Reaching the end of the route ends it too (`route_done`), as success: no reward
is left to collect. `DriveReward` keeps the little per-row state this needs (last route
position, a short yaw/speed history) and restarts rows on demand; it is the reward object of the
RL rows' `sim.env.DriveEnv` (train/ppo.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from drivesim.core.geometry import box_corners, wrap_angle
from drivesim.metrics.collisions import ego_consider_mask, ego_straddles_lanes
from drivesim.metrics.comfort import ComfortConfig, comfort_signals
from drivesim.metrics.drivable import DrivableConfig, ego_map_lookup
from drivesim.metrics.ttc import Boxes, TTCConfig, ego_ttc, pair_terms
from drivesim.sim.observation import route_points_at, route_position

HISTORY = 8  # yaw/speed samples kept for the comfort signals (jerk needs 3, smoothing a few more)


@dataclass(frozen=True)
class RewardConfig:
    progress_cap: float = 1.0  # per-step normalised progress is clipped to [-cap, cap]
    ttc_min_factor: float = 0.5  # f_ttc at TTC 0 (1 at and above ttc.threshold)
    comfort_min_factor: float = 0.5  # f_comfort when a signal is twice its bound (or worse)
    lane_offset_ok: float = 0.5  # m from the route centreline: f_lane 1 up to here ...
    lane_offset_bad: float = 2.0  # m ... lane_min_factor from here on
    heading_ok: float = 0.2  # rad heading error to the route: 1 up to here ...
    heading_bad: float = 0.6  # rad ... lane_min_factor from here on
    lane_min_factor: float = 0.5
    offroad_tolerance: float = DrivableConfig.dac_tolerance  # m, terminates beyond it
    ttc: TTCConfig = field(default_factory=TTCConfig)
    comfort: ComfortConfig = field(default_factory=ComfortConfig)

    def validate_config(self, where: str = "reward") -> None:
        from drivesim.core.config import ConfigError

        for name in ("ttc_min_factor", "comfort_min_factor", "lane_min_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.lane_offset_bad <= self.lane_offset_ok or self.heading_bad <= self.heading_ok:
            raise ConfigError(f"{where}: need lane_offset_ok < lane_offset_bad and heading_ok < heading_bad")
        if self.progress_cap <= 0:
            raise ConfigError(f"{where}.progress_cap: must be > 0, got {self.progress_cap}")


@dataclass
class StepReward:
    """One step's reward and events, all [B]."""

    reward: torch.Tensor  # float, 0 where terminated
    terminated: torch.Tensor  # bool: collision | offroad | route_done
    collision: torch.Tensor  # bool
    offroad: torch.Tensor  # bool
    route_done: torch.Tensor  # bool: reached the end of the route
    progress: torch.Tensor  # normalised progress before the factors
    factors: dict  # name -> [B] f_ttc, f_comfort, f_lane
    ttc: torch.Tensor  # s (cfg.ttc.clamp when none)


def ramp(x: torch.Tensor, ok: float, bad: float, low: float) -> torch.Tensor:
    """1 for x <= ok, falling linearly to `low` at x >= bad."""
    return 1.0 - (1.0 - low) * ((x - ok) / (bad - ok)).clamp(0.0, 1.0)


def ttc_factor(ttc: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    return cfg.ttc_min_factor + (1.0 - cfg.ttc_min_factor) * (ttc / cfg.ttc.threshold).clamp(0.0, 1.0)


def comfort_excess(yaw: torch.Tensor, speed: torch.Tensor, valid: torch.Tensor, dt: float, cfg: ComfortConfig) -> torch.Tensor:
    """[B] worst relative excess over the nuPlan comfort bounds at the last sample of yaw, speed
    [T, B] (0 within bounds, 1 at twice a bound)."""
    sig = comfort_signals(yaw, speed, dt, valid, cfg)
    bounds = {"lon_accel": (cfg.min_lon_accel, cfg.max_lon_accel), "lat_accel": (-cfg.max_abs_lat_accel, cfg.max_abs_lat_accel),
              "jerk": (-cfg.max_abs_jerk, cfg.max_abs_jerk), "lon_jerk": (-cfg.max_abs_lon_jerk, cfg.max_abs_lon_jerk),
              "yaw_accel": (-cfg.max_abs_yaw_accel, cfg.max_abs_yaw_accel),
              "yaw_rate": (-cfg.max_abs_yaw_rate, cfg.max_abs_yaw_rate)}
    worst = torch.zeros_like(speed[0])
    for name, (lo, hi) in bounds.items():
        v, ok = sig[name]
        v, ok = v[-1], ok[-1]
        e = torch.maximum(torch.relu(v - hi) / abs(hi), torch.relu(lo - v) / abs(lo))
        worst = torch.maximum(worst, torch.where(ok, e, torch.zeros_like(e)))
    return worst


class DriveReward:
    """Per-step reward of B rows of a ScenarioBatch; `restart(state, rows)` after rows reset. A
    reward object of `sim.env.DriveEnv`: `events` are the StepReward flags the env reports."""

    events = ("collision", "offroad", "route_done")

    def __init__(self, batch, config: RewardConfig | None = None):
        self.batch, self.cfg = batch, config or RewardConfig()
        B = batch.batch_size
        dev = batch.device
        self.route_len = batch.route_s[:, -1]  # [B]
        self.ego_half = 0.5 * batch.init["length"][:, 0]
        self.s_prev = torch.zeros(B, device=dev)
        self.yaw_hist = torch.zeros(HISTORY, B, device=dev)  # [H, B], newest last
        self.speed_hist = torch.zeros(HISTORY, B, device=dev)
        self.count = torch.zeros(B, dtype=torch.long, device=dev)  # samples since the row's start

    def restart(self, state, rows: torch.Tensor | None = None) -> None:
        """Start the rows [B] bool (all when None) from `state` (their first sample)."""
        rows = torch.ones_like(self.count, dtype=torch.bool) if rows is None else rows
        s, _ = route_position(self.batch, state.xy[:, 0])
        self.s_prev = torch.where(rows, s, self.s_prev)
        self.count = torch.where(rows, torch.ones_like(self.count), self.count)
        self.yaw_hist[-1] = torch.where(rows, state.yaw[:, 0], self.yaw_hist[-1])
        self.speed_hist[-1] = torch.where(rows, state.speed[:, 0], self.speed_hist[-1])

    def state_dict(self) -> dict:
        return {"s_prev": self.s_prev, "yaw_hist": self.yaw_hist, "speed_hist": self.speed_hist, "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v.clone())

    def __call__(self, state) -> StepReward:
        """Reward of the step that led to `state`."""
        cfg, batch = self.cfg, self.batch
        bank = batch.bank
        boxes = Boxes.from_state(state)
        ego = Boxes(*(f[:, 0] for f in boxes))
        terms = pair_terms(Boxes(*(f[:, :1] for f in boxes)), boxes, ego_consider_mask(state.valid), cfg.ttc.horizon)
        collision = torch.zeros_like(self.s_prev, dtype=torch.bool)
        collision[terms.b[terms.overlap]] = True  # overlapping pairs are always candidates
        corners = box_corners(*ego.as_box())  # [B, 4, 2]
        xy = torch.stack([ego.x, ego.y], dim=-1)
        max_sd, direction = ego_map_lookup(bank, batch.map_idx, corners, xy)
        offroad = max_sd > cfg.offroad_tolerance
        junction = (direction == 0).all(dim=-1) & (max_sd <= 0)
        lateral = lambda: ego_straddles_lanes(bank, state.lane[:, 0], state.seg[:, 0], corners) | (max_sd > 0) | junction
        ttc = ego_ttc(terms, ego.speed, torch.zeros_like(terms.overlap), lateral, cfg.ttc)

        s, d = route_position(batch, xy)
        limit = bank.lane_speed[state.lane[:, 0].clamp(min=0)].clamp(min=1.0) * batch.dt
        progress = ((s - self.s_prev) / limit).clamp(-cfg.progress_cap, cfg.progress_cap)
        tangent = route_points_at(batch, torch.stack([s - 1.0, s + 1.0], 1))  # [B, 2, 2]
        heading = wrap_angle(ego.yaw - torch.atan2(*(tangent[:, 1] - tangent[:, 0]).flip(-1).unbind(-1)))
        f_lane = ramp(d.abs(), cfg.lane_offset_ok, cfg.lane_offset_bad, cfg.lane_min_factor) * ramp(
            heading.abs(), cfg.heading_ok, cfg.heading_bad, cfg.lane_min_factor)
        f_lane = torch.where(junction, torch.ones_like(f_lane), f_lane)

        self.yaw_hist = torch.cat([self.yaw_hist[1:], ego.yaw.unsqueeze(0)])
        self.speed_hist = torch.cat([self.speed_hist[1:], ego.speed.unsqueeze(0)])
        self.count = self.count + 1
        valid = torch.arange(HISTORY, device=s.device).unsqueeze(1) >= HISTORY - self.count.unsqueeze(0)  # [H, B]
        excess = comfort_excess(self.yaw_hist, self.speed_hist, valid, batch.dt, cfg.comfort)
        f_comfort = ramp(excess, 0.0, 1.0, cfg.comfort_min_factor)
        f_ttc = ttc_factor(ttc, cfg)
        self.s_prev = s

        route_done = s >= self.route_len - self.ego_half - 1.0  # as MetricAccumulator.route_completed
        failed = collision | offroad
        reward = torch.where(failed, torch.zeros_like(progress), progress * f_ttc * f_comfort * f_lane)
        return StepReward(reward, failed | route_done, collision, offroad, route_done & ~failed, progress,
                          {"ttc": f_ttc, "comfort": f_comfort, "lane": f_lane}, ttc)


__all__ = ["RewardConfig", "DriveReward", "StepReward", "ttc_factor", "comfort_excess", "ramp"]
