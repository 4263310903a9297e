"""Score formulas (REFERENCE.md: NAVSIM v1 PDMS, nuPlan closed-loop score)."""

import pytest
import torch

from drivesim.metrics.score import (METRICS, collision_multipliers, navsim_ep, nuplan_progress_ratio, nuplan_score, pdms,
                                    register, speed_limit_score)


def test_pdms():
    one = torch.ones(1)
    assert pdms(one, one, one, one, one).item() == 1.0
    assert pdms(0.5 * one, one, one, 0 * one, one).item() == pytest.approx(0.5 * 7 / 12)
    assert pdms(one, 0 * one, one, one, one).item() == 0.0


def test_navsim_ep():
    ep = navsim_ep(torch.tensor([10.0, 30.0, 3.0, -2.0]), torch.tensor([20.0, 20.0, 4.0, 20.0]))
    assert ep.tolist() == [0.5, 1.0, 1.0, 0.0]


def test_nuplan_pieces():
    counts = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert collision_multipliers(counts).prod(-1).tolist() == [0.5, 0.0, 0.0, 0.0]
    assert nuplan_progress_ratio(torch.tensor([1.0, 10.0]), torch.tensor([1.5, 40.0])).tolist() == [1.0, 0.25]
    s = speed_limit_score(torch.tensor([0.0, 2.23, 100.0]), torch.tensor([2.0, 2.0, 2.0]))
    assert s.tolist() == pytest.approx([1.0, 0.5, 0.0])
    one = torch.ones(1)
    full = nuplan_score(torch.zeros(1, 3), one, one, one, one, one, one, one)
    assert full.item() == 1.0
    half_dir = nuplan_score(torch.zeros(1, 3), one, one, 0.5 * one, 0.5 * one, one, one, one)
    assert half_dir.item() == pytest.approx(0.5 * (2.5 + 5 + 4 + 2) / 16)


def test_registry():
    assert "pdms" in METRICS and "nuplan_score" in METRICS
    with pytest.raises(ValueError):
        register("pdms", "again")
