"""MOBIL lane-change decisions for all agents at once (see idm.py for the rule)."""

from __future__ import annotations

import math

import torch

from drivesim.traffic.idm import FAR, idm_accel, mobil_gain
from drivesim.traffic.reactive import Frenet, Lanes, ReactiveConfig, gather_agents, agent_index_like, project_on
from drivesim.core.scenario import ScenarioBatch
from drivesim.core.state import SimState
from drivesim.core.types import ControlMode
from drivesim.map.bank import lookup


def _idm_behind(follower, leader, dist, state, v0, cfg):
    """IDM accel of agent `follower` [B, A] behind `leader` at centre distance `dist` (inf: free)."""
    v_f = gather_agents(state.speed, follower)
    gap = dist - 0.5 * (gather_agents(state.length, follower) + gather_agents(state.length, leader))
    gap = torch.where(torch.isfinite(dist), gap, torch.full_like(gap, FAR))
    return idm_accel(v_f, gather_agents(v0, follower), gap, gather_agents(state.speed, leader), cfg.idm)


def _side_gain(state, fr, target, batch, cfg, acc_now, v0, lanes: Lanes, old):
    """MOBIL gain [B, A] of moving to `target` lanes (-1: none); -inf where unsafe or impossible."""
    bank = batch.bank
    tgt = target.clamp(min=0)
    s_t, d_t, seg_t, _ = project_on(state, fr, target, batch)  # [B, A]
    possible = (target >= 0) & ~lookup(bank.lane_dead_end, tgt) & (d_t.abs() < 1.5 * lookup(bank.lane_width, tgt))
    possible = possible & (s_t > 0) & (s_t < lookup(bank.lane_len, tgt))
    idx = agent_index_like(state.lane)
    lead, s_lead, f_lead = lanes.index.neighbour(target, s_t, idx, ahead=True)
    foll, s_foll, f_foll = lanes.index.neighbour(target, s_t, idx, ahead=False)
    d_lead = torch.where(f_lead, s_lead - s_t, math.inf)
    d_foll = torch.where(f_foll, s_t - s_foll, math.inf)
    half = lambda j: 0.5 * (state.length + gather_agents(state.length, j))
    room = ((d_lead - half(lead)) > 0.5) & ((d_foll - half(foll)) > 0.5)
    a_c_new = _idm_behind(idx, lead, d_lead, state, v0, cfg)
    a_n = torch.where(f_foll, _idm_behind(foll, lead, d_lead + d_foll, state, v0, cfg), 0.0)
    a_n_new = torch.where(f_foll, _idm_behind(foll, idx, d_foll, state, v0, cfg), 0.0)
    o, d_o, lead_old, d_lead_old = old
    has_o = torch.isfinite(d_o)
    a_o = torch.where(has_o, _idm_behind(o, idx, d_o, state, v0, cfg), 0.0)
    a_o_new = torch.where(has_o, _idm_behind(o, lead_old, d_o + d_lead_old, state, v0, cfg), 0.0)
    gain, safe = mobil_gain(acc_now, a_c_new, a_n, a_n_new, a_o, a_o_new, cfg.mobil)
    return torch.where(possible & room & safe, gain, -math.inf), seg_t


def _one_per_gap(state: SimState, fr: Frenet, target: torch.Tensor, margin: float = 10.0) -> torch.Tensor:
    """Of agents moving into the same lane at the same time within `margin` m of each other
    (plus their lengths), only the lowest-indexed goes: both would otherwise claim one gap."""
    same = (target.unsqueeze(1) == target.unsqueeze(2)) & (target.unsqueeze(2) >= 0)  # [B, i, j]
    close = (fr.s.unsqueeze(1) - fr.s.unsqueeze(2)).abs() < margin + state.length.unsqueeze(1)
    earlier = torch.ones_like(same).tril(diagonal=-1)  # j < i
    return (target >= 0) & ~(same & close & earlier).any(dim=2)


def mobil_lane_changes(state: SimState, fr: Frenet, batch: ScenarioBatch, cfg: ReactiveConfig, acc_now, v0, lanes: Lanes):
    """New lanes and segments [B, A] after MOBIL decisions, and the mask of agents that changed."""
    bank, t = batch.bank, state.row_step.unsqueeze(1)  # [B, 1]
    due = torch.remainder(t, cfg.mobil.every) == 0
    if not bool(due.any()):
        return state.lane, fr.seg, torch.zeros_like(state.valid)
    cooled = (t - state.lane_change_step) * batch.dt >= cfg.mobil.cooldown
    eligible = (batch.init["mode"] == ControlMode.REACTIVE) & state.valid & cooled & (state.lane >= 0) & due
    if not bool(eligible.any()):
        return state.lane, fr.seg, torch.zeros_like(eligible)
    idx = agent_index_like(state.lane)
    o, s_o, f_o = lanes.index.neighbour(state.lane, fr.s, idx, ahead=False)
    lead_old, s_lo, f_lo = lanes.index.neighbour(state.lane, fr.s, idx, ahead=True)
    old = (o, torch.where(f_o, fr.s - s_o, math.inf), lead_old, torch.where(f_lo, s_lo - fr.s, math.inf))
    lane_l, lane_r = lookup(bank.lane_left, state.lane.clamp(min=0)), lookup(bank.lane_right, state.lane.clamp(min=0))
    gain_l, seg_l = _side_gain(state, fr, lane_l, batch, cfg, acc_now, v0, lanes, old)
    gain_r, seg_r = _side_gain(state, fr, lane_r, batch, cfg, acc_now, v0, lanes, old)
    m = cfg.mobil
    gain_l, gain_r = gain_l - m.keep_right, gain_r + m.keep_right
    go_l = eligible & (gain_l > m.threshold) & (gain_l >= gain_r)
    go_r = eligible & (gain_r > m.threshold) & ~go_l
    target = torch.where(go_l, lane_l, torch.where(go_r, lane_r, torch.full_like(lane_l, -1)))
    go = _one_per_gap(state, fr, target)
    go_l, go_r = go_l & go, go_r & go
    lane = torch.where(go_l, lane_l, torch.where(go_r, lane_r, state.lane))
    seg = torch.where(go_l, seg_l, torch.where(go_r, seg_r, fr.seg))
    return lane, seg, go_l | go_r
