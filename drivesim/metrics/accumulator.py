"""Streaming closed-loop metrics of the ego over a batch of rollouts.

`MetricAccumulator(batch, config)`; call `update(state, active)` once after reset and after
every simulator step; `finalize(expert_progress)` returns {name: Tensor[B]} (names and meanings
in score.METRICS). Per step it checks collisions (first contact per agent, nuPlan type and
fault), the TTC, the largest corner distance to the drivable edge, the oncoming displacement,
overspeed against the ego lane's limit and the arc length along the route; it keeps these and
the ego pose in a small [T+1, B] buffer, and the episode scores are pure functions of that
buffer plus the collision counts. Rows whose `state.step` exceeds their `num_steps`, and rows
with `active` False at a step, are not counted at that step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from drivesim.core.geometry import box_corners
from drivesim.map.bank import lookup, project_on_segment_fields
from drivesim.metrics.collisions import (CLASS_NAMES, STOPPED_SPEED, CollisionClass, at_fault, classify_collisions,
                                         collision_class, ego_consider_mask, ego_straddles_lanes)
from drivesim.metrics.comfort import ComfortConfig, is_comfortable
from drivesim.metrics.drivable import (DrivableConfig, direction_score, drivable_area_compliance, ego_map_lookup,
                                       max_window_sum, oncoming_displacement, window_steps)
from drivesim.metrics.score import (COLLISION_THRESHOLDS, MAKING_PROGRESS_RATIO, MAX_OVERSPEED, NAVSIM_MIN_PROGRESS,
                                    NUPLAN_MIN_PROGRESS, collision_multipliers, navsim_ep, nuplan_progress_ratio,
                                    nuplan_score, pdms, speed_limit_score)
from drivesim.metrics.ttc import Boxes, TTCConfig, ego_ttc, pair_terms

SERIES = ("x", "y", "yaw", "speed", "max_offroad", "oncoming", "ttc", "overspeed", "route_s")


@dataclass(frozen=True)
class MetricConfig:
    ttc: TTCConfig = field(default_factory=TTCConfig)
    comfort: ComfortConfig = field(default_factory=ComfortConfig)
    drivable: DrivableConfig = field(default_factory=DrivableConfig)
    stopped_speed: float = STOPPED_SPEED  # m/s, collision classification
    collision_thresholds: tuple[int, int, int] = COLLISION_THRESHOLDS  # VRU, vehicle, object
    max_overspeed: float = MAX_OVERSPEED  # m/s
    min_progress: float = NUPLAN_MIN_PROGRESS  # m
    making_progress_ratio: float = MAKING_PROGRESS_RATIO
    navsim_min_progress: float = NAVSIM_MIN_PROGRESS  # m
    route_window: tuple[int, int] = (2, 6)  # route segments searched behind / ahead of the last one

    def validate_config(self, where: str = "metrics") -> None:
        from drivesim.core.config import ConfigError

        if self.ttc.step <= 0 or self.ttc.horizon <= self.ttc.step:
            raise ConfigError(f"{where}.ttc: need 0 < step < horizon, got step {self.ttc.step}, horizon {self.ttc.horizon}")
        self.comfort.validate_config(f"{where}.comfort")
        if min(self.route_window) < 0 or sum(self.route_window) < 1:
            raise ConfigError(f"{where}.route_window: need non-negative (behind, ahead), got {self.route_window}")


class MetricAccumulator:
    def __init__(self, batch, config: MetricConfig | None = None):
        self.batch, self.cfg = batch, config or MetricConfig()
        B, A = batch.valid.shape
        dev = batch.device
        self.dt = batch.dt
        self._T = batch.max_steps
        self._buf = torch.zeros(self._T + 1, B, len(SERIES), device=dev)  # [T+1, B, F]
        self._seen = torch.zeros(self._T + 1, B, dtype=torch.bool, device=dev)
        self._collided = torch.zeros(B, A, dtype=torch.bool, device=dev)
        self._at_fault = torch.zeros(B, len(CLASS_NAMES), device=dev)  # at-fault collisions per class
        self._all = torch.zeros(B, len(CLASS_NAMES), device=dev)  # every collided agent per class
        self._nc = torch.ones(B, device=dev)  # NAVSIM no-collision value
        self._prev_xy = None  # [B, 2]
        self._route_seg = None  # [B] cached route segment
        rp = batch.route_pts
        # route segments by field [B, 6, RP-1]: start x, y, unit tangent x, y, length, start arc length (the
        # values project_on_polylines computes from the end points, computed once)
        ab = rp[:, 1:] - rp[:, :-1]
        seglen = ab.norm(dim=-1).clamp(min=1e-6)
        tangent = ab / seglen.unsqueeze(-1)
        self._route = torch.stack([rp[:, :-1, 0], rp[:, :-1, 1], tangent[..., 0], tangent[..., 1], seglen,
                                   batch.route_s[:, :-1]], dim=1)
        self._route_nseg = batch.route_npts - 1  # [B]
        self._route_offs = torch.arange(-self.cfg.route_window[0], self.cfg.route_window[1] + 1, device=dev)
        self._route_len = batch.route_s[:, -1]  # [B]
        self.route_s = torch.zeros(B, device=dev)  # [B] latest arc length of the ego along its route
        self._ego_half = 0.5 * batch.init["length"][:, 0]  # [B]

    @property
    def route_completed(self) -> torch.Tensor:
        """[B] bool: the ego's front is within 1 m of the end of its route (the rollout stops
        counting it there, before it drives off the end of the map)."""
        return self.route_s >= self._route_len - self._ego_half - 1.0

    # ------------------------------------------------------------------ per step
    def update(self, state, active: torch.Tensor | None = None) -> None:
        """Check one state (after reset, or after a step); active [B] masks failed rows."""
        t = state.step
        if t > self._T:
            return
        counted = self.batch.num_steps >= t
        if active is not None:
            counted = counted & active
        bank, map_idx = self.batch.bank, self.batch.map_idx
        boxes = Boxes.from_state(state)
        ego = Boxes(*(f[:, 0] for f in boxes))  # [B]
        terms = pair_terms(Boxes(*(f[:, :1] for f in boxes)), boxes, ego_consider_mask(state.valid, counted),
                           self.cfg.ttc.horizon)
        corners = box_corners(*ego.as_box())  # [B, 4, 2]
        xy = torch.stack([ego.x, ego.y], dim=-1)  # [B, 2]
        max_sd, direction = ego_map_lookup(bank, map_idx, corners, xy)  # [B], [B, 2]
        offroad = max_sd > 0.0
        cache = {}

        def straddle():
            if "s" not in cache:
                cache["s"] = ego_straddles_lanes(bank, state.lane[:, 0], state.seg[:, 0], corners)
            return cache["s"]

        before = self._collided[terms.b, terms.a]  # [M]
        fault_now = self._record_collisions(state, terms, terms.overlap & ~before, lambda: straddle() | offroad)
        junction = lambda: (direction == 0).all(dim=-1) & ~offroad  # no single lane direction: a junction
        ttc = ego_ttc(terms, ego.speed, before, lambda: straddle() | offroad | junction(), self.cfg.ttc)
        ttc = torch.where(fault_now, torch.zeros_like(ttc), ttc)  # nuPlan: TTC 0 at an at-fault collision
        lane = state.lane[:, 0]
        limit = lookup(bank.lane_speed, lane.clamp(min=0))
        overspeed = torch.where(lane >= 0, torch.relu(ego.speed - limit), torch.zeros_like(limit))
        prev = xy if self._prev_xy is None else self._prev_xy
        oncoming = oncoming_displacement(direction, xy - prev)
        self._prev_xy = xy
        self._buf[t] = torch.stack([ego.x, ego.y, ego.yaw, ego.speed, max_sd, oncoming, ttc, overspeed,
                                    self._route_position(xy)], dim=-1)
        self._seen[t] = counted

    def _record_collisions(self, state, terms, new: torch.Tensor, lateral_fault) -> torch.Tensor:
        """Classify first contacts (new [M]); returns [B] bool: an at-fault collision now."""
        fault_now = torch.zeros_like(self._nc, dtype=torch.bool)
        if not bool(new.any()):
            return fault_now
        b, a = terms.b[new], terms.a[new]
        self._collided[b, a] = True
        kind = state.agent_type[b, a]
        boxes = Boxes.from_state(state)
        ctype = classify_collisions(boxes.take(b, torch.zeros_like(b)), boxes.take(b, a), kind, self.cfg.stopped_speed)
        fault = at_fault(ctype, lateral_fault()[b])
        cls = collision_class(kind)
        one = torch.ones_like(b, dtype=self._all.dtype)
        self._all.index_put_((b, cls), one, accumulate=True)
        self._at_fault.index_put_((b[fault], cls[fault]), one[fault], accumulate=True)
        value = torch.where(cls == int(CollisionClass.OBJECT), 0.5, 0.0).to(self._nc.dtype)
        self._nc.scatter_reduce_(0, b[fault], value[fault], reduce="amin")
        fault_now[b[fault]] = True
        return fault_now

    def _route_position(self, xy: torch.Tensor) -> torch.Tensor:
        """Arc length [B] along the route: full search first, then a window around the last segment."""
        B, nseg = xy.shape[0], self._route_nseg
        if self._route_seg is None:
            k = torch.arange(self._route.shape[2], device=xy.device).expand(B, -1)
        else:
            k = (self._route_seg.unsqueeze(1) + self._route_offs).clamp(min=0)
        k = torch.minimum(k, (nseg - 1).unsqueeze(1))  # [B, K]
        f = self._route.gather(2, k.unsqueeze(1).expand(-1, 6, -1))  # [B, 6, K]
        s, _, self._route_seg, _ = project_on_segment_fields(*f.unbind(1), k, nseg, xy[:, 0], xy[:, 1])
        self.route_s = s
        return s

    # ------------------------------------------------------------------ episode
    def series(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-step values {name: [T+1, B]} (SERIES; ttc clamped) and the counted mask [T+1, B]."""
        return dict(zip(SERIES, self._buf.unbind(-1))), self._seen

    def finalize(self, expert_progress: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Episode metrics {name: Tensor[B]}; expert_progress [B] m (NaN or None: use the ego's own)."""
        cfg, dt = self.cfg, self.dt
        v, seen = self.series()
        n = seen.sum(dim=0)  # [B]
        any_seen = n > 0
        out = self._collision_metrics()
        out["drivable_area_compliance"] = drivable_area_compliance(v["max_offroad"], seen, cfg.drivable.dac_tolerance)
        worst_sd = v["max_offroad"].masked_fill(~seen, -1e9).amax(dim=0)
        out["max_offroad"] = torch.where(any_seen, worst_sd, torch.zeros_like(worst_sd))
        worst = max_window_sum(v["oncoming"] * seen, window_steps(dt, cfg.drivable.direction_window_s))
        out["max_oncoming"], out["driving_direction"] = worst, direction_score(worst, cfg.drivable)
        out["min_ttc"] = v["ttc"].masked_fill(~seen, cfg.ttc.clamp).amin(dim=0)
        out["ttc"] = (out["min_ttc"] >= cfg.ttc.threshold).float()
        out.update(self._progress_metrics(v["route_s"], seen, any_seen, expert_progress))
        overspeed = (v["overspeed"] * seen).sum(dim=0) * dt
        out["speed_limit"] = speed_limit_score(overspeed, n * dt, cfg.max_overspeed)
        out["comfort"] = is_comfortable(v["yaw"], v["speed"], dt, seen, cfg.comfort)
        out["pdms"] = pdms(out["no_collision"], out["drivable_area_compliance"], out["navsim_ep"], out["ttc"], out["comfort"])
        out["nuplan_score"] = nuplan_score(self._at_fault, out["drivable_area_compliance"], out["making_progress"],
                                           out["driving_direction"], out["ego_progress"], out["ttc"], out["speed_limit"],
                                           out["comfort"], cfg.collision_thresholds)
        # WorldEngine success, and nuPlan's making-progress condition (a policy that never moves
        # is no success, however safe)
        out["success"] = ((out["collision_any"] == 0) & (out["drivable_area_compliance"] > 0)
                          & (out["making_progress"] > 0)).float()
        out["steps"] = n.float()
        return out

    def _collision_metrics(self) -> dict[str, torch.Tensor]:
        out = {f"collisions_{name}": self._at_fault[:, i] for i, name in enumerate(CLASS_NAMES)}
        out["collisions_all"] = self._all.sum(dim=1)
        out["collision_any"] = (out["collisions_all"] > 0).float()
        out["no_collision"] = self._nc.clone()
        out["collision_multiplier"] = collision_multipliers(self._at_fault, self.cfg.collision_thresholds).prod(dim=1)
        return out

    def _progress_metrics(self, route_s, seen, any_seen, expert_progress) -> dict[str, torch.Tensor]:
        """Route progress (last minus first counted arc length) and the expert-relative terms."""
        T1 = seen.shape[0]
        first = seen.to(torch.uint8).argmax(dim=0)
        last = T1 - 1 - seen.flip(0).to(torch.uint8).argmax(dim=0)
        s0 = route_s.gather(0, first.unsqueeze(0))[0]
        s1 = route_s.gather(0, last.unsqueeze(0))[0]
        progress = torch.where(any_seen, s1 - s0, torch.zeros_like(s0))
        if expert_progress is None:
            given = torch.zeros_like(any_seen)
        else:
            given = torch.isfinite(expert_progress.to(progress))
        expert = torch.where(given, expert_progress.to(progress) if expert_progress is not None else progress, progress)
        # no one is scored past the end of the route (the rollout stops counting there): a
        # reference that went further (a log longer than its route) is capped where scoring stops
        rest = (self._route_len - self._ego_half - 1.0 - s0).clamp(min=0.0)
        expert = torch.where(given, torch.minimum(expert, rest), expert)
        ratio = nuplan_progress_ratio(progress, expert, self.cfg.min_progress)
        completion = self._route_completion(progress, rest, expert, given)
        making = (ratio >= self.cfg.making_progress_ratio).float()
        return {"progress": progress, "route_completion": completion, "expert_progress": expert,
                "progress_ratio": ratio.clamp(max=1.0), "progress_ratio_raw": ratio, "ego_progress": ratio.clamp(max=1.0),
                "making_progress": making, "navsim_ep": navsim_ep(progress, expert, self.cfg.navsim_min_progress),
                "expert_given": given}

    def _route_completion(self, progress, rest, expert, given) -> torch.Tensor:
        """Share [B] in [0, 1] of the reference progress the ego covered. The reference is the
        expert progress where one is given (on a log: the logged ego's progress along the same
        route; else the expert planner's run): min(1, max(p, 0) / p_ref), and 1 when the
        reference is under `min_progress` (2 m: nothing to cover, e.g. a log that waits at a red
        light throughout). Without a reference it is the share of the route ahead of the start
        (up to where the rollout stops scoring, the front 1 m from the route's end); rest [B] m."""
        p = progress.clamp(min=0.0)
        ref = torch.where(given, expert, rest.clamp(min=self.cfg.min_progress))
        share = (p / ref.clamp(min=1e-6)).clamp(0.0, 1.0)
        return torch.where(given & (expert < self.cfg.min_progress), torch.ones_like(share), share)
