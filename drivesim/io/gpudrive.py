"""GPUDrive / Nocturne JSON scenes (Waymo Open Motion converted) -> `Scenario`.

A file holds one scene: `objects` (per track: `position` [{x, y, z}] x 91, `heading` [91],
`velocity` [{x, y}] x 91, `valid` [91], `length`, `width`, `type` vehicle|pedestrian|cyclist,
`id`, `goalPosition`), `roads` (typed polylines: lane, road_edge, road_line, crosswalk,
driveway, speed_bump, stop_sign, with Waymax's `map_element_id`), `tl_states` and `metadata`
(`sdc_track_index` and `tracks_to_predict[].track_index`: indices into `objects`;
`objects_of_interest`: track ids). The scene then goes through the same conversion as the WOMD
TFRecord importer (`womd.build_scenario`: SDC as ego, lanes, drivable area, logged signals).

Differences from the TFRecord: the layout carries no lane links (entry/exit lanes, neighbours)
and no speed limits, so links are inferred from geometry and every lane gets the urban default;
bike lanes are `map_element_id` 3 (Waymax MapElementIds: 0 undefined, 1 freeway, 2 surface
street, 3 bike lane). `tl_states` in Nocturne's layout, {lane id: {"state": [names], "x": [..],
"y": [..], "time_index": [..]}}, become per-step signal states (names as map.proto's
LANE_STATE_* without the prefix, any case).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType
from drivesim.io.errors import ImportDataError, load_each
from drivesim.io.womd import SIGNAL_STATE, ImportConfig, SourceScene, build_scenario
from drivesim.io.womd_schema import SIGNAL_STATES

SOURCE = "gpudrive"
OBJECT_TYPES = {"vehicle": AgentType.VEHICLE, "pedestrian": AgentType.PEDESTRIAN, "cyclist": AgentType.CYCLIST,
                "other": AgentType.STATIC}
BIKE_LANE = 3  # Waymax MapElementIds.LANE_BIKE_LANE
AREA_TYPES = ("driveway", "speed_bump")
SIGNAL_NAMES = {name.removeprefix("LANE_STATE_").lower(): SIGNAL_STATE[code] for code, name in SIGNAL_STATES.items()}

def _xyz(points, where: str) -> np.ndarray:
    try:
        return np.array([(float(p["x"]), float(p["y"]), float(p.get("z", 0.0))) for p in points], float).reshape(-1, 3)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise ImportDataError(f"{where}: bad point list ({type(e).__name__}: {e})") from e


def _objects(objs: list, file: str):
    if not isinstance(objs, list) or not objs:
        raise ImportDataError(f"{file}: 'objects' must be a non-empty list")
    T = len(objs[0].get("position", [])) if isinstance(objs[0], dict) else 0
    N = len(objs)
    xy, z, yaw, vel = np.zeros((N, T, 2)), np.zeros((N, T)), np.zeros((N, T)), np.zeros((N, T, 2))
    valid, size, types, ids = np.zeros((N, T), bool), np.zeros((N, 2)), [], []
    for i, o in enumerate(objs):
        where = f"{file}: objects[{i}]"
        try:
            kind = str(o["type"]).lower()
            if kind not in OBJECT_TYPES:
                raise ImportDataError(f"{where}: unknown type {o['type']!r} (known: {', '.join(OBJECT_TYPES)})")
            p = _xyz(o["position"], where + ".position")
            v = np.array([(float(q["x"]), float(q["y"])) for q in o["velocity"]], float).reshape(-1, 2)
            h, ok = np.asarray(o["heading"], float).reshape(-1), np.asarray(o["valid"], bool).reshape(-1)
            if not (len(p) == len(v) == len(h) == len(ok) == T):
                raise ImportDataError(f"{where}: position/velocity/heading/valid have {len(p)}/{len(v)}/{len(h)}/{len(ok)} "
                                      f"steps, expected {T}")
            xy[i], z[i], yaw[i], vel[i], valid[i] = p[:, :2], p[:, 2], h, v, ok & np.isfinite(p).all(1) & np.isfinite(h)
            size[i] = (float(o["length"]), float(o["width"]))
            ids.append(int(o.get("id", i)))
        except ImportDataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ImportDataError(f"{where}: malformed object ({type(e).__name__}: {e})") from e
        types.append(OBJECT_TYPES[kind])
    size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
    return xy, z, yaw, vel, valid, size, types, ids


def _signals(tl, T: int, file: str) -> dict:
    """Nocturne-layout `tl_states` -> {lane id: {"state": [T] simplified, "stop_point": [x, y]}}."""
    if not tl:
        return {}
    if not isinstance(tl, dict):
        raise ImportDataError(f"{file}: 'tl_states' must be a dict of lane id -> states, got {type(tl).__name__}")
    out = {}
    for lane, s in tl.items():
        where = f"{file}: tl_states[{lane!r}]"
        try:
            names, xs, ys = list(s["state"]), list(s["x"]), list(s["y"])
            steps = [int(k) for k in s.get("time_index", range(len(names)))]
        except (KeyError, TypeError, ValueError) as e:
            raise ImportDataError(f"{where}: needs state, x, y (and time_index) lists ({type(e).__name__}: {e})") from e
        bad = sorted({str(n) for n in names if str(n).lower().removeprefix("lane_state_") not in SIGNAL_NAMES})
        if bad or not (len(names) == len(xs) == len(ys) == len(steps)) or not names:
            raise ImportDataError(f"{where}: unknown states {bad} or lists of unequal length")
        state = ["unknown"] * T
        for n, k in zip(names, steps):
            if 0 <= k < T:
                state[k] = SIGNAL_NAMES[str(n).lower().removeprefix("lane_state_")]
        out[int(lane)] = {"state": state, "stop_point": [float(xs[0]), float(ys[0])]}
    return out


def source_scene(raw: dict, file: str) -> SourceScene:
    """A GPUDrive JSON dict -> the SourceScene of the WOMD importers."""
    if not isinstance(raw, dict) or "objects" not in raw or "roads" not in raw:
        raise ImportDataError(f"{file}: not a GPUDrive/Nocturne scene (needs 'objects' and 'roads')")
    xy, z, yaw, vel, valid, size, types, ids = _objects(raw["objects"], file)
    md = raw.get("metadata") or {}
    if "sdc_track_index" not in md:
        raise ImportDataError(f"{file}: metadata.sdc_track_index is missing (which object is the SDC)")
    src = SourceScene(scene=str(raw.get("scenario_id") or Path(file).stem), file=file, xy=xy, z=z, yaw=yaw, vel=vel,
                      valid=valid, size=size, types=types, ids=ids, sdc=int(md["sdc_track_index"]),
                      predict=[int(t["track_index"]) for t in md.get("tracks_to_predict", [])],
                      interest=[int(i) for i in md.get("objects_of_interest", [])],
                      signals=_signals(raw.get("tl_states"), xy.shape[1], file),
                      extra={"goal_positions_given": sum("goalPosition" in o for o in raw["objects"]),
                             "mark_as_expert": sum(bool(o.get("mark_as_expert")) for o in raw["objects"])})
    for k, r in enumerate(raw["roads"]):
        where = f"{file}: roads[{k}]"
        if not isinstance(r, dict) or "geometry" not in r:
            raise ImportDataError(f"{where}: needs 'type' and 'geometry'")
        kind, pts = str(r.get("type")), _xyz(r["geometry"], where)
        if kind == "lane":
            src.lanes.append({"id": int(r.get("id", k)), "xyz": pts, "speed_mph": 0.0,
                              "bike": r.get("map_element_id") == BIKE_LANE, "interpolating": False,
                              "entry": [], "exit": [], "left": [], "right": []})
        elif kind == "road_edge":
            src.road_edges.append(pts)
        elif kind == "crosswalk":
            src.crosswalks.append(pts)
        elif kind in AREA_TYPES:
            src.areas.append(pts)
        elif kind == "stop_sign" and len(pts):
            src.stop_signs.append(pts[0])
    return src


def load_file(path, config: ImportConfig | None = None) -> Scenario:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise ImportDataError(f"{path}: cannot read ({e})") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise ImportDataError(f"{path}: not a JSON file ({type(e).__name__}: {e})") from e
    sc = build_scenario(source_scene(raw, str(path)), config or ImportConfig(), SOURCE)
    sc.meta["file"] = path.name
    return sc


def source_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def load(path, config: ImportConfig | None = None) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) from one GPUDrive JSON file or a directory of them; a bad file in a
    directory is an error line (an error is raised only when none loads)."""
    path, config = Path(path), config or ImportConfig()
    if not path.exists():
        raise ImportDataError(f"{path}: no such file or directory")
    if path.is_file():
        return [load_file(path, config)], []
    return load_each(path, source_files(path), lambda f: load_file(f, config), "GPUDrive JSON file (*.json)")
