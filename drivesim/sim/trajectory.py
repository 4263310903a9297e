"""Trajectory-output policies: a planned trajectory and the controller that tracks it.

A policy's `act` may return a `Trajectory` instead of actions [B, 2]: poses [B, H, 3] = (x forward
m, y left m, heading rad) in the ego frame at the time it was planned, pose i at time (i + 1) * dt
(NAVSIM: 8 poses at 0.5 s; nuPlan: 10 Hz). The rollout (sim/rollout.py) converts it to the world
frame (`to_world`) and hands it to a `TrajectoryTracker`, the simulator's controller, which turns
it into (accel, steer) every simulation step until the policy's next decision (nuPlan's two-stage
controller). `check_trajectory` gives the per-row problems (shape, non-finite poses, a horizon
shorter than the re-plan interval) so that only the bad rows fail.

The tracker, per step, from the stored world-frame plan (the ego's pose and speed when it was
planned prepended as the pose at t = 0; the poses densified with cubic Hermite curves through
their headings):
- lateral: pure pursuit on the plan's path at a speed-dependent lookahead (`lookahead_time` ×
  speed, at least `min_lookahead`). The reference point is the box centre by default
  (`reference_offset` = 0): the simulator's bicycle (dynamics/bicycle.py) moves the centre along
  the heading with curvature tan(steer) / wheelbase, so the centre plays the rear axle's part of
  a real car and pure pursuit of it has no steady-state error on a circle; `reference_offset` =
  0.5 * WHEELBASE_RATIO aims from the rear-axle point as sim/expert.py does.
- longitudinal: the plan's feed-forward acceleration at the middle of the step, plus
  proportional feedback on the speed error and on the station error (arc length along the path
  where the plan is at this time minus where the ego is). Not LQR: with the plan re-anchored at
  the ego at every decision the errors stay small and two gains are easy to reason about; the
  station term keeps the plan's timing (who is where when), which the collision and TTC
  metrics read.
- stopping: where the plan is (nearly) at rest and the ego within `stop_gap` of the end of the
  plan's path (or past it), the tracker brakes (`hold_decel`) so the ego comes to rest and stays; the
  bicycle never reverses (speed >= 0).
The output is clipped to the action box (`sim.policy.clip_action`): the tracker is the
simulator's controller, so that clipping is the actuator's range, not a hidden policy action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivesim.core.geometry import rotate, to_local, wrap_angle
from drivesim.dynamics.bicycle import WHEELBASE_RATIO
from drivesim.sim.policy import clip_action


@dataclass
class Trajectory:
    """Planned ego poses: poses [B, H, 3] (x forward m, y left m, heading rad) in the ego frame at
    the time it was planned; pose i is at time (i + 1) * dt. dt: seconds between poses."""

    poses: torch.Tensor  # [B, H, 3]
    dt: float


def to_world(traj: Trajectory, xy: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """World poses [B, H, 3] of an ego-frame trajectory planned at ego pose xy [B, 2], yaw [B]."""
    p = traj.poses
    world = rotate(p[..., :2], yaw.unsqueeze(1)) + xy.unsqueeze(1)
    return torch.cat([world, wrap_angle(p[..., 2:] + yaw.view(-1, 1, 1))], dim=-1)


def from_world(poses: torch.Tensor, xy: torch.Tensor, yaw: torch.Tensor, dt: float) -> Trajectory:
    """The Trajectory of world poses [B, H, 3] (x, y, heading) seen from ego pose xy [B, 2], yaw [B]."""
    local = to_local(poses[..., :2], xy.unsqueeze(1), yaw.unsqueeze(1))
    return Trajectory(torch.cat([local, wrap_angle(poses[..., 2:] - yaw.view(-1, 1, 1))], dim=-1), float(dt))


def check_trajectory(traj, batch_size: int, needed_s: float) -> list[str]:
    """A reason per row ('' where the row's trajectory can be tracked): a `Trajectory` with poses
    a float tensor [batch_size, H, 3], dt > 0, covering at least `needed_s` seconds (the re-plan
    interval), finite poses."""
    B = batch_size
    if not isinstance(traj, Trajectory):
        return [f"got {type(traj).__name__}, expected a Trajectory"] * B
    p = traj.poses
    if not torch.is_tensor(p) or p.dim() != 3 or p.shape[0] != B or p.shape[2] != 3 or p.shape[1] < 1 or not p.is_floating_point():
        shape = tuple(p.shape) if torch.is_tensor(p) else type(p).__name__
        return [f"trajectory poses {shape}, expected a float tensor [{B}, H >= 1, 3] (x, y, heading)"] * B
    try:
        dt = float(traj.dt)
    except (TypeError, ValueError):
        return [f"trajectory dt {traj.dt!r} is not a number of seconds"] * B
    if not (math.isfinite(dt) and dt > 0):
        return [f"trajectory dt {dt!r} must be a positive number of seconds"] * B
    H = p.shape[1]
    if H * dt < needed_s - 1e-6:
        return [f"trajectory horizon {H} poses x {dt:g} s = {H * dt:g} s is shorter than the re-plan interval {needed_s:g} s"] * B
    ok = torch.isfinite(p).flatten(1).all(dim=1)
    reasons = [""] * B
    if bool(ok.all()):
        return reasons
    bad = ~torch.isfinite(p.detach().cpu()).all(dim=2)  # [B, H]
    for b in (~ok).nonzero().flatten().tolist():
        i = int(bad[b].nonzero()[0, 0])
        reasons[b] = f"non-finite trajectory pose {i} {[round(v, 3) for v in p[b, i].tolist()]}"
    return reasons


@dataclass(frozen=True)
class TrackerConfig:
    lookahead_time: float = 0.8  # s: pure-pursuit lookahead = this × speed ...
    min_lookahead: float = 2.0  # m: ... at least this
    reference_offset: float = 0.0  # × box length behind the centre: the point that pursues (module docstring)
    speed_gain: float = 1.5  # 1/s: accel per m/s of speed error
    station_gain: float = 0.5  # 1/s^2: accel per m the ego is behind the plan
    stop_speed: float = 0.2  # m/s: where the plan is slower than this ...
    stop_gap: float = 0.5  # m: ... and the ego is within this of (or past) the end of the plan's path ...
    hold_decel: float = 2.0  # m/s^2: ... the ego brakes at least this hard, to come to rest and stay
    path_samples: int = 4  # Hermite sub-samples per pose interval for the path

    def validate_config(self, where: str = "tracker") -> None:
        for name in ("lookahead_time", "min_lookahead", "speed_gain", "station_gain", "stop_speed", "stop_gap", "hold_decel"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{where}: {name} must be a number >= 0, got {value!r}")
        if not isinstance(self.path_samples, int) or self.path_samples < 1:
            raise ValueError(f"{where}: path_samples must be an integer >= 1, got {self.path_samples!r}")


class TrajectoryTracker:
    """Tracks a world-frame plan with (accel, steer) [B, 2] per simulation step (module docstring)."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.config.validate_config()
        self._plan = None

    def plan(self, traj: Trajectory, state) -> None:
        """Store `traj` (ego frame at `state`) as the plan: the world poses with the ego's pose
        and speed at t = 0 prepended (non-finite poses of failed rows become 0)."""
        ego_xy, ego_yaw, v0 = state.xy[:, 0], state.yaw[:, 0], state.speed[:, 0]
        poses = torch.nan_to_num(to_world(Trajectory(traj.poses.to(ego_xy.dtype), traj.dt), ego_xy, ego_yaw),
                                 nan=0.0, posinf=0.0, neginf=0.0)
        start = torch.cat([ego_xy, ego_yaw.unsqueeze(-1)], -1).unsqueeze(1)
        self._plan = self._build(torch.cat([start, poses], dim=1), v0, float(traj.dt), state.step)  # knots [B, H+1, 3]

    def _build(self, knots, v0, dt: float, step: int) -> dict:
        cfg = self.config
        B = knots.shape[0]
        d = (knots[:, 1:, :2] - knots[:, :-1, :2]).norm(dim=-1)  # [B, H] distance between poses
        u = d / dt  # mean speed of each interval
        v = torch.cat([v0.unsqueeze(1), 0.5 * (u[:, :-1] + u[:, 1:]), u[:, -1:]], dim=1)  # [B, H+1] speed at the poses
        path, heading = _hermite(knots, cfg.path_samples)  # [B, N, 2], [B, N]
        seg = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
        arc = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(1)], dim=1)  # [B, N]
        station = arc[:, :: cfg.path_samples]  # [B, H+1] arc length at the poses
        start = torch.full((B,), step, dtype=torch.long, device=knots.device)
        return {"knots": knots, "v": v, "path": path, "heading": heading, "arc": arc, "station": station, "dt": dt, "start": start}

    def act(self, state, sim_dt: float) -> torch.Tensor:
        """(accel, steer) [B, 2] for the ego of `state` (the plan's clock: state.step - the plan's step)."""
        cfg, p = self.config, self._plan
        if p is None:
            raise RuntimeError("TrajectoryTracker.act before any plan")
        t = (state.step - p["start"]).to(state.x.dtype) * sim_dt  # [B] s since the plan
        length = state.length[:, 0]
        ego = state.xy[:, 0]
        yaw = state.yaw[:, 0]
        speed = state.speed[:, 0]
        ref = ego - rotate(torch.stack([cfg.reference_offset * length, torch.zeros_like(length)], -1), yaw)
        s_ego = _project(p["path"], p["arc"], ego)  # [B] arc length of the ego's centre on the path
        v_ref, s_ref = _profile(p, t)
        v_next, _ = _profile(p, t + sim_dt)
        a_ff = (v_next - v_ref) / sim_dt
        accel = a_ff + cfg.speed_gain * (v_ref - speed) + cfg.station_gain * (s_ref - s_ego)
        resting = (v_next < cfg.stop_speed) & (p["arc"][:, -1] - s_ego < cfg.stop_gap)  # at (or past) where the plan rests
        accel = torch.where(resting, torch.minimum(accel, torch.full_like(accel, -cfg.hold_decel)), accel)
        look = torch.clamp(cfg.lookahead_time * speed, min=cfg.min_lookahead)
        s_ref_pt = _project(p["path"], p["arc"], ref)
        target = _point_at(p["path"], p["arc"], p["heading"], s_ref_pt + look)
        local = to_local(target, ref, yaw)
        dist = local.norm(dim=-1).clamp(min=1.0)
        wheelbase = WHEELBASE_RATIO * length
        steer = torch.atan(2 * wheelbase * torch.sin(torch.atan2(local[:, 1], local[:, 0])) / dist)
        return clip_action(torch.nan_to_num(torch.stack([accel, steer], -1)))


def _hermite(knots: torch.Tensor, n: int):
    """Path points [B, H*n+1, 2] and headings [B, H*n+1] through knots [B, H+1, 3] (x, y, heading):
    cubic Hermite curves whose end tangents follow the poses' headings (scaled by the chord)."""
    p0, p1 = knots[:, :-1, :2], knots[:, 1:, :2]
    h0, h1 = knots[:, :-1, 2], knots[:, 1:, 2]
    chord = (p1 - p0).norm(dim=-1, keepdim=True)
    m0 = chord * torch.stack([torch.cos(h0), torch.sin(h0)], -1)
    m1 = chord * torch.stack([torch.cos(h1), torch.sin(h1)], -1)
    s = torch.arange(n, device=knots.device, dtype=knots.dtype) / n  # [n]
    s = s.view(1, 1, n, 1)
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    pts = h00 * p0.unsqueeze(2) + h10 * m0.unsqueeze(2) + h01 * p1.unsqueeze(2) + h11 * m1.unsqueeze(2)  # [B, H, n, 2]
    head = h0.unsqueeze(2) + wrap_angle(h1 - h0).unsqueeze(2) * s[..., 0]  # [B, H, n]
    B = knots.shape[0]
    path = torch.cat([pts.reshape(B, -1, 2), knots[:, -1:, :2]], dim=1)
    heading = torch.cat([head.reshape(B, -1), h1[:, -1:]], dim=1)
    return path, heading


def _project(path: torch.Tensor, arc: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """[B] arc length of the point nearest to xy [B, 2] on the polylines path [B, N, 2]."""
    a, b = path[:, :-1], path[:, 1:]
    ab = b - a
    L2 = (ab**2).sum(-1).clamp(min=1e-9)
    f = (((xy.unsqueeze(1) - a) * ab).sum(-1) / L2).clamp(0, 1)  # [B, N-1]
    near = a + f.unsqueeze(-1) * ab
    dist = ((near - xy.unsqueeze(1)) ** 2).sum(-1)
    i = dist.argmin(dim=1, keepdim=True)
    seg = (arc[:, 1:] - arc[:, :-1]).gather(1, i)
    return (arc.gather(1, i) + f.gather(1, i) * seg).squeeze(1)


def _point_at(path, arc, heading, s: torch.Tensor) -> torch.Tensor:
    """Points [B, 2] (or [B, M, 2]) at arc lengths s [B] (or [B, M]) along path [B, N, 2]; past
    its end, straight on along the last heading."""
    flat = s.dim() == 1
    s = s.unsqueeze(1) if flat else s  # [B, M]
    end = arc[:, -1:]
    inside = torch.minimum(s, end)
    i = torch.searchsorted(arc, inside.contiguous(), right=True).clamp(1, arc.shape[1] - 1)
    s0, s1 = arc.gather(1, i - 1), arc.gather(1, i)
    f = ((inside - s0) / (s1 - s0).clamp(min=1e-9)).clamp(0, 1).unsqueeze(-1)
    pick = lambda k: path.gather(1, k.unsqueeze(-1).expand(-1, -1, 2))  # [B, M, 2]
    pt = pick(i - 1) + f * (pick(i) - pick(i - 1))
    last = heading[:, -1]
    pt = pt + (s - end).clamp(min=0).unsqueeze(-1) * torch.stack([torch.cos(last), torch.sin(last)], -1).unsqueeze(1)
    return pt.squeeze(1) if flat else pt


def _profile(p: dict, t: torch.Tensor):
    """(speed [B], station [B]) of the plan at times t [B] s: speed linear between the poses,
    station integrated from it and scaled to meet the poses' stations; past the horizon the
    last speed and position hold (speed 0 when the plan ends at rest)."""
    v, station, dt = p["v"], p["station"], p["dt"]
    H = v.shape[1] - 1
    x = (t / dt).clamp(0, H)
    i = x.floor().long().clamp(max=H - 1).unsqueeze(1)
    tau = (x.unsqueeze(1) - i) * dt  # [B, 1] s into the interval
    v0, v1 = v.gather(1, i), v.gather(1, i + 1)
    speed = v0 + (v1 - v0) * tau / dt
    partial = v0 * tau + 0.5 * (v1 - v0) * tau**2 / dt
    total = 0.5 * (v0 + v1) * dt
    frac = torch.where(total > 1e-6, partial / total.clamp(min=1e-6), tau / dt)
    s0, s1 = station.gather(1, i), station.gather(1, i + 1)
    past = (t / dt > H).unsqueeze(1)
    speed = torch.where(past, v[:, -1:], speed)
    return speed.squeeze(1), (s0 + frac.clamp(0, 1) * (s1 - s0)).squeeze(1)


def poses_along(path: torch.Tensor, start_xy: torch.Tensor, start_yaw: torch.Tensor, travel: torch.Tensor) -> torch.Tensor:
    """World poses [B, M, 3] at `travel` [B, M] metres along the polyline path [B, N, 2] from the
    point of it nearest to start_xy [B, 2] (straight on past its end); headings are the path's
    direction there (start_yaw [B] until the path first moves, the last direction past its end)."""
    seg = path[:, 1:] - path[:, :-1]
    length = seg.norm(dim=-1)  # [B, N-1]
    arc = torch.cat([torch.zeros_like(length[:, :1]), length.cumsum(1)], dim=1)
    moving = length > 1e-3
    idx = torch.where(moving, torch.arange(length.shape[1], device=path.device), -1).cummax(dim=1).values
    yaw_seg = torch.atan2(seg[..., 1], seg[..., 0]).gather(1, idx.clamp(min=0))
    yaw_seg = torch.where(idx >= 0, yaw_seg, start_yaw.unsqueeze(1))  # [B, N-1] direction of (the last moving) segment
    heading = torch.cat([yaw_seg, yaw_seg[:, -1:]], dim=1)  # [B, N]
    s = (_project(path, arc, start_xy).unsqueeze(1) + travel)  # [B, M]
    i = torch.searchsorted(arc, s.clamp(max=arc[:, -1:]).contiguous(), right=True).clamp(1, arc.shape[1] - 1)
    yaw = heading.gather(1, i - 1)
    xy = _point_at(path, arc, heading, s)
    return torch.cat([xy, yaw.unsqueeze(-1)], dim=-1)
