"""A recorded closed-loop rollout: the simulator must reproduce it bit for bit.

The recording (tests/data/recorded_rollout.pt, plain tensors, loaded with weights_only=True)
holds the full per-step states (x, y, yaw, speed, valid, lane) [T+1, B, A] and the metric rows
[B] of a few seeded scenario groups covering every agent mode:
  - "nominal": rows of scenarios/tiny.yaml (REACTIVE agents with MOBIL lane changes), IDM ego;
  - "cut_in" / "hard_brake": generated events (drivesim.events.generate.generate_set), IDM ego;
  - "real": a logged scene with REPLAY / HYBRID agents and a scripted REACTIVE cutter,
    constant-velocity ego.

Re-record (only with a reason -- a deliberate change of the simulation's arithmetic -- stated in
the commit message; a speed-up must never need it):
    PYTHONPATH=. python -m tests.sim.test_recorded_rollout
"""

from pathlib import Path

import numpy as np
import pytest
import torch

RECORDING = Path(__file__).resolve().parents[1] / "data" / "recorded_rollout.pt"
FIELDS = ("x", "y", "yaw", "speed", "valid", "lane")


def groups():
    """name -> (scenarios, policy) of every recorded group (deterministic, seeded)."""
    from drivesim.events.real_cut_in import RealCutInConfig, real_cut_in
    from drivesim.io.suite import build_scenarios, load_suite
    from drivesim.events.generate import LabelConfig, generate_set
    from drivesim.sim.policy import ConstantVelocity, IDMLaneKeeping
    from tests.events.test_real_trigger import logged_scene
    from tests.helpers import SUITES

    label = LabelConfig(expert_check=False, workers=1)
    real, _ = real_cut_in(logged_scene(), RealCutInConfig(), np.random.default_rng([0, 0]), "real-cut-in-x")
    return {
        "nominal": (build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False), IDMLaneKeeping),
        "cut_in": (generate_set("cut-in", 2, seed=3, label=label, show_progress=False).scenarios, IDMLaneKeeping),
        "hard_brake": (generate_set("hard-brake", 2, seed=5, label=label, show_progress=False).scenarios, IDMLaneKeeping),
        "real": ([real], ConstantVelocity),
    }


def run_groups() -> dict[str, torch.Tensor]:
    """Flat {group/field: tensor} of every group's rollout on the current code."""
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.rollout import rollout

    torch.set_num_threads(1)
    out = {}
    for name, (scenarios, policy) in groups().items():
        res = rollout(ScenarioBatch.build(scenarios), policy(), record=True, seed=0)
        assert res.status == ["ok"] * len(scenarios), (name, res.errors)
        for f in FIELDS:
            out[f"{name}/state/{f}"] = torch.from_numpy(np.ascontiguousarray(res.trajectory[f]))
        for m, v in res.metrics.items():
            out[f"{name}/metric/{m}"] = torch.from_numpy(np.asarray(v, dtype=np.float64))
    return out


@pytest.fixture(scope="module")
def recorded():
    return torch.load(RECORDING, weights_only=True)


@pytest.fixture(scope="module")
def current():
    return run_groups()


def test_recording_covers_every_mode_and_fits(recorded):
    assert RECORDING.stat().st_size < 600_000
    assert {k.split("/")[0] for k in recorded} == {"nominal", "cut_in", "hard_brake", "real"}


@pytest.mark.slow  # ~20 s: generating the event groups (calibration) dominates
def test_states_match_bit_for_bit(recorded, current):
    keys = sorted(k for k in recorded if "/state/" in k)
    assert keys == sorted(k for k in current if "/state/" in k)
    for k in keys:
        assert recorded[k].shape == current[k].shape, k
        assert torch.equal(recorded[k], current[k]), f"{k}: max |diff| {(recorded[k].double() - current[k].double()).abs().max()}"


@pytest.mark.slow
def test_metrics_match_bit_for_bit(recorded, current):
    keys = sorted(k for k in recorded if "/metric/" in k)
    assert keys == sorted(k for k in current if "/metric/" in k)
    for k in keys:
        a, b = recorded[k], current[k]
        assert torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num()), (k, a, b)


if __name__ == "__main__":
    from drivesim.core.safe_io import atomic_torch_save

    tensors = run_groups()
    atomic_torch_save(tensors, RECORDING)
    print(f"recorded {len(tensors)} tensors to {RECORDING} ({RECORDING.stat().st_size} bytes)")
