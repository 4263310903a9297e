import torch

from drivesim.core.scenario import ScenarioBatch
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


def test_route_position_coarse_search_matches_exhaustive():
    from drivesim.events import EVENTS, build_event, sample_params
    from drivesim.sim.observation import route_position

    scenarios = []
    for event in EVENTS:
        cfg = EVENTS[event].config()
        scenarios += [build_event(event, p, cfg, 0, i) for i, p in enumerate(sample_params(event, cfg, 0, 3))]
    road = build_map("intersection")
    scenarios.append(make_scenario(road, [dict(x=0.0, y=0.0)], route=(0,)))
    batch = ScenarioBatch.build(scenarios)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, batch.route_pts.shape[1], (batch.batch_size, 300), generator=g)
    xy = batch.route_pts.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2)) + torch.randn(batch.batch_size, 300, 2, generator=g) * 6
    for a, b in zip(route_position(batch, xy), route_position(batch, xy, exhaustive=True)):
        torch.testing.assert_close(a, b)
