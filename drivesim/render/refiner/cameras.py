"""Cameras at the refined fidelity: the splat render, then the diffusion refiner.

`RefinedCameras(splat_cameras, refiner)` has the interface of `SplatCameras` that the simulator and
the video writer use (`rig`, `width`, `height`, `background(scenario)`, `render_row(background,
state, b)`, and `(state, batch) -> [B, C, H, W, 3]` as `rollout(..., cameras=)`), so it can stand
wherever splat cameras do. Per row it keeps the previous refined frame and its camera poses; each
new frame warps it into the current view with the splat depth and the ego motion and refines the
splat render conditioned on it and on the ego action (acceleration, steering, speed, yaw change;
read from the state, or derived from the pose history when the state carries only poses, as a
recorded trajectory step does). The sampling noise is seeded by (seed, row, frame index), so the
same scenario and seed give the same frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivesim.render.refiner.model import Refiner
from drivesim.render.refiner.warp import warp_previous
from drivesim.render.refiner.data import CAMERA_OFFSETS, WHEELBASE


@dataclass
class _RowHistory:
    key: object  # what identifies the row's scenario
    frame: int  # frames refined since the row's reset
    step: int | None  # the row's simulation step when known
    viewmats: torch.Tensor  # [C, 4, 4]
    rgb: torch.Tensor  # [C, 3, H, W] refined
    pose: tuple[float, float, float]
    speed: float | None  # None: not known (the first frame of a pose-only history)


class RefinedCameras:
    """Splat cameras followed by the refiner (see the module docstring)."""

    def __init__(self, splat, refiner: Refiner, *, steps: int | None = None, seed: int = 0, rig_name: str = "nuscenes",
                 dt: float = 0.1):
        self.splat, self.refiner, self.steps, self.seed, self.dt = splat, refiner.eval(), steps, int(seed), float(dt)
        self.camera_ids = torch.arange(len(splat.rig)) + CAMERA_OFFSETS.get(rig_name, 0)
        self._rows: dict[int, _RowHistory] = {}
        self.zero_action = False  # evaluation: feed a zero action vector (the geometry must not change)

    rig = property(lambda self: self.splat.rig)
    width = property(lambda self: self.splat.width)
    height = property(lambda self: self.splat.height)

    def background(self, scenario):
        return self.splat.background(scenario)

    def reset(self) -> None:
        """Forget every row's previous frame (a new rollout)."""
        self._rows.clear()

    def _action(self, state, b: int, pose, prev: _RowHistory | None) -> tuple[torch.Tensor, float | None]:
        """([4] action, speed) of row b's ego: from the state, else from the pose history (speed and
        acceleration by finite differences; acceleration 0 until two speeds are known)."""
        x, y, yaw = pose
        dyaw = 0.0 if prev is None else (yaw - prev.pose[2] + math.pi) % (2 * math.pi) - math.pi
        if getattr(state, "speed", None) is not None and getattr(state, "accel", None) is not None:
            speed = float(state.speed[b, 0])
            return torch.tensor([float(state.accel[b, 0]), float(state.steer[b, 0]), speed, dyaw]), speed
        if prev is None:
            return torch.zeros(4), None  # one pose: the speed is not known yet
        speed = math.hypot(x - prev.pose[0], y - prev.pose[1]) / self.dt
        steer = math.atan(WHEELBASE * dyaw / self.dt / max(speed, 1.0))
        accel = 0.0 if prev.speed is None else (speed - prev.speed) / self.dt
        return torch.tensor([accel, steer, speed, dyaw]), speed

    def refine(self, images, viewmats: torch.Tensor, action: torch.Tensor, prev: _RowHistory | None, noise_seed: int):
        """Refined RGB [C, 3, H, W] of one row's splat images (CameraImages)."""
        rgb = images.rgb.permute(0, 3, 1, 2).float().cpu()
        depth, alpha = images.depth.float().cpu(), images.alpha.float().cpu()
        C = rgb.shape[0]
        dev = next(self.refiner.parameters()).device
        if prev is None:
            warped, valid = None, None
        else:
            T = prev.viewmats @ torch.linalg.inv(viewmats)
            warped, valid = warp_previous(prev.rgb, depth, self.rig.K.float(), T, alpha)
        gen = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(rgb.shape, generator=gen)
        to = lambda t: None if t is None else t.to(dev)
        out = self.refiner.sample(to(rgb), to(depth), to(alpha), to(warped), to(valid), to(action.expand(C, 4)),
                                  to(self.camera_ids), steps=self.steps, noise=to(noise))
        return out.cpu()

    def render_row(self, background, state, b: int, step: int | None = None, key=None):
        """CameraImages of row b with the refined RGB (depth, alpha and agent ids from the splats)."""
        images = self.splat.render_row(background, state, b)
        pose = (float(state.x[b, 0]), float(state.y[b, 0]), float(state.yaw[b, 0]))
        prev = self._rows.get(b)
        if prev is not None and (prev.key != key or (step is not None and prev.step is not None and step <= prev.step)):
            prev = None  # another scenario in this row, or the row restarted
        action, speed = self._action(state, b, pose, prev)
        if self.zero_action:
            action = torch.zeros_like(action)
        viewmats = self.rig.viewmats(*pose).float()
        frame = 0 if prev is None else prev.frame + 1
        noise_seed = (self.seed * 1_000_003 + b * 10_007 + (frame if step is None else step)) % (2 ** 63)
        rgb = self.refine(images, viewmats, action, prev, noise_seed)
        self._rows[b] = _RowHistory(key, frame, step, viewmats, rgb, pose, speed)
        return type(images)(rgb.permute(0, 2, 3, 1).to(images.rgb.device), images.depth, images.alpha,
                            images.agent_id, images.names)

    def __call__(self, state, batch) -> torch.Tensor:
        """The refined camera observation of every row: [B, C, H, W, 3] float RGB in [0, 1]."""
        steps = state.row_step.tolist()
        rows = []
        for b in range(state.batch_size):
            sc = batch.scenarios[b]
            rows.append(self.render_row(self.background(sc), state, b, step=steps[b], key=(sc.name, int(sc.seed))).rgb)
        return torch.stack(rows).to(state.device)


def write_refined_video(scenario, traj: dict, path, refiner: Refiner, rig="nuscenes", size=(112, 64), every: int = 1,
                        steps: int | None = None, fps: float | None = None, seed: int = 0, sample_steps: int | None = None):
    """A surround-view video of row 0 of a trajectory at the refined fidelity; returns the path."""
    from drivesim.render.bev import write_video
    from drivesim.render.splat.camera import load_rig
    from drivesim.render.splat.sensors import SplatCameras, parse_size, surround_frames

    w, h = parse_size(size) if isinstance(size, str) else size
    rig_obj = load_rig(rig) if isinstance(rig, str) else rig
    name = rig if isinstance(rig, str) else "custom"
    cams = RefinedCameras(SplatCameras(rig_obj, w, h), refiner, steps=sample_steps, seed=seed, rig_name=name,
                          dt=scenario.dt * every)
    frames = surround_frames(scenario, traj, rig_obj, (w, h), every=every, steps=steps, cameras=cams)
    return write_video(frames, path, fps=fps or 1.0 / (scenario.dt * every))
