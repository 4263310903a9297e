"""One decision step for every reactive agent: IDM + MOBIL + lane following + script overrides."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.traffic.mobil import mobil_lane_changes
from drivesim.traffic.reactive import (Frenet, ReactiveConfig, lane_frenet, lane_index, longitudinal, next_lanes, project_on,
                                        pure_pursuit)
from drivesim.core.scenario import ScenarioBatch
from drivesim.core.state import SimState


@dataclass
class Decision:
    accel: torch.Tensor  # [B, A] m/s^2 commanded
    steer: torch.Tensor  # [B, A] rad commanded
    lane: torch.Tensor  # [B, A] lane after lane changes
    seg: torch.Tensor  # [B, A]
    changed: torch.Tensor  # [B, A] bool: changed lane this step
    next_lane: torch.Tensor | None = None  # [B, A] next_lanes of `lane` ...
    next_lane_before: torch.Tensor | None = None  # ... and of the state's lanes (per agent, so the simulator reuses them)


def reactive_control(state: SimState, batch: ScenarioBatch, cfg: ReactiveConfig, fr: Frenet | None = None,
                     has_scripts: bool = True) -> Decision:
    """Decide accelerations, steering and lanes of all agents from one snapshot.

    The values are computed for every agent; the simulator applies them to REACTIVE agents only.
    `fr` is the agents' projection on their lanes when the caller already has it; `has_scripts`
    False tells that the batch has no script entries at all (the simulator knows it from its
    batch), so the script tables are not read.
    """
    t = state.row_step  # [B]
    fr = fr if fr is not None else lane_frenet(state, batch)
    nxt = nxt_before = next_lanes(state.lane, batch)
    lanes = lane_index(state, fr, batch)
    acc, v0 = longitudinal(state, fr, nxt, batch, cfg, t * batch.dt, lanes)
    lane, seg, changed = mobil_lane_changes(state, fr, batch, cfg, acc, v0, lanes)
    if has_scripts:
        lane, seg, changed, acc, lat = _script_overrides(state, fr, batch, cfg, t, lane, seg, changed, acc)
    else:  # what the overrides give where no entry is set
        lat = torch.full_like(acc, cfg.lat_speed)
    if bool(changed.any()):
        fr = Frenet(*batch.bank.project(lane, seg, state.xy))
        nxt = next_lanes(lane, batch)
    steer = pure_pursuit(state, fr, lane, nxt, batch, lat, cfg)
    return Decision(acc, steer, lane, fr.seg, changed, nxt, nxt_before)


def _script_overrides(state, fr, batch, cfg, t, lane, seg, changed, acc):
    """Scripted lanes, accelerations and lateral speeds at each row's step t [B] (the last entry
    past their end) over the decisions: (lane, seg, changed, acc, lat speed) [B, A]."""
    at_t = lambda table: table.gather(2, t.clamp(max=table.shape[2] - 1).view(-1, 1, 1).expand(-1, table.shape[1], 1)).squeeze(2)
    s_lane = at_t(batch.script_lane)
    scripted = (s_lane >= 0) & (s_lane != lane)
    if bool(scripted.any()):
        lane = torch.where(scripted, s_lane, lane)
        seg = torch.where(scripted, project_on(state, fr, s_lane, batch)[2], seg)
        changed = changed | scripted
    s_acc = at_t(batch.script_accel)
    acc = torch.where(torch.isfinite(s_acc), s_acc, acc)
    s_lat = at_t(batch.script_lat_speed)
    lat = torch.where(torch.isfinite(s_lat), s_lat, torch.full_like(s_lat, cfg.lat_speed))
    return lane, seg, changed, acc, lat
