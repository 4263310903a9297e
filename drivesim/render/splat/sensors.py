"""Surround-view cameras of simulator states: splat scenes rendered through a rig.

`SplatCameras(rig, width, height)` renders the C cameras of a rig from the ego pose of one
SimState row (`render_row`), or of every row as the camera observation policies read
(`cameras(state, batch)` -> [B, C, H, W, 3]; hand it to `rollout(..., cameras=...)`). The
background of each scenario is built once from its map (scene.py) and cached; Gaussians beyond
`view_range` of the ego are left out before rasterizing. `surround_frame` tiles six images
(front-left, front, front-right over back-left, back, back-right) beside a BEV frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.render.splat.camera import Rig
from drivesim.render.splat.gaussians import Gaussians
from drivesim.render.splat.scene import SKY, SceneConfig, build_background, compose


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[..., H, W, 3] float RGB in [0, 1] -> uint8 numpy, rounded."""
    return (images.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class CameraImages:
    """The C images of one row, in rig order."""

    rgb: torch.Tensor  # [C, H, W, 3] float in [0, 1]
    depth: torch.Tensor  # [C, H, W] m along the optical axis (0 where nothing was hit)
    alpha: torch.Tensor  # [C, H, W]
    agent_id: torch.Tensor  # [C, H, W] int64 agent slot, -1 = background / none
    names: tuple[str, ...] = ()

    def uint8(self) -> np.ndarray:
        """[C, H, W, 3] uint8 RGB."""
        return to_uint8(self.rgb)


class SplatCameras:
    """The rig's cameras over Gaussian scenes of simulator states.

    rig: a Rig (rescaled to width x height when given); scene: the background's config (default:
    density from the image width, 0.5 at 200 px up to 1 at 400 px and more: small images need
    fewer Gaussians); render_fn: the rasterizer with the signature of
    `drivesim.render.splat.rasterize.render` (default: that function, with `backend`).
    """

    def __init__(self, rig: Rig, width: int | None = None, height: int | None = None, *, scene: SceneConfig | None = None,
                 view_range: float = 80.0, backend: str = "auto", render_fn=None, device=None):
        if width is not None or height is not None:
            w = width or round(rig.width * height / rig.height)
            h = height or round(rig.height * width / rig.width)
            rig = rig.scaled(w, h)
        scene = scene or SceneConfig(density=min(1.0, max(0.5, rig.width / 400)))
        self.rig, self.scene, self.view_range, self.backend = rig, scene, view_range, backend
        self._render = render_fn
        self.device = torch.device(device) if device is not None else None
        self._backgrounds: dict[tuple, tuple[object, Gaussians]] = {}
        self._warned: set[str] = set()

    @property
    def width(self) -> int:
        return self.rig.width

    @property
    def height(self) -> int:
        return self.rig.height

    def background(self, scenario) -> Gaussians:
        """The cached background of a scenario's map (seeded by the scenario's seed)."""
        key = (id(scenario.road), int(scenario.seed))
        if key not in self._backgrounds:  # the road is kept in the value so that its id stays unique
            bg = build_background(scenario.road, self.scene, seed=int(scenario.seed))
            self._backgrounds[key] = (scenario.road, bg.to(self.device) if self.device is not None else bg)
        return self._backgrounds[key][1]

    def _cull(self, g: Gaussians, x: float, y: float) -> Gaussians:
        """Gaussians within view_range of (x, y), the large ones (far ground) a little further."""
        d = torch.hypot(g.means[:, 0] - x, g.means[:, 1] - y)
        return g.index(d < self.view_range + 10.0 * g.scales.amax(dim=1))

    def render_scene(self, scene: Gaussians, x: float, y: float, yaw: float) -> CameraImages:
        """The rig's images of a Gaussian scene from the ego pose (x, y, yaw)."""
        render = self._render
        if render is None:
            from drivesim.render.splat.rasterize import render
        scene = self._cull(scene, x, y)
        viewmats = self.rig.viewmats(x, y, yaw).to(scene.device)
        backend = "torch" if self.backend == "auto" and scene.device.type != "cuda" else self.backend  # CPU: no choice
        out = render(scene, viewmats, self.rig.render_Ks.to(scene.device), self.width, self.height,
                     backend=backend, background=torch.tensor(SKY, device=scene.device))
        images = CameraImages(out.rgb, out.depth, out.alpha, out.agent_id, self.rig.names)
        self._check_empty(images, x, y, yaw)
        return images

    def render_row(self, background: Gaussians, state, b: int) -> CameraImages:
        """The images of SimState row b: its agents over `background`, seen from its ego (agent 0)."""
        scene = compose(background, state, b)
        return self.render_scene(scene, float(state.x[b, 0]), float(state.y[b, 0]), float(state.yaw[b, 0]))

    def __call__(self, state, batch) -> torch.Tensor:
        """The camera observation of every row: [B, C, H, W, 3] float RGB in [0, 1]."""
        rows = [self.render_row(self.background(batch.scenarios[b]), state, b).rgb for b in range(state.batch_size)]
        return torch.stack(rows).to(state.device)

    def _check_empty(self, images: CameraImages, x: float, y: float, yaw: float) -> None:
        """Warn (once per camera) when a camera sees nothing opaque: never a silent empty frame."""
        seen = images.alpha.flatten(1).amax(dim=1) >= 0.5  # something opaque somewhere
        for name, ok in zip(self.rig.names, seen.tolist()):
            if not ok and name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"camera {name} sees nothing of the scene from ego pose ({x:.1f}, {y:.1f}, yaw "
                              f"{yaw:.2f} rad): its frame is only the sky colour (check the rig extrinsics and the map)",
                              RuntimeWarning, stacklevel=3)


def _resize_nearest(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    rows = np.minimum((np.arange(height) * h / height).astype(int), h - 1)
    cols = np.minimum((np.arange(width) * w / width).astype(int), w - 1)
    return img[rows][:, cols]


def surround_frame(images, bev: np.ndarray | None = None, names=None, gap: int = 2) -> np.ndarray:
    """One uint8 frame: the cameras in two rows (rig layout order: the front row left to right,
    then the back row) with the BEV frame (resized to the grid height) on the right.

    images: [C, H, W, 3] uint8 (or CameraImages); names: labels drawn in each tile's corner.
    """
    if isinstance(images, CameraImages):
        names = names if names is not None else images.names
        images = images.uint8()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be [C, H, W, 3] uint8, got {images.dtype} {images.shape}")
    C, H, W, _ = images.shape
    cols = (C + 1) // 2
    grid = np.full((2 * H + gap, cols * W + (cols - 1) * gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (H + gap): r * (H + gap) + H, c * (W + gap): c * (W + gap) + W] = img
    if names:
        grid = _label(grid, [(c * (W + gap) + 2, r * (H + gap) + 1, str(n)) for (r, c), n in
                             ((divmod(i, cols), n) for i, n in enumerate(names))])
    if bev is None:
        return grid
    bev = _resize_nearest(np.asarray(bev, np.uint8), grid.shape[0])
    return np.concatenate([grid, np.full((grid.shape[0], gap, 3), 255, np.uint8), bev], axis=1)


def _label(img: np.ndarray, labels) -> np.ndarray:
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for x, y, text in labels:
        draw.text((x, y), text.replace("CAM_", "").replace("_camera", "").lower(), fill=(255, 255, 255))
    return np.asarray(pil)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), e.g. '200x112'."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"image size must be WIDTHxHEIGHT (e.g. 200x112), got {text!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"image size must be at least 16x16, got {w}x{h}")
    return w, h


class TrajectoryStep:
    """The agent fields of step k of a recorded trajectory dict ([T, B, A] arrays) as the [B, A]
    tensors a simulation state has: what `compose` reads, and the ego's speed, acceleration and
    steering where the recording has them (what the refiner's action reads)."""

    FIELDS = ("x", "y", "yaw", "length", "width", "agent_type", "valid")
    OPTIONAL = ("speed", "accel", "steer")

    def __init__(self, traj: dict, k: int):
        for name in self.FIELDS + tuple(n for n in self.OPTIONAL if n in traj):
            setattr(self, name, torch.as_tensor(np.asarray(traj[name][k])).clone())


def surround_frames(scenario, traj: dict, rig="nuscenes", size=(200, 112), b: int = 0, every: int = 1,
                    steps: int | None = None, cameras: SplatCameras | None = None) -> list[np.ndarray]:
    """Surround-view frames (six cameras beside the BEV) of row b of a recorded trajectory
    ([T, B, A] arrays, e.g. RolloutResult.trajectory): every `every`-th step, the first `steps`."""
    from drivesim.render.bev import render_frames
    from drivesim.render.splat.camera import load_rig

    if cameras is None:
        w, h = parse_size(size) if isinstance(size, str) else size
        cameras = SplatCameras(load_rig(rig) if isinstance(rig, str) else rig, w, h)
    T = len(traj["x"]) if steps is None else min(steps + 1, len(traj["x"]))
    ks = list(range(0, T, every))
    sub = {k: np.asarray(v)[ks] for k, v in traj.items() if np.ndim(v) == 3}
    rows = (len(cameras.rig) + 1) // 2
    bev_h = rows * cameras.height + (rows - 1) * 2
    bev = render_frames(scenario, sub, b, view="ego", size=(max(16, round(bev_h * 4 / 3)), max(16, bev_h)),
                        dt=scenario.dt * every, window=60.0)
    background = cameras.background(scenario)
    frames = []
    for i, k in enumerate(ks):
        images = cameras.render_row(background, TrajectoryStep(traj, k), b)
        frames.append(surround_frame(images, bev[i]))
    return frames


def write_surround_video(scenario, traj: dict, path, rig="nuscenes", size=(200, 112), every: int = 1,
                         steps: int | None = None, fps: float | None = None):
    """A surround-view video (.mp4 or .gif) of row 0 of a trajectory; returns the path."""
    from drivesim.render.bev import write_video

    frames = surround_frames(scenario, traj, rig, size, every=every, steps=steps)
    return write_video(frames, path, fps=fps or 1.0 / (scenario.dt * every))
