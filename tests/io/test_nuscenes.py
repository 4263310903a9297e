"""nuScenes importer on a dataroot rebuilt from the real scene-0061 (tests/io/nuscenes_fixture.py).

The rebuilt tables hold the real ego pose log and the real 2 Hz annotations, so importing them must
give back the ScenarioNet pickle they came from: its ego track, its agents (ScenarioNet also
interpolates linearly between keyframes), their types and sizes.
"""

import json
import shutil
import time
import warnings
from collections import Counter

import numpy as np
import pytest
from shapely.ops import unary_union

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.types import AgentType, ControlMode
from drivesim.io import nuscenes as nu
from drivesim.io.errors import ImportDataError
from drivesim.sim.policy import IDMLaneKeeping
from drivesim.sim.rollout import rollout
from tests.io.nuscenes_fixture import write_dataroot

pytestmark = pytest.mark.data

# ScenarioNet's own type names for the same tracks (cones and barriers are STATIC in drivesim)
SCENARIONET_TYPES = {"VEHICLE": AgentType.VEHICLE, "PEDESTRIAN": AgentType.PEDESTRIAN, "CYCLIST": AgentType.CYCLIST,
                     "TRAFFIC_CONE": AgentType.STATIC, "TRAFFIC_BARRIER": AgentType.STATIC}


@pytest.fixture(scope="module")
def rebuilt(data_dir, tmp_path_factory):
    info = write_dataroot(tmp_path_factory.mktemp("nuscenes") / "nuscenes", data_dir)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenarios, errors = nu.load(info["dataroot"])
    info["seconds"] = time.perf_counter() - t
    info["warnings"] = [str(w.message) for w in caught]
    info["scenarios"], info["errors"] = scenarios, errors
    return info


def _tracks(info):
    sd = info["scenario"]
    return {k: t for k, t in sd["tracks"].items() if k != sd["metadata"]["sdc_id"] and t["state"]["valid"].any()}


def test_one_scenario_that_validates(rebuilt):
    (sc,) = rebuilt["scenarios"]
    sc.validate()
    assert sc.name == "nuscenes/scene-0061" and rebuilt["errors"] == []
    assert sc.dt == 0.1 and sc.num_steps == rebuilt["scenario"]["length"] - 1 == 190
    assert sc.meta["source"] == "nuscenes" and sc.meta["scene"] == "scene-0061"
    assert sc.meta["file"] == "nuscenes/v1.0-mini"  # dataroot folder / version, not a full path
    assert sc.meta["num_keyframes"] == 39 and sc.meta["num_ego_poses"] == 191
    assert sc.mode[0] == ControlMode.POLICY and (sc.mode[1:] == ControlMode.REPLAY).all()
    assert rebuilt["seconds"] < 10, f"import took {rebuilt['seconds']:.1f} s"


def test_ego_matches_the_logged_track(rebuilt):
    (sc,) = rebuilt["scenarios"]
    ego = rebuilt["scenario"]["tracks"]["ego"]["state"]
    origin = np.array(sc.meta["origin"])
    np.testing.assert_allclose(origin, ego["position"][0, :2])
    assert np.abs(sc.log[0, :, :2] - (ego["position"][:, :2] - origin)).max() < 0.05
    assert np.abs(nu._wrap(sc.log[0, :, 2] - ego["heading"])).max() < 1e-3
    assert sc.log_valid[0].all() and sc.x[0] == 0 and sc.y[0] == 0
    # speed by finite differences of the positions; ScenarioNet's forward differences agree closely
    np.testing.assert_allclose(sc.log[0, :, 3], np.linalg.norm(np.gradient(ego["position"][:, :2], 0.1, axis=0), axis=1))
    assert np.median(np.abs(sc.log[0, :, 3] - np.linalg.norm(ego["velocity"], axis=1))) < 0.2
    # ScenarioNet swaps the ego's length and width (1.73 x 4.08): compare the box dimensions, not their names
    assert (sc.length[0], sc.width[0]) == (nu.EGO_LENGTH, nu.EGO_WIDTH)
    assert sorted([ego["length"][0, 0], ego["width"][0, 0]]) == pytest.approx([sc.width[0], sc.length[0]], abs=0.01)


def test_agents_types_and_sizes_match(rebuilt):
    (sc,) = rebuilt["scenarios"]
    tracks = _tracks(rebuilt)
    ids = sc.meta["agent_ids"]
    assert ids[0] == "ego" and sorted(ids[1:]) == sorted(tracks) and sc.meta["num_skipped_agents"] == 0
    got = Counter(AgentType(t).name for t in sc.agent_type[1:])
    assert got == Counter(SCENARIONET_TYPES[t["type"]].name for t in tracks.values())
    assert got == Counter(nu.CATEGORY_TYPES[t["metadata"]["type"]].name for t in tracks.values())
    assert got == {"VEHICLE": 23, "PEDESTRIAN": 60, "CYCLIST": 6, "STATIC": 136}
    assert sc.meta["categories"] == dict(Counter(t["metadata"]["type"] for t in tracks.values()))
    origin = np.array(sc.meta["origin"])
    for i, tid in enumerate(ids[1:], 1):
        s = tracks[tid]["state"]
        v = s["valid"].astype(bool)
        assert (sc.log_valid[i] == v).all(), tid
        assert np.abs(sc.log[i, v, :2] - (s["position"][v, :2] - origin)).max() < 0.05, tid
        assert np.abs(nu._wrap(sc.log[i, v, 2] - s["heading"][v])).max() < 1e-3, tid
        assert sc.length[i] == pytest.approx(np.median(s["length"][v]), abs=1e-6), tid
        assert sc.width[i] == pytest.approx(np.median(s["width"][v]), abs=1e-6), tid
        first = np.argmax(v)
        assert (sc.x[i], sc.y[i]) == pytest.approx(tuple(s["position"][first, :2] - origin)), tid


def test_approximate_map_and_route(rebuilt):
    (sc,) = rebuilt["scenarios"]
    assert any("maps/expansion/singapore-onenorth.json not found" in w for w in rebuilt["warnings"]), rebuilt["warnings"]
    assert sc.meta["map"] == "approximate (no map expansion)"
    assert len(sc.road.lanes) == 1 and sc.route == [0] and sc.road.lanes[0].width == 3.5
    cl = sc.road.lanes[0].centerline
    d = np.linalg.norm(cl[:, None] - sc.log[0, None, :, :2], axis=-1).min(axis=0)
    assert d.max() < 1.0  # the corridor follows the whole logged ego path


def test_closed_loop_rollout(rebuilt):
    (sc,) = rebuilt["scenarios"]
    res = rollout(ScenarioBatch.build([sc]), IDMLaneKeeping())
    assert res.status == ["ok"], res.errors


def test_map_expansion_lanes_links_and_drivable(data_dir, tmp_path):
    info = write_dataroot(tmp_path / "nuscenes", data_dir, map_expansion=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (sc,), _ = nu.load(info["dataroot"], scenes=["scene-0061"])
    assert not [w for w in caught if "maps/expansion" in str(w.message)]  # the map is there: no warning
    road = sc.road
    assert sc.meta["map"] == "nuScenes map expansion 1.3" and sc.meta["num_lanes"] == 6  # the far lane is not near
    kinds = Counter(lane.kind for lane in road.lanes)
    assert kinds == {"lane": 4, "connector": 2}
    assert [road.lanes[r].kind for r in sc.route] == ["lane", "connector", "lane"]  # validate() checks the links
    start = road.lanes[sc.route[0]].centerline
    assert np.linalg.norm(start - sc.log[0, 0, :2], axis=1).min() < 1.0
    assert road.lanes[sc.route[0]].left >= 0 and road.lanes[road.lanes[sc.route[0]].left].right == sc.route[0]
    lanes_area = unary_union([lane.polygon() for lane in road.lanes]).area
    assert road.drivable.area > 1.3 * lanes_area  # the map's 14 m wide band, not the default union of lanes
    assert road.drivable.buffer(0.1).contains(road.lanes[sc.route[0]].polygon().buffer(-0.2))
    res = rollout(ScenarioBatch.build([sc]), IDMLaneKeeping())
    assert res.status == ["ok"], res.errors


@pytest.fixture(scope="module")
def pristine(data_dir, tmp_path_factory):
    return write_dataroot(tmp_path_factory.mktemp("nuscenes_src") / "nuscenes", data_dir)["dataroot"]


def _copy(src, tmp_path):
    return shutil.copytree(src, tmp_path / "nuscenes")


def test_missing_table_names_the_file(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    (root / "v1.0-mini" / "sample_annotation.json").unlink()
    with pytest.raises(ImportDataError, match=r"v1.0-mini/sample_annotation\.json"):
        nu.load(root)


def test_garbled_table_names_the_file(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    path = root / "v1.0-mini" / "instance.json"
    path.write_text(path.read_text()[:1000])
    with pytest.raises(ImportDataError, match=r"v1.0-mini/instance\.json"):
        nu.load(root)


def test_unknown_category_names_the_file_and_category(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    path = root / "v1.0-mini" / "category.json"
    cats = json.loads(path.read_text())
    next(c for c in cats if c["name"] == "vehicle.car")["name"] = "vehicle.hovercraft"
    path.write_text(json.dumps(cats))
    with pytest.raises(ImportDataError, match=r"category\.json: unknown nuScenes category 'vehicle\.hovercraft'"):
        nu.load(root)


def test_a_bad_scene_is_reported_and_skipped(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    path = root / "v1.0-mini" / "scene.json"
    scenes = json.loads(path.read_text())
    scenes.append(scenes[0] | {"token": "f" * 32, "name": "scene-broken", "first_sample_token": "0" * 32})
    path.write_text(json.dumps(scenes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, errors = nu.load(root)
    assert [s.name for s in got] == ["nuscenes/scene-0061"]
    assert len(errors) == 1 and "scene 'scene-broken'" in errors[0]
    with pytest.raises(ImportDataError, match="scene-broken"):
        nu.load(root, scenes=["scene-broken"])


def test_required_map_and_unknown_scene(pristine):
    with pytest.raises(ImportDataError, match=r"maps/expansion/singapore-onenorth\.json: nuScenes map expansion not found"):
        nu.load(pristine, require_map=True)
    with pytest.raises(ImportDataError, match=r"scene\.json: no scene \['scene-9999'\]"):
        nu.load(pristine, scenes="scene-9999")
