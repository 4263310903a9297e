import numpy as np

from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.gym_env import DriveVectorEnv
from tests.helpers import make_scenario


def scenarios():
    road = build_map("straight", lanes=2, lanes_back=0)
    clear = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 10}], duration=3, name="clear")
    blocked = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 10}, {"x": 20, "y": -1.8, "mode": ControlMode.STATIC}],
                            duration=3, name="blocked")
    return [clear, blocked]


def test_spaces_reset_step_and_reward():
    env = DriveVectorEnv(scenarios())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, term, trunc, info = env.step(np.zeros((2, 2), np.float32))
    assert env.observation_space.contains(obs) and reward.shape == (2,)
    assert abs(reward[0] - 10 * 0.1 / (25.0 * 0.1)) < 0.05  # progress per step / (speed limit * dt)


def test_collision_terminates_and_next_step_resets():
    env = DriveVectorEnv(scenarios())
    env.reset()
    done_at = None
    for t in range(30):
        _, reward, term, trunc, info = env.step(np.zeros((2, 2), np.float32))
        if term[1]:
            done_at = t
            assert info["collision"][1] and reward[1] == 0
            break
    assert done_at is not None and not term[0]
    obs, reward, term, trunc, _ = env.step(np.zeros((2, 2), np.float32))  # autoreset of row 1
    assert reward[1] == 0 and not term[1] and abs(env.state.x[1, 0].item() - 5.0) < 1e-6
    assert env.state.clock.tolist() == [done_at + 2, 0]  # the restarted row runs on its own clock


def test_truncation_at_duration():
    env = DriveVectorEnv(scenarios()[:1])
    env.reset()
    truncs = [env.step(np.zeros((1, 2), np.float32))[3][0] for _ in range(30)]
    assert truncs[29] and not any(truncs[:29])


def test_out_of_range_or_nan_action_raises_not_clipped():
    import pytest

    from drivesim.sim.simulator import ActionError

    env = DriveVectorEnv(scenarios())
    env.reset()
    for bad in ([5.0, 0.0], [0.0, 1.0], [float("nan"), 0.0]):
        with pytest.raises(ActionError, match="'blocked', step 0"):
            env.step(np.array([[0.0, 0.0], bad], np.float32))
    env.step(np.array([[4.0, 0.6], [-8.0, -0.6]], np.float32))  # the bounds themselves are inside
