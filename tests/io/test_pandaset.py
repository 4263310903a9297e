"""PandaSet loader: conventions checked on the real sequence 002, and bad input on tmp copies."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from drivesim.io import pandaset as ps
from drivesim.io.errors import ImportDataError

pytestmark = pytest.mark.data


def test_pose_matrix_is_a_rotation_and_box_corners_follow_yaw():
    q = np.array([0.9, 0.1, -0.3, 0.2])
    m = ps.pose_matrix({"position": {"x": 1, "y": 2, "z": 3}, "heading": dict(zip("wxyz", q))})
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3)) and np.isclose(np.linalg.det(m[:3, :3]), 1)
    assert np.allclose(m[:3, 3], [1, 2, 3])
    c = ps.box_corners(torch.tensor([[10.0, 0, 1, 2, 4, 1, math.pi / 2]], dtype=torch.float64))[0]
    # dx = 2 along the box's x, rotated to world y; dy = 4 along world x
    assert torch.allclose(c[:, 0].max(), torch.tensor(12.0, dtype=torch.float64))
    assert torch.allclose(c[:, 1].max(), torch.tensor(1.0, dtype=torch.float64))


def test_real_sequence_loads_with_opencv_cameras_and_z_up(data_dir):
    seq = ps.load(data_dir / "pandaset_002", size=(96, 54), frames=(0, 40))
    assert seq.images.shape == (6, 2, 54, 96, 3) and seq.images.dtype == torch.uint8
    assert seq.images.float().mean() > 40  # real pixels, not a black frame
    # intrinsics scaled by 96/1920 (front: fx about 1970 -> 98.5)
    assert abs(float(seq.K[0, 0, 0]) - 1970.0 * 96 / 1920) < 0.5
    # OpenCV cameras in a z-up world: image y points down, optical axes are horizontal
    R = seq.cam_to_world[..., :3, :3]
    assert (R[..., 2, 1] < -0.95).all() and (R[..., 2, 2].abs() < 0.1).all()
    # a labelled car in front of the front camera projects inside its image, below the horizon
    boxes = seq.boxes[1]
    w2c = torch.linalg.inv(seq.cam_to_world[0, 1])
    pc = boxes[:, :3] @ w2c[:3, :3].T + w2c[:3, 3]
    ahead = pc[(pc[:, 2] > 5) & (pc[:, 2] < 30) & (pc[:, 0].abs() < 2)]
    assert len(ahead) > 0
    v = seq.K[0, 1, 1].double() * ahead[:, 1] / ahead[:, 2] + seq.K[0, 1, 2]
    assert ((v > 54 / 2) & (v < 54)).all()
    assert len(seq.data_hash()) == 64 and len(seq.files) == 6 * 2 + 18 + 2 + 1


def _copy(data_dir, tmp_path, frames=(0, 1)):
    """A two-frame, one-camera copy of the sequence: symlinks, so that single files can be spoiled."""
    src, dst = data_dir / "pandaset_002", tmp_path / "seq"
    (dst / "camera" / "front_camera").mkdir(parents=True)
    (dst / "annotations" / "cuboids").mkdir(parents=True)
    (dst / "lidar").mkdir()
    for name in ("intrinsics.json", "poses.json", "timestamps.json") + tuple(f"{f:02d}.jpg" for f in frames):
        (dst / "camera" / "front_camera" / name).symlink_to(src / "camera" / "front_camera" / name)
    for f in frames:
        (dst / "annotations" / "cuboids" / f"{f:02d}.pkl.gz").symlink_to(src / "annotations" / "cuboids" / f"{f:02d}.pkl.gz")
    (dst / "lidar" / "poses.json").symlink_to(src / "lidar" / "poses.json")
    return dst


def _load(root):
    return ps.load(root, size=(48, 27), cameras=("front",), frames=(0, 1))


def test_bad_images_are_clear_errors(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path)
    assert _load(root).images.shape == (1, 2, 27, 48, 3)
    img = root / "camera" / "front_camera" / "01.jpg"
    data = img.read_bytes()
    img.unlink()
    with pytest.raises(ImportDataError, match="01.jpg: image missing"):
        _load(root)
    img.write_bytes(data[: len(data) // 3])  # truncated JPEG
    with pytest.raises(ImportDataError, match="01.jpg: corrupt or unreadable image"):
        _load(root)
    from PIL import Image
    Image.new("RGB", (1600, 900)).save(img)  # another camera's size
    with pytest.raises(ImportDataError, match="1600x900"):
        _load(root)


def test_bad_calibration_and_poses_are_clear_errors(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path)
    intr = root / "camera" / "front_camera" / "intrinsics.json"
    good = json.loads(intr.read_text())
    intr.unlink()
    intr.write_text(json.dumps({**good, "cx": 485.0, "cy": 241.6}))  # calibration of 960x540 images
    with pytest.raises(ImportDataError, match="do not match 1920x1080 images"):
        _load(root)
    intr.write_text(json.dumps(good))
    poses = root / "camera" / "front_camera" / "poses.json"
    one = json.loads(poses.read_text())[:1]
    poses.unlink()
    poses.write_text(json.dumps(one))
    with pytest.raises(ImportDataError, match="1 poses, but frame 1"):
        _load(root)
    poses.unlink()
    with pytest.raises(ImportDataError, match="poses.json: missing"):
        _load(root)
    with pytest.raises(ImportDataError, match="not a PandaSet sequence"):
        _load(tmp_path)


def test_too_large_for_memory_is_refused_before_decoding(data_dir):
    with pytest.raises(MemoryError, match="smaller --size"):
        ps.load(data_dir / "pandaset_002", size=(1920, 1080), max_bytes=100 << 20)
    with pytest.raises(ImportDataError, match="no lidar point cloud"):
        ps.lidar_points(data_dir / "pandaset_002", 0)
