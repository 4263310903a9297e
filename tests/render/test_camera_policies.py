"""A camera-reading policy evaluated like any other (sim/evaluate.py with EvalConfig.cameras),
on splat and on refined cameras: the frames it sees, their cost, and nothing rendered for a
policy that does not read them."""

import functools

import numpy as np
import pytest
import torch

from drivesim.io.eval_report import camera_cost
from drivesim.io.suite import load_suite_scenarios
from drivesim.render.cameras import CameraConfig, make_cameras
from drivesim.sim.evaluate import EvalConfig, evaluate
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW, ConstantVelocity


class TinyCNN(torch.nn.Module):
    """Six cameras through one shared conv layer, pooled, to (accel, steer); it records what it saw."""

    name = "tiny_cnn"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.head = torch.nn.Linear(4, 2)
        self.seen = []

    def reset(self, batch) -> None:
        self.seen.clear()

    @torch.no_grad()
    def act(self, obs) -> torch.Tensor:
        images = obs.cameras  # [B, C, H, W, 3]
        self.seen.append(images.clone())
        B, C, H, W, _ = images.shape
        x = self.conv(images.reshape(B * C, H, W, 3).permute(0, 3, 1, 2)).relu().mean(dim=(2, 3))  # [B*C, 4]
        a = torch.tanh(self.head(x.view(B, C, 4).mean(dim=1)))
        return torch.maximum(torch.minimum(a * ACTION_HIGH, ACTION_HIGH), ACTION_LOW)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["splat", "refined"])
def test_a_camera_policy_runs_through_evaluate(kind):
    scenarios = load_suite_scenarios("tiny", limit=2, progress=False)[2]
    cameras = functools.partial(make_cameras, CameraConfig(kind=kind, size=(48, 32)))
    cfg = EvalConfig(cameras=cameras, policy_every=10, keep_failure_trajectories=False)
    policy = TinyCNN()
    ev = evaluate(scenarios, [policy, ConstantVelocity()], config=cfg, show_progress=False)
    rows = ev.results.set_index("policy")
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert np.isfinite(rows.loc["tiny_cnn", "pdms"]).all()
    seen = torch.cat(policy.seen)
    assert seen.shape[1:] == (6, 32, 48, 3) and 0 <= seen.min() and seen.max() <= 1 and seen.std() > 0.05
    assert (rows.loc["tiny_cnn", "camera_frames"] == 5).all()  # 50 steps, a decision every 10
    assert (rows.loc["constant_velocity", "camera_frames"] == 0).all()  # it never reads obs.cameras
    cost = camera_cost(ev.results)
    assert set(cost) == {"tiny_cnn"} and cost["tiny_cnn"] > 0


def test_the_frames_are_those_a_fresh_renderer_gives(tmp_path):
    """What the policy saw is what the renderer (and so the video) shows: the same state, the same frame."""
    scenarios = load_suite_scenarios("tiny", limit=1, progress=False)[2]
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.simulator import Simulator

    batch = ScenarioBatch.build(scenarios)
    state = Simulator(batch).reset()
    a = make_cameras(CameraConfig(size=(48, 32)))(state, batch)
    b = make_cameras(CameraConfig(size=(48, 32)))(state, batch)
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad, message", [
    (CameraConfig(kind="lidar"), "cameras.kind: got 'lidar'"),
    (CameraConfig(size=(8, 8)), "cameras.size"),
    (CameraConfig(kind="refined", size=(50, 30)), "divisible by 8"),
    (CameraConfig(rig="no_such_rig"), "no rig 'no_such_rig'"),
])
def test_bad_camera_configs_are_clear_errors(bad, message):
    from drivesim.core.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_cameras(bad)
