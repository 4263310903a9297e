"""Camera observations for a policy, by name: the one place the CLI, the gym env and the trainers
make the renderer a camera-reading policy sees.

`make_cameras(CameraConfig(kind="splat" | "refined", rig=..., size=(W, H)))` gives a renderer
(state, batch) -> [B, C, H, W, 3] float RGB in [0, 1], as `rollout(..., cameras=...)` and
`sim.observation.Observation.cameras` take it:
- `splat`: the rig's cameras over the Gaussian scene of each state (render/splat/sensors.py);
- `refined`: those frames refined by the action-conditioned diffusion refiner
  (render/refiner/cameras.py), with the shipped checkpoint `policies/refiner` unless another is named.
`camera_matrices(cameras)` gives the rig's intrinsics [C, 3, 3] (at the rendered size) and
camera-to-ego extrinsics [C, 4, 4] that a policy may take as inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivesim.core.config import ConfigError
from drivesim.render.splat.sensors import to_uint8  # noqa: F401 - the conversion callers of this module use

CAMERA_KINDS = ("splat", "refined")
DEFAULT_REFINER = Path(__file__).resolve().parents[2] / "policies" / "refiner"


@dataclass(frozen=True)
class CameraConfig:
    kind: str = "splat"  # splat | refined
    rig: str = "nuscenes"  # a rig name (configs/rigs) or a rig YAML path
    size: tuple[int, int] = (112, 64)  # (width, height) of each camera image
    refiner: str | None = None  # refined only: the checkpoint (default: the shipped policies/refiner)
    refiner_steps: int | None = None  # refined only: sampler steps (default: the checkpoint's)
    seed: int = 0  # refined only: the sampler's noise seed

    def validate_config(self, where: str = "cameras") -> None:
        if self.kind not in CAMERA_KINDS:
            raise ConfigError(f"{where}.kind: got {self.kind!r}; expected one of {', '.join(CAMERA_KINDS)}")
        w, h = self.size
        if not (isinstance(w, int) and isinstance(h, int) and 16 <= w <= 4096 and 16 <= h <= 4096):
            raise ConfigError(f"{where}.size: got {self.size!r}; expected (width, height) in pixels, 16..4096")
        if self.kind == "refined" and (w % 8 or h % 8):
            raise ConfigError(f"{where}.size: the refiner needs width and height divisible by 8, got {w}x{h}")


def make_cameras(config: CameraConfig | str):
    """The renderer `config` names (a CameraConfig, or just its kind); errors name the bad field."""
    from drivesim.render.splat.camera import load_rig
    from drivesim.render.splat.sensors import SplatCameras

    config = CameraConfig(kind=config) if isinstance(config, str) else config
    config.validate_config()
    try:
        rig = load_rig(config.rig)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"cameras.rig: {exc}") from None
    splat = SplatCameras(rig, *config.size)
    if config.kind == "splat":
        return splat
    from drivesim.render.refiner.cameras import RefinedCameras
    from drivesim.render.refiner.train import load_refiner

    refiner = load_refiner(config.refiner or DEFAULT_REFINER)
    return RefinedCameras(splat, refiner, steps=config.refiner_steps, seed=config.seed,
                          rig_name=Path(config.rig).stem)


def camera_matrices(cameras) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsics [C, 3, 3], camera-to-ego extrinsics [C, 4, 4]) of a renderer's rig, float32."""
    rig = cameras.rig
    return rig.K.detach().cpu().numpy().astype(np.float32), rig.cam_to_ego.detach().cpu().numpy().astype(np.float32)
