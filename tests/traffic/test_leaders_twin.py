"""The sorted-index leader search agrees with its brute-force twin on random traffic states."""


import torch

from drivesim.traffic.reactive import ReactiveConfig, lane_frenet, lane_index, leaders, next_lanes
from drivesim.traffic.reference_leaders import leaders_reference
from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.map import build_map
from drivesim.sim.simulator import Simulator


def test_leaders_match_brute_force_on_random_states():
    roads = [build_map("straight", lanes=3), build_map("merge"), build_map("intersection"), build_map("curved")]
    scen = [procedural_scenario(r, TrafficConfig(density=4.0), seed=k, name=f"s{k}") for k, r in enumerate(roads * 2)]
    batch = ScenarioBatch.build(scen)
    sim = Simulator(batch)
    state = sim.reset()
    gen = torch.Generator().manual_seed(0)
    cfg = ReactiveConfig()
    checked = 0
    for step in range(30):
        # random ego actions keep the ego wandering across lanes
        action = torch.stack([torch.rand(batch.batch_size, generator=gen) * 4 - 2,
                              torch.rand(batch.batch_size, generator=gen) * 0.4 - 0.2], -1)
        state = sim.step(state, action)
        if step % 5:
            continue
        # jitter lateral positions so that many agents straddle lanes
        jitter = (torch.rand(state.x.shape, generator=gen) - 0.5) * 2.5
        st = state.replace(x=state.x - torch.sin(state.yaw) * jitter, y=state.y + torch.cos(state.yaw) * jitter)
        fr = lane_frenet(st, batch)
        nxt = next_lanes(st.lane, batch)
        fast, _ = leaders(st, fr, nxt, batch, cfg, lane_index(st, fr, batch))
        ref = torch.tensor(leaders_reference(st, fr, nxt, batch, cfg))
        finite = torch.isfinite(ref) & st.valid
        assert torch.equal(torch.isfinite(fast) & st.valid, finite)
        assert torch.allclose(fast[finite], ref[finite].float(), atol=1e-3)
        checked += int(finite.sum())
    assert checked > 200


def test_next_lanes_table_matches_the_successor_lists():
    """reactive.next_lanes (one lookup in MapBank.succ_by_index) against the plain choice a % n."""
    from drivesim.traffic.reference_leaders import next_lanes_reference

    roads = [build_map("intersection"), build_map("merge"), build_map("straight", lanes=2), build_map("curved")]
    scen = [procedural_scenario(r, TrafficConfig(density=4.0), seed=k, name=f"s{k}") for k, r in enumerate(roads)]
    batch = ScenarioBatch.build(scen)
    gen = torch.Generator().manual_seed(1)
    n_lanes = batch.bank.lane_succ.shape[0]
    lane = torch.randint(-1, n_lanes, (batch.batch_size, 40), generator=gen)
    lane[:, 0] = batch.route_lanes[:, 0]  # the ego on its route
    assert torch.equal(next_lanes(lane, batch), next_lanes_reference(lane, batch))
    # per agent: the simulator picks next lanes of mixed lanes from those of each (simulator.step)
    other = torch.randint(-1, n_lanes, lane.shape, generator=gen)
    mask = torch.rand(lane.shape, generator=gen) > 0.5
    mixed = next_lanes(torch.where(mask, lane, other), batch)
    assert torch.equal(mixed, torch.where(mask, next_lanes(lane, batch), next_lanes(other, batch)))
    counts = (batch.bank.lane_succ >= 0).sum(-1)
    assert int(counts.max()) >= 2, "some lane has a choice of successors"


def test_reactive_control_skips_empty_script_tables_with_the_same_decisions():
    from drivesim.traffic.control import reactive_control

    roads = [build_map("straight", lanes=3), build_map("merge")]
    batch = ScenarioBatch.build([procedural_scenario(r, TrafficConfig(density=5.0), seed=k, name=f"s{k}") for k, r in enumerate(roads)])
    sim = Simulator(batch)
    assert not sim.scripted  # procedural traffic has no scripts
    state = sim.reset()
    for _ in range(10):  # step 10: MOBIL decides too
        state = sim.step(state, torch.zeros(batch.batch_size, 2))
    full = reactive_control(state, batch, ReactiveConfig())
    skip = reactive_control(state, batch, ReactiveConfig(), has_scripts=False)
    for name in ("accel", "steer", "lane", "seg", "changed", "next_lane", "next_lane_before"):
        assert torch.equal(getattr(full, name), getattr(skip, name)), name
