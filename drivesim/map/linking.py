"""Lane connectivity from geometry, and map-matching of a logged path to a lane route.

Real maps often lack links (ScenarioNet's nuScenes lanes carry none). `infer_links` adds
successors (an end meets a start, headings agree) and same-direction left/right neighbours
(side by side, about a lane width apart); `route_from_path` turns a logged ego path into a lane
sequence that follows successors, as `Scenario.route` requires (the lanes that cross or merge
are found in map/conflicts.py, with the same height test).

Heights: where lanes carry z (`Lane.z`: WOMD, Waymo ScenarioNet, AV2), ends are joined, lanes are
neighbours and crossings are conflicts only when their heights at that point differ by less than
`MAX_HEIGHT_GAP`, so an overpass is neither linked to the road under it nor in conflict with it.
Without z on either lane the test passes (flat maps: nuScenes, CommonRoad).
"""

from __future__ import annotations

import numpy as np

from drivesim.map.bank import resample_polyline
from drivesim.map.road import MAX_HEIGHT_GAP, Lane, same_level, z_along, z_at

def _heading(p: np.ndarray) -> float:
    d = p[-1] - p[-2] if len(p) > 1 else np.array([1.0, 0.0])
    return float(np.arctan2(d[1], d[0]))


def _angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


def count_links(lanes: list[Lane]) -> dict[str, int]:
    """How many successor, left and right links the lanes carry."""
    return {"successors": sum(len(l.successors) for l in lanes),
            "left": sum(l.left >= 0 for l in lanes), "right": sum(l.right >= 0 for l in lanes)}


def infer_links(lanes: list[Lane], max_gap: float = 1.5, max_angle: float = np.radians(35), overwrite: bool = False,
                max_height_gap: float = MAX_HEIGHT_GAP) -> dict[str, int]:
    """Fill `successors`, `left` and `right` of lanes from their geometry (in place): an end meets
    a start (within max_gap m, headings within max_angle, heights within max_height_gap where both
    lanes have z). Existing links are kept unless `overwrite`. Returns the change in link counts
    (`count_links`)."""
    before = count_links(lanes)
    starts = np.array([l.centerline[0] for l in lanes])
    ends = np.array([l.centerline[-1] for l in lanes])
    h_start = np.array([np.arctan2(*(l.centerline[1] - l.centerline[0])[::-1]) for l in lanes])
    h_end = np.array([_heading(l.centerline) for l in lanes])
    gap = np.linalg.norm(ends[:, None] - starts[None], axis=-1)  # [i, j]: end of i to start of j
    ok = (gap < max_gap) & (_angle_diff(h_end[:, None], h_start[None]) < max_angle)
    z_end, z_start = np.array([z_at(l, -1) for l in lanes]), np.array([z_at(l, 0) for l in lanes])
    ok &= same_level(z_end[:, None], z_start[None], max_height_gap)
    np.fill_diagonal(ok, False)
    for i, lane in enumerate(lanes):
        if overwrite or not lane.successors:
            lane.successors = [int(j) for j in np.nonzero(ok[i])[0]]
    _infer_neighbours(lanes, overwrite, max_height_gap)
    return {k: v - before[k] for k, v in count_links(lanes).items()}


def _infer_neighbours(lanes: list[Lane], overwrite: bool, max_height_gap: float = MAX_HEIGHT_GAP) -> None:
    mids, heads, zs = [], [], []
    for l in lanes:
        p = resample_polyline(np.asarray(l.centerline, float), 1.0)
        k = len(p) // 2
        mids.append(p[k])
        zs.append(z_along(l, p[k]))
        heads.append(np.arctan2(*(p[min(k + 1, len(p) - 1)] - p[max(k - 1, 0)])[::-1]))
    mids, heads = np.array(mids), np.array(heads)
    width = np.array([l.width for l in lanes])
    rel = mids[None] - mids[:, None]  # [i, j]: j's middle seen from i's middle
    c, s = np.cos(heads)[:, None], np.sin(heads)[:, None]
    lon, lat = rel[..., 0] * c + rel[..., 1] * s, rel[..., 1] * c - rel[..., 0] * s
    want = 0.5 * (width[:, None] + width[None])
    beside = (np.abs(np.abs(lat) - want) < 0.35 * want) & (np.abs(lon) < 0.5 * np.maximum(want, 5.0))
    beside &= _angle_diff(heads[:, None], heads[None]) < np.radians(20)
    beside &= same_level(np.array(zs)[:, None], np.array(zs)[None], max_height_gap)  # stacked roadways
    np.fill_diagonal(beside, False)
    score = np.where(beside, np.abs(lat) + np.abs(lon), np.inf)
    for i, lane in enumerate(lanes):
        for side, sign in (("left", 1), ("right", -1)):
            cand = np.where(np.sign(lat[i]) == sign, score[i], np.inf)
            j = int(np.argmin(cand))
            if np.isfinite(cand[j]) and (overwrite or getattr(lane, side) < 0):
                setattr(lane, side, j)


def _nearest_lane(lanes: list[Lane], xy: np.ndarray, yaw: np.ndarray, heading_weight: float = 4.0) -> np.ndarray:
    """Best lane index for each pose [N]: distance to the centreline plus a heading penalty."""
    best = np.full(len(xy), -1)
    best_score = np.full(len(xy), np.inf)
    for i, lane in enumerate(lanes):
        p = np.asarray(lane.centerline, float)
        a, b = p[:-1], p[1:]
        ab = b - a
        L2 = np.maximum((ab**2).sum(-1), 1e-9)
        t = np.clip(((xy[:, None] - a[None]) * ab[None]).sum(-1) / L2[None], 0, 1)  # [N, S]
        foot = a[None] + t[..., None] * ab[None]
        dist = np.linalg.norm(xy[:, None] - foot, axis=-1)
        k = dist.argmin(axis=1)
        seg_yaw = np.arctan2(ab[k, 1], ab[k, 0])
        score = np.maximum(dist[np.arange(len(xy)), k] - 0.5 * lane.width, 0) + 0.1 * dist[np.arange(len(xy)), k]
        score = score + heading_weight * _angle_diff(yaw, seg_yaw)
        better = score < best_score
        best[better], best_score[better] = i, score[better]
    return best


def route_from_path(lanes: list[Lane], xy: np.ndarray, yaw: np.ndarray) -> list[int]:
    """A lane sequence along successors that covers a logged path (xy [T, 2], yaw [T]).

    Starts from the lane under the last pose and walks back through predecessors, preferring the
    lanes the path visited, until the path's first pose is covered; lane changes in the log end up
    on the final lane's chain. Raises ValueError if no lane lies under the path."""
    matched = _nearest_lane(lanes, xy, yaw)
    if (matched < 0).all():
        raise ValueError("no lane lies under the logged path")
    visited = {int(m) for m in matched if m >= 0}
    preds: dict[int, list[int]] = {}
    for i, l in enumerate(lanes):
        for j in l.successors:
            preds.setdefault(j, []).append(i)
    route = [int(matched[-1])]
    start = xy[0]
    for _ in range(len(lanes)):
        first = np.asarray(lanes[route[0]].centerline, float)
        if _covers(first, start) or route[0] not in preds:
            break
        options = [p for p in preds[route[0]] if p not in route]
        if not options:
            break
        options.sort(key=lambda p: (p not in visited, np.linalg.norm(np.asarray(lanes[p].centerline)[0] - start)))
        route.insert(0, options[0])
    return route


def _covers(line: np.ndarray, point: np.ndarray) -> bool:
    """Does the start of the polyline lie behind (or at) the point along the polyline?"""
    d = line[1] - line[0]
    return float(np.dot(point - line[0], d)) >= 0.0


def apply_source_links(lanes: list[Lane], exits, entries, lefts, rights) -> int:
    """Links a source lists (WOMD / ScenarioNet), per lane i as lane indices: successors from its
    exit lanes and from the lanes listing it as an entry; left/right from the first listed
    neighbour that lies on that side with the same direction (within 30 deg). Returns the count."""
    poses = [_mid_pose(l.centerline) for l in lanes]
    n = 0
    for i in range(len(lanes)):
        lanes[i].successors += list(exits[i])
        for j in entries[i]:
            lanes[j].successors.append(i)
        p, h = poses[i]
        for side, sign, listed in (("left", 1, lefts[i]), ("right", -1, rights[i])):
            for j in (j for j in listed if j != i):
                rel = poses[j][0] - p
                lat = rel[1] * np.cos(h) - rel[0] * np.sin(h)
                if abs((poses[j][1] - h + np.pi) % (2 * np.pi) - np.pi) < np.radians(30) and np.sign(lat) == sign:
                    setattr(lanes[i], side, j)
                    n += 1
                    break
    for i, lane in enumerate(lanes):
        lane.successors = sorted(set(lane.successors) - {i})
        n += len(lane.successors)
    return n


def cap_successors(lanes: list[Lane], max_successors: int) -> int:
    """At most `max_successors` (the MapBank limit) per lane, the closest joints first; returns
    how many lanes were capped."""
    capped = 0
    for lane in lanes:
        if len(lane.successors) > max_successors:
            gap = [np.linalg.norm(lanes[j].centerline[0] - lane.centerline[-1]) for j in lane.successors]
            lane.successors = [lane.successors[k] for k in np.argsort(gap, kind="stable")[:max_successors]]
            capped += 1
    return capped


def _mid_pose(cl: np.ndarray) -> tuple[np.ndarray, float]:
    k = len(cl) // 2
    d = cl[min(k + 1, len(cl) - 1)] - cl[max(k - 1, 0)]
    return cl[k], float(np.arctan2(d[1], d[0]))
