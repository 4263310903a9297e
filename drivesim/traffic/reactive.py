"""Reactive traffic for all agents at once: IDM car-following, MOBIL lane changes, pure-pursuit
lane following, signal stop lines and scripted overrides.

Every agent decides from the same snapshot (`state`); the simulator then moves all of them.
Who is ahead of whom comes from a per-scenario sorted lane index (neighbours.py), O(A log A);
nothing loops over agents. `reference.py` holds the brute-force twin of the leader search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from drivesim.traffic.idm import FAR, IDMConfig, MOBILConfig, idm_accel
from drivesim.traffic.neighbours import LaneIndex, build_index
from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.yielding import YieldConfig, yield_gap
from drivesim.core.geometry import to_local
from drivesim.core.state import SimState
from drivesim.core.types import AgentType
from drivesim.dynamics.bicycle import WHEELBASE_RATIO
from drivesim.map.bank import SUCC_PERIOD, lookup


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
    off_lane_min_speed: float = 0.5  # m/s: an agent off its lane is an obstacle ahead only when faster than this
    other_lane_range: float = 8.0  # m bumper gap: an agent on another lane right ahead in the own frame is a leader this close
    yielding: YieldConfig = field(default_factory=YieldConfig)  # at crossing and merging lanes (yielding.py)


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
    """Frenet projection (s, d, seg, yaw) on `target` lanes [B, A]: a window around the mapped
    position where the target is the left or right neighbour, every segment otherwise."""
    bank = batch.bank
    lc = state.lane.clamp(min=0)
    left = target == lookup(bank.lane_left, lc)
    beside = (left | (target == lookup(bank.lane_right, lc))) & (target >= 0)
    _, guess = bank.on_neighbour(state.lane, left, fr.s)
    out = bank.project(target.clamp(min=0), guess, state.xy, back=4, ahead=4)
    far = ~beside & (target >= 0)
    if bool(far.any()):
        rows, cols = far.nonzero(as_tuple=True)
        full = bank.project_full(target[rows, cols], state.xy[rows, cols])
        out = tuple(o.index_put((rows, cols), f) for o, f in zip(out, full))
    return out


def next_lanes(lane: torch.Tensor, batch: ScenarioBatch) -> torch.Tensor:
    """The successor each agent will take ([B, A], -1 none): the route for the ego, else a fixed
    choice per agent (agent index modulo the number of successors), so it is deterministic.
    One lookup in the bank's table of choices (`MapBank.succ_by_index`; the plain form is
    reference_leaders.next_lanes_reference)."""
    bank = batch.bank
    col = torch.remainder(torch.arange(lane.shape[1], device=lane.device), SUCC_PERIOD)  # [A]
    nxt = lookup(bank.succ_by_index.view(-1), lane.clamp(min=0) * SUCC_PERIOD + col)
    nxt = torch.where(lane >= 0, nxt, -1)
    return ego_next(lane, nxt, batch)


def ego_next(lane: torch.Tensor, nxt: torch.Tensor, batch: ScenarioBatch) -> torch.Tensor:
    """nxt [B, A] with the ego's (column 0) replaced by the lane after its own on the route
    (its own choice when it is off the route or at the route's end)."""
    route = batch.route_lanes  # [B, R]
    on_route = route == lane[:, :1]
    pos = on_route.float().argmax(dim=1)
    after = route.gather(1, (pos + 1).clamp(max=route.shape[1] - 1).unsqueeze(1)).squeeze(1)
    after = torch.where(pos + 1 < route.shape[1], after, torch.full_like(after, -1))
    own = torch.where(on_route.any(1) & (after >= 0), after, nxt[:, 0])
    return torch.cat([own.unsqueeze(1), nxt[:, 1:]], dim=1)


def agent_index_like(t: torch.Tensor) -> torch.Tensor:
    return torch.arange(t.shape[1], device=t.device).expand_as(t)


@dataclass
class Lanes:
    """Each agent's lane-neighbourhood for one step: the sorted index and the secondary lanes."""

    index: LaneIndex
    on_lane: torch.Tensor  # [B, A] bool: the agent's body overlaps its lane
    side: torch.Tensor  # [B, A] neighbour lane the agent's body crosses into (-1: none)
    side_s: torch.Tensor  # [B, A] its arc length there


def lane_index(state: SimState, fr: Frenet, batch: ScenarioBatch) -> Lanes:
    """Entries: agents on their lane (body overlapping it) and on the neighbour lane their body
    crosses into."""
    bank = batch.bank
    lc = state.lane.clamp(min=0)
    half_lane = 0.5 * lookup(bank.lane_width, lc)
    on_lane = state.valid & (state.lane >= 0) & (fr.d.abs() < half_lane + 0.5 * state.width)
    side = torch.where(fr.d > 0, lookup(bank.lane_left, lc), lookup(bank.lane_right, lc))
    crosses = on_lane & (side >= 0) & (fr.d.abs() + 0.5 * state.width > half_lane)
    side_s, _ = bank.on_neighbour(state.lane, fr.d > 0, fr.s)
    index = build_index([state.lane, side], [fr.s, side_s], [on_lane, crosses], 0.5 * state.length)
    return Lanes(index, on_lane, torch.where(crosses, side, -1), side_s)


def leaders(state: SimState, fr: Frenet, nxt: torch.Tensor, batch: ScenarioBatch, cfg: ReactiveConfig, lanes: Lanes):
    """Bumper gap [B, A] to each agent's leader and the leader's index (inf / 0 when none).

    Candidates: the next agent on the agent's lane; on the neighbour lane its body crosses into
    (if it would close the gap before its body clears that lane at `lat_speed`);
    the first agent on the successor it will take (when its own lane is clear ahead); the agent
    closer to a shared successor on another lane joining it (within `merge_horizon` of the
    joint); the ego when it is right ahead in the agent's own frame (whatever the lanes), and so
    any agent when one of the two is off its lane (`_off_lane_ahead`).
    """
    bank, idx = batch.bank, lanes.index
    me = agent_index_like(state.lane)
    inf = math.inf
    lane_c = state.lane.clamp(min=0)
    rem = lookup(bank.lane_len, lane_c) - fr.s
    # the next agent ahead on the own lane, on the side lane and from the start of the successor: one search
    A = me.shape[1]
    found = idx.neighbour(torch.cat([state.lane, lanes.side, nxt], 1), torch.cat([fr.s, lanes.side_s, torch.full_like(fr.s, -1e5)], 1),
                          torch.cat([me, me, me], 1), ahead=True)
    (j1, j2, j3), (s1, s2, s3), (f1, f2, f3) = (v.split(A, dim=1) for v in found)
    merging = build_index([nxt], [rem], [lanes.on_lane & (nxt >= 0) & (rem < cfg.merge_horizon)], -0.5 * state.length)
    j4, r4, f4 = merging.neighbour(nxt, rem, me, ahead=False)
    # the agent nearer the joint leads only if it also gets there first (a crawling one yields instead, yielding.py)
    v_min = cfg.yielding.min_speed
    f4 = f4 & (r4 / gather_agents(state.speed, j4).clamp(min=v_min) <= rem / state.speed.clamp(min=v_min) + cfg.yielding.time_margin)
    lon, lat = _ego_in_own_frame(state)
    reach = torch.clamp(state.speed * cfg.encroach_time, min=cfg.encroach_range)
    near = (lon > 0) & (lon < reach) & (lat.abs() < 0.5 * (state.width + state.width[:, :1]) + 0.2) & state.valid[:, :1]
    near[:, 0] = False
    # a leader on the lane the body is leaving matters only if it is reached before the body clears that lane
    overlap = fr.d.abs() + 0.5 * state.width - 0.5 * lookup(bank.lane_width, lane_c)
    closing = (state.speed - gather_agents(state.speed, j2)).clamp(min=0) * overlap.clamp(min=0) / cfg.lat_speed
    f2 = f2 & (s2 - lanes.side_s - 0.5 * (state.length + gather_agents(state.length, j2)) < closing + cfg.idm.min_gap + 2.0)
    j6, lon6 = _off_lane_ahead(state, lanes.on_lane, cfg)
    dist = torch.stack([torch.where(f1, s1 - fr.s, inf), torch.where(f2, s2 - lanes.side_s, inf),
                        torch.where(f3 & ~f1 & (nxt >= 0), rem + s3, inf), torch.where(f4 & (rem < cfg.merge_horizon), rem - r4, inf),
                        torch.where(near, lon, inf), lon6], dim=-1)  # [B, A, 6]
    who = torch.stack([j1, j2, j3, j4, torch.zeros_like(j1), j6], dim=-1)
    gap = dist - 0.5 * (state.length.unsqueeze(-1) + state.length.gather(1, who.flatten(1)).view_as(who))
    gap, k = gap.min(dim=-1)
    return gap, who.gather(-1, k.unsqueeze(-1)).squeeze(-1)


def _off_lane_ahead(state: SimState, on_lane: torch.Tensor, cfg: ReactiveConfig):
    """The nearest agent right ahead in each agent's own frame ([B, A] index, centre distance,
    inf when none), as for the ego, among the pairs the lane index cannot see: the other agent is
    off its lane and moving (drifting, crossing, a walking pedestrian) or the agent itself is
    (within `encroach_range` / `encroach_time`), or the two are on different lanes that the map
    does not link (lanes that overlap or merge, a car already across a crossing lane), the other
    is a vehicle or a moving road user, and it is within `other_lane_range` bumper to bumper. [B, A, A] pairs."""
    B, A = state.x.shape
    if B * A * A < DENSE_PAIRS:
        return off_lane_ahead_dense(state, on_lane, cfg)
    return off_lane_ahead_sparse(state, on_lane, cfg)


DENSE_PAIRS = 16_384  # below this many [B, A, A] pairs the dense form is as fast (fewer ops); from here on the sparse one is faster


def off_lane_ahead_dense(state: SimState, on_lane: torch.Tensor, cfg: ReactiveConfig):
    """`_off_lane_ahead` testing every [B, A, A] pair (the plain form, and the twin of the sparse one)."""
    off = state.valid & ~on_lane
    off[:, 0] = False  # the ego has its own test (leaders)
    x, y, yaw, v, w, valid = state.x, state.y, state.yaw, state.speed, state.width, state.valid  # [B, A]
    A = x.shape[1]
    dx, dy = x.unsqueeze(1) - x.unsqueeze(2), y.unsqueeze(1) - y.unsqueeze(2)  # [B, i, j]: j seen from i
    c, s = torch.cos(yaw).unsqueeze(2), torch.sin(yaw).unsqueeze(2)
    lon, lat = dx * c + dy * s, dy * c - dx * s
    reach = torch.clamp(v * cfg.encroach_time, min=cfg.encroach_range).unsqueeze(2)
    moving = off & (v > cfg.off_lane_min_speed)  # still objects beside the lane (cones, parked cars) are passed
    # on another lane: vehicles (a stopped one too) and moving road users; static objects at a lane's edge are passed
    counts = (state.agent_type == AgentType.VEHICLE) | ((state.agent_type != AgentType.STATIC) & (v > cfg.off_lane_min_speed))
    lanes_apart = on_lane.unsqueeze(2) & (on_lane & counts).unsqueeze(1) & (state.lane.unsqueeze(1) != state.lane.unsqueeze(2))
    close = lon - 0.5 * (state.length.unsqueeze(1) + state.length.unsqueeze(2)) < cfg.other_lane_range
    pair = valid.unsqueeze(1) & valid.unsqueeze(2) & ~torch.eye(A, dtype=torch.bool, device=x.device)
    pair &= ((moving.unsqueeze(1) | off.unsqueeze(2)) & (lon < reach)) | (lanes_apart & close)
    pair[:, :, 0] = False
    pair[:, 0, :] = False  # nor is the ego's own leader needed
    ahead = pair & (lon > 0) & (lat.abs() < 0.5 * (w.unsqueeze(1) + w.unsqueeze(2)) + 0.2)
    lon = torch.where(ahead, lon, torch.full_like(lon, math.inf))
    best, j = lon.min(dim=2)
    return j, best


def off_lane_ahead_sparse(state: SimState, on_lane: torch.Tensor, cfg: ReactiveConfig):
    """`_off_lane_ahead` with the same arithmetic per pair, the same result: the geometric test
    (right ahead, within the summed half widths) on every pair, then the lane and motion tests
    on the M pairs that pass it only (a few percent at B=256), and the nearest per agent by
    scatter (the first index at the minimum, as `min(dim)` picks; 0 and inf when none)."""
    x, y, yaw, v, w, valid = state.x, state.y, state.yaw, state.speed, state.width, state.valid  # [B, A]
    B, A = x.shape
    dx, dy = x.unsqueeze(1) - x.unsqueeze(2), y.unsqueeze(1) - y.unsqueeze(2)  # [B, i, j]: j seen from i
    c, s = torch.cos(yaw).unsqueeze(2), torch.sin(yaw).unsqueeze(2)
    lon, lat = dx * c + dy * s, dy * c - dx * s
    ahead = (lon > 0) & (lat.abs() < 0.5 * (w.unsqueeze(1) + w.unsqueeze(2)) + 0.2)
    pair = ahead.view(-1).nonzero().squeeze(1)  # [M] flat (b, i, j)
    lon = lon.view(-1).index_select(0, pair)
    bi, j = pair // A, pair % A  # [M] flat index of agent i (b * A + i) and j
    i = bi % A
    bj = bi - i + j
    at = lambda t, k: t.reshape(-1).index_select(0, k)
    off = valid & ~on_lane
    off[:, 0] = False
    moving = off & (v > cfg.off_lane_min_speed)
    counts = (state.agent_type == AgentType.VEHICLE) | ((state.agent_type != AgentType.STATIC) & (v > cfg.off_lane_min_speed))
    reach = torch.clamp(at(v, bi) * cfg.encroach_time, min=cfg.encroach_range)
    lanes_apart = at(on_lane, bi) & at(on_lane & counts, bj) & (at(state.lane, bi) != at(state.lane, bj))
    close = lon - 0.5 * (at(state.length, bj) + at(state.length, bi)) < cfg.other_lane_range
    keep = at(valid, bi) & at(valid, bj) & (i != j) & (i > 0) & (j > 0)
    keep &= ((at(moving, bj) | at(off, bi)) & (lon < reach)) | (lanes_apart & close)
    lon = torch.where(keep, lon, math.inf)
    best = torch.full((B * A,), math.inf, dtype=lon.dtype, device=x.device).scatter_reduce(0, bi, lon, reduce="amin")
    first = torch.where(keep & (lon == best.index_select(0, bi)), j, A)
    who = torch.full((B * A,), A, dtype=j.dtype, device=x.device).scatter_reduce(0, bi, first, reduce="amin")
    return torch.where(who == A, 0, who).view(B, A), best.view(B, A)


def _ego_in_own_frame(state: SimState):
    """Position of the ego in every agent's frame: (longitudinal, lateral) [B, A]."""
    dx, dy = state.x[:, :1] - state.x, state.y[:, :1] - state.y
    c, s = torch.cos(state.yaw), torch.sin(state.yaw)
    return dx * c + dy * s, dy * c - dx * s


def _stop_line_gap(state: SimState, fr: Frenet, nxt: torch.Tensor, batch: ScenarioBatch, cfg: ReactiveConfig, t: float):
    """Gap to a virtual stopped obstacle at the lane end ([B, A], FAR if none): a dead end, a
    stub (no successor, other lanes ahead: a T-junction), or a red light the agent can still stop
    for; and the mask of agents stopping for red."""
    bank = batch.bank
    lane = state.lane.clamp(min=0)
    rem = lookup(bank.lane_len, lane) - fr.s - 0.5 * state.length
    red = bank.signal_stop(state.lane, batch.map_idx, t)
    can_stop = rem > state.speed**2 / (2 * cfg.stop_decel)
    stop = (red & can_stop) | ((lookup(bank.lane_dead_end, lane) | lookup(bank.lane_stub, lane)) & (nxt < 0))
    on = state.lane >= 0
    return torch.where(stop & on, rem.clamp(min=0.0), torch.full_like(rem, FAR)), red & can_stop & on


def desired_speed(state: SimState, batch: ScenarioBatch) -> torch.Tensor:
    """IDM v0 [B, A]: the agent's own desired speed, capped by the lane's speed limit and by the
    comfortable speed of the curves in the next 30 m (off every lane: its own desired speed;
    lane -1 must not read global lane 0, which belongs to whichever map is first in the batch)."""
    bank = batch.bank
    lc = state.lane.clamp(min=0)
    curve = lookup(bank.curve_speed, lc * bank.lane_pts.shape[1] + state.seg)
    capped = torch.minimum(torch.minimum(batch.init["desired_speed"], lookup(bank.lane_speed, lc)), curve)
    return torch.where(state.lane >= 0, capped, batch.init["desired_speed"])


def longitudinal(state, fr, nxt, batch, cfg: ReactiveConfig, t: float, lanes: Lanes | None = None):
    """IDM acceleration [B, A] behind the leader, the stop line or the point where it yields, and
    the desired speeds."""
    lanes = lanes if lanes is not None else lane_index(state, fr, batch)
    gap, lead = leaders(state, fr, nxt, batch, cfg, lanes)
    v = state.speed
    v_lead = (gather_agents(v, lead) * torch.cos(gather_agents(state.yaw, lead) - state.yaw)).clamp(min=0)
    stop, red = _stop_line_gap(state, fr, nxt, batch, cfg, t)
    nxt2 = torch.where(nxt >= 0, next_lanes(nxt, batch), -1)  # connectors in junctions are short: look one lane further
    stop = torch.minimum(stop, yield_gap(state, fr, nxt, batch, cfg.yielding, red, nxt2))
    use_stop = stop < gap
    gap = torch.where(use_stop, stop, torch.where(torch.isfinite(gap), gap, torch.full_like(gap, FAR)))
    v_lead = torch.where(use_stop, torch.zeros_like(v_lead), v_lead)
    v0 = desired_speed(state, batch)
    return idm_accel(v, v0, gap, v_lead, cfg.idm), v0


def pure_pursuit(state: SimState, fr: Frenet, lane, nxt, batch: ScenarioBatch, lat_speed, cfg: ReactiveConfig):
    """Steering towards a point ahead on `lane` whose offset converges on the centre at `lat_speed`."""
    bank = batch.bank
    v = state.speed
    ahead = torch.clamp(v * cfg.lookahead_time, min=cfg.min_lookahead)
    d_goal = fr.d - torch.sign(fr.d) * torch.minimum(fr.d.abs(), lat_speed * ahead / v.clamp(min=1.0))
    L = lookup(bank.lane_len, lane.clamp(min=0))
    s_ahead = fr.s + ahead
    use_next = (s_ahead > L) & (nxt >= 0)
    xy_t, yaw_t = bank.point_at(lane, s_ahead, bank.seg_near(lane, s_ahead), 3)
    if bool(use_next.any()):
        xy_next, yaw_next = bank.point_at(nxt.clamp(min=0), s_ahead - L, bank.seg_near(nxt, s_ahead - L), 3)
        xy_t = torch.where(use_next.unsqueeze(-1), xy_next, xy_t)
        yaw_t = torch.where(use_next, yaw_next, yaw_t)
    normal = torch.stack([-torch.sin(yaw_t), torch.cos(yaw_t)], dim=-1)
    target = xy_t + normal * d_goal.unsqueeze(-1)
    wheelbase = WHEELBASE_RATIO * state.length
    rear = state.xy - torch.stack([torch.cos(state.yaw), torch.sin(state.yaw)], -1) * (0.5 * wheelbase).unsqueeze(-1)
    local = to_local(target, rear, state.yaw)
    dist = local.norm(dim=-1).clamp(min=1.0)
    alpha = torch.atan2(local[..., 1], local[..., 0])
    steer = torch.atan(2.0 * wheelbase * torch.sin(alpha) / dist)
    return torch.where(lane >= 0, steer, torch.zeros_like(steer))  # off every lane: keep the heading


def gather_agents(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(1, idx)
