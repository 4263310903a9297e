"""A real scene reconstructed as a background Gaussian splat scene (the WorldEngine way).

`fit(seq, cfg)` fits Gaussians to the images of a loaded `PandaSetSequence` through the shared
rasterizer (`drivesim.render.splat.rasterize.render`, torch on CPU, gsplat on CUDA) with Adam on raw
parameters (means, log-scales, unnormalised quats, opacity logits, colour logits) and a per-camera
colour gain and bias (the cameras' exposures and white balances differ):

- labelled objects are masked out: every cuboid of a frame (vehicles, pedestrians, cones, ...) is
  clipped at the camera's near plane, projected, filled as its convex hull and dilated by
  `mask_dilate` pixels; those pixels carry no loss, no initial Gaussian and no metric;
- split: frame index % `holdout_every` == `holdout_every` - 1 is held out (7 of every 8 frames
  train; frames 7, 15, ..., 79 of 80 are held out) and never seen by the fit;
- initialisation without lidar (this copy of PandaSet has no point clouds): pixels of training
  images are lifted along their rays to a depth prior (a ground plane fitted to the cuboid bottoms,
  a vertical "street wall" cylinder of radius `wall_radius` around the camera, a sky dome at
  `sky_radius` above `wall_height`) with the pixel's colour and a footprint-sized scale. The sky
  is the dome; pixels no Gaussian covers get the mean colour of the images' top rows;
- loss: (1 - `ssim_weight`) L1 + `ssim_weight` (1 - SSIM) over unmasked pixels.

`evaluate` gives PSNR and SSIM on the held-out frames over the unmasked pixels only (SSIM: an 11 px
Gaussian window, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, the SSIM map averaged over unmasked pixels;
PSNR from the mean squared error over unmasked pixels), per image, then averaged per camera and
overall. `save` writes scene.pt + card.json (content hash, frames, config, data hash, timings,
metrics); `reconstruct_artifact.load_scene` returns the background `Gaussians` (ids -1) for `render`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drivesim.core.config import config_from_dict
from drivesim.io.pandaset import PandaSetSequence, box_corners
from drivesim.render.splat.gaussians import Gaussians

PIXEL_CENTRE = 0.5  # the rasterizer samples pixel j at j + 0.5 (gsplat); PandaSet K puts it at j


@dataclass
class ReconConfig:
    width: int = 240
    height: int = 135
    cameras: tuple[str, ...] = ("front", "front_left", "front_right", "left", "right", "back")
    holdout_every: int = 8  # frames with index % 8 == 7 are held out
    iters: int = 260  # about 17 min at 240x135 on a loaded 2-core CPU (3.8 s a step)
    batch: int = 6  # images per step
    n_gaussians: int = 40_000  # initial Gaussians lifted from training pixels
    init_frames: int = 12  # training frames per camera the initial Gaussians are lifted from
    init_scale: float = 0.35  # initial std-dev in units of the sample spacing (px)
    wall_radius: float = 10.0  # m, street walls to the left and right of the depth prior
    wall_height: float = 25.0  # m above the camera; rays above it hit the sky dome
    sky_radius: float = 200.0  # m
    mask_dilate: int = 2  # px at the fitting resolution
    ssim_weight: float = 0.2
    lr_means: float = 0.02  # per step, times the Gaussian's initial distance from its camera; x0.1 by the end
    lr_scales: float = 0.01
    lr_quats: float = 0.005
    lr_opacity: float = 0.05
    lr_colors: float = 0.02
    lr_camera: float = 0.002
    seed: int = 0

    @staticmethod
    def from_dict(d: dict) -> "ReconConfig":
        return config_from_dict(ReconConfig, d, "reconstruct")


def split_frames(n_frames: int, every: int) -> tuple[list[int], list[int]]:
    """(train, held_out) frame indices: index % every == every - 1 is held out."""
    if every < 2:
        raise ValueError(f"holdout_every must be at least 2, got {every}")
    held = [i for i in range(n_frames) if i % every == every - 1]
    return [i for i in range(n_frames) if i % every != every - 1], held


# ---------------------------------------------------------------------------------------------
# object masks
# ---------------------------------------------------------------------------------------------

EDGES = [(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull (monotone chain), counter-clockwise in (u, v)."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]
    return half(pts) + half(reversed(pts))


def _box_polygons(corners_cam, K, near=0.05) -> list[list[tuple[float, float]]]:
    """Image polygons (convex hulls) of boxes [M, 8, 3] in camera coordinates, clipped at z = near."""
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    polys = []
    for box in corners_cam.tolist():
        pts = [p for p in box if p[2] > near]
        if not pts:
            continue
        for i, j in EDGES:
            a, b = box[i], box[j]
            if (a[2] > near) != (b[2] > near):
                s = (near - a[2]) / (b[2] - a[2])
                pts.append([a[k] + s * (b[k] - a[k]) for k in range(3)])
        polys.append(_hull([(fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy) for p in pts]))
    return polys


def _fill_convex(polys, width: int, height: int) -> torch.Tensor:
    """[H, W] bool: pixel centres (j, i) inside any convex polygon (counter-clockwise in (u, v))."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for poly in polys:
        if len(poly) < 3:
            continue
        us, vs = [p[0] for p in poly], [p[1] for p in poly]
        j0, j1 = max(0, math.floor(min(us))), min(width - 1, math.ceil(max(us)))
        i0, i1 = max(0, math.floor(min(vs))), min(height - 1, math.ceil(max(vs)))
        if j0 > j1 or i0 > i1:
            continue
        v, u = torch.meshgrid(torch.arange(i0, i1 + 1, dtype=torch.float64),
                              torch.arange(j0, j1 + 1, dtype=torch.float64), indexing="ij")
        inside = torch.ones_like(u, dtype=torch.bool)
        for (ax, ay), (bx, by) in zip(poly, poly[1:] + poly[:1]):
            inside &= (bx - ax) * (v - ay) - (by - ay) * (u - ax) >= 0
        mask[i0:i1 + 1, j0:j1 + 1] |= inside
    return mask


def object_masks(seq: PandaSetSequence, dilate: int = 2) -> torch.Tensor:
    """[C, F, H, W] bool, True on the pixels of labelled objects (dilated by `dilate` px)."""
    C, Fn = len(seq.cameras), len(seq.frames)
    masks = torch.zeros(C, Fn, seq.height, seq.width, dtype=torch.bool)
    for fi in range(Fn):
        if len(seq.boxes[fi]) == 0:
            continue
        corners = box_corners(seq.boxes[fi])  # [M, 8, 3] world
        for ci in range(C):
            w2c = torch.linalg.inv(seq.cam_to_world[ci, fi])
            cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
            masks[ci, fi] = _fill_convex(_box_polygons(cam, seq.K[ci]), seq.width, seq.height)
    if dilate > 0:
        k = 2 * dilate + 1
        masks = F.max_pool2d(masks.view(-1, 1, seq.height, seq.width).float(), k, 1, dilate).bool()
        masks = masks.view(C, Fn, seq.height, seq.width)
    return masks


# ---------------------------------------------------------------------------------------------
# image metrics
# ---------------------------------------------------------------------------------------------

def _gauss_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of images [B, H, W, 3] in [0, 1] -> [B, H-size+1, W-size+1] (channel mean, valid window)."""
    g = _gauss_window(size, sigma, a.dtype).to(a.device)
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)

    def blur(t):  # separable Gaussian, no padding
        t = F.conv2d(t, g.view(1, 1, 1, -1).expand(3, 1, 1, size), groups=3)
        return F.conv2d(t, g.view(1, 1, -1, 1).expand(3, 1, size, 1), groups=3)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(1)


def masked_ssim(a, b, valid, size: int = 11) -> torch.Tensor:
    """[B] SSIM averaged over the valid pixels [B, H, W] (window centres)."""
    s = ssim_map(a, b, size)
    r = size // 2
    v = valid[:, r:valid.shape[1] - r, r:valid.shape[2] - r].to(s.dtype)
    return (s * v).sum((1, 2)) / v.sum((1, 2)).clamp_min(1)


def masked_psnr(a, b, valid) -> torch.Tensor:
    """[B] PSNR (data range 1) from the mean squared error over valid pixels [B, H, W]."""
    v = valid.to(a.dtype)[..., None]
    mse = (((a - b) ** 2) * v).sum((1, 2, 3)) / (3 * v.sum((1, 2, 3))).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


# ---------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------

def ground_plane(seq: PandaSetSequence) -> tuple[float, float, float]:
    """(a, b, c) of z = a x + b y + c, least squares through the cuboid bottom centres."""
    pts = torch.cat([b for b in seq.boxes if len(b)]) if any(len(b) for b in seq.boxes) else None
    if pts is None or len(pts) < 3:
        z = float(seq.cam_to_world[:, :, 2, 3].mean()) - 1.8  # no labels: a camera height guess
        return 0.0, 0.0, z
    A = torch.stack([pts[:, 0], pts[:, 1], torch.ones(len(pts), dtype=pts.dtype)], -1)
    sol = torch.linalg.lstsq(A, (pts[:, 2] - pts[:, 5] / 2)[:, None]).solution.flatten()
    return float(sol[0]), float(sol[1]), float(sol[2])


def prior_depth(origin, dirs, left, plane, cfg: ReconConfig) -> torch.Tensor:
    """[R] distance along unit rays [R, 3] from `origin` [3] to the depth prior: the ground plane,
    two street walls parallel to the ego's heading `wall_radius` to its left and right (`left` [3]
    unit, horizontal) up to `wall_height` above the camera, else the sky dome at `sky_radius`."""
    a, b, c = plane
    inf = torch.full_like(dirs[:, 0], math.inf)
    denom = dirs[:, 2] - a * dirs[:, 0] - b * dirs[:, 1]
    t_ground = (a * origin[0] + b * origin[1] + c - origin[2]) / denom
    t_ground = torch.where((denom < -1e-6) & (t_ground > 0), t_ground, inf)
    t_wall = cfg.wall_radius / (dirs @ left.to(dirs.dtype)).abs().clamp_min(1e-6)
    t_wall = torch.where(t_wall * dirs[:, 2] < cfg.wall_height, t_wall, inf)
    return torch.minimum(torch.minimum(t_ground, t_wall), torch.full_like(inf, cfg.sky_radius))


def _spread(indices: list[int], k: int) -> list[int]:
    if k >= len(indices):
        return list(indices)
    return [indices[round(i * (len(indices) - 1) / max(1, k - 1))] for i in range(k)]


def init_gaussians(seq: PandaSetSequence, masks, train: list[int], cfg: ReconConfig,
                   gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Raw parameters lifted from training pixels along their rays to the depth prior."""
    plane = ground_plane(seq)
    C = len(seq.cameras)
    frames = _spread(train, cfg.init_frames)
    per_image = max(1, cfg.n_gaussians // (C * len(frames)))
    means, colors, scales, depths = [], [], [], []
    for ci in range(C):
        K = seq.K[ci].double()
        for fi in frames:
            valid = torch.nonzero(~masks[ci, fi].flatten()).flatten()
            if len(valid) == 0:
                continue
            pick = valid[torch.randperm(len(valid), generator=gen)[:per_image]]
            v, u = (pick // seq.width).double(), (pick % seq.width).double()
            d_cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
            c2w = seq.cam_to_world[ci, fi]
            dirs = F.normalize(d_cam @ c2w[:3, :3].T, dim=-1)
            t = prior_depth(c2w[:3, 3], dirs, seq.ego_left(fi), plane, cfg)
            means.append(c2w[:3, 3] + t[:, None] * dirs)
            depths.append(t)
            colors.append(seq.images[ci, fi].view(-1, 3)[pick].double() / 255)
            spacing = math.sqrt(seq.width * seq.height / per_image)  # px between samples
            scales.append((cfg.init_scale * spacing * t / K[0, 0] * (d_cam.norm(dim=-1)))[:, None].expand(-1, 3))
    means, colors, scales = torch.cat(means).float(), torch.cat(colors).float(), torch.cat(scales).float()
    n, t_all = len(means), torch.cat(depths)
    return {"means": means, "step_scale": t_all.float(), "log_scales": scales.clamp_min(1e-3).log(),
            "quats": torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(),
            "opacity_logits": torch.full((n,), -0.5),
            "color_logits": torch.logit(colors.clamp(0.02, 0.98))}


def to_gaussians(raw: dict[str, torch.Tensor]) -> Gaussians:
    """Gaussians (ids -1) from raw parameters; means = means + step_scale * delta when fitting."""
    n = raw["means"].shape[0]
    means = raw["means"] + raw["step_scale"][:, None] * raw["delta"] if "delta" in raw else raw["means"]
    return Gaussians(means, raw["quats"], raw["log_scales"].exp(), torch.sigmoid(raw["opacity_logits"]),
                     torch.sigmoid(raw["color_logits"]), torch.full((n,), -1, dtype=torch.long,
                                                                    device=raw["means"].device))


# ---------------------------------------------------------------------------------------------
# fitting and evaluation
# ---------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    raw: dict[str, torch.Tensor]  # fitted raw parameters (means materialised)
    camera_gain: torch.Tensor  # [C, 3]
    camera_bias: torch.Tensor  # [C, 3]
    background: torch.Tensor  # [3]
    train: list[int]  # frame indices (into seq.frames)
    held_out: list[int]
    losses: list[float]
    seconds: float


def render_views(g: Gaussians, seq: PandaSetSequence, cams, fidx, background, cam_to_world=None):
    """RenderOutput of (camera, frame) pairs at the sequence's size; cam_to_world overrides poses."""
    from drivesim.render.splat.rasterize import render

    c2w = seq.cam_to_world[cams, fidx] if cam_to_world is None else cam_to_world
    K = seq.K[cams].clone()
    K[:, :2, 2] += PIXEL_CENTRE
    return render(g, torch.linalg.inv(c2w).to(g.means.dtype).to(g.device), K.to(g.device), seq.width, seq.height,
                  background=background, near=0.5)


def _images(seq, cams, fidx, device) -> torch.Tensor:
    return seq.images[cams, fidx].to(device).float() / 255  # [B, H, W, 3]


def sky_colour(seq: PandaSetSequence, frames: list[int]) -> torch.Tensor:
    """[3] mean colour of the top tenth of the given frames' images (what no Gaussian covers)."""
    rows = max(1, seq.height // 10)
    return (seq.images[:, frames, :rows].float() / 255).mean((0, 1, 2, 3))


def fit(seq: PandaSetSequence, cfg: ReconConfig, masks: torch.Tensor | None = None, device="cpu",
        progress: bool = True) -> FitResult:
    """Fit a background Gaussian scene to the training frames of `seq` (see the module docstring)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    masks = object_masks(seq, cfg.mask_dilate) if masks is None else masks
    train, held = split_frames(len(seq.frames), cfg.holdout_every)
    raw = {k: v.to(device) for k, v in init_gaussians(seq, masks, train, cfg, gen).items()}
    raw["delta"] = torch.zeros_like(raw["means"])
    C = len(seq.cameras)
    gain, bias = torch.ones(C, 3, device=device), torch.zeros(C, 3, device=device)
    bg = sky_colour(seq, train).to(device)
    groups = [("delta", cfg.lr_means), ("log_scales", cfg.lr_scales), ("quats", cfg.lr_quats),
              ("opacity_logits", cfg.lr_opacity), ("color_logits", cfg.lr_colors)]
    for name, _ in groups:
        raw[name].requires_grad_(True)
    gain.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.Adam([{"params": [raw[n]], "lr": lr, "name": n} for n, lr in groups]
                           + [{"params": [gain, bias], "lr": cfg.lr_camera, "name": "camera"}], eps=1e-15)
    pairs = torch.tensor([(c, f) for c in range(C) for f in train])  # [P, 2]
    valid_all = ~masks
    losses = []
    bar = tqdm(range(cfg.iters), desc="reconstruct", disable=not progress, mininterval=2.0)
    for it in bar:
        frac = it / max(1, cfg.iters - 1)
        opt.param_groups[0]["lr"] = cfg.lr_means * 0.1 ** frac
        pick = pairs[torch.randperm(len(pairs), generator=gen)[:cfg.batch]]
        cams, fidx = pick[:, 0], pick[:, 1]
        out = render_views(to_gaussians(raw), seq, cams, fidx, bg)
        rgb = out.rgb * gain[cams, None, None] + bias[cams, None, None]
        gt, valid = _images(seq, cams, fidx, device), valid_all[cams, fidx].to(device)
        v = valid.float()[..., None]
        l1 = ((rgb - gt).abs() * v).sum() / (3 * v.sum()).clamp_min(1)
        loss = (1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * (1 - masked_ssim(rgb, gt, valid).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress and it % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", n=len(raw["means"]))
    with torch.no_grad():
        final = {k: v.detach() for k, v in raw.items() if k not in ("delta", "step_scale")}
        final["means"] = to_gaussians(raw).means.detach()
    return FitResult(final, gain.detach(), bias.detach(), bg, train, held, losses, time.perf_counter() - t0)


@torch.no_grad()
def evaluate(g: Gaussians, seq: PandaSetSequence, fitres: FitResult, masks: torch.Tensor,
             frames: list[int] | None = None, batch: int = 6) -> dict:
    """PSNR and SSIM over unmasked pixels of `frames` (default: the held-out ones), per image,
    per camera (mean) and overall (mean over images). Warns when a render covers almost nothing."""
    frames = fitres.held_out if frames is None else frames
    pairs = [(c, f) for c in range(len(seq.cameras)) for f in frames]
    rows = []
    for i in range(0, len(pairs), batch):
        cams, fidx = (torch.tensor(x) for x in zip(*pairs[i:i + batch]))
        out = render_views(g, seq, cams, fidx, fitres.background)
        rgb = (out.rgb * fitres.camera_gain[cams, None, None] + fitres.camera_bias[cams, None, None]).clamp(0, 1)
        gt, valid = _images(seq, cams, fidx, g.device), (~masks[cams, fidx]).to(g.device)
        cover = (out.alpha * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1)
        for c, f, p, s, a in zip(cams.tolist(), fidx.tolist(), masked_psnr(rgb, gt, valid).tolist(),
                                 masked_ssim(rgb, gt, valid).tolist(), cover.tolist()):
            if a < 0.5:
                warnings.warn(f"reconstruct: {seq.cameras[c]} frame {seq.frames[f]}: the scene covers only "
                              f"{a:.0%} of the image; the pose may not belong to this scene", stacklevel=2)
            rows.append({"camera": seq.cameras[c], "frame": seq.frames[f], "psnr": p, "ssim": s, "coverage": a})
    per_cam = {}
    for cam in seq.cameras:
        r = [x for x in rows if x["camera"] == cam]
        per_cam[cam] = {"psnr": sum(x["psnr"] for x in r) / len(r), "ssim": sum(x["ssim"] for x in r) / len(r),
                        "images": len(r)}
    overall = {"psnr": sum(x["psnr"] for x in rows) / len(rows), "ssim": sum(x["ssim"] for x in rows) / len(rows),
               "images": len(rows)}
    return {"per_image": rows, "per_camera": per_cam, "overall": overall}
