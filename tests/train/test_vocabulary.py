"""The learned policy's trajectory vocabulary and its decoding: plans that stop, lane changes only
where the map has a lane, two-hot targets whose mean is the expert's acceleration, and a greedy
decoding that brakes when the head's braking mass says so (the top bin did not)."""

import dataclasses

import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.io.suite import build_scenarios, load_suite
from drivesim.sim.observation import observe, route_position
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import Simulator
from drivesim.sim.trajectory import Trajectory
from drivesim.train.il_data import resolve_suite
from drivesim.train.policy_net import ACCEL_BINS, NetPolicy, PolicyNet, PolicyNetConfig, expected_accel, two_hot
from drivesim.train.vocabulary import LATERAL_OPTIONS, VocabularyConfig, lateral_targets, plan


@pytest.fixture(scope="module")
def scenarios():
    return build_scenarios(load_suite(resolve_suite("tiny")))


def _obs(scenarios):
    batch = ScenarioBatch.build(scenarios)
    return observe(Simulator(batch).reset(), batch)


def test_two_hot_targets_have_the_acceleration_as_their_mean():
    accel = torch.tensor([-8.0, -5.3, -0.25, 0.0, 1.7, 2.5, 9.0, -20.0])
    t = two_hot(accel, ACCEL_BINS)
    assert torch.allclose(t.sum(-1), torch.ones(len(accel)))
    assert ((t > 0).sum(-1) <= 2).all()
    mean = (t * torch.tensor(ACCEL_BINS)).sum(-1)
    assert torch.allclose(mean, accel.clamp(ACCEL_BINS[0], ACCEL_BINS[-1]), atol=1e-6)


def test_mean_decoding_brakes_where_the_top_bin_does_not():
    """The defect of the previous checkpoint: 35 % of the mass on hard braking, the rest on
    keeping speed; the top bin says 0, the mean brakes at about -2.8 m/s^2."""
    bins = torch.tensor(ACCEL_BINS)
    probs = torch.zeros(1, len(bins))
    probs[0, 0], probs[0, ACCEL_BINS.index(0.0)] = 0.35, 0.65
    logits = probs.clamp(min=1e-9).log()
    assert bins[logits.argmax(-1)].item() == 0.0
    assert expected_accel(logits, bins).item() == pytest.approx(-2.8, abs=1e-3)


def test_a_braking_plan_stops_and_stays(scenarios):
    obs = _obs(scenarios[:2])
    cfg = VocabularyConfig()
    d0, targets, _ = lateral_targets(obs, cfg)
    p = plan(obs, torch.full((2,), -8.0), targets[:, 0], d0, cfg)
    v0 = obs.state.speed[:, 0]
    assert (p["speed"][:, -1] == 0).all() and (torch.diff(p["speed"], dim=1) <= 1e-6).all()
    travelled = (p["xy"][:, -1] - p["xy"][:, 0]).norm(dim=-1)
    assert torch.allclose(travelled, v0 ** 2 / 16.0, rtol=0.05, atol=0.05)  # v^2 / (2 a)
    assert torch.allclose(p["xy"][:, 0], obs.state.xy[:, 0])


def test_lane_changes_are_offered_only_where_the_map_has_a_lane(scenarios):
    obs = _obs(scenarios)
    d0, targets, allowed = lateral_targets(obs, VocabularyConfig())
    bank, lane = obs.batch.bank, obs.state.lane[:, 0]
    i = LATERAL_OPTIONS.index("change_left")
    assert torch.equal(allowed[:, i], (bank.lane_left[lane] >= 0) | (d0 > 0.5 * bank.lane_width[lane]))
    assert allowed[:, :3].all()  # keep and the nudges: always
    assert not allowed[:, i].all() and allowed[:, i].any()  # the tiny suite has both kinds of rows
    rows = allowed[:, i].nonzero().squeeze(1)
    cfg = dataclasses.replace(VocabularyConfig(), horizon=80)  # a change plan ends a lane width left of the route
    p = plan(obs, torch.zeros(len(obs.state.x)), targets[:, i], d0, cfg)
    _, d_end = route_position(obs.batch, p["xy"][:, -1])
    assert torch.allclose(d_end[rows], targets[rows, i], atol=0.3)


def test_net_policy_returns_a_tracked_trajectory_and_drives(scenarios):
    torch.manual_seed(0)
    policy = NetPolicy(PolicyNet(PolicyNetConfig(hidden=16)))
    obs = _obs(scenarios[:2])
    traj = policy.act(obs)
    assert isinstance(traj, Trajectory) and traj.poses.shape == (2, 40, 3) and traj.dt == pytest.approx(0.1)
    assert torch.isfinite(policy.controls(obs)).all()
    res = rollout(ScenarioBatch.build(scenarios[:2]), policy, policy_every=5)
    assert res.status == ["ok", "ok"]


def test_policy_config_is_checked():
    from drivesim.core.config import ConfigError, apply_overrides

    with pytest.raises(ConfigError, match="decode"):
        apply_overrides(PolicyNetConfig(), {"decode": "top"}, "policy")
    with pytest.raises(ConfigError, match="lateral"):
        apply_overrides(PolicyNetConfig(), {"vocab": {"lateral": ["left"]}}, "policy")
