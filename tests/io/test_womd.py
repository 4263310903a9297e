"""Waymo Open Motion TFRecords without TensorFlow: CRC-32C framing, the Scenario schema, the
conversion (SDC as ego, lanes with links, logged signals), `--scenarios` and `drivesim import womd`
on a hand-made scenario and on the shared real one (DRIVESIM_DATA/womd_tfrecord)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from drivesim.core.types import AgentType, ControlMode
from drivesim.io import womd
from drivesim.io.errors import ImportDataError
from drivesim.io.womd_schema import scenario_class
from drivesim.map.signals import SIGNAL_CODES

torch.set_num_threads(1)
T = 91


def _points(container, pts):
    for x, y in pts:
        p = container.add()
        p.x, p.y, p.z = x, y, 1.0


def hand_scenario(stop_state: int = 4) -> bytes:
    """A straight road: lane 10 (0..60 m) -> lane 11 (60..120 m, signal with stop point at its start)
    and a left neighbour lane 12 beside lane 10; 3 tracks, the SDC the last one."""
    msg = scenario_class()()
    msg.scenario_id, msg.current_time_index, msg.sdc_track_index = "hand0001", 10, 2
    msg.timestamps_seconds.extend([0.1 * k for k in range(T)])
    for tid, kind, x0, y0, v in ((7, 1, 30.0, 3.7, 8.0), (8, 2, 5.0, -6.0, 0.0), (9, 1, 10.0, 0.0, 5.0)):
        tr = msg.tracks.add()
        tr.id, tr.object_type = tid, kind
        for k in range(T):
            s = tr.states.add()
            s.center_x, s.center_y, s.heading = x0 + v * 0.1 * k, y0, 0.0
            s.velocity_x, s.length, s.width, s.valid = v, 4.8, 2.0, not (tid == 7 and k < 5)
    for fid, pts, exits, left in ((10, [(0, 0), (30, 0), (60, 0)], [11], [12]), (11, [(60, 0), (120, 0)], [], []),
                                  (12, [(0, 3.7), (60, 3.7)], [], [])):
        f = msg.map_features.add()
        f.id = fid
        f.lane.speed_limit_mph, f.lane.type = 25.0, 2
        _points(f.lane.polyline, pts)
        f.lane.exit_lanes.extend(exits)
        for n in left:
            f.lane.left_neighbors.add().feature_id = n
    edge = msg.map_features.add()
    edge.id = 20
    _points(edge.road_edge.polyline, [(0, -2), (120, -2)])
    cw = msg.map_features.add()
    cw.id = 21
    _points(cw.crosswalk.polygon, [(62, -2), (66, -2), (66, 2), (62, 2)])
    msg.tracks_to_predict.add().track_index = 0
    for k in range(T):
        ls = msg.dynamic_map_states.add().lane_states.add()
        ls.lane, ls.state = 11, stop_state
        ls.stop_point.x, ls.stop_point.y = 60.0, 0.0
    return msg.SerializeToString()


@pytest.fixture
def hand_file(tmp_path):
    path = tmp_path / "hand.tfrecord"
    womd.write_records(path, [hand_scenario()])
    return path


def test_crc32c_known_value_and_masking():
    assert womd.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert womd.crc32c(b"") == 0
    c = womd.crc32c(b"abc")
    assert womd.masked_crc(b"abc") == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_tfrecord_round_trip_and_bad_crcs(tmp_path):
    path = tmp_path / "r.tfrecord"
    womd.write_records(path, [b"first", b"", b"third record"])
    assert womd.read_records(path) == [b"first", b"", b"third record"]
    raw = bytearray(path.read_bytes())
    bad_data = bytearray(raw)
    bad_data[12] ^= 0x01  # first byte of the first record's data
    (tmp_path / "d.tfrecord").write_bytes(bytes(bad_data))
    with pytest.raises(ImportDataError, match=r"d\.tfrecord: record 0 .*bad data CRC"):
        womd.read_records(tmp_path / "d.tfrecord")
    bad_len = bytearray(raw)
    bad_len[8] ^= 0x01  # the length CRC
    (tmp_path / "l.tfrecord").write_bytes(bytes(bad_len))
    with pytest.raises(ImportDataError, match="bad length CRC"):
        womd.read_records(tmp_path / "l.tfrecord")
    (tmp_path / "t.tfrecord").write_bytes(bytes(raw[:-3]))
    with pytest.raises(ImportDataError, match=r"record 2 .*truncated"):
        womd.read_records(tmp_path / "t.tfrecord")
    assert womd.read_records(tmp_path / "d.tfrecord", verify_crc=False)[0] == b"girst"


def test_hand_scenario_converts(hand_file):
    (sc,), _ = womd.load(hand_file)
    assert sc.name == "womd/hand0001" and sc.num_agents == 3 and sc.num_steps == T - 1
    assert sc.meta["track_ids"] == [9, 7, 8] and sc.meta["sdc_track_id"] == 9  # the SDC first
    assert sc.meta["tracks_to_predict"] == [1]  # track index 0 (id 7) is agent 1 now
    assert sc.agent_type.tolist() == [int(AgentType.VEHICLE), int(AgentType.VEHICLE), int(AgentType.PEDESTRIAN)]
    assert sc.mode[0] == int(ControlMode.POLICY) and (sc.mode[1:] == int(ControlMode.REPLAY)).all()
    assert np.allclose(sc.log[0, 0, :2], 0.0) and sc.meta["origin"] == [10.0, 0.0]  # minus the SDC's first position
    assert not sc.log_valid[1, :5].any() and sc.log_valid[1, 5:].all()
    assert np.allclose(sc.log[1, :5, 0], sc.log[1, 5, 0])  # invalid steps hold the first valid state
    lanes = sc.road.lanes
    assert lanes[0].successors == [1] and lanes[0].left == 2 and lanes[1].successors == []
    assert lanes[0].speed_limit == pytest.approx(25 * 0.44704)
    assert sc.route[0] == 0
    assert sc.meta["road_edges"] == 1 and sc.meta["crosswalks"] == 1 and len(sc.meta["crosswalk_polygons"][0]) == 4
    log = sc.road.signal_log
    assert log.state.shape == (T, 1) and (log.state == SIGNAL_CODES["red"]).all()
    assert log.lane.tolist() == [1] and np.allclose(log.stop_point, [[50.0, 0.0]])
    assert sc.road.signal_group == {0: 0}  # the stop point starts lane 1: the stop line ends lane 0


def test_signal_states_map_as_waymax(tmp_path):
    for state, name in ((1, "red"), (3, "green"), (5, "yellow"), (7, "unknown"), (0, "unknown")):
        womd.write_records(tmp_path / "s.tfrecord", [hand_scenario(stop_state=state)])
        (sc,), _ = womd.load(tmp_path / "s.tfrecord")
        assert (sc.road.signal_log.state == SIGNAL_CODES[name]).all(), state


def test_bad_inputs_name_the_file(tmp_path):
    womd.write_records(tmp_path / "junk.tfrecord", [b"\xff\xff\xff not a proto"])
    with pytest.raises(ImportDataError, match=r"junk\.tfrecord: record 0 is not a Waymo Scenario"):
        womd.load(tmp_path / "junk.tfrecord")
    msg = scenario_class()()
    msg.ParseFromString(hand_scenario())
    msg.sdc_track_index = 5
    womd.write_records(tmp_path / "sdc.tfrecord", [msg.SerializeToString()])
    with pytest.raises(ImportDataError, match=r"sdc\.tfrecord.*sdc_track_index 5"):
        womd.load(tmp_path / "sdc.tfrecord")
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(ImportDataError, match="no records"):
        womd.load(tmp_path / "empty.tfrecord")
    womd.write_records(tmp_path / "good.tfrecord", [hand_scenario()])
    out, errors = womd.load(tmp_path)  # a folder: the bad files are listed, the good one loads
    assert [s.name for s in out] == ["womd/hand0001"] and len(errors) == 3
    assert all(any(name in e for e in errors) for name in ("empty.tfrecord", "junk.tfrecord", "sdc.tfrecord"))


def test_scenarios_option_reads_tfrecords_and_import_writes_scenario_files(hand_file, tmp_path, capsys):
    from drivesim.cli import main
    from drivesim.io.scenario_file import load_scenario, load_scenarios

    scenarios, errors = load_scenarios(hand_file)
    assert [s.name for s in scenarios] == ["womd/hand0001"] and errors == []
    assert main(["import", "womd", str(hand_file), "-o", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "imported 1 scenario(s) from 1 womd file(s)" in text and "skipped 0 file(s)" in text
    back = load_scenario(tmp_path / "out" / "womd_hand0001.npz")
    assert back.num_agents == 3 and back.road.signal_log is not None and back.road.signal_group == {0: 0}
    assert back.road.lanes[0].successors == [1]


# ------------------------------------------------------------------ the shared real scenario
@pytest.fixture(scope="module")
def real_file(data_dir):
    path = data_dir / "womd_tfrecord" / "motion_data_one_scenario.tfrecord"
    if not path.is_file():
        pytest.skip(f"no WOMD TFRecord at {path}")
    return path


@pytest.mark.data
def test_shared_scenario_decodes(real_file):
    (sc,), _ = womd.load(real_file)  # its import time is measured by tools/bench_import.py, not here
    assert sc.name == "womd/637f20cafde22ff8" and sc.num_agents == 83 and sc.num_steps == 90  # 91 logged steps
    assert sc.meta["sdc_track_index"] == 82 and sc.meta["track_ids"][0] == sc.meta["sdc_track_id"]
    assert sc.log_valid.shape == (83, 91) and sc.log_valid[0].all()
    assert sc.meta["agent_types"] == {"VEHICLE": 70, "PEDESTRIAN": 10, "CYCLIST": 3}
    assert len(sc.meta["tracks_to_predict"]) == 3 and sc.meta["current_time_index"] == 10
    lanes = sc.road.lanes
    assert len(lanes) > 150
    assert sc.meta["lane_links_source"] > 300  # entry/exit lanes and neighbours from the source
    assert sum(len(l.successors) > 0 for l in lanes) > 0.7 * len(lanes)
    assert sum(l.left >= 0 or l.right >= 0 for l in lanes) > 20
    assert sc.meta["road_edges"] == 28 and sc.meta["crosswalks"] == 4 and sc.meta["stop_signs"] == 8
    log = sc.road.signal_log
    assert log.state.shape == (91, 12) and (log.state == SIGNAL_CODES["red"]).any()
    assert len(sc.road.signal_group) > 0


@pytest.mark.data
def test_shared_scenario_bad_crc_is_an_error(real_file, tmp_path):
    raw = bytearray(real_file.read_bytes())
    raw[5000] ^= 0x10
    bad = tmp_path / "damaged.tfrecord"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ImportDataError, match=r"damaged\.tfrecord: record 0 .*bad data CRC"):
        womd.load(bad)


def test_short_unknown_gaps_inside_a_state_are_filled():
    R, G, U = SIGNAL_CODES["red"], SIGNAL_CODES["green"], SIGNAL_CODES["unknown"]
    col = np.array([[U, R, R, U, R, U, U, G, U] + [U] * 12 + [G]], np.int8).T
    filled = womd.fill_short_gaps(col)
    assert col[:, 0].tolist()[:9] == [U, R, R, R, R, U, U, G, U] and filled == 1  # R?G and leading unknowns stay
    assert (col[9:21, 0] == U).all()  # a 13-step gap is longer than 1 s: kept unknown


def test_lazy_decoding_matches_protobuf_messages():
    """The fast path (one numpy read of canonical encodings) and the element-by-element fallback
    (fields missing, out of order, unknown fields) give what protobuf's own messages hold."""
    from drivesim.io.womd_schema import decode_points, decode_states

    full = scenario_class()()
    full.ParseFromString(hand_scenario())
    lazy = scenario_class(lazy=True)()
    lazy.ParseFromString(hand_scenario())
    states = decode_states(lazy.tracks[0].states)
    ref = [(s.center_x, s.center_y, s.center_z, s.length, s.width, s.height, s.heading, s.velocity_x, s.velocity_y, s.valid)
           for s in full.tracks[0].states]
    assert np.allclose(states, np.array(ref, float))
    odd = full.tracks[0].states[3]
    odd.ClearField("center_z")  # a missing field: not the canonical layout
    mixed = [s.SerializeToString() for s in full.tracks[0].states[:5]] + [b"\x09" + bytes(8) + b"\x98\x06\x07"]
    got = decode_states(mixed)  # the last: center_x = 0 (as a wrong field 1) and an unknown varint field 99
    assert got[3, 2] == 0.0 and np.allclose(got[3, [0, 1]], [ref[3][0], ref[3][1]]) and (got[5] == 0).all()
    pts = decode_points(lazy.map_features[0].lane.polyline)
    assert np.allclose(pts, [(p.x, p.y, p.z) for p in full.map_features[0].lane.polyline])
    with pytest.raises(ValueError):
        decode_states([b"\x11\x00"])  # truncated double


def test_import_folder_lists_skipped_files_and_exits_non_zero(tmp_path, capsys):
    from drivesim.cli import main

    src = tmp_path / "src"
    src.mkdir()
    womd.write_records(src / "a.tfrecord", [hand_scenario()])
    womd.write_records(src / "b.tfrecord", [b"garbage"])
    assert main(["import", "womd", str(src), "-o", str(tmp_path / "out"), "--workers", "1"]) == 3
    out = capsys.readouterr()
    assert "imported 1 scenario(s) from 1 womd file(s)" in out.out and "skipped 1 file(s)" in out.out
    assert "b.tfrecord: record 0 is not a Waymo Scenario" in out.err
    assert (tmp_path / "out" / "womd_hand0001.npz").is_file()
