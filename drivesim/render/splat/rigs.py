"""Camera rigs from real calibrations: nuScenes (mmdetection3d info pickle) and PandaSet.

Both loaders return a `Rig` (camera.py) in the ego frame the simulator uses (x forward, y left,
z up, origin on the ground), its cameras in surround layout order: the front row left to right,
then the back row left to right (nuScenes: FRONT_LEFT, FRONT, FRONT_RIGHT, BACK_LEFT, BACK,
BACK_RIGHT). `tools/make_rigs.py` writes them to configs/rigs/*.yaml.

- nuScenes: `cam2img` and `cam2ego` per camera, as given; nuScenes' ego frame is already x
  forward, y left, z up on the ground (under the rear axle).
- PandaSet: per-camera world poses (position + quaternion w, x, y, z, sensor-to-world) and the
  lidar poses; camera-to-lidar = inverse(lidar pose) @ camera pose at one frame. The lidar frame
  is turned so that x points along the ego's motion over the sequence (PandaSet's lidar looks
  along +y), and z = 0 is put on the ground, estimated as the median bottom of the annotated
  cuboids within 20 m at that frame.

Both sources are pickles (the info file, the cuboid DataFrames): they are read through
drivesim.core.safe_pickle's allow-list, never with plain `pickle.load` / `pd.read_pickle`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from drivesim.core import safe_pickle
from drivesim.render.splat.camera import Rig

NUSCENES_CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
NUSCENES_IMAGE_SIZE = (1600, 900)
PANDASET_CAMERAS = ("front_camera", "front_left_camera", "front_right_camera", "left_camera", "right_camera", "back_camera")
PANDASET_IMAGE_SIZE = (1920, 1080)


def camera_yaws(rig: Rig) -> torch.Tensor:
    """[C] heading (rad, left positive) of each camera's optical axis in the ego frame."""
    axis = rig.cam_to_ego[:, :3, 2]
    return torch.atan2(axis[:, 1], axis[:, 0])


def layout_order(cam_to_ego: np.ndarray) -> list[int]:
    """Camera indices in surround layout order: the half with the most forward-looking axes
    left to right, then the rest left to right as seen from behind (left, back, right)."""
    axis = cam_to_ego[:, :3, 2]
    yaw = np.arctan2(axis[:, 1], axis[:, 0])
    by_forward = np.argsort(-np.cos(yaw), kind="stable")
    n_front = (len(yaw) + 1) // 2
    front, back = by_forward[:n_front], by_forward[n_front:]
    front = sorted(front, key=lambda i: -yaw[i])  # left (+yaw) first
    back = sorted(back, key=lambda i: yaw[i] % (2 * math.pi))  # left (90 deg), back (180), right (270)
    return [int(i) for i in (*front, *back)]


def _image_sizes(paths: list[Path]) -> set[tuple[int, int]]:
    from PIL import Image

    sizes = set()
    for p in paths:
        with Image.open(p) as im:
            sizes.add(im.size)
    return sizes


def _check_image_size(where: str, paths: list[Path], size: tuple[int, int]) -> None:
    """A clear error when the images beside a calibration are not `size` (width, height)."""
    found = _image_sizes([p for p in paths if p.exists()])
    bad = sorted(s for s in found if s != tuple(size))
    if bad:
        raise ValueError(f"{where}: the calibration is for {size[0]}x{size[1]} images but the images are "
                         f"{', '.join(f'{w}x{h}' for w, h in bad)}; pass image_size=(width, height) of the images")


def _check_principal_points(where: str, K: np.ndarray, size: tuple[int, int]) -> None:
    w, h = size
    for i, k in enumerate(K):
        if not (k[0, 0] > 0 and k[1, 1] > 0 and 0 <= k[0, 2] <= w and 0 <= k[1, 2] <= h):
            raise ValueError(f"{where}: camera {i} intrinsics {k[:2].tolist()} do not fit a {w}x{h} image "
                             "(focal lengths must be positive, the principal point inside the image)")


def _rig(names, K, cam_to_ego, size, source) -> Rig:
    order = layout_order(cam_to_ego)
    return Rig(tuple(names[i] for i in order), torch.tensor(K[order], dtype=torch.float32),
               torch.tensor(cam_to_ego[order], dtype=torch.float32), int(size[0]), int(size[1]), source)


def rig_from_nuscenes_info(path, image_size: tuple[int, int] = NUSCENES_IMAGE_SIZE, sample: int = 0) -> Rig:
    """The six nuScenes cameras of an mmdetection3d info pickle (`data_list[sample]['images']`).

    image_size is the (width, height) the intrinsics belong to; images named in the pickle that
    sit beside it must have that size.
    """
    path = Path(path)
    try:
        info = safe_pickle.load_file(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # a garbled or foreign pickle raises almost anything
        raise ValueError(f"{path}: not a readable nuScenes info pickle ({type(exc).__name__}: {exc})") from None
    try:
        images = info["data_list"][sample]["images"]
        K = np.array([np.asarray(images[c]["cam2img"], float)[:3, :3] for c in NUSCENES_CAMERAS])
        cam_to_ego = np.array([np.asarray(images[c]["cam2ego"], float) for c in NUSCENES_CAMERAS])
        files = [path.parent / images[c]["img_path"] for c in NUSCENES_CAMERAS]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not an mmdetection3d nuScenes info pickle with the six cameras "
                         f"{list(NUSCENES_CAMERAS)} (cam2img 3x3, cam2ego 4x4): {exc!r}") from None
    _check_principal_points(str(path), K, image_size)
    _check_image_size(str(path), files, image_size)
    return _rig(NUSCENES_CAMERAS, K, cam_to_ego, image_size, f"nuScenes calibration ({path.name}, sample {sample})")


def pose_matrix(pose: dict) -> np.ndarray:
    """Sensor-to-world [4, 4] of a PandaSet pose {position: {x,y,z}, heading: {w,x,y,z}}."""
    from scipy.spatial.transform import Rotation

    q, t = pose["heading"], pose["position"]
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([q["x"], q["y"], q["z"], q["w"]]).as_matrix()  # scipy: (x, y, z, w)
    m[:3, 3] = [t["x"], t["y"], t["z"]]
    return m


def _pandaset_ego_from_lidar(lidar_poses: list[np.ndarray], frame: int) -> np.ndarray:
    """Rotation about z [4, 4] taking the lidar frame at `frame` to x = the ego's direction of
    motion over the sequence (snapped to the nearest quarter turn: the lidar is mounted square)."""
    rel = np.linalg.inv(lidar_poses[frame]) @ lidar_poses[-1]
    dx, dy = rel[0, 3], rel[1, 3]
    if math.hypot(dx, dy) < 2.0:
        raise ValueError("PandaSet sequence: the ego moves less than 2 m, so its forward axis cannot be found")
    heading = math.atan2(dy, dx)
    snapped = round(heading / (math.pi / 2)) * (math.pi / 2)
    if abs(heading - snapped) > math.radians(15):
        raise ValueError(f"PandaSet sequence: the ego moves at {math.degrees(heading):.1f} deg in the lidar frame, "
                         "not along one of its axes")
    c, s = math.cos(-snapped), math.sin(-snapped)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def _pandaset_ground_z(seq: Path, lidar_pose: np.ndarray, frame: int, radius: float = 20.0) -> float:
    """Ground height in the lidar frame: median bottom of the annotated cuboids within `radius`."""
    path = seq / "annotations" / "cuboids" / f"{frame:02d}.pkl.gz"
    if not path.exists():
        raise ValueError(f"{path} is missing: it is needed to find the ground under the PandaSet lidar")
    try:
        df = safe_pickle.load_dataframe(path)
        xyz1 = np.c_[df["position.x"], df["position.y"], df["position.z"], np.ones(len(df))] @ np.linalg.inv(lidar_pose).T
        bottom = df["dimensions.z"].to_numpy(dtype=np.float64) / 2
    except Exception as exc:  # a garbled or foreign pickle raises almost anything
        raise ValueError(f"{path}: not a readable PandaSet cuboid pickle ({type(exc).__name__}: {exc})") from None
    near = np.hypot(xyz1[:, 0], xyz1[:, 1]) < radius
    if near.sum() < 3:
        raise ValueError(f"{path}: fewer than 3 cuboids within {radius:g} m to find the ground from")
    return float(np.median(xyz1[near, 2] - bottom[near]))


def rig_from_pandaset(seq, image_size: tuple[int, int] = PANDASET_IMAGE_SIZE, frame: int = 0) -> Rig:
    """The six PandaSet cameras of a sequence folder (camera/<cam>/{intrinsics,poses}.json,
    lidar/poses.json, annotations/cuboids), in the ego frame described in the module docstring."""
    seq = Path(seq)
    try:
        lidar = [pose_matrix(p) for p in json.loads((seq / "lidar" / "poses.json").read_text())]
        K, lidar_from_cam, files = [], [], []
        for cam in PANDASET_CAMERAS:
            d = seq / "camera" / cam
            intr = json.loads((d / "intrinsics.json").read_text())
            K.append([[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]], [0.0, 0.0, 1.0]])
            pose = pose_matrix(json.loads((d / "poses.json").read_text())[frame])
            lidar_from_cam.append(np.linalg.inv(lidar[frame]) @ pose)
            files.append(d / f"{frame:02d}.jpg")
    except (OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{seq}: not a PandaSet sequence with cameras {list(PANDASET_CAMERAS)} "
                         f"(intrinsics.json, poses.json) and lidar/poses.json: {exc!r}") from None
    K = np.asarray(K)
    _check_principal_points(str(seq), K, image_size)
    _check_image_size(str(seq), files, image_size)
    ego_from_lidar = _pandaset_ego_from_lidar(lidar, frame)
    ego_from_lidar[2, 3] = -_pandaset_ground_z(seq, lidar[frame], frame)
    cam_to_ego = np.array([ego_from_lidar @ m for m in lidar_from_cam])
    return _rig(PANDASET_CAMERAS, K, cam_to_ego, image_size, f"PandaSet calibration ({seq.name}, frame {frame})")
