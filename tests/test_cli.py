"""The `drivesim` command end to end on the tiny suite, and its errors."""

import json
from pathlib import Path

import pandas as pd
import pytest

from drivesim.cli import main


def test_simulate_writes_metrics_and_video(tmp_path, capsys):
    assert main(["simulate", "--suite", "tiny", "--scenario", "0", "--policy", "idm", "-o", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "ok" and 0 <= record["metrics"]["pdms"] <= 1
    videos = list(tmp_path.glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert "pdms" in capsys.readouterr().out


def test_evaluate_writes_table_and_report(tmp_path, capsys):
    assert main(["evaluate", "--suite", "tiny", "--policies", "constant_velocity,idm", "-o", str(tmp_path), "--no-video"]) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert sorted(results["policy"].unique()) == ["constant_velocity", "idm", "pdm_expert"]
    assert len(results) == 12 and (results["status"] == "ok").all()
    html = (tmp_path / "report.html").read_text()
    assert "constant_velocity" in html and "pdms" in html
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert len(meta["suite_hash"]) == 64
    out = capsys.readouterr().out
    assert "success_rate" in out and "idm" in out


def test_evaluate_streams_rows_and_checks_backend_options(tmp_path):
    assert main(["evaluate", "--suite", "tiny", "--policies", "idm", "-o", str(tmp_path), "--no-video"]) == 0
    streamed = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(streamed) == 8 and {r["policy"] for r in streamed} == {"idm", "pdm_expert"}
    with pytest.raises(SystemExit, match="--address needs --backend ray"):
        main(["evaluate", "--suite", "tiny", "--address", "127.0.0.1:1", "-o", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        main(["evaluate", "--suite", "tiny", "--backend", "ray", "--address", "127.0.0.1:1", "-o", str(tmp_path / "b")])


def test_bad_suite_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngroups:\n  - map: straight\n    count: 1\n    trafic: {density: 1}\n")
    with pytest.raises(SystemExit, match=r"groups\[0\]\.trafic"):
        main(["evaluate", "--suite", str(bad), "-o", str(tmp_path / "o")])


def test_unknown_map_type_in_suite(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngroups:\n  - map: roundabout\n    count: 1\n")
    with pytest.raises(SystemExit, match="roundabout"):
        main(["evaluate", "--suite", str(bad), "-o", str(tmp_path / "o")])


def test_unknown_policy_and_scenario(tmp_path):
    with pytest.raises(SystemExit, match="unknown policy 'nope'"):
        main(["simulate", "--suite", "tiny", "--policy", "nope", "-o", str(tmp_path)])
    with pytest.raises(SystemExit, match="no scenario 'zzz'"):
        main(["simulate", "--suite", "tiny", "--scenario", "zzz", "-o", str(tmp_path)])


def test_policy_checkpoints_on_the_command_line(tmp_path):
    """A shipped policy checkpoint evaluates by path; a missing or foreign .pt is a clear error."""
    shipped = Path(__file__).resolve().parents[1] / "policies" / "il_base.pt"
    assert main(["evaluate", "--suite", "tiny", "--policies", str(shipped), "--limit", "2", "--no-video",
                 "-o", str(tmp_path)]) == 0
    assert "il_base" in set(pd.read_csv(tmp_path / "results.csv")["policy"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["simulate", "--suite", "tiny", "--policy", str(tmp_path / "missing.pt"), "-o", str(tmp_path)])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="not a readable drivesim policy checkpoint"):
        main(["simulate", "--suite", "tiny", "--policy", str(tmp_path / "junk.pt"), "-o", str(tmp_path)])


def test_train_commands_have_help(capsys):
    for cmd in ("il", "rl"):
        with pytest.raises(SystemExit):
            main(["train", cmd, "--help"])
    out = capsys.readouterr().out
    assert "--init" in out and "DAgger" in out and "PPO" in out


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("simulate", "evaluate", "bench", "demo"):
        assert word in out


def test_simulate_procedural_map(tmp_path):
    assert main(["simulate", "--map", "curved", "--seed", "3", "--policy", "constant_velocity", "--format", "gif",
                 "-o", str(tmp_path)]) in (0, 1)
    assert list(tmp_path.glob("curved-seed3.gif")) and (tmp_path / "metrics.json").exists()
    with pytest.raises(SystemExit, match="unknown map type 'roundabout'"):
        main(["simulate", "--map", "roundabout", "-o", str(tmp_path)])


def test_train_traffic_tiny_procedural_run(tmp_path, capsys):
    out = tmp_path / "traffic"
    assert main(["train", "traffic", "--data", "none", "--procedural", "1", "--iterations", "15", "--rounds", "0",
                 "--held-out", "", "-o", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["iterations"] == 15 and (out / "model.pt").exists() and (out / "training_curve.png").exists()
    assert card["sha256"][:12] in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no real logs"):
        main(["train", "traffic", "--data", str(tmp_path / "nowhere"), "-o", str(out)])


@pytest.mark.data
def test_realism_scene_selection_errors(data_dir):
    with pytest.raises(SystemExit, match="scene-9999"):
        main(["realism", "--model", "constant_velocity", "--scenes", "scene-9999",
              "--data", str(data_dir / "scenarionet_nuscenes")])


@pytest.mark.data
@pytest.mark.slow
def test_realism_learned_on_held_out_scenes(data_dir, tmp_path, capsys):
    assert main(["realism", "--model", "learned,constant_velocity", "--scenes", "held-out",
                 "--data", str(data_dir / "scenarionet_nuscenes"), "-o", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "realism_summary.csv").set_index("model")
    assert summary.loc["learned", "meta_metric"] > summary.loc["constant_velocity", "meta_metric"]
    rows = pd.read_csv(tmp_path / "realism_learned.csv")
    assert len(rows) == 2 and "held-out scenes" in capsys.readouterr().out
