"""A synthetic cutter for real scenes where no logged vehicle can cut in.

On most logged scenes no recorded vehicle is ever in a lane beside the ego's route, ahead of it
and slower (on the 8 shared nuScenes scenes only 2 have one). Where the map has such a lane (a
same-direction neighbour, or a junction connector running beside the route), a car is inserted
into it: a new agent, sized and typed like a car, whose "log" drives along that lane at a
constant speed (a fraction `slow_to` of the no-reaction ego's speed) from the step it appears,
timed so that the ego planned against (constant speed along its route) comes up behind it while
it is beside the route. It appears only where its box, for the whole of its track, stays clear
of every logged agent. From then on it is an ordinary candidate of events/real.py: the
cut-in script, trigger and labels are the same as for a logged cutter.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from drivesim.events.common import project
from drivesim.core.scenario import Scenario, route_polyline
from drivesim.map.bank import resample_polyline
from drivesim.core.types import AgentType, ControlMode

CAR_LENGTH, CAR_WIDTH = 4.6, 1.9  # m, a mid-size car
MIN_EGO_SPEED = 2.0  # m/s: a slower (or stopped) no-reaction ego meets no cut-in
LEAD = 2.5  # s of closing, beyond the target TTC and the lane change, between its appearance and the trigger
MIN_STEP = 10  # the earliest step it may appear at (candidates start there)


def _arc(c: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])


def _points(lane) -> np.ndarray:
    """[P, 2] the lane's centreline every 2 m (a straight lane may have only its two ends)."""
    return resample_polyline(np.asarray(lane.centerline, float), 2.0)


def _route_half_width(scene: Scenario, s: np.ndarray) -> np.ndarray:
    """[N] half the width of the route lane at arc lengths s [N] along the route."""
    ends = np.cumsum([scene.road.lanes[r].length for r in scene.route])
    k = np.minimum(np.searchsorted(ends, s), len(ends) - 1)
    return np.array([scene.road.lanes[scene.route[j]].width for j in k]) / 2


def outside_route_lane(scene: Scenario, poly: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """[N] a car centred at xy [N, 2] along the route keeps its box out of the route lane (0.2 m clear)."""
    s, d, _ = project(poly, xy)
    return np.abs(d) - CAR_WIDTH / 2 > _route_half_width(scene, s) + 0.2


def _stays_beside(scene: Scenario, poly: np.ndarray, track: np.ndarray, lane_width: float, max_heading: float) -> bool:
    """A car on `track` [n, 4] stays beside the route all along: clear of the route lane, at most
    1.5 lane widths off it, moving within `max_heading` rad of its direction."""
    _, d, h = project(poly, track[:, :2])
    return bool((outside_route_lane(scene, poly, track[:, :2]) & (np.abs(d) < 1.5 * lane_width)
                 & (np.abs(np.angle(np.exp(1j * (track[:, 2] - h)))) < max_heading)).all())


def adjacent_points(scene: Scenario, max_heading: float) -> list[tuple[int, np.ndarray]]:
    """(lane, mask [P]) per non-route lane: its centreline points that lie beside the route (0.6 to
    1.5 lane widths off it, a car there clear of the route lane, moving within `max_heading` rad
    of its direction, inside its length)."""
    poly = route_polyline(scene)
    total = float(_arc(poly)[-1])
    out = []
    for i, lane in enumerate(scene.road.lanes):
        if i in scene.route or len(lane.centerline) < 2:
            continue
        c = _points(lane)
        s, d, h = project(poly, c)
        heading = np.arctan2(np.gradient(c[:, 1]), np.gradient(c[:, 0]))
        ok = ((np.abs(np.angle(np.exp(1j * (heading - h)))) < max_heading) & (0.6 * lane.width < np.abs(d))
              & (np.abs(d) < 1.5 * lane.width) & (s > 1.0) & (s < total - 1.0) & outside_route_lane(scene, poly, c))
        if ok.sum() >= 2:
            out.append((i, ok))
    return out


def _track(c: np.ndarray, u0: float, v: float, n: int, dt: float) -> np.ndarray:
    """[n, 4] x, y, yaw, speed along polyline c from arc length u0 at speed v (straight on past its end)."""
    u = _arc(c)
    ext = np.concatenate([c, c[-1:] + (c[-1] - c[-2]) / max(np.linalg.norm(c[-1] - c[-2]), 1e-6) * 1e4])
    ue = np.concatenate([u, [u[-1] + 1e4]])
    q = u0 + v * dt * np.arange(n)
    x, y = np.interp(q, ue, ext[:, 0]), np.interp(q, ue, ext[:, 1])
    k = np.clip(np.searchsorted(ue, q, side="right") - 1, 0, len(ext) - 2)
    yaw = np.arctan2(ext[k + 1, 1] - ext[k, 1], ext[k + 1, 0] - ext[k, 0])
    return np.stack([x, y, yaw, np.full(n, v)], -1)


def _clear(scene: Scenario, track: np.ndarray, t0: int, margin: float = 0.3) -> bool:
    """The inserted box (track [n, 4] from step t0) keeps `margin` m clear of every logged
    non-ego agent's box, tested on the inserted car's own axes (a separating-axis test on half
    the axes: it may call two boxes touching that are not, never the other way)."""
    n = len(track)
    log, ok = scene.log[1:, t0 : t0 + n], scene.log_valid[1:, t0 : t0 + n]  # [A-1, n, 4]
    c, s = np.cos(track[:, 2]), np.sin(track[:, 2])  # [n]
    dx, dy = log[..., 0] - track[None, :, 0], log[..., 1] - track[None, :, 1]
    along, across = np.abs(dx * c + dy * s), np.abs(-dx * s + dy * c)  # [A-1, n] in the car's frame
    rel = log[..., 2] - track[None, :, 2]
    L, W = scene.length[1:, None] / 2, scene.width[1:, None] / 2
    ext_along = np.abs(np.cos(rel)) * L + np.abs(np.sin(rel)) * W
    ext_across = np.abs(np.sin(rel)) * L + np.abs(np.cos(rel)) * W
    touch = (along < CAR_LENGTH / 2 + ext_along + margin) & (across < CAR_WIDTH / 2 + ext_across + margin)
    return not bool((ok & touch).any())


def insert_cutter(scene: Scenario, slow_to: float, ttc: float, lat_speed: float, after: float,
                  max_heading: float, rng: np.random.Generator) -> Scenario | None:
    """`scene` with a car appended (its last agent) in a lane beside the route, or None when the
    map has no such lane the no-reaction ego reaches in time, or none with a free place."""
    if scene.log is None or scene.log_valid is None or not scene.log_valid[0, 0]:
        return None
    T, dt = scene.log.shape[1] - 1, scene.dt
    poly = route_polyline(scene)
    s_e, d_e, h_e = project(poly, scene.log[0, :1, :2])
    v_e = float(scene.log[0, 0, 3] * math.cos(scene.log[0, 0, 2] - h_e[0]))  # the no-reaction ego's speed along the route
    v_c = slow_to * v_e
    if v_e < MIN_EGO_SPEED or v_c < 1.0 or abs(d_e[0]) > scene.road.lanes[scene.route[0]].width / 2:
        return None  # too slow to meet a cut-in, or not in its route lane (the lane beside it may be its own)
    dv = v_e - v_c
    last = T - int(round(after / dt))
    adjacent = adjacent_points(scene, max_heading)
    for j in rng.permutation(len(adjacent)):
        i, ok = adjacent[j]
        lane = scene.road.lanes[i]
        c = _points(lane)
        u = _arc(c)
        s, d, _ = project(poly, c)
        for k in np.flatnonzero(ok):  # the first point beside the route that works
            lateral = max(abs(d[k]) - lane.width / 2 - CAR_WIDTH / 2, 0.0) / lat_speed + 0.3  # s to the lane line
            ahead = (ttc + lateral + LEAD) * dv + (CAR_LENGTH + scene.length[0]) / 2  # m ahead of the ego when it appears
            t0 = int(math.ceil((s[k] - ahead - s_e[0]) / v_e / dt))
            if t0 < MIN_STEP:
                continue  # the ego is too close already: try further along
            if t0 + int(math.ceil((ttc + lateral + LEAD + 1.0) / dt)) > last:
                break  # the ego reaches it too late
            track = _track(c, float(u[k]), v_c, T + 1 - t0, dt)
            if not _stays_beside(scene, poly, track[: int(round((LEAD + lateral) / dt))], lane.width, max_heading):
                continue  # its lane runs into the route, or away from it, before the cut-in would be done
            if _clear(scene, track[: int(round((lateral + LEAD + 0.5) / dt))], t0):  # up to the crossing, on its own lane
                return _append(scene, track, t0, i)
    return None


def no_place(scene: Scenario, max_heading: float) -> str:
    """Why a car cannot be inserted into `scene` whatever the knobs, or, where it might, that the
    lanes beside the route were taken or out of reach for the knobs tried."""
    if scene.log is None or scene.log_valid is None or not scene.log_valid[0, 0]:
        return "no logged ego at its first step"
    s_e, d_e, h_e = project(route_polyline(scene), scene.log[0, :1, :2])
    v_e = float(scene.log[0, 0, 3] * math.cos(scene.log[0, 0, 2] - h_e[0]))
    if v_e < MIN_EGO_SPEED:
        return f"the ego starts at {v_e:.1f} m/s along its route (a no-reaction ego under {MIN_EGO_SPEED:g} m/s meets no cut-in)"
    half = scene.road.lanes[scene.route[0]].width / 2
    if abs(d_e[0]) > half:
        return f"the logged ego starts {abs(d_e[0]):.1f} m off its route lane's centre (outside the lane)"
    if not adjacent_points(scene, max_heading):
        return "no lane beside the ego's route in its direction"
    return "the lanes beside the route are taken by logged agents, or out of the ego's reach, for the knobs tried"


def _append(scene: Scenario, track: np.ndarray, t0: int, lane: int) -> Scenario:
    out = copy.copy(scene)
    A, T1 = scene.num_agents, scene.log.shape[1]
    log = np.zeros((1, T1, 4))
    log[0, t0:] = track
    log[0, :t0] = track[0]
    valid = np.zeros((1, T1), bool)
    valid[0, t0:] = True
    out.log, out.log_valid = np.concatenate([scene.log, log]), np.concatenate([scene.log_valid, valid])
    first = dict(x=track[0, 0], y=track[0, 1], yaw=track[0, 2], speed=track[0, 3], length=CAR_LENGTH, width=CAR_WIDTH,
                 agent_type=int(AgentType.VEHICLE), mode=int(ControlMode.REPLAY), desired_speed=track[0, 3])
    for f, v in first.items():
        old = np.asarray(getattr(scene, f))
        setattr(out, f, np.concatenate([old, np.asarray([v], dtype=old.dtype)]))
    for f, empty in (("script_accel", np.nan), ("script_lane", -1), ("script_lat_speed", np.nan)):
        table = getattr(scene, f)
        if table is not None:
            setattr(out, f, np.concatenate([table, np.full((1, table.shape[1]), empty, dtype=table.dtype)]))
    out.meta = {**scene.meta, "inserted_cutter": {"agent": A, "lane": int(lane), "appears": int(t0),
                                                   "speed": float(track[0, 3]), "length": CAR_LENGTH, "width": CAR_WIDTH}}
    return out
