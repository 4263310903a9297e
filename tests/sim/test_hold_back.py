"""Logged agents that would appear inside a simulated agent are held back until their place is
free (issue 15 item 7), and the rollout counts them."""

import numpy as np
import torch

from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import boxes_overlap
from drivesim.map import build_map
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario


def spawn_scenario():
    """The simulated ego drives at 10 m/s; agent 1 appears in the log at step 10 at x = 12 m,
    where the ego's box then is (the log's ego was elsewhere), and creeps on at 1 m/s."""
    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": 0, "y": -1.8, "speed": 10}, {"x": 12, "y": -1.8, "speed": 1}], duration=4, name="spawn")
    t = np.arange(sc.num_steps + 1) * sc.dt
    ego = np.stack([-50 + 0 * t, np.full_like(t, -1.8), 0 * t, 0 * t], -1)
    other = np.stack([11 + 1.0 * t, np.full_like(t, -1.8), 0 * t, np.full_like(t, 1.0)], -1)
    sc.log, sc.log_valid = np.stack([ego, other]), np.ones((2, len(t)), bool)
    sc.log_valid[1, :10] = False
    return with_traffic(sc, "reactive")


def boxes(s, i):
    return tuple(v[0, i] for v in (s.x, s.y, s.yaw, s.length, s.width))


def test_appearing_agent_waits_until_its_logged_place_is_free():
    batch = ScenarioBatch.build([spawn_scenario()])
    sim = Simulator(batch)
    states = [sim.reset()]
    for _ in range(30):
        states.append(sim.step(states[-1], torch.zeros(1, 2)))
    visible = [bool(s.valid[0, 1]) for s in states]
    first = visible.index(True)
    assert first > 10  # on the log it appears at step 10, inside the ego
    assert not any(bool(boxes_overlap(boxes(s, 0), boxes(s, 1))) and bool(s.valid[0, 1]) for s in states)
    # it appears where its log has it at that step, on the first step that is free
    assert abs(float(states[first].x[0, 1]) - batch.log[0, 1, first, 0]) < 1e-4
    assert bool(sim.held_back[0, 1]) and not bool(sim.held_back[0, 0])
    logged = lambda k, s: tuple(torch.as_tensor(v) for v in (batch.log[0, 1, k, 0], batch.log[0, 1, k, 1],
                                                            batch.log[0, 1, k, 2], s.length[0, 1], s.width[0, 1]))
    free = next(k for k in range(10, len(states)) if not bool(boxes_overlap(boxes(states[k], 0), logged(k, states[k]))))
    # held while its logged box is taken, and then only while it lacks its 1 m gap ahead (SimConfig.appear_gap)
    assert free <= first <= free + 2

def test_agent_appearing_fast_close_behind_a_slow_one_is_held_until_it_can_brake():
    """Agent 1 appears 3 m behind the simulated ego at 12 m/s while the ego crawls at 1 m/s: its
    box is free but it could no longer stop (nuScenes' interpolated tracks do this), so it waits."""
    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": 20, "y": -1.8, "speed": 1}, {"x": 0, "y": -1.8, "speed": 12}], duration=4, name="closing")
    t = np.arange(sc.num_steps + 1) * sc.dt
    ego = np.stack([-80 + 0 * t, np.full_like(t, -1.8), 0 * t, 0 * t], -1)
    length = float(sc.length[0])
    start = 21.0 - length - 3.0  # bumper gap 3 m behind where the simulated ego is at step 10
    other = np.stack([start + 12.0 * (t - 1.0), np.full_like(t, -1.8), 0 * t, np.full_like(t, 12.0)], -1)
    sc.log, sc.log_valid = np.stack([ego, other]), np.ones((2, len(t)), bool)
    sc.log_valid[1, :10] = False
    batch = ScenarioBatch.build([with_traffic(sc, "reactive")])
    sim = Simulator(batch)
    states = [sim.reset()]
    for _ in range(30):
        states.append(sim.step(states[-1], torch.zeros(1, 2)))
    assert abs(float(states[10].x[0, 0]) - 21.0) < 0.2
    assert not bool(states[10].valid[0, 1]) and bool(sim.held_back[0, 1])
    first = [bool(s.valid[0, 1]) for s in states].index(True)
    assert float(states[first].x[0, 1]) > float(states[first].x[0, 0])  # it appears once its log has passed the ego


def test_rollout_reports_held_back_agents():
    class Coast:
        name = "coast"

        def reset(self, batch):
            pass

        def act(self, obs):
            return torch.zeros(2, 2)

    free = spawn_scenario()
    free.log = free.log.copy()
    free.log[1, :, 0] += 60.0  # appears far ahead of the ego: nothing to hold back
    result = rollout(ScenarioBatch.build([spawn_scenario(), free]), Coast())
    assert result.extra["held_back"] == [1, 0]


def test_evaluate_rows_carry_the_held_back_count():
    from drivesim.sim.evaluate import EvalConfig, evaluate
    from drivesim.sim.policy import ConstantVelocity

    free = spawn_scenario()
    free.name = "free"
    free.log = free.log.copy()
    free.log[1, :, 0] += 60.0  # appears far ahead of the ego: nothing to hold back
    res = evaluate([spawn_scenario(), free], [ConstantVelocity()], config=EvalConfig(batch_size=2), show_progress=False).results
    assert res.set_index("scenario")["held_back"].to_dict() == {"spawn": 1, "free": 0}


def test_agent_released_after_a_logged_speed_jump_keeps_its_acceleration_in_range():
    """Agent 1's log speed column reads 0 while it is invisible and 10 m/s when it appears (a
    nuScenes track's jump): its replayed acceleration of 100 m/s^2 must not carry into its
    reactive driving through the jerk limit (before, 1077's agent 40 went 10 -> 25 m/s in 0.7 s)."""
    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": 0, "y": -1.8, "speed": 0}, {"x": 40, "y": -1.8, "speed": 10, "v0": 10}], duration=3, name="jump")
    t = np.arange(sc.num_steps + 1) * sc.dt
    ego = np.stack([0 * t, np.full_like(t, -1.8), 0 * t, 0 * t], -1)
    other = np.stack([40 + 10.0 * t, np.full_like(t, -1.8), 0 * t, np.where(t < 0.95, 0.0, 10.0)], -1)
    sc.log, sc.log_valid = np.stack([ego, other]), np.ones((2, len(t)), bool)
    sc.log_valid[1, :10] = False
    sim = Simulator(ScenarioBatch.build([with_traffic(sc, "reactive")]))
    states = [sim.reset()]
    for _ in range(20):
        states.append(sim.step(states[-1], torch.zeros(1, 2)))
    dyn = sim.config.dynamics
    after = [s for s in states[11:] if bool(s.released[0, 1])]
    assert after and all(-dyn.max_decel - 1e-4 <= float(s.accel[0, 1]) <= dyn.max_accel + 1e-4 for s in after)
    assert max(float(s.speed[0, 1]) for s in after) < 11.0
