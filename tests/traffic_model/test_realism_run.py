"""Realism of traffic models on real nuScenes logs: log replay must score highest."""

import pytest

from drivesim.io import scenarionet
from drivesim.traffic_model.wosac import RealismConfig
from drivesim.traffic_model.realism import plot, realism

pytestmark = pytest.mark.data


def test_replay_scores_highest_on_real_logs(data_dir, tmp_path):
    folder = data_dir / "scenarionet_nuscenes"
    scenes = [scenarionet.load_file(folder / f"sd_nuscenes_v1.0-mini_scene-{k}.pkl") for k in ("0757", "0916")]
    cfg = RealismConfig(n_rollouts=4)
    scores = {m: realism(scenes, m, cfg) for m in ("replay", "idm_mobil", "constant_velocity")}
    meta = {m: float(r.table["meta_metric"].mean()) for m, r in scores.items()}
    assert meta["replay"] > meta["idm_mobil"] and meta["replay"] > meta["constant_velocity"], meta
    assert all(0 < v <= 1 for v in meta.values())
    plot(scores["idm_mobil"], tmp_path / "h.png", cfg)
    assert (tmp_path / "h.png").stat().st_size > 10_000
