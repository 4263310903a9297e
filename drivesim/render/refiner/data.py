"""Training pairs for the diffusion refiner, all made offline.

- Self-supervised pairs (`synthetic_pairs`) on procedural scenarios: a closed-loop rollout of the
  PDM-Closed expert on each map, cut into short clips; per clip (but for a `p_clean` fraction whose
  input is the full render itself, so that good renders are left alone) the scene is degraded the way a
  reconstruction is (a fraction of the Gaussians kept and the rest enlarged to half-fill the holes,
  colour noise per Gaussian, a lower render resolution upsampled, no sky: a random flat background,
  a small pose jitter) and the degraded render is the input, the full render the target.
- Real pairs (`real_pairs`) on PandaSet: renders of the reconstructed scene (the artifact of
  `drivesim reconstruct`) at the recorded camera poses against the real images, on the training
  frames of the reconstruction only (its held-out frames stay held out); pixels of labelled objects
  (which the reconstruction leaves out) carry no loss.

Every sample is one camera image at time t with a previous frame warped into the current view with
the input depth and the ego motion: the previous target (teacher forcing) for a `p_prev_target`
fraction, else the previous input render, so that the refiner neither copies a previous frame it
will not have when it runs on its own outputs nor ignores it (the trainer adds noise to it); the
action (acceleration, steering, speed, yaw change) and the camera id. A `PairSet` keeps them as
uint8 / float16 tensors.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from drivesim.core.config import config_from_dict
from drivesim.render.refiner.warp import warp_previous

CAMERA_OFFSETS = {"nuscenes": 0, "pandaset": 8}  # camera-embedding slot = offset + camera index in the rig
WHEELBASE = 2.7  # m, to turn a yaw rate into a steering angle for logged poses


@dataclass(frozen=True)
class DataConfig:
    width: int = 112
    height: int = 64
    rig: str = "nuscenes"
    maps: tuple[str, ...] = ("straight", "curved", "merge", "intersection")
    scenarios_per_map: int = 3
    clips_per_scenario: int = 6
    clip_len: int = 5  # frames per clip: clip_len - 1 pairs with a previous frame
    p_clean: float = 0.3  # clips whose input is the full render itself (the refiner must leave good renders alone)
    keep: tuple[float, float] = (0.3, 0.75)  # fraction of background Gaussians kept
    grow: tuple[float, float] = (1.0, 1.6)  # scale factor of the kept Gaussians
    color_noise: float = 0.06
    p_lowres: float = 0.5  # render at half resolution and upsample
    p_no_sky: float = 0.5  # a random flat background instead of the sky colour
    jitter_xy: float = 0.05  # m, per-frame pose jitter of the degraded render
    jitter_yaw: float = 0.003  # rad
    offset_xy: float = 1.0  # m, per-clip lateral offset of the camera rig (view diversity)
    offset_yaw: float = 0.08  # rad, per-clip yaw offset
    p_prev_target: float = 0.2  # previous frame = the previous target (teacher forcing), else the previous input render
    p_prev_target_real: float = 0.2  # the same for real pairs (the real previous image)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "DataConfig":
        return config_from_dict(DataConfig, d, "refiner data")


@dataclass
class PairSet:
    """M training samples (one camera image each)."""

    target: torch.Tensor  # [M, 3, H, W] uint8
    rgb: torch.Tensor  # [M, 3, H, W] uint8 splat render (input)
    depth: torch.Tensor  # [M, H, W] float16 m
    alpha: torch.Tensor  # [M, H, W] uint8 (x 255)
    prev: torch.Tensor  # [M, 3, H, W] uint8 previous target warped into this view
    prev_valid: torch.Tensor  # [M, 1, H, W] bool (all False: no previous frame)
    loss_mask: torch.Tensor  # [M, 1, H, W] bool: pixels that carry loss
    action: torch.Tensor  # [M, 4] float32
    camera: torch.Tensor  # [M] int64 camera-embedding slot
    K: torch.Tensor  # [M, 3, 3] float32 intrinsics (pixel j's centre at j + 0.5)
    T_prev: torch.Tensor  # [M, 4, 4] float32 current camera -> previous camera (identity: no previous frame)
    prev_offset: torch.Tensor  # [M] int64: sample i - prev_offset[i] holds this camera's previous frame (0: none kept)
    source: str = ""

    def __len__(self) -> int:
        return self.target.shape[0]

    @staticmethod
    def cat(parts: list["PairSet"]) -> "PairSet":
        names = [f.name for f in fields(PairSet) if f.name != "source"]
        return PairSet(**{n: torch.cat([getattr(p, n) for p in parts]) for n in names},
                       source="+".join(p.source for p in parts))

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Float tensors of samples idx: images in [0, 1]."""
        u8 = lambda t: t[idx].float() / 255
        return {"target": u8(self.target), "rgb": u8(self.rgb), "depth": self.depth[idx].float(),
                "alpha": u8(self.alpha), "prev": u8(self.prev), "prev_valid": self.prev_valid[idx].float(),
                "loss_mask": self.loss_mask[idx].float(), "action": self.action[idx], "camera": self.camera[idx],
                "K": self.K[idx], "T_prev": self.T_prev[idx]}

    def previous(self, idx: torch.Tensor) -> torch.Tensor:
        """Index of the sample holding the previous frame of each of samples idx (-1 where none is kept)."""
        off = self.prev_offset[idx]
        return torch.where(off > 0, idx - off, torch.full_like(idx, -1))

    def digest(self) -> str:
        h = hashlib.sha256()
        for f in fields(PairSet):
            if f.name != "source":
                h.update(getattr(self, f.name).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def to_u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def make_pairs(target, rgb, depth, alpha, prev_target, K, T_prev_from_cur, action, camera, loss_mask=None,
               source="", prev_kept: bool = False) -> PairSet:
    """Pairs from float tensors: target, rgb, prev_target [N, 3, H, W] in [0, 1] (prev_target None:
    no previous frame), depth, alpha [N, H, W], K [N, 3, 3], T_prev_from_cur [N, 4, 4]. prev_kept:
    the N samples just before these in the final PairSet are the same cameras' previous frame (the
    temporal loss unrolls over such pairs)."""
    N, _, H, W = target.shape
    if prev_target is None:
        prev, valid = torch.zeros_like(target), torch.zeros(N, 1, H, W)
        T_prev_from_cur = torch.eye(4).expand(N, 4, 4)
    else:
        prev, valid = warp_previous(prev_target, depth, K, T_prev_from_cur, alpha)
    mask = torch.ones(N, 1, H, W, dtype=torch.bool) if loss_mask is None else loss_mask.view(N, 1, H, W).bool()
    offset = torch.full((N,), N if prev_kept and prev_target is not None else 0, dtype=torch.int64)
    return PairSet(to_u8(target), to_u8(rgb), depth.to(torch.float16), to_u8(alpha), to_u8(prev), valid > 0.5, mask,
                   action.float(), camera.long(), K.float().expand(N, 3, 3).contiguous(),
                   T_prev_from_cur.float().expand(N, 4, 4).contiguous(), offset, source)


# ---------------------------------------------------------------------------------------------
# self-supervised pairs: degraded against full splat renders
# ---------------------------------------------------------------------------------------------

def render_views(scene, viewmats, K, width, height, background):
    """RenderOutput of a Gaussian scene (torch rasterizer on CPU) with a background colour [3]."""
    from drivesim.render.splat.rasterize import render

    return render(scene, viewmats, K, width, height, background=background)


def cull(g, x: float, y: float, radius: float = 120.0):
    d = torch.hypot(g.means[:, 0] - x, g.means[:, 1] - y)
    return g.index(d < radius + 10.0 * g.scales.amax(dim=1))


def degrade(scene, keep_bg: torch.Tensor, grow: float, color_noise: torch.Tensor):
    """The scene with background Gaussians outside keep_bg [N_bg] dropped, the kept ones enlarged by
    `grow` and recoloured by color_noise [N_bg, 3]; agent Gaussians (ids >= 0) keep their shape."""
    n_bg = keep_bg.shape[0]
    is_bg = torch.zeros(len(scene), dtype=torch.bool)
    is_bg[:n_bg] = True
    keep = torch.ones(len(scene), dtype=torch.bool)
    keep[:n_bg] = keep_bg
    scales = scene.scales * torch.where(is_bg, grow, 1.0)[:, None]
    colors = scene.colors.clone()
    colors[:n_bg] = (colors[:n_bg] + color_noise).clamp(0, 1)
    return scene.replace(scales=scales, colors=colors).index(keep)


def ego_action(traj: dict, t: int, b: int = 0) -> torch.Tensor:
    """[4] (acceleration, steering, speed, yaw change since step t - 1) of the ego at step t."""
    dyaw = (float(traj["yaw"][t][b, 0]) - float(traj["yaw"][max(0, t - 1)][b, 0]) + math.pi) % (2 * math.pi) - math.pi
    return torch.tensor([float(traj["accel"][t][b, 0]), float(traj["steer"][t][b, 0]), float(traj["speed"][t][b, 0]), dyaw])


def expert_rollout(map_type: str, seed: int):
    """A procedural scenario on `map_type` and the expert's recorded closed-loop trajectory."""
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
    from drivesim.map.builders import build_map
    from drivesim.sim.expert import PDMClosed
    from drivesim.sim.rollout import rollout

    scenario = procedural_scenario(build_map(map_type), TrafficConfig(), seed=seed, name=f"{map_type}-seed{seed}")
    res = rollout(ScenarioBatch.build([scenario]), PDMClosed(), record=True)
    return scenario, res.trajectory


def synthetic_pairs(cfg: DataConfig, progress: bool = True) -> tuple[PairSet, list[str]]:
    """Self-supervised pairs on procedural scenarios; returns them and the scenario names."""
    from tqdm import tqdm

    from drivesim.render.splat.camera import load_rig
    from drivesim.render.splat.scene import SKY, SceneConfig, build_background, compose
    from drivesim.render.splat.sensors import TrajectoryStep

    rig = load_rig(cfg.rig, cfg.width, cfg.height)
    low = rig.scaled(cfg.width // 2, cfg.height // 2)
    gen = torch.Generator().manual_seed(cfg.seed)
    rnd = lambda: float(torch.rand((), generator=gen))
    C = len(rig)
    cams = torch.arange(C) + CAMERA_OFFSETS.get(cfg.rig, 0)
    parts, names = [], []
    jobs = [(m, cfg.seed * 1000 + i) for m in cfg.maps for i in range(cfg.scenarios_per_map)]
    bar = tqdm(jobs, desc="refiner data", disable=not progress)
    for map_type, seed in bar:
        scenario, traj = expert_rollout(map_type, seed)
        names.append(scenario.name)
        background = build_background(scenario.road, SceneConfig(), seed=seed)
        T = len(traj["x"])
        for _ in range(cfg.clips_per_scenario):
            t0 = 1 + int(torch.randint(0, max(1, T - cfg.clip_len - 1), (), generator=gen))
            n_bg = len(background)
            keep = torch.rand(n_bg, generator=gen) < cfg.keep[0] + rnd() * (cfg.keep[1] - cfg.keep[0])
            grow = cfg.grow[0] + rnd() * (cfg.grow[1] - cfg.grow[0])
            noise = torch.randn(n_bg, 3, generator=gen) * cfg.color_noise
            lowres = rnd() < cfg.p_lowres
            bg_in = torch.rand(3, generator=gen) * 0.6 if rnd() < cfg.p_no_sky else torch.tensor(SKY)
            lat, dyaw = (2 * rnd() - 1) * cfg.offset_xy, (2 * rnd() - 1) * cfg.offset_yaw
            clean = rnd() < cfg.p_clean
            if clean:
                keep, grow, noise, lowres, bg_in = torch.ones_like(keep), 1.0, noise * 0, False, torch.tensor(SKY)
            prev_target, prev_input, prev_view, kept = None, None, None, False
            for t in range(t0, min(T, t0 + cfg.clip_len)):
                st = TrajectoryStep(traj, t)
                x, y, yaw = float(st.x[0, 0]), float(st.y[0, 0]), float(st.yaw[0, 0])
                x, y, yaw = x - lat * math.sin(yaw), y + lat * math.cos(yaw), yaw + dyaw
                scene = compose(background, st, 0)
                view = rig.viewmats(x, y, yaw)
                full = render_views(cull(scene, x, y), view, rig.K, rig.width, rig.height, torch.tensor(SKY))
                jx, jy, jyaw = ((2 * rnd() - 1) * s * (not clean) for s in (cfg.jitter_xy, cfg.jitter_xy, cfg.jitter_yaw))
                d_scene = cull(degrade(scene, keep, grow, noise), x, y)
                r = low if lowres else rig
                deg = render_views(d_scene, rig.viewmats(x + jx, y + jy, yaw + jyaw), r.K, r.width, r.height, bg_in)
                rgb, depth, alpha = _upsampled(deg, cfg.width, cfg.height) if lowres else _chw(deg)
                target = full.rgb.permute(0, 3, 1, 2)
                T_rel = prev_view @ torch.linalg.inv(view) if prev_view is not None else torch.eye(4).expand(C, 4, 4)
                act = ego_action(traj, t).expand(C, 4)
                if prev_target is not None:
                    prev = mix_previous(prev_target, prev_input, cfg.p_prev_target, gen)
                    parts.append(make_pairs(target, rgb, depth, alpha, prev, rig.K, T_rel, act, cams, source="synthetic",
                                            prev_kept=kept))
                    kept = True
                prev_target, prev_input, prev_view = target, rgb, view
    return PairSet.cat(parts), names


def mix_previous(prev_target, prev_input, p_target: float, gen: torch.Generator) -> torch.Tensor:
    """Per image [N, 3, H, W]: the previous target with probability p_target, else the previous input."""
    pick = torch.rand(prev_target.shape[0], generator=gen) < p_target
    return torch.where(pick[:, None, None, None], prev_target, prev_input)


def _chw(out):
    return out.rgb.permute(0, 3, 1, 2), out.depth, out.alpha


def _upsampled(out, width: int, height: int):
    """A low-resolution render brought to (width, height): bilinear colour, nearest depth."""
    rgb = F.interpolate(out.rgb.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    depth = F.interpolate(out.depth[:, None], size=(height, width), mode="nearest")[:, 0]
    alpha = F.interpolate(out.alpha[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return rgb, depth, alpha
