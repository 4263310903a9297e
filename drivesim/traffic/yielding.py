"""Yielding at lane conflicts (crossings and merges), for all reactive agents at once.

Which rule: nuPlan's IDM agents stop for red lights at stop lines and for whatever occupies the
path ahead, with no right-of-way reasoning; Waymax's IDM agents likewise follow their route.
Neither tells who goes first at an unsignalised crossing, so this follows the first-come rule of
gap acceptance at conflict points (SUMO's junction model reasons the same way): an agent yields,
as IDM behind a virtual stopped leader just before the conflict zone, to another agent whose
occupation of the zone overlaps its own (with `time_margin`) when the other
- arrives first (index breaks ties), or is already in the zone, or
- is not reactive (the ego, replayed or scripted agents never yield, so it is the reactive
  agent that must), and
- will not itself stop at a red light before the conflict (signal states decide first: the
  red-light stop of reactive.py stays, and a vehicle held at red does not block the green one).
An agent that can no longer stop before the zone at `commit_decel` goes on (it is committed),
unless the other agent is already in the zone.

Conflicts come precomputed per map (map/conflicts.py: `MapBank.conflict_lane`, `conflict_s`).
The step gathers each agent's next conflicts on its lane and the next two lanes it will take,
keeps those within `horizon` ([N] rows, N small), and compares each with the agents of its row
([N, A]); nothing loops over agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.traffic.idm import FAR
from drivesim.core.types import ControlMode
from drivesim.map.bank import lookup


@dataclass(frozen=True)
class YieldConfig:
    enabled: bool = True
    horizon: float = 50.0  # m of an agent's path ahead (its lane and the next) searched for conflicts
    time_margin: float = 1.5  # s: occupations of the zone closer than this in time conflict
    max_wait: float = 10.0  # s: agents arriving later than this are not yielded to
    commit_decel: float = 4.0  # m/s^2: an agent that cannot stop before the zone at this decel goes on
    min_speed: float = 1.0  # m/s: floor on speeds in arrival-time estimates
    stop_margin: float = 1.5  # m: a yielding agent stops this far before the zone (turning bodies sweep past its edge)


def _path_conflicts(state, fr, nxt, nxt2, bank):
    """Conflict zones on each agent's path (its lane, the successor it will take and the one
    after: junction connectors can be a metre long), [B, A, 3K] each: other lane, distances along
    the path to the zone entry and exit, and the zone's entry and exit arc lengths on the other lane."""
    lc, nc, n2 = state.lane.clamp(min=0), nxt.clamp(min=0), nxt2.clamp(min=0)
    on = (state.lane >= 0).unsqueeze(-1)
    on2 = on & (nxt >= 0).unsqueeze(-1)
    other = torch.cat([torch.where(on, lookup(bank.conflict_lane, lc), -1), torch.where(on2, lookup(bank.conflict_lane, nc), -1),
                       torch.where(on2 & (nxt2 >= 0).unsqueeze(-1), lookup(bank.conflict_lane, n2), -1)], dim=-1)
    zone = torch.cat([lookup(bank.conflict_s, lc), lookup(bank.conflict_s, nc), lookup(bank.conflict_s, n2)], dim=-2)  # [B, A, 3K, 4]
    K = bank.conflict_lane.shape[1]
    rem = lookup(bank.lane_len, lc) - fr.s
    starts = (-fr.s, rem, rem + lookup(bank.lane_len, nc))  # where each lane starts along the path
    base = torch.cat([v.unsqueeze(-1).expand(*fr.s.shape, K) for v in starts], dim=-1)
    return other, base + zone[..., 0], base + zone[..., 1], zone[..., 2], zone[..., 3]


def yield_gap(state, fr, nxt, batch, cfg: YieldConfig, red_stop: torch.Tensor, nxt2: torch.Tensor | None = None) -> torch.Tensor:
    """Bumper gap [B, A] to the entry of the first conflict zone where the agent must yield (FAR
    where none). red_stop [B, A]: the agent will stop at the red light ending its lane; nxt2 [B, A]:
    the successor it takes after `nxt` (-1 none; None: not searched)."""
    bank = batch.bank
    out = torch.full_like(fr.s, FAR)
    if not cfg.enabled or bank.conflict_lane.shape[1] == 0:
        return out
    nxt2 = torch.full_like(nxt, -1) if nxt2 is None else nxt2
    other, d_in, d_out, m_in, m_out = _path_conflicts(state, fr, nxt, nxt2, bank)
    half = 0.5 * state.length
    reach = torch.clamp(state.speed * 6.0, min=cfg.horizon).unsqueeze(-1)
    cand = (other >= 0) & (d_in - half.unsqueeze(-1) > 0) & (d_in < reach) & state.valid.unsqueeze(-1)
    if not bool(cand.any()):
        return out
    b, a, c = cand.nonzero(as_tuple=True)  # N zones ahead that the agent has not entered
    m, d_in, d_out, m_in, m_out = other[b, a, c], d_in[b, a, c], d_out[b, a, c], m_in[b, a, c], m_out[b, a, c]  # [N]
    lane_j, nxt_j, s_j = state.lane[b], nxt[b], fr.s[b]  # [N, A]
    rem_j = lookup(bank.lane_len, lane_j.clamp(min=0)) - s_j
    on_m, to_m = lane_j == m.unsqueeze(1), (nxt_j == m.unsqueeze(1)) & ~red_stop[b]
    start_j = torch.where(on_m, -s_j, torch.where(to_m, rem_j, torch.full_like(rem_j, FAR)))  # where lane m starts on j's path
    half_j = 0.5 * state.length[b]
    j_in, j_out = start_j + m_in.unsqueeze(1) - half_j, start_j + m_out.unsqueeze(1) + half_j  # bumper distances [N, A]
    j_idx = torch.arange(state.lane.shape[1], device=b.device).expand_as(lane_j)
    present = state.valid[b] & (lane_j >= 0) & (j_idx != a.unsqueeze(1)) & (start_j < FAR) & (j_out > 0)
    v_i = state.speed[b, a].clamp(min=cfg.min_speed)
    v_j = state.speed[b].clamp(min=cfg.min_speed)
    before_i = d_in - half[b, a]  # [N] bumper distance to the zone (> 0: not entered)
    t_i_in, t_i_out = before_i / v_i, (d_out + half[b, a]) / v_i
    t_j_in, t_j_out = j_in.clamp(min=0) / v_j, j_out / v_j  # [N, A]
    overlap = (t_j_in < t_i_out.unsqueeze(1) + cfg.time_margin) & (t_i_in.unsqueeze(1) < t_j_out + cfg.time_margin)
    overlap &= t_j_in < cfg.max_wait
    mode = batch.init["mode"][b]
    released = state.released[b] if state.released is not None else torch.ones_like(mode, dtype=torch.bool)
    reactive_j = ((mode == ControlMode.REACTIVE) | (mode == ControlMode.HYBRID)) & released
    inside_j = j_in <= 0
    first = (t_j_in < t_i_in.unsqueeze(1)) | ((t_j_in == t_i_in.unsqueeze(1)) & (j_idx < a.unsqueeze(1)))
    priority = ~reactive_j | inside_j | first
    can_stop = before_i > state.speed[b, a] ** 2 / (2 * cfg.commit_decel)
    must = present & overlap & priority & (can_stop.unsqueeze(1) | inside_j)
    gap = torch.where(must.any(dim=1), (before_i - cfg.stop_margin).clamp(min=0), torch.full_like(before_i, FAR))  # [N]
    flat = out.view(-1).scatter_reduce(0, b * out.shape[1] + a, gap, reduce="amin")
    return flat.view_as(out)
