"""The same code path on CUDA: a rollout on the GPU matches the CPU one (skipped without CUDA)."""

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.io.suite import build_scenarios, load_suite
from drivesim.sim.expert import PDMClosed
from drivesim.sim.rollout import rollout
from tests.helpers import SUITES

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_rollout_matches_cpu():
    scenarios = build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False)
    cpu = rollout(ScenarioBatch.build(scenarios), PDMClosed(), record=True)
    gpu = rollout(ScenarioBatch.build(scenarios, device="cuda"), PDMClosed(), record=True)
    assert gpu.status == cpu.status
    for k in ("x", "y", "speed"):  # the first 2 s: later, float differences may flip a discrete decision
        assert np.allclose(gpu.trajectory[k][:20], cpu.trajectory[k][:20], atol=0.01), k
    assert np.allclose(gpu.metrics["pdms"], cpu.metrics["pdms"], atol=0.05)
