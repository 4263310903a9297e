"""Argoverse 2 motion-forecasting importer on the shared real scenario (DRIVESIM_DATA/av2/motion)."""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("pyarrow")

from drivesim.core.types import AgentType, ControlMode
from drivesim.io import av2
from drivesim.io.errors import ImportDataError

pytestmark = pytest.mark.data
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def motion_dir(data_dir):
    path = data_dir / "av2" / "motion"
    if not path.is_dir():
        pytest.skip(f"no AV2 motion data at {path}")
    return path


@pytest.fixture(scope="module")
def scene_files(motion_dir):
    parquet = min(motion_dir.rglob("scenario_*.parquet"))
    return parquet, min(parquet.parent.glob("log_map_archive_*.json"))


@pytest.fixture(scope="module")
def scenarios(motion_dir):
    scenarios, errors = av2.load(motion_dir)
    assert errors == []
    return scenarios


@pytest.fixture(scope="module")
def scenario(scenarios):
    return scenarios[0]


@pytest.fixture(scope="module")
def tracks(scene_files):
    import pandas as pd

    return pd.read_parquet(scene_files[0])


@pytest.fixture(scope="module")
def source_map(scene_files):
    return json.loads(scene_files[1].read_text())


def test_every_scenario_imports_and_validates(scenarios, motion_dir):
    assert len(scenarios) == len(list(motion_dir.rglob("scenario_*.parquet")))
    for sc in scenarios:
        sc.validate()
        assert sc.name == f"av2/{sc.meta['scene']}" and sc.meta["source"] == "av2"
        assert sc.meta["file"].startswith("scenario_") and "/" not in sc.meta["file"]
        assert sc.dt == 0.1 and sc.num_steps == 109  # 110 steps at 10 Hz
        assert sc.log.shape == (sc.num_agents, 110, 4) and sc.log_valid.shape == (sc.num_agents, 110)


def test_agent_counts_and_types_match_the_source(scenario, tracks):
    per_track = tracks.groupby("track_id")["object_type"].first()
    assert scenario.num_agents == len(per_track) == 58
    assert scenario.meta["source_types"] == dict(Counter(per_track))  # no type dropped
    expected = Counter(AgentType(av2.AV2_TYPES[t][0]).name for t in per_track)
    assert scenario.meta["agent_types"] == dict(expected)
    got = Counter(AgentType(t).name for t in scenario.agent_type)
    assert got == expected
    for i, tid in enumerate(scenario.meta["track_ids"]):
        kind = per_track[tid]
        assert scenario.agent_type[i] == av2.AV2_TYPES[kind][0]
        assert (scenario.length[i], scenario.width[i]) == av2.AV2_TYPES[kind][1:]
    assert scenario.mode[0] == ControlMode.POLICY and (scenario.mode[1:] == ControlMode.REPLAY).all()
    # validity = the rows present per track
    counts = tracks.groupby("track_id").size()
    assert [int(scenario.log_valid[i].sum()) for i in range(scenario.num_agents)] == [int(counts[t]) for t in scenario.meta["track_ids"]]


def test_ego_log_matches_the_av_track(scenario, tracks):
    assert scenario.meta["track_ids"][0] == "AV"
    av = tracks[tracks["track_id"] == "AV"].sort_values("timestep")
    origin = np.array(scenario.meta["origin"])
    t = av["timestep"].to_numpy()
    xy = av[["position_x", "position_y"]].to_numpy() - origin
    np.testing.assert_allclose(scenario.log[0, t, :2], xy, atol=1e-9)
    np.testing.assert_allclose(scenario.log[0, t, 2], av["heading"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(scenario.log[0, t, 3], np.hypot(av["velocity_x"], av["velocity_y"]), atol=1e-9)
    assert scenario.log_valid[0].all()
    assert scenario.x[0] == scenario.y[0] == 0.0  # origin = the ego's first position
    # an agent that appears late starts at its first valid state, and holds it before
    late = int(np.argmax(~scenario.log_valid[:, 0]))
    k = int(np.argmax(scenario.log_valid[late]))
    assert k > 0 and scenario.x[late] == scenario.log[late, k, 0]
    np.testing.assert_allclose(scenario.log[late, :k], np.repeat(scenario.log[late, k:k + 1], k, axis=0))


def test_lanes_links_and_geometry_follow_the_map(scenario, source_map):
    segs = source_map["lane_segments"]
    ids = scenario.meta["lane_ids"]
    lanes = scenario.road.lanes
    assert len(lanes) == sum(s["lane_type"] != "BIKE" for s in segs.values())
    assert scenario.meta["lanes_dropped"] == {"lane_type_BIKE": sum(s["lane_type"] == "BIKE" for s in segs.values())}
    index = {lid: i for i, lid in enumerate(ids)}
    origin = np.array(scenario.meta["origin"])
    from shapely.geometry import LineString

    for lane, lid in zip(lanes, ids):
        seg = segs[str(lid)]
        want = {index[s] for s in seg["successors"] if s in index}
        assert want <= set(lane.successors)
        # the centreline from the boundaries agrees with the map's own stored centreline
        stored = np.array([[p["x"], p["y"]] for p in seg["centerline"]]) - origin
        assert LineString(stored).hausdorff_distance(LineString(lane.centerline)) < 0.3
        assert 2.0 < lane.width < 6.0
        for side in ("left", "right"):
            j = getattr(lane, side)
            if j >= 0:  # same direction only
                a, b = lane.centerline[-1] - lane.centerline[0], lanes[j].centerline[-1] - lanes[j].centerline[0]
                assert a @ b > 0
    assert sum(len(l.successors) > 0 for l in lanes) >= 25
    assert scenario.meta["opposite_neighbours_dropped"] > 0  # AV2 names oncoming lanes as neighbours
    assert scenario.meta["drivable_source"] == "drivable_areas"
    assert scenario.road.drivable.buffer(0.5).contains(LineString(scenario.log[0, :, :2]))


def test_route_follows_successors_from_the_ego(scenario):
    route, lanes = scenario.route, scenario.road.lanes
    assert route
    for a, b in itertools.pairwise(route):
        assert b in lanes[a].successors
    start = np.array([scenario.x[0], scenario.y[0]])
    assert np.linalg.norm(lanes[route[0]].centerline - start, axis=1).min() < 3.0


def test_closed_loop_rollout(scenario):
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.policy import IDMLaneKeeping
    from drivesim.sim.rollout import rollout

    res = rollout(ScenarioBatch.build([scenario]), IDMLaneKeeping())
    assert res.status == ["ok"], res.errors


def _copy_scene(scene_files, dest):
    dest.mkdir(parents=True)
    for f in scene_files:
        shutil.copy(f, dest / f.name)
    return dest / scene_files[0].name, dest / scene_files[1].name


def test_malformed_inputs_name_the_file(scene_files, tmp_path):
    parquet, map_json = _copy_scene(scene_files, tmp_path / "truncated")
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])
    with pytest.raises(ImportDataError, match=parquet.name):
        av2.load(parquet)

    parquet, map_json = _copy_scene(scene_files, tmp_path / "garbled")
    parquet.write_bytes(b"not a parquet file" * 100)
    with pytest.raises(ImportDataError, match=parquet.name):
        av2.load(parquet)

    parquet, map_json = _copy_scene(scene_files, tmp_path / "no_map")
    map_json.unlink()
    with pytest.raises(ImportDataError, match=f"{parquet.name}.*no map"):
        av2.load(parquet)

    parquet, map_json = _copy_scene(scene_files, tmp_path / "bad_map")
    map_json.write_text(map_json.read_text()[:5000])
    with pytest.raises(ImportDataError, match=map_json.name):
        av2.load(parquet)

    parquet, map_json = _copy_scene(scene_files, tmp_path / "empty_map")
    map_json.write_text(json.dumps({"lane_segments": {}, "drivable_areas": {}}))
    with pytest.raises(ImportDataError, match=f"{map_json.name}.*no usable lanes"):
        av2.load(parquet)


def test_unknown_type_is_an_error_naming_it(scene_files, tmp_path):
    import pandas as pd

    parquet, _ = _copy_scene(scene_files, tmp_path / "odd_type")
    df = pd.read_parquet(parquet)
    df.loc[df["track_id"] == df["track_id"].iloc[0], "object_type"] = "hovercraft"
    df.to_parquet(parquet)
    with pytest.raises(ImportDataError, match=f"{parquet.name}.*hovercraft"):
        av2.load(parquet)


def test_directory_with_a_bad_scene_keeps_the_good_ones(scene_files, tmp_path):
    _copy_scene(scene_files, tmp_path / "good")
    bad, _ = _copy_scene(scene_files, tmp_path / "bad")
    bad.write_bytes(b"garbage")
    out, errors = av2.load(tmp_path)
    assert len(out) == 1 and len(errors) == 1 and str(bad) in errors[0]
    bad.parent.joinpath(scene_files[1].name).unlink()
    shutil.rmtree(tmp_path / "good")
    with pytest.raises(ImportDataError, match="no scenario could be imported"):
        av2.load(tmp_path)
