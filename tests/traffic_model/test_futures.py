"""Alternative futures of a seed scenario: N sampled futures as ordinary, saveable logged
scenarios; and the realism of the stochastic learned model (32 different rollouts)."""

import numpy as np
import pytest
import torch

from drivesim.traffic_model.model import LearnedTraffic, LearnedTrafficConfig, TrafficModel
from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.core.types import ControlMode
from drivesim.io.scenario_file import load_scenario, save_scenario
from drivesim.map import build_map
from drivesim.traffic_model.futures import alternative_futures
from drivesim.sim.policy import IDMLaneKeeping
from drivesim.sim.rollout import rollout


def tiny_behavior(seed=0):
    torch.manual_seed(seed)
    return LearnedTraffic(TrafficModel(LearnedTrafficConfig(d_model=16, heads=2, ff=32)))


def test_alternative_futures_are_valid_saveable_scenarios(tmp_path):
    seed = procedural_scenario(build_map("merge"), TrafficConfig(duration=3.0), seed=2, name="merge-2")
    futures = alternative_futures(seed, tiny_behavior(), n=3, seed=7)
    assert [f.name for f in futures] == [f"merge-2~future{k}" for k in range(3)]
    moved = np.asarray(seed.mode) == ControlMode.REACTIVE
    for k, f in enumerate(futures):
        f.validate()
        assert f.log.shape == (seed.num_agents, seed.num_steps + 1, 4) and f.meta["future_index"] == k
        assert int(f.mode[0]) == ControlMode.POLICY and (f.mode[1:][moved[1:]] == ControlMode.REPLAY).all()
        back = load_scenario(save_scenario(f, tmp_path / f"f{k}.npz"))
        assert np.allclose(back.log, f.log) and back.meta["future_of"] == "merge-2"
    ends = np.stack([f.log[moved, -1, :2] for f in futures])
    assert np.abs(ends[0] - ends[1]).max() > 0.1 and np.abs(ends[1] - ends[2]).max() > 0.1  # different futures
    again = alternative_futures(seed, tiny_behavior(), n=3, seed=7)
    assert all(np.array_equal(a.log, b.log) for a, b in zip(futures, again))  # deterministic
    # a future replays exactly as sampled and can be evaluated like any logged scenario
    res = rollout(ScenarioBatch.build([futures[1]]), IDMLaneKeeping(), record=True)
    assert res.status == ["ok"]
    assert np.allclose(res.trajectory["x"][:, 0, 1:][:, moved[1:]], futures[1].log[1:][moved[1:], :, 0].T, atol=1e-4)


@pytest.mark.data
def test_learned_realism_uses_different_rollouts(data_dir):
    from drivesim.io import scenarionet
    from drivesim.traffic_model.wosac import RealismConfig
    from drivesim.traffic_model import realism as realism_mod

    scene, _ = scenarionet.load(data_dir / "scenarionet_nuscenes" / "sd_nuscenes_v1.0-mini_scene-0757.pkl")
    cfg = RealismConfig(n_rollouts=4)
    seen = []
    original = realism_mod.realism_score

    def spy(rollouts, *args, **kw):
        seen.extend(rollouts)
        return original(rollouts, *args, **kw)

    realism_mod.realism_score = spy
    try:
        res = realism_mod.realism(scene, "learned", cfg, behavior=LearnedTraffic.load())
    finally:
        realism_mod.realism_score = original
    assert len(seen) == 4 and len({id(r) for r in seen}) == 4
    assert not torch.equal(seen[0]["x"], seen[1]["x"])
    assert torch.equal(seen[0]["x"][:9], seen[1]["x"][:9])  # the same logged history
    assert 0 < float(res.table["meta_metric"].iloc[0]) <= 1


@pytest.mark.data
def test_every_importer_runs_in_learned_mode(data_dir):
    from drivesim.traffic.log_modes import with_traffic
    from drivesim.io import av2, commonroad, scenarionet

    scenes = [scenarionet.load_file(data_dir / "scenarionet_nuscenes" / "sd_nuscenes_v1.0-mini_scene-0757.pkl"),
              av2.load(data_dir / "av2" / "motion")[0][0],
              commonroad.load_scenario(data_dir / "commonroad_ngsim" / "USA_US101-3_3_T-1.xml")]
    batch = ScenarioBatch.build([with_traffic(s, "learned") for s in scenes])
    assert (batch.init["mode"] == ControlMode.LEARNED).sum() > 3
    res = rollout(batch, IDMLaneKeeping(), behavior=LearnedTraffic.load())
    assert res.status == ["ok"] * 3, res.errors
    assert np.isfinite(res.metrics["pdms"]).all()
