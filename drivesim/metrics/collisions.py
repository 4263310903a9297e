"""Ego collisions: overlap with the other agents, nuPlan collision types and fault.

nuPlan (nuplan-devkit `no_ego_at_fault_collisions.py`, docs/definitions.md): each collided track counts
once, at its first contact. Types, in order: STOPPED_EGO (ego speed <= 0.05 m/s), STOPPED_TRACK
(other speed <= 0.05 m/s, or a static object), ACTIVE_FRONT (the ego's front edge touches the
other box), ACTIVE_REAR (the ego's rear edge touches it), else ACTIVE_LATERAL. The ego is at fault
for STOPPED_TRACK and ACTIVE_FRONT, and for ACTIVE_LATERAL while it straddles lanes or is off the
drivable area. Difference: nuPlan calls a collision rear when the track centre is more than 150 deg
off the ego heading and tests that before the front edge; here the rear edge decides, after it.
Classes for the per-class multipliers: VRU (pedestrian, cyclist), vehicle, object (static).
"""

from __future__ import annotations

from enum import IntEnum

import torch

from drivesim.core.geometry import box_corners, segment_hits_box
from drivesim.core.types import AgentType
from drivesim.metrics.ttc import Boxes, pair_terms

STOPPED_SPEED = 0.05  # m/s, nuPlan _get_collision_type stopped_speed_threshold


class CollisionType(IntEnum):
    STOPPED_EGO = 0
    STOPPED_TRACK = 1
    ACTIVE_FRONT = 2
    ACTIVE_REAR = 3
    ACTIVE_LATERAL = 4


class CollisionClass(IntEnum):
    VRU = 0
    VEHICLE = 1
    OBJECT = 2


CLASS_NAMES = ("vru", "vehicle", "object")
_CLASS_OF_TYPE = {AgentType.VEHICLE: CollisionClass.VEHICLE, AgentType.PEDESTRIAN: CollisionClass.VRU,
                  AgentType.CYCLIST: CollisionClass.VRU, AgentType.STATIC: CollisionClass.OBJECT}


def collision_class(agent_type: torch.Tensor) -> torch.Tensor:
    """CollisionClass (int64, same shape) of AgentType values."""
    table = torch.tensor([int(_CLASS_OF_TYPE[AgentType(t)]) for t in range(len(AgentType))], device=agent_type.device)
    return table[agent_type]


def ego_consider_mask(valid: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 1, A] pairs (ego, other) worth testing: both valid, other is not the ego, row counted."""
    keep = valid & valid[:, :1]
    keep[:, 0] = False
    if rows is not None:
        keep = keep & rows.unsqueeze(1)
    return keep.unsqueeze(1)


def ego_overlaps(state) -> torch.Tensor:
    """[B, A] bool: the ego box overlaps agent a now (column 0 and padding are False).

    Distance pre-filter (half-diagonals), exact separating-axis test on the candidates only.
    """
    boxes = Boxes.from_state(state)
    terms = pair_terms(boxes.take(slice(None), slice(0, 1)), boxes, ego_consider_mask(state.valid), 0.0)
    out = torch.zeros_like(state.valid)
    out[terms.b[terms.overlap], terms.a[terms.overlap]] = True
    return out


def classify_collisions(ego: Boxes, other: Boxes, other_type: torch.Tensor,
                        stopped_speed: float = STOPPED_SPEED) -> torch.Tensor:
    """CollisionType [M] of colliding (ego, other) pairs, all fields [M]."""
    corners = box_corners(*ego.as_box())  # [M, 4, 2]: front-left, rear-left, rear-right, front-right
    box = other.as_box()
    front = segment_hits_box(corners[:, 0], corners[:, 3], box)
    rear = segment_hits_box(corners[:, 1], corners[:, 2], box)
    track_stopped = (other.speed <= stopped_speed) | (other_type == int(AgentType.STATIC))
    ctype = torch.full_like(other_type, int(CollisionType.ACTIVE_LATERAL))
    ctype = torch.where(rear, torch.full_like(ctype, int(CollisionType.ACTIVE_REAR)), ctype)
    ctype = torch.where(front, torch.full_like(ctype, int(CollisionType.ACTIVE_FRONT)), ctype)
    ctype = torch.where(track_stopped, torch.full_like(ctype, int(CollisionType.STOPPED_TRACK)), ctype)
    return torch.where(ego.speed <= stopped_speed, torch.full_like(ctype, int(CollisionType.STOPPED_EGO)), ctype)


def at_fault(ctype: torch.Tensor, lateral_fault: torch.Tensor) -> torch.Tensor:
    """nuPlan at-fault rule; lateral_fault: ego straddles lanes or is off the drivable area."""
    front_or_stopped = (ctype == int(CollisionType.ACTIVE_FRONT)) | (ctype == int(CollisionType.STOPPED_TRACK))
    return front_or_stopped | ((ctype == int(CollisionType.ACTIVE_LATERAL)) & lateral_fault)


def ego_straddles_lanes(bank, lane: torch.Tensor, seg: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """[B] bool: a corner (corners [B, 4, 2]) is farther than half the lane width from the
    centre of the ego lane (lane, seg [B]: the simulator's projection cache); True without a lane."""
    lane4 = lane.unsqueeze(1).expand(-1, 4)
    _, d, _, _ = bank.project(lane4, seg.unsqueeze(1).expand(-1, 4), corners)  # [B, 4]
    half = 0.5 * bank.lane_width[lane.clamp(min=0)]
    return (d.abs() > half.unsqueeze(1)).any(dim=1) | (lane < 0)
