"""Training the learned traffic model: labels recover logged actions, a tiny run lowers the
loss and writes a complete card; real logs are split by the held-out scene names."""

import json

import numpy as np
import pytest
import torch

from drivesim.traffic_model.model import LearnedTrafficConfig, TrafficModel, load
from drivesim.core.geometry import wrap_angle
from drivesim.dynamics.bicycle import BicycleConfig, apply_limits
from drivesim.dynamics.bicycle import step as bicycle_step
from drivesim.traffic_model.train import TrafficTrainConfig, real_sources, train_traffic
from drivesim.traffic_model.data import LabelConfig, hold_labels, logged_state, snapshot_samples

SMALL = LearnedTrafficConfig(d_model=16, heads=2, ff=32)


def test_hold_labels_recover_the_action_that_made_the_motion():
    model = TrafficModel(SMALL)
    gen = torch.Generator().manual_seed(0)
    n, H, dt, dyn = 64, 5, 0.1, BicycleConfig()
    truth = torch.randint(SMALL.num_actions, (n,), generator=gen)
    length = 3.5 + 2 * torch.rand(n, generator=gen)
    x, y = torch.zeros(n), torch.zeros(n)
    yaw = (torch.rand(n, generator=gen) - 0.5) * 6
    v = 5 + 10 * torch.rand(n, generator=gen)
    acc0, steer0 = model.actions(truth, length)  # start from the commanded action: no ramp
    state = _state(x, y, yaw, v, acc0, steer0, length)
    a, s = acc0, steer0
    px, py, pyaw, pv, pa = x, y, yaw, v, acc0
    for _ in range(H):
        a2, s2 = apply_limits(a, s, pa, s, dt, dyn)
        px, py, pyaw, pv, pa = bicycle_step(px, py, pyaw, pv, a2, s2, length, dt)
    target = torch.stack([px, py, wrap_angle(pyaw), pv], -1)
    labels = hold_labels(state, torch.zeros(n, dtype=torch.long), torch.arange(n), target, model, LabelConfig(horizon=H), dt)
    assert (labels == truth).float().mean() > 0.95


def _state(x, y, yaw, v, acc, steer, length):
    from drivesim.core.state import SimState

    u = lambda t: t.unsqueeze(0)
    n = len(x)
    return SimState(x=u(x), y=u(y), yaw=u(yaw), speed=u(v), accel=u(acc), steer=u(steer), length=u(length),
                    width=torch.full((1, n), 1.9), agent_type=torch.zeros(1, n, dtype=torch.long),
                    valid=torch.ones(1, n, dtype=torch.bool), lane=torch.full((1, n), -1), seg=torch.zeros(1, n, dtype=torch.long))


def test_tiny_training_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg = TrafficTrainConfig(model=SMALL, procedural_scenarios=2, procedural_maps=("straight", "merge"), procedural_duration=6.0,
                             procedural_every=3, iterations=60, rounds=1, round_iterations=20, round_steps=20, round_rollouts=1,
                             batch_size=64, lr=3e-3, held_out=())
    res = train_traffic(cfg, tmp_path, progress=False)
    first = np.mean([c["loss"] for c in res.curve[:5]])
    last = np.mean([c["loss"] for c in res.curve[-10:]])
    assert last < first - 0.3, (first, last)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["training"]["iterations"] == 80 and card["training"]["finished"]
    assert card["lineage"]["procedural"]["scenarios"] == 2 and len(card["lineage"]["procedural"]["logs_sha256"]) == 64
    assert card["metrics"]["closed_loop_rounds"][0]["procedural"]["samples"] > 0
    assert (tmp_path / "training_curve.png").stat().st_size > 5_000
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 80  # one row per iteration, as it ran
    model, _ = load(tmp_path)
    assert model.num_parameters == res.model.num_parameters


@pytest.mark.data
def test_real_logs_split_by_held_out_names_and_give_samples(data_dir):
    from drivesim.io import scenarionet

    folder = data_dir / "scenarionet_nuscenes"
    scenes = [scenarionet.load_file(folder / f"sd_nuscenes_v1.0-mini_scene-{k}.pkl") for k in ("0757", "0916")]
    train, held = real_sources(scenes, ("scene-0916",))
    assert [s.scenario.name for s in held] == ["scenarionet/scene-0916"] and len(train) == 1
    with pytest.raises(ValueError, match="scene-9999"):
        real_sources(scenes, ("scene-9999",))
    src = train[0]
    assert src.driven.sum() > 5 and not src.driven[0]
    state = logged_state(src.scenario)
    assert state.x.shape == (src.scenario.log.shape[1], src.scenario.num_agents)
    model = TrafficModel(SMALL)
    samples = snapshot_samples(src, model, LabelConfig(), SMALL.tokens, every=4)
    noisy = snapshot_samples(src, model, LabelConfig(), SMALL.tokens, every=4, noise=(1.0, 0.5, 0.05, 0.5),
                             generator=torch.Generator().manual_seed(0))
    assert len(samples) == len(noisy) > 100
    assert (samples.labels != noisy.labels).float().mean() > 0.2  # perturbed agents are labelled back to the log
    assert torch.isfinite(samples.tokens.agent).all()
