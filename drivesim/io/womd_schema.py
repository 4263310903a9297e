"""The part of Waymo Open Motion's `Scenario` protobuf schema that drivesim reads, built in Python.

No TensorFlow and no generated `*_pb2` modules: the message descriptors are written here with
`google.protobuf.descriptor_pb2` and turned into message classes with `message_factory`. Field
numbers, types and labels are those of Waymo's public protos (waymo-open-dataset,
`waymo_open_dataset/protos/scenario.proto` and `map.proto`, proto2, package
`waymo.open_dataset`); fields drivesim does not read are left out, so the parser skips them as
unknown fields (lidar, boundaries, lane-neighbour index ranges, road-line types, ...).
Enumerations are decoded as plain int32 values (same wire format); their meanings are the tables
below (from the same protos).
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "waymo.open_dataset"
F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED

# (message, [(field name, number, label, type, message type or None)]): the numbers of scenario.proto / map.proto
MESSAGES = [
    # map.proto: message MapPoint {x = 1; y = 2; z = 3}
    ("MapPoint", [("x", 1, OPT, F.TYPE_DOUBLE, None), ("y", 2, OPT, F.TYPE_DOUBLE, None),
                  ("z", 3, OPT, F.TYPE_DOUBLE, None)]),
    # map.proto: message LaneNeighbor {int64 feature_id = 1; ...index ranges 2-5, boundaries 6 (not read)}
    ("LaneNeighbor", [("feature_id", 1, OPT, F.TYPE_INT64, None)]),
    # map.proto: message LaneCenter {speed_limit_mph = 1; LaneType type = 2; interpolating = 3;
    #   repeated MapPoint polyline = 8; repeated int64 entry_lanes = 9; exit_lanes = 10;
    #   repeated LaneNeighbor left_neighbors = 11; right_neighbors = 12; (left/right_boundaries 13/14 not read)}
    ("LaneCenter", [("speed_limit_mph", 1, OPT, F.TYPE_DOUBLE, None), ("type", 2, OPT, F.TYPE_INT32, None),
                    ("interpolating", 3, OPT, F.TYPE_BOOL, None), ("polyline", 8, REP, F.TYPE_MESSAGE, "MapPoint"),
                    ("entry_lanes", 9, REP, F.TYPE_INT64, None), ("exit_lanes", 10, REP, F.TYPE_INT64, None),
                    ("left_neighbors", 11, REP, F.TYPE_MESSAGE, "LaneNeighbor"),
                    ("right_neighbors", 12, REP, F.TYPE_MESSAGE, "LaneNeighbor")]),
    # map.proto: message RoadEdge {RoadEdgeType type = 1; repeated MapPoint polyline = 2}
    ("RoadEdge", [("type", 1, OPT, F.TYPE_INT32, None), ("polyline", 2, REP, F.TYPE_MESSAGE, "MapPoint")]),
    # map.proto: message RoadLine {RoadLineType type = 1; repeated MapPoint polyline = 2}
    ("RoadLine", [("type", 1, OPT, F.TYPE_INT32, None), ("polyline", 2, REP, F.TYPE_MESSAGE, "MapPoint")]),
    # map.proto: message StopSign {repeated int64 lane = 1; MapPoint position = 2}
    ("StopSign", [("lane", 1, REP, F.TYPE_INT64, None), ("position", 2, OPT, F.TYPE_MESSAGE, "MapPoint")]),
    # map.proto: message Crosswalk {repeated MapPoint polygon = 1} (SpeedBump, Driveway: the same layout)
    ("Crosswalk", [("polygon", 1, REP, F.TYPE_MESSAGE, "MapPoint")]),
    # map.proto: message MapFeature {int64 id = 1; oneof feature_data {LaneCenter lane = 3; RoadLine road_line = 4;
    #   RoadEdge road_edge = 5; StopSign stop_sign = 7; Crosswalk crosswalk = 8; SpeedBump speed_bump = 9;
    #   Driveway driveway = 10}}  (the oneof is kept as plain optional fields: same wire format)
    ("MapFeature", [("id", 1, OPT, F.TYPE_INT64, None), ("lane", 3, OPT, F.TYPE_MESSAGE, "LaneCenter"),
                    ("road_line", 4, OPT, F.TYPE_MESSAGE, "RoadLine"), ("road_edge", 5, OPT, F.TYPE_MESSAGE, "RoadEdge"),
                    ("stop_sign", 7, OPT, F.TYPE_MESSAGE, "StopSign"), ("crosswalk", 8, OPT, F.TYPE_MESSAGE, "Crosswalk"),
                    ("speed_bump", 9, OPT, F.TYPE_MESSAGE, "Crosswalk"), ("driveway", 10, OPT, F.TYPE_MESSAGE, "Crosswalk")]),
    # map.proto: message TrafficSignalLaneState {int64 lane = 1; State state = 2; MapPoint stop_point = 3}
    ("TrafficSignalLaneState", [("lane", 1, OPT, F.TYPE_INT64, None), ("state", 2, OPT, F.TYPE_INT32, None),
                                ("stop_point", 3, OPT, F.TYPE_MESSAGE, "MapPoint")]),
    # scenario.proto: message DynamicMapState {repeated TrafficSignalLaneState lane_states = 1}
    ("DynamicMapState", [("lane_states", 1, REP, F.TYPE_MESSAGE, "TrafficSignalLaneState")]),
    # scenario.proto: message ObjectState {center_x = 2; center_y = 3; center_z = 4; length = 5; width = 6;
    #   height = 7; heading = 8; velocity_x = 9; velocity_y = 10; bool valid = 11}  (doubles 2-4, floats 5-10)
    ("ObjectState", [("center_x", 2, OPT, F.TYPE_DOUBLE, None), ("center_y", 3, OPT, F.TYPE_DOUBLE, None),
                     ("center_z", 4, OPT, F.TYPE_DOUBLE, None), ("length", 5, OPT, F.TYPE_FLOAT, None),
                     ("width", 6, OPT, F.TYPE_FLOAT, None), ("height", 7, OPT, F.TYPE_FLOAT, None),
                     ("heading", 8, OPT, F.TYPE_FLOAT, None), ("velocity_x", 9, OPT, F.TYPE_FLOAT, None),
                     ("velocity_y", 10, OPT, F.TYPE_FLOAT, None), ("valid", 11, OPT, F.TYPE_BOOL, None)]),
    # scenario.proto: message Track {int32 id = 1; ObjectType object_type = 2; repeated ObjectState states = 3}
    ("Track", [("id", 1, OPT, F.TYPE_INT32, None), ("object_type", 2, OPT, F.TYPE_INT32, None),
               ("states", 3, REP, F.TYPE_MESSAGE, "ObjectState")]),
    # scenario.proto: message RequiredPrediction {int32 track_index = 1; DifficultyLevel difficulty = 2}
    ("RequiredPrediction", [("track_index", 1, OPT, F.TYPE_INT32, None), ("difficulty", 2, OPT, F.TYPE_INT32, None)]),
    # scenario.proto: message Scenario {repeated double timestamps_seconds = 1; repeated Track tracks = 2;
    #   repeated int32 objects_of_interest = 4; string scenario_id = 5; int32 sdc_track_index = 6;
    #   repeated DynamicMapState dynamic_map_states = 7; repeated MapFeature map_features = 8;
    #   int32 current_time_index = 10; repeated RequiredPrediction tracks_to_predict = 11 (lidar 12 not read)}
    ("Scenario", [("timestamps_seconds", 1, REP, F.TYPE_DOUBLE, None), ("tracks", 2, REP, F.TYPE_MESSAGE, "Track"),
                  ("objects_of_interest", 4, REP, F.TYPE_INT32, None), ("scenario_id", 5, OPT, F.TYPE_STRING, None),
                  ("sdc_track_index", 6, OPT, F.TYPE_INT32, None),
                  ("dynamic_map_states", 7, REP, F.TYPE_MESSAGE, "DynamicMapState"),
                  ("map_features", 8, REP, F.TYPE_MESSAGE, "MapFeature"),
                  ("current_time_index", 10, OPT, F.TYPE_INT32, None),
                  ("tracks_to_predict", 11, REP, F.TYPE_MESSAGE, "RequiredPrediction")]),
]

# scenario.proto Track.ObjectType
OBJECT_TYPES = {0: "TYPE_UNSET", 1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_CYCLIST", 4: "TYPE_OTHER"}
# map.proto LaneCenter.LaneType
LANE_TYPES = {0: "TYPE_UNDEFINED", 1: "TYPE_FREEWAY", 2: "TYPE_SURFACE_STREET", 3: "TYPE_BIKE_LANE"}
# map.proto TrafficSignalLaneState.State
SIGNAL_STATES = {0: "LANE_STATE_UNKNOWN", 1: "LANE_STATE_ARROW_STOP", 2: "LANE_STATE_ARROW_CAUTION",
                 3: "LANE_STATE_ARROW_GO", 4: "LANE_STATE_STOP", 5: "LANE_STATE_CAUTION", 6: "LANE_STATE_GO",
                 7: "LANE_STATE_FLASHING_STOP", 8: "LANE_STATE_FLASHING_CAUTION"}
# map.proto RoadEdge.RoadEdgeType
ROAD_EDGE_TYPES = {0: "TYPE_UNKNOWN", 1: "TYPE_ROAD_EDGE_BOUNDARY", 2: "TYPE_ROAD_EDGE_MEDIAN"}


LAZY = ("ObjectState", "MapPoint")  # repeated fields of these types stay raw bytes in the lazy schema


def file_descriptor(lazy: bool = False) -> descriptor_pb2.FileDescriptorProto:
    """The schema as a FileDescriptorProto (proto2, package waymo.open_dataset). `lazy`: repeated
    ObjectState / MapPoint fields are declared `bytes` (the same wire type, length-delimited), so
    the parser hands back each element's encoding for `decode_states` / `decode_points`."""
    fd = descriptor_pb2.FileDescriptorProto(name=f"drivesim/womd_scenario_subset{'_lazy' * lazy}.proto",
                                            package=PACKAGE, syntax="proto2")
    for name, fields in MESSAGES:
        m = fd.message_type.add(name=name)
        for fname, number, label, ftype, mtype in fields:
            if lazy and label == REP and mtype in LAZY:
                m.field.add(name=fname, number=number, label=label, type=F.TYPE_BYTES)
                continue
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if mtype is not None:
                f.type_name = f".{PACKAGE}.{mtype}"
    return fd


@lru_cache(maxsize=2)
def scenario_class(lazy: bool = False):
    """The message class of `waymo.open_dataset.Scenario` (the fields drivesim reads), built once,
    in a private descriptor pool (so it never clashes with a generated Waymo module). The lazy one
    (for reading: the pure-Python protobuf runtime spends most of its time building the ~30,000
    small state and point messages of a scenario) keeps those as bytes."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor(lazy))
    desc = pool.FindMessageTypeByName(f"{PACKAGE}.Scenario")
    factory = message_factory.MessageFactory(pool)
    return factory.GetPrototype(desc)


# ---------------------------------------------------------------------------- raw element decoding
# ObjectState fields in column order (number, wire type: 1 = fixed64 double, 5 = fixed32 float, 0 = varint)
STATE_FIELDS = ((2, 1), (3, 1), (4, 1), (5, 5), (6, 5), (7, 5), (8, 5), (9, 5), (10, 5), (11, 0))
POINT_FIELDS = ((1, 1), (2, 1), (3, 1))  # MapPoint x, y, z


def _canonical(fields) -> tuple[bytes, np.dtype]:
    """The encoding of a message with every field set once in number order (bool as one byte):
    its tag bytes and a numpy record dtype that reads it."""
    tags, layout = b"", []
    for k, (num, wire) in enumerate(fields):
        tags += bytes([(num << 3) | wire])
        layout += [(f"t{k}", "u1"), (f"v{k}", {1: "<f8", 5: "<f4", 0: "u1"}[wire])]
    return tags, np.dtype(layout)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        out |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if b < 0x80:
            return out, pos


def _decode_one(buf: bytes, fields) -> list[float]:
    """Any encoding of a message of fixed64 / fixed32 / varint fields (unknown fields skipped;
    proto2 defaults 0 for absent ones; the last value of a repeated field wins, as protobuf)."""
    col = {num: k for k, (num, _) in enumerate(fields)}
    out, pos = [0.0] * len(fields), 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 1:
            val, pos = struct.unpack_from("<d", buf, pos)[0], pos + 8
        elif wire == 5:
            val, pos = struct.unpack_from("<f", buf, pos)[0], pos + 4
        elif wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            pos, val = pos + n, None
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if num in col and val is not None:
            out[col[num]] = float(val)
    if pos != len(buf):
        raise ValueError("truncated message")
    return out


def _decode_all(items, fields) -> np.ndarray:
    """[N, F] float64 values of N encoded messages: one numpy read when every element has the
    canonical layout (what Waymo's writer produces), else element by element."""
    tags, dtype = _canonical(fields)
    if not len(items):
        return np.zeros((0, len(fields)))
    blob = b"".join(items)
    if len(blob) == dtype.itemsize * len(items):
        rec = np.frombuffer(blob, dtype=dtype)
        if all((rec[f"t{k}"] == t).all() for k, t in enumerate(tags)):
            return np.stack([rec[f"v{k}"].astype(float) for k in range(len(fields))], axis=1)
    try:
        return np.array([_decode_one(bytes(b), fields) for b in items], float).reshape(-1, len(fields))
    except (struct.error, IndexError) as e:
        raise ValueError(f"truncated message ({e})") from e


def decode_states(items) -> np.ndarray:
    """[N, 10] ObjectState values: center_x, center_y, center_z, length, width, height, heading,
    velocity_x, velocity_y, valid (0/1)."""
    return _decode_all(items, STATE_FIELDS)


def decode_points(items) -> np.ndarray:
    """[N, 3] MapPoint x, y, z."""
    return _decode_all(items, POINT_FIELDS)
