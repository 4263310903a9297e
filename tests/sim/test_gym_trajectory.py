"""The gym environment in trajectory mode: spaces and shapes, one env step = `replan_every`
tracked simulation steps with the reward summed, termination inside the sub-steps, bad
trajectories raise, and the expert's tracked trajectories drive an episode without collision."""

import numpy as np
import pytest

from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.expert import PDMClosed
from drivesim.sim.gym_env import DriveVectorEnv
from drivesim.sim.observation import observe
from drivesim.sim.simulator import ActionError
from tests.helpers import make_scenario


def straight_plan(v, n=2, horizon=8, dt=0.5):
    x = v * dt * np.arange(1, horizon + 1, dtype=np.float32)
    return np.tile(np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1), (n, 1, 1))


def scenarios(duration=3):
    road = build_map("straight", lanes=2, lanes_back=0)
    clear = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 10}], duration=duration, name="clear")
    blocked = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 10}, {"x": 22, "y": -1.8, "mode": ControlMode.STATIC}],
                            duration=duration, name="blocked")  # touched after 1.3 s at 10 m/s
    return [clear, blocked]


def test_spaces_shapes_reset_and_summed_reward():
    env = DriveVectorEnv(scenarios(), action="trajectory")
    assert env.single_action_space.shape == (8, 3) and env.action_space.shape == (2, 8, 3)
    env.action_space.seed(0)
    assert env.action_space.contains(env.action_space.sample())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, term, trunc, info = env.step(straight_plan(10.0))
    assert env.observation_space.contains(obs) and reward.shape == (2,) and reward.dtype == np.float32
    assert env.state.clock.tolist() == [5, 5]  # 5 tracked simulation steps
    assert abs(reward[0] - 5 * 10 * 0.1 / (25.0 * 0.1)) < 0.05 and not term.any() and not trunc.any()
    assert abs(env.state.x[0, 0].item() - 10.0) < 0.05  # 0.5 s at 10 m/s from x = 5


def test_termination_inside_the_sub_steps_ends_the_episode_and_next_step_resets():
    env = DriveVectorEnv(scenarios(), action="trajectory")
    env.reset()
    for _ in range(2):  # 1 s
        _, reward, term, _, info = env.step(straight_plan(10.0))
        assert not term.any()
    _, reward, term, _, info = env.step(straight_plan(10.0))
    assert term.tolist() == [False, True] and info["collision"][1]
    assert env.state.clock.tolist() == [15, 13]  # row 1 stopped at the sub-step of the collision ...
    assert reward[1] == pytest.approx(2 / 5 * reward[0], rel=0.02)  # ... with the reward of the 2 sub-steps before it
    _, reward, term, _, _ = env.step(straight_plan(10.0))  # NEXT_STEP autoreset of row 1
    assert reward[1] == 0 and not term[1] and env.state.clock[1].item() == 0 and abs(env.state.x[1, 0].item() - 5.0) < 1e-6


def test_truncation_at_duration_in_env_steps():
    env = DriveVectorEnv(scenarios()[:1], action="trajectory")
    env.reset()
    truncs = [env.step(straight_plan(10.0, n=1))[3][0] for _ in range(6)]  # 3 s = 6 env steps of 0.5 s
    assert truncs[5] and not any(truncs[:5])


def test_bad_trajectory_raises_naming_the_scenario_and_step():
    env = DriveVectorEnv(scenarios(), action="trajectory")
    env.reset()
    bad = straight_plan(10.0)
    bad[1, 3, 0] = np.nan
    with pytest.raises(ActionError, match="'blocked', step 0: non-finite trajectory pose 3"):
        env.step(bad)
    with pytest.raises(ActionError, match="expected \\[2, 8, 3\\]"):
        env.step(straight_plan(10.0, horizon=4))
    far = straight_plan(10.0)
    far[0, 0, 0] = 1e4
    with pytest.raises(ActionError, match="'clear', step 0: trajectory outside the action space"):
        env.step(far)
    with pytest.raises(ValueError, match="action must be"):
        DriveVectorEnv(scenarios(), action="steer")


def test_tracked_expert_trajectory_drives_an_episode_without_collision():
    road = build_map("straight", lanes=1, lanes_back=0)
    stalled = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 12}, {"x": 70, "y": -1.8, "mode": ControlMode.STATIC}],
                            duration=10, name="stalled")
    free = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 12}], duration=10, name="free")
    env = DriveVectorEnv([stalled, free], action="trajectory")
    expert = PDMClosed(output="trajectory", traj_dt=0.5)
    env.reset()
    expert.reset(env.batch)
    total = np.zeros(2)
    for _ in range(20):  # 10 s
        traj = expert.act(observe(env.state, env.batch, env.obs_config))
        assert traj.poses.shape == (2, 8, 3) and traj.dt == 0.5
        _, reward, term, trunc, info = env.step(traj.poses.numpy())
        assert not term.any() and not info["collision"].any() and not info["offroad"].any()
        total += reward
    assert trunc.all()
    assert env.state.speed[0, 0].item() < 0.5 and 55 < env.state.x[0, 0].item() < 70 - 4.5  # stopped behind it
    assert total[1] > total[0] > 10
