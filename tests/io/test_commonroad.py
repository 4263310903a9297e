"""CommonRoad importer on the shared NGSIM scenarios (DRIVESIM_DATA/commonroad_ngsim)."""

from __future__ import annotations

import itertools
import shutil
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
import torch
from shapely.geometry import LineString

pytest.importorskip("commonroad")

from drivesim.core.types import AgentType, ControlMode
from drivesim.io import commonroad as crio
from drivesim.io.errors import ImportDataError

pytestmark = pytest.mark.data
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cr_dir(data_dir):
    path = data_dir / "commonroad_ngsim"
    if not path.is_dir():
        pytest.skip(f"no CommonRoad data at {path}")
    return path


@pytest.fixture(scope="module")
def scenarios(cr_dir):
    out, errors = crio.load(cr_dir)
    assert errors == []
    return {sc.meta["file"]: sc for sc in out}


def _source_obstacles(file) -> dict[int, tuple[str, str]]:
    """id -> (role, type) straight from the XML (2018b <obstacle><role> or 2020a <dynamicObstacle>)."""
    root = ET.parse(file).getroot()
    out = {}
    for el in root:
        if el.tag == "obstacle":
            out[int(el.get("id"))] = (el.findtext("role"), el.findtext("type"))
        elif el.tag in ("dynamicObstacle", "staticObstacle"):
            out[int(el.get("id"))] = (el.tag.removesuffix("Obstacle"), el.findtext("type"))
    return out


def _read(file):
    from commonroad.common.file_reader import CommonRoadFileReader

    return CommonRoadFileReader(str(file)).open()[0]


def test_every_file_imports_and_validates(scenarios, cr_dir):
    files = sorted(p.name for p in cr_dir.glob("*.xml"))
    assert sorted(scenarios) == files and len(files) == 4
    for sc in scenarios.values():
        sc.validate()
        assert sc.name == f"commonroad/{sc.meta['scene']}" and sc.meta["source"] == "commonroad"
        assert sc.dt == 0.1 and sc.meta["source_dt"] == 0.1
        assert sc.mode[0] == ControlMode.POLICY and (sc.mode[1:] == ControlMode.REPLAY).all()


def test_agent_counts_and_types_match_the_source(scenarios, cr_dir):
    for name, sc in scenarios.items():
        src = _source_obstacles(cr_dir / name)
        assert 9 <= len(src) <= 24
        assert sc.num_agents == len(src)  # the ego is one of the obstacles
        assert sorted(sc.meta["obstacle_ids"]) == sorted(src)
        assert sc.meta["source_types"] == {k.upper(): v for k, v in Counter(t for _, t in src.values()).items()}
        want = Counter(AgentType(crio.CR_TYPES[t.upper()][0]).name for _, t in src.values())
        assert Counter(AgentType(t).name for t in sc.agent_type) == want == Counter(sc.meta["agent_types"])
        assert sc.meta["sizes_from_type_default"] == 0
        assert (sc.length > 2.5).all() and (sc.width > 1.2).all()


def test_ego_is_the_longest_track_and_its_log_matches(scenarios, cr_dir):
    for name, sc in scenarios.items():
        cr = _read(cr_dir / name)
        ego_id = sc.meta["ego_obstacle_id"]
        assert sc.meta["obstacle_ids"][0] == ego_id and sc.meta["obstacle_ids"].count(ego_id) == 1
        last = {o.obstacle_id: o.prediction.final_time_step for o in cr.dynamic_obstacles}
        assert last[ego_id] == max(last.values()) == sc.num_steps
        ego = cr.obstacle_by_id(ego_id)
        assert ego.initial_state.time_step == 0
        assert (sc.length[0], sc.width[0]) == (ego.obstacle_shape.length, ego.obstacle_shape.width)
        origin = np.array(sc.meta["origin"])
        np.testing.assert_allclose(origin, ego.initial_state.position)
        states = [ego.initial_state] + list(ego.prediction.trajectory.state_list)
        t = np.array([s.time_step for s in states])
        np.testing.assert_allclose(sc.log[0, t, :2], np.array([s.position for s in states]) - origin, atol=1e-9)
        np.testing.assert_allclose(sc.log[0, t, 3], [abs(s.velocity) for s in states], atol=1e-9)
        assert sc.log_valid[0].all()
        # every other agent's validity = its own time steps
        for a, oid in enumerate(sc.meta["obstacle_ids"]):
            assert sc.log_valid[a].sum() == last[oid] + 1


def test_lanes_links_speed_limits(scenarios, cr_dir):
    for name, sc in scenarios.items():
        cr = _read(cr_dir / name)
        lanes, ids = sc.road.lanes, sc.meta["lanelet_ids"]
        index = {lid: i for i, lid in enumerate(ids)}
        assert len(lanes) == len(cr.lanelet_network.lanelets)
        for lane, lid in zip(lanes, ids):
            ll = cr.lanelet_network.find_lanelet_by_id(lid)
            assert {index[s] for s in ll.successor} <= set(lane.successors)
            w = np.linalg.norm(ll.left_vertices - ll.right_vertices, axis=1).mean()
            assert lane.width == pytest.approx(w)
            if ll.adj_left is not None and not ll.adj_left_same_direction:
                assert lane.left != index[ll.adj_left]
            for j in (lane.left, lane.right):
                if j >= 0:  # same direction only
                    a, b = lane.centerline[-1] - lane.centerline[0], lanes[j].centerline[-1] - lanes[j].centerline[0]
                    assert a @ b > 0
        assert sum(len(l.successors) > 0 for l in lanes) >= len(lanes) // 2
    urban = scenarios["USA_Peach-4_8_T-1.xml"]
    assert urban.meta["opposite_neighbours_dropped"] == 28
    assert {round(l.speed_limit, 2) for l in urban.road.lanes} == {11.18, 15.65}  # 25 and 35 mph signs
    assert urban.meta["traffic_lights_ignored"] == 4
    assert {l.speed_limit for l in scenarios["USA_US101-3_3_T-1.xml"].road.lanes} == {crio.DEFAULT_SPEED_LIMIT}


def test_route_follows_successors_from_the_ego(scenarios):
    for sc in scenarios.values():
        lanes, route = sc.road.lanes, sc.route
        for a, b in itertools.pairwise(route):
            assert b in lanes[a].successors
        start = np.array([sc.x[0], sc.y[0]])
        near = min(np.linalg.norm(lanes[r].centerline - start, axis=1).min() for r in route[:1])
        assert near < 4.0, sc.name  # sparse lanelet vertices: the nearest vertex, not the foot point
        assert sc.road.drivable.buffer(0.5).contains(LineString(sc.log[0, :, :2]))


def test_closed_loop_rollout(scenarios):
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.policy import IDMLaneKeeping
    from drivesim.sim.rollout import rollout

    for sc in scenarios.values():
        res = rollout(ScenarioBatch.build([sc]), IDMLaneKeeping())
        assert res.status == ["ok"], (sc.name, res.errors)


def test_malformed_xml_names_the_file(cr_dir, tmp_path):
    src = cr_dir / "USA_US101-3_3_T-1.xml"
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(src.read_bytes()[:50_000])
    with pytest.raises(ImportDataError, match="truncated.xml"):
        crio.load(truncated)

    garbled = tmp_path / "garbled.xml"
    garbled.write_text("<commonRoad><lanelet id='x'>nonsense</lanelet>")
    with pytest.raises(ImportDataError, match="garbled.xml"):
        crio.load(garbled)

    tree = ET.parse(src)
    root = tree.getroot()
    for el in [e for e in root if e.tag in ("lanelet", "planningProblem")]:
        root.remove(el)
    no_map = tmp_path / "no_map.xml"
    tree.write(no_map)
    with pytest.raises(ImportDataError, match="no_map.xml.*no usable lanelets"):
        crio.load(no_map)

    with pytest.raises(ImportDataError, match="missing.xml"):
        crio.load(tmp_path / "missing.xml")


def test_directory_with_a_bad_file_keeps_the_good_ones(cr_dir, tmp_path):
    shutil.copy(cr_dir / "USA_US101-3_3_T-1.xml", tmp_path / "good.xml")
    (tmp_path / "bad.xml").write_text("<commonRoad")
    out, errors = crio.load(tmp_path)
    assert [s.meta["file"] for s in out] == ["good.xml"]
    assert len(errors) == 1 and "bad.xml" in errors[0]
    (tmp_path / "good.xml").unlink()
    with pytest.raises(ImportDataError, match="no scenario could be imported"):
        crio.load(tmp_path)


def test_other_time_step_is_resampled_to_0_1_s(cr_dir, tmp_path, scenarios):
    src = cr_dir / "USA_US101-3_3_T-1.xml"
    slow = tmp_path / "slow.xml"
    slow.write_text(src.read_text().replace('timeStepSize="0.1"', 'timeStepSize="0.2"', 1))
    (sc,), _ = crio.load(slow)
    ref = scenarios[src.name]
    assert sc.meta["source_dt"] == 0.2 and sc.dt == 0.1 and sc.num_steps == 2 * ref.num_steps
    assert sc.meta["ego_obstacle_id"] == ref.meta["ego_obstacle_id"]
    np.testing.assert_allclose(sc.log[:, ::2, :3], ref.log[:, :, :3], atol=1e-9)  # source steps kept
    mid = 0.5 * (ref.log[:, :-1, :2] + ref.log[:, 1:, :2])
    np.testing.assert_allclose(sc.log[:, 1::2, :2], mid, atol=1e-9)  # linear in between
