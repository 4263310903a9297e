"""PPO post-training: an update changes the policy, value warm-up leaves it alone, the KL
penalty keeps it near its IL init, runs are deterministic and resume exactly, and bad configs
or a NaN loss are clear errors. Tiny nets and hand-made scenarios keep it fast."""

import argparse
import json

import pytest
import torch

from drivesim.core.config import ConfigError, apply_overrides
from drivesim.core.run_log import tensorboard_available
from drivesim.core.types import AgentType, ControlMode
from drivesim.map import build_map
from drivesim.train.policy_net import PolicyNet, PolicyNetConfig, load_policy, save_policy
from drivesim.cli.train import add_rl_arguments, cmd_train_rl
from drivesim.train.ppo import PPOConfig, train_rl
from tests.helpers import make_scenario

Y = -1.8
TINY = dict(num_envs=8, num_steps=6, epochs=2, minibatch_size=24, value_warmup=0, checkpoint_every=1, lr=1e-3,
            target_kl=None, ent_coef=0.01)


@pytest.fixture(scope="module")
def scenarios():
    road = build_map("straight", length=300.0, lanes=2, lanes_back=0)
    stopped = {"x": 32.0, "y": Y, "speed": 0.0, "type": AgentType.STATIC, "mode": ControlMode.STATIC}
    return [make_scenario(road, [{"x": 20.0, "y": Y, "speed": 15.0}, stopped], duration=2.0, name="blocked"),
            make_scenario(road, [{"x": 20.0, "y": Y, "speed": 10.0}, {"x": 45.0, "y": Y, "speed": 8.0}], duration=1.5,
                          name="follow"),
            make_scenario(road, [{"x": 20.0, "y": Y, "speed": 12.0}], duration=0.5, name="free")]


def _init(path, seed=0, nan_value=False, huge_value=False):
    torch.manual_seed(seed)
    net = PolicyNet(PolicyNetConfig(hidden=16))
    if nan_value or huge_value:
        with torch.no_grad():
            net.v.bias.fill_(float("nan") if nan_value else 3e38)  # 3e38: finite, but its squared error overflows
    return save_policy(net, path, {"name": "il-test", "training_scenarios": {"il-scene": "abc123"}})


@pytest.fixture(autouse=True)
def fast_plot(request, monkeypatch):
    """Only the artifact test draws the curves (matplotlib costs about a second per figure)."""
    if "writes_the_artifacts" not in request.node.name:
        monkeypatch.setattr("drivesim.train.ppo.plot_curves", lambda history, path, title="": None)


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return _init(tmp_path_factory.mktemp("il") / "policy.pt")


def _train(scenarios, init, out, **over):
    cfg = apply_overrides(PPOConfig(), {**TINY, **over})
    return train_rl(scenarios, init, out, cfg, show_progress=False)


def _probe(net):
    """Logits of a fixed random feature batch."""
    g = torch.Generator().manual_seed(1)
    oc = net.cfg.obs
    f = {"agents": torch.randn(32, oc.num_agents, 12, generator=g),
         "agents_mask": torch.rand(32, oc.num_agents, generator=g) < 0.5,
         "lanes": torch.randn(32, oc.num_lane_chunks, 16, generator=g),
         "lanes_mask": torch.rand(32, oc.num_lane_chunks, generator=g) < 0.7,
         "route": torch.randn(32, 2 * oc.route_points, generator=g), "ego": torch.randn(32, 8, generator=g)}
    with torch.no_grad():
        return net(f)[0]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_one_update_changes_the_policy_and_writes_the_artifacts(scenarios, init, tmp_path):
    res = _train(scenarios, init, tmp_path, updates=1)
    before, after = load_policy(init).net, load_policy(res.policy_path).net
    assert not torch.equal(_probe(before), _probe(after))
    h = res.history[0]
    assert h["episodes"] > 0 and 0.0 <= h["collision_rate"] <= 1.0 and h["env_steps"] == 9 * 6 * PPOConfig().policy_every  # 9 rows x 6 decisions x steps per decision
    card = json.loads((tmp_path / "policy.json").read_text())
    assert card["init"]["weights_sha256"] == load_policy(init).card["weights_sha256"]
    assert set(card["rl_scenarios"]["names"]) == {"blocked", "follow", "free"}
    assert len(card["training_scenarios"]) == 4  # three RL scenarios + the IL card's one
    assert card["ppo_config"]["num_envs"] == 8
    for f in ("curves.png", "history.jsonl", "checkpoint.pt"):
        assert (tmp_path / f).exists()
    assert [json.loads(line)["update"] for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [1]
    if tensorboard_available():  # the same numbers as TensorBoard scalars
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / "tensorboard"))
        acc.Reload()
        assert [(e.step, e.value) for e in acc.Scalars("rl/collision_rate")] == [(1, pytest.approx(h["collision_rate"]))]


def test_value_warmup_leaves_the_policy_unchanged(scenarios, init, tmp_path):
    res = _train(scenarios, init, tmp_path, updates=2, value_warmup=2)
    w0, w1 = _weights(init), _weights(res.policy_path)
    for k in w0:
        if k.startswith("v."):
            assert not torch.equal(w0[k], w1[k]), k
        else:
            assert torch.equal(w0[k], w1[k]), k


def test_kl_penalty_keeps_the_policy_near_its_init(scenarios, init, tmp_path):
    def kl_to_init(coef, out):
        res = _train(scenarios, init, out, updates=3, lr=3e-3, kl_il_coef=coef, kl_il_final=coef, ent_coef=0.0)
        p = torch.log_softmax(_probe(load_policy(res.policy_path).net), -1)
        q = torch.log_softmax(_probe(load_policy(init).net), -1)
        return (p.exp() * (p - q)).sum(-1).mean().item()

    free, held = kl_to_init(0.0, tmp_path / "free"), kl_to_init(20.0, tmp_path / "held")
    assert held < 0.5 * free


def test_same_seed_same_first_update_bit_for_bit(scenarios, init, tmp_path):
    a = _weights(_train(scenarios, init, tmp_path / "a", updates=1).policy_path)
    b = _weights(_train(scenarios, init, tmp_path / "b", updates=1).policy_path)
    c = _weights(_train(scenarios, init, tmp_path / "c", updates=1, seed=1).policy_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_identically(scenarios, init, tmp_path):
    full = _train(scenarios, init, tmp_path / "full", updates=3, checkpoint_every=2)
    cfg = apply_overrides(PPOConfig(), {**TINY, "updates": 3, "checkpoint_every": 2})

    def interrupt(row):
        if row["update"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rl(scenarios, init, tmp_path / "split", cfg, show_progress=False, on_update=interrupt)
    resumed = train_rl(scenarios, init, tmp_path / "split", cfg, resume=True, show_progress=False)
    a, b = _weights(full.policy_path), _weights(resumed.policy_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    timing = ("rollout_s", "update_s", "env_steps_per_s", "wall_s")
    strip = lambda hs: [{k: v for k, v in h.items() if k not in timing} for h in hs]
    assert strip(full.history) == strip(resumed.history)
    other = apply_overrides(cfg, {"clip": 0.2})
    with pytest.raises(ValueError, match="clip"):
        train_rl(scenarios, init, tmp_path / "split", other, resume=True, show_progress=False)


def test_nan_loss_is_a_clear_error(scenarios, tmp_path):
    bad = _init(tmp_path / "bad.pt", huge_value=True)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        _train(scenarios, bad, tmp_path / "out", updates=1)
    nan = _init(tmp_path / "nan.pt", nan_value=True)  # NaN weights are refused when the init is loaded
    with pytest.raises(ValueError, match="nan.pt: policy checkpoint has NaN or infinite weights in \\['v.bias'\\]"):
        _train(scenarios, nan, tmp_path / "out2", updates=1)


def test_unknown_config_key_is_a_clear_error(tmp_path, init):
    with pytest.raises(ConfigError, match="lrate: unknown key"):
        apply_overrides(PPOConfig(), {"lrate": 1e-4})
    with pytest.raises(ConfigError, match="reward.ttc_factor: unknown key"):
        apply_overrides(PPOConfig(), {"reward": {"ttc_factor": 0.3}})
    cfg = tmp_path / "ppo.yaml"
    cfg.write_text("clip: 0.1\nentropy: 0.01\n")
    argv = ["--init", str(init), "--config", str(cfg), "-o", str(tmp_path)]
    args = add_rl_arguments(argparse.ArgumentParser()).parse_args(argv)
    with pytest.raises(SystemExit, match="entropy: unknown key"):
        cmd_train_rl(args)


def test_checkpoint_carries_its_decision_rate(tmp_path):
    net = PolicyNet()
    assert load_policy(save_policy(net, tmp_path / "il.pt", {"name": "il"})).policy_every is None
    rl = load_policy(save_policy(net, tmp_path / "rl.pt", {"name": "rl", "ppo_config": {"policy_every": 5}}))
    assert rl.policy_every == 5


def test_a_folder_with_a_run_is_never_overwritten_silently(scenarios, init, tmp_path):
    first = _train(scenarios, init, tmp_path / "run", updates=1)
    a = _weights(first.policy_path)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint.pt, policy.pt\): --resume.*--overwrite"):
        _train(scenarios, init, tmp_path / "run", updates=1, seed=1)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    with pytest.raises(ValueError, match="exclude each other"):
        train_rl(scenarios, init, tmp_path / "run", apply_overrides(PPOConfig(), TINY), resume=True, overwrite=True)
    cfg = apply_overrides(PPOConfig(), {**TINY, "updates": 1, "seed": 1})
    second = train_rl(scenarios, init, tmp_path / "run", cfg, show_progress=False, overwrite=True)
    b = _weights(second.policy_path)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    args = add_rl_arguments(argparse.ArgumentParser()).parse_args(["--init", str(init), "-o", str(tmp_path / "run"),
                                                                    "--scenarios", "cut-in", "--n", "1", "--quiet"])
    with pytest.raises(SystemExit, match="already holds a run"):
        cmd_train_rl(args)


def test_a_crafted_rl_checkpoint_is_refused_on_resume(scenarios, init, tmp_path):
    from tests.payloads import Touch

    _train(scenarios, init, tmp_path / "run", updates=1)
    marker = tmp_path / "ran"
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    blob["meta"]["config"] = Touch(marker)
    torch.save(blob, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt: not a readable RL checkpoint.*not plain data") as err:
        train_rl(scenarios, init, tmp_path / "run", apply_overrides(PPOConfig(), {**TINY, "updates": 2}), resume=True,
                 show_progress=False)
    assert "weights_only" not in str(err.value) and not marker.exists()
