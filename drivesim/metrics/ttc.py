"""Time to collision by constant-velocity extrapolation of oriented boxes.

nuPlan (nuplan-devkit `time_to_collision_within_bound.py`, docs/definitions.md): the ego and the other
boxes keep their heading and speed; the TTC is the first time on the grid
`np.arange(step, horizon, step)` (0.1 ... 2.9 s for step 0.1 s, horizon 3 s) at which the boxes
overlap; tracks already in collision and tracks behind the ego are ignored, lateral tracks only
count while the ego straddles lanes, is off the drivable area or is in a junction, and a stopped
ego (speed <= 5e-3 m/s, nuPlan's default there) has no TTC. The score is 1 when no step has
TTC < 0.95 s. Simplification: angles are taken from the ego box centre (nuPlan uses the rear axle).

Fast path: a pair is a candidate only if the smallest centre distance over the horizon (constant
relative velocity, closed form) is within the sum of the half-diagonals; the exact separating-axis
test then runs on the gathered candidates only, on the whole time grid at once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from drivesim.metrics.boxes import first_true_time, half_diagonal, min_distance_over_horizon, overlap_at_times, sat_terms


@dataclass(frozen=True)
class TTCConfig:
    horizon: float = 3.0  # s (nuPlan time_horizon)
    step: float = 0.1  # s (nuPlan time_step_size)
    threshold: float = 0.95  # s (nuPlan least_min_ttc): a step with TTC below it fails the score
    clamp: float = 5.0  # s, value reported when no collision is found (WOSAC TTC range [0, 5])
    stopped_speed: float = 5e-3  # m/s, nuPlan compute_time_to_collision default
    ahead_deg: float = 20.0  # nuPlan is_agent_ahead angle tolerance
    behind_deg: float = 150.0  # nuPlan is_agent_behind angle tolerance

    def times(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Grid [G] of look-ahead times, as nuPlan's np.arange(step, horizon, step)."""
        return _time_grid(self.horizon, self.step, torch.device(device or "cpu"), dtype)


@functools.lru_cache(maxsize=16)
def _time_grid(horizon: float, step: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return step * torch.arange(1, int(round(horizon / step)), device=device, dtype=dtype)


class Boxes(NamedTuple):
    """Moving oriented boxes; every field has the same shape (e.g. [B, A])."""

    x: torch.Tensor
    y: torch.Tensor
    yaw: torch.Tensor
    speed: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor

    @staticmethod
    def from_state(state) -> "Boxes":
        return Boxes(state.x, state.y, state.yaw, state.speed, state.length, state.width)

    def take(self, *index) -> "Boxes":
        return Boxes(*(f[index] for f in self))

    def as_box(self) -> tuple:
        return (self.x, self.y, self.yaw, self.length, self.width)


@dataclass
class PairTerms:
    """Candidate (subject, other) pairs and their separating-axis terms; M candidates."""

    b: torch.Tensor  # [M] batch row
    s: torch.Tensor  # [M] subject index
    a: torch.Tensor  # [M] other index
    p: torch.Tensor  # [M, 4] centre distance along the axes (subject x, y, other x, y)
    reach: torch.Tensor  # [M, 4] summed half extents along the axes
    q: torch.Tensor  # [M, 4] relative velocity along the axes
    overlap: torch.Tensor  # [M] bool, boxes overlap now


def pair_terms(subj: Boxes, other: Boxes, consider: torch.Tensor, horizon: float) -> PairTerms:
    """Candidates among subjects [B, S] x others [B, A] (consider [B, S, A]) that can touch
    within `horizon` seconds at constant velocity; horizon 0 gives the overlap pre-filter."""
    cs, ss = torch.cos(subj.yaw), torch.sin(subj.yaw)  # [B, S]
    co, so = torch.cos(other.yaw), torch.sin(other.yaw)  # [B, A]
    dx = other.x.unsqueeze(1) - subj.x.unsqueeze(2)  # [B, S, A]
    dy = other.y.unsqueeze(1) - subj.y.unsqueeze(2)
    wx = (other.speed * co).unsqueeze(1) - (subj.speed * cs).unsqueeze(2)  # relative velocity
    wy = (other.speed * so).unsqueeze(1) - (subj.speed * ss).unsqueeze(2)
    rsum = half_diagonal(other.length, other.width).unsqueeze(1) + half_diagonal(subj.length, subj.width).unsqueeze(2)
    near = consider & (min_distance_over_horizon(dx, dy, wx, wy, horizon) <= rsum * rsum)
    b, s, a = near.nonzero(as_tuple=True)
    S, A = near.shape[1], near.shape[2]
    pair, sub, oth = (b * S + s) * A + a, b * S + s, b * A + a  # flat indices
    take = lambda t, i: t.reshape(-1)[i]
    p, reach, q = sat_terms(take(dx, pair), take(dy, pair), take(subj.yaw, sub), take(subj.length, sub),
                            take(subj.width, sub), take(other.yaw, oth), take(other.length, oth),
                            take(other.width, oth), take(wx, pair), take(wy, pair))
    overlap = (p.abs() <= reach).all(dim=-1)
    return PairTerms(b, s, a, p, reach, q, overlap)


def first_hit_times(terms: PairTerms, cfg: TTCConfig) -> torch.Tensor:
    """[M] first grid time at which each candidate pair overlaps (cfg.clamp if never)."""
    times = cfg.times(terms.p.device, terms.p.dtype)  # [G]
    return first_true_time(overlap_at_times(terms.p, terms.reach, terms.q, times), times, cfg.clamp)


def reduce_ttc(terms: PairTerms, t: torch.Tensor, relevant: torch.Tensor, shape: tuple[int, int], clamp: float):
    """TTC [B, S]: the smallest t [M] over the relevant [M] candidates of each subject."""
    t = torch.where(relevant, t, torch.full_like(t, clamp))
    B, S = shape
    out = torch.full((B * S,), clamp, dtype=t.dtype, device=t.device)
    return out.scatter_reduce(0, terms.b * S + terms.s, t, reduce="amin").view(B, S)


def ttc_constant_velocity(subj: Boxes, other: Boxes, consider: torch.Tensor, cfg: TTCConfig = TTCConfig()) -> torch.Tensor:
    """Generic TTC [B, S] of subjects against others (consider [B, S, A]; exclude self-pairs
    there), ignoring pairs that overlap already; clamped to cfg.clamp. For realism features."""
    terms = pair_terms(subj, other, consider, cfg.horizon)
    return reduce_ttc(terms, first_hit_times(terms, cfg), ~terms.overlap, tuple(consider.shape[:2]), cfg.clamp)


def ego_ttc(terms: PairTerms, ego_speed: torch.Tensor, exclude: torch.Tensor,
            lateral_ok: torch.Tensor | Callable[[], torch.Tensor], cfg: TTCConfig) -> torch.Tensor:
    """nuPlan ego TTC [B] from ego-vs-others candidate terms (subject = ego, S = 1).

    ego_speed [B]; exclude [M]: candidates collided before; lateral_ok [B] (ego straddles lanes,
    is off-road or in a junction), or a function computing it, called only when a candidate
    that is neither ahead nor behind would collide within the horizon. Overlapping candidates
    are ignored. Clamped to cfg.clamp.
    """
    t = first_hit_times(terms, cfg)  # [M]
    dist = torch.hypot(terms.p[:, 0], terms.p[:, 1])  # [M] centre distance
    ahead = terms.p[:, 0] > dist * math.cos(math.radians(cfg.ahead_deg))
    behind = terms.p[:, 0] < dist * math.cos(math.radians(cfg.behind_deg))
    base = ~terms.overlap & ~exclude & (ego_speed > cfg.stopped_speed)[terms.b]
    relevant = base & ahead
    lateral = base & ~ahead & ~behind & (t < cfg.clamp)
    if bool(lateral.any()):
        ok = lateral_ok() if callable(lateral_ok) else lateral_ok
        relevant = relevant | (lateral & ok[terms.b])
    return reduce_ttc(terms, t, relevant, (ego_speed.shape[0], 1), cfg.clamp)[:, 0]
