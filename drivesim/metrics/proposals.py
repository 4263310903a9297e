"""PDM-style scoring of candidate ego trajectories (for a PDM-Closed planner).

Re-implements NAVSIM v1 `pdm_scorer.py` (autonomousvision/navsim, docs/definitions.md) on tensors:
- NC: at the first contact with each agent (tracks touching at the first pose are ignored) the
  nuPlan collision type decides fault (collisions.py); at fault: 0 for agents, 0.5 for static
  objects. Lateral collisions are at fault while the ego straddles lanes or is off-road (or
  always, with `lateral_always_at_fault`, as the expert planner scores its proposals).
- DAC: 0 when a corner of any pose is off the drivable area (NAVSIM: no tolerance).
- TTC: at each pose the ego box is shifted forward by v * {0, 0.3, 0.6, 0.9} s and tested against
  the others at that future frame (past the last frame they keep constant velocity); a hit counts
  when the ego moves (> 5e-3 m/s) and the track is ahead (< 20 deg) or, while the ego straddles
  lanes / is off-road / in a junction, not behind (> 150 deg). NAVSIM also drops a track for the
  rest of the proposal once it was found irrelevant; this does not.
- EP: progress (clipped at 0) times NC * DAC, divided by the best such value among the proposals
  of the scenario when that exceeds 5 m; else 1 (0 where NC * DAC is 0).
- C: comfort.py on the proposal (moving-average derivatives; NAVSIM uses Savitzky-Golay).
- score = NC * DAC * (5 EP + 5 TTC + 2 C) / 12; driving direction is reported (weight 0 in v1).
Lane straddling needs the lane of every pose: pass ego_lane/ego_seg [N, K, T] (MapBank ids and
segment hints); without them no pose counts as straddling.

Speed: a coarse circle test per (scenario, time, agent) over all proposals and TTC shifts, then
a centre-distance test per (proposal, shift), then the exact separating-axis test on survivors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from drivesim.core.geometry import box_corners
from drivesim.core.types import AgentType
from drivesim.metrics.boxes import half_diagonal, sat_overlap
from drivesim.metrics.collisions import STOPPED_SPEED, at_fault, classify_collisions
from drivesim.metrics.comfort import ComfortConfig, is_comfortable
from drivesim.metrics.drivable import DrivableConfig, direction_score, max_window_sum, oncoming_displacement, window_steps
from drivesim.metrics.score import NAVSIM_MIN_PROGRESS, pdms
from drivesim.metrics.ttc import Boxes


@dataclass(frozen=True)
class ProposalConfig:
    ttc_shifts: tuple = (0, 3, 6, 9)  # frames, NAVSIM np.arange(0, 10, 3)
    ttc_stopped_speed: float = 5e-3  # m/s, NAVSIM stopped_speed_threshold
    ahead_deg: float = 20.0
    behind_deg: float = 150.0
    collision_stopped_speed: float = STOPPED_SPEED
    dac_tolerance: float = 0.0  # m; NAVSIM: any corner outside fails
    progress_threshold: float = NAVSIM_MIN_PROGRESS
    # a planner that should not be side-swiped either (a cut-in coming alongside): lateral
    # collisions count as at fault wherever the ego is (NAVSIM: only while it straddles lanes)
    lateral_always_at_fault: bool = False
    comfort: ComfortConfig = field(default_factory=ComfortConfig)
    direction: DrivableConfig = field(default_factory=DrivableConfig)


def _extend_others(others: tuple, extra: int, dt: float) -> Boxes:
    """Others [N, T, A] extended by `extra` frames at constant velocity from the last frame."""
    x, y, yaw, length, width, speed = others
    k = torch.arange(1, extra + 1, device=x.device, dtype=x.dtype).view(1, -1, 1) * dt
    last = lambda z: z[:, -1:].expand(-1, extra, -1)
    ex = torch.cat([x, x[:, -1:] + (speed * torch.cos(yaw))[:, -1:] * k], dim=1)
    ey = torch.cat([y, y[:, -1:] + (speed * torch.sin(yaw))[:, -1:] * k], dim=1)
    cat = lambda z: torch.cat([z, last(z)], dim=1)
    return Boxes(ex, ey, cat(yaw), cat(speed), cat(length), cat(width))


def _candidate_hits(ego_pts, ego_yaw, ego_len, ego_wid, oth: Boxes, valid, shifts):
    """Overlapping (n, k, t, j, a) with the ego shifted by shift j. ego_pts [N, K, T, J, 2]."""
    N, K, T, J, _ = ego_pts.shape
    c = ego_pts.mean(dim=(1, 3))  # [N, T, 2] circle around every proposal and shift
    rho = (ego_pts - c[:, None, :, None]).norm(dim=-1).amax(dim=(1, 3))  # [N, T]
    frames = torch.arange(T, device=c.device).unsqueeze(1) + shifts  # [T, J]
    ox, oy = oth.x[:, frames], oth.y[:, frames]  # [N, T, J, A]
    cx, cy = ox.mean(dim=2), oy.mean(dim=2)  # [N, T, A]
    sigma = torch.hypot(ox - cx.unsqueeze(2), oy - cy.unsqueeze(2)).amax(dim=2)
    r_o = half_diagonal(oth.length, oth.width)[:, frames].amax(dim=2)  # [N, T, A]
    r_e = half_diagonal(ego_len, ego_wid).view(N, 1, 1)
    gap = torch.hypot(cx - c[..., :1], cy - c[..., 1:])
    n, t, a = (valid.unsqueeze(1) & (gap <= rho.unsqueeze(-1) + sigma + r_e + r_o)).nonzero(as_tuple=True)
    f = frames[t]  # [M1, J]
    px, py = ego_pts[n, :, t, :, 0], ego_pts[n, :, t, :, 1]  # [M1, K, J]
    qx, qy = oth.x[n.unsqueeze(1), f, a.unsqueeze(1)].unsqueeze(1), oth.y[n.unsqueeze(1), f, a.unsqueeze(1)].unsqueeze(1)
    r_of = half_diagonal(oth.length, oth.width)[n.unsqueeze(1), f, a.unsqueeze(1)]  # [M1, J]
    rsum = (r_e.view(N)[n].unsqueeze(1) + r_of).unsqueeze(1)  # [M1, 1, J]
    m, k, j = ((qx - px) ** 2 + (qy - py) ** 2 <= rsum * rsum).nonzero(as_tuple=True)  # centre-distance test
    n, t, a = n[m], t[m], a[m]
    fr = t + shifts[j]
    ego_box = (ego_pts[n, k, t, j, 0], ego_pts[n, k, t, j, 1], ego_yaw[n, k, t], ego_len[n], ego_wid[n])
    oth_box = (oth.x[n, fr, a], oth.y[n, fr, a], oth.yaw[n, fr, a], oth.length[n, fr, a], oth.width[n, fr, a])
    hit = sat_overlap(ego_box, oth_box)
    return n[hit], k[hit], t[hit], j[hit], a[hit]


def _no_collision(hits, ego: Boxes, oth: Boxes, others_type, lateral_fault, shape, cfg: ProposalConfig):
    """NAVSIM NC [N, K] and the initial-contact mask [N, K, A] from the unshifted hits."""
    n, k, t, j, a = hits
    N, K, A = shape
    keep = j == 0
    n, k, t, a = n[keep], k[keep], t[keep], a[keep]
    initial = torch.zeros(N * K * A, dtype=torch.bool, device=n.device)
    key = (n * K + k) * A + a
    initial[key[t == 0]] = True
    later = ~initial[key]
    n, k, t, a, key = n[later], k[later], t[later], a[later], key[later]
    first_t = torch.full((N * K * A,), 1 << 30, dtype=torch.long, device=n.device).scatter_reduce(0, key, t, "amin")
    first = t == first_t[key]
    n, k, t, a = n[first], k[first], t[first], a[first]
    ctype = classify_collisions(ego.take(n, k, t), oth.take(n, t, a), others_type[n, a], cfg.collision_stopped_speed)
    fault = at_fault(ctype, lateral_fault[n, k, t] | cfg.lateral_always_at_fault)
    value = torch.where(others_type[n, a] == int(AgentType.STATIC), 0.5, 0.0).to(ego.x.dtype)
    nc = torch.ones(N * K, dtype=ego.x.dtype, device=n.device)
    nc = nc.scatter_reduce(0, (n * K + k)[fault], value[fault], "amin")
    return nc.view(N, K), initial.view(N, K, A)


def _ttc_ok(hits, ego: Boxes, oth: Boxes, initial, lateral_ok, shape, cfg: ProposalConfig):
    """NAVSIM TTC [N, K]: 0 if a relevant track overlaps a forward-shifted ego pose."""
    n, k, t, j, a = hits
    N, K, A = shape
    fr = t + torch.as_tensor(cfg.ttc_shifts, device=n.device)[j]
    dx, dy = oth.x[n, fr, a] - ego.x[n, k, t], oth.y[n, fr, a] - ego.y[n, k, t]
    yaw = ego.yaw[n, k, t]
    along = dx * torch.cos(yaw) + dy * torch.sin(yaw)
    dist = torch.hypot(dx, dy)
    ahead = along > dist * math.cos(math.radians(cfg.ahead_deg))
    not_behind = along >= dist * math.cos(math.radians(cfg.behind_deg))
    relevant = ahead | (lateral_ok[n, k, t] & not_behind)
    bad = relevant & (ego.speed[n, k, t] >= cfg.ttc_stopped_speed) & ~initial[n, k, a]
    fail = torch.zeros(N * K, dtype=torch.bool, device=n.device)
    fail[(n * K + k)[bad]] = True
    return (~fail).to(ego.x.dtype).view(N, K)


def _ego_progress(progress, multiplier, threshold: float):
    """NAVSIM EP [N, K]: progress * multiplier normalised by the best proposal (if > threshold m)."""
    raw = progress.clamp(min=0.0) * multiplier
    best = raw.amax(dim=1, keepdim=True)
    fallback = (multiplier > 0).to(raw.dtype)
    return torch.where(best > threshold, raw / best.clamp(min=1e-6), fallback)


def score_proposals(ego_xy, ego_yaw, ego_speed, ego_length, ego_width, others, others_valid, others_type, map_idx,
                    bank, progress, *, dt: float = 0.1, ego_lane=None, ego_seg=None,
                    config: ProposalConfig | None = None) -> dict[str, torch.Tensor]:
    """PDM scores of K proposals in each of N scenarios.

    ego_xy [N, K, T, 2], ego_yaw / ego_speed [N, K, T], ego_length / ego_width [N]; others: tuple
    (x, y, yaw, length, width, speed) each [N, T, A] (forecasts on the same time grid, step dt);
    others_valid / others_type [N, A] (mark the ego's own slot invalid); map_idx [N]; progress
    [N, K] metres along the centreline. Returns {'score', 'no_collision', 'drivable_area_compliance',
    'ego_progress', 'ttc', 'comfort', 'driving_direction'} each [N, K].
    """
    cfg = config or ProposalConfig()
    N, K, T, _ = ego_xy.shape
    A = others_valid.shape[1]
    dev, dtype = ego_xy.device, ego_xy.dtype
    L = ego_length.view(N, 1, 1).expand(N, K, T)
    W = ego_width.view(N, 1, 1).expand(N, K, T)
    ego = Boxes(ego_xy[..., 0], ego_xy[..., 1], ego_yaw, ego_speed, L, W)
    corners = box_corners(*ego.as_box())  # [N, K, T, 4, 2]
    max_sd = bank.signed_distance(map_idx, corners.reshape(N, -1, 2)).view(N, K, T, 4).amax(dim=-1)
    offroad = max_sd > 0.0
    dac = (~(max_sd > cfg.dac_tolerance).any(dim=-1)).to(dtype)
    direction = bank.driving_direction(map_idx, ego_xy.reshape(N, -1, 2)).view(N, K, T, 2)
    junction = (direction == 0).all(dim=-1) & ~offroad
    straddle = torch.zeros_like(offroad)
    if ego_lane is not None:
        four = lambda z: z.unsqueeze(-1).expand(-1, -1, -1, 4)
        _, d, _, _ = bank.project(four(ego_lane), four(ego_seg), corners)  # [N, K, T, 4]
        straddle = (d.abs() > 0.5 * bank.lane_width[ego_lane.clamp(min=0)].unsqueeze(-1)).any(dim=-1) | (ego_lane < 0)

    shifts = torch.as_tensor(cfg.ttc_shifts, device=dev)
    heading = torch.stack([torch.cos(ego_yaw), torch.sin(ego_yaw)], dim=-1) * ego_speed.unsqueeze(-1)  # [N, K, T, 2]
    ego_pts = ego_xy.unsqueeze(3) + heading.unsqueeze(3) * (shifts.to(dtype) * dt).view(1, 1, 1, -1, 1)
    oth = _extend_others(others, int(max(cfg.ttc_shifts)), dt)
    hits = _candidate_hits(ego_pts, ego_yaw, ego_length, ego_width, oth, others_valid, shifts)

    nc, initial = _no_collision(hits, ego, oth, others_type, straddle | offroad, (N, K, A), cfg)
    ttc = _ttc_ok(hits, ego, oth, initial, straddle | offroad | junction, (N, K, A), cfg)
    comfort = is_comfortable(ego_yaw.reshape(N * K, T).T, ego_speed.reshape(N * K, T).T, dt, cfg=cfg.comfort).view(N, K)
    oncoming = oncoming_displacement(direction[:, :, 1:], ego_xy[:, :, 1:] - ego_xy[:, :, :-1])  # [N, K, T-1]
    worst = max_window_sum(oncoming, window_steps(dt, cfg.direction.direction_window_s), dim=2)
    ep = _ego_progress(progress, nc * dac, cfg.progress_threshold)
    return {"score": pdms(nc, dac, ep, ttc, comfort), "no_collision": nc, "drivable_area_compliance": dac,
            "ego_progress": ep, "ttc": ttc, "comfort": comfort, "driving_direction": direction_score(worst, cfg.direction)}
