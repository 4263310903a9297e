"""`drivesim evaluate` as an AV team uses it: a camera policy from their own file with its
arguments, camera frames and their cost, failure videos of the policy under test, and the
command that replays each failure."""

import json

import pandas as pd
import pytest

from drivesim.cli import main

CAMERA_POLICY = '''
import torch


class LooksAhead:
    """Brakes when the bottom of the front camera is dark (a toy camera policy)."""

    def __init__(self, gain=1.0):
        self.name, self.gain = f"looks_ahead_{gain:g}", gain

    def reset(self, batch):
        pass

    def act(self, obs):
        front = obs.cameras[:, 1]  # [B, H, W, 3]
        dark = 1.0 - front[:, -8:].mean(dim=(1, 2, 3))
        return torch.stack([(1.0 - self.gain * dark).clamp(-4, 2), torch.zeros_like(dark)], dim=1)
'''


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["splat", "refined"])
def test_a_camera_policy_from_a_file_is_evaluated_with_its_frames_and_their_cost(tmp_path, capsys, kind):
    (tmp_path / "mine.py").write_text(CAMERA_POLICY)
    out = tmp_path / "out"
    code = main(["evaluate", "--suite", "tiny", "--limit", "2", "--policies", f"{tmp_path / 'mine.py'}:LooksAhead, idm",
                 "--policy-args", '{"gain": 0.5}', "--cameras", kind, "--camera-size", "48x32", "--policy-every", "10",
                 "-o", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "ms per six-camera frame for looks_ahead_0.5" in text
    rows = pd.read_csv(out / "results.csv").set_index("policy")
    assert (rows.loc["looks_ahead_0.5", "camera_frames"] == 5).all() and (rows.loc["idm", "camera_frames"] == 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["cameras"] == f"{kind} nuscenes 48x32"
    assert set(summary["policies"]) == {"pdm_expert", "looks_ahead_0.5", "idm"}


def test_failures_get_videos_of_the_policy_under_test_and_a_replay_command(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["evaluate", "--suite", "tiny", "--policies", "constant_velocity", "--videos", "1", "-o", str(out)])
    assert code == 0
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["constant_velocity__tiny_02-merge_000.mp4"]  # its one failure, not the expert's run
    page = (out / "report.html").read_text()
    assert "videos/constant_velocity__tiny_02-merge_000.mp4" in page
    command = "drivesim simulate --suite tiny --scenario tiny/02-merge/000 --policy constant_velocity"
    assert command in page
    capsys.readouterr()
    assert main(command.split()[1:] + ["-o", str(tmp_path / "replay")]) == 0
    replay = json.loads((tmp_path / "replay" / "metrics.json").read_text())["metrics"]
    row = pd.read_csv(out / "results.csv").set_index(["policy", "scenario"]).loc[("constant_velocity", "tiny/02-merge/000")]
    assert replay["pdms"] == pytest.approx(row["pdms"]) and replay["success"] == row["success"] == 0


def test_resuming_with_other_cameras_or_arguments_is_refused(tmp_path):
    """The policy's inputs are part of what its rows mean: --resume must not mix them."""
    (tmp_path / "mine.py").write_text(CAMERA_POLICY)
    out = str(tmp_path / "out")
    base = ["evaluate", "--suite", "tiny", "--limit", "1", "--policies", f"{tmp_path / 'mine.py'}:LooksAhead",
            "--camera-size", "32x16", "--policy-every", "25", "--no-video", "-o", out]
    assert main([*base, "--cameras", "splat", "--policy-args", '{"gain": 0.5}']) == 0
    with pytest.raises(SystemExit, match="resume with the same policies"):  # another gain, another name here
        main([*base, "--cameras", "splat", "--policy-args", '{"gain": 0.7}', "--resume"])
    with pytest.raises(SystemExit, match="resume only the same policy"):
        main([*base, "--cameras", "refined", "--policy-args", '{"gain": 0.5}', "--resume"])
    assert main([*base, "--cameras", "splat", "--policy-args", '{"gain": 0.5}', "--resume"]) == 0


@pytest.mark.parametrize("bad, message", [
    (["--cameras", "splat", "--camera-size", "8x8"], "image size must be at least 16x16"),
    (["--cameras", "splat", "--rig", "no_such_rig"], "no rig 'no_such_rig'"),
    (["--cameras", "refined", "--refiner", "missing_dir"], "missing_dir"),
    (["--policies", "idm", "--policy-args", "[1, 2]"], "must be a JSON object"),
])
def test_bad_camera_and_policy_options_are_clear_errors(tmp_path, bad, message):
    with pytest.raises(SystemExit, match=message):
        main(["evaluate", "--suite", "tiny", "--limit", "1", "--no-video", "-o", str(tmp_path / "o"), *bad])
