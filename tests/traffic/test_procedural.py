from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from drivesim.core.scenario import AGENT_FIELDS
from drivesim.traffic.procedural import (MIN_GAP, TIME_GAP, EgoConfig, TrafficConfig, choose_route, ends_at_map_edge, enumerate_routes,
                                       lane_strands, procedural_scenario, route_class, route_length)
from drivesim.core.config import ConfigError
from drivesim.core.geometry import boxes_overlap, wrap_angle
from drivesim.core.types import AgentType, ControlMode
from drivesim.map.bank import MapBank
from drivesim.map.builders import build_map

torch.set_num_threads(1)

MAP_PARAMS = {"straight": {}, "curved": {"radius": 80.0}, "merge": {}, "intersection": {"lanes_in": 3}}
BUSY = TrafficConfig(density=3.0, trucks=0.3, pedestrians=4, cyclists=2, static_objects=6, ego=EgoConfig(speed=12.0))
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def roads():
    return {k: build_map(k, **p) for k, p in MAP_PARAMS.items()}


@pytest.fixture(scope="module")
def banks(roads):
    return {k: MapBank.build([r]) for k, r in roads.items()}


@pytest.fixture(scope="module")
def scenarios(roads):
    return {(k, s): procedural_scenario(r, BUSY, s, f"{k}-{s}") for k, r in roads.items() for s in SEEDS}


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=float), dtype=torch.float64)


def _polygon(sc, i) -> Polygon:
    c, s = math.cos(sc.yaw[i]), math.sin(sc.yaw[i])
    hl, hw = sc.length[i] / 2, sc.width[i] / 2
    return Polygon([(sc.x[i] + c * u - s * v, sc.y[i] + s * u + c * v) for u, v in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))])


def test_all_generated_scenarios_validate(scenarios):
    for sc in scenarios.values():
        sc.validate()
        assert sc.mode[0] == ControlMode.POLICY and sc.agent_type[0] == AgentType.VEHICLE
        assert sc.num_steps == 150 and sc.meta["config"]["density"] == 3.0


def test_same_seed_same_arrays_different_seed_differs(roads):
    for road in roads.values():
        a, b = procedural_scenario(road, BUSY, 7), procedural_scenario(road, BUSY, 7)
        c = procedural_scenario(road, BUSY, 8)
        for f in AGENT_FIELDS:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert a.route == b.route and a.meta == b.meta
        assert a.num_agents != c.num_agents or not np.array_equal(a.x, c.x)


def test_no_initial_overlaps(scenarios):
    for sc in scenarios.values():
        box = [_t(getattr(sc, f)) for f in ("x", "y", "yaw", "length", "width")]
        hit = boxes_overlap(tuple(v[:, None] for v in box), tuple(v[None, :] for v in box))
        hit.fill_diagonal_(False)
        assert not hit.any(), f"{sc.name}: overlapping agents {hit.nonzero().tolist()[:4]}"


def test_vehicles_on_lane_centerlines_heading_along(scenarios, banks):
    for (kind, _), sc in scenarios.items():
        moving = np.flatnonzero(sc.mode != ControlMode.STATIC)
        xy = _t(np.stack([sc.x[moving], sc.y[moving]], 1)).float()
        lane, _, s, d = banks[kind].locate(torch.zeros(len(moving), dtype=torch.long), xy, _t(sc.yaw[moving]).float())
        lane_yaw = banks[kind].point_at(lane, s)[1]
        assert d.abs().max() < 0.3, sc.name
        assert wrap_angle(lane_yaw - _t(sc.yaw[moving]).float()).abs().max() < 0.1, sc.name
        assert int(lane[0]) == sc.route[0]  # the ego starts on its first route lane
        assert sc.meta["vehicles"] == len(moving) - 1 > 5


def test_gap_rule_between_vehicles_on_the_same_lane(scenarios, banks):
    for (kind, _), sc in scenarios.items():
        idx = np.flatnonzero(sc.mode != ControlMode.STATIC)
        xy = _t(np.stack([sc.x[idx], sc.y[idx]], 1)).float()
        lane, _, s, _ = banks[kind].locate(torch.zeros(len(idx), dtype=torch.long), xy, _t(sc.yaw[idx]).float())
        for lid in lane.unique():
            on = (lane == lid).nonzero().squeeze(1)
            order = on[s[on].argsort()]
            for f, l in zip(order[:-1].tolist(), order[1:].tolist()):
                gap = float(s[l] - s[f]) - (sc.length[idx[f]] + sc.length[idx[l]]) / 2
                assert gap >= MIN_GAP + TIME_GAP * sc.speed[idx[f]] - 0.05, (sc.name, idx[f], idx[l], gap)


def test_speeds_and_desired_speeds(scenarios, roads):
    for (kind, _), sc in scenarios.items():
        limits = {lane.speed_limit for lane in roads[kind].lanes}
        veh = sc.mode == ControlMode.REACTIVE
        assert sc.desired_speed[0] == roads[kind].lanes[sc.route[0]].speed_limit
        assert (sc.speed[veh] <= sc.desired_speed[veh] + 1e-9).all() and (sc.speed >= 0).all()
        assert (sc.desired_speed[veh] >= 0.8 * min(limits) - 1e-6).all()
        assert (sc.desired_speed[veh] <= max(limits) + 1e-6).all()
        static = sc.mode == ControlMode.STATIC
        assert (sc.speed[static] == 0).all()
        trucks = veh & (sc.length > 7.5)
        assert np.allclose(sc.width[trucks], 2.5)
        cars = veh & ~trucks
        assert ((sc.length[cars] > 4.0) & (sc.length[cars] < 5.0) & (sc.width[cars] > 1.7) & (sc.width[cars] < 2.1)).all()


def test_roadside_agents_stay_off_lanes(scenarios, roads):
    for (kind, _), sc in scenarios.items():
        road = roads[kind]
        assert sc.meta["pedestrians"] == 4 and sc.meta["cyclists"] == 2 and sc.meta["static_objects"] == 6
        route_area = [road.lanes[r].polygon() for r in sc.route]
        for i in np.flatnonzero(sc.mode == ControlMode.STATIC):
            poly = _polygon(sc, i)
            if sc.agent_type[i] in (AgentType.PEDESTRIAN, AgentType.CYCLIST):
                assert poly.intersection(road.drivable).area < 1e-6, (sc.name, i)
            touched = [j for j, lane in enumerate(road.lanes) if poly.intersection(lane.polygon()).area > 1e-6]
            assert len(touched) <= 1 and not set(touched) & set(sc.route), (sc.name, i, touched)
            assert all(poly.intersection(p).area < 1e-6 for p in route_area), (sc.name, i)


def test_routes_follow_successors_and_are_long_enough(roads):
    for road in roads.values():
        for seed in range(10):
            cfg = TrafficConfig(density=0.0, ego=EgoConfig(speed=12.0))
            route, cls = choose_route(road, cfg, np.random.default_rng(seed))
            assert all(b in road.lanes[a].successors for a, b in zip(route, route[1:]))
            last = road.lanes[route[-1]]
            edge = not last.successors and not last.dead_end
            assert edge == ends_at_map_edge(road, route)
            assert edge or route_length(road, route) >= cfg.ego.start_s[1] + 12.0 * 15.0
            assert cls == route_class(road, route)


def test_route_classes_per_map(roads):
    classes = {k: {route_class(r, route) for route in enumerate_routes(r)} for k, r in roads.items()}
    assert classes == {"straight": {"lane"}, "curved": {"lane"}, "merge": {"lane", "ramp"},
                       "intersection": {"left", "through", "right"}}
    assert lane_strands(roads["merge"])[:2] == [[0, 2, 4], [1, 3]]  # lane 5 also continues the ramp
    for move in ("left", "through", "right"):
        sc = procedural_scenario(roads["intersection"], TrafficConfig(density=1.0, ego=EgoConfig(route=move)), 3)
        assert sc.meta["route_class"] == move and len(sc.route) == 3
    sc = procedural_scenario(roads["merge"], TrafficConfig(ego=EgoConfig(route="ramp", speed=12.0)), 0)
    assert sc.route[0] == len(roads["merge"].lanes) - 1  # the ramp, then the lane it merges into
    with pytest.raises(ConfigError, match="ego.route"):
        procedural_scenario(roads["straight"], TrafficConfig(ego=EgoConfig(route="ramp")), 0)


def test_density_scales_vehicle_count(roads):
    road = roads["straight"]
    count = lambda d: procedural_scenario(road, TrafficConfig(density=d), 0).meta["vehicles"]
    assert count(0.0) == 0
    assert count(0.5) < count(1.5) < count(3.0)
    empty = procedural_scenario(road, TrafficConfig(density=0.0, pedestrians=2), 0)
    assert empty.num_agents == 3 and empty.meta["pedestrians"] == 2


def test_red_light_speeds_allow_stopping(roads):
    road = roads["intersection"]
    sc = procedural_scenario(road, TrafficConfig(density=3.0, speed_factor=(1.0, 1.0)), 4)
    bank = MapBank.build([road])
    idx = np.flatnonzero(sc.mode != ControlMode.STATIC)
    xy = _t(np.stack([sc.x[idx], sc.y[idx]], 1)).float()
    lane, _, s, _ = bank.locate(torch.zeros(len(idx), dtype=torch.long), xy, _t(sc.yaw[idx]).float())
    checked = 0
    for k, (lid, si) in enumerate(zip(lane.tolist(), s.tolist())):
        group = road.signal_group.get(lid)
        if group is not None and not road.signal_green(group, 0.0):
            to_line = road.lanes[lid].length - si - sc.length[idx[k]] / 2
            assert sc.speed[idx[k]] ** 2 / (2 * 3.0) <= max(to_line - 1.0, 0.0) + 1e-3
            checked += 1
    assert checked > 0


def test_bad_config_is_rejected_with_path(roads):
    with pytest.raises(ConfigError, match=r"traffic\.density"):
        procedural_scenario(roads["straight"], TrafficConfig(density=-1.0), 0)
    with pytest.raises(ConfigError, match=r"traffic\.speed_factor"):
        procedural_scenario(roads["straight"], TrafficConfig(speed_factor=(1.0, 0.5)), 0)
    with pytest.raises(ConfigError, match=r"traffic\.ego\.speed"):
        procedural_scenario(roads["straight"], TrafficConfig(ego=EgoConfig(speed=-1.0)), 0)
