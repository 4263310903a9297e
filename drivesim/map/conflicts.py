"""Lane conflicts of a map, found once when the map bank is built: where lanes cross or merge,
and which lanes end with no way on.

A conflict zone is where two lanes that are not one after the other (successor links, or an
end that meets a start) nor side by side (left/right neighbours) come so close that vehicles on
them would touch: centrelines that cross (junction connectors), lanes that merge, lanes that
pass close in a junction. Each lane keeps up to `MAX_CONFLICTS` zones, nearest its start first,
as rows of padded tables with global lane ids, so that the reactive agents
(traffic/yielding.py) look them up with tensor gathers only.

A lane ends in a *stub* when it has no successor and other lanes lie ahead of its end (a
T-junction or a road whose connectors the source left out): traffic must stop there. A lane
with no successor and nothing ahead leaves the map at its border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString

from drivesim.map.road import Lane, same_level, z_along

MAX_CONFLICTS = 16  # per lane; the nearest to the lane start are kept
CONFLICT_DIST = 2.5  # m: centrelines closer than this carry vehicles whose bodies overlap (two ~2 m wide cars)
JOIN_GAP = 1.0  # m: an end and a start this close are one lane after the other, not a conflict
SAMPLE = 1.0  # m between the lane points tested
STUB_AHEAD = 25.0  # m: a lane without successor is a stub if another lane comes within this of its end, ahead
STUB_CONE = np.radians(45.0)  # ... inside this half-angle of its heading


@dataclass
class ConflictTable:
    """Per lane (rows: global lane ids) its conflict zones, -1 / 0 padded; all numpy."""

    other: np.ndarray  # [NL, K] int64 global id of the other lane (-1: none)
    zone: np.ndarray  # [NL, K, 4] arc lengths: zone entry and exit on this lane, entry and exit on the other
    stub: np.ndarray  # [NL] bool: no successor, other lanes ahead of the end: traffic stops at the end


def _heading_at(line: LineString, s: float) -> np.ndarray:
    a, b = line.interpolate(max(s - 0.5, 0.0)), line.interpolate(min(s + 0.5, line.length))
    d = np.array([b.x - a.x, b.y - a.y])
    return d / max(float(np.linalg.norm(d)), 1e-9)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1))


def map_conflicts(lanes: list[Lane]) -> tuple[list[list[tuple]], np.ndarray]:
    """Conflict zones of one map (local lane ids): per lane a sorted list of
    (s_in, s_out, other, s_in_other, s_out_other), and the stub flags [L].

    A zone is a stretch of a lane whose points lie within CONFLICT_DIST of another lane's
    centreline (a crossing, a merge, or lanes that pass close in a junction), with the stretch of
    the other lane it faces; lane pairs one after the other or side by side are left out, and so
    is the shared start of two lanes that leave from one point, and lanes at different heights
    (a bridge over the road it crosses: map/linking.same_level)."""
    lines = [LineString(np.asarray(l.centerline, float)) for l in lanes]
    s_pts = [np.append(np.arange(0.0, line.length, SAMPLE), line.length) for line in lines]
    pts = [shapely.get_coordinates(shapely.line_interpolate_point(line, s)) for line, s in zip(lines, s_pts)]
    starts = np.array([p[0] for p in pts])
    tree = shapely.STRtree(lines)
    out: list[list[tuple]] = [[] for _ in lanes]
    qi, qj = tree.query(lines, predicate="dwithin", distance=CONFLICT_DIST)
    for i, j in zip(qi.tolist(), qj.tolist()):
        if j <= i or _linked(lanes, i, j):
            continue
        same_start = float(np.linalg.norm(starts[i] - starts[j])) < JOIN_GAP
        geo = shapely.points(pts[i])
        close = shapely.distance(geo, lines[j]) < CONFLICT_DIST
        on_j = shapely.line_locate_point(lines[j], geo)
        for a, b in _runs(close):
            lo_j, hi_j = float(on_j[a : b + 1].min()), float(on_j[a : b + 1].max())
            if same_start and a == 0 and lo_j < JOIN_GAP:
                continue  # both leave from one point: they diverge, they do not cross
            if _continues(lanes, lines, i, j, s_pts[i][a], s_pts[i][b], lo_j, hi_j):
                continue
            mid = pts[i][(a + b) // 2]
            if not same_level(z_along(lanes[i], mid), z_along(lanes[j], mid)):
                continue  # an overpass over the road below (map.road.MAX_HEIGHT_GAP)
            out[i].append((float(s_pts[i][a]), float(s_pts[i][b]), j, lo_j, hi_j))
            out[j].append((lo_j, hi_j, i, float(s_pts[i][a]), float(s_pts[i][b])))
    for row in out:
        row.sort()
    return out, _stubs(lanes, lines, pts)


def _continues(lanes, lines, i, j, lo_i, hi_i, lo_j, hi_j) -> bool:
    """The zone is only where the end of one lane meets the start of the other (unlinked chain)."""
    end_i_start_j = hi_i > lines[i].length - CONFLICT_DIST - SAMPLE and lo_j < CONFLICT_DIST + SAMPLE
    end_j_start_i = hi_j > lines[j].length - CONFLICT_DIST - SAMPLE and lo_i < CONFLICT_DIST + SAMPLE
    short = max(hi_i - lo_i, hi_j - lo_j) < 2 * CONFLICT_DIST + SAMPLE
    return short and (end_i_start_j or end_j_start_i)


def _linked(lanes: list[Lane], i: int, j: int) -> bool:
    a, b = lanes[i], lanes[j]
    return j in a.successors or i in b.successors or j in (a.left, a.right) or i in (b.left, b.right)


def _stubs(lanes: list[Lane], lines: list[LineString], pts: list[np.ndarray]) -> np.ndarray:
    """[L] bool: lanes without successor with another lane's points (pts, SAMPLE apart) ahead of their end."""
    stub = np.zeros(len(lanes), bool)
    ends = np.array([p[-1] for p in pts])
    for i, lane in enumerate(lanes):
        if lane.successors:
            continue
        head = _heading_at(lines[i], lines[i].length)
        for j, p in enumerate(pts):
            if j == i or j in (lane.left, lane.right):
                continue
            rel = p - ends[i]
            dist = np.linalg.norm(rel, axis=1)
            along = rel @ head
            ahead = (dist > 1.0) & (dist < STUB_AHEAD) & (along > np.cos(STUB_CONE) * dist)
            if ahead.any():
                stub[i] = True
                break
    return stub


def build_conflicts(maps) -> ConflictTable:
    """ConflictTable of all maps of a bank (global lane ids in the order of MapBank)."""
    per_lane, stubs, off = [], [], 0
    for m in maps:
        rows, stub = map_conflicts(m.lanes)
        per_lane += [[(a, b, off + o, c, d) for a, b, o, c, d in r[:MAX_CONFLICTS]] for r in rows]
        stubs.append(stub)
        off += len(m.lanes)
    K = max([len(r) for r in per_lane] + [0])  # 0: no conflicts anywhere, yielding costs nothing
    other = -np.ones((len(per_lane), K), np.int64)
    zone = np.zeros((len(per_lane), K, 4))
    for i, r in enumerate(per_lane):
        for k, (a, b, o, c, d) in enumerate(r):
            other[i, k], zone[i, k] = o, (a, b, c, d)
    return ConflictTable(other, zone, np.concatenate(stubs) if stubs else np.zeros(0, bool))
