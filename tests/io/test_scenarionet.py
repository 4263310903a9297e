"""ScenarioNet importer: the 8 real nuScenes scenes in DRIVESIM_DATA, plus small synthetic files
for what nuScenes lacks (lane links, traffic lights, other sample rates) and for malformed input."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.types import AgentType, ControlMode
from drivesim.io import scenarionet
from drivesim.io.errors import ImportDataError
from drivesim.sim.policy import IDMLaneKeeping
from drivesim.sim.rollout import rollout

SCENES = ["0061", "0103", "0553", "0655", "0757", "0796", "0916", "1077"]


def _file(scene: str) -> str:
    return f"sd_nuscenes_v1.0-mini_scene-{scene}.pkl"


@pytest.fixture(scope="module")
def folder(data_dir) -> Path:
    path = data_dir / "scenarionet_nuscenes"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def raws(folder) -> dict:
    return {p.name: pickle.load(open(p, "rb")) for p in sorted(folder.glob("*.pkl"))}


@pytest.fixture(scope="module")
def scenes(folder) -> dict:
    loaded, errors = scenarionet.load(folder)
    assert errors == []
    return {sc.meta["file"]: sc for sc in loaded}


# ------------------------------------------------------------------------------ real data
@pytest.mark.data
def test_every_scene_imports_and_validates(scenes, raws):
    assert sorted(scenes) == sorted(raws) == [_file(s) for s in SCENES]
    for name, sc in scenes.items():
        sc.validate()
        raw = raws[name]
        assert sc.name == f"scenarionet/{raw['metadata']['scenario_id']}"
        assert sc.dt == 0.1 and sc.num_steps == raw["length"] - 1
        assert sc.log.shape == (sc.num_agents, raw["length"], 4) and sc.log_valid.shape == sc.log.shape[:2]
        assert sc.meta["source"] == "scenarionet" and sc.meta["file"] == name
        assert np.isfinite(sc.log).all() and (sc.length > 0).all() and (sc.width > 0).all()


@pytest.mark.data
def test_agent_counts_and_types_match_the_source(scenes, raws):
    expect = {"VEHICLE": AgentType.VEHICLE, "PEDESTRIAN": AgentType.PEDESTRIAN, "CYCLIST": AgentType.CYCLIST,
              "TRAFFIC_CONE": AgentType.STATIC, "TRAFFIC_BARRIER": AgentType.STATIC}
    for name, sc in scenes.items():
        tracks = raws[name]["tracks"]
        source = Counter(t["type"] for t in tracks.values())
        assert sc.num_agents == len(tracks) and sc.meta["skipped_no_valid"] == 0  # no track dropped
        assert sc.meta["counts"] == dict(source) == raws[name]["metadata"]["number_summary"]["num_objects_each_type"]
        assert sc.meta["subtypes"] == dict(Counter(t["metadata"]["type"] for t in tracks.values()))
        for i, tid in enumerate(sc.meta["track_ids"]):
            assert sc.agent_type[i] == expect[tracks[tid]["type"]]
        assert sc.mode[0] == ControlMode.POLICY and (sc.mode[1:] == ControlMode.REPLAY).all()


@pytest.mark.data
def test_ego_log_is_the_sdc_track(scenes, raws):
    for name, sc in scenes.items():
        st = raws[name]["tracks"][raws[name]["metadata"]["sdc_id"]]["state"]
        origin = st["position"][0, :2]
        assert sc.meta["track_ids"][0] == "ego" and np.allclose(sc.meta["origin"], origin)
        assert sc.log_valid[0].all()
        np.testing.assert_allclose(sc.log[0, :, :2], st["position"][:, :2] - origin, atol=1e-9)
        dyaw = (sc.log[0, :, 2] - st["heading"] + np.pi) % (2 * np.pi) - np.pi
        assert np.abs(dyaw).max() < 1e-9
        assert (sc.x[0], sc.y[0]) == (0.0, 0.0)
        assert (sc.length[0], sc.width[0]) == (4.08, 1.73)  # swapped back (stored 1.73 long, 4.08 wide)


@pytest.mark.data
def test_largest_scene_replays_every_track(scenes, raws):
    name = max(raws, key=lambda n: len(raws[n]["tracks"]))
    assert name == _file("0061") and len(raws[name]["tracks"]) == 226
    sc = scenes[name]
    assert sc.num_agents == 226 and sc.log.shape == (226, 191, 4)
    for i, tid in enumerate(sc.meta["track_ids"]):
        st = raws[name]["tracks"][tid]["state"]
        ok = st["valid"] > 0
        np.testing.assert_array_equal(sc.log_valid[i], ok)
        np.testing.assert_allclose(sc.log[i, ok, :2], st["position"][ok, :2] - sc.meta["origin"], atol=1e-9)
        first = ok.argmax()
        assert (sc.x[i], sc.y[i]) == tuple(sc.log[i, first, :2])  # first valid state when not visible at t=0


@pytest.mark.data
def test_lanes_are_linked_and_the_route_starts_at_the_ego(scenes):
    for sc in scenes.values():
        lanes = sc.road.lanes
        assert sc.meta["lane_links_inferred"] > 0 and sc.meta["successors_capped"] == 0
        assert np.mean([len(l.successors) > 0 for l in lanes]) > 0.8
        assert all(2.5 <= l.width <= 5.0 for l in lanes)
        for a, b in zip(sc.route, sc.route[1:]):
            assert b in lanes[a].successors
        start = np.linalg.norm(lanes[sc.route[0]].centerline - [sc.x[0], sc.y[0]], axis=1).min()
        assert start < lanes[sc.route[0]].width
        assert sc.road.drivable.contains(Point(sc.x[0], sc.y[0]))


@pytest.mark.data
@pytest.mark.parametrize("scene", SCENES)
def test_idm_rollout_runs(scenes, scene):
    res = rollout(ScenarioBatch.build([scenes[_file(scene)]]), IDMLaneKeeping())
    assert res.status == ["ok"], res.errors


@pytest.mark.data
def test_source_drivable_area_covers_the_lanes(folder, scenes):
    sc = scenes[_file("0916")]  # the default: drivable="source"
    lanes_only = scenarionet.load_file(folder / _file("0916"), scenarionet.ImportConfig(drivable="lanes")).road.drivable
    assert "road-edge rings" in sc.meta["drivable"]
    assert sc.road.drivable.area > 1.1 * lanes_only.area  # junctions and road beyond the lane polygons
    assert lanes_only.difference(sc.road.drivable).area < 1.0


@pytest.mark.data
def test_bad_files_name_the_file(tmp_path, folder, raws):
    garbled = tmp_path / "garbled.pkl"
    garbled.write_bytes(b"\x80\x04this is not a pickle")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes((folder / _file("0757")).read_bytes()[:5000])
    raw = dict(raws[_file("0757")])
    raw["map_features"] = {k: v for k, v in raw["map_features"].items() if not v["type"].startswith("LANE")}
    no_lanes = tmp_path / "no_lanes.pkl"
    no_lanes.write_bytes(pickle.dumps(raw))
    for path, words in ((garbled, "not a readable"), (truncated, "not a readable"), (no_lanes, "no lanes")):
        with pytest.raises(ImportDataError, match=path.name) as e:
            scenarionet.load(path)
        assert words in str(e.value)


@pytest.mark.data
def test_directory_with_a_bad_file_returns_the_good_ones(tmp_path, folder):
    for p in folder.glob("*.pkl"):
        os.symlink(p.resolve(), tmp_path / p.name)
    (tmp_path / "zz_bad.pkl").write_bytes(b"garbage")
    (tmp_path / "dataset_summary.pkl").write_bytes(pickle.dumps({"index": 1}))  # a database index, not a scenario
    loaded, errors = scenarionet.load(tmp_path)
    assert sorted(sc.meta["file"] for sc in loaded) == [_file(s) for s in SCENES]
    assert len(errors) == 1 and "zz_bad.pkl" in errors[0]


@pytest.mark.data
def test_unknown_track_type_is_an_error(tmp_path, raws):
    raw = dict(raws[_file("0757")])
    tid = next(k for k in raw["tracks"] if k != "ego")
    raw["tracks"] = {**raw["tracks"], tid: {**raw["tracks"][tid], "type": "HOVERCRAFT"}}
    path = tmp_path / "odd_type.pkl"
    path.write_bytes(pickle.dumps(raw))
    with pytest.raises(ImportDataError, match="odd_type.pkl.*HOVERCRAFT"):
        scenarionet.load(path)


# ------------------------------------------------------------------------------ synthetic
def _line(x0, x1, y, n=11):
    xs = np.linspace(x0, x1, n)
    return np.stack([xs, np.full(n, y), np.zeros(n)], axis=1).astype(np.float32)


def _synthetic(dt=0.2, T=21) -> dict:
    """Waymo-style ScenarioNet dict: 3 lanes with links by (int) id, a light, road edges, 5 Hz."""
    t = np.arange(T) * dt
    ego_x = 1000.0 + 5.0 * t
    ego = {"type": "VEHICLE", "metadata": {"type": "VEHICLE"}, "state": {
        "position": np.stack([ego_x, np.full(T, 2000.0), np.zeros(T)], 1), "heading": np.zeros(T),
        "velocity": np.tile([5.0, 0.0], (T, 1)), "valid": np.ones(T, bool),
        "length": np.full(T, 4.5), "width": np.full(T, 2.0)}}
    ped_valid = t >= 2.0
    ped = {"type": "PEDESTRIAN", "metadata": {"type": "PEDESTRIAN"}, "state": {
        "position": np.stack([np.full(T, 1030.0), 1990.0 + t, np.zeros(T)], 1) * ped_valid[:, None],
        "heading": np.full(T, np.pi / 2), "velocity": np.tile([0.0, 1.0], (T, 1)) * ped_valid[:, None],
        "valid": ped_valid, "length": np.full(T, 0.6), "width": np.full(T, 0.6)}}
    off = np.array([1000.0, 2000.0, 0.0], np.float32)
    lane = lambda x0, x1, y, **kw: {"type": "LANE_SURFACE_STREET", "polyline": _line(x0, x1, y) + off,
                                    "speed_limit_kmh": 36.0, "width": np.full((11, 2), 1.6), **kw}
    feats = {
        "1": lane(0, 50, 0, exit_lanes=[2], left_neighbor=[{"feature_id": 3}]),
        "2": lane(50, 100, 0, entry_lanes=[1]),
        "3": lane(0, 50, 3.5, right_neighbor=[{"feature_id": 1}]),
        "4": {"type": "ROAD_EDGE_BOUNDARY", "polyline": _line(0, 100, -2) + off},
        "5": {"type": "ROAD_EDGE_BOUNDARY", "polyline": _line(0, 100, 5.5) + off},
    }
    light = ["LANE_STATE_GO"] * 10 + ["LANE_STATE_CAUTION"] * 3 + ["LANE_STATE_STOP"] * (T - 13)
    return {"id": "syn", "length": T, "metadata": {"dataset": "waymo", "scenario_id": "syn-1", "sdc_id": "7",
                                                   "ts": t, "sample_rate": dt},
            "tracks": {"7": ego, "8": ped}, "map_features": feats,
            "dynamic_map_states": {"2": {"type": "TRAFFIC_LIGHT", "lane": 2, "state": {"object_state": light},
                                         "stop_point": np.array([1100.0, 2000.0, 0.0])}}}


def test_source_links_lights_and_resampling(tmp_path):
    path = tmp_path / "syn.pkl"
    path.write_bytes(pickle.dumps(_synthetic()))
    (sc,), _ = scenarionet.load(path)
    ids = sc.meta["track_ids"]
    assert ids == ["7", "8"] and sc.meta["resampled_from_dt"] == pytest.approx(0.2)
    assert sc.num_steps == 40 and sc.log.shape == (2, 41, 4)
    np.testing.assert_allclose(sc.log[0, :, 0], 0.5 * np.arange(41), atol=1e-9)  # 5 m/s, interpolated at 0.1 s
    np.testing.assert_allclose(sc.log[0, :, 3], 5.0)
    assert not sc.log_valid[1, :20].any() and sc.log_valid[1, 20:].all()
    assert (sc.x[1], sc.y[1]) == pytest.approx((30.0, -8.0)) and sc.yaw[1] == pytest.approx(np.pi / 2)
    lanes = sc.road.lanes  # source order: ids 1, 2, 3 -> indices 0, 1, 2
    assert lanes[0].successors == [1] and lanes[0].left == 2 and lanes[2].right == 0
    assert sc.meta["lane_links_source"] == 3
    assert all(l.width == pytest.approx(3.2) and l.speed_limit == pytest.approx(10.0) for l in lanes)
    assert sc.meta["speed_limit"] == "source" and sc.meta["road_edges"] == 2
    lights = sc.meta["traffic_lights"]
    assert list(lights) == [1] and sc.meta["traffic_lights_unmapped"] == 0
    assert len(lights[1]["state"]) == 41 and lights[1]["state"][0] == "green" and lights[1]["state"][-1] == "red"
    assert lights[1]["stop_point"] == pytest.approx([100.0, 0.0])
    assert sc.route[0] == 0
    assert rollout(ScenarioBatch.build([sc]), IDMLaneKeeping()).status == ["ok"]


def test_synthetic_errors(tmp_path):
    raw = _synthetic()
    raw["metadata"]["sdc_id"] = "99"
    (tmp_path / "no_ego.pkl").write_bytes(pickle.dumps(raw))
    with pytest.raises(ImportDataError, match="no_ego.pkl.*sdc_id '99'"):
        scenarionet.load(tmp_path / "no_ego.pkl")
    raw = _synthetic()
    raw["tracks"]["8"]["state"]["position"] = np.zeros((5, 3))
    (tmp_path / "short.pkl").write_bytes(pickle.dumps(raw))
    with pytest.raises(ImportDataError, match="short.pkl.*'8' position"):
        scenarionet.load(tmp_path / "short.pkl")


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickles_that_import_code_are_refused(tmp_path):
    path = tmp_path / "sneaky.pkl"
    path.write_bytes(pickle.dumps({"tracks": _Sneaky()}))
    with pytest.raises(ImportDataError, match="sneaky.pkl.*refusing to load posix.getcwd"):
        scenarionet.load(path)
