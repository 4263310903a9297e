"""Plain twins for tests: of `reactive.leaders` (the sorted-index search, a plain loop) and of
`reactive.next_lanes` (the successor choice, without the bank's table)."""

from __future__ import annotations

import math

import torch

from drivesim.map.bank import lookup
from drivesim.traffic.reactive import Frenet, ReactiveConfig, agent_index_like, ego_next
from drivesim.core.types import AgentType


def leaders_reference(state, fr: Frenet, nxt, batch, cfg: ReactiveConfig):
    """Bumper gap [B][A] (python floats, inf when none) to each agent's leader, by brute force."""
    bank = batch.bank
    B, A = state.x.shape
    g = lambda t: t.tolist()
    lane, s, d, valid = g(state.lane), g(fr.s), g(fr.d), g(state.valid)
    x, y, yaw, v, length, width = g(state.x), g(state.y), g(state.yaw), g(state.speed), g(state.length), g(state.width)
    kind = g(state.agent_type)
    nx = g(nxt)
    L, W = g(bank.lane_len), g(bank.lane_width)
    left, right = g(bank.lane_left), g(bank.lane_right)
    side_map = g(bank.side_map)
    on_side = lambda ln, is_left, sv: side_map[ln][0 if is_left else 1][0] + side_map[ln][0 if is_left else 1][1] * sv
    out = []
    for b in range(B):
        entries = []  # (lane, s, agent)
        for j in range(A):
            lj = lane[b][j]
            if not valid[b][j] or lj < 0 or abs(d[b][j]) >= 0.5 * W[lj] + 0.5 * width[b][j]:
                continue
            entries.append((lj, s[b][j], j))
            side = left[lj] if d[b][j] > 0 else right[lj]
            if side >= 0 and abs(d[b][j]) + 0.5 * width[b][j] > 0.5 * W[lj]:
                entries.append((side, on_side(lj, d[b][j] > 0, s[b][j]), j))
        row = []
        for i in range(A):
            li = lane[b][i]
            best = math.inf
            half = lambda j: 0.5 * (length[b][i] + length[b][j])
            rear = lambda sj, j: sj - 0.5 * length[b][j]
            own = [(sj - s[b][i], j) for (lj, sj, j) in entries if lj == li and j != i and rear(sj, j) > s[b][i]] if li >= 0 else []
            best = min([best] + [dd - half(j) for dd, j in own])
            on = li >= 0 and valid[b][i] and abs(d[b][i]) < 0.5 * W[max(li, 0)] + 0.5 * width[b][i]
            side = (left[li] if d[b][i] > 0 else right[li]) if li >= 0 else -1
            overlap = abs(d[b][i]) + 0.5 * width[b][i] - 0.5 * W[max(li, 0)]
            if on and side >= 0 and overlap > 0:
                s2 = on_side(li, d[b][i] > 0, s[b][i])
                cands = [(sj - s2, j) for (lj, sj, j) in entries if lj == side and j != i and rear(sj, j) > s2]
                if cands:
                    dd, j = min(cands, key=lambda c: c[0] - half(c[1]))
                    closing = max(0.0, v[b][i] - v[b][j]) * overlap / cfg.lat_speed
                    if dd - half(j) < closing + cfg.idm.min_gap + 2.0:
                        best = min(best, dd - half(j))
            rem = L[max(li, 0)] - s[b][i]
            if not own and nx[b][i] >= 0:
                cands = [(rem + sj, j) for (lj, sj, j) in entries if lj == nx[b][i] and j != i]
                if cands:
                    best = min(best, min(dd - half(j) for dd, j in cands))
            if nx[b][i] >= 0 and valid[b][i] and li >= 0 and rem < cfg.merge_horizon:
                cands = []
                for j in range(A):
                    rj = L[max(lane[b][j], 0)] - s[b][j]
                    on_j = abs(d[b][j]) < 0.5 * W[max(lane[b][j], 0)] + 0.5 * width[b][j]
                    if (j != i and valid[b][j] and lane[b][j] >= 0 and on_j and nx[b][j] == nx[b][i] and rj < cfg.merge_horizon
                            and rj + 0.5 * length[b][j] < rem):
                        cands.append((rem - rj, j))
                if cands:  # the nearest of them, if it reaches the joint first (reactive.leaders)
                    dd, j = min(cands, key=lambda c: c[0] - 0.5 * length[b][c[1]])
                    vm = cfg.yielding.min_speed
                    if (rem - dd) / max(v[b][j], vm) <= rem / max(v[b][i], vm) + cfg.yielding.time_margin:
                        best = min(best, dd - half(j))
            on_lane = lambda j: lane[b][j] >= 0 and abs(d[b][j]) < 0.5 * W[lane[b][j]] + 0.5 * width[b][j]
            for j in range(A):  # the ego; any agent when it or agent i is off its lane; a vehicle on another lane close ahead
                if j == i or not valid[b][j]:
                    continue
                moving_off = not on_lane(j) and v[b][j] > cfg.off_lane_min_speed
                counts = kind[b][j] == AgentType.VEHICLE or (kind[b][j] != AgentType.STATIC and v[b][j] > cfg.off_lane_min_speed)
                apart = on_lane(i) and on_lane(j) and counts and lane[b][i] != lane[b][j]
                dx, dy = x[b][j] - x[b][i], y[b][j] - y[b][i]
                lon = dx * math.cos(yaw[b][i]) + dy * math.sin(yaw[b][i])
                lat = dy * math.cos(yaw[b][i]) - dx * math.sin(yaw[b][i])
                reach = max(v[b][i] * cfg.encroach_time, cfg.encroach_range)
                by_reach = j == 0 or (i > 0 and valid[b][i] and (not on_lane(i) or moving_off))
                by_lane = j > 0 and i > 0 and valid[b][i] and apart and lon - half(j) < cfg.other_lane_range
                if (by_reach and lon < reach or by_lane) and lon > 0 and abs(lat) < 0.5 * (width[b][i] + width[b][j]) + 0.2:
                    best = min(best, lon - half(j))
            row.append(best)
        out.append(row)
    return out


def next_lanes_reference(lane: torch.Tensor, batch) -> torch.Tensor:
    """`reactive.next_lanes` computed from the successor lists: agent a takes successor a % n."""
    succ = lookup(batch.bank.lane_succ, lane.clamp(min=0))  # [B, A, S]
    n = (succ >= 0).sum(-1)
    pick = torch.remainder(agent_index_like(lane), n.clamp(min=1))
    nxt = succ.gather(-1, pick.unsqueeze(-1)).squeeze(-1)
    nxt = torch.where((n > 0) & (lane >= 0), nxt, torch.full_like(nxt, -1))
    return ego_next(lane, nxt, batch)
