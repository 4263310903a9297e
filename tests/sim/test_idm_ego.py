"""On a logged scene the `idm` ego drives at the lane's speed limit, not at the scenario's desired
speed of agent 0 (importers set that to the logged ego's top speed: a log that crawls made the idm
ego crawl); a generated scenario keeps the ego speed it was made with."""

import numpy as np
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.map import build_map
from drivesim.sim.policy import IDMLaneKeeping, ego_at_speed_limit
from drivesim.sim.rollout import rollout
from tests.helpers import make_scenario


def test_idm_ego_targets_the_lane_speed_limit_not_the_logged_top_speed():
    road = build_map("straight", lanes=1, lanes_back=0)  # speed limit 25 m/s
    s = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 1.0, "v0": 1.0}], duration=10, name="crawl")
    T = s.num_steps
    s.log = np.zeros((1, T + 1, 4))
    s.log[0, :, 0], s.log[0, :, 1], s.log[0, :, 3] = 5 + 0.1 * np.arange(T + 1), -1.8, 1.0  # x, y, yaw 0, 1 m/s
    s.log_valid = np.ones((1, T + 1), bool)
    batch = ScenarioBatch.build([s])
    res = rollout(batch, IDMLaneKeeping(), record=True)
    assert res.trajectory["speed"][-1, 0, 0] > 10.0  # 1.5 m/s^2 for 10 s from 1 m/s, not 1 m/s
    assert batch.init["desired_speed"][0, 0].item() == 1.0  # the scenario itself is untouched
    view = ego_at_speed_limit(batch)
    assert view.init["desired_speed"][0, 0].item() == 25.0 and view.init["mode"] is batch.init["mode"]
    assert torch.equal(view.init["desired_speed"][:, 1:], batch.init["desired_speed"][:, 1:])


def test_a_generated_scenario_keeps_its_ego_speed():
    road = build_map("straight", lanes=1, lanes_back=0)
    s = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 12.0, "v0": 12.0}], duration=10, name="knob")
    batch = ScenarioBatch.build([s])
    assert ego_at_speed_limit(batch).init["desired_speed"][0, 0].item() == 12.0
    res = rollout(batch, IDMLaneKeeping(), record=True)
    assert abs(res.trajectory["speed"][-1, 0, 0] - 12.0) < 0.5
