"""Every importer's real scenes run closed loop in every traffic mode, through files and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from drivesim.traffic.log_modes import TRAFFIC_MODES, with_traffic
from drivesim.core.scenario import ScenarioBatch
from drivesim.cli import main
from drivesim.io import av2, commonroad, scenarionet
from drivesim.sim.policy import IDMLaneKeeping
from drivesim.sim.rollout import rollout

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def scenes(data_dir):
    return {"scenarionet": scenarionet.load_file(data_dir / "scenarionet_nuscenes" / "sd_nuscenes_v1.0-mini_scene-0757.pkl"),
            "av2": av2.load(data_dir / "av2" / "motion")[0][0],
            "commonroad": commonroad.load_scenario(data_dir / "commonroad_ngsim" / "USA_US101-3_3_T-1.xml")}


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_each_source_runs_in_each_traffic_mode(scenes, mode):
    batch = ScenarioBatch.build([with_traffic(s, mode) for s in scenes.values()])
    res = rollout(batch, IDMLaneKeeping())
    assert res.status == ["ok"] * 3, res.errors
    for k in ("pdms", "nuplan_score", "progress", "drivable_area_compliance"):
        assert np.isfinite(res.metrics[k]).all(), k


def test_import_then_evaluate_through_the_cli(data_dir, tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["import", "commonroad", str(data_dir / "commonroad_ngsim"), "-o", str(out)]) == 0
    assert len(list(out.glob("*.npz"))) == 4
    ev = tmp_path / "eval"
    assert main(["evaluate", "--scenarios", str(out), "--traffic", "hybrid", "--policies", "idm", "-o", str(ev), "--no-video"]) == 0
    results = pd.read_csv(ev / "results.csv")
    assert (results["status"] == "ok").all() and set(results["policy"]) == {"idm", "pdm_expert"}
    meta = json.loads((ev / "results.json").read_text())["meta"]
    assert meta["traffic"] == "hybrid" and len(meta["scenario_hashes"]) == 4
    assert main(["simulate", "--scenarios", str(out), "--scenario", "0", "--traffic", "replay", "-o", str(tmp_path / "sim")]) in (0, 1)
    assert list((tmp_path / "sim").glob("*.mp4"))
