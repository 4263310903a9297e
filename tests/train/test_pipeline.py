"""`drivesim report training`: the IL -> RL pipeline on tiny budgets, its failure isolation,
reuse of finished jobs, config errors and the target checks."""

import json

import pandas as pd
import pytest

from drivesim.cli import main
from drivesim.core.config import ConfigError, apply_overrides, tuples_from_json
from drivesim.train.pipeline import QUICK, PipelineConfig, check_targets, run_job, run_pipeline


def test_quick_pipeline_isolates_a_failed_job_and_reuses_finished_ones(tmp_path):
    cfg = apply_overrides(PipelineConfig(), tuples_from_json({**QUICK, "workers": 1}))
    stale = tmp_path / "rl_nominal_s0"
    stale.mkdir()
    (stale / "pipeline_config.json").write_text("{}")  # a folder left by a run of another config
    res = run_pipeline(cfg, tmp_path, progress=False)
    assert list(res.failed) == ["rl_nominal_s0"] and "another pipeline config" in res.failed["rl_nominal_s0"]
    table = pd.read_csv(tmp_path / "table.csv")
    assert set(table["variant"]) == {"il", "il_rare", "rl_rare", "expert (reference)"}
    assert set(table["set"]) == {"held-out cut-ins", "held-out tiny"}
    assert ((table["success_lo"] <= table["success"]) & (table["success"] <= table["success_hi"])).all()
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["eval_sets"]["held-out cut-ins"]["set_hash"]) == 64 and report["eval_sets"]["held-out cut-ins"]["n"] == 10
    assert len(report["targets"]) == 3 and all(isinstance(t["met"], bool) for t in report["targets"])
    assert (tmp_path / "training.png").stat().st_size > 10_000
    # the rl_rare card names its IL parent and every training scenario, mined variations included
    card = json.loads((tmp_path / "rl_rare_s0" / "policy.json").read_text())
    assert card["init"]["weights_sha256"] == report["checkpoints"]["il"]["s0"]
    assert any("~" in name for name in card["training_scenarios"])  # mined variations are named parent~kN
    # no evaluation scenario was trained on
    assert not report["warnings"]
    # a finished job is reused as it is
    before = (tmp_path / "il_s0" / "policy.pt").read_bytes()
    run_job("il", 0, report["config"], str(tmp_path))
    assert (tmp_path / "il_s0" / "policy.pt").read_bytes() == before


def test_targets_are_computed_against_base_il():
    def targets(rl_nominal_pdms):
        rows = []
        for variant, coll, succ, pdms in (("il", 0.5, 0.4, 0.90), ("rl_rare", 0.25, 0.6, rl_nominal_pdms)):
            rows += [{"variant": variant, "set": "held-out cut-ins", "collision": coll, "success": succ, "pdms": 0.5},
                     {"variant": variant, "set": "held-out nominal", "collision": 0.0, "success": 1.0, "pdms": pdms}]
        return check_targets(pd.DataFrame(rows))

    collision, success, pdms = targets(0.895)
    assert collision["value"] == pytest.approx(0.5) and collision["met"]
    assert success["value"] == pytest.approx(0.2) and success["met"]
    assert pdms["value"] == pytest.approx(-0.005) and pdms["met"] and "held-out nominal" in pdms["target"]
    assert not targets(0.88)[2]["met"]


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: {updatez: 3}\n")
    with pytest.raises(SystemExit, match=r"rl\.updatez"):
        main(["report", "training", "--config", str(bad), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="seeds"):
        main(["report", "training", "--seeds", "0,0", "-o", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match="workers"):
        apply_overrides(PipelineConfig(), {"workers": 0})
