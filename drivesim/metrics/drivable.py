"""Drivable-area compliance and driving-direction compliance of the ego.

Drivable area (nuplan-devkit `drivable_area_compliance.py`, docs/definitions.md): the largest signed
distance of an ego corner to the drivable-area edge (positive outside, the Waymax offroad
convention, read from the MapBank raster); the episode fails when it exceeds 0.3 m.

Driving direction (nuplan-devkit `driving_direction_compliance.py`, docs/definitions.md): per step the
oncoming displacement is -min(0, ego displacement . lane driving direction at the ego centre);
it is summed over a sliding 1 s window (nuPlan's window: the last n_horizon + 1 samples,
n_horizon = 1 s / dt); the maximum over the episode scores 1 (<= 2 m), 0.5 (<= 6 m), else 0.
Difference: nuPlan sums signed progress along the lane baseline in that window; here only the
oncoming part is summed, so forward driving earlier in the window does not cancel it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drivesim.map.bank import SDF_CLAMP


@dataclass(frozen=True)
class DrivableConfig:
    dac_tolerance: float = 0.3  # m, nuPlan max_violation_threshold
    direction_window_s: float = 1.0  # s, nuPlan time_horizon
    direction_comply: float = 2.0  # m, nuPlan driving_direction_compliance_threshold
    direction_violate: float = 6.0  # m, nuPlan driving_direction_violation_threshold


def max_corner_distance(bank, map_idx: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Largest signed distance [...] of box corners [B, ..., 4, 2] to the drivable edge (m)."""
    return bank.signed_distance(map_idx, corners).amax(dim=-1)


def ego_map_lookup(bank, map_idx: torch.Tensor, corners: torch.Tensor, centre: torch.Tensor):
    """Largest corner signed distance [B] (corners [B, 4, 2]) and the lane direction [B, 2] at
    centre [B, 2], from one raster-cell lookup: the same values as `bank.signed_distance` and
    `bank.driving_direction` (tests check it) at about half the per-step cost."""
    pts = torch.cat([corners, centre.unsqueeze(1)], dim=1)  # [B, 5, 2]
    idx, wts, inside = bank._raster_cells(map_idx, pts)  # [B, 5, 4], [B, 5, 4], [B, 5]
    sd = (bank.sdf[idx[:, :4]].float() * wts[:, :4]).sum(dim=-1)  # [B, 4]
    sd = torch.where(inside[:, :4], sd, torch.full_like(sd, SDF_CLAMP[1]))
    nearest = idx[:, 4].gather(-1, wts[:, 4].argmax(dim=-1, keepdim=True)).squeeze(-1)  # [B]
    direction = bank.lane_dir[nearest].float() * inside[:, 4:5]
    return sd.amax(dim=-1), direction


def drivable_area_compliance(max_distance: torch.Tensor, valid: torch.Tensor | None = None,
                             tolerance: float = DrivableConfig.dac_tolerance, dim: int = 0) -> torch.Tensor:
    """1.0 where no (valid) sample along `dim` is more than `tolerance` off the drivable area."""
    bad = max_distance > tolerance
    if valid is not None:
        bad = bad & valid
    return (~bad.any(dim=dim)).float()


def oncoming_displacement(direction: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """-min(0, disp . direction) [...] for displacement and unit lane direction [..., 2]."""
    return torch.relu(-(disp * direction).sum(dim=-1))


def window_steps(dt: float, window_s: float = DrivableConfig.direction_window_s) -> int:
    """Samples summed per window: nuPlan's n_horizon + 1 with n_horizon = window / dt."""
    return int(round(window_s / dt)) + 1


def max_window_sum(values: torch.Tensor, window: int, dim: int = 0) -> torch.Tensor:
    """Largest sum of `window` consecutive samples along `dim` (shorter at the start)."""
    v = values.movedim(dim, 0)
    cs = torch.cumsum(v, dim=0)
    shifted = torch.cat([torch.zeros_like(cs[:window]), cs[:-window]], dim=0)[: cs.shape[0]]
    return (cs - shifted).amax(dim=0)


def direction_score(max_oncoming: torch.Tensor, cfg: DrivableConfig = DrivableConfig()) -> torch.Tensor:
    """nuPlan driving-direction multiplier from the largest 1 s oncoming displacement (m)."""
    one = torch.ones_like(max_oncoming)
    return torch.where(max_oncoming <= cfg.direction_comply, one,
                       torch.where(max_oncoming <= cfg.direction_violate, 0.5 * one, 0.0 * one))


def log_corner_distance(scenario, bank=None, resolution: float = 0.25) -> torch.Tensor:
    """Largest signed corner distance [A, T+1] (m, positive off the drivable area) of every logged
    box of a scenario (`log` [A, T+1, 4], `length`/`width` [A]), read from the MapBank raster of
    its road (`bank`, else built at `resolution`) as the DAC reads the ego's (`max_corner_distance`)."""
    from drivesim.core.geometry import box_corners
    from drivesim.map.bank import MapBank

    bank = bank if bank is not None else MapBank.build([scenario.road], resolution=resolution)
    log = torch.as_tensor(scenario.log, dtype=torch.float32)
    size = lambda v: torch.as_tensor(v, dtype=torch.float32)[:, None].expand(log.shape[:2])
    corners = box_corners(log[..., 0], log[..., 1], log[..., 2], size(scenario.length), size(scenario.width))
    return max_corner_distance(bank, torch.zeros(1, dtype=torch.long), corners.reshape(1, -1, 4, 2)).reshape(log.shape[:2])


def log_drivable_summary(scenario, bank=None, moving_speed: float = 2.0,
                         tolerance: float = DrivableConfig.dac_tolerance) -> dict:
    """Share of logged steps whose box is on the drivable area (no corner more than `tolerance`
    off, the DAC test) for the ego, all vehicles but the ego, those vehicles while moving (speed >
    moving_speed m/s: parked cars stand in lots and driveways off the lanes), and the moving ones
    with their centre inside the map's extent (the drivable area's bounding box: AV2 and WOMD maps
    end near the ego, tracks do not). Also the ego's DAC (1: compliant over the whole log) and its
    worst corner distance (m); `nan` where there are no such steps."""
    from drivesim.core.types import AgentType

    dist = log_corner_distance(scenario, bank).numpy()  # [A, T+1]
    valid, log = np.asarray(scenario.log_valid, bool), np.asarray(scenario.log)
    on = dist <= tolerance
    vehicle = (np.asarray(scenario.agent_type) == int(AgentType.VEHICLE))[:, None] & valid
    vehicle[0] = False
    moving = vehicle & (log[..., 3] > moving_speed)
    x0, y0, x1, y1 = scenario.road.drivable.bounds
    in_map = (log[..., 0] >= x0) & (log[..., 0] <= x1) & (log[..., 1] >= y0) & (log[..., 1] <= y1)
    share = lambda m: float(on[m].mean()) if m.any() else float("nan")
    ego = valid & (np.arange(len(valid)) == 0)[:, None]
    return {"ego_on": share(ego), "vehicle_on": share(vehicle), "moving_vehicle_on": share(moving),
            "moving_in_map_on": share(moving & in_map), "vehicle_steps": int(vehicle.sum()),
            "moving_steps": int(moving.sum()), "moving_outside_map_steps": int((moving & ~in_map).sum()),
            "ego_dac": float(not (dist[0][valid[0]] > tolerance).any()), "ego_max_offroad": float(dist[0][valid[0]].max())}
