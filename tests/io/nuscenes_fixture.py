"""A tiny nuScenes-format dataroot (v1.0-mini tables) rebuilt from the real scene-0061, for tests.

The shared data holds no nuScenes tables, but it holds scene-0061 twice: the ScenarioNet pickle
(10 Hz tracks: the real ego pose log and the 2 Hz annotations interpolated by ScenarioNet, with the
instance tokens and nuScenes category names) and the first keyframe's mmdetection3d info pickle
(its real sample token, timestamp and sensor calibrations). `write_dataroot` turns them into the
13 tables `NuScenes()` loads:

- 191 LIDAR_TOP sample_data at 10 Hz (timestamps t0 + 0.1 s k, t0 the keyframe's), each with its
  ego_pose (the ScenarioNet ego track, yaw-only quaternion); every 5th is a keyframe (2 Hz): 39 samples.
- one sample_annotation per track and keyframe where the track is valid: translation, size (w, l, h),
  yaw quaternion, instance = the track id, category = the track's nuScenes category name.
- log / map / scene / sensor / calibrated_sensor (LIDAR_TOP and the 6 cameras from the keyframe
  pickle) / attribute / visibility records, and a 1x1 placeholder for the map record's PNG (the
  devkit wants the file to exist but reads it only to render). No lidarseg or panoptic tables: the
  devkit loads those only when present.

With `map_expansion=True` it also writes a small synthetic map expansion (v1.3 layout) for the
scene's map: two lanes joined by a lane connector along the logged ego path, a parallel lane chain
3.5 m to its left, a lane far away, and a drivable area around the path.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pyquaternion import Quaternion
from shapely.geometry import LineString

SCENARIONET_FILE = "scenarionet_nuscenes/sd_nuscenes_v1.0-mini_scene-0061.pkl"
KEYFRAME_FILE = "nuscenes_scene0061_kf0/n015-2018-07-24-11-22-45+0800.pkl"
KEYFRAME_EVERY = 5  # 10 Hz steps per 2 Hz keyframe
STEP_US = 100_000
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down")
VISIBILITY = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}


def tok(*parts) -> str:
    """A deterministic 32-hex-digit token, like nuScenes'."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def yaw_quaternion(yaw: float) -> list[float]:
    return list(Quaternion(axis=[0.0, 0.0, 1.0], angle=float(yaw)).elements)


def matrix_quaternion(m) -> list[float]:
    u, _, vt = np.linalg.svd(np.asarray(m, float)[:3, :3])  # re-orthonormalize float32 rotations
    return list(Quaternion(matrix=u @ vt).elements)


def link(records: list[dict]) -> None:
    for a, b in zip(records, records[1:]):
        a["next"], b["prev"] = b["token"], a["token"]


def write_dataroot(root, data_dir, *, version: str = "v1.0-mini", map_expansion: bool = False) -> dict:
    """Write the dataroot under `root`; return {'dataroot', 'scenario' (the ScenarioNet dict), 't0',
    'num_keyframes', 'num_annotations'}."""
    root, data_dir = Path(root), Path(data_dir)
    with open(data_dir / SCENARIONET_FILE, "rb") as f:
        sd = pickle.load(f)
    with open(data_dir / KEYFRAME_FILE, "rb") as f:
        kf = pickle.load(f)["data_list"][0]
    meta, tracks = sd["metadata"], sd["tracks"]
    ego = tracks[meta["sdc_id"]]["state"]
    L = int(sd["length"])
    t0 = int(round(kf["timestamp"] * 1e6))
    logfile = Path(KEYFRAME_FILE).stem
    location = meta["map"]
    tables: dict[str, list[dict]] = {}

    log_token = tok("log", logfile)
    tables["log"] = [{"token": log_token, "logfile": logfile, "vehicle": logfile.split("-")[0],
                      "date_captured": meta["date"], "location": location}]
    map_token = tok("map", location)
    tables["map"] = [{"token": map_token, "log_tokens": [log_token], "category": "semantic_prior",
                      "filename": f"maps/{map_token}.png"}]
    _sensors(tables, kf)

    kf_steps = list(range(0, L, KEYFRAME_EVERY))
    sample_tok = {k: (kf["token"] if k == 0 else tok("sample", k)) for k in kf_steps}
    scene_token = meta["scenario_token"]
    tables["sample"] = [{"token": sample_tok[k], "timestamp": t0 + k * STEP_US, "scene_token": scene_token,
                         "prev": "", "next": ""} for k in kf_steps]
    link(tables["sample"])
    tables["scene"] = [{"token": scene_token, "name": meta["scenario_id"], "log_token": log_token,
                        "description": "scene-0061 rebuilt from ScenarioNet + keyframe pickles (drivesim tests)",
                        "nbr_samples": len(kf_steps), "first_sample_token": sample_tok[kf_steps[0]],
                        "last_sample_token": sample_tok[kf_steps[-1]]}]

    z0 = float(np.asarray(kf["ego2global"])[2, 3])
    lidar_cs = tok("calibrated_sensor", "LIDAR_TOP")
    tables["ego_pose"], tables["sample_data"] = [], []
    for k in range(L):
        ts, key = t0 + k * STEP_US, k % KEYFRAME_EVERY == 0
        pose = {"token": tok("ego_pose", k), "timestamp": ts, "rotation": yaw_quaternion(ego["heading"][k]),
                "translation": [float(ego["position"][k, 0]), float(ego["position"][k, 1]), z0]}
        folder = "samples" if key else "sweeps"
        tables["ego_pose"].append(pose)
        tables["sample_data"].append({
            "token": tok("sample_data", "LIDAR_TOP", k), "sample_token": sample_tok[-(-k // KEYFRAME_EVERY) * KEYFRAME_EVERY],
            "ego_pose_token": pose["token"], "calibrated_sensor_token": lidar_cs, "timestamp": ts,
            "fileformat": "pcd", "is_key_frame": key, "height": 0, "width": 0,
            "filename": f"{folder}/LIDAR_TOP/{logfile}__LIDAR_TOP__{ts}.pcd.bin", "prev": "", "next": ""})
    link(tables["sample_data"])

    n_ann = _annotations(tables, tracks, meta["sdc_id"], kf_steps, sample_tok)
    (root / version).mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(records))
    (root / "maps").mkdir(exist_ok=True)
    Image.new("L", (1, 1)).save(root / tables["map"][0]["filename"])
    if map_expansion:
        write_map_expansion(root, location, ego["position"][:, :2])
    return {"dataroot": root, "scenario": sd, "t0": t0, "num_keyframes": len(kf_steps), "num_annotations": n_ann}


def _sensors(tables: dict, kf: dict) -> None:
    tables["sensor"], tables["calibrated_sensor"] = [], []
    calib = {"LIDAR_TOP": ("lidar", kf["lidar_points"]["lidar2ego"], [])}
    calib |= {cam: ("camera", info["cam2ego"], info["cam2img"]) for cam, info in kf["images"].items()}
    for channel, (modality, m, intrinsic) in calib.items():
        tables["sensor"].append({"token": tok("sensor", channel), "channel": channel, "modality": modality})
        tables["calibrated_sensor"].append({
            "token": tok("calibrated_sensor", channel), "sensor_token": tok("sensor", channel),
            "translation": [float(v) for v in np.asarray(m)[:3, 3]], "rotation": matrix_quaternion(m),
            "camera_intrinsic": [[float(v) for v in row] for row in intrinsic]})


def _annotations(tables: dict, tracks: dict, sdc_id: str, kf_steps: list[int], sample_tok: dict) -> int:
    categories = sorted({t["metadata"]["type"] for k, t in tracks.items() if k != sdc_id})
    tables["category"] = [{"token": tok("category", c), "name": c, "description": c, "index": i}
                          for i, c in enumerate(categories)]
    tables["attribute"] = [{"token": tok("attribute", a), "name": a, "description": a} for a in ATTRIBUTES]
    tables["visibility"] = [{"token": t, "level": lvl, "description": lvl} for t, lvl in VISIBILITY.items()]
    tables["instance"], tables["sample_annotation"] = [], []
    for inst, track in tracks.items():
        if inst == sdc_id:
            continue  # nuScenes does not annotate the ego
        s, cat = track["state"], track["metadata"]["type"]
        anns = []
        for k in kf_steps:
            if not s["valid"][k]:
                continue
            speed = float(np.linalg.norm(s["velocity"][k]))
            anns.append({
                "token": tok("sample_annotation", inst, k), "sample_token": sample_tok[k], "instance_token": inst,
                "visibility_token": "4", "attribute_tokens": [tok("attribute", a) for a in _attributes(cat, speed)],
                "translation": [float(v) for v in s["position"][k]],
                "size": [float(s["width"][k, 0]), float(s["length"][k, 0]), float(s["height"][k, 0])],
                "rotation": yaw_quaternion(s["heading"][k]), "num_lidar_pts": 1, "num_radar_pts": 0,
                "prev": "", "next": ""})
        if not anns:
            continue
        link(anns)
        tables["sample_annotation"] += anns
        tables["instance"].append({"token": inst, "category_token": tok("category", cat), "nbr_annotations": len(anns),
                                   "first_annotation_token": anns[0]["token"], "last_annotation_token": anns[-1]["token"]})
    return len(tables["sample_annotation"])


def _attributes(category: str, speed: float) -> list[str]:
    if category in ("vehicle.bicycle", "vehicle.motorcycle"):
        return ["cycle.with_rider"]
    if category.startswith("vehicle."):
        return ["vehicle.moving" if speed > 0.5 else "vehicle.stopped"]
    if category.startswith("human.pedestrian."):
        return ["pedestrian.moving" if speed > 0.3 else "pedestrian.standing"]
    return []


# ---------------------------------------------------------------------------------------- map expansion

def write_map_expansion(root, location: str, ego_xy: np.ndarray) -> dict:
    """A synthetic map expansion (v1.3 layout) along the logged ego path; returns the lane tokens by role."""
    kept = [ego_xy[0]]
    for p in ego_xy[1:]:
        if np.linalg.norm(p - kept[-1]) >= 2.0:
            kept.append(p)
    path = np.array(kept)
    h0, h1 = path[1] - path[0], path[-1] - path[-2]
    path = np.concatenate([[path[0] - 20 * h0 / np.linalg.norm(h0)], path, [path[-1] + 20 * h1 / np.linalg.norm(h1)]])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    cut = [0.0, 0.45 * s[-1], 0.45 * s[-1] + 6.0, s[-1]]
    pieces = [_sub(path, s, a, b) for a, b in zip(cut, cut[1:])]
    left = [_offset(p, 3.5) for p in pieces]
    layers = {k: [] for k in ("polygon", "line", "node", "drivable_area", "road_segment", "road_block", "lane",
                              "ped_crossing", "walkway", "stop_line", "carpark_area", "road_divider",
                              "lane_divider", "traffic_light", "lane_connector")}
    layers |= {"version": "1.3", "canvas_edge": [1585.6, 2025.0], "arcline_path_3": {}, "connectivity": {}}
    roles = {}
    far = np.array([[path[0, 0] + 1000.0, path[0, 1]], [path[0, 0] + 1040.0, path[0, 1]]])
    chains = {"ego": pieces, "left": left, "far": [far]}
    for chain, lines in chains.items():
        toks = []
        for i, line in enumerate(lines):
            kind = "lane_connector" if len(lines) == 3 and i == 1 else "lane"
            t = tok("map", chain, i)
            record = {"token": t, "polygon_token": _polygon(layers, LineString(line).buffer(1.75, cap_style="flat"))}
            if kind == "lane":
                record |= {"lane_type": "CAR", "from_edge_line_token": None, "to_edge_line_token": None,
                           "left_lane_divider_segments": [], "right_lane_divider_segments": []}
            layers[kind].append(record)
            layers["arcline_path_3"][t] = _arclines(line)
            toks.append(t)
            roles[f"{chain}{i}"] = t
        for i, t in enumerate(toks):
            layers["connectivity"][t] = {"incoming": toks[i - 1:i] if i else [], "outgoing": toks[i + 1:i + 2]}
    area = LineString(path).buffer(7.0)
    layers["drivable_area"].append({"token": tok("map", "drivable"), "polygon_tokens": [_polygon(layers, area)]})
    folder = Path(root) / "maps" / "expansion"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{location}.json").write_text(json.dumps(layers))
    return roles


def _sub(path: np.ndarray, s: np.ndarray, a: float, b: float) -> np.ndarray:
    inside = (s > a) & (s < b)
    at = lambda v: np.array([np.interp(v, s, path[:, 0]), np.interp(v, s, path[:, 1])])
    return np.concatenate([[at(a)], path[inside], [at(b)]])


def _offset(line: np.ndarray, d: float) -> np.ndarray:
    """The polyline shifted d metres to its left."""
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return line + d * np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _arclines(line: np.ndarray) -> list[dict]:
    """Straight arcline paths ('LSL' with empty arcs) between consecutive points."""
    out = []
    for p, q in zip(line, line[1:]):
        d = q - p
        yaw = float(np.arctan2(d[1], d[0]))
        out.append({"start_pose": [float(p[0]), float(p[1]), yaw], "end_pose": [float(q[0]), float(q[1]), yaw],
                    "shape": "LSL", "radius": 999.0, "segment_length": [0.0, float(np.linalg.norm(d)), 0.0]})
    return out


def _polygon(layers: dict, poly) -> str:
    t = tok("map", "polygon", len(layers["polygon"]))
    nodes = []
    for x, y in list(poly.exterior.coords)[:-1]:
        nodes.append(tok("map", "node", len(layers["node"])))
        layers["node"].append({"token": nodes[-1], "x": float(x), "y": float(y)})
    layers["polygon"].append({"token": t, "exterior_node_tokens": nodes, "holes": []})
    return t
