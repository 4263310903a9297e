"""An agent off every lane (lane -1) keeps its own desired speed: it must not read the speed
limit of global lane 0, which belongs to whichever map comes first in the batch (this made
IDM/MOBIL rollouts of a scenario depend on the other scenarios batched with it)."""

import torch

from drivesim.traffic.reactive import desired_speed
from drivesim.core.scenario import ScenarioBatch
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario


def test_off_lane_agent_keeps_its_desired_speed_whatever_the_batch():
    road = build_map("straight", lanes=1, lanes_back=0)
    for lane in road.lanes:
        lane.speed_limit = 20.0
    other = build_map("curved")
    for lane in other.lanes:
        lane.speed_limit = 3.0  # global lane 0 when this map comes first
    a = make_scenario(road, [{"x": 0, "y": -1.75, "speed": 10}, {"x": 30, "y": 40.0, "speed": 10, "v0": 15.0}], duration=1.0)
    b = make_scenario(other, [{"x": 0, "y": 0, "speed": 0}], duration=1.0)
    alone = ScenarioBatch.build([a])
    mixed = ScenarioBatch.build([b, a])
    off_lane = lambda st, row: st.replace(lane=st.lane.index_put((torch.tensor([row]), torch.tensor([1])), torch.tensor([-1])))
    v_alone = desired_speed(off_lane(Simulator(alone).reset(), 0), alone)
    v_mixed = desired_speed(off_lane(Simulator(mixed).reset(), 1), mixed)
    assert float(v_alone[0, 1]) == float(v_mixed[1, 1]) == 15.0
