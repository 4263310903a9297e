"""The ego-centric vector observation handed to policies.

Everything is in the ego frame (x forward, y left). Learned policies read the tensors;
privileged planners (the PDM-style expert) may also read `state` and `batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import to_local, wrap_angle
from drivesim.core.state import SimState
from drivesim.map.bank import COARSE, project_on_polylines


@dataclass(frozen=True)
class ObservationConfig:
    num_agents: int = 16  # nearest agents kept
    agent_range: float = 60.0  # m
    num_lane_chunks: int = 24  # nearest 10 m lane pieces kept
    route_points: int = 10
    route_spacing: float = 5.0  # m between route points


AGENT_FEATURES = 12  # x, y, cos dyaw, sin dyaw, vx, vy, length, width, one-hot type (4)
LANE_FEATURES = 4  # speed limit, width, on route, red stop line at its end
EGO_FEATURES = 8  # speed, accel, steer, lane speed limit, lateral offset, heading error, stop-line distance, route left


class Observation:
    """The observation of B scenarios. Each feature group is computed on first access, so a
    policy that reads only the privileged `state` and `batch` (or nothing) pays nothing for it.

    agents [B, N, AGENT_FEATURES], agents_mask [B, N]; lanes [B, M, CHUNK, 2] lane piece points,
    lane_attrs [B, M, LANE_FEATURES], lanes_mask [B, M]; route [B, R, 2] points ahead on the ego
    route; ego [B, EGO_FEATURES]. cameras [B, C, H, W, 3] RGB in [0, 1] when a camera renderer
    (a callable (state, batch) -> tensor, e.g. drivesim.render.splat.sensors.SplatCameras) is handed in.
    """

    def __init__(self, state: SimState, batch: ScenarioBatch, config: ObservationConfig | None = None, cameras=None):
        self.state, self.batch, self.config = state, batch, config or ObservationConfig()
        self._camera_fn = cameras

    @cached_property
    def cameras(self) -> torch.Tensor:
        """[B, C, H, W, 3] camera images of every row, rendered on first access."""
        if self._camera_fn is None:
            raise RuntimeError("this observation has no cameras: hand a renderer in, e.g. "
                               "rollout(batch, policy, cameras=SplatCameras(load_rig('nuscenes'), 200, 112))")
        return self._camera_fn(self.state, self.batch)

    @property
    def batch_size(self) -> int:
        return self.state.batch_size

    @cached_property
    def _pose(self):
        return self.state.xy[:, 0], self.state.yaw[:, 0]

    @cached_property
    def _agent_part(self):
        return _agents(self.state, *self._pose, self.config)

    @cached_property
    def _lane_part(self):
        return _lanes(self.state, self.batch, *self._pose, self.config)

    @cached_property
    def _route_s(self):
        return route_position(self.batch, self._pose[0])[0]

    agents = property(lambda self: self._agent_part[0])
    agents_mask = property(lambda self: self._agent_part[1])
    lanes = property(lambda self: self._lane_part[0])
    lane_attrs = property(lambda self: self._lane_part[1])
    lanes_mask = property(lambda self: self._lane_part[2])

    @cached_property
    def route(self) -> torch.Tensor:
        cfg, (xy, yaw) = self.config, self._pose
        ahead = self._route_s.unsqueeze(1) + cfg.route_spacing * torch.arange(1, cfg.route_points + 1, device=xy.device)
        return to_local(route_points_at(self.batch, ahead), xy.unsqueeze(1), yaw.unsqueeze(1))

    @cached_property
    def ego(self) -> torch.Tensor:
        return _ego(self.state, self.batch, self._route_s)

    def flat(self) -> torch.Tensor:
        """All tensors concatenated per scenario: [B, F] (masks multiplied in)."""
        B = self.batch_size
        parts = [self.agents * self.agents_mask.unsqueeze(-1), self.lanes * self.lanes_mask[..., None, None],
                 self.lane_attrs * self.lanes_mask.unsqueeze(-1), self.route, self.ego]
        return torch.cat([p.reshape(B, -1) for p in parts], dim=1)


def route_position(batch: ScenarioBatch, xy: torch.Tensor, exhaustive: bool = False):
    """Arc length s and lateral offset d (left positive) of points xy [B, ..., 2] on each
    scenario's route polyline: the nearest of every COARSE-th route point, then the segments
    within 2 x COARSE of it (`exhaustive`: every segment; they differ only where a route comes
    back within a few metres of itself)."""
    B, shape = xy.shape[0], xy.shape[:-1]
    pts = xy.reshape(B, -1, 2)
    N, RP = pts.shape[1], batch.route_pts.shape[1]
    nseg = (batch.route_npts - 1).unsqueeze(1).expand(B, N)
    if exhaustive or RP <= 4 * COARSE:
        k = torch.arange(RP - 1, device=xy.device).expand(B, N, RP - 1)
    else:
        coarse = batch.route_pts[:, ::COARSE]  # [B, C, 2] (padding repeats the last point)
        near = torch.cdist(pts, coarse).argmin(dim=-1) * COARSE  # [B, N]
        k = (near.unsqueeze(-1) + torch.arange(-2 * COARSE, 2 * COARSE + 1, device=xy.device)).clamp(min=0)
    k = torch.minimum(k, (nseg - 1).unsqueeze(-1))
    idx = k.reshape(B, -1)
    K = k.shape[-1]
    a = batch.route_pts.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2)).reshape(B, N, K, 2)
    b = batch.route_pts.gather(1, (idx + 1).unsqueeze(-1).expand(-1, -1, 2)).reshape(B, N, K, 2)
    sa = batch.route_s.gather(1, idx).reshape(B, N, K)
    s, d, _, _ = project_on_polylines(a, b, sa, k, nseg, pts)
    return s.reshape(shape), d.reshape(shape)


def route_frame_to_world(batch: ScenarioBatch, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """World points [B, ..., 2] at route arc lengths s and lateral offsets d [B, ...] (left positive)."""
    B, shape = s.shape[0], s.shape
    flat = s.reshape(B, -1)
    p0 = route_points_at(batch, flat)
    tangent = route_points_at(batch, flat + 0.5) - p0
    tangent = tangent / tangent.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    normal = torch.stack([-tangent[..., 1], tangent[..., 0]], -1)
    return (p0 + normal * d.reshape(B, -1, 1)).reshape(*shape, 2)


def route_points_at(batch: ScenarioBatch, s: torch.Tensor) -> torch.Tensor:
    """World points [B, R, 2] at arc lengths s [B, R] along the route (clamped to its ends)."""
    rs = batch.route_s
    sc = torch.minimum(s.clamp(min=0), rs[:, -1:])
    k = (torch.searchsorted(rs.contiguous(), sc.contiguous(), right=True) - 1).clamp(min=0)
    k = torch.minimum(k, (batch.route_npts - 2).unsqueeze(1))
    a = batch.route_pts.gather(1, k.unsqueeze(-1).expand(-1, -1, 2))
    b = batch.route_pts.gather(1, (k + 1).unsqueeze(-1).expand(-1, -1, 2))
    seg = (rs.gather(1, k + 1) - rs.gather(1, k)).clamp(min=1e-6)
    frac = ((sc - rs.gather(1, k)) / seg).clamp(0, 1).unsqueeze(-1)
    return a + (b - a) * frac


def observe(state: SimState, batch: ScenarioBatch, cfg: ObservationConfig | None = None, cameras=None) -> Observation:
    return Observation(state, batch, cfg, cameras)


def _agents(state, ego_xy, ego_yaw, cfg):
    B, A = state.x.shape
    rel = to_local(state.xy, ego_xy.unsqueeze(1), ego_yaw.unsqueeze(1))  # [B, A, 2]
    dist = rel.norm(dim=-1)
    ok = state.valid & (dist < cfg.agent_range)
    ok[:, 0] = False
    key = torch.where(ok, dist, torch.full_like(dist, float("inf")))
    n = min(cfg.num_agents, A)
    order = key.topk(n, dim=1, largest=False).indices  # [B, n]
    g = lambda t: t.gather(1, order)
    dyaw = wrap_angle(g(state.yaw) - ego_yaw.unsqueeze(1))
    vel = g(state.speed).unsqueeze(-1) * torch.stack([torch.cos(dyaw), torch.sin(dyaw)], -1)  # ego frame
    onehot = torch.nn.functional.one_hot(g(state.agent_type), 4).float()
    feats = torch.cat([rel.gather(1, order.unsqueeze(-1).expand(-1, -1, 2)), torch.cos(dyaw).unsqueeze(-1),
                       torch.sin(dyaw).unsqueeze(-1), vel, g(state.length).unsqueeze(-1), g(state.width).unsqueeze(-1), onehot], -1)
    mask = g(ok)
    feats = torch.nn.functional.pad(feats, (0, 0, 0, cfg.num_agents - n))
    mask = torch.nn.functional.pad(mask, (0, cfg.num_agents - n))
    return feats * mask.unsqueeze(-1), mask


def _lanes(state, batch, ego_xy, ego_yaw, cfg):
    bank = batch.bank
    start, count = bank.map_chunk_start[batch.map_idx], bank.map_num_chunks[batch.map_idx]
    C = int(bank.map_num_chunks.max())
    idx = start.unsqueeze(1) + torch.arange(C, device=start.device)
    ok = torch.arange(C, device=start.device) < count.unsqueeze(1)
    idx = torch.where(ok, idx, start.unsqueeze(1))
    centre = bank.chunk_pts[idx].mean(dim=2)  # [B, C, 2]
    dist = (centre - ego_xy.unsqueeze(1)).norm(dim=-1).masked_fill(~ok, float("inf"))
    m = min(cfg.num_lane_chunks, C)
    near = dist.topk(m, dim=1, largest=False)
    pick = idx.gather(1, near.indices)
    mask = torch.isfinite(near.values)
    pts = to_local(bank.chunk_pts[pick], ego_xy[:, None, None], ego_yaw[:, None, None])  # [B, m, CHUNK, 2]
    lane = bank.chunk_lane[pick]
    on_route = (lane.unsqueeze(-1) == batch.route_lanes.unsqueeze(1)).any(-1)
    red = bank.signal_stop(lane, batch.map_idx, state.row_step * batch.dt)
    attrs = torch.stack([bank.lane_speed[lane], bank.lane_width[lane], on_route.float(), red.float()], -1)
    pad = cfg.num_lane_chunks - m
    return (torch.nn.functional.pad(pts, (0, 0, 0, 0, 0, pad)), torch.nn.functional.pad(attrs, (0, 0, 0, pad)),
            torch.nn.functional.pad(mask, (0, pad)))


def _ego(state, batch, route_s):
    bank = batch.bank
    lane = state.lane[:, :1]
    s, d, _, lane_yaw = bank.project(lane, state.seg[:, :1], state.xy[:, :1])
    rem = bank.lane_len[lane.clamp(min=0)] - s
    red = bank.signal_stop(lane, batch.map_idx, state.row_step * batch.dt)
    stop = torch.where(red, rem, torch.full_like(rem, 100.0)).clamp(max=100.0)
    left = (batch.route_s[:, -1] - route_s).clamp(min=0)
    return torch.stack([state.speed[:, 0], state.accel[:, 0], state.steer[:, 0], bank.lane_speed[lane[:, 0].clamp(min=0)],
                        d[:, 0], wrap_angle(state.yaw[:, 0] - lane_yaw[:, 0]), stop[:, 0], left], dim=-1)
