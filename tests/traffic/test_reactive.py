"""Reactive traffic: IDM stops behind a stopped leader; MOBIL overtakes a slow leader but not into
a gap that would force hard braking; scripted lane changes; red lights."""

import numpy as np
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import boxes_overlap
from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario

PARKED = {"y": -1.8, "speed": 0.0, "mode": ControlMode.STATIC}


def run(scenario, steps=None, ego_action=(0.0, 0.0)):
    batch = ScenarioBatch.build([scenario])
    sim = Simulator(batch)
    state = sim.reset()
    states = [state]
    for _ in range(steps or batch.max_steps):
        state = sim.step(state, torch.tensor([ego_action]))
        states.append(state)
    return states


def any_overlap(state, i, j):
    box = lambda k: tuple(t[0, k] for t in state.boxes())
    return bool(boxes_overlap(box(i), box(j)))


def test_idm_stops_behind_stopped_leader_without_collision():
    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": 5, "y": -1.8}, {"x": 30, "y": -1.8, "speed": 15, "v0": 15}, {"x": 120, **PARKED}], duration=20)
    states = run(sc)
    assert not any(any_overlap(s, 1, 2) for s in states)
    final = states[-1]
    gap = final.x[0, 2] - final.x[0, 1] - 4.5
    assert final.speed[0, 1] < 0.1 and 0.3 < gap < 4.0


def test_mobil_overtakes_slow_leader():
    road = build_map("straight", lanes=2, lanes_back=0)
    # the slow leader replays a log at 5 m/s in the right lane: the fast car must go around it
    sc = make_scenario(road, [{"x": -100, "y": -1.8}, {"x": 40, "y": -5.4, "speed": 15, "v0": 20},
                              {"x": 70, "y": -5.4, "speed": 5, "mode": ControlMode.REPLAY}], duration=15)
    t = np.arange(sc.num_steps + 1) * sc.dt
    sc.log = np.zeros((3, len(t), 4))
    sc.log[2] = np.stack([70 + 5 * t, np.full_like(t, -5.4), np.zeros_like(t), np.full_like(t, 5.0)], -1)
    sc.log_valid = np.zeros((3, len(t)), bool)
    sc.log_valid[2] = True
    states = run(sc)
    replayed = np.array([float(s.x[0, 2]) for s in states])
    assert np.allclose(replayed, sc.log[2, :, 0], atol=1e-4), "the log-replay agent left its log"
    lanes = [int(s.lane[0, 1]) for s in states]
    assert 0 in lanes, "the fast car never left the slow car's lane"
    assert states[-1].x[0, 1] > states[-1].x[0, 2] + 5, "the fast car did not pass"
    assert not any(any_overlap(s, 1, 2) for s in states)


def test_mobil_refuses_gap_that_forces_hard_braking():
    road = build_map("straight", lanes=2, lanes_back=0)
    # a fast car in the target lane close behind: changing lanes would make it brake beyond b_safe
    sc = make_scenario(road, [{"x": -100, "y": -1.8}, {"x": 40, "y": -5.4, "speed": 15, "v0": 20},
                              {"x": 60, "y": -5.4, "speed": 5, "v0": 5},
                              {"x": 30, "y": -1.8, "speed": 25, "v0": 25}], duration=3)
    states = run(sc)
    for s in states:
        behind = float(s.x[0, 1] - s.x[0, 3])
        if 0 < behind < 25:
            assert int(s.lane[0, 1]) == 1, f"changed lane with a fast car {behind:.1f} m behind"
    follower_min_accel = min(float(s.accel[0, 3]) for s in states)
    assert follower_min_accel > -4.0


def test_scripted_lane_change_moves_agent_over():
    road = build_map("straight", lanes=2, lanes_back=0)
    sc = make_scenario(road, [{"x": 0, "y": -1.8}, {"x": 30, "y": -5.4, "speed": 10, "v0": 10}], duration=8)
    T = sc.num_steps
    lane = -np.ones((2, T), dtype=np.int64)
    lane[1, 10:] = 0
    sc.script_lane = lane
    sc.script_lat_speed = np.full((2, T), 1.0)
    states = run(sc)
    assert abs(float(states[-1].y[0, 1]) + 1.8) < 0.3
    ys = [float(s.y[0, 1]) for s in states]
    lat_speed = max(abs(a - b) for a, b in zip(ys[1:], ys[:-1])) / 0.1
    assert lat_speed < 1.6


def test_red_light_stops_traffic():
    road = build_map("intersection")
    # lane 4 approaches from the north (arm 1), which is red for the first 12 s
    sc = make_scenario(road, [{"x": 1.75, "y": -60, "yaw": 1.5708}, {"x": -1.75, "y": 60, "yaw": -1.5708, "speed": 10, "v0": 12}],
                       route=[12], duration=10)
    states = run(sc, ego_action=(-1.0, 0.0))
    stop_line = road.lanes[4].centerline[-1][1]
    assert min(float(s.y[0, 1]) for s in states) - 2.25 > stop_line - 0.5, "crossed the red stop line"
    assert float(states[-1].speed[0, 1]) < 0.5


def test_same_inputs_give_identical_rollouts():
    road = build_map("curved")
    sc = make_scenario(road, [{"x": 0, "y": -1.8, "speed": 10}, {"x": 20, "y": -1.8, "speed": 12, "v0": 20},
                              {"x": 40, "y": -5.4, "speed": 8, "v0": 10}], duration=5)
    a, b = run(sc), run(sc)
    for sa, sb in zip(a, b):
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y) and torch.equal(sa.lane, sb.lane)


def test_scripts_follow_each_rows_own_clock():
    from drivesim.traffic.control import reactive_control
    from drivesim.traffic.reactive import ReactiveConfig

    road = build_map("straight", lanes=2, lanes_back=0)
    scen = []
    for k in range(2):
        sc = make_scenario(road, [{"x": 0, "y": -1.8}, {"x": 30, "y": -5.4, "speed": 10}], duration=3, name=f"r{k}")
        lane = -np.ones((2, sc.num_steps), dtype=np.int64)
        lane[1, 5:] = 0
        sc.script_lane = lane
        scen.append(sc)
    batch = ScenarioBatch.build(scen)
    state = Simulator(batch).reset()
    state = state.replace(clock=torch.tensor([0, 5]))
    dec = reactive_control(state, batch, ReactiveConfig())
    assert dec.lane[:, 1].tolist() == [1, 0] and dec.changed[:, 1].tolist() == [False, True]
