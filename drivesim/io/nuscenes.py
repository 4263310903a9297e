"""nuScenes importer: the scenes of a nuScenes dataroot as drivesim `Scenario`s, through nuscenes-devkit.

`load(dataroot, version='v1.0-mini', scenes=None)` opens the tables with `NuScenes(version, dataroot)`
and builds one scenario per scene, at dt = 0.1 s from the scene's first keyframe to its last:

- ego (agent 0, POLICY): the ego poses of the LIDAR_TOP sample_data chain (keyframes at 2 Hz and
  sweeps at about 20 Hz), interpolated to 10 Hz (linear in position, shortest arc in yaw); its box
  is the nuScenes car's (Renault Zoe), which the tables do not carry.
- other agents (REPLAY): one per annotated instance, from its 2 Hz `sample_annotation`s, interpolated
  to 10 Hz between annotations of adjacent keyframes (an instance missing from a keyframe is invalid
  in that gap); an annotation is also valid at the 10 Hz step nearest to it. Boxes from `size`
  (w, l, h), yaw from the rotation quaternion, speed by finite differences of the 10 Hz positions.
  Categories map to `AgentType` through `CATEGORY_TYPES`; an unknown category is an error.
- map: from the map expansion (`<dataroot>/maps/expansion/<location>.json`, v1.3) when present:
  the lanes and lane connectors near the scene, discretized with the devkit's arcline-path
  utilities, successors from `get_outgoing_lane_ids`, left/right neighbours inferred from geometry,
  drivable area: `map.drivable_area` of the `drivable_area` polygons (holes kept) and the lanes.
  Without it (the default of a bare nuScenes download) a warning names the missing file and the
  scenario gets an approximate map: one 3.5 m corridor lane along the logged ego path
  (`meta['map'] = 'approximate (no map expansion)'`).
  nuScenes maps carry no speed limits: every lane gets 13.9 m/s (urban).

Coordinates are the nuScenes global frame minus the ego's first position (`meta['origin']`).
A missing or unreadable table raises `ImportDataError` naming the file; a scene that fails is
an error line of `load`'s (scenarios, errors) and skipped (an error is raised only if no scene could be imported).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter

import numpy as np
from shapely import affinity
from shapely.geometry import box
from shapely.ops import unary_union

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode
from drivesim.io.errors import ImportDataError
from drivesim.map.drivable_area import drivable_area_parts
from drivesim.map.linking import infer_links, route_from_path
from drivesim.map.road import Lane, RoadMap

DT = 0.1  # s, the scenario step
US = 1e-6  # nuScenes timestamps are microseconds
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
          "log", "scene", "sample", "sample_data", "sample_annotation", "map")  # what NuScenes() loads
EGO_CHANNEL = "LIDAR_TOP"
EGO_LENGTH, EGO_WIDTH = 4.084, 1.730  # m, the nuScenes data-collection car (Renault Zoe)
URBAN_SPEED = 13.9  # m/s (50 km/h): nuScenes maps have no speed limits
CORRIDOR_WIDTH = 3.5  # m, the approximate map's lane
MAP_MARGIN = 30.0  # m around the scene's ego and agent positions where map lanes are taken
LANE_RESOLUTION = 0.5  # m, arcline-path discretization

# Every category of nuScenes v1.0 annotations (sample_annotation -> instance -> category).
CATEGORY_TYPES: dict[str, AgentType] = {
    "human.pedestrian.adult": AgentType.PEDESTRIAN,
    "human.pedestrian.child": AgentType.PEDESTRIAN,
    "human.pedestrian.construction_worker": AgentType.PEDESTRIAN,
    "human.pedestrian.police_officer": AgentType.PEDESTRIAN,
    "human.pedestrian.personal_mobility": AgentType.PEDESTRIAN,
    "human.pedestrian.stroller": AgentType.PEDESTRIAN,
    "human.pedestrian.wheelchair": AgentType.PEDESTRIAN,
    "animal": AgentType.PEDESTRIAN,
    "vehicle.car": AgentType.VEHICLE,
    "vehicle.truck": AgentType.VEHICLE,
    "vehicle.trailer": AgentType.VEHICLE,
    "vehicle.bus.bendy": AgentType.VEHICLE,
    "vehicle.bus.rigid": AgentType.VEHICLE,
    "vehicle.construction": AgentType.VEHICLE,
    "vehicle.emergency.ambulance": AgentType.VEHICLE,
    "vehicle.emergency.police": AgentType.VEHICLE,
    "vehicle.bicycle": AgentType.CYCLIST,
    "vehicle.motorcycle": AgentType.CYCLIST,
    "movable_object.barrier": AgentType.STATIC,
    "movable_object.trafficcone": AgentType.STATIC,
    "movable_object.pushable_pullable": AgentType.STATIC,
    "movable_object.debris": AgentType.STATIC,
    "static_object.bicycle_rack": AgentType.STATIC,
}
DEFAULT_SIZE = {  # (length, width) m when an annotation's size is not positive
    AgentType.VEHICLE: (4.5, 1.9), AgentType.PEDESTRIAN: (0.7, 0.7),
    AgentType.CYCLIST: (1.8, 0.7), AgentType.STATIC: (0.5, 0.5),
}

def load(dataroot, version: str = "v1.0-mini", scenes=None, *,
         require_map: bool = False) -> tuple[list[Scenario], list[str]]:
    """Import the scenes (names like 'scene-0061' or scene tokens; None = all) of a nuScenes dataroot:
    (scenarios, one error line per scene skipped).

    require_map: a missing map expansion is an error instead of a warning and an approximate map."""
    errors: list[str] = []
    dataroot = os.fspath(dataroot)
    nusc = _open(dataroot, version)
    records = _select_scenes(nusc, scenes, os.path.join(dataroot, version, "scene.json"))
    maps: dict[str, object] = {}  # location -> NuScenesMap, or None when the expansion is missing
    out = []
    for rec in records:
        try:
            out.append(_scene(nusc, rec, dataroot, version, maps, require_map))
        except ImportDataError as e:
            errors.append(str(e))
        except (KeyError, ValueError, IndexError, TypeError, AssertionError) as e:
            errors.append(f"{os.path.join(dataroot, version)}: scene {rec.get('name')!r}: {type(e).__name__}: {e}")
    if not out:
        if len(errors) == 1:
            raise ImportDataError(errors[0])
        raise ImportDataError(f"{dataroot}: no scene imported; " + " | ".join(errors))
    return out, errors


# ---------------------------------------------------------------------------------------- tables

def _open(dataroot: str, version: str):
    """NuScenes(version, dataroot), with missing or malformed tables reported by file name."""
    table_root = os.path.join(dataroot, version)
    if not os.path.isdir(table_root):
        raise ImportDataError(f"{table_root}: nuScenes table folder not found (dataroot {dataroot!r}, version {version!r})")
    for name in TABLES:
        path = os.path.join(table_root, f"{name}.json")
        if not os.path.isfile(path):
            raise ImportDataError(f"{path}: missing nuScenes table {name!r}")
    _check_map_masks(dataroot, os.path.join(table_root, "map.json"))
    from nuscenes.nuscenes import NuScenes  # lazy: heavy import

    try:
        return NuScenes(version=version, dataroot=dataroot, verbose=False)
    except Exception as e:  # the devkit raises bare KeyError/AssertionError/JSONDecodeError: find the file
        raise ImportDataError(_diagnose(table_root, e)) from e


def _check_map_masks(dataroot: str, map_table: str) -> None:
    """NuScenes() asserts that every map record's PNG exists: say which one is missing."""
    try:
        with open(map_table) as f:
            records = json.load(f)
        names = [r["filename"] for r in records]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ImportDataError(f"{map_table}: unreadable nuScenes table ({type(e).__name__}: {e})") from e
    for name in names:
        if not os.path.isfile(os.path.join(dataroot, name)):
            raise ImportDataError(f"{os.path.join(dataroot, name)}: map mask named in {map_table} not found")


def _diagnose(table_root: str, err: Exception) -> str:
    for name in TABLES:
        path = os.path.join(table_root, f"{name}.json")
        try:
            with open(path) as f:
                table = json.load(f)
        except (OSError, ValueError) as e:
            return f"{path}: unreadable nuScenes table ({e})"
        if not isinstance(table, list) or not all(isinstance(r, dict) and "token" in r for r in table):
            return f"{path}: a nuScenes table must be a list of records with a 'token'"
    return f"{table_root}: nuScenes tables do not load ({type(err).__name__}: {err})"


def _select_scenes(nusc, scenes, scene_file: str) -> list[dict]:
    if scenes is None:
        return list(nusc.scene)
    if isinstance(scenes, str):
        scenes = [scenes]
    by_key = {r["name"]: r for r in nusc.scene} | {r["token"]: r for r in nusc.scene}
    missing = [s for s in scenes if s not in by_key]
    if missing:
        raise ImportDataError(f"{scene_file}: no scene {missing} (have {sorted(r['name'] for r in nusc.scene)})")
    return [by_key[s] for s in scenes]


def _chain(nusc, table: str, first: str) -> list[dict]:
    out, tok = [], first
    while tok:
        rec = nusc.get(table, tok)
        out.append(rec)
        tok = rec["next"]
    return out


def _yaw(rotation) -> float:
    from pyquaternion import Quaternion

    return float(Quaternion(rotation).yaw_pitch_roll[0])


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


# ---------------------------------------------------------------------------------------- scene

def _scene(nusc, scene: dict, dataroot: str, version: str, maps: dict, require_map: bool) -> Scenario:
    table_root = os.path.join(dataroot, version)
    name = scene["name"]
    samples = _chain(nusc, "sample", scene["first_sample_token"])
    t0 = samples[0]["timestamp"]
    u = np.array([(s["timestamp"] - t0) * US / DT for s in samples])  # keyframe times in steps
    T = int(round(u[-1]))
    if T < 1:
        raise ImportDataError(f"{os.path.join(table_root, 'sample.json')}: scene {name!r} spans less than {DT} s")
    ego, n_poses = _ego_log(nusc, samples, t0, T, os.path.join(table_root, "sample_data.json"))
    origin = ego[0, :2].copy()
    agents, counts = _agents(nusc, samples, u, T, os.path.join(table_root, "category.json"), name)

    log = np.zeros((1 + len(agents), T + 1, 4))
    valid = np.zeros((1 + len(agents), T + 1), bool)
    log[0], valid[0] = ego, True
    for i, a in enumerate(agents, 1):
        log[i], valid[i] = a["log"], a["valid"]
    log[..., :2] -= origin
    log[~valid] = 0.0

    location = nusc.get("log", scene["log_token"])["location"]
    pts_global = np.concatenate([ego[:, :2]] + [a["log"][a["valid"], :2] for a in agents])
    road, map_meta = _road(dataroot, location, name, log[0, :, :2], log[0, :, 2], origin, pts_global,
                           maps, require_map)
    try:
        route = route_from_path(road.lanes, log[0, :, :2], log[0, :, 2])
    except ValueError as e:
        map_file = os.path.join(dataroot, map_meta["map_file"])
        raise ImportDataError(f"{map_file}: scene {name!r}: no ego route on the map ({e})") from e

    A = log.shape[0]
    first = valid.argmax(axis=1)
    init = log[np.arange(A), first]
    types = [AgentType.VEHICLE] + [a["type"] for a in agents]
    length = np.array([EGO_LENGTH] + [a["length"] for a in agents])
    width = np.array([EGO_WIDTH] + [a["width"] for a in agents])
    vmax = np.where(valid, log[..., 3], 0.0).max(axis=1)
    sc = Scenario(
        name=f"nuscenes/{name}", road=road,
        x=init[:, 0], y=init[:, 1], yaw=init[:, 2], speed=init[:, 3], length=length, width=width,
        agent_type=np.array([int(t) for t in types], np.int64),
        mode=np.array([ControlMode.POLICY] + [ControlMode.REPLAY] * (A - 1), np.int64),
        desired_speed=np.maximum(vmax, 1.0), route=route, duration=T * DT, dt=DT, log=log, log_valid=valid,
        meta={
            "source": "nuscenes", "file": f"{os.path.basename(os.path.normpath(dataroot))}/{version}",
            "version": version, "scene": name, "scene_token": scene["token"],
            "log": nusc.get("log", scene["log_token"])["logfile"], "location": location,
            "origin": [float(origin[0]), float(origin[1])],
            "num_keyframes": len(samples), "num_ego_poses": n_poses, "num_agents": A,
            "agent_ids": ["ego"] + [a["token"] for a in agents],  # nuScenes instance tokens
            "agent_types": dict(Counter(AgentType(t).name for t in types[1:])),
            "ego_size": f"{EGO_LENGTH} x {EGO_WIDTH} m (nuScenes car; not in the tables)",
            "speed_limit": f"{URBAN_SPEED} m/s (urban default: nuScenes maps have no speed limits)",
            **counts, **map_meta,
        },
    )
    sc.validate()
    return sc


def _ego_log(nusc, samples: list[dict], t0: int, T: int, sd_file: str) -> tuple[np.ndarray, int]:
    """[T+1, 4] ego (x, y, yaw, speed) in the global frame from the LIDAR_TOP ego poses."""
    sd_token = samples[0]["data"].get(EGO_CHANNEL)
    if not sd_token:
        raise ImportDataError(f"{sd_file}: the first keyframe of the scene has no {EGO_CHANNEL} sample_data")
    rec = nusc.get("sample_data", sd_token)
    while rec["prev"]:
        rec = nusc.get("sample_data", rec["prev"])
    chain = _chain(nusc, "sample_data", rec["token"])
    poses = {}
    for sd in chain:
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        poses[sd["timestamp"]] = (pose["translation"][0], pose["translation"][1], _yaw(pose["rotation"]))
    t = np.array(sorted(poses), dtype=np.int64)
    xyz = np.array([poses[k] for k in t])
    ts = (t - t0) * US
    grid = np.arange(T + 1) * DT
    if ts[0] > 0.5 * DT or ts[-1] < grid[-1] - 0.5 * DT:
        raise ImportDataError(f"{sd_file}: {EGO_CHANNEL} ego poses cover {ts[0]:.2f}..{ts[-1]:.2f} s, "
                              f"the scene 0..{grid[-1]:.2f} s")
    out = np.zeros((T + 1, 4))
    out[:, 0] = np.interp(grid, ts, xyz[:, 0])
    out[:, 1] = np.interp(grid, ts, xyz[:, 1])
    out[:, 2] = _wrap(np.interp(grid, ts, np.unwrap(xyz[:, 2])))  # unwrap = shortest arc between poses
    out[:, 3] = _speed(out[:, :2], np.ones(T + 1, bool))
    return out, len(t)


def _speed(xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """|velocity| by finite differences (central inside, one-sided at the ends) over each valid run."""
    v = np.zeros(len(xy))
    idx = np.flatnonzero(valid)
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        if len(run) >= 2:
            v[run] = np.linalg.norm(np.gradient(xy[run], DT, axis=0), axis=1)
    return v


# ---------------------------------------------------------------------------------------- agents

def _agents(nusc, samples: list[dict], u: np.ndarray, T: int, cat_file: str, scene: str) -> tuple[list[dict], dict]:
    obs: dict[str, list] = {}  # instance -> [(keyframe index, step, x, y, yaw, length, width)]
    cats: dict[str, str] = {}
    for k, s in enumerate(samples):
        for tok in s["anns"]:
            ann = nusc.get("sample_annotation", tok)
            inst = ann["instance_token"]
            w, l = ann["size"][0], ann["size"][1]  # nuScenes size is (w, l, h)
            x, y = ann["translation"][0], ann["translation"][1]
            obs.setdefault(inst, []).append((k, u[k], x, y, _yaw(ann["rotation"]), l, w))
            cats[inst] = ann["category_name"]
    unknown = sorted({c for c in cats.values() if c not in CATEGORY_TYPES})
    if unknown:
        raise ImportDataError(f"{cat_file}: unknown nuScenes category {unknown[0]!r} in scene {scene!r} "
                              f"(known: {sorted(CATEGORY_TYPES)})")
    agents, skipped = [], 0
    for inst, rows in obs.items():  # dicts keep first-appearance order
        rows.sort(key=lambda r: r[0])
        log, valid = _interpolate(np.array(rows), T)
        if not valid.any():
            skipped += 1
            continue
        atype = CATEGORY_TYPES[cats[inst]]
        size = np.median(np.array(rows)[:, 5:7], axis=0)
        length, width = [float(v) if v > 0 else d for v, d in zip(size, DEFAULT_SIZE[atype])]
        agents.append({"token": inst, "category": cats[inst], "type": atype, "log": log, "valid": valid,
                       "length": length, "width": width})
    counts = {"num_instances": len(obs), "num_skipped_agents": skipped,
              "num_annotations": sum(len(r) for r in obs.values()),
              "categories": dict(Counter(a["category"] for a in agents))}
    return agents, counts


def _interpolate(rows: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """One instance's annotations [N, (keyframe, step, x, y, yaw, ...)] -> 10 Hz log [T+1, 4], valid [T+1]."""
    log, valid = np.zeros((T + 1, 4)), np.zeros(T + 1, bool)
    steps = np.arange(T + 1)
    for a, b in zip(rows, rows[1:]):
        if b[0] != a[0] + 1:  # not annotated in the keyframe between: leave the gap invalid
            continue
        m = (steps >= a[1] - 1e-6) & (steps <= b[1] + 1e-6)
        f = (steps[m] - a[1]) / (b[1] - a[1])
        log[m, 0] = a[2] + f * (b[2] - a[2])
        log[m, 1] = a[3] + f * (b[3] - a[3])
        log[m, 2] = _wrap(a[4] + f * _wrap(b[4] - a[4]))  # shortest arc
        valid[m] = True
    for r in rows:  # each annotation also holds at its nearest step (single annotations, ends off the grid)
        j = int(round(r[1]))
        if 0 <= j <= T and not valid[j]:
            log[j, :3], valid[j] = r[2:5], True
    log[:, 3] = _speed(log[:, :2], valid)
    return log, valid


# ---------------------------------------------------------------------------------------- map

def _road(dataroot, location, scene, ego_xy, ego_yaw, origin, pts_global, maps, require_map):
    rel_file = f"maps/expansion/{location}.json"
    map_file = os.path.join(dataroot, rel_file)
    if location not in maps:
        maps[location] = _open_map(dataroot, location, map_file) if os.path.isfile(map_file) else None
        if maps[location] is None and not require_map:
            warnings.warn(f"{map_file} not found: nuScenes scenes in {location!r} get an approximate map "
                          f"(one {CORRIDOR_WIDTH} m corridor lane along the logged ego path); install the "
                          f"nuScenes map expansion (v1.3) under {os.path.join(dataroot, 'maps', 'expansion')} "
                          f"for real lanes", UserWarning, stacklevel=4)
    nmap = maps[location]
    if nmap is None:
        if require_map:
            raise ImportDataError(f"{map_file}: nuScenes map expansion not found (scene {scene!r})")
        road = _corridor_map(f"nuscenes/{scene}/approximate", ego_xy, ego_yaw)
        return road, {"map": "approximate (no map expansion)", "map_file": rel_file, "num_lanes": 1}
    road, meta = _expansion_map(nmap, map_file, scene, origin, pts_global)
    return road, {**meta, "map_file": rel_file}


def _open_map(dataroot: str, location: str, map_file: str):
    from nuscenes.map_expansion.map_api import NuScenesMap  # lazy: heavy import

    try:
        return NuScenesMap(dataroot=dataroot, map_name=location)
    except Exception as e:  # bad JSON, outdated map version, missing layers
        raise ImportDataError(f"{map_file}: nuScenes map expansion does not load ({type(e).__name__}: {e})") from e


def _expansion_map(nmap, map_file: str, scene: str, origin: np.ndarray, pts_global: np.ndarray):
    from nuscenes.map_expansion.arcline_path_utils import discretize_lane

    lo, hi = pts_global.min(axis=0) - MAP_MARGIN, pts_global.max(axis=0) + MAP_MARGIN
    patch = (lo[0], lo[1], hi[0], hi[1])
    try:
        found = nmap.get_records_in_patch(patch, ["lane", "lane_connector"], mode="intersect")
    except Exception as e:
        raise ImportDataError(f"{map_file}: lanes near scene {scene!r} do not load ({type(e).__name__}: {e})") from e
    tokens = [(t, "lane") for t in found["lane"]] + [(t, "connector") for t in found["lane_connector"]]
    lanes, keep = [], []
    for tok, kind in tokens:
        poses = np.array(discretize_lane(nmap.arcline_path_3.get(tok, []), LANE_RESOLUTION)).reshape(-1, 3)
        cl = _dedupe(poses[:, :2]) - origin if len(poses) else np.zeros((0, 2))
        if len(cl) < 2 or np.linalg.norm(np.diff(cl, axis=0), axis=1).sum() < 0.5:
            continue  # degenerate: dropped (links remapped below)
        layer = "lane" if kind == "lane" else "lane_connector"
        lanes.append(Lane(cl, width=_lane_width(nmap, layer, tok, cl), speed_limit=URBAN_SPEED, kind=kind))
        keep.append(tok)
    if not lanes:
        raise ImportDataError(f"{map_file}: no lanes near scene {scene!r} (patch {np.round(patch, 1).tolist()})")
    index = {t: i for i, t in enumerate(keep)}
    for tok, lane in zip(keep, lanes):
        lane.successors = [index[t] for t in nmap.get_outgoing_lane_ids(tok) if t in index]
    infer_links(lanes)  # left/right neighbours (and successors where the map gives none in the patch)
    source = _drivable(nmap, lanes, origin)
    drivable, summary = drivable_area_parts(lane_centerlines=[l.centerline for l in lanes], widths=[l.width for l in lanes],
                                            areas=[source] if source is not None else [])
    road = RoadMap(f"nuscenes/{scene}/{nmap.map_name}", lanes, drivable=drivable)
    meta = {"map": f"nuScenes map expansion {nmap.version}", "num_lanes": len(lanes), "num_dropped_lanes": len(tokens) - len(lanes),
            "drivable": summary["note"], "drivable_summary": {k: summary[k] for k in ("lane_area", "area", "rings", "open_edges")}}
    return road, meta


def _dedupe(p: np.ndarray) -> np.ndarray:
    """Drop consecutive points closer than 1 mm (arcline paths repeat their joints)."""
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-3])
    return p[keep]


def _lane_width(nmap, layer: str, tok: str, cl: np.ndarray) -> float:
    """Mean width = polygon area / centerline length, clamped to [2.5, 5] m (3.5 m without a polygon)."""
    rec = nmap.get(layer, tok)
    if not rec.get("polygon_token"):
        return CORRIDOR_WIDTH
    poly = nmap.extract_polygon(rec["polygon_token"]).buffer(0)
    length = float(np.linalg.norm(np.diff(cl, axis=0), axis=1).sum())
    return float(np.clip(poly.area / max(length, 1e-6), 2.5, 5.0)) if poly.area > 0 else CORRIDOR_WIDTH


def _drivable(nmap, lanes: list[Lane], origin: np.ndarray):
    """The map's drivable_area polygons around the selected lanes (scene frame), or None if none."""
    pts = np.concatenate([l.centerline for l in lanes]) + origin
    lo, hi = pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0
    records = nmap.get_records_in_patch((lo[0], lo[1], hi[0], hi[1]), ["drivable_area"], mode="intersect")
    polys = [nmap.extract_polygon(p).buffer(0) for t in records["drivable_area"]
             for p in nmap.get("drivable_area", t)["polygon_tokens"]]
    if not polys:
        return None
    area = unary_union(polys).intersection(box(lo[0], lo[1], hi[0], hi[1])).buffer(0)
    area = affinity.translate(area, -origin[0], -origin[1])
    if area.is_empty or area.geom_type not in ("Polygon", "MultiPolygon"):
        return None
    return area


def _corridor_map(name: str, ego_xy: np.ndarray, ego_yaw: np.ndarray) -> RoadMap:
    """One lane along the logged ego path, 10 m longer behind and 30 m longer ahead."""
    kept = [ego_xy[0]]
    for p in ego_xy[1:]:  # a point per metre moved: standstill jitter makes no zig-zags
        if np.linalg.norm(p - kept[-1]) >= 1.0:
            kept.append(p)
    kept = np.array(kept)
    if len(kept) < 3:  # (almost) no motion: straight along the first heading
        h = np.array([np.cos(ego_yaw[0]), np.sin(ego_yaw[0])])
        line = np.stack([ego_xy[0] - 10.0 * h, ego_xy[0] + 30.0 * h])
    else:
        h0 = (kept[1] - kept[0]) / np.linalg.norm(kept[1] - kept[0])
        h1 = (kept[-1] - kept[-2]) / np.linalg.norm(kept[-1] - kept[-2])
        line = np.concatenate([[kept[0] - 10.0 * h0], kept, [kept[-1] + 30.0 * h1]])
    lane = Lane(line, width=CORRIDOR_WIDTH, speed_limit=URBAN_SPEED, kind="lane")
    return RoadMap(name, [lane])
