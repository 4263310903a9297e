"""The sparse search for agents right ahead off the lane index (reactive.off_lane_ahead_sparse,
used for large batches) gives exactly the dense [B, A, A] form's result (its plain twin)."""

import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.traffic.reactive import (ReactiveConfig, lane_frenet, lane_index, off_lane_ahead_dense,
                                       off_lane_ahead_sparse)


def test_sparse_matches_dense_on_jittered_traffic():
    roads = [build_map("straight", lanes=3), build_map("merge"), build_map("intersection"), build_map("curved")]
    scen = [procedural_scenario(r, TrafficConfig(density=5.0), seed=k, name=f"s{k}") for k, r in enumerate(roads * 2)]
    batch = ScenarioBatch.build(scen)
    sim, cfg = Simulator(batch), ReactiveConfig()
    state = sim.reset()
    gen = torch.Generator().manual_seed(0)
    found = 0
    for step in range(12):
        state = sim.step(state, torch.zeros(batch.batch_size, 2))
        if step % 3:
            continue
        # jitter positions and headings so that agents leave their lanes, overlap and stand side by side
        jitter = (torch.rand(state.x.shape, generator=gen) - 0.5) * 4.0
        st = state.replace(x=state.x - torch.sin(state.yaw) * jitter, y=state.y + torch.cos(state.yaw) * jitter,
                           yaw=state.yaw + (torch.rand(state.x.shape, generator=gen) - 0.5) * 0.6)
        on_lane = lane_index(st, lane_frenet(st, batch), batch).on_lane
        j0, d0 = off_lane_ahead_dense(st, on_lane, cfg)
        j1, d1 = off_lane_ahead_sparse(st, on_lane, cfg)
        assert torch.equal(d0, d1) and torch.equal(j0, j1)
        found += int(torch.isfinite(d0).sum())
    assert found > 50, "the states have agents right ahead off the lane index"


def test_sparse_picks_the_first_of_equally_near_agents_as_dense_does():
    """Agents 2 and 3 at the same place right ahead of an off-lane agent 1: both forms pick 2;
    a row with nobody ahead gives (0, inf)."""
    road = build_map("straight", lanes=2, lanes_back=0)
    scen = procedural_scenario(road, TrafficConfig(density=2.0), seed=0, name="tie")
    batch = ScenarioBatch.build([scen, scen])
    state = Simulator(batch).reset()
    A = state.num_agents
    assert A >= 4
    x = torch.full_like(state.x, -500.0) - torch.arange(A) * 50.0  # everyone far apart, behind ...
    y = torch.zeros_like(state.y)
    x[0, 1], x[0, 2], x[0, 3] = 0.0, 6.0, 6.0  # ... but agent 1 of row 0, with 2 and 3 side by side ahead
    st = state.replace(x=x, y=y, yaw=torch.zeros_like(x), speed=torch.full_like(x, 5.0), valid=torch.ones_like(state.valid))
    on_lane = torch.zeros_like(st.valid)  # all off their lanes
    cfg = ReactiveConfig()
    for f in (off_lane_ahead_dense, off_lane_ahead_sparse):
        j, d = f(st, on_lane, cfg)
        assert int(j[0, 1]) == 2 and float(d[0, 1]) == 6.0
        assert int(j[1, 1]) == 0 and d[1, 1] == float("inf")
