"""Reactive agents yield at lane conflicts and stop at lane ends with no way on (issue 15 item 7)."""

import math

import numpy as np
import torch

from drivesim.traffic.reactive import ReactiveConfig
from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.yielding import YieldConfig
from drivesim.core.geometry import boxes_overlap
from drivesim.core.types import ControlMode
from drivesim.map import Lane, MapBank, RoadMap, build_map
from drivesim.map.conflicts import map_conflicts
from drivesim.sim.simulator import SimConfig, Simulator
from tests.helpers import make_scenario

EGO_AWAY = {"x": -5.25, "y": 95.0, "yaw": -math.pi / 2, "speed": 0.0}  # parked at the start of arm 1


def unsignalised():
    road = build_map("intersection")
    return RoadMap("unsignalised", road.lanes, extra_drivable=road.extra_drivable)


def crossing(d1: float, d2: float, mode2=ControlMode.REACTIVE):
    """Agent 1 turns left from arm 0 (lane 0), agent 2 goes straight from arm 2 (lane 9) across
    its path; d1, d2: their distances to the junction edge; both at 10 m/s."""
    agents = [EGO_AWAY, {"x": 15 + d1, "y": 1.75, "yaw": math.pi, "speed": 10.0, "v0": 10.0},
              {"x": -15 - d2, "y": -5.25, "yaw": 0.0, "speed": 10.0, "v0": 10.0, "mode": mode2}]
    return make_scenario(unsignalised(), agents, route=(5,), duration=8.0, name="crossing")


def run(sc, yielding=True, steps=60):
    # yielding=False also drops the last-moment check for vehicles close ahead on other lanes (reactive._off_lane_ahead)
    cfg = SimConfig(reactive=ReactiveConfig(yielding=YieldConfig(enabled=yielding), other_lane_range=8.0 if yielding else -math.inf))
    sim = Simulator(ScenarioBatch.build([sc]), cfg)
    states = [sim.reset()]
    for _ in range(steps):
        states.append(sim.step(states[-1], torch.zeros(1, 2)))
    return states


def overlapped(states, i, j):
    box = lambda s, k: tuple(v[0, k] for v in (s.x, s.y, s.yaw, s.length, s.width))
    return any(bool(boxes_overlap(box(s, i), box(s, j))) and bool(s.valid[0, i] & s.valid[0, j]) for s in states)


def test_conflicts_of_the_intersection_are_its_crossing_connectors():
    road = unsignalised()
    rows, stub = map_conflicts(road.lanes)
    assert not stub.any()  # exit lanes end at the map border: traffic leaves there
    for i, row in enumerate(rows):
        for s_in, s_out, j, _, _ in row:
            assert road.lanes[i].kind == "connector" and road.lanes[j].kind == "connector"
            assert 0 <= s_in <= s_out <= road.lanes[i].length + 1e-6
    left_turn = road.lanes[0].successors[0]
    through = road.lanes[9].successors[0]
    assert through in [j for _, _, j, _, _ in rows[left_turn]]


def speeds(states, k):
    return np.array([float(s.speed[0, k]) for s in states])


def test_later_agent_yields_at_the_crossing():
    sc = crossing(20.0, 23.0)  # the left-turner arrives first
    free = run(sc, yielding=False)
    assert overlapped(free, 1, 2)  # without yielding they crash in the junction
    states = run(sc)
    assert not overlapped(states, 1, 2)
    assert np.allclose(speeds(states, 1), speeds(free, 1))  # the first one goes on as if alone
    assert not np.allclose(speeds(states, 2), speeds(free, 2))  # the later one adapts ...
    v2 = speeds(states, 2)
    assert v2[-1] > v2.min() + 0.5 and bool(states[-1].valid[0, 2])  # ... and drives on


def test_reactive_agent_yields_to_a_non_reactive_one_that_arrives_later():
    sc = crossing(14.0, 20.0, mode2=ControlMode.CONSTANT_VELOCITY)  # agent 2 never yields; 1 would be first
    free = run(sc, yielding=False)
    assert overlapped(free, 1, 2)
    states = run(sc)
    assert not overlapped(states, 1, 2)
    assert speeds(states, 1).min() < speeds(free, 1).min() - 1.0  # the reactive one brakes for it


def t_junction(with_crossroad: bool):
    lanes = [Lane(np.array([[0.0, 0.0], [50.0, 0.0]]), speed_limit=17.0)]
    if with_crossroad:  # the road it runs into, 10 m past its end
        lanes.append(Lane(np.array([[60.0, -40.0], [60.0, 40.0]])))
    return RoadMap("t", lanes)


def test_stub_lane_end_stops_traffic_and_a_border_end_lets_it_leave():
    bank = MapBank.build([t_junction(True), t_junction(False)])
    assert bank.lane_stub.tolist() == [True, False, False]
    for crossroad, stays in ((True, True), (False, False)):
        road = t_junction(crossroad)
        sc = make_scenario(road, [{"x": 0.0, "y": 0.0, "speed": 0.0}, {"x": 10.0, "y": 0.0, "speed": 16.0, "v0": 17.0}],
                           duration=10.0, name="t")
        states = run(sc, steps=100)
        last = states[-1]
        if stays:
            assert bool(last.valid[0, 1]) and float(last.speed[0, 1]) < 0.5
            assert float(last.x[0, 1]) + 0.5 * float(last.length[0, 1]) <= 50.5  # stopped at the lane end
        else:
            assert not bool(last.valid[0, 1])  # drove off the map's border and left


def connector_crossing():
    """Agent 1 (reactive, 12 m/s) drives lane 0 -> a 1 m connector (lane 1) -> lane 2, which a
    constant-velocity agent 2 on lane 3 crosses at x = 60; both reach the crossing at about 4 s.
    The conflict lies two lanes ahead of agent 1 until it is past the point where it could stop."""
    lanes = [Lane(np.array([[0.0, 0.0], [40.0, 0.0]]), successors=[1]),
             Lane(np.array([[40.0, 0.0], [41.0, 0.0]]), successors=[2], kind="connector"),
             Lane(np.array([[41.0, 0.0], [80.0, 0.0]])),
             Lane(np.array([[60.0, -45.0], [60.0, 45.0]]))]
    road = RoadMap("connector", lanes)
    agents = [{"x": 60.0, "y": 44.0, "yaw": math.pi / 2, "speed": 0.0},
              {"x": 10.0, "y": 0.0, "speed": 12.0, "v0": 12.0},
              {"x": 60.0, "y": -40.0, "yaw": math.pi / 2, "speed": 10.0, "v0": 10.0, "mode": ControlMode.CONSTANT_VELOCITY}]
    return make_scenario(road, agents, duration=6.0, name="connector")


def test_conflict_beyond_a_short_connector_is_seen_in_time():
    sc = connector_crossing()
    free = run(sc, yielding=False)
    assert overlapped(free, 1, 2)
    states = run(sc)
    assert not overlapped(states, 1, 2)


def test_vehicle_close_ahead_on_an_unlinked_lane_is_a_leader():
    """Lanes 0 and 1 run side by side 1.6 m apart, not linked as neighbours (as nuScenes lanes
    that overlap in a junction); agent 1 on lane 0 is already past the conflict entry and a
    stopped vehicle sits on lane 1 in its path (0757: a car waiting across a crossing lane)."""
    lanes = [Lane(np.array([[0.0, 0.0], [120.0, 0.0]])), Lane(np.array([[30.0, 1.6], [120.0, 1.6]]))]
    road = RoadMap("apart", lanes)
    agents = [{"x": 2.0, "y": 0.0, "speed": 0.0}, {"x": 40.0, "y": 0.0, "speed": 8.0, "v0": 8.0},
              {"x": 70.0, "y": 1.6, "speed": 0.0, "v0": 0.0, "mode": ControlMode.CONSTANT_VELOCITY}]
    sc = make_scenario(road, agents, duration=6.0, name="apart")
    states = run(sc)
    assert int(states[0].lane[0, 1]) == 0 and int(states[0].lane[0, 2]) == 1
    assert not overlapped(states, 1, 2)
    assert float(states[-1].speed[0, 1]) < 0.5  # it waits behind the stopped car
