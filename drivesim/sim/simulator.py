"""The closed-loop step: every agent decides from one snapshot, then all move together.

`Simulator(batch).reset()` gives the initial `SimState`; `step(state, ego_action)` returns the
next one. The ego (agent 0) follows the policy's action [B, 2] = (accel m/s^2, steer rad), or its
log when its mode is REPLAY. REACTIVE agents follow IDM/MOBIL/pure pursuit; REPLAY agents their
log; CONSTANT_VELOCITY agents keep speed and heading; STATIC agents stay. On a log, REACTIVE
agents follow their log until they first appear, HYBRID ones until the ego comes close; from
then on they are reactive (`SimState.released`). A logged agent whose first appearance would
overlap a simulated agent (the ego or one already released from its log), or leave it no room to
brake behind one, is held back: it stays invisible, on its log, until its logged place is free (`SimState.held_back` marks those agents, `Simulator.held_back` reads it on the latest state;
`rollout` reports their count per scenario as `RolloutResult.extra["held_back"]`).

LEARNED agents take accel and steer [B, A] from a behaviour model handed in as
`Simulator(batch, config, behavior=model)` (e.g. `drivesim.traffic_model.model.LearnedTraffic`):
`behavior.reset(batch)` is called by `reset()` (a stochastic model re-seeds itself there, so
the same batch gives the same rollout), `behavior.act(state, batch, active)` by every step, from
the same snapshot as everyone else; its actions go through the same limits and bicycle step as
the reactive agents'. On a log they follow it until they first appear, like REACTIVE agents.
They move freely: their lane is re-located when they drift off it, and they never leave the map
at a lane end. A scenario with LEARNED agents and no behaviour model is an error.

The ego action is checked here, in `step`, for every caller (rollout, gym env, trainers, the
Python API): it must be a float tensor [B, 2], finite, with accel in [-8, 4] m/s^2 and steer in
[-0.6, 0.6] rad (`sim.policy.ACTION_LOW/HIGH`, ACTION_TOL of float slack). Anything else raises
`ActionError` naming the scenario, its step and the values; the simulator never clips silently (a
policy that wants clipping calls `sim.policy.clip_action` itself, as the built-in ones do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from drivesim.traffic.control import reactive_control
from drivesim.traffic.reactive import Frenet, ReactiveConfig, next_lanes
from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import boxes_overlap
from drivesim.core.state import PROJECTION_FIELDS, SimState
from drivesim.core.types import ControlMode
from drivesim.dynamics.bicycle import BicycleConfig, apply_limits
from drivesim.dynamics.bicycle import step as bicycle_step
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.triggers import ScriptTriggers
from drivesim.map.bank import lookup

ACTION_TOL = 1e-4  # float slack on the action bounds (the dynamics clamp within it)


class ActionError(ValueError):
    """An ego action that is not a finite float [B, 2] inside the action space."""


def action_problems(action, batch_size: int) -> list[str]:
    """A reason per row ('' where the row's action is acceptable): one vectorized check, Python
    only for the bad rows' messages."""
    if not torch.is_tensor(action) or tuple(action.shape) != (batch_size, 2) or not action.is_floating_point():
        shape = tuple(action.shape) if torch.is_tensor(action) else type(action).__name__
        return [f"got {shape}, expected a float tensor [{batch_size}, 2] (accel, steer)"] * batch_size
    low, high = ACTION_LOW.to(action.device) - ACTION_TOL, ACTION_HIGH.to(action.device) + ACTION_TOL
    ok = ((action >= low) & (action <= high)).all(dim=1)  # NaN and inf compare False
    reasons = [""] * batch_size
    if bool(ok.all()):
        return reasons
    a = action.detach().cpu()
    for b in (~ok).nonzero().flatten().tolist():  # messages for the bad rows only
        row = a[b]
        if not bool(torch.isfinite(row).all()):
            reasons[b] = f"non-finite action {row.tolist()}"
        else:
            reasons[b] = (f"action {[round(v, 3) for v in row.tolist()]} outside the action space "
                          f"accel [{ACTION_LOW[0]:g}, {ACTION_HIGH[0]:g}] m/s^2, steer [{ACTION_LOW[1]:g}, {ACTION_HIGH[1]:g}] rad")
    return reasons


@dataclass(frozen=True)
class SimConfig:
    dynamics: BicycleConfig = field(default_factory=BicycleConfig)
    reactive: ReactiveConfig = field(default_factory=ReactiveConfig)
    hybrid_distance: float = 15.0  # m: a HYBRID agent leaves its log when the ego comes this close ...
    hybrid_time_gap: float = 2.0  # s: ... or this close in time at the ego's speed
    # a logged agent appears only where its box, grown by these, is free of simulated agents (_hold_back)
    appear_gap: float = 1.0  # m of free road ahead of an appearing agent, besides its braking room
    appear_decel: float = 4.0  # m/s^2: braking room ahead = closing speed^2 / (2 appear_decel)
    appear_margin: float = 0.25  # m free on each side


class Simulator:
    def __init__(self, batch: ScenarioBatch, config: SimConfig | None = None, behavior=None):
        self.batch = batch
        self.config = config or SimConfig()
        self.behavior = behavior
        mode = batch.init["mode"]
        self.is_learned = (mode == ControlMode.LEARNED) & batch.valid
        self.any_learned = bool(self.is_learned.any())
        if self.any_learned and behavior is None:
            rows = sorted({batch.names[b] for b in self.is_learned.nonzero()[:, 0].tolist()})
            raise ValueError(f"scenario(s) {rows[:5]} have LEARNED agents but no behaviour model was given: "
                             "use Simulator(batch, behavior=LearnedTraffic.load(...)) or rollout(..., behavior=...)")
        self.is_ego = torch.zeros_like(mode, dtype=torch.bool)
        self.is_ego[:, 0] = True  # [B, A]
        self.is_policy = mode == ControlMode.POLICY
        self.ego_policy = self.is_policy & self.is_ego  # [B, A]: the ego where the policy drives it
        self.is_reactive = (mode == ControlMode.REACTIVE) | (mode == ControlMode.HYBRID)
        self.is_hybrid = mode == ControlMode.HYBRID
        self.is_cv = mode == ControlMode.CONSTANT_VELOCITY
        self.has_log = batch.log_valid.any(dim=-1)  # [B, A]
        # logged REACTIVE/HYBRID/CONSTANT_VELOCITY/LEARNED agents follow their log until released (see _release)
        self.log_first = (self.is_reactive | self.is_cv | self.is_learned) & self.has_log
        self.needs_reactive = bool(self.is_reactive.any()) or not self.any_learned  # IDM/MOBIL decisions used
        self.is_replay = mode == ControlMode.REPLAY
        scripted = (batch.script_lane >= 0) | torch.isfinite(batch.script_accel)  # [B, A, T]
        first = scripted.to(torch.uint8).argmax(dim=-1)
        self.script_start = torch.where(scripted.any(dim=-1) & self.log_first, first, -1)  # [B, A] logged agents only
        self.triggers = ScriptTriggers(batch)  # scripts started relative to the simulated ego (sim/triggers.py)
        # any script entry in the batch (else reactive_control does not read the script tables)
        self.scripted = self.triggers.any or bool(scripted.any() | torch.isfinite(batch.script_lat_speed).any())
        if self.triggers.any:  # ... whose agent leaves its log at the trigger's release step
            self.script_start = torch.where(self.triggers.mask & self.log_first, self.triggers.release.unsqueeze(1),
                                            self.script_start)
        self.may_leave = ~self.is_ego & ~self.is_learned  # [B, A] agents that leave the map at a dead end (_track_lanes) ...
        self.relocated = self.is_ego | self.is_replay | self.log_first | self.is_learned  # ... re-located when off their lane
        self._last = None  # the latest state reset/step returned (only for the read-only `held_back`)

    @property
    def dt(self) -> float:
        return self.batch.dt

    @property
    def held_back(self) -> torch.Tensor:
        """[B, A] bool, read-only: the logged agents whose appearance was held back, on the latest
        state `reset`/`step` returned (`SimState.held_back`; the step does not read this)."""
        if self._last is None or self._last.held_back is None:
            return torch.zeros_like(self.is_ego)
        return self._last.held_back

    def reset(self) -> SimState:
        b = self.batch
        init = b.init
        B, A = init["x"].shape
        xy = torch.stack([init["x"], init["y"]], dim=-1)
        map_of = b.map_idx.unsqueeze(1).expand(B, A)
        lane, seg, _, _ = b.bank.locate(map_of.reshape(-1), xy.reshape(-1, 2), init["yaw"].reshape(-1))
        lane, seg = lane.view(B, A), seg.view(B, A)
        first = b.route_lanes[:, 0]
        ego_seg = b.bank.project_full(first, xy[:, 0])[2]
        lane[:, 0], seg[:, 0] = first, ego_seg
        zeros = torch.zeros_like(init["x"])
        if self.behavior is not None:
            self.behavior.reset(b)
        from_log = self.is_replay | self.log_first  # visible only where their log is at the start
        valid = b.valid & (~from_log | b.log_valid[:, :, 0])
        state = SimState(
            x=init["x"].clone(), y=init["y"].clone(), yaw=init["yaw"].clone(), speed=init["speed"].clone(),
            accel=zeros, steer=zeros.clone(), length=init["length"], width=init["width"],
            agent_type=init["agent_type"], valid=valid, lane=lane, seg=seg, step=0,
            lane_change_step=torch.full_like(lane, -10_000), clock=torch.zeros(B, dtype=torch.long, device=xy.device),
            released=self._release(None, valid, xy, init["speed"], torch.zeros(B, dtype=torch.long, device=xy.device)),
            held_back=torch.zeros_like(self.is_ego), **self.triggers.initial(),
        )
        self._last = project_lanes(state, b)
        return self._last

    def step(self, state: SimState, ego_action: torch.Tensor) -> SimState:
        """Advance every scenario by dt. ego_action [B, 2] (accel, steer) must be finite and inside
        the action space, else `ActionError` (see the module docstring); it is never clipped."""
        self._check_action(state, ego_action)
        cfg = self.config
        fr = frenet_of(state)  # the projection the previous step (or reset) made; None: project afresh
        trig = self.triggers.fire(state)  # scripts waiting for the simulated ego (none: nothing to do)
        scripts = self.triggers.script_view(state, trig)  # the batch itself unless a script waits for the ego
        dec = reactive_control(state, scripts, cfg.reactive, fr, has_scripts=self.scripted) if self.needs_reactive else None
        reactive = self.is_reactive & state.released
        constant = self.is_cv & state.released
        replay = self.is_replay | (self.log_first & ~state.released)
        accel = torch.where(reactive, dec.accel, 0.0) if dec is not None else torch.zeros_like(state.x)
        steer = torch.where(reactive, dec.steer, 0.0) if dec is not None else torch.zeros_like(state.x)
        learned = self.is_learned & state.released & state.valid
        if self.any_learned:
            l_accel, l_steer = self.behavior.act(state, self.batch, learned)
            accel, steer = torch.where(learned, l_accel, accel), torch.where(learned, l_steer, steer)
        action = ego_action.to(accel.dtype)  # (a float64 action is cast, as assigning it into accel did)
        accel = torch.where(self.ego_policy, action[:, 0:1], accel)  # the ego follows the policy's action
        steer = torch.where(self.ego_policy, action[:, 1:2], steer)
        # the jerk limit starts from an acceleration inside the actuator range: a replayed step (an agent's
        # last one on its log) carries the log's speed change, 30 m/s^2 where a track's speed column jumps
        prev_accel = state.accel.clamp(-cfg.dynamics.max_decel, cfg.dynamics.max_accel)
        accel, steer = apply_limits(accel, steer, prev_accel, state.steer, self.dt, cfg.dynamics)
        x, y, yaw, speed, accel_eff = bicycle_step(state.x, state.y, state.yaw, state.speed, accel, steer,
                                                   state.length, self.dt, cfg.dynamics.max_speed)
        keep = ~(self.is_policy | reactive | constant | learned) | ~state.valid
        x, y = torch.where(keep, state.x, x), torch.where(keep, state.y, y)
        yaw, speed = torch.where(keep, state.yaw, yaw), torch.where(keep, state.speed, speed)
        accel_eff = torch.where(keep, 0.0, accel_eff)
        steer = torch.where(keep, 0.0, steer)
        valid = state.valid
        held_back = state.held_back if state.held_back is not None else torch.zeros_like(state.valid)
        if bool(replay.any()):
            x, y, yaw, speed, accel_eff, valid = self._replay(state, replay, x, y, yaw, speed, accel_eff, valid)
            valid, held_back = self._hold_back(state, valid, held_back, x, y, yaw, speed)
        if dec is not None:
            lane, seg = torch.where(reactive, dec.lane, state.lane), torch.where(reactive, dec.seg, state.seg)
            changed = dec.changed & reactive
            nxt = torch.where(reactive, dec.next_lane, dec.next_lane_before)  # next_lanes(lane): it is per agent
        else:
            lane, seg, changed, nxt = state.lane, state.seg, torch.zeros_like(reactive), None
        clock = state.row_step + 1
        released = self._release(state.released, valid, torch.stack([x, y], -1), speed, clock)
        moved = state.replace(x=x, y=y, yaw=yaw, speed=speed, accel=accel_eff, steer=steer, valid=valid, released=released,
                              lane=lane, seg=seg, step=state.step + 1, clock=clock,
                              lane_change_step=torch.where(changed, state.row_step.unsqueeze(1).expand_as(lane),
                                                           state.lane_change_step), held_back=held_back, **trig)
        self._last = self._track_lanes(moved, nxt)
        return self._last

    def _check_action(self, state: SimState, action) -> None:
        reasons = action_problems(action, self.batch.batch_size)
        bad = [(b, why) for b, why in enumerate(reasons) if why]
        if bad:
            steps = state.row_step.tolist()
            rows = "; ".join(f"scenario {self.batch.names[b]!r}, step {steps[b]}: {why}" for b, why in bad[:3])
            more = f" (and {len(bad) - 3} more rows)" if len(bad) > 3 else ""
            raise ActionError(f"Simulator.step: {rows}{more}")

    def _release(self, released, valid, xy, speed, t):
        """[B, A] bool: agents driven by their controller rather than their log. Logged REACTIVE
        and CONSTANT_VELOCITY agents are released once visible; HYBRID ones when the ego comes
        within hybrid_distance or hybrid_time_gap (at the ego's speed) of them; a logged agent
        with a script exactly when its script starts (a rare event rewriting a real agent's
        future; with a trigger, sim/triggers.py, it then waits for the ego). Released agents stay
        released. t [B]: the rows' scenario step."""
        cfg = self.config
        if released is None:
            released = ~self.log_first
        gap = (xy - xy[:, :1]).norm(dim=-1)  # [B, A] centre distance to the ego
        near = (gap < cfg.hybrid_distance) | (gap < cfg.hybrid_time_gap * speed[:, :1])
        trigger = torch.where(self.is_hybrid, near & valid[:, :1], torch.ones_like(near))
        trigger = torch.where(self.script_start >= 0, t.unsqueeze(1) >= self.script_start, trigger)
        return released | (self.log_first & valid & trigger)

    def _hold_back(self, state, valid, held_back, x, y, yaw, speed):
        """(valid, held_back) [B, A] with logged agents that would appear this step where a simulated agent
        (the ego, or an agent already off its log) is kept invisible; they stay on their (hidden)
        log and appear at the first step where their logged place is free. The place is the
        logged box grown by `appear_margin` on each side and, ahead, a cone (rough logged headings)
        as long as `appear_gap` plus the room to brake at `appear_decel` to the other agent's speed
        along its heading: an agent must not appear closing in on a slower one it can no longer
        avoid, as nuScenes' interpolated tracks make them do at up to 20 m/s. Only the newly appearing agents are tested, each against the A agents
        of its row ([N, A] pairs)."""
        cfg = self.config
        appear = self.log_first & ~state.released & ~state.valid & valid  # [B, A]
        if not bool(appear.any()):
            return valid, held_back
        on_log = self.is_replay | (self.log_first & ~state.released)
        simulated = valid & (~on_log | self.is_ego) & ~appear  # [B, A]
        rows, cols = appear.nonzero(as_tuple=True)  # N newly appearing agents
        v_new, yaw_new = speed[rows, cols].unsqueeze(1), yaw[rows, cols].unsqueeze(1)  # [N, 1] as logged
        v_other = state.speed[rows] * torch.cos(state.yaw[rows] - yaw_new)  # [N, A] along the new agent's heading
        room = (v_new - v_other).clamp(min=0) ** 2 / (2 * cfg.appear_decel) + cfg.appear_gap  # [N, A]
        length, width = state.length[rows], state.width[rows]  # [N, A]
        new = (x[rows, cols].unsqueeze(1), y[rows, cols].unsqueeze(1), yaw_new, state.length[rows, cols].unsqueeze(1), state.width[rows, cols].unsqueeze(1) + 2 * cfg.appear_margin)
        hits = boxes_overlap(new, (x[rows], y[rows], yaw[rows], length, width))
        # ahead: a cone (lateral reach growing by half the distance) since logged headings at a first appearance are rough
        dx, dy = x[rows] - new[0], y[rows] - new[1]
        lon, lat = dx * torch.cos(yaw_new) + dy * torch.sin(yaw_new), dy * torch.cos(yaw_new) - dx * torch.sin(yaw_new)
        bumper = lon - 0.5 * (new[3] + length)
        hits |= (lon > 0) & (bumper < room) & (lat.abs() < 0.5 * (new[4] + width) + 0.5 * bumper.clamp(min=0))
        hits &= simulated[rows]
        blocked = hits.any(dim=1)
        if not bool(blocked.any()):
            return valid, held_back
        rows, cols = rows[blocked], cols[blocked]
        held_back = held_back.index_put((rows, cols), torch.ones_like(rows, dtype=torch.bool))
        return valid.index_put((rows, cols), torch.zeros_like(rows, dtype=torch.bool)), held_back

    def _replay(self, state, rep, x, y, yaw, speed, accel, valid):
        T1, A = self.batch.log.shape[2], self.batch.log.shape[1]
        t = (state.row_step + 1).clamp(max=T1 - 1).view(-1, 1, 1)
        log = self.batch.log.gather(2, t.unsqueeze(-1).expand(-1, A, 1, 4)).squeeze(2)  # [B, A, 4]
        log_valid = self.batch.log_valid.gather(2, t.expand(-1, A, 1)).squeeze(2)
        new_speed = torch.where(rep, log[..., 3], speed)
        accel = torch.where(rep, (log[..., 3] - state.speed) / self.dt, accel)
        return (torch.where(rep, log[..., 0], x), torch.where(rep, log[..., 1], y), torch.where(rep, log[..., 2], yaw),
                new_speed, accel, torch.where(rep, log_valid, valid))

    def _track_lanes(self, state: SimState, nxt: torch.Tensor | None = None) -> SimState:
        """Update each agent's lane and segment after moving: onto the successor past a lane end
        (agents with none leave the map, except the ego, LEARNED agents and agents on their log),
        and re-locating the ego, logged and LEARNED agents when they leave their lane sideways.
        Keeps the projection for the next step. nxt: next_lanes(state.lane) when the caller has it."""
        bank, xy = self.batch.bank, state.xy
        s, d, seg, lane_yaw = bank.project(state.lane, state.seg, xy)
        lane_c, on_map = state.lane.clamp(min=0), state.lane >= 0
        L = lookup(bank.lane_len, lane_c)
        nxt = next_lanes(state.lane, self.batch) if nxt is None else nxt
        past = (s > L) & on_map
        onto = past & (nxt >= 0)
        lane = torch.where(onto, nxt, state.lane)
        seg = torch.where(onto, 0, seg)
        s = torch.where(onto, s - L, s)  # successors start where their lane ends
        on_log = self.is_replay | (self.log_first & ~state.released)
        gone = past & (nxt < 0) & self.may_leave & ~on_log
        valid = state.valid & ~gone
        half = 0.5 * lookup(bank.lane_width, lane_c) + 0.3
        drift = self.relocated & valid & ((d.abs() > half) | ~on_map)
        # agents found off every lane (pedestrians, parked cars) get lane -1 and are searched again once a second
        drift &= on_map | self.is_ego | (state.row_step.unsqueeze(1) % 10 == 0)
        if bool(drift.any()):
            rows, cols = drift.nonzero(as_tuple=True)
            new_lane, new_seg, new_s, new_d = bank.locate(self.batch.map_idx[rows], xy[rows, cols], state.yaw[rows, cols])
            off = (new_d.abs() > 0.5 * lookup(bank.lane_width, new_lane) + 0.3) & (cols > 0)
            new_lane = torch.where(off, -1, new_lane)
            lane, seg = lane.index_put((rows, cols), new_lane), seg.index_put((rows, cols), new_seg)
            s, d = s.index_put((rows, cols), new_s), d.index_put((rows, cols), new_d)
        # the projection for the next step; lane_yaw is stale where the lane changed
        return state.replace(lane=lane, seg=seg, valid=valid, lane_s=s, lane_d=d, lane_seg=seg, lane_yaw=lane_yaw)


def frenet_of(state: SimState) -> Frenet | None:
    """The lane projection carried by `state` (None if it carries none)."""
    if any(getattr(state, k) is None for k in PROJECTION_FIELDS):
        return None
    return Frenet(state.lane_s, state.lane_d, state.lane_seg, state.lane_yaw)


def project_lanes(state: SimState, batch: ScenarioBatch, rows: torch.Tensor | None = None) -> SimState:
    """`state` with its lane projection (lane_s, lane_d, lane_seg, lane_yaw) computed afresh from
    its lanes, segments and positions: for every row, or only for the rows where `rows` [B] bool
    is True (e.g. rows restarted by hand; a state without a projection gets it for all rows).
    `reset` uses it; the values are the ones a step would compute for a state built elsewhere."""
    s, d, seg, yaw = batch.bank.project(state.lane, state.seg, state.xy)
    fresh = dict(zip(PROJECTION_FIELDS, (s, d, seg, yaw)))
    if rows is None or frenet_of(state) is None:
        return state.replace(**fresh)
    pick = rows.view(-1, 1)
    return state.replace(**{k: torch.where(pick, v, getattr(state, k)) for k, v in fresh.items()})
