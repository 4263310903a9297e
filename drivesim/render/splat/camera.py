"""Pinhole cameras and surround-view rigs.

A rig is C pinhole cameras: intrinsics K [C, 3, 3] at one image size and camera-to-ego extrinsics
[C, 4, 4]. Frames: the ego frame is x forward, y left, z up, origin on the ground under the
simulator's ego pose; cameras use the OpenCV convention (x right, y down, z forward), as gsplat
does. `viewmats` turns an ego pose into the world-to-camera matrices the rasterizers take.
Rigs are YAML files under configs/rigs/ (`load_rig`), written from real calibrations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

RIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "rigs"


@dataclass(frozen=True)
class Rig:
    names: tuple[str, ...]
    K: torch.Tensor  # [C, 3, 3] at (width, height)
    cam_to_ego: torch.Tensor  # [C, 4, 4]
    width: int
    height: int
    source: str = ""  # where the calibration came from

    def __post_init__(self):
        c = len(self.names)
        if tuple(self.K.shape) != (c, 3, 3) or tuple(self.cam_to_ego.shape) != (c, 4, 4):
            raise ValueError(f"rig with {c} cameras needs K [{c},3,3] and cam_to_ego [{c},4,4], "
                             f"got {tuple(self.K.shape)} and {tuple(self.cam_to_ego.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"rig image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return len(self.names)

    def scaled(self, width: int, height: int) -> "Rig":
        """The same rig at another image size: focal lengths and principal points scale with it."""
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[:, 0, 0] *= sx
        K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5  # pixel centres stay pixel centres
        K[:, 1, 1] *= sy
        K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
        return Rig(self.names, K, self.cam_to_ego.clone(), int(width), int(height), self.source)

    @property
    def render_Ks(self) -> torch.Tensor:
        """K for the rasterizers: the rig's K puts pixel j's centre at j (OpenCV, the calibrations'
        convention); gsplat samples pixel j at j + 0.5, so the principal point moves by half a pixel."""
        K = self.K.clone()
        K[:, :2, 2] += 0.5
        return K

    def viewmats(self, x, y, yaw, z=0.0) -> torch.Tensor:
        """World-to-camera [..., C, 4, 4] for ego poses x, y, yaw (scalars or tensors of one shape)."""
        ego_to_world = ego_pose_matrix(x, y, yaw, z, dtype=self.cam_to_ego.dtype)
        cam_to_world = ego_to_world.unsqueeze(-3) @ self.cam_to_ego.to(ego_to_world.device)
        return torch.linalg.inv(cam_to_world)

    def to_dict(self) -> dict:
        return {"source": self.source, "width": self.width, "height": self.height,
                "cameras": [{"name": n, "K": k.tolist(), "cam_to_ego": e.tolist()}
                            for n, k, e in zip(self.names, self.K, self.cam_to_ego)]}

    @staticmethod
    def from_dict(d: dict, where: str = "rig") -> "Rig":
        """A rig from its YAML dict; wrong keys, shapes or values are errors naming `where`."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a rig must be a mapping with width, height and cameras, got {type(d).__name__}")
        unknown = set(d) - {"source", "width", "height", "cameras"}
        missing = {"width", "height", "cameras"} - set(d)
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; expected "
                             "width, height, cameras [{name, K (3x3), cam_to_ego (4x4)}] and optionally source")
        cams = d["cameras"]
        if not isinstance(cams, list) or not cams:
            raise ValueError(f"{where}: cameras must be a non-empty list")
        Ks, exts = [], []
        for i, c in enumerate(cams):
            at = f"{where}: cameras[{i}]"
            if not isinstance(c, dict) or set(c) != {"name", "K", "cam_to_ego"}:
                got = sorted(c) if isinstance(c, dict) else type(c).__name__
                raise ValueError(f"{at} must have exactly the keys name, K, cam_to_ego, got {got}")
            Ks.append(_matrix(c["K"], (3, 3), f"{at}.K"))
            exts.append(_matrix(c["cam_to_ego"], (4, 4), f"{at}.cam_to_ego"))
            _check_camera(Ks[-1], exts[-1], at)
        try:
            width, height = int(d["width"]), int(d["height"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: width and height must be integers, got {d['width']!r}, {d['height']!r}") from None
        return Rig(tuple(str(c["name"]) for c in cams), torch.stack(Ks), torch.stack(exts), width, height,
                   str(d.get("source", "")))

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))
        return path


def _matrix(value, shape: tuple[int, int], where: str) -> torch.Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError):
        m = None
    if m is None or tuple(m.shape) != shape or not torch.isfinite(m).all():
        got = tuple(m.shape) if m is not None else "a ragged or non-numeric list"
        raise ValueError(f"{where} must be a finite {shape[0]}x{shape[1]} matrix, got {got}")
    return m


def _check_camera(K: torch.Tensor, cam_to_ego: torch.Tensor, where: str) -> None:
    if not (K[0, 0] > 0 and K[1, 1] > 0) or K[2].tolist() != [0.0, 0.0, 1.0]:
        raise ValueError(f"{where}.K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
    R = cam_to_ego[:3, :3].double()
    if cam_to_ego[3].tolist() != [0.0, 0.0, 0.0, 1.0] or not torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-3):
        raise ValueError(f"{where}.cam_to_ego must be a rigid transform (rotation + translation, last row 0 0 0 1)")


def load_rig(name_or_path: str, width: int | None = None, height: int | None = None) -> Rig:
    """A rig by name (configs/rigs/NAME.yaml: nuscenes, pandaset) or path, optionally rescaled."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in RIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no rig {name_or_path!r} (known rigs: {', '.join(known) or 'none'})")
    rig = Rig.from_dict(yaml.safe_load(path.read_text()), where=str(path))
    if width is not None or height is not None:
        w = width or round(rig.width * height / rig.height)
        h = height or round(rig.height * width / rig.width)
        rig = rig.scaled(w, h)
    return rig


def ego_pose_matrix(x, y, yaw, z=0.0, dtype=torch.float32) -> torch.Tensor:
    """Ego-to-world [..., 4, 4] for planar poses (yaw about z)."""
    x, y, yaw, z = (torch.as_tensor(v, dtype=dtype) for v in (x, y, yaw, z))
    x, y, yaw, z = torch.broadcast_tensors(x, y, yaw, z)
    c, s = torch.cos(yaw), torch.sin(yaw)
    m = torch.zeros(*x.shape, 4, 4, dtype=dtype, device=x.device)
    m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1] = c, -s, s, c
    m[..., 2, 2] = m[..., 3, 3] = 1.0
    m[..., 0, 3], m[..., 1, 3], m[..., 2, 3] = x, y, z
    return m


def look_rotation_opencv(yaw_in_ego: float, pitch: float = 0.0) -> torch.Tensor:
    """Camera-to-ego rotation [3, 3] of an OpenCV camera looking along ego yaw `yaw_in_ego` (rad)."""
    base = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # cam x,y,z -> ego -y,-z,x
    cy, sy, cp, sp = math.cos(yaw_in_ego), math.sin(yaw_in_ego), math.cos(pitch), math.sin(pitch)
    rz = torch.tensor([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = torch.tensor([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    return rz @ ry @ base
