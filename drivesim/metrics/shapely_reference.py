"""Plain shapely twins of the fast metric paths (Python loops), for tests.

- `overlap_reference`: box pairs as shapely polygons, `intersects` (touching counts).
- `signed_distance_reference`: distance to the boundary of `road.drivable`, negative inside.
- `ego_max_distance_reference`: the largest corner signed distance of the ego box.
- `classify_collision_reference`: nuPlan collision type (see collisions.py) with shapely edges.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from drivesim.core.types import AgentType
from drivesim.metrics.collisions import STOPPED_SPEED, CollisionType


def box_polygon(x: float, y: float, yaw: float, length: float, width: float) -> Polygon:
    """Shapely box; corners front-left, rear-left, rear-right, front-right (core.geometry order)."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = [(0.5 * length, 0.5 * width), (-0.5 * length, 0.5 * width), (-0.5 * length, -0.5 * width),
             (0.5 * length, -0.5 * width)]
    return Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in local])


def overlap_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a, b: [N, 5] boxes (x, y, yaw, length, width). Returns [N] bool."""
    return np.array([box_polygon(*p).intersects(box_polygon(*q)) for p, q in zip(np.asarray(a, float), np.asarray(b, float))])


def signed_distance_reference(road, xy: np.ndarray) -> np.ndarray:
    """Signed distance [N] of points xy [N, 2] to the drivable-area edge (positive outside)."""
    area = road.drivable
    out = []
    for x, y in np.asarray(xy, float):
        p = shapely.Point(x, y)
        d = area.boundary.distance(p)
        out.append(-d if area.contains(p) else d)
    return np.array(out)


def ego_max_distance_reference(road, boxes: np.ndarray) -> np.ndarray:
    """Largest corner signed distance [N] of boxes [N, 5] (x, y, yaw, length, width)."""
    corners = [np.asarray(box_polygon(*b).exterior.coords)[:4] for b in np.asarray(boxes, float)]
    return np.array([signed_distance_reference(road, c).max() for c in corners])


def classify_collision_reference(ego: np.ndarray, ego_speed: float, other: np.ndarray, other_speed: float,
                                 other_type: int, stopped_speed: float = STOPPED_SPEED) -> CollisionType:
    """nuPlan collision type of one colliding pair; ego, other: (x, y, yaw, length, width)."""
    if ego_speed <= stopped_speed:
        return CollisionType.STOPPED_EGO
    if other_speed <= stopped_speed or other_type == int(AgentType.STATIC):
        return CollisionType.STOPPED_TRACK
    corners = np.asarray(box_polygon(*ego).exterior.coords)[:4]
    target = box_polygon(*other)
    if LineString([corners[0], corners[3]]).intersects(target):
        return CollisionType.ACTIVE_FRONT
    if LineString([corners[1], corners[2]]).intersects(target):
        return CollisionType.ACTIVE_REAR
    return CollisionType.ACTIVE_LATERAL
