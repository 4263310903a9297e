"""Lane linking and conflicts keep apart lanes at different heights (an overpass, issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim.map.conflicts import map_conflicts
from drivesim.map.linking import infer_links
from drivesim.map.road import same_level
from drivesim.map.road import Lane, MapError, RoadMap


def _lane(p0, p1, z0, z1=None, n=11):
    xy = np.linspace(p0, p1, n)
    z = None if z0 is None else np.linspace(z0, z0 if z1 is None else z1, n)
    return Lane(xy, width=3.5, z=z)


def _bridge(heights: bool = True):
    """0: the bridge deck along +x at z = 6 m; 1: the deck goes on; 2: a road at z = 0 that starts
    below the end of the deck, along +x; 3: a road at z = 0 crossing under the deck along +y;
    4: a road at z = 0 beside the deck, 3.5 m to its left (stacked roadways)."""
    h = (lambda z: z) if heights else (lambda z: None)
    return [_lane((-50, 0), (50, 0), h(6.0)), _lane((50, 0), (100, 0), h(6.0)), _lane((50, 0.2), (100, 0.2), h(0.0)),
            _lane((0, -50), (0, 50), h(0.0)), _lane((-50, 3.5), (50, 3.5), h(0.0))]


def test_bridge_is_not_linked_to_the_road_below():
    lanes = _bridge()
    infer_links(lanes)
    assert lanes[0].successors == [1]  # the deck goes on; the road starting under it is 6 m lower
    assert lanes[0].left == -1 and lanes[4].right == -1
    flat = _bridge(heights=False)  # the same map without heights: 2D geometry joins them
    infer_links(flat)
    assert flat[0].successors == [1, 2] and flat[0].left == 4


def test_bridge_crossing_is_no_conflict():
    lanes = _bridge()
    infer_links(lanes)
    assert not [z for z in map_conflicts(lanes)[0][0] if z[2] == 3]
    flat = _bridge(heights=False)
    infer_links(flat)
    crossing = [z for z in map_conflicts(flat)[0][0] if z[2] == 3]  # (s_in, s_out, other, ...) on the deck
    assert len(crossing) == 1 and crossing[0][0] < 50.0 < crossing[0][1]  # around the crossing at x = 0


def test_ramp_on_a_grade_is_still_linked_and_merges_are_conflicts():
    ramp = _lane((-50, -10), (0, 0), 0.0, 5.0)  # climbs 5 m to the deck: one level at the joint
    deck = _lane((0, 0), (50, 0), 5.0)
    main = _lane((-50, 0), (0, 0.3), 5.0)  # the deck's own approach, merging with the ramp
    lanes = [ramp, deck, main]
    infer_links(lanes)
    assert lanes[0].successors == [1] and lanes[2].successors == [1]
    zones = map_conflicts(lanes)[0]
    assert [z[2] for z in zones[0]] == [2] and [z[2] for z in zones[2]] == [0] and not zones[1]  # ramp and main merge


def test_height_helpers_and_validation():
    assert same_level(0.0, 1.5) and not same_level(0.0, 6.0) and same_level(np.nan, 6.0)
    with pytest.raises(MapError, match="z must be"):
        RoadMap("bad", [Lane(np.array([[0.0, 0.0], [10.0, 0.0]]), z=np.zeros(3))])


def _scenarionet_raw(dataset: str) -> dict:
    """Two lanes in a ScenarioNet dict: the bridge deck (third column 6 m) and, ending where the deck
    starts, the road below (0 m); for nuScenes the third column is the lane heading, not z."""
    T = 11
    pos = np.stack([np.linspace(-40, -30, T), np.zeros(T), np.zeros(T)], 1)
    ego = {"type": "VEHICLE", "metadata": {"type": "VEHICLE" if dataset != "nuscenes" else "vehicle.car"}, "state": {
        "position": pos, "heading": np.zeros(T), "velocity": np.tile([1.0, 0.0], (T, 1)), "valid": np.ones(T, bool),
        "length": np.full(T, 4.5), "width": np.full(T, 1.9)}}
    line = lambda x0, x1, z: np.stack([np.linspace(x0, x1, 11), np.zeros(11), np.full(11, z)], 1)
    feats = {"below": {"type": "LANE_SURFACE_STREET", "polyline": line(-50, 0, 0.0)},
             "deck": {"type": "LANE_SURFACE_STREET", "polyline": line(0, 50, 6.0)}}
    return {"id": "b", "length": T, "tracks": {"ego": ego}, "map_features": feats, "dynamic_map_states": {},
            "metadata": {"dataset": dataset, "scenario_id": "bridge", "sdc_id": "ego", "ts": np.arange(T) * 0.1}}


def test_scenarionet_keeps_heights_and_does_not_join_levels():
    from drivesim.io import scenarionet

    waymo = scenarionet.convert(_scenarionet_raw("waymo"), "bridge.pkl", scenarionet.ImportConfig(crop_margin=None))
    below, deck = waymo.road.lanes
    assert np.allclose(below.z, 0.0) and np.allclose(deck.z, 6.0) and waymo.meta["lanes_with_z"] == 2
    assert below.successors == []  # 6 m apart where they meet in xy
    nus = scenarionet.convert(_scenarionet_raw("nuscenes"), "bridge.pkl", scenarionet.ImportConfig(crop_margin=None))
    assert all(l.z is None for l in nus.road.lanes)  # a heading column is not a height
    assert nus.road.lanes[0].successors == [1]


@pytest.mark.data
def test_av2_lanes_carry_the_boundary_heights(data_dir):
    import json

    from drivesim.io import av2

    folder = data_dir / "av2" / "motion"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    (sc,), _ = av2.load(folder)
    assert sc.meta["lanes_with_z"] == len(sc.road.lanes) > 0
    segments = json.loads(next(folder.rglob("log_map_archive_*.json")).read_text())["lane_segments"]
    for lane, sid in zip(sc.road.lanes, sc.meta["lane_ids"]):
        seg = segments[str(sid)]
        for k in (0, -1):
            zk = 0.5 * (seg["left_lane_boundary"][k]["z"] + seg["right_lane_boundary"][k]["z"])
            assert lane.z[k] == pytest.approx(zk, abs=1e-6)
    assert all(np.ptp(l.z) < 0.2 * l.length + 1.0 for l in sc.road.lanes)  # grades under 20 %
