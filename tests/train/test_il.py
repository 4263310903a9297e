"""Imitation learning: demonstrations are labelled with the expert's action bins, a tiny run
lowers the loss and writes a complete card, checkpoints round-trip and refuse other layouts,
a NaN loss is an error, an interrupted run resumes where it stopped, fine-tuning keeps the
lineage, and the shipped checkpoint drives."""

import json
from pathlib import Path

import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.config import ConfigError
from drivesim.sim.expert import PDMClosed, PDMConfig
from drivesim.sim.observation import observe
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import Simulator
from drivesim.cli.train import il_config_from_args
from drivesim.train.il import ILConfig, Interrupted, train_epoch, train_il
from drivesim.train.il_data import FEATURE_KEYS, Demos, collect, suite_scenarios
from drivesim.train.policy_net import (ACCEL_BINS, NetPolicy, PolicyNet, PolicyNetConfig, accel_to_bin, features,
                                       load_policy, save_policy)
from drivesim.train.policies import make_policy

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "il_base.pt"
SUITE = """name: il-test
seed: 0
duration: 3.0
groups:
  - map: straight
    count: 2
    map_params: {lanes: 2, lanes_back: 1}
    traffic: {density: 1.5}
    ego: {speed: 15}
"""


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("suite") / "il_test.yaml"
    path.write_text(SUITE)
    return str(path)


def small(suite_file, **over) -> ILConfig:
    base = dict(suite=suite_file, suite_repeat=1, epochs=2, dagger=1, dagger_epochs=1, eval_scenarios=0, hidden=16,
                record_every=1, batch_size=32, lr=3e-3, val_fraction=0.0)
    return ILConfig(**{**base, **over})


@pytest.fixture(scope="module")
def base_run(suite_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("il_base")
    return out, train_il(small(suite_file, epochs=8, dagger=0), out, progress=False)


def test_demonstrations_have_the_expert_action_bins(suite_file):
    scenarios, _ = suite_scenarios(suite_file, seed=None)
    expert = PDMConfig(replan_every=1)
    demos, table = collect(scenarios, expert, ACCEL_BINS)
    T = scenarios[0].num_steps
    assert len(demos) == len(scenarios) * T and len(table) == len(scenarios)
    assert demos.feats["agents"].shape[1:] == (16, 12) and demos.feats["lanes_mask"].shape == (len(demos), 24)
    assert set(demos.feats) == set(FEATURE_KEYS) and demos.label.dtype == torch.long
    # replay the expert on the same batch: the recorded labels are its action bins, step by step
    batch = ScenarioBatch.build(scenarios)
    sim, policy = Simulator(batch), PDMClosed(expert)
    state = sim.reset()
    policy.reset(batch)
    want = []
    for _ in range(T):
        action = policy.act(observe(state, batch))
        want.append(accel_to_bin(action[:, 0], ACCEL_BINS))
        state = sim.step(state, action)
    want = torch.stack(want)  # [T, B]
    got = torch.stack([demos.label[demos.scenario == b] for b in range(len(scenarios))], 1)
    assert torch.equal(got, want)
    assert table["success"].eq(1).all()


def test_tiny_run_lowers_the_loss_and_writes_a_card(base_run):
    out, res = base_run
    assert res.curve[-1]["loss"] < res.curve[0]["loss"] - 0.2, res.curve
    card = json.loads((out / "policy.json").read_text())
    assert card["kind"] == "il" and card["expert"]["name"] == "pdm_expert"
    assert card["data"]["samples"] > 0 and card["data"]["sources"][0]["suite_hash"]
    n_starts = card["data"]["sources"][0].get("starts", {}).get("count", 0)  # start variants of the 2 drawn scenarios
    assert len(card["training_scenarios"]) == 2 + n_starts == card["data"]["scenarios"]
    assert all(len(h) == 64 for h in card["training_scenarios"].values())
    assert card["train_config"]["epochs"] == 8 and card["weights_sha256"]
    assert (out / "curves.png").stat().st_size > 1000 and (out / "metrics.json").exists()
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["global_epoch"] for h in history] == [c["global_epoch"] for c in res.curve]  # every epoch, as it ran


def test_checkpoint_round_trip(tmp_path, suite_file):
    torch.manual_seed(0)
    net = PolicyNet(PolicyNetConfig(hidden=16))
    path = save_policy(net, tmp_path / "p.pt", {"name": "mine"})
    policy = make_policy(str(path))
    assert isinstance(policy, NetPolicy) and policy.name == "mine"
    batch = ScenarioBatch.build(suite_scenarios(suite_file, seed=None)[0])
    f = features(observe(Simulator(batch).reset(), batch))
    assert torch.equal(policy.net(f)[0], net(f)[0])
    with pytest.raises(ValueError, match="no such file"):
        make_policy(str(tmp_path / "missing.pt"))


def test_other_layout_is_a_clear_error(tmp_path):
    path = save_policy(PolicyNet(PolicyNetConfig(hidden=8, accel_bins=(-4.0, 0.0, 2.0))), tmp_path / "bins.pt")
    with pytest.raises(ValueError, match="accel_bins"):
        load_policy(path, expect=PolicyNetConfig())
    with pytest.raises(ValueError, match="accel_bins"):
        train_il(ILConfig(suite="none", rare=1, rare_events=("hard-brake",)), tmp_path / "ft", init=str(path), progress=False)
    blob = torch.load(path, weights_only=True)
    blob["card"]["layout"]["ego_features"] = 9  # a checkpoint written by other observation code
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="ego_features"):
        load_policy(tmp_path / "old.pt")


def test_nan_loss_is_an_error():
    n = 8
    feats = {"agents": torch.zeros(n, 16, 12), "agents_mask": torch.zeros(n, 16, dtype=torch.bool),
             "lanes": torch.zeros(n, 24, 16), "lanes_mask": torch.ones(n, 24, dtype=torch.bool),
             "route": torch.zeros(n, 20), "ego": torch.full((n, 8), float("nan"))}
    demos = Demos(feats, torch.zeros(n), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                  torch.zeros(n, dtype=torch.long), ["s"])
    net = PolicyNet(PolicyNetConfig(hidden=8))
    opt = torch.optim.Adam(net.parameters())
    with pytest.raises(FloatingPointError, match="diverged"):
        train_epoch(net, opt, demos, torch.ones(n), ILConfig(), torch.Generator().manual_seed(0), "epoch 0", float("inf"))


def test_interrupted_run_resumes_from_its_last_epoch(tmp_path, suite_file):
    cfg = small(suite_file, epochs=3)
    whole = train_il(cfg, tmp_path / "whole", progress=False)

    def stop(state):
        if len(state["curve"]) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_il(cfg, tmp_path / "cut", progress=False, on_epoch=stop)
    seen = []
    resumed = train_il(cfg, tmp_path / "cut", progress=False, on_epoch=lambda s: seen.append(len(s["curve"])))
    assert seen == [3, 4]  # epoch 3 of round 0, then round 1: not from the start
    assert [c["loss"] for c in resumed.curve] == [c["loss"] for c in whole.curve]
    a, b = load_policy(whole.policy_path).net.state_dict(), load_policy(resumed.policy_path).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="another config"):
        train_il(small(suite_file, epochs=4), tmp_path / "cut", progress=False)


def test_fine_tune_keeps_the_lineage(base_run, tmp_path, suite_file):
    out, res = base_run
    ft = train_il(small(suite_file, suite_repeat=2, epochs=1, dagger=0), tmp_path / "ft", init=str(res.policy_path),
                  progress=False)
    card = ft.card
    assert card["kind"] == "il-finetune" and card["parent"]["weights_sha256"] == res.card["weights_sha256"]
    assert set(res.card["training_scenarios"]) < set(card["training_scenarios"])
    assert card["train_config"]["finetune_lr"] == ILConfig().finetune_lr


def test_config_from_arguments():
    import argparse

    from drivesim.cli.train import add_il_arguments

    p = argparse.ArgumentParser()
    add_il_arguments(p)
    cfg = il_config_from_args(p.parse_args(["--rare", "10", "--dagger", "1", "--set", "lr=0.0003", "--set", "expert.horizon=30"]))
    assert cfg.rare == 10 and cfg.dagger == 1 and cfg.lr == 3e-4 and cfg.expert.horizon == 30
    with pytest.raises(ConfigError, match="unknown key"):
        il_config_from_args(p.parse_args(["--set", "lrr=1"]))
    with pytest.raises(ConfigError, match="replan_every"):
        il_config_from_args(p.parse_args(["--set", "expert.replan_every=2"]))


@pytest.mark.skipif(not SHIPPED.exists(), reason="policies/il_base.pt not built yet")
def test_shipped_checkpoint_drives_a_tiny_scenario(suite_file):
    policy = load_policy(SHIPPED)
    assert SHIPPED.stat().st_size < 2_000_000 and policy.card["kind"] == "il"
    assert policy.card["training_scenarios"] and policy.card["metrics"]["expert_eval"]
    batch = ScenarioBatch.build(suite_scenarios(suite_file, seed=None)[0])
    res = rollout(batch, policy)
    assert res.status == ["ok", "ok"] and (res.metrics["progress"] > 10).all()
