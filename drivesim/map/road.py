"""Road maps as plain geometry (numpy + shapely): lanes with links, and the drivable area.

A `RoadMap` is what builders and importers produce. `MapBank` (bank.py) turns a list of them
into the tensors the simulator queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.ops import unary_union

from drivesim.map.signals import LoggedSignals


MAX_LANE_WIDTH = 20.0  # m (a lane polygon of an importer may be wide; a NaN or a 1e9 is not a lane)
MAX_SPEED_LIMIT = 100.0  # m/s (360 km/h): a finite, positive limit is required; NaN or 0 would blame the policy


class MapError(ValueError):
    """A road map is malformed (bad geometry, dangling links)."""


@dataclass
class Lane:
    centerline: np.ndarray  # [P, 2] m, in driving direction
    width: float = 3.5  # m
    speed_limit: float = 13.9  # m/s
    successors: list[int] = field(default_factory=list)  # lane indices in the same map
    left: int = -1  # same-direction neighbour on the left (-1: none)
    right: int = -1
    kind: str = "lane"  # lane | ramp | turn | connector
    dead_end: bool = False  # the lane ends without successor inside the map: traffic must leave it
    z: np.ndarray | None = None  # [P] m height of each centerline point where the source has it (None: unknown)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.centerline, axis=0), axis=1).sum())

    def polygon(self) -> Polygon:
        return LineString(self.centerline).buffer(self.width / 2, cap_style="flat", join_style="round")


@dataclass
class RoadMap:
    name: str
    lanes: list[Lane]
    drivable: Polygon | MultiPolygon | None = None  # defaults to the union of lane polygons
    extra_drivable: list[Polygon] = field(default_factory=list)  # e.g. junction boxes
    signal_group: dict[int, int] = field(default_factory=dict)  # lane -> group; the lane ends at a stop line
    signal_timing: tuple[float, float] | None = None  # (green s, all-red s); groups get green in turn
    signal_log: LoggedSignals | None = None  # logged per-step states (groups = its signals); replaces the cycle

    def signal_green(self, group: int, t: float) -> bool:
        """Is `group` green (not red) at time t? Logged signals: the logged state of that step.
        Cyclic: groups 0..G-1 take turns: green, then all-red."""
        if self.signal_log is not None:
            return not self.signal_log.red(group, t)
        green, red = self.signal_timing
        groups = max(self.signal_group.values()) + 1
        phase = t % (groups * (green + red))
        return int(phase // (green + red)) == group and phase % (green + red) < green

    def __post_init__(self):
        self.validate_lanes()
        if self.drivable is None:
            # a small grow-and-shrink closes the floating-point slivers between adjacent lanes
            parts = [lane.polygon().buffer(0.05) for lane in self.lanes] + [p.buffer(0.05) for p in self.extra_drivable]
            self.drivable = unary_union(parts).buffer(-0.05)
        self.validate()

    def validate(self) -> None:
        self.validate_lanes()
        if self.drivable.is_empty or not self.drivable.is_valid:
            reason = shapely.is_valid_reason(self.drivable)
            raise MapError(f"map {self.name!r}: drivable area is empty or invalid ({reason})")
        if self.signal_group and self.signal_timing is None and self.signal_log is None:
            raise MapError(f"map {self.name!r}: signal groups need signal_timing (green s, all-red s) or a signal_log")
        if self.signal_log is not None:
            G, n = self.signal_log.num_signals, len(self.lanes)
            if any(not 0 <= g < G for g in self.signal_group.values()) or any(not 0 <= l < n for l in self.signal_log.lane):
                raise MapError(f"map {self.name!r}: signal groups must index the {G} logged signals, their lanes the {n} lanes")

    def validate_lanes(self) -> None:
        if not self.lanes:
            raise MapError(f"map {self.name!r} has no lanes")
        n = len(self.lanes)
        for i, lane in enumerate(self.lanes):
            cl = np.asarray(lane.centerline, dtype=float)
            if cl.ndim != 2 or cl.shape[1] != 2 or cl.shape[0] < 2:
                raise MapError(f"map {self.name!r} lane {i}: centerline must be [P>=2, 2], got {cl.shape}")
            if not np.isfinite(cl).all():
                raise MapError(f"map {self.name!r} lane {i}: centerline has non-finite points")
            if lane.length < 0.5:
                raise MapError(f"map {self.name!r} lane {i}: shorter than 0.5 m")
            if not 0 < lane.width <= MAX_LANE_WIDTH:
                raise MapError(f"map {self.name!r} lane {i}: field 'width' is {lane.width}; allowed: 0 < width <= {MAX_LANE_WIDTH:g} m")
            if not 0 < lane.speed_limit <= MAX_SPEED_LIMIT:
                raise MapError(f"map {self.name!r} lane {i}: field 'speed_limit' is {lane.speed_limit}; "
                               f"allowed: 0 < speed_limit <= {MAX_SPEED_LIMIT:g} m/s")
            if lane.z is not None and (np.shape(lane.z) != (cl.shape[0],) or not np.isfinite(lane.z).all()):
                raise MapError(f"map {self.name!r} lane {i}: z must be [{cl.shape[0]}] finite heights, got {np.shape(lane.z)}")
            for link in [*lane.successors, lane.left, lane.right]:
                if link != -1 and not 0 <= link < n:
                    raise MapError(f"map {self.name!r} lane {i}: link to missing lane {link}")


# m: lanes whose heights differ by more than this at a joint or crossing are on different levels.
# A bridge clears at least 4.3-4.9 m (AASHTO, US; 4.5-4.7 m in Europe); a 1.5 m joint gap at a 10 %
# grade climbs 0.15 m, so 2 m separates levels without splitting one road on a slope.
MAX_HEIGHT_GAP = 2.0


def z_at(lane: Lane, k: int) -> float:
    """Height of centerline point k (NaN without z)."""
    return float(np.asarray(lane.z, float)[k]) if lane.z is not None else np.nan


def z_along(lane: Lane, xy: np.ndarray) -> float:
    """Height of the lane where xy projects on its centerline, linear along the segment (NaN without z)."""
    if lane.z is None:
        return np.nan
    p, z = np.asarray(lane.centerline, float), np.asarray(lane.z, float)
    a, ab = p[:-1], np.diff(p, axis=0)
    t = np.clip(((xy - a) * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0.0, 1.0)  # [S]
    k = int(np.linalg.norm(a + t[:, None] * ab - xy, axis=1).argmin())
    return float(z[k] + t[k] * (z[k + 1] - z[k]))


def same_level(z_a, z_b, max_gap: float = MAX_HEIGHT_GAP):
    """True where two heights are within max_gap, or where either is unknown (NaN)."""
    z_a, z_b = np.asarray(z_a, float), np.asarray(z_b, float)
    return ~(np.abs(z_a - z_b) > max_gap)  # NaN compares False: unknown heights never split
