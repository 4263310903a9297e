"""Aggregate scores: NAVSIM v1 PDMS and the nuPlan closed-loop score, plus the metric registry.

Formulas (docs/definitions.md):
- PDMS (autonomousvision/navsim `pdm_scorer.py`, v1) = NC * DAC * (5 EP + 5 TTC + 2 C) / 12 with
  NC in {0, 0.5 (static objects only), 1}; EP = ego progress / expert progress, 1 when the expert
  made less than 5 m.
- nuPlan closed-loop score (nuplan-devkit `closed_loop_reactive_agents_weighted_average`) =
  prod(at-fault collision multipliers per class, DAC, making progress, driving direction)
  * (5 progress + 5 TTC + 4 speed limit + 2 comfort) / 16; collision multiplier per class
  max(0, 1 - n / (thr + 1)) with thr VRU 0, vehicle 0, object 1; progress
  min(1, max(p, 2) / max(p_expert, 2)); making progress: that ratio >= 0.2; speed limit
  max(0, 1 - sum(overspeed * dt) / (2.23 * duration)).
"""

from __future__ import annotations

import torch

COLLISION_THRESHOLDS = (0, 0, 1)  # at-fault collisions tolerated per class: VRU, vehicle, object
MAX_OVERSPEED = 2.23  # m/s, nuPlan speed_limit_compliance max_overspeed_value_threshold
NUPLAN_MIN_PROGRESS = 2.0  # m, nuPlan ego_progress_along_expert_route score_progress_threshold
MAKING_PROGRESS_RATIO = 0.2  # nuPlan ego_is_making_progress min_progress_threshold
NAVSIM_MIN_PROGRESS = 5.0  # m, NAVSIM progress_distance_threshold


def collision_multipliers(counts: torch.Tensor, thresholds=COLLISION_THRESHOLDS) -> torch.Tensor:
    """Per-class multipliers [B, 3] from at-fault collision counts [B, 3] (VRU, vehicle, object)."""
    thr = torch.as_tensor(thresholds, dtype=counts.dtype, device=counts.device)
    return torch.clamp(1.0 - counts / (thr + 1.0), min=0.0)


def speed_limit_score(overspeed_integral: torch.Tensor, duration: torch.Tensor,
                      max_overspeed: float = MAX_OVERSPEED) -> torch.Tensor:
    """max(0, 1 - sum(overspeed * dt) / (2.23 * duration)); overspeed_integral in m."""
    return torch.clamp(1.0 - overspeed_integral / (max_overspeed * duration.clamp(min=1e-6)), min=0.0)


def nuplan_progress_ratio(progress: torch.Tensor, expert_progress: torch.Tensor,
                          min_progress: float = NUPLAN_MIN_PROGRESS) -> torch.Tensor:
    """max(p, 2) / max(p_expert, 2) (unclamped; the progress score is min(1, ratio))."""
    return progress.clamp(min=min_progress) / expert_progress.clamp(min=min_progress)


def navsim_ep(progress: torch.Tensor, expert_progress: torch.Tensor, min_progress: float = NAVSIM_MIN_PROGRESS):
    """NAVSIM ego progress: min(1, p / p_expert), 1 when the expert made under 5 m."""
    ratio = progress.clamp(min=0.0) / expert_progress.clamp(min=1e-6)
    return torch.where(expert_progress < min_progress, torch.ones_like(ratio), ratio.clamp(max=1.0))


def pdms(no_collision, drivable, ep, ttc, comfort) -> torch.Tensor:
    """NAVSIM v1 PDM score: NC * DAC * (5 EP + 5 TTC + 2 C) / 12."""
    return no_collision * drivable * (5.0 * ep + 5.0 * ttc + 2.0 * comfort) / 12.0


def nuplan_score(at_fault_counts, drivable, making_progress, driving_direction, progress, ttc, speed_limit,
                 comfort, thresholds=COLLISION_THRESHOLDS) -> torch.Tensor:
    """nuPlan closed-loop score: multipliers * (5 progress + 5 TTC + 4 speed limit + 2 comfort) / 16."""
    multiplier = collision_multipliers(at_fault_counts, thresholds).prod(dim=-1) * drivable * making_progress
    multiplier = multiplier * driving_direction
    return multiplier * (5.0 * progress + 5.0 * ttc + 4.0 * speed_limit + 2.0 * comfort) / 16.0


METRICS: dict[str, str] = {}


def register(name: str, description: str) -> None:
    """Add a metric name and a one-line description (for reports); names are unique."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is already registered")
    METRICS[name] = description


for _name, _text in {
    "collisions_vru": "at-fault ego collisions with pedestrians and cyclists (count, nuPlan)",
    "collisions_vehicle": "at-fault ego collisions with vehicles (count, nuPlan)",
    "collisions_object": "at-fault ego collisions with static objects (count, nuPlan)",
    "collisions_all": "agents the ego collided with, at fault or not (count)",
    "collision_any": "1 if the ego touched any agent",
    "no_collision": "NAVSIM NC: 0 at-fault collision with an agent, 0.5 with a static object only, else 1",
    "collision_multiplier": "nuPlan product of per-class at-fault collision multipliers",
    "drivable_area_compliance": "1 if no ego corner got more than 0.3 m off the drivable area",
    "max_offroad": "largest signed distance of an ego corner to the drivable edge (m, + outside)",
    "driving_direction": "nuPlan: 1 / 0.5 / 0 for <= 2 / <= 6 / more m of oncoming travel in 1 s",
    "max_oncoming": "largest oncoming displacement in a 1 s window (m)",
    "progress": "ego progress along its route (m)",
    "route_completion": "share of the reference progress covered: min(1, p / p_expert) (1 when p_expert < 2 m); "
                        "without a reference, of the route ahead of the start",
    "expert_progress": "reference progress used by the ratios (m; the ego's own when none is given)",
    "progress_ratio": "nuPlan progress ratio as scored: min(1, max(p, 2) / max(p_expert, 2))",
    "progress_ratio_raw": "max(p, 2) / max(p_expert, 2), not capped (above 1 when the ego got further than the reference)",
    "ego_progress": "nuPlan progress score min(1, progress_ratio_raw)",
    "making_progress": "nuPlan ego_is_making_progress: progress_ratio_raw >= 0.2",
    "navsim_ep": "NAVSIM ego progress min(1, p / p_expert), 1 when the expert made under 5 m",
    "ttc": "1 if no step had a time to collision under 0.95 s (3 s horizon, nuPlan)",
    "min_ttc": "smallest time to collision over the episode (s, 5 when none)",
    "speed_limit": "nuPlan speed-limit compliance max(0, 1 - sum(overspeed dt) / (2.23 duration))",
    "comfort": "1 if accelerations, jerks, yaw rate and yaw accel stayed in nuPlan's bounds",
    "pdms": "NAVSIM v1 PDM score NC * DAC * (5 EP + 5 TTC + 2 C) / 12",
    "nuplan_score": "nuPlan closed-loop score (multipliers * weighted average)",
    "success": "WorldEngine success (no collision of any kind, drivable-area compliant) and nuPlan making progress",
    "expert_given": "whether an expert progress was given (else ratios use the ego's own)",
    "steps": "number of counted steps (states) of the episode",
}.items():
    register(_name, _text)
