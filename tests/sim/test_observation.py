import torch

from drivesim.behavior.scenario import ScenarioBatch
from drivesim.core.types import AgentType, ControlMode
from drivesim.map import build_map
from drivesim.sim.observation import AGENT_FEATURES, EGO_FEATURES, ObservationConfig, observe
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario


def test_observation_is_ego_centric_and_masked():
    road = build_map("straight", lanes=2, lanes_back=1)
    sc = make_scenario(road, [{"x": 50, "y": -1.8, "speed": 10}, {"x": 70, "y": -5.4, "speed": 8},
                              {"x": 30, "y": -1.8, "speed": 0, "mode": ControlMode.STATIC, "type": AgentType.STATIC,
                               "length": 0.4, "width": 0.4}])
    batch = ScenarioBatch.build([sc])
    obs = observe(Simulator(batch).reset(), batch, ObservationConfig(num_agents=4))
    assert obs.agents.shape == (1, 4, AGENT_FEATURES) and obs.agents_mask.tolist() == [[True, True, False, False]]
    near, far = obs.agents[0, 0], obs.agents[0, 1]  # nearest first: the cone 20 m behind, then the car
    assert torch.allclose(near[:2], torch.tensor([-20.0, 0.0]), atol=1e-4) and near[8 + AgentType.STATIC] == 1
    assert torch.allclose(far[:2], torch.tensor([20.0, -3.6]), atol=1e-4) and torch.allclose(far[4], torch.tensor(8.0))
    assert torch.allclose(obs.route[0, 0], torch.tensor([5.0, 0.0]), atol=1e-3)  # route points straight ahead
    assert obs.ego.shape == (1, EGO_FEATURES) and obs.ego[0, 0] == 10.0
    assert obs.lanes_mask.any() and obs.flat().shape[0] == 1 and torch.isfinite(obs.flat()).all()
