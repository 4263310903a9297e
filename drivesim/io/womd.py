"""Waymo Open Motion Dataset (WOMD) Scenario TFRecords -> `Scenario`, without TensorFlow.

A TFRecord file is a sequence of records, each `uint64 length | uint32 masked crc32c(length) |
data | uint32 masked crc32c(data)` (little endian; TensorFlow's record format). Both CRCs are
checked (pure-Python CRC-32C); a bad one is an ImportDataError naming the file and the record.
Each record is one `waymo.open_dataset.Scenario` message, decoded with protobuf from the schema
of `womd_schema.py` (Waymo's field numbers, only the fields read here).

What is kept (`womd_scene` -> `build_scenario`, shared with the GPUDrive JSON importer):
- tracks: 91 steps at 10 Hz (1.1 s history, 8 s future); the SDC (`sdc_track_index`) is the ego
  (agent 0), the other tracks with a valid step follow in file order. Invalid steps hold the
  nearest earlier (else the first) valid state; `log_valid` keeps the source's validity. Speed is
  |velocity|; box sizes are the median over valid steps. Types: VEHICLE, PEDESTRIAN, CYCLIST;
  OTHER and UNSET become STATIC.
- meta: scenario id, track ids, `tracks_to_predict` / `objects_of_interest` (as agent indices),
  `current_time_index`, counts of road edges, crosswalks, stop signs, speed bumps, the stop signs'
  positions and the crosswalk polygons.
- lanes: WOMD LaneCenter polylines (bike lanes left out unless `ImportConfig.include_bike_lanes`),
  speed limit from `speed_limit_mph` (the urban default where 0), kind 'connector' for
  `interpolating` lanes (those through junctions); successors from `exit_lanes` (and the
  `entry_lanes` of the successor), left/right from the first neighbour that lies on that side with
  the same direction, the rest inferred from geometry (`infer_links`). WOMD gives no lane width:
  `ImportConfig.lane_width` (Waymax also draws lanes as centrelines only).
- signals: per step and per signalled lane, the logged state (`TrafficSignalLaneState`) mapped to
  red / yellow / green / unknown as MetaDrive and Waymax simplify them (arrow and flashing states
  included: STOP, ARROW_STOP -> red; CAUTION, ARROW_CAUTION, FLASHING_CAUTION -> yellow; GO,
  ARROW_GO -> green; UNKNOWN, FLASHING_STOP -> unknown; an unknown run of at most 1 s between two
  equal states takes that state, `fill_short_gaps`). They become the map's logged signal
  table (`map.signals.LoggedSignals`, [T, G]) that reactive agents, the expert and the realism
  traffic-light feature read.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode
from drivesim.io.errors import ImportDataError, load_each
from drivesim.io.womd_schema import decode_points, decode_states, scenario_class
from drivesim.map.bank import MAX_SUCCESSORS
from drivesim.map.drivable_area import DrivableAreaConfig, drivable_area
from drivesim.map.linking import apply_source_links, cap_successors, infer_links, route_from_path
from drivesim.map.road import Lane, MapError, RoadMap
from drivesim.map.signals import SIGNAL_CODES, LoggedSignals, stop_line_lanes

SOURCE = "womd"
DT = 0.1  # s, WOMD's 10 Hz (also drivesim's step)
SUFFIXES = (".tfrecord",)  # file names also match *.tfrecord-00000-of-01000 (WOMD's shard names)
MPH = 0.44704  # m/s per mph
MAX_SIGNAL_GAP = 10  # steps (1 s): shorter unknown runs inside one logged signal state take that state
UNKNOWN = SIGNAL_CODES["unknown"]

TRACK_TYPES = {1: AgentType.VEHICLE, 2: AgentType.PEDESTRIAN, 3: AgentType.CYCLIST, 4: AgentType.STATIC,
               0: AgentType.STATIC}  # scenario.proto Track.ObjectType (UNSET, OTHER: static objects)
# map.proto TrafficSignalLaneState.State -> simplified state (see the module docstring)
SIGNAL_STATE = {0: "unknown", 1: "red", 2: "yellow", 3: "green", 4: "red", 5: "yellow", 6: "green", 7: "unknown",
                8: "yellow"}

@dataclass
class ImportConfig:
    lane_width: float = 3.7  # m, WOMD lanes carry no width (US urban lanes are 3.0-3.7 m)
    default_speed_limit: float = 13.9  # m/s (urban 50 km/h) where speed_limit_mph is 0
    include_bike_lanes: bool = False
    min_lane_length: float = 0.5  # m, shorter lanes are dropped
    crop_margin: float | None = 60.0  # m: keep lanes within this of a logged agent position; None: whole map
    verify_crc: bool = True
    edge_gap: float = 1.5  # m, growth of the lanes towards open road edges (see map.drivable_area; as ScenarioNet's Waymo)

    def __post_init__(self):
        if not self.lane_width > 0 or not self.default_speed_limit > 0:
            raise ValueError("lane_width and default_speed_limit must be positive")
        if self.crop_margin is not None and not self.crop_margin > 0:
            raise ValueError(f"crop_margin must be positive or None, got {self.crop_margin}")


# ------------------------------------------------------------------------------ TFRecord framing
def _crc_table() -> list[int]:
    poly, table = 0x82F63B78, []  # CRC-32C (Castagnoli), reflected
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc, table = 0xFFFFFFFF, CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits and add 0xa282ead8."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path, verify_crc: bool = True) -> list[bytes]:
    """The records of a TFRecord file (uncompressed), CRCs checked."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise ImportDataError(f"{path}: cannot read ({e})") from e
    out, pos, k = [], 0, 0
    while pos < len(buf):
        if pos + 12 > len(buf):
            raise ImportDataError(f"{path}: record {k} at byte {pos}: truncated header ({len(buf) - pos} bytes)")
        head = buf[pos:pos + 8]
        (n,), (crc_n,) = struct.unpack("<Q", head), struct.unpack("<I", buf[pos + 8:pos + 12])
        if verify_crc and masked_crc(head) != crc_n:
            raise ImportDataError(f"{path}: record {k} at byte {pos}: bad length CRC (not a TFRecord file, "
                                  "or a compressed one: only uncompressed TFRecords are read)")
        end = pos + 12 + n
        if end + 4 > len(buf):
            raise ImportDataError(f"{path}: record {k} at byte {pos}: truncated ({n} data bytes announced, "
                                  f"{max(len(buf) - pos - 16, 0)} present)")
        data = buf[pos + 12:end]
        if verify_crc and masked_crc(data) != struct.unpack("<I", buf[end:end + 4])[0]:
            raise ImportDataError(f"{path}: record {k} at byte {pos}: bad data CRC (the file is damaged)")
        out.append(data)
        pos, k = end + 4, k + 1
    return out


def write_records(path, records: list[bytes]) -> None:
    """A TFRecord file of `records` (tests and tools)."""
    from drivesim.core.safe_io import atomic_write_bytes

    parts = []
    for r in records:
        head = struct.pack("<Q", len(r))
        parts += [head, struct.pack("<I", masked_crc(head)), r, struct.pack("<I", masked_crc(r))]
    atomic_write_bytes(Path(path), b"".join(parts))


# ------------------------------------------------------------------------------ source scene
@dataclass
class SourceScene:
    """One scene in the layout both WOMD importers share (source coordinates, all steps)."""

    scene: str
    file: str
    xy: np.ndarray  # [N, T, 2]
    z: np.ndarray  # [N, T]
    yaw: np.ndarray  # [N, T]
    vel: np.ndarray  # [N, T, 2]
    valid: np.ndarray  # [N, T] bool
    size: np.ndarray  # [N, 2] (length, width) m
    types: list  # [N] AgentType
    ids: list  # [N] source track ids
    sdc: int  # track index of the SDC
    lanes: list = field(default_factory=list)  # dicts: id, xyz [P, 3], speed_mph, bike, interpolating, entry, exit, left, right
    road_edges: list = field(default_factory=list)  # [P, 3] polylines
    crosswalks: list = field(default_factory=list)  # [P, 3] polygons
    areas: list = field(default_factory=list)  # [P, 3] polygons drivable by definition (driveways, speed bumps)
    stop_signs: list = field(default_factory=list)  # [3] positions
    signals: dict = field(default_factory=dict)  # source lane id -> {"state": [T] str, "stop_point": [2]}
    predict: list = field(default_factory=list)  # track indices to predict
    interest: list = field(default_factory=list)  # track ids of interest
    current_index: int = 10
    extra: dict = field(default_factory=dict)  # more meta


def womd_scene(msg, file: str) -> SourceScene:
    """A Scenario message of the lazy schema (`scenario_class(lazy=True)`: states and points as
    raw bytes) -> SourceScene."""
    T = len(msg.timestamps_seconds) or (len(msg.tracks[0].states) if msg.tracks else 0)
    N = len(msg.tracks)
    if N == 0 or T < 2:
        raise ImportDataError(f"{file}: scenario {msg.scenario_id!r} has {N} tracks and {T} steps (need >= 1 and >= 2)")
    bad = [tr for tr in msg.tracks if len(tr.states) != T]
    if bad:
        raise ImportDataError(f"{file}: track {bad[0].id} has {len(bad[0].states)} states, expected {T} (one per timestamp)")
    try:
        raw = decode_states([b for tr in msg.tracks for b in tr.states]).reshape(N, T, 10)
    except (ValueError, IndexError, struct.error) as e:
        raise ImportDataError(f"{file}: a track state is not an ObjectState message ({e})") from e
    # center x, y, z, heading, velocity x, y, length, width
    st, valid = raw[..., [0, 1, 2, 6, 7, 8, 3, 4]], raw[..., 9] > 0
    unknown = sorted({t.object_type for t in msg.tracks} - set(TRACK_TYPES))
    if unknown:
        raise ImportDataError(f"{file}: unknown object_type {unknown} (scenario.proto knows 0-4)")
    sc = SourceScene(
        scene=msg.scenario_id or Path(file).stem, file=file, xy=st[..., :2], z=st[..., 2], yaw=st[..., 3],
        vel=st[..., 4:6], valid=valid, size=_median_size(st[..., 6:8], valid), types=[TRACK_TYPES[t.object_type] for t in msg.tracks],
        ids=[int(t.id) for t in msg.tracks], sdc=int(msg.sdc_track_index),
        predict=[int(r.track_index) for r in msg.tracks_to_predict], interest=[int(i) for i in msg.objects_of_interest],
        current_index=int(msg.current_time_index),
        extra={"difficulty": [int(r.difficulty) for r in msg.tracks_to_predict]},
    )
    try:
        _map_features(sc, msg)
    except (ValueError, IndexError, struct.error) as e:
        raise ImportDataError(f"{file}: a map point is not a MapPoint message ({e})") from e
    if msg.dynamic_map_states and len(msg.dynamic_map_states) != T:
        raise ImportDataError(f"{file}: {len(msg.dynamic_map_states)} dynamic map states for {T} steps")
    for t, dms in enumerate(msg.dynamic_map_states):
        for ls in dms.lane_states:
            if ls.state not in SIGNAL_STATE:
                raise ImportDataError(f"{file}: traffic signal on lane {ls.lane} has unknown state {ls.state} at step {t}")
            s = sc.signals.setdefault(int(ls.lane), {"state": ["unknown"] * T, "stop_point": [ls.stop_point.x, ls.stop_point.y]})
            s["state"][t] = SIGNAL_STATE[ls.state]
    return sc


def _map_features(sc: SourceScene, msg) -> None:
    """Lanes, road edges, crosswalks, drivable areas and stop signs of the message into sc."""
    for f in msg.map_features:
        if f.HasField("lane"):
            ln = f.lane
            sc.lanes.append({"id": int(f.id), "xyz": decode_points(ln.polyline), "speed_mph": float(ln.speed_limit_mph),
                             "bike": ln.type == 3, "interpolating": bool(ln.interpolating),
                             "entry": list(ln.entry_lanes), "exit": list(ln.exit_lanes),
                             "left": [n.feature_id for n in ln.left_neighbors], "right": [n.feature_id for n in ln.right_neighbors]})
        elif f.HasField("road_edge"):
            sc.road_edges.append(decode_points(f.road_edge.polyline))
        elif f.HasField("crosswalk"):
            sc.crosswalks.append(decode_points(f.crosswalk.polygon))
        elif f.HasField("driveway") or f.HasField("speed_bump"):
            sc.areas.append(decode_points((f.driveway if f.HasField("driveway") else f.speed_bump).polygon))
        elif f.HasField("stop_sign"):
            sc.stop_signs.append(np.array([f.stop_sign.position.x, f.stop_sign.position.y, f.stop_sign.position.z]))


def _median_size(lw: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(length, width) [N, 2]: median over valid steps with a positive size (1 m x 1 m if none)."""
    good = valid[..., None] & (lw > 0) & np.isfinite(lw)
    med = np.array([[np.median(lw[i, good[i, :, k], k]) if good[i, :, k].any() else 1.0 for k in range(2)]
                    for i in range(len(lw))])
    return med.reshape(-1, 2)


# ------------------------------------------------------------------------------ Scenario
def build_scenario(src: SourceScene, config: ImportConfig, source: str = SOURCE) -> Scenario:
    """SourceScene -> Scenario (ego first, coordinates minus the ego's first valid position)."""
    file = src.file
    N, T = src.valid.shape
    if not 0 <= src.sdc < N:
        raise ImportDataError(f"{file}: sdc_track_index {src.sdc} is not a track index (0..{N - 1})")
    if not src.valid[src.sdc].any():
        raise ImportDataError(f"{file}: the SDC track {src.ids[src.sdc]} has no valid step")
    order = [src.sdc] + [i for i in range(N) if i != src.sdc and src.valid[i].any()]
    index = {int(i): k for k, i in enumerate(order)}
    valid = src.valid[order]
    origin = src.xy[src.sdc, valid[0].argmax()].copy()
    log = np.concatenate([src.xy[order] - origin, src.yaw[order, :, None],
                          np.linalg.norm(src.vel[order], axis=-1)[..., None]], axis=-1)
    log[..., 2] = (log[..., 2] + np.pi) % (2 * np.pi) - np.pi
    idx = np.maximum.accumulate(np.where(valid, np.arange(T), -1), axis=1)
    idx = np.where(idx < 0, valid.argmax(axis=1)[:, None], idx)
    log = np.take_along_axis(log, idx[..., None], axis=1)
    if not np.isfinite(log).all():
        raise ImportDataError(f"{file}: non-finite track states")
    road, lane_ids, road_meta = _road(src, origin, log[valid][:, :2], config, f"{source}/{src.scene}")
    try:
        route = route_from_path(road.lanes, log[0, valid[0], :2], log[0, valid[0], 2])
    except ValueError as e:
        raise ImportDataError(f"{file}: no lane route along the SDC's path ({e})") from e
    types = np.array([int(src.types[i]) for i in order], np.int64)
    meta = {
        "source": source, "file": Path(file).name, "scene": src.scene, "origin": origin.tolist(),
        "num_agents": len(order), "skipped_no_valid": N - len(order), "track_ids": [src.ids[i] for i in order],
        "sdc_track_index": src.sdc, "sdc_track_id": src.ids[src.sdc], "current_time_index": src.current_index,
        "tracks_to_predict": [index[i] for i in src.predict if i in index],
        "objects_of_interest": [index[k] for k, tid in enumerate(src.ids) if tid in set(src.interest) and k in index],
        "agent_types": dict(Counter(AgentType(t).name for t in types)),
        "z_first": [float(src.z[i, valid[k].argmax()]) for k, i in enumerate(order)],
        **road_meta, **src.extra,
    }
    vmax = np.where(valid, log[..., 3], 0.0).max(axis=1)
    A = len(order)
    sc = Scenario(
        name=f"{source}/{src.scene}", road=road, x=log[:, 0, 0].copy(), y=log[:, 0, 1].copy(), yaw=log[:, 0, 2].copy(),
        speed=log[:, 0, 3].copy(), length=src.size[order, 0], width=src.size[order, 1], agent_type=types,
        mode=np.array([int(ControlMode.POLICY)] + [int(ControlMode.REPLAY)] * (A - 1), np.int64),
        desired_speed=np.maximum(vmax, 1.0), route=route, duration=round((T - 1) * DT, 6), dt=DT,
        log=log, log_valid=valid, meta=meta,
    )
    sc.validate()
    return sc


def _road(src: SourceScene, origin, agent_xy, config: ImportConfig, name: str):
    """RoadMap (lanes, links, drivable area, logged signals), the source id of each lane, meta."""
    file = src.file
    cand = [l for l in src.lanes if config.include_bike_lanes or not l["bike"]]
    if not cand:
        raise ImportDataError(f"{file}: the map has no lanes ({len(src.lanes)} lane features, bike lanes left out)")
    kept = []
    for l in cand:
        xyz = l["xyz"]
        xyz = xyz[np.concatenate([[True], np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1) > 1e-3])] if len(xyz) else xyz
        p = xyz[:, :2] - origin
        if len(p) >= 2 and np.isfinite(xyz).all() and np.linalg.norm(np.diff(p, axis=0), axis=1).sum() >= config.min_lane_length:
            kept.append((l, p, xyz[:, 2] if xyz.shape[1] > 2 else None))
    degenerate = len(cand) - len(kept)
    n_before = len(kept)
    if config.crop_margin is not None and kept:
        from scipy.spatial import cKDTree

        tree = cKDTree(agent_xy)
        kept = [k for k in kept if np.isfinite(tree.query(k[1], distance_upper_bound=config.crop_margin)[0]).any()]
    if not kept:
        raise ImportDataError(f"{file}: no usable lane near the logged agents ({len(cand)} lanes, {degenerate} degenerate)")
    lanes = [Lane(p, width=config.lane_width,
                  speed_limit=l["speed_mph"] * MPH if l["speed_mph"] > 0 else config.default_speed_limit,
                  kind="connector" if l["interpolating"] else "lane", z=z) for l, p, z in kept]
    ids = [l["id"] for l, _, _ in kept]
    index = {fid: i for i, fid in enumerate(ids)}
    feats = [l for l, _, _ in kept]
    n_source = apply_source_links(lanes, *([[index[x] for x in f[k] if x in index] for f in feats]
                                           for k in ("exit", "entry", "left", "right")))
    inferred = infer_links(lanes)
    capped = cap_successors(lanes, MAX_SUCCESSORS)
    signals, sig_meta = _signals(src, lanes, ids, origin)
    group = stop_line_lanes(lanes, signals) if signals is not None else {}
    try:
        road = RoadMap(name, lanes, drivable=_drivable(lanes, src, origin, config.edge_gap), signal_group=group, signal_log=signals)
    except (MapError, ValueError) as e:
        raise ImportDataError(f"{file}: bad map geometry ({e})") from e
    meta = {
        "lanes": len(lanes), "lane_features": len(src.lanes), "lanes_degenerate": degenerate,
        "lanes_cropped": n_before - len(kept), "crop_margin": config.crop_margin, "lane_ids": ids,
        "lane_links_source": n_source, "lane_links_inferred": inferred, "successors_capped": capped,
        "lane_width": f"{config.lane_width} m (WOMD gives no lane width)",
        "speed_limit_default_lanes": sum(l["speed_mph"] <= 0 for l, _, _ in kept),
        "road_edges": len(src.road_edges), "crosswalks": len(src.crosswalks), "stop_signs": len(src.stop_signs),
        "drivable_areas": len(src.areas),
        "crosswalk_polygons": [np.round(c[:, :2] - origin, 2).tolist() for c in src.crosswalks],
        "stop_sign_positions": [np.round(s[:2] - origin, 2).tolist() for s in src.stop_signs],
        **sig_meta,
    }
    return road, ids, meta


def _drivable(lanes: list[Lane], src: SourceScene, origin: np.ndarray, edge_gap: float):
    """The drivable area (map.drivable_area): lanes (centrelines buffered by half the lane width),
    driveways and speed bumps, grown up to `edge_gap` towards the open WOMD road edges."""
    areas = [a[:, :2] - origin for a in src.areas if len(a) >= 3]
    return drivable_area(lane_centerlines=[l.centerline for l in lanes], widths=[l.width for l in lanes],
                         road_edges=[e[:, :2] - origin for e in src.road_edges if len(e) >= 2], areas=areas,
                         config=DrivableAreaConfig(edge_gap=edge_gap))


def _signals(src: SourceScene, lanes: list[Lane], ids: list[int], origin) -> tuple[LoggedSignals | None, dict]:
    """The logged signal table of the lanes kept on the map, and meta about it."""
    index = {fid: i for i, fid in enumerate(ids)}
    mapped = [(sid, s) for sid, s in sorted(src.signals.items()) if sid in index]
    counts = Counter(x for _, s in mapped for x in s["state"])
    meta = {"traffic_signals": len(mapped), "traffic_signals_unmapped": len(src.signals) - len(mapped),
            "traffic_signal_lane_ids": [sid for sid, _ in mapped], "traffic_signal_states": dict(sorted(counts.items()))}
    if not mapped:
        return None, meta
    state = np.array([[SIGNAL_CODES[x] for x in s["state"]] for _, s in mapped], np.int8).T  # [T, G]
    meta["traffic_signal_gaps_filled"] = fill_short_gaps(state)
    stop = np.array([s["stop_point"] for _, s in mapped], float) - origin
    return LoggedSignals(state=state, lane=np.array([index[sid] for sid, _ in mapped], np.int64), stop_point=stop, dt=DT), meta


def fill_short_gaps(state: np.ndarray, max_gap: int = MAX_SIGNAL_GAP) -> int:
    """In place: a run of at most `max_gap` unknown steps between two equal known states of a
    signal takes that state (a dropout of the detector, not a change of the light; a one-step
    'unknown' inside a red phase would otherwise release stopped traffic for 0.1 s). Returns the
    number of steps filled."""
    filled = 0
    for g in range(state.shape[1]):
        col, t = state[:, g], 0
        while t < len(col):
            if col[t] != UNKNOWN:
                t += 1
                continue
            end = t
            while end < len(col) and col[end] == UNKNOWN:
                end += 1
            if 0 < t and end < len(col) and end - t <= max_gap and col[t - 1] == col[end]:
                col[t:end] = col[end]
                filled += end - t
            t = end
    return filled


# ------------------------------------------------------------------------------ loading
def is_womd_file(p: Path) -> bool:
    return p.is_file() and (p.suffix in SUFFIXES or ".tfrecord" in p.name)


def source_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if is_womd_file(p))


def load_file(path, config: ImportConfig | None = None) -> list[Scenario]:
    """Every Scenario record of one TFRecord file (ImportDataError names the file and record)."""
    from google.protobuf.message import DecodeError

    path, config = Path(path), config or ImportConfig()
    cls, out = scenario_class(lazy=True), []
    for k, rec in enumerate(read_records(path, config.verify_crc)):
        msg = cls()
        try:
            msg.ParseFromString(rec)
        except DecodeError as e:
            raise ImportDataError(f"{path}: record {k} is not a Waymo Scenario message ({e})") from e
        where = f"{path} (record {k})"
        try:
            t0 = time.perf_counter()
            sc = build_scenario(womd_scene(msg, where), config)
            sc.meta.update(file=path.name, record=k, import_seconds=round(time.perf_counter() - t0, 3))
        except ImportDataError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ImportDataError(f"{where}: malformed scenario ({type(e).__name__}: {e})") from e
        out.append(sc)
    if not out:
        raise ImportDataError(f"{path}: no records (empty TFRecord file)")
    return out


def load(path, config: ImportConfig | None = None) -> tuple[list[Scenario], list[str]]:
    """(scenarios, errors) from one TFRecord file or a directory of them; a bad file in a directory
    is an error line (an error is raised only when none loads)."""
    path, config = Path(path), config or ImportConfig()
    if not path.exists():
        raise ImportDataError(f"{path}: no such file or directory")
    if path.is_file():
        return load_file(path, config), []
    groups, errors = load_each(path, source_files(path), lambda f: load_file(f, config), "WOMD TFRecord file (*.tfrecord*)")
    return [s for g in groups for s in g], errors
