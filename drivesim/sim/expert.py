"""An expert planner in the PDM-Closed style (Dauner et al. 2023, nuPlan's leading planner).

Every `replan_every` steps: 15 proposals = IDM along the route centreline at target speeds
{0.2 ... 1.0} × the speed limit × lateral offsets {-1, 0, +1} m, 4 s at 10 Hz; other agents are
forecast with constant velocity in route coordinates (so an agent drifting sideways into the
ego's lane, as in a cut-in, is anticipated); each proposal is scored with the PDM score
(metrics/proposals.py) and the best one is tracked (its IDM acceleration, pure pursuit on its path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drivesim.traffic.idm import FAR, IDMConfig, idm_accel
from drivesim.traffic.reactive import lane_frenet, next_lanes
from drivesim.core.types import AgentType
from drivesim.core.geometry import to_local, wrap_angle
from drivesim.dynamics.bicycle import WHEELBASE_RATIO
from drivesim.metrics.proposals import ProposalConfig, score_proposals
from drivesim.sim.observation import Observation, route_frame_to_world, route_points_at, route_position
from drivesim.sim.policy import clip_action
from drivesim.sim.trajectory import Trajectory, from_world, poses_along


@dataclass(frozen=True)
class PDMConfig:
    speed_fractions: tuple = (0.2, 0.4, 0.6, 0.8, 1.0)
    # m: lateral offsets of the proposals. PDM-Closed uses (-1, 0, 1); here they let the planner squeeze
    # past cut-ins it should brake for (cut-ins solved 92 -> 98 of 100, nominal suite success 0.984 -> 1.0
    # without them), so only the centreline is used by default
    offsets: tuple = (0.0,)
    horizon: int = 40  # steps of 0.1 s
    dt: float = 0.1
    replan_every: int = 2  # simulator steps
    max_agents: int = 16  # the ego and its 15 nearest agents are forecast and checked
    # PDM-Closed's IDM; slowing down to a lower target speed alone brakes at most at comfort_decel
    idm: IDMConfig = IDMConfig(min_gap=1.0, headway=1.5, max_accel=1.5, comfort_decel=3.0, delta=10.0, max_free_decel=2.0)
    # m/s^3: acceleration changes are rate-limited to this ... (3.0 would leave room under nuPlan's
    # filtered 4.13, but the later braking onset cost at-fault collisions on nuScenes 0103 and 0916)
    comfort_jerk: float = 4.0
    emergency_decel: float = 4.0  # m/s^2: ... unless the plan brakes harder than this
    emergency_brake: float = 8.0  # m/s^2 when every proposal collides
    lateral_speed: float = 0.8  # m/s towards a proposal's offset ...
    # ... and at most this many metres sideways per metre driven (about 3 deg off the route): near
    # standstill a proposal must not slide sideways (its heading would turn across the road, a corner
    # would leave it, every proposal would fail DAC and the planner would freeze off the centreline);
    # the box turns about its centre, so at 3 deg the rear corner of a 4.5 m car swings out 0.11 m
    lateral_slope: float = 0.05
    lookahead: float = 0.8  # s along the chosen proposal for pure pursuit
    corridor_margin: float = 0.3  # m added to half widths when deciding who is in the path ...
    anticipation: float = 2.0  # s: ... now or this soon (by the lateral forecast)
    scoring: ProposalConfig = ProposalConfig(lateral_always_at_fault=True)  # being side-swiped counts too
    lateral_deadband: float = 0.15  # m/s: others moving sideways faster than this complete a lane change


class PDMClosed:
    """The expert. `output="control"` (default): actions [B, 2]. `output="trajectory"` (the
    built-in `pdm_trajectory`): its chosen proposal as a `Trajectory` in the ego frame, with poses
    every `traj_dt` s (a multiple of `config.dt`; default `config.dt`) over the rest of its horizon,
    for the simulator's controller to track: the proposal's path, driven with the speed the
    expert's own control gives it (its comfort jerk limit and emergency braking applied to the
    proposal's IDM speeds), so that tracked it drives as the expert does."""

    name = "pdm_expert"

    def __init__(self, config: PDMConfig | None = None, output: str = "control", traj_dt: float | None = None):
        self.config = config or PDMConfig()
        if output not in ("control", "trajectory"):
            raise ValueError(f"PDMClosed: output must be 'control' or 'trajectory', got {output!r}")
        self.output = output
        self.traj_dt = float(traj_dt or self.config.dt)
        every = self.traj_dt / self.config.dt
        if not (self.traj_dt > 0 and abs(every - round(every)) < 1e-6 and round(every) <= self.config.horizon):
            raise ValueError(f"PDMClosed: traj_dt {traj_dt!r} must be a multiple of dt = {self.config.dt:g} s within the horizon")
        if output == "trajectory":
            self.name = "pdm_trajectory"
        self._plan = None

    def reset(self, batch) -> None:
        self._plan = None

    def act(self, obs: Observation) -> torch.Tensor:
        state, batch, cfg = obs.state, obs.batch, self.config
        k = 0 if self._plan is None else state.step - self._plan["step"]
        if self._plan is None or k >= cfg.replan_every or self._plan["xy"].shape[0] != state.batch_size:
            self._plan = self._replan(state, batch)
            k = 0
        p = self._plan
        if self.output == "trajectory":
            return self._trajectory(state, p, k)
        accel = self._accel((p["speed"][:, k + 1] - p["speed"][:, k]) / cfg.dt, state.accel[:, 0])
        j = min(k + max(1, int(round(cfg.lookahead / cfg.dt))), cfg.horizon)
        target = p["xy"][:, j]
        length = state.length[:, 0]
        rear = state.xy[:, 0] - torch.stack([torch.cos(state.yaw[:, 0]), torch.sin(state.yaw[:, 0])], -1) * (0.5 * WHEELBASE_RATIO * length).unsqueeze(-1)
        local = to_local(target, rear, state.yaw[:, 0])
        dist = local.norm(dim=-1).clamp(min=1.0)
        steer = torch.atan(2 * WHEELBASE_RATIO * length * torch.sin(torch.atan2(local[:, 1], local[:, 0])) / dist)
        return clip_action(torch.stack([accel, steer], -1))

    def _accel(self, target, prev):
        """[B] the acceleration the expert applies for the plan's `target` [B] after `prev` [B]:
        rate-limited to comfort_jerk unless the plan brakes harder than emergency_decel."""
        cfg = self.config
        step = cfg.comfort_jerk * cfg.dt
        smooth = torch.minimum(torch.maximum(target, prev - step), prev + step)
        return torch.where(target < -cfg.emergency_decel, target, smooth)

    def _trajectory(self, state, p: dict, k: int) -> Trajectory:
        """The plan from its step k on as a Trajectory from the ego's pose: the expert's own
        acceleration (`_accel`) integrated from the ego's speed, placed along the proposal's path."""
        cfg = self.config
        v, prev = state.speed[:, 0], state.accel[:, 0]
        travel, dist = [], torch.zeros_like(v)
        for j in range(k, cfg.horizon):
            v_new = (v + self._accel((p["speed"][:, j + 1] - p["speed"][:, j]) / cfg.dt, prev) * cfg.dt).clamp(min=0)
            dist = dist + 0.5 * (v + v_new) * cfg.dt
            prev, v = (v_new - v) / cfg.dt, v_new
            travel.append(dist)
        every = int(round(self.traj_dt / cfg.dt))
        travel = torch.stack(travel, 1)[:, every - 1 :: every]  # [B, H] at (i + 1) * traj_dt
        poses = poses_along(p["xy"], state.xy[:, 0], state.yaw[:, 0], travel)
        return from_world(poses, state.xy[:, 0], state.yaw[:, 0], self.traj_dt)

    def _replan(self, state, batch) -> dict:
        cfg = self.config
        if state.num_agents > cfg.max_agents:  # plan against the ego's nearest agents only
            d2 = ((state.xy - state.xy[:, :1]) ** 2).sum(-1).masked_fill(~state.valid, float("inf"))
            d2[:, 0] = -1.0
            state = state.select_agents(d2.topk(cfg.max_agents, dim=1, largest=False).indices)
        B, A = state.x.shape
        K, T = len(cfg.speed_fractions) * len(cfg.offsets), cfg.horizon
        s0, d0 = route_position(batch, state.xy[:, 0])
        fs, fd = self._forecast_route_coords(state, batch)  # [B, T+1, A]
        limit = batch.bank.lane_speed[state.lane[:, 0].clamp(min=0)]
        dev = state.device
        v_target = limit.unsqueeze(1) * torch.tensor(cfg.speed_fractions, device=dev).repeat_interleave(len(cfg.offsets)).unsqueeze(0)
        offset = torch.tensor(cfg.offsets, device=dev).repeat(len(cfg.speed_fractions)).unsqueeze(0).expand(B, K)
        s, v, d = self._idm_rollout(state, batch, s0, d0, offset, v_target, fs, fd)  # [B, K, T+1]
        t = torch.arange(T + 1, device=dev) * cfg.dt
        xy = route_frame_to_world(batch, s, d)
        yaw = torch.atan2(torch.diff(xy[..., 1], dim=-1), torch.diff(xy[..., 0], dim=-1))
        yaw = torch.cat([yaw, yaw[..., -1:]], dim=-1)
        moving = v > 0.3
        yaw = torch.where(moving, yaw, state.yaw[:, 0, None, None].expand_as(yaw))
        others = self._forecast_world(state, batch, T)
        valid = state.valid.clone()
        valid[:, 0] = False
        scored = score_proposals(xy, yaw, v, state.length[:, 0], state.width[:, 0], others, valid, state.agent_type,
                                 batch.map_idx, batch.bank, progress=s[..., -1] - s[..., :1].squeeze(-1), config=cfg.scoring)
        # ties go to the centred, faster proposal
        tie = 1e-4 * v_target / limit.clamp(min=0.1).unsqueeze(1) - 1e-3 * offset.abs()
        best = (scored["score"] + tie).argmax(dim=1)
        pick = lambda x: x[torch.arange(B, device=best.device), best]
        speed = pick(v)
        # every proposal collides (or leaves the road): brake as hard as the car can along the best path
        stuck = scored["score"].amax(dim=1) <= 0
        brake = (state.speed[:, :1] - cfg.emergency_brake * t).clamp(min=0)
        speed = torch.where(stuck.unsqueeze(1), torch.minimum(brake, speed), speed)
        return {"step": state.step, "xy": pick(xy), "speed": speed, "best": best}

    def _forecast_route_coords(self, state, batch):
        """Others' route coordinates (s, d) over the horizon at constant velocity in the route frame."""
        cfg = self.config
        B, A = state.x.shape
        s, d = route_position(batch, state.xy)  # [B, A]
        ref = route_points_at(batch, torch.stack([s, s + 1.0], -1).reshape(B, -1)).reshape(B, A, 2, 2)
        heading = torch.atan2(ref[:, :, 1, 1] - ref[:, :, 0, 1], ref[:, :, 1, 0] - ref[:, :, 0, 0])
        rel = wrap_angle(state.yaw - heading)
        t = torch.arange(cfg.horizon + 1, device=state.device) * cfg.dt
        fs = s.unsqueeze(1) + (state.speed * torch.cos(rel)).unsqueeze(1) * t[None, :, None]
        width = batch.bank.lane_width[state.lane[:, :1].clamp(min=0)]  # [B, 1] the ego's lane
        fd = self._lateral(d, state.speed * torch.sin(rel), width, t)
        return fs, fd

    def _toward_offset(self, d0, offset, s, s0, t: float):
        """[B, K] lateral position of the proposals at time t: from d0 towards the offset at
        `lateral_speed` and at most `lateral_slope` m per m driven (s - s0), whichever is less;
        replanning keeps the motion going (a smooth ramp restarted at every replan would start
        from zero lateral speed each time)."""
        cfg = self.config
        to_go = offset - d0.unsqueeze(1)
        room = torch.minimum(torch.full_like(s, cfg.lateral_speed * t), cfg.lateral_slope * (s - s0.unsqueeze(1)).clamp(min=0))
        return d0.unsqueeze(1) + to_go.sign() * torch.minimum(to_go.abs(), room)

    def _idm_rollout(self, state, batch, s0, d0, offset, v_target, fs, fd):
        """Integrate IDM along the route for each proposal against the forecast agents in its
        corridor (around where the proposal is at that step); returns s, v, d [B, K, T+1]."""
        cfg = self.config
        B, K = offset.shape
        s = s0.unsqueeze(1).expand(B, K).clone()
        v = state.speed[:, :1].expand(B, K).clone()
        half_e, len_e = 0.5 * state.width[:, 0], state.length[:, 0]
        others = state.valid.clone()
        others[:, 0] = False
        d = d0.unsqueeze(1).expand(B, K).clone()
        ss, vs, ds = [s], [v], [d]
        stop_s = self._stop_line(state, batch, s0)  # [B]
        reach = (half_e.unsqueeze(1) + 0.5 * state.width).unsqueeze(1) + cfg.corridor_margin  # [B, 1, A]
        look = int(round(cfg.anticipation / cfg.dt))
        for i in range(cfg.horizon):
            # in the corridor now, or about to be (a cut-in is a leader before it crosses the line)
            d_now = fd[:, i].unsqueeze(1) - d.unsqueeze(-1)  # [B, K, A]
            d_soon = fd[:, min(i + look, cfg.horizon)].unsqueeze(1) - d.unsqueeze(-1)
            inside = ((d_now.abs() < reach) | (d_soon.abs() < reach)) & others.unsqueeze(1)
            ahead = fs[:, i].unsqueeze(1) - s.unsqueeze(-1)
            gap = ahead - 0.5 * (len_e.unsqueeze(1) + state.length).unsqueeze(1)
            cand = inside & (ahead > 0)
            gap = torch.where(cand, gap, torch.full_like(gap, FAR))
            v_lead = ((fs[:, i + 1] - fs[:, i]) / cfg.dt).clamp(min=0).unsqueeze(1).expand_as(gap)
            gap_min, who = gap.min(dim=-1)
            lead_v = v_lead.gather(-1, who.unsqueeze(-1)).squeeze(-1)
            stop_gap = (stop_s.unsqueeze(1) - s - 0.5 * len_e.unsqueeze(1))
            use_stop = stop_gap < gap_min
            gap_min = torch.where(use_stop, stop_gap, gap_min)
            lead_v = torch.where(use_stop, torch.zeros_like(lead_v), lead_v)
            k = torch.searchsorted(batch.route_s, s.contiguous()).clamp(max=batch.route_s.shape[1] - 1)
            v0 = torch.minimum(v_target, batch.route_vmax.gather(1, k))  # slow down for curves ahead
            a = idm_accel(v, v0, gap_min, lead_v, cfg.idm)
            v_new = (v + a * cfg.dt).clamp(min=0)
            s = s + 0.5 * (v + v_new) * cfg.dt
            v = v_new
            d = self._toward_offset(d0, offset, s, s0, (i + 1) * cfg.dt)
            ss.append(s)
            vs.append(v)
            ds.append(d)
        return torch.stack(ss, -1), torch.stack(vs, -1), torch.stack(ds, -1)

    def _stop_line(self, state, batch, s0):
        """Route arc length of a red stop line at the end of the ego's current lane (FAR if none)."""
        lane = state.lane[:, :1]
        rem = batch.bank.lane_len[lane.clamp(min=0)] - batch.bank.project(lane, state.seg[:, :1], state.xy[:, :1])[0]
        red = batch.bank.signal_stop(lane, batch.map_idx, state.row_step * batch.dt)
        can_stop = rem > state.speed[:, :1] ** 2 / (2 * 4.0)
        return torch.where(red & can_stop, s0.unsqueeze(1) + rem, torch.full_like(rem, FAR)).squeeze(1)

    def _lateral(self, d, v_lat, width, t):
        """[B, T+1, A] lateral offsets over the horizon: an agent moving sideways faster than
        `lateral_deadband` keeps its lateral speed until it reaches the next lane centre that
        way (a lane change completes, however slowly it goes); the others keep their offset.
        d, v_lat [B, A] m, m/s from a lane centre (or the route); width [B, A] or [B, 1]."""
        n = d / width
        target = torch.where(v_lat > 0, torch.ceil(n + 0.05), torch.floor(n - 0.05)) * width
        room = (target - d).abs()
        moving = v_lat.abs() > self.config.lateral_deadband
        shift = torch.minimum(v_lat.abs().unsqueeze(1) * t.view(1, -1, 1), room.unsqueeze(1)) * torch.sign(v_lat).unsqueeze(1)
        return d.unsqueeze(1) + torch.where(moving.unsqueeze(1), shift, torch.zeros_like(shift))

    def _forecast_world(self, state, batch, T):
        """Others over the horizon: vehicles and cyclists on a lane keep their speed along it
        (onto the successor they will take) and their lateral speed across it (so a car drifting
        out of its lane keeps drifting, as in a cut-in); everything else moves in a straight line."""
        cfg, bank = self.config, batch.bank
        t = (torch.arange(T + 1, device=state.device) * cfg.dt).view(1, -1, 1)
        fr = lane_frenet(state, batch)
        rel = wrap_angle(state.yaw - fr.lane_yaw)
        grow = lambda z: z.unsqueeze(1).expand(-1, T + 1, -1)  # [B, A] -> [B, T+1, A]
        s_t = grow(fr.s) + grow(state.speed * torch.cos(rel)) * t
        d_t = self._lateral(fr.d, state.speed * torch.sin(rel), bank.lane_width[state.lane.clamp(min=0)], t.view(-1))
        lane, nxt, L = grow(state.lane), grow(next_lanes(state.lane, batch)), grow(bank.lane_len[state.lane.clamp(min=0)])
        on_next = (s_t > L) & (nxt >= 0)
        xy_a, yaw_a = bank.point_at(lane, s_t, bank.seg_near(lane, s_t), 3)
        xy_b, yaw_b = bank.point_at(nxt.clamp(min=0), s_t - L, bank.seg_near(nxt, s_t - L), 3)
        xy_l = torch.where(on_next.unsqueeze(-1), xy_b, xy_a)
        yaw_l = torch.where(on_next, yaw_b, yaw_a)
        normal = torch.stack([-torch.sin(yaw_l), torch.cos(yaw_l)], -1)
        xy_l = xy_l + normal * d_t.unsqueeze(-1)
        vx, vy = state.speed * torch.cos(state.yaw), state.speed * torch.sin(state.yaw)
        xy_s = torch.stack([grow(state.x) + grow(vx) * t, grow(state.y) + grow(vy) * t], -1)
        follows = (state.lane >= 0) & ((state.agent_type == AgentType.VEHICLE) | (state.agent_type == AgentType.CYCLIST))
        follows = grow(follows & (fr.d.abs() < bank.lane_width[state.lane.clamp(min=0)]))
        xy = torch.where(follows.unsqueeze(-1), xy_l, xy_s)
        yaw = torch.where(follows, wrap_angle(yaw_l + grow(rel)), grow(state.yaw))
        return (xy[..., 0], xy[..., 1], yaw, grow(state.length), grow(state.width), grow(state.speed))
