"""Imitation data: standing / slow start variants (ego at the given speed at step 0, the rest
equal, validated), DART noise (labels are the expert's clean action, the executed action differs
and stays in the action box, off is identical to no noise, seeded and batch-independent), and the
real scenes' held-out split (fixed, disjoint from training, every shared source loaded)."""

import dataclasses

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioBatch, ScenarioError
from drivesim.core.types import ControlMode
from drivesim.sim.expert import PDMClosed, PDMConfig
from drivesim.sim.observation import observe
from drivesim.sim.policy import clip_action
from drivesim.sim.simulator import Simulator
from drivesim.train import il_data
from drivesim.train.il import ILConfig, training_scenarios
from drivesim.train.il_eval import eval_scenarios
from drivesim.train.il_data import (HELD_OUT_REAL, REAL_SOURCES, collect, is_heldout_real, real_scenarios,
                                    suite_scenarios)
from drivesim.train.il_variants import DartConfig, dart_noise, start_variants, with_start_speed
from drivesim.train.policy_net import ACCEL_BINS, accel_to_bin

SUITE = """name: ildata-test
seed: 0
duration: 3.0
groups:
  - map: straight
    count: 2
    map_params: {lanes: 2, lanes_back: 1}
    traffic: {density: 1.5}
    ego: {speed: 12}
"""
EXPERT = PDMConfig(replan_every=1)
NOISE = DartConfig(accel_std=0.5, steer_std=0.01, rho=0.9)


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("suite") / "ildata_test.yaml"
    path.write_text(SUITE)
    return str(path)


@pytest.fixture(scope="module")
def scenarios(suite_file):
    return suite_scenarios(suite_file, seed=None)[0]


# ---------------------------------------------------------------------------- starts
@pytest.mark.parametrize("speed", [0.0, 2.0])
def test_start_variant_starts_at_its_speed_and_keeps_the_rest(scenarios, speed):
    base = scenarios[0]
    v = with_start_speed(base, speed)
    assert v.name == base.name + ("/start0" if speed == 0 else "/start2") and v.meta["start_of"] == base.name
    assert base.speed[0] == pytest.approx(12.0)  # the original is untouched
    for f in dataclasses.fields(base):
        if f.name in ("name", "meta", "speed"):
            continue
        a, b = getattr(base, f.name), getattr(v, f.name)
        assert (np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b), f.name
    assert np.array_equal(v.speed[1:], base.speed[1:]) and v.speed[0] == speed
    state = Simulator(ScenarioBatch.build([v])).reset()
    assert float(state.speed[0, 0]) == speed and float(state.accel[0, 0]) == 0.0


def test_start_variants_are_validated_and_picked_by_a_fixed_rule(scenarios):
    with pytest.raises(ScenarioError, match="start speed"):
        with_start_speed(scenarios[0], -1.0)
    all_v = start_variants(scenarios, (0.0, 2.0), 1.0)
    assert [v.speed[0] for v in all_v] == [0.0, 2.0] and [v.meta["start_of"] for v in all_v] == [s.name for s in scenarios]
    assert start_variants(scenarios, (0.0,), 0.0) == [] and start_variants(scenarios, (), 1.0) == []
    many = [dataclasses.replace(scenarios[0], name=f"s{i}") for i in range(400)]
    picked = [v.meta["start_of"] for v in start_variants(many, (0.0,), 0.25, seed=3)]
    assert 60 < len(picked) < 140 and picked == [v.meta["start_of"] for v in start_variants(many, (0.0,), 0.25, seed=3)]


def test_training_and_eval_sets_get_start_variants(suite_file):
    cfg = ILConfig(suite=suite_file, suite_repeat=4, starts=(0.0, 2.0), start_fraction=0.5, eval_scenarios=8)
    scen, prov = training_scenarios(cfg)
    starts = [s for s in scen if "start_of" in s.meta]
    assert starts and prov[0]["starts"]["count"] == len(starts) and len(scen) == prov[0]["count"] + len(starts)
    assert {s.meta["start_of"] for s in starts} <= {s.name for s in scen}
    assert {float(s.speed[0]) for s in starts} == {0.0, 2.0} and "seconds" in prov[0]
    assert any("start_of" in s.meta for s in eval_scenarios(cfg))
    none, _ = training_scenarios(dataclasses.replace(cfg, start_fraction=0.0))
    assert [s.name for s in none] == [s.name for s in scen if "start_of" not in s.meta]


def test_expert_drives_off_from_a_standing_start(scenarios):
    v = with_start_speed(scenarios[0], 0.0)
    demos, table = collect([v], EXPERT, ACCEL_BINS)
    assert table["success"].iloc[0] == 1 and float(demos.accel[:5].min()) > 0  # it accelerates away


# ---------------------------------------------------------------------------- DART
def _same(a, b) -> bool:
    """The same rows, scenario by scenario (batches record their rows step-major)."""
    if a.names != b.names:
        return False
    for i in range(len(a.names)):
        ra, rb = a.scenario == i, b.scenario == i
        if not (all(torch.equal(a.feats[k][ra], b.feats[k][rb]) for k in a.feats) and torch.equal(a.accel[ra], b.accel[rb])
                and torch.equal(a.label[ra], b.label[rb])):
            return False
    return True


def test_dart_off_is_identical_to_no_noise(scenarios):
    plain, t0 = collect(scenarios, EXPERT, ACCEL_BINS, seed=5)
    zero, t1 = collect(scenarios, EXPERT, ACCEL_BINS, seed=5, noise=DartConfig(accel_std=0.0, steer_std=0.0, rho=0.9))
    assert _same(plain, zero) and t0.equals(t1)


def test_dart_labels_are_the_clean_expert_action_at_the_visited_states(scenarios):
    demos, _ = collect(scenarios, EXPERT, ACCEL_BINS, seed=7, noise=NOISE)
    # drive the same batch by hand: the label is the expert's action, the executed one is noisy
    batch = ScenarioBatch.build(scenarios)
    sim, expert = Simulator(batch), PDMClosed(EXPERT)
    state = sim.reset()
    expert.reset(batch)
    noise = dart_noise(batch.names, batch.max_steps, NOISE, 7)
    want, gaps = [], []
    for t in range(batch.max_steps):
        action = expert.act(observe(state, batch))
        executed = clip_action(action + noise[:, t])
        want.append(action[:, 0])
        gaps.append((executed - action).abs().amax())
        state = sim.step(state, executed)
    want = torch.stack(want)  # [T, B]
    got = torch.stack([demos.accel[demos.scenario == b] for b in range(len(scenarios))], 1)
    assert torch.equal(got, want) and torch.equal(demos.label, accel_to_bin(demos.accel, ACCEL_BINS))
    assert float(torch.stack(gaps).max()) > 0.3  # the executed action differs from the label
    clean, _ = collect(scenarios, EXPERT, ACCEL_BINS, seed=7)
    assert not torch.equal(clean.feats["ego"], demos.feats["ego"])  # other states were visited


def test_dart_is_seeded_batch_independent_and_stays_in_the_action_box(scenarios):
    a, _ = collect(scenarios, EXPERT, ACCEL_BINS, seed=1, noise=NOISE)
    b, _ = collect(scenarios, EXPERT, ACCEL_BINS, seed=1, noise=NOISE, batch_size=1)
    c, _ = collect(scenarios, EXPERT, ACCEL_BINS, seed=2, noise=NOISE)
    assert _same(a, b) and not _same(a, c)
    huge = DartConfig(accel_std=50.0, steer_std=5.0)  # clipped to the box: the simulator would raise otherwise
    collect(scenarios[:1], EXPERT, ACCEL_BINS, noise=huge)


def test_dart_noise_has_its_std_and_correlation():
    n = dart_noise([f"s{i}" for i in range(300)], 200, DartConfig(accel_std=0.5, steer_std=0.02, rho=0.9), seed=0)
    assert n.shape == (300, 200, 2)
    assert n[..., 0].std().item() == pytest.approx(0.5, rel=0.05) and n[..., 1].std().item() == pytest.approx(0.02, rel=0.05)
    lag1 = torch.corrcoef(torch.stack([n[:, 1:, 0].reshape(-1), n[:, :-1, 0].reshape(-1)]))[0, 1].item()
    assert lag1 == pytest.approx(0.9, abs=0.02)
    assert torch.equal(n[:1], dart_noise(["s0"], 200, DartConfig(accel_std=0.5, steer_std=0.02, rho=0.9), seed=0))


def test_dart_config_is_validated():
    from drivesim.core.config import ConfigError

    with pytest.raises(ConfigError, match="dart.rho"):
        ILConfig(dart_rho=1.0).validate_config()
    with pytest.raises(ConfigError, match="dart.accel_std"):
        ILConfig(dart_accel=-0.1).validate_config()
    with pytest.raises(ConfigError, match="starts"):
        ILConfig(starts=(-1.0,)).validate_config()
    with pytest.raises(ConfigError, match="real_sources"):
        ILConfig(real_sources=("kitti",)).validate_config()


# ---------------------------------------------------------------------------- real scenes, held-out split
def test_heldout_rule_is_fixed():
    from drivesim.traffic_model.train import HELD_OUT

    assert is_heldout_real("scenarionet/scene-0103") and is_heldout_real("commonroad/USA_US101-3_3_T-1")  # sha256 % 4 == 0
    assert not is_heldout_real("scenarionet/scene-0061") and not is_heldout_real("av2/0a1e6f0a-1817-4a98-b02e-db8c9327d151")
    assert all(map(is_heldout_real, HELD_OUT_REAL))
    assert all(any(h in name for name in HELD_OUT_REAL) for h in HELD_OUT)  # the traffic model's held-out scenes too


def test_missing_real_data_is_skipped_with_a_note(tmp_path, capsys):
    scenes, prov = real_scenarios("train", root=tmp_path)
    assert scenes == [] and prov["count"] == 0 and set(prov["sources"]) == set(REAL_SOURCES)
    assert all("no folder" in info["skipped"] for info in prov["sources"].values())
    assert "skipped" in capsys.readouterr().err
    with pytest.raises(ValueError, match="split"):
        real_scenarios("test", root=tmp_path)
    assert il_data.main(["--heldout", "--data", str(tmp_path)]) == 0
    assert "nuscenes: skipped" in capsys.readouterr().out


@pytest.fixture(scope="module")
def loaded(data_dir):
    """Every shared source as imported, loaded once for the module."""
    return {src: il_data.load_real_source(src, data_dir) for src in REAL_SOURCES}


@pytest.fixture
def cached(loaded, monkeypatch, data_dir):
    monkeypatch.setattr(il_data, "load_real_source", lambda src, root=None: loaded[src])
    return data_dir


@pytest.mark.data
@pytest.mark.slow
def test_every_shared_source_loads(loaded):
    for src, (scenes, info) in loaded.items():
        assert "skipped" not in info, (src, info)
        assert scenes and info["seconds"] > 0 and not info["errors"], src
    assert sum(len(s) for s, _ in loaded.values()) >= 16


@pytest.mark.data
def test_train_and_heldout_splits_are_disjoint_and_complete(cached):
    train, ptrain = real_scenarios("train", root=cached)
    held, pheld = real_scenarios("heldout", root=cached)
    tn, hn = {s.name for s in train}, {s.name for s in held}
    assert tn and hn and not tn & hn and not any(map(is_heldout_real, tn)) and all(map(is_heldout_real, hn))
    for src in REAL_SOURCES:
        a, b = ptrain["sources"][src], pheld["sources"][src]
        assert a["count"] + b["count"] == a["loaded"] and b["count"] == a["heldout"], src
        assert a["scenes"] and set(a["scenes"]) <= tn and set(b["scenes"]) <= hn
    assert set(HELD_OUT_REAL) <= hn
    assert all(s.mode[0] == ControlMode.POLICY and s.meta["traffic"] == "hybrid" for s in train)  # the ego is the policy


@pytest.mark.data
def test_il_trains_on_the_train_split_only_and_records_it(cached, monkeypatch, capsys):
    monkeypatch.setenv("DRIVESIM_DATA", str(cached))
    scen, prov = training_scenarios(ILConfig(suite="none", real=True))
    names = {s.name for s in scen}
    assert names and not any(map(is_heldout_real, names))
    real = prov[-1]
    assert real["split"] == "train" and real["count"] == len(scen) and "seconds" in real
    assert {src: len(p["scenes"]) for src, p in real["sources"].items()} == \
        {src: sum(1 for n in names if n.split("/")[0] == prefix) for src, prefix in
         [("nuscenes", "scenarionet"), ("av2", "av2"), ("commonroad", "commonroad"), ("womd", "womd"), ("gpudrive", "gpudrive")]}
    assert il_data.main(["--heldout", "--data", str(cached)]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in HELD_OUT_REAL) and not any(n in out for n in names)


def test_il_run_records_starts_and_dart_in_its_card(suite_file, tmp_path):
    from drivesim.train.il import train_il

    cfg = ILConfig(suite=suite_file, suite_repeat=1, epochs=1, dagger=1, dagger_epochs=1, eval_scenarios=0, hidden=8,
                   record_every=4, val_fraction=0.0, starts=(0.0,), start_fraction=1.0, dart_accel=0.5, dart_steer=0.005)
    card = train_il(cfg, tmp_path, progress=False).card
    src = card["data"]["sources"][0]
    assert src["starts"] == {"speeds": [0.0], "fraction": 1.0, "count": 2} and "seconds" in src
    assert sum(n.endswith("/start0") for n in card["training_scenarios"]) == 2 and card["data"]["scenarios"] == 4
    dart = [r["dart"] for r in card["data"]["per_round"]]
    assert dart[0] == {"accel_std": 0.5, "steer_std": 0.005, "rho": 0.5} and dart[1] is None  # not in DAgger rounds


def test_fresh_start_set(suite_file):
    from drivesim.train.il_data import start_scenarios

    out, prov = start_scenarios(suite_file, seed=77, speeds=(0.0,))
    assert len(out) == prov["count"] == 2 and all(s.name.endswith("/start0") and s.speed[0] == 0 for s in out)
    assert all("-starts77/" in s.name for s in out) and len(prov["set_hash"]) == 64
    assert [s.name for s in start_scenarios(suite_file, seed=77, speeds=(0.0,))[0]] == [s.name for s in out]
