"""Per-agent input tokens of the learned traffic model, all in the agent's own frame (x forward,
y left): one token for the agent itself, its K nearest neighbours and the M lane pieces
nearest to a point ahead of it (MapBank lane chunks, as in the ego observation).

`agent_tokens(state, batch_bank, map_idx, rows, cols)` builds the tokens of the N agents
(rows, cols) of a `SimState` in one batched pass; the same function featurizes logged
snapshots for training and the simulator's snapshots for driving, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.core.geometry import to_local, wrap_angle
from drivesim.core.state import SimState
from drivesim.dynamics.bicycle import WHEELBASE_RATIO
from drivesim.map.bank import CHUNK, MapBank


@dataclass(frozen=True)
class TokenConfig:
    neighbours: int = 8  # K nearest other agents
    neighbour_range: float = 50.0  # m; farther agents are masked out
    lane_chunks: int = 12  # M lane pieces (CHUNK points, about 10 m each)
    lane_ahead: float = 10.0  # m: lane pieces are ranked by distance to this point ahead of the agent
    lane_range: float = 50.0  # m; farther pieces are masked out
    chunk_agents: int = 4096  # agents featurized per pass (memory)


# road-edge distance is sampled at these points of the agent frame (m): around the body and ahead
EDGE_POINTS = ((0.0, 0.0), (0.0, 1.5), (0.0, -1.5), (6.0, 0.0), (6.0, 2.0), (6.0, -2.0),
               (12.0, 0.0), (12.0, 3.0), (12.0, -3.0), (25.0, 0.0))
DIRECTION_POINTS = ((0.0, 0.0), (10.0, 0.0))  # lane driving direction sampled here
SELF_FEATURES = 10 + len(EDGE_POINTS) + 2 * len(DIRECTION_POINTS) + 3 + 1  # ..., leader gap/speed/present, style
NEIGHBOUR_FEATURES = 16
LANE_FEATURES = 2 * CHUNK + 6


@dataclass
class Tokens:
    agent: torch.Tensor  # [N, SELF_FEATURES]
    neighbours: torch.Tensor  # [N, K, NEIGHBOUR_FEATURES]
    neighbours_mask: torch.Tensor  # [N, K] bool, True = present
    lanes: torch.Tensor  # [N, M, LANE_FEATURES]
    lanes_mask: torch.Tensor  # [N, M] bool

    def __len__(self) -> int:
        return self.agent.shape[0]

    def index(self, idx) -> "Tokens":
        return Tokens(*(t[idx] for t in self.astuple()))

    def astuple(self) -> tuple:
        return (self.agent, self.neighbours, self.neighbours_mask, self.lanes, self.lanes_mask)

    def to(self, dtype=None, device=None) -> "Tokens":
        conv = lambda t: t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        return Tokens(*(conv(t) for t in self.astuple()))

    @staticmethod
    def cat(parts: list["Tokens"]) -> "Tokens":
        return Tokens(*(torch.cat(ts) for ts in zip(*(p.astuple() for p in parts))))


def curvature(steer: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Path curvature (1/m) of the bicycle model for a steering angle and box length."""
    return torch.tan(steer) / (WHEELBASE_RATIO * length)


def agent_tokens(state: SimState, bank: MapBank, map_idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 cfg: TokenConfig = TokenConfig(), dt: float = 0.1, style: float = 1.0) -> Tokens:
    """Tokens of agents (rows [N], cols [N]) of `state` ([B, A] fields; map_idx [B] into `bank`).
    Signals are read at each row's time `state.row_step * dt`. `style` is the driving style the
    agent token asks for: 1 = as in the real logs, 0 = as the procedural (IDM/MOBIL) traffic."""
    parts = [_tokens(state, bank, map_idx, rows[i:i + cfg.chunk_agents], cols[i:i + cfg.chunk_agents], cfg, dt, style)
             for i in range(0, max(len(rows), 1), cfg.chunk_agents)]
    return parts[0] if len(parts) == 1 else Tokens.cat(parts)


def _tokens(state, bank, map_idx, rows, cols, cfg, dt, style) -> Tokens:
    xy, yaw = state.xy[rows, cols], state.yaw[rows, cols]  # [N, 2], [N]
    return Tokens(_self(state, bank, map_idx, rows, cols, xy, yaw, style), *_neighbours(state, rows, cols, xy, yaw, cfg),
                  *_lanes(state, bank, map_idx, rows, xy, yaw, cfg, dt))


def _frame_points(points, xy, yaw) -> torch.Tensor:
    """Points given in each agent's frame ([P, 2] list) in world coordinates [N, P, 2]."""
    p = torch.tensor(points, dtype=xy.dtype, device=xy.device)  # [P, 2]
    c, s = torch.cos(yaw).unsqueeze(-1), torch.sin(yaw).unsqueeze(-1)  # [N, 1]
    return torch.stack([xy[:, :1] + c * p[:, 0] - s * p[:, 1], xy[:, 1:] + s * p[:, 0] + c * p[:, 1]], -1)


def _self(state, bank, map_idx, rows, cols, xy, yaw, style):
    g = lambda t: t[rows, cols]
    speed, length = g(state.speed), g(state.length)
    kappa = curvature(g(state.steer), length)
    onehot = torch.nn.functional.one_hot(g(state.agent_type).clamp(0, 3), 4).to(xy.dtype)
    m = map_idx[rows]
    edge = bank.signed_distance(m, _frame_points(EDGE_POINTS, xy, yaw)).clamp(-6.0, 6.0) / 6.0  # [N, E]
    direction = bank.driving_direction(m, _frame_points(DIRECTION_POINTS, xy, yaw))  # [N, D, 2] world
    c, s = torch.cos(yaw).unsqueeze(-1), torch.sin(yaw).unsqueeze(-1)
    local_dir = torch.stack([c * direction[..., 0] + s * direction[..., 1], c * direction[..., 1] - s * direction[..., 0]], -1)
    kin = torch.stack([speed / 10.0, g(state.accel) / 3.0, (kappa * 10.0).clamp(-3, 3), (speed * kappa / 0.5).clamp(-3, 3),
                       length / 5.0, g(state.width) / 2.0], -1)
    gap, v_lead = corridor_leader(state, rows, cols)
    found = torch.isfinite(gap)
    lead = torch.stack([torch.where(found, gap.clamp(-2.0, 50.0) / 20.0, 2.5), torch.where(found, (v_lead - speed) / 10.0, 0.0),
                        found.to(xy.dtype)], -1)
    return torch.cat([kin, onehot, edge, local_dir.flatten(1), lead, torch.full_like(speed, float(style)).unsqueeze(-1)], -1)


def corridor_leader(state: SimState, rows, cols, corridor: float = 0.3, reach: float = 60.0):
    """Bumper gap [N] to the nearest valid agent ahead of each agent (rows, cols) within its
    corridor (the boxes overlap laterally, plus `corridor` m) and that agent's speed along the
    agent's heading [N] (>= 0); gap +inf when there is none within `reach`."""
    xy, yaw = state.xy[rows, cols], state.yaw[rows, cols]
    c, s = torch.cos(yaw).unsqueeze(1), torch.sin(yaw).unsqueeze(1)
    d = state.xy[rows] - xy.unsqueeze(1)  # [N, A, 2]
    lon, lat = d[..., 0] * c + d[..., 1] * s, d[..., 1] * c - d[..., 0] * s
    dyaw = state.yaw[rows] - yaw.unsqueeze(1)
    lj, wj = state.length[rows], state.width[rows]
    cos_d, sin_d = torch.cos(dyaw).abs(), torch.sin(dyaw).abs()
    gap = lon - 0.5 * state.length[rows, cols].unsqueeze(1) - 0.5 * (lj * cos_d + wj * sin_d)
    half_width = 0.5 * state.width[rows, cols].unsqueeze(1) + 0.5 * (lj * sin_d + wj * cos_d)
    ahead = (lon > 0) & (lon < reach) & (lat.abs() < half_width + corridor)
    ahead &= state.valid[rows]
    ahead[torch.arange(len(rows), device=xy.device), cols] = False
    gap, j = torch.where(ahead, gap, torch.full_like(gap, float("inf"))).min(dim=1)
    pick = lambda t: t.gather(1, j.unsqueeze(1)).squeeze(1)
    return gap, (pick(state.speed[rows]) * torch.cos(pick(dyaw))).clamp(min=0)


def _neighbours(state, rows, cols, xy, yaw, cfg):
    """The K nearest valid other agents of the same row, in the subject's frame."""
    A = state.num_agents
    K = min(cfg.neighbours, max(A - 1, 1))
    rel = to_local(state.xy[rows], xy.unsqueeze(1), yaw.unsqueeze(1))  # [N, A, 2]
    dist = rel.norm(dim=-1)
    ok = state.valid[rows] & (dist < cfg.neighbour_range)
    ok[torch.arange(len(rows), device=xy.device), cols] = False
    order = torch.where(ok, dist, torch.full_like(dist, float("inf"))).topk(K, dim=1, largest=False).indices  # [N, K]
    g = lambda t: t[rows].gather(1, order)
    mask = ok.gather(1, order)
    dyaw = wrap_angle(g(state.yaw) - yaw.unsqueeze(1))
    v = g(state.speed)
    vx, vy = v * torch.cos(dyaw), v * torch.sin(dyaw)
    r = rel.gather(1, order.unsqueeze(-1).expand(-1, -1, 2))
    d = dist.gather(1, order)
    own_speed = state.speed[rows, cols].unsqueeze(1)
    onehot = torch.nn.functional.one_hot(g(state.agent_type).clamp(0, 3), 4).to(xy.dtype)
    feats = torch.cat([torch.stack([r[..., 0] / 20.0, r[..., 1] / 20.0, d / 20.0, torch.cos(dyaw), torch.sin(dyaw), vx / 10.0,
                                    vy / 10.0, (vx - own_speed) / 10.0, g(state.accel) / 3.0, g(state.length) / 5.0,
                                    g(state.width) / 2.0, (order == 0).to(xy.dtype)], -1), onehot], -1)
    feats = torch.where(mask.unsqueeze(-1), feats, torch.zeros_like(feats))
    pad = cfg.neighbours - K
    return torch.nn.functional.pad(feats, (0, 0, 0, pad)), torch.nn.functional.pad(mask, (0, pad))


def _lanes(state, bank, map_idx, rows, xy, yaw, cfg, dt):
    """The M lane pieces nearest to a point `lane_ahead` metres ahead of each agent."""
    m = map_idx[rows]
    start, count = bank.map_chunk_start[m], bank.map_num_chunks[m]
    C = int(count.max())
    ar = torch.arange(C, device=xy.device)
    ok = ar < count.unsqueeze(1)
    idx = torch.where(ok, start.unsqueeze(1) + ar, start.unsqueeze(1))  # [N, C]
    centre = bank.chunk_pts.mean(dim=1)  # [NC, 2]
    ahead = xy + cfg.lane_ahead * torch.stack([torch.cos(yaw), torch.sin(yaw)], -1)
    dist = (centre[idx] - ahead.unsqueeze(1)).norm(dim=-1).masked_fill(~ok, float("inf"))
    M = min(cfg.lane_chunks, C)
    near = dist.topk(M, dim=1, largest=False)
    pick = idx.gather(1, near.indices)  # [N, M]
    mask = near.values < cfg.lane_range
    pts = to_local(bank.chunk_pts[pick], xy[:, None, None], yaw[:, None, None])  # [N, M, CHUNK, 2]
    lane = bank.chunk_lane[pick]
    red = bank.signal_stop(lane, m, state.row_step[rows] * dt)
    d, dir_c, dir_s = _offset_to_piece(pts)
    attrs = torch.stack([bank.lane_speed[lane] / 10.0, bank.lane_width[lane] / 4.0, red.to(xy.dtype),
                         (d / 5.0).clamp(-2, 2), dir_c, dir_s], -1)
    feats = torch.cat([pts.flatten(2) / 20.0, attrs], -1)
    feats = torch.where(mask.unsqueeze(-1), feats, torch.zeros_like(feats))
    pad = cfg.lane_chunks - M
    return torch.nn.functional.pad(feats, (0, 0, 0, pad)), torch.nn.functional.pad(mask, (0, pad))


def _offset_to_piece(pts: torch.Tensor):
    """Signed lateral offset of the agent (the frame origin) from each lane piece [..., CHUNK, 2]
    (positive: the agent is left of it) and the piece's direction (cos, sin) where it is closest."""
    a, b = pts[..., :-1, :], pts[..., 1:, :]
    ab = b - a
    seglen = ab.norm(dim=-1).clamp(min=1e-6)
    tangent = ab / seglen.unsqueeze(-1)
    t = ((-a) * tangent).sum(-1).clamp(min=torch.zeros_like(seglen), max=seglen)  # along each segment
    foot = a + tangent * t.unsqueeze(-1)
    best = foot.norm(dim=-1).argmin(dim=-1, keepdim=True)  # [..., 1]
    tan = tangent.gather(-2, best.unsqueeze(-1).expand(*best.shape, 2)).squeeze(-2)
    f = foot.gather(-2, best.unsqueeze(-1).expand(*best.shape, 2)).squeeze(-2)
    d = tan[..., 0] * (-f[..., 1]) - tan[..., 1] * (-f[..., 0])
    return d, tan[..., 0], tan[..., 1]


def _mirror_layout():
    """(self permutation, self sign, neighbour sign, lane sign): the token columns of the
    left-right mirror image (y -> -y in the agent frame)."""
    perm = list(range(SELF_FEATURES))
    sign = [1.0] * SELF_FEATURES
    sign[2] = sign[3] = -1.0  # curvature, yaw rate
    for i, (x, y) in enumerate(EDGE_POINTS):
        perm[10 + i] = 10 + EDGE_POINTS.index((x, -y))
    for i in range(len(DIRECTION_POINTS)):
        sign[10 + len(EDGE_POINTS) + 2 * i + 1] = -1.0
    nb = [1.0] * NEIGHBOUR_FEATURES
    nb[1] = nb[4] = nb[6] = -1.0  # y, sin(dyaw), vy
    lane = [1.0] * LANE_FEATURES
    for k in range(CHUNK):
        lane[2 * k + 1] = -1.0
    lane[2 * CHUNK + 3] = lane[2 * CHUNK + 5] = -1.0  # lateral offset, direction sin
    return torch.tensor(perm), torch.tensor(sign), torch.tensor(nb), torch.tensor(lane)


_MIRROR = _mirror_layout()


def mirror_tokens(tok: Tokens) -> Tokens:
    """The tokens of the mirror-image scene (left and right swapped in every agent's frame)."""
    perm, sign, nb, lane = (t.to(tok.agent.device, tok.agent.dtype) if t.is_floating_point() else t.to(tok.agent.device)
                            for t in _MIRROR)
    return Tokens(tok.agent[:, perm] * sign, tok.neighbours * nb, tok.neighbours_mask, tok.lanes * lane, tok.lanes_mask)
