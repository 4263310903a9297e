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

RIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "rigs"


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
        unknown = set(d) - {"source", "width", "height", "cameras"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            cams = d["cameras"]
            return Rig(tuple(c["name"] for c in cams),
                       torch.tensor([c["K"] for c in cams], dtype=torch.float32),
                       torch.tensor([c["cam_to_ego"] for c in cams], dtype=torch.float32),
                       int(d["width"]), int(d["height"]), d.get("source", ""))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: malformed rig ({exc!r}); expected width, height and cameras "
                             "[{name, K (3x3), cam_to_ego (4x4)}]") from None

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))
        return path


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
