"""Camera imitation (train/camera_il.py): a tiny end-to-end run, and the frame cache that makes a
rerun render nothing."""

import dataclasses

import numpy as np
import pytest
import torch

from drivesim.render.cameras import CameraConfig
from drivesim.train.camera_il import CameraILConfig, FrameCache, train_camera_il

TINY = CameraILConfig(suite="tiny", scenarios=2, cameras=CameraConfig(size=(32, 16)), record_every=10, epochs=2, dagger=1,
                      dagger_epochs=1, batch_size=16, sim_batch=2)


@pytest.mark.slow
def test_a_tiny_run_trains_and_a_rerun_renders_nothing(tmp_path):
    card = train_camera_il(TINY, tmp_path / "a", cache_dir=tmp_path / "frames")
    h = card["history"]
    assert [(r["round"], r["epoch"]) for r in h] == [(0, 0), (0, 1), (1, 0)]
    assert all(np.isfinite(r["loss"]) for r in h) and h[1]["loss"] < h[0]["loss"]
    assert card["data"]["samples"] > 0 and card["data"]["frames_rendered"] > 0
    assert (tmp_path / "a" / "camera_policy.pt").is_file() and (tmp_path / "a" / "history.jsonl").is_file()
    blob = torch.load(tmp_path / "a" / "camera_policy.pt", weights_only=True)
    assert blob["card"]["params"] == card["params"]
    again = train_camera_il(TINY, tmp_path / "b", cache_dir=tmp_path / "frames")
    assert again["data"]["frames_rendered"] == 0  # every frame came from the cache
    assert again["data"]["frames_cached"] == card["data"]["frames_rendered"] + card["data"]["frames_cached"]
    assert [r["loss"] for r in again["history"]] == [r["loss"] for r in h]  # the same run, bit for bit


def test_the_frame_cache_reads_back_what_it_stored_and_skips_a_bad_file(tmp_path):
    cache = FrameCache(tmp_path)
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    cache.put("ab" + "0" * 62, frames)
    assert np.array_equal(cache.get("ab" + "0" * 62), frames) and cache.get("cd" + "0" * 62) is None
    cache.path("ef" + "0" * 62).parent.mkdir(exist_ok=True)
    cache.path("ef" + "0" * 62).write_bytes(b"not an array")
    assert cache.get("ef" + "0" * 62) is None  # rendered again, never trusted


def test_refined_frames_are_not_cached():
    from drivesim.train.camera_il import CachedCameras

    with pytest.raises(ValueError, match="splat frames only"):
        CachedCameras(CameraConfig(kind="refined"), None)


@pytest.mark.slow
def test_distilling_a_vector_policy_labels_with_its_decisions(tmp_path):
    from pathlib import Path

    rl = Path(__file__).resolve().parents[2] / "policies" / "rl_rare.pt"
    card = train_camera_il(dataclasses.replace(TINY, teacher=str(rl), dagger=0, epochs=1), tmp_path / "d",
                           cache_dir=tmp_path / "frames")
    assert card["teacher"] == str(rl) and card["teacher_card"]["weights_sha256"]
    assert card["data"]["samples"] > 0 and np.isfinite(card["history"][0]["loss"])


@pytest.mark.slow
def test_the_train_camera_command(tmp_path, capsys):
    from drivesim.cli import main

    args = ["train", "camera", "--suite", "tiny", "--scenarios", "2", "--camera-size", "32x16", "--epochs", "1",
            "--dagger", "0", "-o", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "frames rendered" in out and (tmp_path / "run" / "camera_policy.pt").is_file()
    with pytest.raises(SystemExit, match="no such file"):
        main([*args[:-1], str(tmp_path / "other"), "--teacher", "missing.pt"])


@pytest.mark.slow
def test_a_trained_camera_policy_is_evaluated_from_the_cli(tmp_path, capsys):
    from drivesim.cli import main
    from drivesim.core.checkpoint import CheckpointError
    from drivesim.train.camera_net import load_camera_policy

    train_camera_il(dataclasses.replace(TINY, dagger=0, epochs=1), tmp_path / "run", cache_dir=tmp_path / "frames")
    ckpt = tmp_path / "run" / "camera_policy.pt"
    assert load_camera_policy(ckpt).needs_cameras
    base = ["evaluate", "--suite", "tiny", "--limit", "2", "--policies", str(ckpt), "--camera-size", "32x16",
            "--policy-every", "10", "--no-video"]
    with pytest.raises(SystemExit, match="drive.s. from cameras: add --cameras"):
        main([*base, "-o", str(tmp_path / "blind")])
    assert main([*base, "--cameras", "splat", "-o", str(tmp_path / "eval")]) == 0
    assert "ms per six-camera frame for camera_splat" in capsys.readouterr().out
    blob = torch.load(ckpt, weights_only=True)
    blob["state_dict"]["pi.bias"] += 1.0  # a modified file is refused, never silently used
    torch.save(blob, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_camera_policy(tmp_path / "tampered.pt")
