"""Procedural map builders: straight and curved multi-lane roads, an on-ramp merge, and a
four-way intersection with turn lanes and signal groups.

Right-hand traffic. Each builder takes keyword parameters only; `build_map(type, **params)`
checks the type and the keys. Lane indices in each map: see the builder docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
from shapely.geometry import Polygon

from drivesim.map.bank import check_raster_size
from drivesim.map.road import Lane, MapError, RoadMap


def _normals(ref: np.ndarray) -> np.ndarray:
    """Left unit normals of a polyline [P, 2] (central differences)."""
    tang = np.gradient(ref, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


def _carriageway(ref: np.ndarray, n_fwd: int, n_bwd: int, width: float, speed: float, first: int = 0):
    """Lanes offset from a reference line: forward lanes to its right, backward to its left.

    Returns (lanes, forward ids, backward ids); index 0 of each list is next to the median.
    """
    nrm = _normals(ref)
    lanes, fwd, bwd = [], [], []
    for i in range(n_fwd):
        fwd.append(first + len(lanes))
        lanes.append(Lane(ref - nrm * (i + 0.5) * width, width, speed))
    for i in range(n_bwd):
        bwd.append(first + len(lanes))
        lanes.append(Lane((ref + nrm * (i + 0.5) * width)[::-1].copy(), width, speed))
    for ids in (fwd, bwd):
        for k, gid in enumerate(ids):
            lanes[gid - first].left = ids[k - 1] if k > 0 else -1
            lanes[gid - first].right = ids[k + 1] if k + 1 < len(ids) else -1
    return lanes, fwd, bwd


# ranges a road can have, shared by the builders: every parameter is checked (finite, inside its
# range) before anything is built, so that a typo cannot ask for a 1e9 m road
LENGTH = (50.0, 5000.0)  # m
LANES = (1, 5)
LANES_BACK = (0, 5)
LANE_WIDTH = (2.5, 5.0)  # m
SPEED_LIMIT = (1.0, 70.0)  # m/s
BASE_RANGES = {"length": LENGTH, "lanes": LANES, "lanes_back": LANES_BACK, "lane_width": LANE_WIDTH,
               "speed_limit": SPEED_LIMIT}


def _check_lanes(n: int, what: str) -> None:
    if not 1 <= n <= 5:
        raise MapError(f"{what} must be between 1 and 5, got {n}")


@dataclass(frozen=True)
class StraightRoad:
    """Lanes 0..n-1 forward (+x, 0 next to the median), then n backward lanes."""

    length: float = 400.0
    lanes: int = 3  # per direction
    lanes_back: int = 2
    lane_width: float = 3.6
    speed_limit: float = 25.0
    RANGES: ClassVar[dict] = BASE_RANGES

    def build(self) -> RoadMap:
        _check_lanes(self.lanes, "lanes")
        ref = np.stack([np.linspace(0, self.length, 3), np.zeros(3)], axis=1)
        lanes, _, _ = _carriageway(ref, self.lanes, self.lanes_back, self.lane_width, self.speed_limit)
        return RoadMap("straight", lanes)


@dataclass(frozen=True)
class CurvedRoad:
    """A straight, an arc of `radius` turning `angle_deg` (left if positive), a straight."""

    length: float = 400.0
    radius: float = 150.0
    angle_deg: float = 60.0
    lanes: int = 3
    lanes_back: int = 2
    lane_width: float = 3.6
    speed_limit: float = 20.0
    RANGES: ClassVar[dict] = {**BASE_RANGES, "length": (50.0, 1000.0), "radius": (30.0, 500.0), "angle_deg": (-180.0, 180.0)}

    def build(self) -> RoadMap:
        _check_lanes(self.lanes, "lanes")
        if self.radius < 30 or self.radius < (self.lanes + self.lanes_back + 1) * self.lane_width:
            raise MapError(f"curved road radius {self.radius} m is too tight for its lanes")
        ang = math.radians(self.angle_deg)
        arc_len = abs(ang) * self.radius
        straight = max(20.0, (self.length - arc_len) / 2)
        pts = [np.array([[0.0, 0.0], [straight, 0.0]])]
        th = np.linspace(0, ang, max(8, int(arc_len / 2)))
        sign = 1.0 if ang >= 0 else -1.0
        arc = np.stack([straight + self.radius * np.sin(np.abs(th)), sign * self.radius * (1 - np.cos(th))], axis=1)
        pts.append(arc[1:])
        end, heading = arc[-1], ang
        pts.append((end + np.outer(np.linspace(0, straight, 10)[1:], [math.cos(heading), math.sin(heading)])))
        ref = np.concatenate(pts)
        ref = ref[np.r_[True, np.linalg.norm(np.diff(ref, axis=0), axis=1) > 1e-9]]  # angle 0: the arc is one point
        lanes, _, _ = _carriageway(ref, self.lanes, self.lanes_back, self.lane_width, self.speed_limit)
        return RoadMap("curved", lanes)


@dataclass(frozen=True)
class OnRampMerge:
    """Main road split in three sections (before, along, after the merge zone) and a ramp.

    Lanes: section k forward lane i is k*lanes + i; then the backward lanes; the ramp is last.
    The ramp runs alongside the merge zone as an acceleration lane and tapers into the rightmost
    lane after it (its successor, shared with that lane: traffic zips by distance to the end).
    """

    length: float = 400.0
    lanes: int = 2
    lanes_back: int = 2
    lane_width: float = 3.6
    speed_limit: float = 25.0
    merge_start: float = 180.0
    merge_length: float = 120.0
    ramp_length: float = 120.0
    RANGES: ClassVar[dict] = {**BASE_RANGES, "length": (100.0, 5000.0), "merge_start": (10.0, 4900.0),
                              "merge_length": (20.0, 1000.0), "ramp_length": (20.0, 1000.0)}

    def build(self) -> RoadMap:
        _check_lanes(self.lanes, "lanes")
        w, n = self.lane_width, self.lanes
        cuts = [0.0, self.merge_start, self.merge_start + self.merge_length, self.length]
        if not 0 < cuts[1] < cuts[2] < cuts[3]:
            raise MapError("on-ramp merge zone must lie inside the road")
        lanes: list[Lane] = []
        for k in range(3):
            ref = np.array([[cuts[k], 0.0], [cuts[k + 1], 0.0]])
            sec, _, _ = _carriageway(ref, n, 0, w, self.speed_limit, first=len(lanes))
            lanes += sec
        for k in range(2):
            for i in range(n):
                lanes[k * n + i].successors = [(k + 1) * n + i]
        back, _, _ = _carriageway(np.array([[0.0, 0.0], [self.length, 0.0]]), 0, self.lanes_back, w, self.speed_limit, first=len(lanes))
        lanes += back
        y_acc, y_right = -(n + 0.5) * w, -(n - 0.5) * w
        x0 = self.merge_start - self.ramp_length
        t = np.linspace(0, 1, 40)
        drop = 6 * w
        smooth = lambda u: 3 * u**2 - 2 * u**3
        approach = np.stack([x0 + t * self.ramp_length, y_acc - drop * (1 - smooth(t))], axis=1)
        taper = min(40.0, self.merge_length / 2)
        along = np.stack([np.linspace(self.merge_start, cuts[2] - taper, 20), np.full(20, y_acc)], axis=1)
        u = np.linspace(0, 1, 12)
        closing = np.stack([cuts[2] - taper + u * taper, y_acc + (y_right - y_acc) * smooth(u)], axis=1)
        ramp = Lane(np.concatenate([approach, along[1:], closing[1:]]), w, self.speed_limit * 0.8, kind="ramp",
                    successors=[2 * n + n - 1])  # the taper joins the rightmost lane after the merge zone
        ramp.left = n + n - 1  # rightmost lane of the merge section; not the other way: nobody moves onto the ramp
        lanes.append(ramp)
        return RoadMap("merge", lanes)


@dataclass(frozen=True)
class Intersection:
    """Four arms; each has `lanes_in` approach lanes (left-turn lane first, next to the median)
    and `lanes_out` exit lanes, connectors through the junction, and one signal group per arm.

    Lanes per arm a: approach lanes, then exit lanes; connectors come after all arms.
    """

    arm_length: float = 80.0
    lanes_in: int = 2
    lanes_out: int = 2
    lane_width: float = 3.5
    speed_limit: float = 13.9
    green: float = 10.0  # s of green per arm
    all_red: float = 2.0  # s between arms
    corner: float = 8.0  # m of junction beyond the widest arm: sets the turning radii
    RANGES: ClassVar[dict] = {"arm_length": (20.0, 300.0), "lanes_in": (2, 3), "lanes_out": (1, 3), "lane_width": LANE_WIDTH,
                              "speed_limit": SPEED_LIMIT, "green": (1.0, 120.0), "all_red": (0.0, 30.0),
                              "corner": (0.0, 50.0)}

    def build(self) -> RoadMap:
        if not 2 <= self.lanes_in <= 3 or not 1 <= self.lanes_out <= 3:
            raise MapError("intersection needs 2-3 approach lanes (a left-turn lane first) and 1-3 exit lanes")
        w = self.lane_width
        half = max(self.lanes_in, self.lanes_out) * w + self.corner
        lanes: list[Lane] = []
        approach, exits = [], []
        for a in range(4):
            phi = a * math.pi / 2
            u = np.array([math.cos(phi), math.sin(phi)])
            r_in = np.array([-u[1], u[0]])  # right of the inbound direction -u
            ins = []
            for i in range(self.lanes_in):
                off = (i + 0.5) * w * r_in
                p0, p1 = u * (half + self.arm_length) + off, u * half + off
                ins.append(len(lanes))
                lanes.append(Lane(np.stack([p0, p1]), w, self.speed_limit, kind="turn" if i == 0 else "lane"))
            outs = []
            for j in range(self.lanes_out):
                off = -(j + 0.5) * w * r_in
                outs.append(len(lanes))
                lanes.append(Lane(np.stack([u * half + off, u * (half + self.arm_length) + off]), w, self.speed_limit))
            for ids in (ins, outs):
                for k, gid in enumerate(ids):
                    lanes[gid].left = ids[k - 1] if k > 0 else -1
                    lanes[gid].right = ids[k + 1] if k + 1 < len(ids) else -1
            approach.append(ins)
            exits.append(outs)
        signal = {}
        for a in range(4):
            left_arm, straight_arm, right_arm = (a + 3) % 4, (a + 2) % 4, (a + 1) % 4
            moves = [(approach[a][0], exits[left_arm][0])]
            through = approach[a][1:] if self.lanes_in == 2 else approach[a][1:2]
            for lid in through:  # keep the lane's offset from the median where the exit has it
                moves.append((lid, exits[straight_arm][min(approach[a].index(lid), self.lanes_out - 1)]))
            moves.append((approach[a][-1], exits[right_arm][-1]))
            for src, dst in moves:
                lanes[src].successors.append(len(lanes))
                lanes.append(Lane(_bezier(lanes[src].centerline, lanes[dst].centerline), w, self.speed_limit * 0.7,
                                  successors=[dst], kind="connector"))
            for lid in approach[a]:
                signal[lid] = a
        box = Polygon([(-half, -half), (half, -half), (half, half), (-half, half)])
        return RoadMap("intersection", lanes, extra_drivable=[box], signal_group=signal,
                       signal_timing=(self.green, self.all_red))


def _bezier(into: np.ndarray, out_of: np.ndarray, n: int = 16) -> np.ndarray:
    """Cubic Bezier from the end of `into` to the start of `out_of`, tangent to both."""
    p0, p3 = into[-1], out_of[0]
    d0 = (into[-1] - into[-2]) / np.linalg.norm(into[-1] - into[-2])
    d3 = (out_of[1] - out_of[0]) / np.linalg.norm(out_of[1] - out_of[0])
    k = 0.45 * np.linalg.norm(p3 - p0)
    p1, p2 = p0 + d0 * k, p3 - d3 * k
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


MAP_TYPES = {"straight": StraightRoad, "curved": CurvedRoad, "merge": OnRampMerge, "intersection": Intersection}


def build_map(map_type: str, **params) -> RoadMap:
    """Build a procedural map; unknown types or parameters are errors that list what exists."""
    if map_type not in MAP_TYPES:
        raise MapError(f"unknown map type {map_type!r}; expected one of {sorted(MAP_TYPES)}")
    cls = MAP_TYPES[map_type]
    known = {f.name for f in fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise MapError(f"unknown parameter(s) {sorted(unknown)} for map type {map_type!r}; known: {sorted(known)}")
    for key, value in params.items():
        check_param(map_type, key, value)
    road = cls(**params).build()
    check_raster_size(road)
    return road


def param_range(map_type: str, key: str) -> tuple[float, float]:
    """The allowed [lo, hi] of a builder parameter (inclusive)."""
    return MAP_TYPES[map_type].RANGES[key]


def check_param(map_type: str, key: str, value) -> None:
    """MapError unless `value` is a finite number of the field's type inside its range."""
    lo, hi = param_range(map_type, key)
    integer = isinstance(lo, int)
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not lo <= value <= hi:
        raise MapError(f"map type {map_type!r}: {key} = {value!r}; allowed: {kind} in [{lo:g}, {hi:g}]")
