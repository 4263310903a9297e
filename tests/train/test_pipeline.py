"""`drivesim report training`: the IL -> RL pipeline on tiny budgets, its failure isolation,
reuse of finished jobs, config errors and the target checks."""

import json

import pandas as pd
import pytest

from drivesim.cli import main
from drivesim.core.config import ConfigError, apply_overrides, tuples_from_json
from drivesim.train.pipeline import QUICK, RARE_TYPES, PipelineConfig, check_targets, run_job, run_pipeline


def test_quick_pipeline_isolates_a_failed_job_and_reuses_finished_ones(tmp_path):
    cfg = apply_overrides(PipelineConfig(), tuples_from_json({**QUICK, "workers": 1}))
    stale = tmp_path / "rl_nominal_s0"
    stale.mkdir()
    (stale / "pipeline_config.json").write_text("{}")  # a folder left by a run of another config
    res = run_pipeline(cfg, tmp_path, progress=False)
    assert list(res.failed) == ["rl_nominal_s0"] and "another pipeline config" in res.failed["rl_nominal_s0"]
    table = pd.read_csv(tmp_path / "table.csv")
    assert set(table["variant"]) == {"il", "il_rare", "rl_rare", "expert (reference)"}
    events = {f"held-out {e}" for e in RARE_TYPES}
    assert set(table["set"]) == {"held-out nominal", "held-out starts"} | events
    assert ((table["success_lo"] <= table["success"]) & (table["success"] <= table["success_hi"])).all()
    report = json.loads((tmp_path / "report.json").read_text())
    cut = report["eval_sets"]["held-out cut-in"]
    assert len(cut["set_hash"]) == 64 and cut["n"] == 4 and cut["knobs"]["lat_speed"] == [2.0, 2.6]
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    assert any(t["target"].startswith("rl_rare nominal PDMS") for t in report["targets"])
    assert (tmp_path / "training.png").stat().st_size > 10_000
    # the rl_rare card names its IL parent and every training scenario, mined variations included
    card = json.loads((tmp_path / "rl_rare_s0" / "policy.json").read_text())
    assert card["init"]["weights_sha256"] == report["checkpoints"]["il"]["s0"]
    mined = card["rl_scenarios"]["mined"]  # mined variations are named parent~kN
    assert mined["probe"] == 5 and sum("~" in name for name in card["training_scenarios"]) == mined["variations"]
    assert card["rl_scenarios"]["nominal_mix"]["n"] >= 1  # nominal scenarios mixed into the rare set
    # no evaluation scenario was trained on
    assert not report["warnings"]
    # a finished job is reused as it is
    before = (tmp_path / "il_s0" / "policy.pt").read_bytes()
    run_job("il", 0, report["config"], str(tmp_path))
    assert (tmp_path / "il_s0" / "policy.pt").read_bytes() == before


def _table(il, rl, nominal_pdms=0.895):
    """A summary table: il / rl_rare (success, collision) per rare type, nominal rows."""
    rows = []
    for e in RARE_TYPES:
        for variant, (succ, coll) in (("il", il.get(e, (1.0, 0.0))), ("rl_rare", rl.get(e, (1.0, 0.0)))):
            rows.append({"variant": variant, "set": f"held-out {e}", "collision": coll, "success": succ, "pdms": 0.5})
    for variant, pdms in (("il", 0.90), ("rl_rare", nominal_pdms)):
        rows.append({"variant": variant, "set": "held-out nominal", "collision": 0.0, "success": 1.0, "pdms": pdms,
                     "comfort": 0.9})
    return pd.DataFrame(rows)


def test_targets_are_computed_against_base_il_per_failing_rare_type():
    by = lambda t: {x["target"]: x for x in t}
    t = by(check_targets(_table({"cut-in": (0.4, 0.5), "merge": (0.95, 0.05)}, {"cut-in": (0.6, 0.25), "merge": (0.9, 0.1)})))
    assert t["rl_rare cut-in collisions -50 % vs il"]["value"] == pytest.approx(0.5) and t["rl_rare cut-in collisions -50 % vs il"]["met"]
    assert not any("merge collisions" in k for k in t)  # il fails merges < 10 %: no target there
    pooled = t["rl_rare pooled success +15 points on cut-in"]
    assert pooled["value"] == pytest.approx(0.2) and pooled["met"]
    pdms = t["rl_rare nominal PDMS >= il - 0.01"]
    assert pdms["value"] == pytest.approx(-0.005) and pdms["met"]
    assert t["il nominal PDMS >= 0.90"]["met"]
    worse = by(check_targets(_table({"cut-in": (0.4, 0.5)}, {"cut-in": (0.45, 0.4)}, nominal_pdms=0.88)))
    assert not worse["rl_rare cut-in collisions -50 % vs il"]["met"] and not worse["rl_rare nominal PDMS >= il - 0.01"]["met"]
    assert not worse["rl_rare pooled success +15 points on cut-in"]["met"]


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: {updatez: 3}\n")
    with pytest.raises(SystemExit, match=r"rl\.updatez"):
        main(["report", "training", "--config", str(bad), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="seeds"):
        main(["report", "training", "--seeds", "0,0", "-o", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match="workers"):
        apply_overrides(PipelineConfig(), {"workers": 0})
