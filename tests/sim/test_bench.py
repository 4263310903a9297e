"""The throughput benchmark's pieces (sim/bench.py) run and count what they claim."""

import torch

from drivesim.sim.bench import bench_scenarios, count_ops, run_one


def test_bench_scenarios_have_exactly_the_requested_agents():
    scen = bench_scenarios(2, 12, duration=2.0)
    assert [s.num_agents for s in scen] == [12, 12]


def test_run_one_reports_a_positive_rate_and_the_ops_of_a_step():
    torch.set_num_threads(1)
    r = run_one(2, 8, steps=2)
    assert r["B"] == 2 and r["A"] == 8 and r["agent_steps_per_s"] > 0 and r["step_ms"] > 0
    assert 100 < r["ops_per_step"] < 5000  # a step is hundreds of small tensor ops


def test_count_ops_counts_dispatched_ops():
    x = torch.ones(3)
    assert count_ops(lambda: (x + 1) * 2) == 2
    assert count_ops(lambda: None) == 0
