"""The throughput benchmark's pieces (sim/bench.py) run and count what they claim."""

import torch

from drivesim.sim.bench import bench_scenarios, ops_per_step, run_one


def test_bench_scenarios_have_exactly_the_requested_agents():
    scen = bench_scenarios(2, 12, duration=2.0)
    assert [s.num_agents for s in scen] == [12, 12]


def test_run_one_reports_a_positive_rate_and_ops_are_counted_per_step():
    torch.set_num_threads(1)
    r = run_one(2, 8, steps=2)
    assert r["B"] == 2 and r["A"] == 8 and r["agent_steps_per_s"] > 0 and r["step_ms"] > 0
    ops = ops_per_step(2, 8, steps=2)
    assert 100 < ops < 5000  # a step is hundreds of small tensor ops
