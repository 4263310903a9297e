"""Importer of ScenarioNet "scenario description" pickles (metadriverse/scenarionet).

A file holds one dict: `tracks` {id: {type, state: position [T, 3], heading [T], velocity [T, 2],
valid [T], length/width [T] or [T, 1]}, metadata}, `map_features` {id: lanes (`polyline`, and
optionally `polygon`, `entry_lanes`, `exit_lanes`, `left_neighbor`, `right_neighbor`,
`speed_limit_kmh`), road lines, road edges, ...}, `dynamic_map_states` (traffic lights per lane),
`metadata` (`sdc_id`, `ts`, `dataset`, `scenario_id`) and `length`.

Beyond a plain copy: coordinates are the source's minus the ego's first position; lane links come
from the source by feature id and the missing ones from `infer_links`; only lanes near the logged
agents are kept (`ImportConfig.crop_margin`: a nuScenes scene carries a 500 m radius of map, which
makes the simulator's rasters and lane searches slow); nuScenes speed limits are placeholders
(100 km/h on connectors only) and are replaced by the urban default; logged traffic-light states
go to `meta["traffic_lights"]` because RoadMap signal groups are cyclic; ScenarioNet's nuScenes ego
is stored 1.73 m long and 4.08 m wide, so an ego wider than long is swapped back.

Files are read with the restricted unpickler of drivesim.core.safe_pickle (numpy arrays and
scalars, builtin containers, defaultdict with a plain factory): unpickling can run code, and these
files come from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon

from drivesim.core.scenario import Scenario
from drivesim.core import safe_pickle
from drivesim.core.types import AgentType, ControlMode
from drivesim.io.errors import ImportDataError, load_each
from drivesim.map.bank import MAX_SUCCESSORS
from drivesim.map.drivable_area import DrivableAreaConfig, drivable_area_parts
from drivesim.map.linking import apply_source_links, cap_successors, infer_links, route_from_path
from drivesim.map.road import Lane, RoadMap

SOURCE = "scenarionet"
DT = 0.1  # s, drivesim's log step
INDEX_FILES = ("dataset_summary.pkl", "dataset_mapping.pkl")  # a ScenarioNet database's index, not scenarios

# ScenarioNet (MetaDrive) track types. OTHER is Waymo's class of other objects.
TRACK_TYPES = {
    "VEHICLE": AgentType.VEHICLE, "PEDESTRIAN": AgentType.PEDESTRIAN, "CYCLIST": AgentType.CYCLIST,
    "TRAFFIC_CONE": AgentType.STATIC, "TRAFFIC_BARRIER": AgentType.STATIC, "TRAFFIC_OBJECT": AgentType.STATIC,
    "OTHER": AgentType.STATIC,
}
# nuScenes categories (metadata.type of nuScenes tracks): must be known and agree with the track type.
NUSCENES_CATEGORIES = {
    **{f"human.pedestrian.{k}": AgentType.PEDESTRIAN for k in
       ("adult", "child", "wheelchair", "stroller", "personal_mobility", "police_officer", "construction_worker")},
    "animal": AgentType.PEDESTRIAN, "vehicle.bicycle": AgentType.CYCLIST, "vehicle.motorcycle": AgentType.CYCLIST,
    **{f"vehicle.{k}": AgentType.VEHICLE for k in
       ("car", "truck", "trailer", "construction", "bus.bendy", "bus.rigid", "emergency.ambulance", "emergency.police")},
    **{f"movable_object.{k}": AgentType.STATIC for k in ("barrier", "trafficcone", "debris", "pushable_pullable")},
    "static_object.bicycle_rack": AgentType.STATIC,
}
FALLBACK_SIZE = {AgentType.VEHICLE: (4.5, 1.9), AgentType.PEDESTRIAN: (0.7, 0.7),  # (length, width) m
                 AgentType.CYCLIST: (1.8, 0.7), AgentType.STATIC: (0.5, 0.5)}
LANE_KINDS = {"LANE_SURFACE_STREET": "lane", "LANE_FREEWAY": "lane", "LANE_UNKNOWN": "lane",  # bike lanes left out
              "LANE_SURFACE_UNSTRUCTURE": "connector"}
LIGHT_STATES = {  # MetaDrive / Waymo lane states -> simplified (as MetaDrive simplifies them)
    **dict.fromkeys(("LANE_STATE_STOP", "LANE_STATE_ARROW_STOP", "TRAFFIC_LIGHT_RED"), "red"),
    **dict.fromkeys(("LANE_STATE_CAUTION", "LANE_STATE_ARROW_CAUTION", "LANE_STATE_FLASHING_CAUTION",
                     "TRAFFIC_LIGHT_YELLOW"), "yellow"),
    **dict.fromkeys(("LANE_STATE_GO", "LANE_STATE_ARROW_GO", "TRAFFIC_LIGHT_GREEN"), "green"),
    **dict.fromkeys(("LANE_STATE_UNKNOWN", "LANE_STATE_FLASHING_STOP", "TRAFFIC_LIGHT_UNKNOWN", None), "unknown"),
}

@dataclass
class ImportConfig:
    crop_margin: float | None = 60.0  # m: keep lanes within this of a logged agent position; None: whole map
    width_range: tuple[float, float] = (2.5, 5.0)  # m, clamp of a width estimated from a lane polygon
    # "rectangle": short side of the rectangle with the polygon's area and perimeter; "area_over_length":
    # area / centerline length, which overestimates nuScenes lanes (median +1.15 m; their polygons flare)
    width_method: str = "rectangle"
    default_width: float = 3.5  # m, lanes without polygon or widths
    default_speed_limit: float = 13.9  # m/s (urban 50 km/h) where the source has none
    min_lane_length: float = 0.5  # m, shorter lanes are dropped
    # "lanes": union of the lane polygons (buffered centerlines where a lane has none); "source": plus the
    # even-odd fill of the closed road-edge rings near the lanes (ScenarioNet's nuScenes `boundary_*` lines
    # are the outlines and holes of nuScenes' drivable area, junctions included; see map.drivable_area)
    drivable: str = "source"
    # m, with drivable="source": lanes grow up to this towards open road edges (Waymo ROAD_EDGE_* lines) without
    # crossing one; 1.5 m puts 99.5-100 % of moving WOMD vehicle boxes on the area (lanes alone: 45-95 %)
    edge_gap: float = 1.5

    def __post_init__(self):
        if self.width_method not in ("rectangle", "area_over_length"):
            raise ValueError(f"width_method must be 'rectangle' or 'area_over_length', got {self.width_method!r}")
        if self.drivable not in ("lanes", "source"):
            raise ValueError(f"drivable must be 'lanes' or 'source', got {self.drivable!r}")
        if not self.edge_gap >= 0:
            raise ValueError(f"edge_gap must be >= 0, got {self.edge_gap}")
        if self.crop_margin is not None and not self.crop_margin > 0:
            raise ValueError(f"crop_margin must be positive or None, got {self.crop_margin}")


def load(path, config: ImportConfig | None = None) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) from one ScenarioNet pickle or a directory of them.

    A bad file raises ImportDataError when loaded alone; in a directory it is an error line and
    the others still load (an error is raised only if none loads)."""
    path, config = Path(path), config or ImportConfig()
    if not path.is_dir():
        return [load_file(path, config)], []
    return load_each(path, _scenario_files(path), lambda f: load_file(f, config), "ScenarioNet scenario pickle (*.pkl)")


def load_file(path, config: ImportConfig | None = None) -> Scenario:
    path = Path(path)
    raw = _read(path)
    try:
        return convert(raw, str(path), config or ImportConfig())
    except ImportDataError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ImportDataError(f"{path}: malformed scenario ({type(e).__name__}: {e})") from e


def _scenario_files(directory: Path) -> list[Path]:
    mapping = directory / "dataset_mapping.pkl"
    if mapping.is_file():  # a ScenarioNet database: file name -> sub-directory
        table = _read(mapping)
        if isinstance(table, dict):
            return [directory / str(sub) / str(name) for name, sub in sorted(table.items())]
    return sorted(p for p in directory.glob("*.pkl") if p.name not in INDEX_FILES)


def _read(path: Path):
    """One ScenarioNet pickle through the shared allow-list (drivesim.core.safe_pickle)."""
    try:
        return safe_pickle.load_file(path)
    except OSError as e:
        raise ImportDataError(f"{path}: cannot read ({e})") from e
    except Exception as e:  # a garbled pickle raises almost anything
        raise ImportDataError(f"{path}: not a readable ScenarioNet pickle ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------- agents
def convert(raw: dict, file: str, config: ImportConfig) -> Scenario:
    """One ScenarioNet scenario dict -> Scenario (`file` names it in errors and meta)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("metadata"), dict):
        raise ImportDataError(f"{file}: expected a scenario dict with 'metadata', got {type(raw).__name__}")
    missing = [k for k in ("tracks", "map_features") if k not in raw]
    if missing:
        raise ImportDataError(f"{file}: missing top-level keys {missing}")
    md = raw["metadata"]
    dataset, sdc = str(md.get("dataset", "unknown")), str(md.get("sdc_id"))
    scene = str(md.get("scenario_id", raw.get("id", Path(file).stem)))
    tr = _tracks(raw, file, dataset, sdc)
    ag = _agents(tr, _timestamps(md, tr["valid"].shape[1], file), sdc, file)
    log, valid, order = ag["log"], ag["valid"], ag["order"]
    road, lane_ids, road_meta = _build_road(raw, file, dataset, ag["origin"], log[valid][:, :2], config, f"{SOURCE}/{scene}")
    try:
        route = route_from_path(road.lanes, log[0, valid[0], :2], log[0, valid[0], 2])
    except ValueError as e:
        raise ImportDataError(f"{file}: no lane route along the ego's path ({e})") from e
    lights, unmapped = _traffic_lights(raw.get("dynamic_map_states") or {}, lane_ids, ag, file)
    meta = {
        "source": SOURCE, "file": Path(file).name, "scene": scene, "dataset": dataset, "origin": ag["origin"].tolist(),
        "num_agents": len(order), "skipped_no_valid": len(tr["ids"]) - len(order),
        "counts": _count(tr["types"][i] for i in order), "source_counts": _count(tr["types"]),
        "subtypes": _count(tr["subtypes"][i] for i in order), "track_ids": [tr["ids"][i] for i in order],
        "size_swapped": int(tr["swapped"][order].sum()), "speed_end_filled": tr["speed_end_filled"],
        "resampled_from_dt": ag["resampled_from_dt"], **road_meta,
        "traffic_lights": lights, "traffic_lights_unmapped": unmapped,
    }
    vmax = np.where(valid, log[..., 3], 0.0).max(axis=1)
    sc = Scenario(
        name=f"{SOURCE}/{scene}", road=road, x=log[:, 0, 0].copy(), y=log[:, 0, 1].copy(), yaw=log[:, 0, 2].copy(),
        speed=log[:, 0, 3].copy(), length=tr["length"][order], width=tr["width"][order], agent_type=tr["agent_type"][order],
        mode=np.array([int(ControlMode.POLICY)] + [int(ControlMode.REPLAY)] * (len(order) - 1)),
        desired_speed=np.maximum(vmax, 1.0), route=route, duration=round((log.shape[1] - 1) * DT, 6), dt=DT,
        log=log, log_valid=valid, meta=meta,
    )
    sc.validate()
    return sc


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        out[str(k)] = out.get(str(k), 0) + 1
    return dict(sorted(out.items()))


def _timestamps(md: dict, T: int, file: str) -> np.ndarray:
    if md.get("ts") is None:
        return np.arange(T) * float(md.get("sample_rate", DT))
    ts = np.asarray(md["ts"], dtype=float).reshape(-1)
    if len(ts) != T or not (np.diff(ts) > 0).all():
        raise ImportDataError(f"{file}: metadata.ts must hold {T} increasing stamps (one per track step), got {len(ts)}")
    return ts


def _agents(tr: dict, ts: np.ndarray, sdc: str, file: str) -> dict:
    """Ego first, then every other track with a valid step (file order), on the DT grid, minus the
    ego's first position; invalid steps hold the nearest earlier (else the first) valid state."""
    if sdc not in tr["ids"]:
        raise ImportDataError(f"{file}: sdc_id {sdc!r} is not among the tracks")
    t_new = ts[0] + np.arange(int(np.floor((ts[-1] - ts[0]) / DT + 1e-6)) + 1) * DT
    if len(t_new) < 2:
        raise ImportDataError(f"{file}: the log spans {ts[-1] - ts[0]:.3f} s, less than one {DT} s step")
    same = len(t_new) == len(ts) and np.allclose(ts, t_new, atol=1e-3)
    xy, yaw, speed, valid = (tr["xy"], tr["yaw"], tr["speed"], tr["valid"]) if same else \
        _resample(ts, t_new, tr["xy"], tr["yaw"], tr["speed"], tr["valid"])
    ego = tr["ids"].index(sdc)
    if not valid[ego].any():
        raise ImportDataError(f"{file}: the ego track {sdc!r} has no valid step")
    order = np.array([ego] + [i for i in range(len(tr["ids"])) if i != ego and valid[i].any()])
    xy, yaw, speed, valid = xy[order], yaw[order], speed[order], valid[order]
    origin = xy[0, valid[0].argmax()].copy()
    log = np.concatenate([xy - origin, yaw[..., None], speed[..., None]], axis=-1)
    idx = np.maximum.accumulate(np.where(valid, np.arange(valid.shape[1]), -1), axis=1)
    idx = np.where(idx < 0, valid.argmax(axis=1)[:, None], idx)
    return {"log": np.take_along_axis(log, idx[..., None], axis=1), "valid": valid, "order": order, "origin": origin,
            "ts": ts, "t_new": t_new, "resampled_from_dt": None if same else float(np.median(np.diff(ts)))}


def _per_step(v, T: int, what: str, file: str, track: str) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        return np.full(T, float(a))
    a = a.reshape(len(a), -1)[:, 0] if a.ndim == 2 else a
    if a.shape != (T,):
        raise ImportDataError(f"{file}: track {track!r} field {what!r} has shape {np.shape(v)}, expected [{T}] or [{T}, 1]")
    return a


def _track(tid: str, t: dict, T: int, file: str, dataset: str):
    """(type, sub-type, AgentType, xy [T, 2], heading [T], velocity [T, 2] (NaN if absent),
    valid [T], (length, width) median over valid steps) of one track, checked."""
    st = t.get("state") if isinstance(t, dict) else None
    if not isinstance(st, dict):
        raise ImportDataError(f"{file}: track {tid!r} has no 'state' dict")
    kind = t.get("type")
    if kind not in TRACK_TYPES:
        raise ImportDataError(f"{file}: track {tid!r} has unknown type {kind!r} (known: {', '.join(TRACK_TYPES)})")
    at, sub = TRACK_TYPES[kind], (t.get("metadata") or {}).get("type", kind)
    if dataset == "nuscenes" and sub != kind and NUSCENES_CATEGORIES.get(sub) != at:
        problem = "unknown nuScenes category" if sub not in NUSCENES_CATEGORIES else f"type {kind!r} contradicts category"
        raise ImportDataError(f"{file}: track {tid!r}: {problem} {sub!r}")
    pos = np.asarray(st["position"], dtype=float)
    if pos.ndim != 2 or pos.shape[0] != T or pos.shape[1] < 2:
        raise ImportDataError(f"{file}: track {tid!r} position has shape {pos.shape}, expected [{T}, 2 or 3]")
    vel = np.asarray(st["velocity"], dtype=float) if st.get("velocity") is not None else np.full((T, 2), np.nan)
    if vel.shape != (T, 2):
        raise ImportDataError(f"{file}: track {tid!r} velocity has shape {vel.shape}, expected [{T}, 2]")
    heading = _per_step(st["heading"], T, "heading", file, tid)
    ok = (_per_step(st["valid"], T, "valid", file, tid) > 0) & np.isfinite(pos[:, :2]).all(axis=1) & np.isfinite(heading)
    size = []
    for k in ("length", "width"):
        a = _per_step(st.get(k, 0.0), T, k, file, tid)
        good = ok & np.isfinite(a) & (a > 0)
        size.append(float(np.median(a[good])) if good.any() else np.nan)
    size = tuple(size) if np.isfinite(size).all() else FALLBACK_SIZE[at]
    return kind, str(sub), at, pos[:, :2], heading, vel, ok, size


def _tracks(raw: dict, file: str, dataset: str, sdc: str) -> dict:
    """All tracks stacked: xy [N, T, 2], yaw, speed [N, T], valid [N, T] bool, sizes and types [N]."""
    tracks = raw["tracks"]
    if not isinstance(tracks, dict) or not tracks:
        raise ImportDataError(f"{file}: 'tracks' must be a non-empty dict")
    T = int(raw.get("length") or len(np.asarray(next(iter(tracks.values()))["state"]["valid"])))
    ids = [str(k) for k in tracks]
    kind, sub, at, xy, yaw, vel, valid, size = zip(*(_track(i, t, T, file, dataset) for i, t in zip(ids, tracks.values())))
    xy, vel, valid, size = np.stack(xy), np.stack(vel), np.stack(valid), np.array(size)
    swapped = (np.array(ids) == sdc) & (size[:, 1] > size[:, 0])  # ScenarioNet's nuScenes ego: 1.73 long, 4.08 wide
    size[swapped] = size[swapped][:, ::-1]
    xy = np.where(valid[..., None], xy, 0.0)
    speed, filled = _speeds(xy, vel, valid)
    return {"ids": ids, "types": list(kind), "subtypes": list(sub), "agent_type": np.array([int(a) for a in at]),
            "xy": xy, "yaw": np.where(valid, (np.stack(yaw) + np.pi) % (2 * np.pi) - np.pi, 0.0), "speed": speed,
            "valid": valid, "length": size[:, 0], "width": size[:, 1], "swapped": swapped, "speed_end_filled": filled}


def _speeds(xy, vel, valid):
    """|velocity| where given, else from positions. ScenarioNet's nuScenes velocities are forward
    differences, exactly zero at the last valid step of each run: that step takes the previous
    step's speed. Returns (speed [N, T], number of steps so filled)."""
    step = np.where(valid[:, 1:] & valid[:, :-1], np.linalg.norm(np.diff(xy, axis=1), axis=-1) / DT, 0.0)
    fd = np.concatenate([step, step[:, -1:]], axis=1)
    given = np.isfinite(vel).all(-1)
    speed = np.where(valid, np.where(given, np.linalg.norm(np.nan_to_num(vel), axis=-1), fd), 0.0)
    last = valid.copy()
    last[:, :-1] &= ~valid[:, 1:]
    fix = np.zeros_like(valid)
    fix[:, 1:] = last[:, 1:] & valid[:, :-1] & given[:, 1:] & (vel[:, 1:] == 0).all(-1) & (speed[:, :-1] > 0)
    speed[:, 1:] = np.where(fix[:, 1:], speed[:, :-1], speed[:, 1:])
    return speed, int(fix.sum())


def _resample(ts, t_new, xy, yaw, speed, valid):
    """Linear interpolation of the tracks from stamps ts [T] to t_new [T'] (headings on the circle);
    a new step is valid where the source steps it lies between are valid."""
    k = np.clip(np.searchsorted(ts, t_new, side="right") - 1, 0, len(ts) - 2)
    w = np.clip((t_new - ts[k]) / (ts[k + 1] - ts[k]), 0.0, 1.0)
    lerp = lambda a: a[:, k] * (1 - w) + a[:, k + 1] * w
    dyaw = (yaw[:, k + 1] - yaw[:, k] + np.pi) % (2 * np.pi) - np.pi
    v = np.where(w < 1e-6, valid[:, k], np.where(w > 1 - 1e-6, valid[:, k + 1], valid[:, k] & valid[:, k + 1]))
    new_yaw = (yaw[:, k] + w * dyaw + np.pi) % (2 * np.pi) - np.pi
    return np.stack([lerp(xy[..., 0]), lerp(xy[..., 1])], -1), new_yaw, lerp(speed), v


# ------------------------------------------------------------------------------------- map
def _build_road(raw: dict, file: str, dataset: str, origin: np.ndarray, agent_xy: np.ndarray,
                config: ImportConfig, name: str):
    """RoadMap, the source feature id of each lane, and meta about the map."""
    feats = raw["map_features"]
    if not isinstance(feats, dict):
        raise ImportDataError(f"{file}: 'map_features' must be a dict, got {type(feats).__name__}")
    ftypes = [str(f.get("type")) if isinstance(f, dict) else "?" for f in feats.values()]
    lines, degenerate, cropped = _lane_lines(feats, ftypes, file, origin, agent_xy, config, dataset != "nuscenes")
    lanes, polys, sourced_speed = [], [], 0
    for fid, f, pl, length, z in lines:
        width, poly = _lane_width(f, length, origin, config)
        vmax, sourced = _speed_limit(f, dataset, config)
        kind = "connector" if LANE_KINDS[f["type"]] == "connector" or (dataset == "nuscenes" and poly is None) else "lane"
        lanes.append(Lane(pl, width=width, speed_limit=vmax, kind=kind, z=z))
        polys.append(poly)
        sourced_speed += sourced
    ids = [fid for fid, *_ in lines]
    index = {fid: i for i, fid in enumerate(ids)}
    n_source = apply_source_links(lanes, *([[index[x] for x in _ids(f.get(k)) if x in index] for _, f, *_ in lines]
                                           for k in ("exit_lanes", "entry_lanes", "left_neighbor", "right_neighbor")))
    infer_links(lanes)  # fills only what the source left empty
    capped = cap_successors(lanes, MAX_SUCCESSORS)
    drivable, note, drivable_summary = _drivable(feats, origin, lanes, polys, config)
    try:
        road = RoadMap(name, lanes, drivable=drivable)
    except ValueError as e:
        raise ImportDataError(f"{file}: bad map geometry ({e})") from e
    n_links = sum(len(l.successors) + (l.left >= 0) + (l.right >= 0) for l in lanes)
    n_default = len(lanes) - sourced_speed
    meta = {
        "map_feature_counts": _count(ftypes), "lanes": len(lanes), "lanes_degenerate": degenerate,
        "lanes_cropped": cropped, "crop_margin": config.crop_margin, "lane_links_source": n_source,
        "lane_links_inferred": n_links - n_source, "successors_capped": capped,
        "lane_width_from_polygon": sum(p is not None for p in polys), "lanes_with_z": sum(l.z is not None for l in lanes),
        "speed_limit": "source" if not n_default else
        f"default {config.default_speed_limit} m/s (urban) on {n_default} of {len(lanes)} lanes",
        "road_edges": sum(t.startswith("ROAD_EDGE") for t in ftypes), "drivable": note,
        "drivable_summary": drivable_summary,
    }
    return road, ids, meta


def _lane_lines(feats: dict, ftypes: list[str], file: str, origin, agent_xy, config: ImportConfig, has_z: bool):
    """[(id, feature, centerline [P, 2] minus origin, length, z [P] or None)] of the usable lanes
    near the agents, and the numbers of degenerate and cropped lanes. `has_z`: the polylines' third
    column is the height (Waymo and the other datasets ScenarioNet converts; not nuScenes)."""
    cand = [(str(fid), f) for (fid, f), t in zip(feats.items(), ftypes) if t in LANE_KINDS]
    if not cand:
        raise ImportDataError(f"{file}: the map has no lanes (feature types: {_count(ftypes) or 'none'})")
    lines = []
    for fid, f in cand:
        pl = np.asarray(f.get("polyline"), dtype=float)  # nuScenes: [P, 3] with the lane heading (not z) third
        if pl.ndim != 2 or pl.shape[1] < 2:
            raise ImportDataError(f"{file}: lane {fid!r} polyline has shape {pl.shape}, expected [P, 2 or 3]")
        z = pl[:, 2] if pl.shape[1] >= 3 and has_z else None
        pl = pl[:, :2] - origin
        keep = np.concatenate([[True], np.linalg.norm(np.diff(pl, axis=0), axis=1) > 1e-3]) if len(pl) else slice(None)
        pl, z = pl[keep], (z[keep] if z is not None else None)
        length = float(np.linalg.norm(np.diff(pl, axis=0), axis=1).sum()) if len(pl) > 1 else 0.0
        if len(pl) >= 2 and np.isfinite(pl).all() and length >= config.min_lane_length:
            lines.append((fid, f, pl, length, z if z is not None and np.isfinite(z).all() else None))
    if not lines:
        raise ImportDataError(f"{file}: all {len(cand)} lanes are degenerate (< 2 points or < {config.min_lane_length} m)")
    degenerate, n = len(cand) - len(lines), len(lines)
    if config.crop_margin is not None:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(agent_xy).query(np.concatenate([l[2] for l in lines]), distance_upper_bound=config.crop_margin)
        near = np.minimum.reduceat(d, np.cumsum([0] + [len(l[2]) for l in lines[:-1]])) <= config.crop_margin
        lines = [l for l, k in zip(lines, near) if k]
        if not lines:
            raise ImportDataError(f"{file}: no lane lies within {config.crop_margin} m of the logged agents")
    return lines, degenerate, n - len(lines)


def _lane_width(f: dict, length: float, origin: np.ndarray, config: ImportConfig):
    """(width, polygon or None): from the lane polygon (ImportConfig.width_method), else from the
    source's per-point distances to the left and right boundaries (Waymo), else the default."""
    lo, hi = config.width_range
    if f.get("polygon") is not None and len(f["polygon"]) >= 3:
        geom = Polygon(np.asarray(f["polygon"], dtype=float)[:, :2] - origin).buffer(0)
        if not geom.is_empty and geom.area > 0:
            area, perimeter = geom.area, geom.length
            # a strip of length L and width W: area LW, perimeter 2(L + W); W is the smaller root
            width = area / length if config.width_method == "area_over_length" else \
                0.25 * (perimeter - np.sqrt(max(perimeter**2 - 16 * area, 0.0)))
            return float(np.clip(width, lo, hi)), geom
    w = np.asarray(f.get("width", np.zeros((0, 2))), dtype=float)
    if w.ndim == 2 and w.shape[1] == 2:
        full = w.sum(axis=1)
        full = full[np.isfinite(full) & (full > 0)]
        if len(full):
            return float(np.clip(np.median(full), lo, hi)), None
    return config.default_width, None


def _speed_limit(f: dict, dataset: str, config: ImportConfig) -> tuple[float, bool]:
    """(m/s, from the source?). nuScenes lane connectors carry a 100 km/h placeholder: ignored."""
    kmh = f.get("speed_limit_kmh")
    if kmh is None and f.get("speed_limit_mph") is not None:
        kmh = float(f["speed_limit_mph"]) * 1.609344
    if dataset != "nuscenes" and kmh is not None and float(kmh) > 0:
        return float(kmh) / 3.6, True
    return config.default_speed_limit, False


def _ids(v) -> list[str]:
    """Feature ids from a list of ids or of neighbour dicts ({'feature_id': ...}, Waymo style)."""
    if v is None:
        return []
    return [str(x["feature_id"]) if isinstance(x, dict) else str(x) for x in np.asarray(v, dtype=object).reshape(-1)]


def _road_edges(feats: dict, origin: np.ndarray) -> list[np.ndarray]:
    """Road-edge polylines [P, 2] minus origin: ROAD_EDGE_* features and ScenarioNet-nuScenes
    `boundary_*` lines (closed rings: the outlines and holes of nuScenes' drivable_area polygons)."""
    edges = []
    for fid, f in feats.items():
        if isinstance(f, dict) and (str(f.get("type", "")).startswith("ROAD_EDGE") or str(fid).startswith("boundary_")):
            pl = np.asarray(f.get("polyline"), dtype=float)
            if pl.ndim == 2 and pl.shape[1] >= 2 and len(pl) >= 2:
                edges.append(pl[:, :2] - origin)
    return edges


def _driveways(feats: dict, origin: np.ndarray) -> list[np.ndarray]:
    """Polygons [N, 2] minus origin of the DRIVEWAY features (Waymo): drivable, though no lane runs there."""
    out = []
    for f in feats.values():
        if isinstance(f, dict) and str(f.get("type", "")) == "DRIVEWAY" and f.get("polygon") is not None:
            p = np.asarray(f["polygon"], dtype=float)
            if p.ndim == 2 and p.shape[1] >= 2 and len(p) >= 3 and np.isfinite(p[:, :2]).all():
                out.append(p[:, :2] - origin)
    return out


def _drivable(feats: dict, origin: np.ndarray, lanes: list[Lane], polys: list, config: ImportConfig):
    """(drivable area, note, summary m^2 / counts) from `map.drivable_area`: the lane polygons
    (buffered centerlines for lanes without one) and, with drivable="source", the even-odd fill of the
    closed road-edge rings near them, the growth up to open road edges and the driveways."""
    bare = [lane for lane, p in zip(lanes, polys) if p is None]
    source = config.drivable == "source"
    edges, driveways = (_road_edges(feats, origin), _driveways(feats, origin)) if source else ([], [])
    area, summary = drivable_area_parts(polys, edges, [l.centerline for l in bare], [l.width for l in bare],
                                        areas=driveways, config=DrivableAreaConfig(edge_gap=config.edge_gap))
    note = summary["note"] + ("" if not source or summary["rings"] else "; no closed road-edge ring near the lanes")
    return area, note, {k: summary[k] for k in ("lane_area", "area", "rings", "open_edges")}


def _traffic_lights(dms: dict, lane_ids: list[str], ag: dict, file: str) -> tuple[dict, int]:
    """{lane index: {"state": [T+1] red|yellow|green|unknown, "stop_point": [x, y]}} from the
    logged light states (nearest source step), and the number of lights on lanes not in the map."""
    if not isinstance(dms, dict):
        raise ImportDataError(f"{file}: 'dynamic_map_states' must be a dict")
    index = {fid: i for i, fid in enumerate(lane_ids)}
    ts = ag["ts"]
    k = np.abs(ag["t_new"][:, None] - ts[None]).argmin(axis=1)  # nearest source step
    out, unmapped = {}, 0
    for sid, s in dms.items():
        states = list(((s.get("state") or {}).get("object_state")) or [])
        bad = {x for x in states if x not in LIGHT_STATES}
        if bad:
            raise ImportDataError(f"{file}: traffic light {sid!r} has unknown states {sorted(map(str, bad))}")
        lane = str(s.get("lane", sid))
        if lane not in index:
            unmapped += 1
            continue
        simple = np.array(([LIGHT_STATES[x] for x in states] + ["unknown"] * len(ts))[: len(ts)], dtype=object)
        stop = np.asarray(s.get("stop_point", [np.nan, np.nan]), dtype=float).reshape(-1)[:2] - ag["origin"]
        out[index[lane]] = {"state": simple[k].tolist(), "stop_point": stop.tolist()}
    return out, unmapped
