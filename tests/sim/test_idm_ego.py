"""The `idm` ego drives at the lane's speed limit, not at the scenario's desired speed of agent 0
(importers set that to the logged ego's top speed: a log that crawls made the idm ego crawl)."""

import torch

from drivesim.behavior.scenario import ScenarioBatch
from drivesim.map import build_map
from drivesim.sim.policy import IDMLaneKeeping, ego_at_speed_limit
from drivesim.sim.rollout import rollout
from tests.helpers import make_scenario


def test_idm_ego_targets_the_lane_speed_limit_not_the_logged_top_speed():
    road = build_map("straight", lanes=1, lanes_back=0)  # speed limit 25 m/s
    s = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 1.0, "v0": 1.0}], duration=10, name="crawl")
    batch = ScenarioBatch.build([s])
    res = rollout(batch, IDMLaneKeeping(), record=True)
    assert res.trajectory["speed"][-1, 0, 0] > 10.0  # 1.5 m/s^2 for 10 s from 1 m/s, not 1 m/s
    assert batch.init["desired_speed"][0, 0].item() == 1.0  # the scenario itself is untouched
    view = ego_at_speed_limit(batch)
    assert view.init["desired_speed"][0, 0].item() == 25.0 and view.init["mode"] is batch.init["mode"]
    assert torch.equal(view.init["desired_speed"][:, 1:], batch.init["desired_speed"][:, 1:])
