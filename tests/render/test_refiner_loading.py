"""Refiner and reconstruction artifacts load as plain data: a crafted file is refused and its code
never runs; a malformed one is a clear error naming the file (issue 14 items 1, 3, 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivesim.core.checkpoint import CheckpointError
from drivesim.render.refiner.model import Refiner, RefinerConfig
from drivesim.render.refiner.train import load_refiner, save
from tests.payloads import Touch, assert_payload_works

TINY = RefinerConfig(channels=(8, 16), cond_dim=16, start_noise=1.0)
SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "refiner"


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    return save(Refiner(TINY), {"lineage": {}}, tmp_path / "ref")


def _refused(fn, path, match):
    with pytest.raises(CheckpointError, match=match) as err:
        fn(path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)


def test_crafted_refiner_checkpoint_never_runs(tiny, tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    blob = torch.load(tiny, weights_only=True)
    blob["config"] = {"channels": [8, 16], "note": Touch(marker)}
    torch.save(blob, tiny)
    _refused(load_refiner, tiny, "not plain data.*could run code")
    assert not marker.exists()


def test_malformed_refiner_checkpoints(tiny):
    good = torch.load(tiny, weights_only=True)
    tiny.write_bytes(tiny.read_bytes()[:300])
    _refused(load_refiner, tiny, "corrupt or truncated")
    torch.save(torch.zeros(2), tiny)
    _refused(load_refiner, tiny, "not a drivesim refiner checkpoint")
    bad = dict(good, state_dict={k: v.clone() for k, v in good["state_dict"].items()})
    name = next(k for k, v in bad["state_dict"].items() if v.is_floating_point())
    bad["state_dict"][name][...] = float("nan")
    torch.save(bad, tiny)
    _refused(load_refiner, tiny, "NaN or infinite")
    bad["state_dict"][name] = torch.zeros(3, 3, 3)
    torch.save(bad, tiny)
    _refused(load_refiner, tiny, "do not fit the refiner")


def test_crafted_real_scene_never_runs(tmp_path):
    from drivesim.render.refiner.real_pairs import load_scene_file

    marker = tmp_path / "ran"
    path = tmp_path / "real_scene.pt"
    torch.save({"gaussians": {}, "lineage": Touch(marker)}, path)
    _refused(load_scene_file, path, "not plain data")
    torch.save({"gaussians": {}}, path)
    _refused(load_scene_file, path, "no \\['gain'")
    assert not marker.exists()


def test_crafted_reconstruction_never_runs(tmp_path):
    from drivesim.render.reconstruct.artifact import load_extras, load_scene

    marker = tmp_path / "ran"
    path = tmp_path / "scene.pt"
    torch.save({"gaussians": Touch(marker)}, path)
    _refused(load_scene, path, "not plain data")
    _refused(load_extras, path, "not plain data")
    assert not marker.exists()


def test_shipped_refiner_and_its_scene_load_as_plain_data():
    from drivesim.render.refiner.real_pairs import load_scene_file

    model = load_refiner(SHIPPED)
    scene = load_scene_file(SHIPPED / "real_scene.pt")
    assert isinstance(model, Refiner) and len(scene.gaussians.means) > 0 and scene.held_out
    assert set(scene.train).isdisjoint(scene.held_out)
