"""Collision classification against its shapely twin, and the fault rule."""

import math

import numpy as np
import torch

from drivesim.core.types import AgentType
from drivesim.metrics.collisions import CollisionType, at_fault, classify_collisions, collision_class
from drivesim.metrics.shapely_reference import box_polygon, classify_collision_reference
from drivesim.metrics.ttc import Boxes


def _classify(ego, ego_speed, other, other_speed, other_type):
    as_boxes = lambda b, v: Boxes(*(torch.tensor([float(z)], dtype=torch.float64) for z in (b[0], b[1], b[2], v, b[3], b[4])))
    return CollisionType(int(classify_collisions(as_boxes(ego, ego_speed), as_boxes(other, other_speed),
                                                 torch.tensor([int(other_type)]))[0]))


def test_classification_matches_reference_on_random_contacts():
    rng = np.random.default_rng(0)
    seen = set()
    n = 0
    while n < 600:
        ego = np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi), rng.uniform(3.5, 5.5), rng.uniform(1.6, 2.2)])
        other = np.array([*rng.uniform(-4, 4, 2), rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 8), rng.uniform(0.5, 2.5)])
        if not box_polygon(*ego).intersects(box_polygon(*other)):
            continue
        speeds = (rng.choice([0.0, 0.03, 5.0]), rng.choice([0.0, 0.04, 3.0]))
        kind = rng.choice([int(t) for t in AgentType])
        ref = classify_collision_reference(ego, speeds[0], other, speeds[1], kind)
        assert _classify(ego, speeds[0], other, speeds[1], kind) == ref
        seen.add(ref)
        n += 1
    assert seen == set(CollisionType)


def test_hand_made_types():
    ego = (0.0, 0.0, 0.0, 4.5, 1.9)
    assert _classify(ego, 5.0, (4.0, 0.0, math.pi, 4.5, 1.9), 5.0, AgentType.VEHICLE) == CollisionType.ACTIVE_FRONT
    assert _classify(ego, 5.0, (-4.0, 0.0, 0.0, 4.5, 1.9), 8.0, AgentType.VEHICLE) == CollisionType.ACTIVE_REAR
    assert _classify(ego, 5.0, (0.0, 1.8, 0.1, 3.0, 1.9), 5.0, AgentType.VEHICLE) == CollisionType.ACTIVE_LATERAL
    assert _classify(ego, 0.05, (4.0, 0.0, math.pi, 4.5, 1.9), 5.0, AgentType.VEHICLE) == CollisionType.STOPPED_EGO
    assert _classify(ego, 5.0, (4.0, 0.0, 0.0, 4.5, 1.9), 0.05, AgentType.VEHICLE) == CollisionType.STOPPED_TRACK
    assert _classify(ego, 5.0, (2.5, 0.0, 0.0, 0.5, 0.5), 1.0, AgentType.STATIC) == CollisionType.STOPPED_TRACK


def test_fault_rule_and_classes():
    types = torch.tensor([int(t) for t in CollisionType])
    lateral_no = at_fault(types, torch.zeros(5, dtype=torch.bool)).tolist()
    lateral_yes = at_fault(types, torch.ones(5, dtype=torch.bool)).tolist()
    # order: STOPPED_EGO, STOPPED_TRACK, ACTIVE_FRONT, ACTIVE_REAR, ACTIVE_LATERAL
    assert lateral_no == [False, True, True, False, False]
    assert lateral_yes == [False, True, True, False, True]
    kinds = torch.tensor([int(AgentType.VEHICLE), int(AgentType.PEDESTRIAN), int(AgentType.CYCLIST), int(AgentType.STATIC)])
    assert collision_class(kinds).tolist() == [1, 0, 0, 2]
