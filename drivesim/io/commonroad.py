"""CommonRoad scenario XML -> `Scenario`, read with commonroad-io (one scenario per file).

Choices (all recorded in `Scenario.meta`):
- The ego: a CommonRoad benchmark has a planning problem, not a logged ego. The ego is the
  dynamic vehicle obstacle (a type that maps to VEHICLE) present at the first time step whose
  trajectory is longest; ties go to the
  one starting nearest the planning problem's initial position, then to the lowest id
  (meta['ego_obstacle_id']). It is taken out of the agent list and becomes agent 0.
- Lanelets -> lanes: centre vertices, width = mean distance between left and right vertices,
  successors, and adjacent left/right only where the source marks them same-direction; missing
  links are then inferred from geometry. Lanelets that an intersection lists as outgoing
  (turning) lanelets are kind 'connector'. Speed limit: the lanelet's MAX_SPEED traffic sign,
  else one inherited from a predecessor, else 13.9 m/s (urban default). Traffic lights are not
  modelled (counted in meta).
- Drivable area = union of the lanelet polygons (grown and shrunk by 5 cm to close slivers).
- Agents: dynamic obstacles with their trajectory states (the initial state at its time step)
  and static obstacles (valid at every step, speed 0). Sizes come from each obstacle's shape
  (rectangle; circle -> diameter; polygon -> its oriented bounding box), boxes are centred
  (a shape's origin_x_shift is undone).
  Obstacle types map through `CR_TYPES`; environment obstacles (buildings, ...) and phantom
  obstacles are map context, not agents: they are only counted. A time step other than 0.1 s is
  resampled to 0.1 s by linear interpolation.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode
from drivesim.io.errors import ImportDataError, load_each
from drivesim.map.drivable_area import drivable_area_parts
from drivesim.map.linking import count_links, infer_links, route_from_path
from drivesim.map.road import Lane, RoadMap

DT = 0.1  # s: drivesim's log rate
DEFAULT_SPEED_LIMIT = 13.9  # m/s, urban default where the source gives none

# CommonRoad ObstacleType name -> (AgentType, default length m, default width m); defaults are
# used only when the obstacle's shape gives no positive size
CR_TYPES: dict[str, tuple[AgentType, float, float]] = {
    "CAR": (AgentType.VEHICLE, 4.5, 1.9),
    "TAXI": (AgentType.VEHICLE, 4.5, 1.9),
    "PRIORITY_VEHICLE": (AgentType.VEHICLE, 5.0, 2.0),
    "TRUCK": (AgentType.VEHICLE, 10.0, 2.5),
    "BUS": (AgentType.VEHICLE, 12.0, 2.6),
    "TRAIN": (AgentType.VEHICLE, 30.0, 3.0),
    "UNKNOWN": (AgentType.VEHICLE, 4.5, 1.9),  # CommonRoad's benchmark obstacles of unknown type are road users
    "BICYCLE": (AgentType.CYCLIST, 2.0, 0.7),
    "MOTORCYCLE": (AgentType.CYCLIST, 2.0, 0.7),
    "PEDESTRIAN": (AgentType.PEDESTRIAN, 0.7, 0.7),
    "PARKED_VEHICLE": (AgentType.STATIC, 4.5, 1.9),
    "CONSTRUCTION_ZONE": (AgentType.STATIC, 1.0, 1.0),
    "PILLAR": (AgentType.STATIC, 1.0, 1.0),
    "ROAD_BOUNDARY": (AgentType.STATIC, 1.0, 1.0),
    "MEDIAN_STRIP": (AgentType.STATIC, 1.0, 1.0),
    "BUILDING": (AgentType.STATIC, 1.0, 1.0),
}

def load(path) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) from one CommonRoad .xml file or every .xml file under a directory.

    A bad file in a directory is an error line and skipped; ImportDataError is raised only when
    nothing could be loaded (or for a single file)."""
    path = Path(path)
    if path.is_file():
        return [load_scenario(path)], []
    if not path.is_dir():
        raise ImportDataError(f"{path}: no such file or directory")
    return load_each(path, sorted(path.rglob("*.xml")), load_scenario, ".xml file")


def _read(file: Path):
    from commonroad.common.file_reader import (
        CommonRoadFileReader,  # optional dependency
    )

    if not file.is_file():
        raise ImportDataError(f"{file}: no such file")
    reader_log = logging.getLogger("commonroad.common.reader.file_reader_xml")
    level = reader_log.level
    reader_log.setLevel(logging.ERROR)  # 2020a intersections: one 'deprecated format' warning per link
    try:
        return CommonRoadFileReader(str(file)).open()
    except Exception as e:  # ParseError, KeyError, AttributeError, ValueError from malformed XML
        raise ImportDataError(f"{file}: cannot read the CommonRoad XML ({type(e).__name__}: {e})") from e
    finally:
        reader_log.setLevel(level)


def load_scenario(file) -> Scenario:
    """One CommonRoad scenario file -> Scenario."""
    file = Path(file)
    cr, problems = _read(file)
    dt_src = float(cr.dt)
    if not dt_src > 0:
        raise ImportDataError(f"{file}: time step size must be positive, got {dt_src}")
    scene = str(cr.scenario_id) or file.stem
    tracks, counts = _tracks(cr, file)
    start = min(tr["steps"][0] for tr in tracks)
    ego = _choose_ego(tracks, start, problems, file)
    tracks = [ego] + [tr for tr in tracks if tr is not ego]
    log, valid = _logs(tracks, start, dt_src, file)
    origin = log[0, valid[0]][0, :2].copy()
    log[..., :2] -= origin
    road, map_meta = _road(cr.lanelet_network, origin, f"commonroad/{scene}", file)
    ev = valid[0]
    try:
        route = route_from_path(road.lanes, log[0, ev, :2], log[0, ev, 2])
    except ValueError as e:
        raise ImportDataError(f"{file}: no ego route on the lanelet map ({e})") from e
    A = len(tracks)
    first = valid.argmax(axis=1)
    init = log[np.arange(A), first]
    types = np.array([int(tr["agent_type"]) for tr in tracks], np.int64)
    meta = {
        "source": "commonroad", "file": file.name, "scene": scene, "source_dt": dt_src,
        "ego_obstacle_id": ego["id"],
        "ego_rule": "longest trajectory present from the first step; ties: nearest the planning problem start, then lowest id",
        "planning_problem_ids": sorted(int(k) for k in problems.planning_problem_dict) if problems is not None else [],
        "obstacle_ids": [tr["id"] for tr in tracks], "origin": [float(origin[0]), float(origin[1])],
        "tags": sorted(str(getattr(t, "value", t)) for t in (cr.tags or [])),
        "num_agents": A, "agent_types": {AgentType(t).name: int(n) for t, n in zip(*np.unique(types, return_counts=True))},
        **counts, **map_meta,
    }
    sc = Scenario(
        name=f"commonroad/{scene}", road=road, x=init[:, 0], y=init[:, 1], yaw=init[:, 2], speed=init[:, 3],
        length=np.array([tr["length"] for tr in tracks]), width=np.array([tr["width"] for tr in tracks]),
        agent_type=types, mode=np.array([ControlMode.POLICY] + [ControlMode.REPLAY] * (A - 1), np.int64),
        desired_speed=np.maximum(np.where(valid, log[..., 3], 0.0).max(axis=1), 1.0),
        route=route, duration=(valid.shape[1] - 1) * DT, dt=DT, log=log, log_valid=valid, meta=meta,
    )
    sc.validate()
    return sc


# ---------------------------------------------------------------- agents


def _type_name(obstacle) -> str:
    t = obstacle.obstacle_type
    return str(getattr(t, "name", t)).upper()


def _shape_size(shape) -> tuple[float, float] | None:
    """(length, width) of an obstacle shape, or None when it gives none."""
    if shape is None:
        return None
    if hasattr(shape, "length") and hasattr(shape, "width"):
        return float(shape.length), float(shape.width)
    if hasattr(shape, "radius"):
        return 2.0 * float(shape.radius), 2.0 * float(shape.radius)
    dims = getattr(shape, "truck_dims", None)
    if dims is not None:
        return float(getattr(shape, "total_length", dims.length)), float(dims.width)
    if hasattr(shape, "truck_shape"):
        return float(shape.total_length), float(shape.truck_shape.truck_dims.width)
    if hasattr(shape, "vertices"):
        from shapely.geometry import Polygon

        box = np.asarray(Polygon(shape.vertices).minimum_rotated_rectangle.exterior.coords)
        sides = np.linalg.norm(np.diff(box[:3], axis=0), axis=1)
        return float(sides.max()), float(sides.min())
    return None


def _state_row(state, shift: float) -> tuple[float, float, float, float]:
    """(x, y, yaw, speed) of a CommonRoad state; the box centre is the origin minus its shift."""
    fields = set(getattr(state, "attributes", None) or vars(state))  # given fields, not derived properties
    pos = np.asarray(state.position, float).reshape(-1)[:2]
    v = float(state.velocity) if "velocity" in fields and state.velocity is not None else math.nan
    if "orientation" in fields and state.orientation is not None:
        yaw, speed = float(state.orientation), abs(v)
    elif "velocity_y" in fields and state.velocity_y is not None:  # point-mass state: velocity = (vx, vy)
        yaw, speed = math.atan2(float(state.velocity_y), v), math.hypot(v, float(state.velocity_y))
    else:
        yaw, speed = 0.0, abs(v)
    return pos[0] - shift * math.cos(yaw), pos[1] - shift * math.sin(yaw), yaw, speed


def _tracks(cr, file: Path) -> tuple[list[dict], dict]:
    tracks, types, fallback = [], Counter(), 0
    obstacles = [(ob, False) for ob in cr.dynamic_obstacles] + [(ob, True) for ob in cr.static_obstacles]
    for ob, static in obstacles:
        name = _type_name(ob)
        types[name] += 1
        if name not in CR_TYPES:
            raise ImportDataError(f"{file}: obstacle {ob.obstacle_id} has unknown type {name!r} (known: {sorted(CR_TYPES)})")
        agent_type, dl, dw = CR_TYPES[name]
        size = _shape_size(ob.obstacle_shape)
        if size is None or not (size[0] > 0 and size[1] > 0):
            size, fallback = (dl, dw), fallback + 1
        shift = float(getattr(ob.obstacle_shape, "origin_x_shift", 0.0) or 0.0)
        states = [ob.initial_state]
        traj = getattr(getattr(ob, "prediction", None), "trajectory", None)
        if traj is not None:
            states += [s for s in traj.state_list if s.time_step > ob.initial_state.time_step]
        try:
            steps = [int(s.time_step) for s in states]
            rows = np.array([_state_row(s, shift) for s in states], float)
        except (TypeError, ValueError, AttributeError) as e:
            raise ImportDataError(f"{file}: obstacle {ob.obstacle_id}: bad state ({type(e).__name__}: {e})") from e
        if np.any(np.diff(steps) <= 0) or not np.isfinite(rows[:, :3]).all():
            raise ImportDataError(f"{file}: obstacle {ob.obstacle_id}: states must have increasing time steps and finite poses")
        tracks.append({"id": int(ob.obstacle_id), "type_name": name, "agent_type": agent_type, "static": static,
                       "length": size[0], "width": size[1], "steps": steps, "rows": rows})
    if not tracks:
        raise ImportDataError(f"{file}: no obstacles (no agent to take as the ego)")
    counts = {
        "source_types": dict(types), "sizes_from_type_default": fallback, "agents_skipped_no_valid_step": 0,
        "environment_obstacles_ignored": len(getattr(cr, "environment_obstacle", None) or []),
        "phantom_obstacles_ignored": len(getattr(cr, "phantom_obstacle", None) or []),
    }
    return tracks, counts


def _choose_ego(tracks: list[dict], start: int, problems, file: Path) -> dict:
    cand = [tr for tr in tracks if not tr["static"] and tr["steps"][0] == start and tr["agent_type"] == AgentType.VEHICLE]
    if not cand:
        raise ImportDataError(f"{file}: no vehicle obstacle is present at the first time step {start} (no ego)")
    goal = None
    if problems is not None and problems.planning_problem_dict:
        pp = problems.planning_problem_dict[min(problems.planning_problem_dict)]
        goal = np.asarray(pp.initial_state.position, float).reshape(-1)[:2]

    def key(tr):
        dist = float(np.linalg.norm(tr["rows"][0, :2] - goal)) if goal is not None else 0.0
        return (-(tr["steps"][-1] - tr["steps"][0]), round(dist, 6), tr["id"])

    return min(cand, key=key)


def _logs(tracks: list[dict], start: int, dt_src: float, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """log [A, T+1, 4] and log_valid [A, T+1] at DT from the tracks' source steps (relative to
    `start`); speeds missing in the source come from positions; static obstacles are valid at
    every step; invalid steps hold the nearest valid state."""
    end = max(tr["steps"][-1] for tr in tracks)
    n_src = end - start + 1
    T1 = math.floor((n_src - 1) * dt_src / DT + 1e-6) + 1
    if T1 < 2:
        raise ImportDataError(f"{file}: needs at least 2 time steps of {DT} s, got {n_src} of {dt_src} s")
    t_out = np.arange(T1) * DT
    log, valid = np.zeros((len(tracks), T1, 4)), np.zeros((len(tracks), T1), bool)
    for a, tr in enumerate(tracks):
        rows = tr["rows"].copy()
        t_src = (np.asarray(tr["steps"]) - start) * dt_src
        if np.isnan(rows[:, 3]).any():
            rows[:, 3] = _speed_from_positions(rows[:, :2], t_src, rows[:, 3])
        if tr["static"]:
            log[a], valid[a] = rows[0], True
            log[a, :, 3] = 0.0
            continue
        yaw = np.unwrap(rows[:, 2])
        inside = (t_out >= t_src[0] - 1e-6) & (t_out <= t_src[-1] + 1e-6)
        for c, col in enumerate((rows[:, 0], rows[:, 1], yaw, rows[:, 3])):
            log[a, :, c] = np.interp(t_out, t_src, col)
        log[a, :, 2] = (log[a, :, 2] + np.pi) % (2 * np.pi) - np.pi
        valid[a] = inside
        if np.any(np.diff(tr["steps"]) > 1):  # gaps in the source: invalid where no state is near
            near = np.abs(t_out[:, None] - t_src[None]).min(axis=1) <= 0.5 * max(dt_src, DT) + 1e-6
            valid[a] &= near
    log[..., 3] = np.abs(log[..., 3])
    return log, valid


def _speed_from_positions(xy: np.ndarray, t: np.ndarray, speed: np.ndarray) -> np.ndarray:
    if len(xy) < 2:
        return np.nan_to_num(speed)
    v = np.linalg.norm(np.gradient(xy, t, axis=0), axis=1)
    return np.where(np.isnan(speed), v, speed)


# ---------------------------------------------------------------- map


def _max_speed(network, lanelet) -> float | None:
    vals = []
    for sid in getattr(lanelet, "traffic_signs", None) or []:
        sign = network.find_traffic_sign_by_id(sid)
        for el in getattr(sign, "traffic_sign_elements", None) or []:
            if getattr(el.traffic_sign_element_id, "name", "") == "MAX_SPEED" and el.additional_values:
                try:
                    vals.append(float(el.additional_values[0]))
                except ValueError:
                    pass
    return min(vals) if vals else None


def _road(network, origin: np.ndarray, name: str, file: Path) -> tuple[RoadMap, dict]:
    lanelets = list(network.lanelets)
    turning = {lid for inter in network.intersections for g in inter.incomings
               for lid in (*g.outgoing_right, *g.outgoing_straight, *g.outgoing_left)}
    lanes, ids, kept, dropped = [], [], [], 0
    for ll in lanelets:
        center = np.asarray(ll.center_vertices, float)[:, :2] - origin
        left, right = np.asarray(ll.left_vertices, float), np.asarray(ll.right_vertices, float)
        if len(center) < 2 or not np.isfinite(center).all() or left.shape != right.shape:
            dropped += 1
            continue
        lane = Lane(center, width=float(np.linalg.norm(left - right, axis=1).mean()),
                    kind="connector" if ll.lanelet_id in turning else "lane")
        if lane.length < 0.5 or not lane.width > 0.5:
            dropped += 1
            continue
        lanes.append(lane)
        ids.append(int(ll.lanelet_id))
        kept.append(ll)
    if not lanes:
        raise ImportDataError(f"{file}: the lanelet network has no usable lanelets ({len(lanelets)} lanelets)")
    index = {lid: i for i, lid in enumerate(ids)}
    for lane, ll in zip(lanes, kept):
        lane.successors = [index[s] for s in ll.successor or [] if s in index]
        if ll.adj_left in index and ll.adj_left_same_direction:
            lane.left = index[ll.adj_left]
        if ll.adj_right in index and ll.adj_right_same_direction:
            lane.right = index[ll.adj_right]
    opposite = sum(1 for ll in kept for a, same in ((ll.adj_left, ll.adj_left_same_direction), (ll.adj_right, ll.adj_right_same_direction))
                   if a is not None and same is False)
    given = count_links(lanes)
    added = infer_links(lanes)
    limits = _speed_limits(network, kept, lanes)
    for lane, v in zip(lanes, limits):
        lane.speed_limit = v if v is not None else DEFAULT_SPEED_LIMIT
    drivable, summary = drivable_area_parts([ll.polygon.shapely_object for ll in kept])  # lanelet polygons (2D maps)
    road = RoadMap(name=name, lanes=lanes, drivable=drivable)
    n_default = sum(v is None for v in limits)
    meta = {
        "num_lanes": len(lanes), "num_lanelets": len(lanelets), "lanelets_dropped_degenerate": dropped, "lanelet_ids": ids,
        "opposite_neighbours_dropped": opposite, "links_given": given, "links_inferred": added,
        "speed_limit_source": "MAX_SPEED traffic signs" if n_default == 0 else
        f"MAX_SPEED traffic signs; {n_default} of {len(lanes)} lanes without one get the default {DEFAULT_SPEED_LIMIT} m/s (urban)",
        "traffic_lights_ignored": len(network.traffic_lights), "drivable_source": "union of lanelet polygons",
        "drivable_summary": {k: summary[k] for k in ("lane_area", "area", "rings", "open_edges")},
    }
    return road, meta


def _speed_limits(network, kept, lanes: list[Lane]) -> list[float | None]:
    """Each lane's MAX_SPEED sign, else the limit of a predecessor (CommonRoad signs hold along the
    road until the next sign), else None."""
    limits = [_max_speed(network, ll) for ll in kept]
    for _ in range(len(lanes)):
        changed = False
        for i, lane in enumerate(lanes):
            for j in lane.successors:
                if limits[j] is None and limits[i] is not None:
                    limits[j], changed = limits[i], True
        if not changed:
            break
    return limits

