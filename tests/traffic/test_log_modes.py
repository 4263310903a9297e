"""Traffic modes on a logged scenario: replay follows the log, reactive agents appear when the log
shows them and then react, hybrid agents replay until the ego comes close."""

import numpy as np
import pytest
import torch

from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import ScenarioBatch, ScenarioError
from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario


def logged_scenario():
    """Ego at 10 m/s; agent 1 logged 40 m ahead at 5 m/s; agent 2 appears at step 10, 80 m ahead."""
    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": 0, "y": -1.8, "speed": 10}, {"x": 40, "y": -1.8, "speed": 5},
                              {"x": 80, "y": -1.8, "speed": 5}], duration=6, name="log")
    t = np.arange(sc.num_steps + 1) * sc.dt
    line = lambda x0, v: np.stack([x0 + v * t, np.full_like(t, -1.8), np.zeros_like(t), np.full_like(t, v)], -1)
    sc.log = np.stack([line(0, 10), line(40, 5), line(80, 5)])
    sc.log_valid = np.ones((3, len(t)), bool)
    sc.log_valid[2, :10] = False
    return sc


def run(sc, steps=60):
    batch = ScenarioBatch.build([sc])
    sim = Simulator(batch)
    states = [sim.reset()]
    for _ in range(steps):
        states.append(sim.step(states[-1], torch.zeros(1, 2)))
    return states


def test_replay_follows_the_log_and_its_visibility():
    sc = logged_scenario()
    states = run(with_traffic(sc, "replay"))
    xs = np.array([float(s.x[0, 1]) for s in states])
    assert np.allclose(xs, sc.log[1, : len(xs), 0], atol=1e-4)
    assert [bool(s.valid[0, 2]) for s in states[:12]] == [False] * 10 + [True] * 2


def test_reactive_agents_appear_with_the_log_then_react():
    sc = logged_scenario()
    states = run(with_traffic(sc, "reactive"))
    assert not bool(states[5].valid[0, 2]) and bool(states[10].valid[0, 2])
    assert abs(float(states[10].x[0, 2]) - sc.log[2, 10, 0]) < 1e-4  # appears where the log has it
    # once released, agent 2 speeds up towards its desired speed instead of keeping the logged 5 m/s
    assert float(states[-1].speed[0, 2]) > 5.2 and bool(states[-1].released[0, 1])


def test_hybrid_agents_replay_until_the_ego_is_close():
    sc = logged_scenario()
    states = run(with_traffic(sc, "hybrid"))
    released = [bool(s.released[0, 1]) for s in states]
    first = released.index(True)
    gap = float(states[first].x[0, 1] - states[first].x[0, 0])
    assert first > 0 and (gap <= 15.0 + 1e-3 or gap <= 2.0 * float(states[first].speed[0, 0]) + 1e-3)
    assert gap > 15.0  # here the 2 s time gap at 10 m/s (20 m) triggers first
    xs = np.array([float(s.x[0, 1]) for s in states[:first]])
    assert np.allclose(xs, sc.log[1, :first, 0], atol=1e-4)


def test_constant_velocity_and_bad_mode():
    sc = logged_scenario()
    states = run(with_traffic(sc, "constant_velocity"), steps=20)
    assert abs(float(states[-1].x[0, 1]) - (40 + 5 * 2.0)) < 1e-3
    with pytest.raises(ScenarioError, match="unknown traffic mode"):
        with_traffic(sc, "teleport")
    assert int(with_traffic(sc, "replay", ego="replay").mode[0]) == ControlMode.REPLAY


def test_window_starts_from_the_logged_state():
    from drivesim.traffic.log_modes import window

    sc = logged_scenario()
    w = window(sc, 5, 40)
    assert w.num_steps == 40 and np.allclose(w.x, [5.0, 42.5, sc.log[2, 10, 0]])
    assert np.array_equal(w.log_valid[2, :6], [False] * 5 + [True])
    with pytest.raises(ScenarioError, match="exceeds its log"):
        window(sc, 50, 40)
