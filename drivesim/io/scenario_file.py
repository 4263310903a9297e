"""The scenario file format: one scenario (map, agents, log, script, route, metadata) per `.npz`,
or a scenario set (`*.set.npz`: many scenarios, each map stored once, with a table of one row
per scenario -- generator knobs, measurements, labels -- and a header: generator, config, seed,
lineage).

Every file carries the sha256 of its content; loading checks it, so a damaged or edited file is
an error that names the file. Metadata (source, original file, traffic mode...) is kept as JSON.
In a set each scenario keeps the content hash it would have as a single file; the set's own hash
covers the scenario hashes, the table and the header. Loading checks both: a damaged scenario is
reported by name and the others still load; a damaged table or header makes the whole file an
error.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from drivesim.core.scenario import AGENT_FIELDS, Scenario, ScenarioError
from drivesim.core.safe_io import atomic_save
from drivesim.map.road import Lane, MapError, RoadMap
from drivesim.map.signals import LoggedSignals

FORMAT = "drivesim-scenario/1"
SET_SUFFIX = ".set.npz"  # scenario sets (save_set/load_set below): many scenarios, maps stored once
OPTIONAL = ("log", "log_valid", "script_accel", "script_lane", "script_lat_speed")
BOOKKEEPING = ("content_hash", "scenario_file")  # added to meta on load; not part of the content
# what numpy raises on a damaged or foreign .npz (zip, zlib, npy header)
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, struct.error)
# what rebuilding a scenario from arrays of the wrong dtype, shape or value raises (a file is data, not code)
CONTENT_ERRORS = (KeyError, IndexError, TypeError, ValueError, OverflowError, shapely.errors.ShapelyError)


class ScenarioFileError(ValueError):
    """A scenario file cannot be read; the message names the file."""


def _map_arrays(road: RoadMap) -> dict[str, np.ndarray]:
    lanes = road.lanes
    sizes = [len(l.centerline) for l in lanes]
    succ = [l.successors for l in lanes]
    return {
        "map_lane_pts": np.concatenate([np.asarray(l.centerline, float) for l in lanes]),
        "map_lane_len": np.asarray(sizes), "map_lane_width": np.array([l.width for l in lanes]),
        "map_lane_speed": np.array([l.speed_limit for l in lanes]),
        "map_lane_left": np.array([l.left for l in lanes]), "map_lane_right": np.array([l.right for l in lanes]),
        "map_lane_dead_end": np.array([l.dead_end for l in lanes]),
        "map_succ": np.array([j for s in succ for j in s], dtype=np.int64), "map_succ_len": np.array([len(s) for s in succ]),
        "map_drivable": np.frombuffer(shapely.to_wkb(road.drivable), dtype=np.uint8),
        "map_signal": np.array(sorted(road.signal_group.items()), dtype=np.int64).reshape(-1, 2),
        **_signal_log_arrays(road.signal_log),
        **_height_arrays(lanes),
    }


def _height_arrays(lanes) -> dict[str, np.ndarray]:
    """Lane heights [sum P] (NaN for a lane without z), only on maps where some lane has them, so the
    files (and content hashes) of flat maps are unchanged."""
    if all(l.z is None for l in lanes):
        return {}
    return {"map_lane_z": np.concatenate([np.full(len(l.centerline), np.nan) if l.z is None else np.asarray(l.z, float)
                                          for l in lanes])}


def _signal_log_arrays(log: LoggedSignals | None) -> dict[str, np.ndarray]:
    """Logged signal states (map/signals.py), only on maps that have them."""
    if log is None:
        return {}
    return {"map_signal_log": log.state, "map_signal_log_lane": log.lane, "map_signal_log_stop": log.stop_point,
            "map_signal_log_dt": np.array([log.dt])}


def _arrays(s: Scenario) -> dict[str, np.ndarray]:
    out = {f: np.asarray(getattr(s, f)) for f in AGENT_FIELDS}
    out.update({f: np.asarray(getattr(s, f)) for f in OPTIONAL if getattr(s, f) is not None})
    out["route"] = np.asarray(s.route, dtype=np.int64)
    out.update(_map_arrays(s.road))
    return out


def _header(s: Scenario) -> dict:
    return {"format": FORMAT, "name": s.name, "duration": s.duration, "dt": s.dt, "seed": s.seed,
            "map_name": s.road.name, "lane_kinds": [l.kind for l in s.road.lanes],
            "signal_timing": list(s.road.signal_timing) if s.road.signal_timing else None,
            "meta": {k: v for k, v in s.meta.items() if k not in BOOKKEEPING}}


def _digest(arrays: dict[str, np.ndarray], header: dict) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def scenario_hash(s: Scenario) -> str:
    """sha256 of a scenario's content (map, agents, log, script, route, header and metadata)."""
    return _digest(_arrays(s), _header(s))


def scenarios_hash(scenarios: list[Scenario]) -> str:
    """sha256 of a collection of scenarios (their content hashes, order ignored)."""
    hashes = sorted(s.meta.get("content_hash") or scenario_hash(s) for s in scenarios)
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def save_scenario(s: Scenario, path) -> Path:
    s.validate()
    arrays, header = _arrays(s), _header(s)
    header["content_hash"] = _digest(arrays, header)
    path = Path(path)
    path = path if path.name.endswith(".npz") else path.with_name(path.name + ".npz")  # as numpy names it
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda f: np.savez_compressed(f, header=np.array(json.dumps(header, default=str)), **arrays))
    return path


def load_scenario(path) -> Scenario:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except UNREADABLE as exc:
        raise ScenarioFileError(f"{path}: not a readable scenario file ({type(exc).__name__}: {exc})") from None
    try:
        header = json.loads(str(arrays.pop("header")))
    except (KeyError, json.JSONDecodeError):
        raise ScenarioFileError(f"{path}: no scenario header (not written by drivesim?)") from None
    if not isinstance(header, dict):
        raise ScenarioFileError(f"{path}: the scenario header is not a mapping (not written by drivesim?)")
    if header.get("format") != FORMAT:
        raise ScenarioFileError(f"{path}: format {header.get('format')!r}, expected {FORMAT!r}")
    stored = header.pop("content_hash", None)
    if stored != _digest(arrays, header):
        raise ScenarioFileError(f"{path}: content hash mismatch: the file was damaged or edited")
    try:
        s = _scenario(arrays, header)
        s.validate()
    except (ScenarioError, MapError) as exc:
        raise ScenarioFileError(f"{path}: {exc}") from None
    except CONTENT_ERRORS as exc:  # arrays of the wrong kind, shape or value for their field
        raise ScenarioFileError(f"{path}: malformed content ({type(exc).__name__}: {exc})") from None
    s.meta = {**s.meta, "content_hash": stored, "scenario_file": path.name}
    return s


def _scenario(a: dict, h: dict, road: RoadMap | None = None) -> Scenario:
    """The Scenario of stored arrays and header; `road` when its map was already rebuilt."""
    road = road if road is not None else _road(a, h)
    fields = {f: a[f] for f in AGENT_FIELDS}
    fields.update({f: a[f] for f in OPTIONAL if f in a})
    return Scenario(name=h["name"], road=road, route=[int(r) for r in a["route"]], duration=h["duration"], dt=h["dt"],
                    seed=h["seed"], meta=h["meta"], **fields)


def _road(a: dict, h: dict) -> RoadMap:
    ends = np.cumsum(a["map_lane_len"])
    pts = np.split(a["map_lane_pts"], ends[:-1])
    succ = np.split(a["map_succ"], np.cumsum(a["map_succ_len"])[:-1])
    lanes = [Lane(p, float(w), float(v), [int(j) for j in sj], int(le), int(ri), kind, bool(de))
             for p, w, v, sj, le, ri, kind, de in zip(pts, a["map_lane_width"], a["map_lane_speed"], succ, a["map_lane_left"],
                                                      a["map_lane_right"], h["lane_kinds"], a["map_lane_dead_end"])]
    if "map_lane_z" in a:
        for lane, z in zip(lanes, np.split(a["map_lane_z"], ends[:-1])):
            lane.z = None if np.isnan(z).all() else z
    timing = tuple(h["signal_timing"]) if h["signal_timing"] else None
    log = LoggedSignals(a["map_signal_log"], a["map_signal_log_lane"], a["map_signal_log_stop"],
                        float(a["map_signal_log_dt"][0])) if "map_signal_log" in a else None
    return RoadMap(h["map_name"], lanes, drivable=shapely.from_wkb(a["map_drivable"].tobytes()),
                   signal_group={int(k): int(v) for k, v in a["map_signal"]}, signal_timing=timing, signal_log=log)


def load_scenarios(path) -> tuple[list[Scenario], list[str]]:
    """All scenario files of a directory (sorted), or one file: (scenarios, errors). A bad file is
    an error message in the list; the others still load. Real logs that `io.importers.detect`
    recognises (WOMD TFRecords, GPUDrive JSON, ScenarioNet pickles) are imported on the fly."""
    path = Path(path)
    if not path.exists():
        raise ScenarioFileError(f"{path}: no such file or directory")
    if path.is_file() and path.name.endswith(SET_SUFFIX):

        loaded = load_set(path)
        return loaded.scenarios, loaded.errors
    from drivesim.io import importers

    source = importers.detect(path)
    if source is not None:  # real logs in their own format (womd, gpudrive, scenarionet): imported on the fly
        return _import_source(source, path)
    files = sorted(p for p in path.glob("*.npz") if not p.name.endswith(SET_SUFFIX)) if path.is_dir() else [path]
    if not files:
        raise ScenarioFileError(f"{path}: no scenario files (*.npz) here")
    scenarios, errors = [], []
    for f in files:
        try:
            scenarios.append(load_scenario(f))
        except ScenarioFileError as exc:
            errors.append(str(exc))
    return scenarios, errors


def _import_source(source: str, path: Path) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) of a WOMD / GPUDrive file or folder; a bad file is an error line."""
    from drivesim.io import importers
    from drivesim.io.errors import ImportDataError

    try:
        return importers.load(source, path)
    except ImportDataError as exc:
        raise ScenarioFileError(str(exc)) from None

SET_FORMAT = "drivesim-scenario-set/1"


@dataclass
class LoadedSet:
    scenarios: list[Scenario]
    table: pd.DataFrame
    header: dict
    errors: list[str] = field(default_factory=list)


def set_path(path) -> Path:
    """`path` with the `.set.npz` suffix (added when missing)."""
    path = Path(path)
    return path if path.name.endswith(SET_SUFFIX) else path.with_name(path.name.removesuffix(".npz") + SET_SUFFIX)


def _set_hash(hashes: list[str], table_json: str, header: dict) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    h.update(table_json.encode())
    for x in hashes:
        h.update(x.encode())
    return h.hexdigest()


def save_set(scenarios: list[Scenario], table: pd.DataFrame, header: dict, path) -> tuple[Path, str]:
    """Write a set; returns (path, set hash). `table` has one row per scenario, in order."""
    if len(table) != len(scenarios):
        raise ValueError(f"table has {len(table)} rows for {len(scenarios)} scenarios")
    maps: dict[int, int] = {}
    arrays, entries, hashes = {}, [], []
    for i, s in enumerate(scenarios):
        s.validate()
        a, h = _arrays(s), _header(s)
        digest = _digest(a, h)
        j = maps.setdefault(id(s.road), len(maps))
        for k, v in a.items():
            if not k.startswith("map_"):
                arrays[f"s{i}/{k}"] = v
            elif f"m{j}/{k}" not in arrays:
                arrays[f"m{j}/{k}"] = v
        entries.append({"header": h, "map": j, "content_hash": digest})
        hashes.append(digest)
    table_json = table.to_json(orient="split", index=False, double_precision=10)
    head = {"format": SET_FORMAT, **header, "count": len(scenarios), "maps": len(maps)}
    head["set_hash"] = _set_hash(hashes, table_json, {k: v for k, v in head.items() if k != "set_hash"})
    path = set_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda f: np.savez_compressed(f, set_header=np.array(json.dumps(head, default=str)),
                                                   set_entries=np.array(json.dumps(entries, default=str)),
                                                   set_table=np.array(table_json), **arrays))
    return path, head["set_hash"]


def load_set(path) -> LoadedSet:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        head = json.loads(str(stored.pop("set_header")))
        entries = json.loads(str(stored.pop("set_entries")))
        table_json = str(stored.pop("set_table"))
    except UNREADABLE as exc:
        raise ScenarioFileError(f"{path}: not a readable scenario set ({type(exc).__name__}: {exc})") from None
    if not isinstance(head, dict) or not isinstance(entries, list):
        raise ScenarioFileError(f"{path}: the set header or scenario list is malformed (not written by drivesim?)")
    if head.get("format") != SET_FORMAT:
        raise ScenarioFileError(f"{path}: format {head.get('format')!r}, expected {SET_FORMAT!r}")
    hashes = [e["content_hash"] for e in entries]
    check = {k: v for k, v in head.items() if k != "set_hash"}
    if head.get("set_hash") != _set_hash(hashes, table_json, check):
        raise ScenarioFileError(f"{path}: set hash mismatch: the table, header or scenario list was damaged or edited")
    groups: dict[str, dict] = {}  # "s3" / "m0" -> its arrays
    for k, v in stored.items():
        owner, name = k.split("/", 1)
        groups.setdefault(owner, {})[name] = v
    roads: dict[int, object] = {}
    scenarios, errors = [], []
    for i, e in enumerate(entries):
        h = e["header"]
        a = {**groups.get(f"s{i}", {}), **groups.get(f"m{e['map']}", {})}
        where = f"{path}: scenario {h.get('name', i)!r}"
        if _digest(a, h) != e["content_hash"]:
            errors.append(f"{where}: content hash mismatch: damaged or edited")
            continue
        try:
            if e["map"] not in roads:
                roads[e["map"]] = _road(a, h)
            s = _scenario(a, h, roads[e["map"]])
            s.validate()
        except (ScenarioError, MapError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        except CONTENT_ERRORS as exc:
            errors.append(f"{where}: malformed content ({type(exc).__name__}: {exc})")
            continue
        s.meta = {**{k: v for k, v in s.meta.items() if k not in BOOKKEEPING}, "content_hash": e["content_hash"],
                  "scenario_file": path.name}
        scenarios.append(s)
    table = pd.read_json(io.StringIO(table_json), orient="split")
    return LoadedSet(scenarios, table, head, errors)
