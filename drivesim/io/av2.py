"""Argoverse 2 motion-forecasting scenarios -> `Scenario` (one per scenario folder).

A scenario folder holds `scenario_<id>.parquet` (one row per track and 10 Hz timestep: 110 steps,
11 s) and its vector map `log_map_archive_<...>.json` (lane segments with left/right boundaries,
successors, neighbour ids; drivable-area polygons; pedestrian crossings).

Choices (all recorded in `Scenario.meta`):
- The ego is the track 'AV' (the recording vehicle); the scenario's focal track is only noted.
- AV2 gives no box sizes: every agent gets its type's default size (`AV2_TYPES`).
- Types: an explicit table; 'background' and 'unknown' become 1 m x 1 m STATIC objects (AV2's
  own API counts 'background' among the static types; 'unknown' has no class to size it by and
  every non-ego agent replays its log anyway, so only the collision class depends on it). A type
  missing from the table is an error.
- Lanes: VEHICLE and BUS lane segments; BIKE segments (about 1.7 m wide, for cyclists) are left
  out unless `include_bike_lanes`. Centreline = mean of the two boundaries resampled by arc length
  to the same number of points; width = mean distance between them. Intersection segments are
  kind 'connector'. AV2's left/right neighbour ids may name an opposite-direction lane: only
  same-direction neighbours are kept; missing links are then inferred from geometry.
- AV2 maps carry no speed limits: every lane gets 13.9 m/s (urban default).
- Heights: a lane's z is the mean of its boundaries' z (resampled like the centreline). Drivable
  area: `map.drivable_area` of the lane outlines (left boundary + reversed right boundary) and the
  map's `drivable_areas` polygons.
- All rows of a track are valid steps: AV2's `observed` column marks the 5 s history that
  forecasting models may see, not visibility, so it is ignored.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode
from drivesim.io.errors import ImportDataError, load_each
from drivesim.map.drivable_area import drivable_area_parts
from drivesim.map.linking import count_links, infer_links, route_from_path
from drivesim.map.road import Lane, RoadMap

DT = 0.1  # s: AV2 motion-forecasting rate (10 Hz), also drivesim's
DEFAULT_SPEED_LIMIT = 13.9  # m/s, urban default: AV2 maps give no speed limits
EGO_TRACK = "AV"
LANE_TYPES = ("VEHICLE", "BUS")  # lane segments kept as drivesim lanes ("BIKE" only on request)
LANE_SPACING = 2.0  # m: at most this far between resampled centreline points
REQUIRED_COLUMNS = ("track_id", "object_type", "timestep", "position_x", "position_y", "heading", "velocity_x", "velocity_y")

# AV2 object_type -> (AgentType, default length m, default width m)
AV2_TYPES: dict[str, tuple[AgentType, float, float]] = {
    "vehicle": (AgentType.VEHICLE, 4.5, 1.9),
    "bus": (AgentType.VEHICLE, 12.0, 2.6),
    "pedestrian": (AgentType.PEDESTRIAN, 0.7, 0.7),
    "cyclist": (AgentType.CYCLIST, 2.0, 0.7),
    "motorcyclist": (AgentType.CYCLIST, 2.0, 0.7),
    "riderless_bicycle": (AgentType.STATIC, 2.0, 0.7),
    "static": (AgentType.STATIC, 1.0, 1.0),
    "construction": (AgentType.STATIC, 1.0, 1.0),
    "background": (AgentType.STATIC, 1.0, 1.0),
    "unknown": (AgentType.STATIC, 1.0, 1.0),
}

def load(path, include_bike_lanes: bool = False) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) from one `scenario_*.parquet` file, one scenario folder, or a directory of them.

    A bad scenario in a directory is an error line and skipped; ImportDataError is raised only when
    nothing could be loaded (or for a single file)."""
    path = Path(path)
    if path.is_file():
        return [load_scenario(path, include_bike_lanes=include_bike_lanes)], []
    if not path.is_dir():
        raise ImportDataError(f"{path}: no such file or directory")
    return load_each(path, sorted(path.rglob("scenario_*.parquet")),
                     lambda f: load_scenario(f, include_bike_lanes=include_bike_lanes), "scenario_*.parquet file")


def load_scenario(parquet: Path, map_json: Path | None = None, include_bike_lanes: bool = False) -> Scenario:
    """One AV2 scenario; the map defaults to the `log_map_archive_*.json` beside the parquet."""
    parquet = Path(parquet)
    if map_json is None:
        maps = sorted(parquet.parent.glob("log_map_archive_*.json"))
        if not maps:
            raise ImportDataError(f"{parquet}: no map (log_map_archive_*.json) in {parquet.parent}")
        map_json = maps[0]
    map_json = Path(map_json)
    df = _read_tracks(parquet)
    scene = str(df["scenario_id"].iloc[0]) if "scenario_id" in df.columns else parquet.stem.removeprefix("scenario_")
    agents = _agents(df, parquet)
    origin = agents["log"][0][agents["valid"][0]][0, :2].copy()
    agents["log"][..., :2] -= origin
    road, map_meta = _road(map_json, origin, f"av2/{scene}", include_bike_lanes)
    ego_valid = agents["valid"][0]
    try:
        route = route_from_path(road.lanes, agents["log"][0, ego_valid, :2], agents["log"][0, ego_valid, 2])
    except ValueError as e:
        raise ImportDataError(f"{parquet}: no ego route on the map {map_json.name} ({e})") from e
    log, valid = agents["log"], agents["valid"]
    first = valid.argmax(axis=1)  # first valid step per agent
    init = log[np.arange(len(log)), first]  # [A, 4]
    types = agents["types"]
    focal = str(df["focal_track_id"].iloc[0]) if "focal_track_id" in df.columns else None
    meta = {
        "source": "av2", "file": parquet.name, "map_file": map_json.name, "scene": scene,
        "city": str(df["city"].iloc[0]) if "city" in df.columns else None,
        "origin": [float(origin[0]), float(origin[1])], "ego_track_id": EGO_TRACK,
        "focal_track_id": focal,
        "focal_agent_index": agents["ids"].index(focal) if focal in agents["ids"] else None,
        "track_ids": agents["ids"], "num_agents": len(types),
        "source_types": dict(Counter(agents["source_types"])),
        "agent_types": {AgentType(t).name: int(n) for t, n in zip(*np.unique(types, return_counts=True))},
        "agents_skipped_no_valid_step": 0,
        "size_source": "per-type defaults (AV2 gives no box sizes)",
        **map_meta,
    }
    A, T1 = valid.shape
    sc = Scenario(
        name=f"av2/{scene}", road=road, x=init[:, 0], y=init[:, 1], yaw=init[:, 2], speed=init[:, 3],
        length=agents["length"], width=agents["width"], agent_type=types,
        mode=np.array([ControlMode.POLICY] + [ControlMode.REPLAY] * (A - 1), np.int64),
        desired_speed=np.maximum(np.where(valid, log[..., 3], 0.0).max(axis=1), 1.0),
        route=route, duration=(T1 - 1) * DT, dt=DT, log=log, log_valid=valid, meta=meta,
    )
    sc.validate()
    return sc


def _read_tracks(parquet: Path):
    import pandas as pd  # pandas + pyarrow only when AV2 data is read

    if not parquet.is_file():
        raise ImportDataError(f"{parquet}: no such file")
    try:
        import pyarrow  # noqa: F401  (pandas' parquet engine)
    except ImportError as e:
        raise ImportError("reading AV2 parquet files needs pyarrow (pip install 'pyarrow>=22,<26')") from e
    try:
        df = pd.read_parquet(parquet)
    except Exception as e:  # pyarrow raises several types for truncated or garbled files
        raise ImportDataError(f"{parquet}: cannot read the parquet file ({type(e).__name__}: {e})") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ImportDataError(f"{parquet}: missing columns {missing}")
    if df.empty:
        raise ImportDataError(f"{parquet}: no track rows")
    df = df.astype({"track_id": str, "object_type": str})
    if df.duplicated(["track_id", "timestep"]).any():
        raise ImportDataError(f"{parquet}: a track has two rows for one timestep")
    num = df[list(REQUIRED_COLUMNS[2:])].to_numpy(float)
    if not np.isfinite(num).all():
        raise ImportDataError(f"{parquet}: non-finite values in {list(REQUIRED_COLUMNS[2:])}")
    if (df["timestep"] < 0).any():
        raise ImportDataError(f"{parquet}: negative timestep")
    unknown = sorted(set(df["object_type"]) - set(AV2_TYPES))
    if unknown:
        raise ImportDataError(f"{parquet}: unknown object_type {unknown} (known: {sorted(AV2_TYPES)})")
    if EGO_TRACK not in set(df["track_id"]):
        raise ImportDataError(f"{parquet}: no ego track {EGO_TRACK!r}")
    return df


def _agents(df, parquet: Path) -> dict:
    """Per-agent log [A, T+1, 4] (x, y, yaw, speed), validity, ids, types and default sizes; the
    ego first, then the others by first appearance and id. Invalid steps hold the nearest valid
    state so that nothing jumps to (0, 0)."""
    T1 = int(df["timestep"].max()) + 1
    if "num_timestamps" in df.columns:
        T1 = max(T1, int(df["num_timestamps"].iloc[0]))
    if T1 < 2:
        raise ImportDataError(f"{parquet}: needs at least 2 timesteps, got {T1}")
    first_step = df.groupby("track_id")["timestep"].min()
    others = sorted((t for t in first_step.index if t != EGO_TRACK), key=lambda t: (first_step[t], t))
    ids = [EGO_TRACK] + others
    index = {t: i for i, t in enumerate(ids)}
    A = len(ids)
    log = np.zeros((A, T1, 4))
    valid = np.zeros((A, T1), bool)
    a = df["track_id"].map(index).to_numpy()
    t = df["timestep"].to_numpy(int)
    log[a, t, 0] = df["position_x"].to_numpy(float)
    log[a, t, 1] = df["position_y"].to_numpy(float)
    log[a, t, 2] = df["heading"].to_numpy(float)
    log[a, t, 3] = np.hypot(df["velocity_x"].to_numpy(float), df["velocity_y"].to_numpy(float))
    valid[a, t] = True
    _hold_nearest(log, valid)
    kinds = df.groupby("track_id")["object_type"].agg(lambda s: s.iloc[0])
    mixed = df.groupby("track_id")["object_type"].nunique()
    if (mixed > 1).any():
        raise ImportDataError(f"{parquet}: track {mixed[mixed > 1].index[0]!r} changes object_type")
    source_types = [kinds[i] for i in ids]
    spec = [AV2_TYPES[k] for k in source_types]
    return {
        "ids": ids, "source_types": source_types, "log": log, "valid": valid,
        "types": np.array([int(s[0]) for s in spec], np.int64),
        "length": np.array([s[1] for s in spec]), "width": np.array([s[2] for s in spec]),
    }


def _hold_nearest(log: np.ndarray, valid: np.ndarray) -> None:
    """Fill invalid steps of log [A, T, C] with the nearest earlier valid state (the first valid
    state before an agent appears), in place."""
    T = valid.shape[1]
    steps = np.arange(T)
    for a in range(len(log)):
        v = np.nonzero(valid[a])[0]
        if len(v) == 0 or len(v) == T:
            continue
        k = np.clip(np.searchsorted(v, steps, side="right") - 1, 0, None)
        log[a] = log[a, v[k]]


# ---------------------------------------------------------------- map


def _points(raw, where: str) -> np.ndarray:
    try:
        p = np.array([[float(q["x"]), float(q["y"])] for q in raw])
    except (TypeError, KeyError, ValueError) as e:
        raise ImportDataError(f"{where}: bad point list ({e})") from e
    if p.ndim != 2 or len(p) < 2 or not np.isfinite(p).all():
        raise ImportDataError(f"{where}: needs at least 2 finite points")
    return p


def _heights(raw, xy: np.ndarray, n: int) -> np.ndarray | None:
    """The boundary's z at n points equally spaced by arc length along its xy [P, 2]; None when a
    point has no finite z."""
    try:
        z = np.array([float(q["z"]) for q in raw])
    except (TypeError, KeyError, ValueError):
        return None
    if len(z) != len(xy) or not np.isfinite(z).all():
        return None
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    return np.interp(np.linspace(0.0, s[-1], n), s, z)


def _resample_n(p: np.ndarray, n: int) -> np.ndarray:
    """n points equally spaced by arc length along polyline p [P, 2]."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    u = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(u, s, p[:, 0]), np.interp(u, s, p[:, 1])], axis=1)


def midline(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, float]:
    """Centreline [n, 2] (mean of both boundaries resampled to n points by arc length) and width
    (mean distance between the resampled boundaries)."""
    length = max(np.linalg.norm(np.diff(b, axis=0), axis=1).sum() for b in (left, right))
    n = max(len(left), len(right), math.ceil(length / LANE_SPACING) + 1, 2)
    lr, rr = _resample_n(left, n), _resample_n(right, n)
    return 0.5 * (lr + rr), float(np.linalg.norm(lr - rr, axis=1).mean())


def _direction(p: np.ndarray) -> np.ndarray:
    d = p[-1] - p[0]
    return d / max(float(np.linalg.norm(d)), 1e-9)


def _road(map_json: Path, origin: np.ndarray, name: str, include_bike_lanes: bool) -> tuple[RoadMap, dict]:
    try:
        data = json.loads(map_json.read_text())
        segments = data["lane_segments"]
        areas = data.get("drivable_areas", {})
    except FileNotFoundError as e:
        raise ImportDataError(f"{map_json}: no such map file") from e
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ImportDataError(f"{map_json}: not an AV2 map JSON ({type(e).__name__}: {e})") from e
    keep_types = LANE_TYPES + (("BIKE",) if include_bike_lanes else ())
    lanes, ids, raw, outlines, dropped = [], [], [], [], Counter()
    for key, seg in segments.items():
        where = f"{map_json}: lane segment {key}"
        try:
            ltype, left_raw, right_raw = seg.get("lane_type", "VEHICLE"), seg["left_lane_boundary"], seg["right_lane_boundary"]
        except (KeyError, AttributeError) as e:
            raise ImportDataError(f"{where}: missing {e}") from e
        if ltype not in keep_types:
            dropped[f"lane_type_{ltype}"] += 1
            continue
        left, right = _points(left_raw, where) - origin, _points(right_raw, where) - origin
        center, width = midline(left, right)
        zl, zr = _heights(left_raw, left, len(center)), _heights(right_raw, right, len(center))
        lane = Lane(center, width=width, speed_limit=DEFAULT_SPEED_LIMIT,
                    kind="connector" if seg.get("is_intersection") else "lane",
                    z=0.5 * (zl + zr) if zl is not None and zr is not None else None)
        if lane.length < 0.5 or width < 0.5:
            dropped["degenerate"] += 1
            continue
        lanes.append(lane)
        ids.append(int(seg.get("id", key)))
        raw.append(seg)
        outlines.append(Polygon(np.concatenate([left, right[::-1]])))
    if not lanes:
        raise ImportDataError(f"{map_json}: the map has no usable lanes ({len(segments)} lane segments, kept types {keep_types})")
    opposite = _link(lanes, ids, raw)
    given = count_links(lanes)
    added = infer_links(lanes)
    polys = []
    for key, area in areas.items():
        pts = _points(area.get("area_boundary", []), f"{map_json}: drivable area {key}") - origin
        if len(pts) >= 3:
            polys.append(Polygon(pts).buffer(0))
    drivable, summary = drivable_area_parts(outlines, areas=polys)  # lane outlines (left + right boundary) + drivable_areas
    road = RoadMap(name=name, lanes=lanes, drivable=drivable)
    meta = {
        "num_lanes": len(lanes), "lane_segments": len(segments), "lanes_dropped": dict(dropped),
        "lane_ids": ids, "opposite_neighbours_dropped": opposite, "links_given": given, "links_inferred": added,
        "drivable_source": "drivable_areas" if polys else "lane polygons", "drivable": summary["note"],
        "drivable_summary": {k: summary[k] for k in ("lane_area", "area", "rings", "open_edges")},
        "lanes_with_z": sum(l.z is not None for l in lanes),
        "num_drivable_areas": len(polys), "num_pedestrian_crossings": len(data.get("pedestrian_crossings", {})),
        "speed_limit_source": f"default {DEFAULT_SPEED_LIMIT} m/s (urban; AV2 maps give no speed limits)",
    }
    return road, meta


def _link(lanes: list[Lane], ids: list[int], raw: list[dict]) -> int:
    """Successors and same-direction left/right neighbours from the source ids (links to lanes
    not kept are left out); returns how many opposite-direction neighbours were dropped."""
    index = {sid: i for i, sid in enumerate(ids)}
    opposite = 0
    for lane, seg in zip(lanes, raw):
        lane.successors = [index[s] for s in seg.get("successors") or [] if s in index]
        for side in ("left", "right"):
            nb = seg.get(f"{side}_neighbor_id")
            if nb is None or nb not in index:
                continue
            if float(_direction(lane.centerline) @ _direction(lanes[index[nb]].centerline)) > 0.0:
                setattr(lane, side, index[nb])
            else:
                opposite += 1
    return opposite

