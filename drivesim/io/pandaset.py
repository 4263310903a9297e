"""PandaSet sequence loader for scene reconstruction: images, calibration, poses, cuboids, lidar.

`load(root, size=(W, H), cameras=None, frames=None)` reads a PandaSet devkit sequence folder
(`camera/<name>_camera/{NN.jpg, intrinsics.json, poses.json, timestamps.json}`,
`annotations/cuboids/NN.pkl.gz`, `lidar/{poses.json, NN.pkl.gz}`) into a `PandaSetSequence`:

- images as uint8 [C, F, H, W, 3], decoded at the requested size (JPEG draft decoding, then a box
  filter), with intrinsics scaled the same way (pixel centres stay pixel centres, as `Rig.scaled`);
- camera-to-world poses [C, F, 4, 4]. PandaSet's camera poses are camera-to-world with the camera
  frame in the OpenCV convention (x right, y down, z forward): its devkit projects a world point
  with K @ (inverse(pose) @ p) and keeps z > 0. The world frame is the sequence's local frame,
  z up (cuboids carry only a yaw about z);
- per-frame cuboids [M, 7] (x, y, z, dx, dy, dz, yaw) in the world frame with their labels. The
  box corners are (+-dx/2, +-dy/2, +-dz/2) rotated by yaw about z, as in the devkit.
- lidar points per frame (`lidar_points`) when the sequence has them (`lidar/NN.pkl.gz`, world x,y,z).

Bad input is an `ImportDataError` naming the file: a missing or truncated image, an image whose
size differs from its camera's other images, intrinsics whose principal point does not fall in
the middle half of the image (calibration for another image size), missing pose files or pose
lists shorter than the frames asked for; and a `MemoryError` before decoding when the images asked
for would not fit in memory (`max_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drivesim.core import safe_pickle
from drivesim.io.errors import ImportDataError

CAMERAS = ("front", "front_left", "front_right", "left", "right", "back")
FULL_SIZE = (1920, 1080)  # PandaSet's camera images, (width, height)


@dataclass(frozen=True)
class PandaSetSequence:
    root: Path
    cameras: tuple[str, ...]
    frames: tuple[int, ...]
    width: int
    height: int
    images: torch.Tensor  # [C, F, H, W, 3] uint8
    K: torch.Tensor  # [C, 3, 3] at (width, height)
    cam_to_world: torch.Tensor  # [C, F, 4, 4] float64, OpenCV camera frame
    timestamps: torch.Tensor  # [C, F] float64, seconds
    boxes: list[torch.Tensor]  # per frame [M, 7] (x, y, z, dx, dy, dz, yaw), world frame, float64
    labels: list[list[str]]  # per frame, M labels
    lidar_to_world: torch.Tensor  # [F, 4, 4] float64
    files: list[Path] = field(default_factory=list)  # every file read, for the data hash

    def data_hash(self) -> str:
        """sha256 over the names and bytes of every file read (images, calibration, poses, cuboids)."""
        h = hashlib.sha256()
        for f in sorted(self.files):
            h.update(str(f.relative_to(self.root)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()

    def ego_left(self, frame_index: int) -> torch.Tensor:
        """Unit vector [3] to the ego's left at a frame (index into `frames`), horizontal: z up x
        the front camera's optical axis (or the first camera's when there is no front camera)."""
        c = self.cameras.index("front") if "front" in self.cameras else 0
        fwd = self.cam_to_world[c, frame_index, :3, 2].clone()
        fwd[2] = 0.0
        fwd = fwd / fwd.norm().clamp_min(1e-9)
        return torch.stack([-fwd[1], fwd[0], torch.zeros_like(fwd[0])])


def _read_json(path: Path):
    if not path.is_file():
        raise ImportDataError(f"{path}: missing (expected a PandaSet devkit sequence folder)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportDataError(f"{path}: not valid JSON ({exc})") from None


def pose_matrix(pose: dict) -> np.ndarray:
    """PandaSet {'position': {x,y,z}, 'heading': {w,x,y,z}} -> 4x4 (sensor-to-world)."""
    q = np.array([pose["heading"][k] for k in "wxyz"], dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = [pose["position"][k] for k in "xyz"]
    return m


def scaled_intrinsics(intr: dict, full: tuple[int, int], size: tuple[int, int], where: str) -> np.ndarray:
    """3x3 K at `size` from PandaSet intrinsics at `full`; an error if the principal point is not in
    the middle half of the image (the calibration then belongs to another image size)."""
    try:
        fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "cx", "cy"))
    except (KeyError, TypeError, ValueError):
        raise ImportDataError(f"{where}: intrinsics need numbers fx, fy, cx, cy, got {intr!r}") from None
    fw, fh = full
    if not (0.25 * fw < cx < 0.75 * fw and 0.25 * fh < cy < 0.75 * fh and fx > 0 and fy > 0):
        raise ImportDataError(f"{where}: intrinsics (cx={cx:.1f}, cy={cy:.1f}, fx={fx:.1f}) do not match "
                              f"{fw}x{fh} images: the principal point should lie near the image centre")
    sx, sy = size[0] / fw, size[1] / fh
    return np.array([[fx * sx, 0, (cx + 0.5) * sx - 0.5], [0, fy * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]])


def read_image(path: Path, size: tuple[int, int], full: tuple[int, int] | None = None) -> np.ndarray:
    """[H, W, 3] uint8 at `size`; ImportDataError when missing, unreadable, truncated or not `full`."""
    from PIL import Image

    if not path.is_file():
        raise ImportDataError(f"{path}: image missing")
    try:
        with Image.open(path) as img:
            if full is not None and img.size != tuple(full):
                raise ImportDataError(f"{path}: image is {img.size[0]}x{img.size[1]}, but the camera's "
                                      f"calibration and other images are {full[0]}x{full[1]}")
            img.draft("RGB", size)  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that is enough
            img.load()  # raises OSError on truncated data
            rgb = img.convert("RGB")
            if rgb.size != tuple(size):
                rgb = rgb.resize(size, Image.Resampling.BOX if rgb.size[0] >= size[0] else Image.Resampling.BICUBIC)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except ImportDataError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImportDataError(f"{path}: corrupt or unreadable image ({exc})") from None


def read_cuboids(path: Path) -> tuple[np.ndarray, list[str]]:
    """[M, 7] (x, y, z, dx, dy, dz, yaw) and labels from a PandaSet cuboid pickle (a pandas
    DataFrame, read through the restricted unpickler: drivesim.core.safe_pickle)."""
    if not path.is_file():
        raise ImportDataError(f"{path}: cuboid annotations missing")
    try:
        df = safe_pickle.load_dataframe(path)
        cols = ["position.x", "position.y", "position.z", "dimensions.x", "dimensions.y", "dimensions.z", "yaw"]
        return np.array(df[cols].to_numpy(dtype=np.float64)), [str(s) for s in df["label"]]
    except Exception as exc:  # a garbled or foreign pickle raises almost anything
        raise ImportDataError(f"{path}: unreadable cuboid pickle ({type(exc).__name__}: {exc})") from None


def lidar_points(root, frame: int) -> np.ndarray:
    """[N, 3] world-frame lidar points of a frame (`lidar/NN.pkl.gz`, columns x, y, z; a pandas
    DataFrame read through the restricted unpickler)."""
    path = Path(root) / "lidar" / f"{frame:02d}.pkl.gz"
    if not path.is_file():
        raise ImportDataError(f"{path}: no lidar point cloud in this sequence folder")
    try:
        return safe_pickle.load_dataframe(path)[["x", "y", "z"]].to_numpy(dtype=np.float64)
    except Exception as exc:  # a garbled or foreign pickle raises almost anything
        raise ImportDataError(f"{path}: unreadable lidar pickle ({type(exc).__name__}: {exc})") from None



def has_lidar_points(root) -> bool:
    return any((Path(root) / "lidar").glob("[0-9][0-9].pkl.gz"))


def _frame_count(root: Path, cameras) -> int:
    return len(_read_json(root / "camera" / f"{cameras[0]}_camera" / "poses.json"))


def _poses(path: Path, frames, where: str) -> np.ndarray:
    poses = _read_json(path)
    if not isinstance(poses, list) or len(poses) <= max(frames):
        n = len(poses) if isinstance(poses, list) else 0
        raise ImportDataError(f"{where}: {n} poses, but frame {max(frames)} was asked for")
    try:
        return np.stack([pose_matrix(poses[f]) for f in frames])
    except (KeyError, TypeError) as exc:
        raise ImportDataError(f"{where}: malformed pose ({exc!r}); expected position {{x,y,z}} and "
                              "heading {w,x,y,z}") from None


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def load(root, size: tuple[int, int] = (240, 135), cameras=None, frames=None,
         max_bytes: int | None = None) -> PandaSetSequence:
    """A PandaSet sequence folder at image size `size` = (W, H); all cameras and frames by default."""
    root = Path(root)
    if not (root / "camera").is_dir():
        raise ImportDataError(f"{root}: not a PandaSet sequence folder (no camera/ inside)")
    cameras = tuple(cameras or CAMERAS)
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown:
        raise ImportDataError(f"unknown PandaSet cameras {unknown}; known: {', '.join(CAMERAS)}")
    frames = tuple(range(_frame_count(root, cameras))) if frames is None else tuple(int(f) for f in frames)
    w, h = int(size[0]), int(size[1])
    need = len(cameras) * len(frames) * w * h * 3
    limit = max_bytes if max_bytes is not None else available_memory() // 2
    if need > limit:
        raise MemoryError(f"{len(cameras)} cameras x {len(frames)} frames at {w}x{h} need {need / 2**30:.1f} GiB "
                          f"of image memory, more than the {limit / 2**30:.1f} GiB allowed: use a smaller --size, "
                          "fewer cameras or fewer frames")
    images = np.empty((len(cameras), len(frames), h, w, 3), dtype=np.uint8)
    Ks, c2w, stamps, files = [], [], [], []
    for ci, cam in enumerate(cameras):
        cdir = root / "camera" / f"{cam}_camera"
        Ks.append(scaled_intrinsics(_read_json(cdir / "intrinsics.json"), FULL_SIZE, (w, h), str(cdir / "intrinsics.json")))
        c2w.append(_poses(cdir / "poses.json", frames, str(cdir / "poses.json")))
        ts = _read_json(cdir / "timestamps.json")
        stamps.append([float(ts[f]) for f in frames])
        files += [cdir / n for n in ("intrinsics.json", "poses.json", "timestamps.json")]
        for fi, f in enumerate(frames):
            images[ci, fi] = read_image(cdir / f"{f:02d}.jpg", (w, h), FULL_SIZE)
            files.append(cdir / f"{f:02d}.jpg")
    boxes, labels = [], []
    for f in frames:
        path = root / "annotations" / "cuboids" / f"{f:02d}.pkl.gz"
        b, lab = read_cuboids(path)
        boxes.append(torch.from_numpy(b))
        labels.append(lab)
        files.append(path)
    lidar = _poses(root / "lidar" / "poses.json", frames, str(root / "lidar" / "poses.json"))
    files.append(root / "lidar" / "poses.json")
    return PandaSetSequence(root, cameras, frames, w, h, torch.from_numpy(images),
                            torch.tensor(np.stack(Ks), dtype=torch.float32), torch.from_numpy(np.stack(c2w)),
                            torch.tensor(stamps, dtype=torch.float64), boxes, labels, torch.from_numpy(lidar), files)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """[M, 8, 3] world corners of cuboids [M, 7] (x, y, z, dx, dy, dz, yaw); corner k has signs of bits."""
    signs = torch.tensor([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=boxes.dtype) * 2 - 1
    local = signs[None] * boxes[:, None, 3:6] / 2  # [M, 8, 3]
    c, s = torch.cos(boxes[:, 6])[:, None], torch.sin(boxes[:, 6])[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return torch.stack([x, y, local[..., 2]], -1) + boxes[:, None, :3]
