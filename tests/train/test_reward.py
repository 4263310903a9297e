"""The RL reward: progress ~1 per step at the speed limit; a collision or leaving the road ends
the episode with 0; low TTC, discomfort and lane offset each lower the reward; the end of the
route ends the episode as a success."""

import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.config import ConfigError, apply_overrides
from drivesim.core.types import AgentType, ControlMode
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator
from drivesim.train.reward import DriveReward, RewardConfig, comfort_excess, ttc_factor
from tests.helpers import make_scenario

LANE_Y = -1.8  # centre of forward lane 0 on the straight map
LIMIT = 25.0


@pytest.fixture(scope="module")
def road():
    return build_map("straight", length=400.0, lanes=2, lanes_back=0, speed_limit=LIMIT)


def run(road, rows: list[list[dict]], actions=None, steps=1):
    """Step the rows (agent lists, the ego first) `steps` times; the last StepReward and all rewards."""
    batch = ScenarioBatch.build([make_scenario(road, a, duration=5.0, name=f"r{i}") for i, a in enumerate(rows)])
    sim = Simulator(batch)
    state = sim.reset()
    reward = DriveReward(batch)
    reward.restart(state)
    action = torch.zeros(len(rows), 2) if actions is None else torch.as_tensor(actions, dtype=torch.float32)
    out = []
    for _ in range(steps):
        state = sim.step(state, action)
        out.append(reward(state))
    return out[-1], out


def ego(x=50.0, y=LANE_Y, speed=LIMIT, **kw):
    return {"x": x, "y": y, "speed": speed, **kw}


def test_progress_is_about_one_per_step_at_the_speed_limit(road):
    r, _ = run(road, [[ego()], [ego(speed=LIMIT / 2)]])
    assert r.progress[0].item() == pytest.approx(1.0, abs=0.02)
    assert r.progress[1].item() == pytest.approx(0.5, abs=0.02)
    assert r.reward[0].item() == pytest.approx(1.0, abs=0.02)  # every factor 1 on a free road
    assert not r.terminated.any()


def test_collision_ends_the_episode_with_zero_reward(road):
    crash = [ego(), {"x": 53.0, "y": LANE_Y, "speed": 0.0, "mode": ControlMode.STATIC}]
    r, _ = run(road, [crash, [ego()]])
    assert r.collision.tolist() == [True, False]
    assert r.terminated.tolist() == [True, False]
    assert r.reward[0].item() == 0.0 and r.reward[1].item() > 0.9


def test_leaving_the_road_ends_the_episode_with_zero_reward(road):
    r, _ = run(road, [[ego(y=-10.0)], [ego()]])  # 2 lanes of 3.6 m: y < -7.2 is off the road
    assert r.offroad.tolist() == [True, False]
    assert r.terminated[0] and r.reward[0].item() == 0.0


def test_low_ttc_lowers_the_reward(road):
    ahead = {"x": 65.0, "y": LANE_Y, "speed": 0.0, "type": AgentType.STATIC, "mode": ControlMode.STATIC}
    r, _ = run(road, [[ego(), ahead], [ego()]])  # ~10 m gap at 25 m/s: TTC ~0.4 s
    assert not r.collision.any()
    assert r.ttc[0].item() < 0.95 and r.ttc[1].item() == RewardConfig().ttc.clamp
    assert r.factors["ttc"][0].item() < 1.0 and r.factors["ttc"][1].item() == 1.0
    assert r.reward[0].item() < r.reward[1].item() - 0.2


def test_hard_braking_lowers_the_comfort_factor(road):
    _, steps = run(road, [[ego()], [ego()]], actions=[[-8.0, 0.0], [0.0, 0.0]], steps=8)
    f = torch.stack([s.factors["comfort"] for s in steps])  # [T, 2]
    assert f[:, 1].eq(1.0).all()
    assert f[-1, 0].item() < 0.8


def test_lane_offset_lowers_the_lane_factor(road):
    r, _ = run(road, [[ego(y=LANE_Y - 1.5)], [ego()]])
    assert r.factors["lane"][0].item() < 0.9 and r.factors["lane"][1].item() == pytest.approx(1.0)
    assert r.reward[0].item() < r.reward[1].item()


def test_route_end_ends_the_episode_as_a_success(road):
    r, _ = run(road, [[ego(x=394.5)], [ego()]])  # 2.5 m per step: the front reaches 399.25 m of 400
    assert r.route_done.tolist() == [True, False]
    assert r.terminated[0] and not r.collision[0] and not r.offroad[0]


def test_factor_helpers_and_config_checks():
    cfg = RewardConfig()
    assert ttc_factor(torch.tensor([0.0, 0.95, 3.0]), cfg).tolist() == pytest.approx([cfg.ttc_min_factor, 1.0, 1.0])
    T, B = 8, 1
    steady = comfort_excess(torch.zeros(T, B), torch.full((T, B), 10.0), torch.ones(T, B, dtype=torch.bool), 0.1, cfg.comfort)
    assert steady.item() == 0.0
    with pytest.raises(ConfigError, match="ttc_min_factor"):
        apply_overrides(RewardConfig(), {"ttc_min_factor": 2.0})
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(RewardConfig(), {"ttc_factor": 0.5})
