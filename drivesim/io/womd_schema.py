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

from functools import lru_cache

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


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The schema as a FileDescriptorProto (proto2, package waymo.open_dataset)."""
    fd = descriptor_pb2.FileDescriptorProto(name="drivesim/womd_scenario_subset.proto", package=PACKAGE, syntax="proto2")
    for name, fields in MESSAGES:
        m = fd.message_type.add(name=name)
        for fname, number, label, ftype, mtype in fields:
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if mtype is not None:
                f.type_name = f".{PACKAGE}.{mtype}"
    return fd


@lru_cache(maxsize=1)
def scenario_class():
    """The message class of `waymo.open_dataset.Scenario` (the fields drivesim reads), built once,
    in a private descriptor pool (so it never clashes with a generated Waymo module)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    desc = pool.FindMessageTypeByName(f"{PACKAGE}.Scenario")
    factory = message_factory.MessageFactory(pool)
    return factory.GetPrototype(desc)
