"""Reactive traffic for all agents at once: IDM car-following, MOBIL lane changes, pure-pursuit
lane following, signal stop lines and scripted overrides.

Every agent decides from the same snapshot (`state`); the simulator then moves all of them.
Pairwise interactions are [B, A, A] tensors; nothing loops over agents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from drivesim.behavior.idm import FAR, IDMConfig, MOBILConfig, idm_accel, mobil_gain
from drivesim.behavior.scenario import ScenarioBatch
from drivesim.core.geometry import to_local
from drivesim.core.state import SimState
from drivesim.core.types import ControlMode
from drivesim.dynamics.bicycle import WHEELBASE_RATIO


@dataclass(frozen=True)
class ReactiveConfig:
    idm: IDMConfig = field(default_factory=IDMConfig)
    mobil: MOBILConfig = field(default_factory=MOBILConfig)
    lookahead_time: float = 1.2  # s of travel to the pure-pursuit target point
    min_lookahead: float = 6.0  # m
    lat_speed: float = 1.2  # m/s, default lateral speed when converging on a lane centre
    merge_horizon: float = 60.0  # m before a shared successor where merging lanes interact
    encroach_range: float = 15.0  # m: agents this close ahead in the local frame are obstacles ...
    encroach_time: float = 2.0  # s: ... or this many seconds ahead at the agent's speed
    stop_decel: float = 3.0  # m/s^2: stop for a red light only if it can be done at this decel


@dataclass
class Frenet:
    s: torch.Tensor  # [B, A] arc length on the agent's lane
    d: torch.Tensor  # [B, A] lateral offset, left positive
    seg: torch.Tensor  # [B, A]
    lane_yaw: torch.Tensor  # [B, A]


def lane_frenet(state: SimState, batch: ScenarioBatch) -> Frenet:
    s, d, seg, yaw = batch.bank.project(state.lane, state.seg, state.xy)
    return Frenet(s, d, seg, yaw)


def project_on(state: SimState, fr: Frenet, target: torch.Tensor, batch: ScenarioBatch):
    """Frenet projection (s, d, seg, yaw) on `target` lanes [B, A], searching near the segment
    that corresponds to the agent's own (neighbour lanes run side by side)."""
    bank = batch.bank
    tgt = target.clamp(min=0)
    ratio = bank.lane_len[tgt] / bank.lane_len[state.lane.clamp(min=0)].clamp(min=1e-3)
    guess = (fr.seg.float() * ratio).round().long()
    return bank.project(tgt, guess, state.xy, back=8, ahead=8)


def next_lanes(lane: torch.Tensor, batch: ScenarioBatch) -> torch.Tensor:
    """The successor each agent will take ([B, A], -1 none): the route for the ego, else a fixed
    choice per agent (agent index modulo the number of successors), so it is deterministic."""
    bank = batch.bank
    succ = bank.lane_succ[lane.clamp(min=0)]  # [B, A, S]
    n = (succ >= 0).sum(-1)
    pick = torch.remainder(agent_index_like(lane), n.clamp(min=1))
    nxt = succ.gather(-1, pick.unsqueeze(-1)).squeeze(-1)
    nxt = torch.where((n > 0) & (lane >= 0), nxt, torch.full_like(nxt, -1))
    route = batch.route_lanes  # [B, R]
    on_route = route == lane[:, :1]
    pos = on_route.float().argmax(dim=1)
    after = route.gather(1, (pos + 1).clamp(max=route.shape[1] - 1).unsqueeze(1)).squeeze(1)
    after = torch.where(pos + 1 < route.shape[1], after, torch.full_like(after, -1))
    ego_next = torch.where(on_route.any(1) & (after >= 0), after, nxt[:, 0])
    return torch.cat([ego_next.unsqueeze(1), nxt[:, 1:]], dim=1)


def agent_index_like(t: torch.Tensor) -> torch.Tensor:
    return torch.arange(t.shape[1], device=t.device).expand_as(t)


def _pair_gaps(state: SimState, fr: Frenet, nxt: torch.Tensor, batch: ScenarioBatch, cfg: ReactiveConfig):
    """Bumper gap from each agent i to each potential leader j: [B, A, A] (inf where j is not ahead)."""
    bank = batch.bank
    lane, s = state.lane, fr.s
    L = bank.lane_len[lane.clamp(min=0)]
    rem = L - s
    li, lj = lane.unsqueeze(2), lane.unsqueeze(1)
    si, sj = s.unsqueeze(2), s.unsqueeze(1)
    in_corridor = fr.d.abs() < 0.5 * (bank.lane_width[lane.clamp(min=0)] + state.width)  # [B, A]
    cj = in_corridor.unsqueeze(1)
    dist = torch.full_like(si.expand(-1, -1, lane.shape[1]), math.inf)
    same = (li == lj) & (sj > si) & cj
    dist = torch.where(same, sj - si, dist)
    succ = (nxt.unsqueeze(2) == lj) & (nxt.unsqueeze(2) >= 0) & cj
    dist = torch.where(succ, torch.minimum(dist, rem.unsqueeze(2) + sj), dist)
    merging = bank.merges_with[li.clamp(min=0), lj.clamp(min=0)]
    ri, rj = rem.unsqueeze(2), rem.unsqueeze(1)
    merge = merging & (rj < ri) & (ri < cfg.merge_horizon) & cj
    dist = torch.where(merge, torch.minimum(dist, ri - rj), dist)
    local = to_local(state.xy.unsqueeze(1), state.xy.unsqueeze(2), state.yaw.unsqueeze(2))  # [B, A(i), A(j), 2]
    half = 0.5 * (state.width.unsqueeze(2) + state.width.unsqueeze(1)) + 0.2
    reach = torch.clamp(state.speed * cfg.encroach_time, min=cfg.encroach_range).unsqueeze(2)
    near = (local[..., 0] > 0) & (local[..., 0] < reach) & (local[..., 1].abs() < half)
    dist = torch.where(near, torch.minimum(dist, local[..., 0]), dist)
    ok = state.valid.unsqueeze(1) & state.valid.unsqueeze(2) & (li >= 0)
    ok = ok & ~torch.eye(lane.shape[1], dtype=torch.bool, device=lane.device)
    dist = torch.where(ok, dist, torch.full_like(dist, math.inf))
    return dist - 0.5 * (state.length.unsqueeze(2) + state.length.unsqueeze(1))


def _stop_line_gap(state: SimState, fr: Frenet, nxt: torch.Tensor, batch: ScenarioBatch, cfg: ReactiveConfig, t: float):
    """Gap to a virtual stopped obstacle at the lane end ([B, A], FAR if none): a dead end, or a
    red light the agent can still stop for."""
    bank = batch.bank
    lane = state.lane.clamp(min=0)
    rem = bank.lane_len[lane] - fr.s - 0.5 * state.length
    red = bank.signal_stop(state.lane, batch.map_idx, t)
    can_stop = rem > state.speed**2 / (2 * cfg.stop_decel)
    stop = (red & can_stop) | (bank.lane_dead_end[lane] & (nxt < 0))
    return torch.where(stop & (state.lane >= 0), rem.clamp(min=0.0), torch.full_like(rem, FAR))


def desired_speed(state: SimState, batch: ScenarioBatch) -> torch.Tensor:
    return torch.minimum(batch.init["desired_speed"], batch.bank.lane_speed[state.lane.clamp(min=0)])


def longitudinal(state, fr, nxt, batch, cfg: ReactiveConfig, t: float):
    """IDM acceleration against every leader and stop line ([B, A]), plus the pair gaps."""
    gaps = _pair_gaps(state, fr, nxt, batch, cfg)  # [B, A, A]
    v = state.speed
    v0 = desired_speed(state, batch)
    rel_yaw = state.yaw.unsqueeze(1) - state.yaw.unsqueeze(2)
    v_lead = (state.speed.unsqueeze(1) * torch.cos(rel_yaw)).clamp(min=0)
    finite = torch.isfinite(gaps)
    acc_pairs = idm_accel(v.unsqueeze(2), v0.unsqueeze(2), torch.where(finite, gaps, torch.full_like(gaps, FAR)), v_lead, cfg.idm)
    acc_free = idm_accel(v, v0, torch.full_like(v, FAR), v, cfg.idm)
    acc_stop = idm_accel(v, v0, _stop_line_gap(state, fr, nxt, batch, cfg, t), torch.zeros_like(v), cfg.idm)
    acc = torch.minimum(torch.minimum(acc_free, acc_stop), acc_pairs.masked_fill(~finite, math.inf).amin(dim=2))
    return acc, gaps, v0


def pure_pursuit(state: SimState, fr: Frenet, lane, nxt, batch: ScenarioBatch, lat_speed, cfg: ReactiveConfig):
    """Steering towards a point ahead on `lane` whose offset converges on the centre at `lat_speed`."""
    bank = batch.bank
    v = state.speed
    ahead = torch.clamp(v * cfg.lookahead_time, min=cfg.min_lookahead)
    d_goal = fr.d - torch.sign(fr.d) * torch.minimum(fr.d.abs(), lat_speed * ahead / v.clamp(min=1.0))
    L = bank.lane_len[lane.clamp(min=0)]
    s_ahead = fr.s + ahead
    use_next = (s_ahead > L) & (nxt >= 0)
    xy_here, yaw_here = bank.point_at(lane, s_ahead, fr.seg)
    xy_next, yaw_next = bank.point_at(nxt.clamp(min=0), s_ahead - L, torch.zeros_like(fr.seg))
    xy_t = torch.where(use_next.unsqueeze(-1), xy_next, xy_here)
    yaw_t = torch.where(use_next, yaw_next, yaw_here)
    normal = torch.stack([-torch.sin(yaw_t), torch.cos(yaw_t)], dim=-1)
    target = xy_t + normal * d_goal.unsqueeze(-1)
    wheelbase = WHEELBASE_RATIO * state.length
    rear = state.xy - torch.stack([torch.cos(state.yaw), torch.sin(state.yaw)], -1) * (0.5 * wheelbase).unsqueeze(-1)
    local = to_local(target, rear, state.yaw)
    dist = local.norm(dim=-1).clamp(min=1.0)
    alpha = torch.atan2(local[..., 1], local[..., 0])
    return torch.atan(2.0 * wheelbase * torch.sin(alpha) / dist)


def _nearest(ds: torch.Tensor, mask: torch.Tensor, ahead: bool):
    """Index and signed distance of the nearest agent ahead (ds > 0) or behind (ds < 0) in `mask`."""
    key = torch.where(mask & ((ds > 0) if ahead else (ds < 0)), ds.abs(), torch.full_like(ds, math.inf))
    dist, idx = key.min(dim=-1)
    return idx, dist


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(1, idx)
