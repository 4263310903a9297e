"""Real PandaSet pairs for the refiner and its evaluation on held-out real frames.

The reconstructed scene comes from the artifact of `drivesim reconstruct` (`scene.pt` + `card.json`
in a folder) when one is given; without it, `small_reconstruction` fits one at the refiner's
resolution with the same code (`drivesim.render.reconstruct.fit`) and the same held-out rule
(frame index % holdout_every == holdout_every - 1), so that held-out frames are never seen by
either the splats or the refiner. Renders use the fit's per-camera colour gain and bias (what the
splat render of that scene is). Pixels of labelled objects (left out of the reconstruction) carry
no loss and no metric.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from drivesim.core.checkpoint import CheckpointError, expect_dict, load_checkpoint
from drivesim.core.safe_io import atomic_torch_save
from drivesim.render.refiner.model import Refiner
from drivesim.render.refiner.warp import warp_previous
from drivesim.render.refiner.data import CAMERA_OFFSETS, WHEELBASE, make_pairs

PIXEL_CENTRE = 0.5  # the rasterizer samples pixel j at j + 0.5; PandaSet intrinsics put its centre at j


@dataclass
class RealScene:
    """A reconstructed PandaSet scene and the frames it was fitted on."""

    gaussians: object  # Gaussians (background, ids -1)
    gain: torch.Tensor  # [C, 3]
    bias: torch.Tensor  # [C, 3]
    background: torch.Tensor  # [3]
    train: list[int]  # frame indices into the sequence
    held_out: list[int]
    lineage: dict


def save_scene(scene: RealScene, path) -> None:
    """The reconstruction the refiner was trained against (so that evaluation renders the same splats);
    plain data only (tensors, lists of frame indices, the lineage as JSON types), written atomically."""
    import json
    from dataclasses import asdict

    lineage = json.loads(json.dumps(scene.lineage, default=str))  # plain JSON types: the file loads with weights_only
    atomic_torch_save({"gaussians": asdict(scene.gaussians), "gain": scene.gain, "bias": scene.bias,
                       "background": scene.background, "train": [int(i) for i in scene.train],
                       "held_out": [int(i) for i in scene.held_out], "lineage": lineage}, path)


def load_scene_file(path) -> RealScene:
    """A RealScene from `save_scene`'s file (`real_scene.pt` beside a refiner), read as plain data
    (weights_only: a file naming any other object is refused, never run); a file of another layout
    is a CheckpointError naming it."""
    from drivesim.render.splat.gaussians import Gaussians

    d = expect_dict(load_checkpoint(path, "reconstructed scene"), path, "reconstructed scene",
                    ("gaussians", "gain", "bias", "background", "train", "held_out", "lineage"))
    try:
        return RealScene(Gaussians(**d["gaussians"]), d["gain"], d["bias"], d["background"], [int(i) for i in d["train"]],
                         [int(i) for i in d["held_out"]], d["lineage"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a reconstructed scene of this layout ({type(exc).__name__}: {exc})") from None


def small_reconstruction(seq, iters: int = 300, n_gaussians: int = 15000, seed: int = 0, log=print) -> RealScene:
    """Fit a reconstruction of `seq` at its own size with reconstruct.fit (held out: index % 8 == 7)."""
    from drivesim.render.reconstruct.fit import ReconConfig, fit, to_gaussians

    cfg = ReconConfig(width=seq.width, height=seq.height, iters=iters, n_gaussians=n_gaussians, seed=seed)
    t0 = time.perf_counter()
    res = fit(seq, cfg, progress=False)
    log(f"refiner: fitted a {seq.width}x{seq.height} reconstruction ({iters} iterations, {time.perf_counter() - t0:.0f} s)")
    lineage = {"reconstruction": "fitted by the refiner's data step with drivesim.render.reconstruct.fit",
               "recon_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
               "data_hash": seq.data_hash()[:16], "held_out_frames": [seq.frames[i] for i in res.held_out]}
    g = to_gaussians(res.raw)
    h = hashlib.sha256()
    for t in (g.means, g.quats, g.scales, g.opacities, g.colors, res.camera_gain, res.camera_bias):
        h.update(t.detach().contiguous().numpy().tobytes())
    lineage["hash"] = h.hexdigest()[:16]
    return RealScene(g, res.camera_gain, res.camera_bias, res.background, res.train, res.held_out, lineage)


def load_reconstruction(folder, seq) -> RealScene:
    """The artifact of `drivesim reconstruct pandaset` (scene.pt + card.json) for `seq`'s frames:
    its Gaussians, colour gain/bias and background, and the frames its card trained on / held out."""
    import json

    from drivesim.render.reconstruct.artifact import load_extras, load_scene

    folder = Path(folder)
    card = json.loads((folder / "card.json").read_text())
    g, extras = load_scene(folder), load_extras(folder)
    if list(extras["cameras"]) != list(seq.cameras):
        raise ValueError(f"{folder}: cameras {extras['cameras']} differ from the sequence's {list(seq.cameras)}")
    index = {f: i for i, f in enumerate(seq.frames)}
    try:
        held = [index[int(f)] for f in card["held_out_frames"]]
        train = [index[int(f)] for f in card["train_frames"]]
    except KeyError as exc:
        raise ValueError(f"{folder}/card.json: no train_frames/held_out_frames, or a frame not in the sequence ({exc})") from None
    lineage = {"reconstruction": f"drivesim reconstruct artifact {folder.name}", "hash": card.get("content_hash"),
               "data_hash": card.get("data_hash"), "held_out_frames": [int(f) for f in card["held_out_frames"]]}
    return RealScene(g, extras["camera_gain"].float(), extras["camera_bias"].float(), extras["background"].float(),
                     train, held, lineage)


def render_real(scene: RealScene, seq, cams: list[int], fidx: list[int]):
    """(rgb [N, 3, H, W] with gains, depth [N, H, W], alpha [N, H, W], viewmats [N, 4, 4], K [N, 3, 3])."""
    from drivesim.render.splat.rasterize import render

    c2w = seq.cam_to_world[cams, fidx].float()
    view = torch.linalg.inv(c2w)
    K = seq.K[cams].clone().float()
    K[:, :2, 2] += PIXEL_CENTRE
    out = render(scene.gaussians, view, K, seq.width, seq.height, background=scene.background, near=0.5, tile_size=8)
    rgb = (out.rgb * scene.gain[cams, None, None] + scene.bias[cams, None, None]).clamp(0, 1)
    return rgb.permute(0, 3, 1, 2), out.depth, out.alpha, view, K


def log_action(seq, fi: int) -> torch.Tensor:
    """[4] (acceleration, steering, speed, yaw change) of the ego at frame index fi from the front
    camera's recorded poses (speed and yaw rate by finite differences over the timestamps)."""
    c = seq.cameras.index("front") if "front" in seq.cameras else 0

    def pose(i):
        i = min(max(i, 0), len(seq.frames) - 1)
        m = seq.cam_to_world[c, i]
        return float(m[0, 3]), float(m[1, 3]), math.atan2(float(m[1, 2]), float(m[0, 2])), float(seq.timestamps[c, i])

    def speed(i):
        (x0, y0, _, t0), (x1, y1, _, t1) = pose(i - 1), pose(i)
        return math.hypot(x1 - x0, y1 - y0) / max(t1 - t0, 1e-3) if i > 0 else 0.0
    (_, _, yaw0, t0), (_, _, yaw1, t1) = pose(fi - 1), pose(fi)
    dt = max(t1 - t0, 1e-3)
    dyaw = (yaw1 - yaw0 + math.pi) % (2 * math.pi) - math.pi if fi > 0 else 0.0
    v = speed(fi)
    return torch.tensor([(v - speed(fi - 1)) / dt if fi > 1 else 0.0,
                         math.atan(WHEELBASE * dyaw / dt / max(v, 1.0)), v, dyaw])


def real_pairs(scene: RealScene, seq, masks: torch.Tensor, p_prev_target: float = 0.2, seed: int = 0):
    """Pairs on the training frames. The previous frame is the previous real image (a training
    frame only: never a held-out one) with probability p_prev_target, else the previous splat render."""
    from drivesim.render.refiner.data import mix_previous

    C = len(seq.cameras)
    cams = torch.arange(C) + CAMERA_OFFSETS["pandaset"]
    train = set(scene.train)
    gen = torch.Generator().manual_seed(seed)
    parts, last = [], None
    for fi in sorted(train):
        rgb, depth, alpha, view, K = render_real(scene, seq, list(range(C)), [fi] * C)
        target = seq.images[:, fi].permute(0, 3, 1, 2).float() / 255
        prev, T = None, None
        if fi - 1 in train:
            prev_real = seq.images[:, fi - 1].permute(0, 3, 1, 2).float() / 255
            prev = mix_previous(prev_real, last, p_prev_target, gen)
            T = torch.linalg.inv(seq.cam_to_world[:, fi - 1].float()) @ seq.cam_to_world[:, fi].float()
        last = rgb
        act = log_action(seq, fi).expand(C, 4)
        parts.append(make_pairs(target, rgb, depth, alpha, prev, K, T, act, cams, loss_mask=~masks[:, fi], source="pandaset",
                                prev_kept=True))
    from drivesim.render.refiner.data import PairSet
    return PairSet.cat(parts)


@torch.no_grad()
def evaluate_real(refiner: Refiner, scene: RealScene, seq, masks: torch.Tensor, steps: int = 1, seed: int = 0) -> dict:
    """PSNR / SSIM of splat alone and splat + refiner on the held-out frames over unmasked pixels.

    The refiner runs over every frame of each camera in order, fed its own previous output (never a
    real image), as it runs in the simulator; only held-out frames are scored. Also the temporal
    stability over the whole sequence (mean depth-warped |frame - previous frame| over unlabelled
    pixels) of the splat render, the refined frames and, for reference, the real images."""
    from drivesim.render.reconstruct.fit import masked_psnr, masked_ssim
    from drivesim.render.refiner.eval import warped_difference

    C = len(seq.cameras)
    cams = torch.arange(C) + CAMERA_OFFSETS["pandaset"]
    held = set(scene.held_out)
    prev, rows, shown, temporal = None, [], [], {"splat": [], "refined": [], "real": []}
    for fi in range(len(seq.frames)):
        rgb, depth, alpha, view, K = render_real(scene, seq, list(range(C)), [fi] * C)
        gt = seq.images[:, fi].float() / 255
        warped = valid = None
        if prev is not None:
            T = prev["view"] @ torch.linalg.inv(view)
            warped, valid = warp_previous(prev["refined"], depth, K, T, alpha)
        noise = torch.randn(rgb.shape, generator=torch.Generator().manual_seed(seed * 7919 + fi))
        out = refiner.sample(rgb, depth, alpha, warped, valid, log_action(seq, fi).expand(C, 4), cams, steps=steps,
                             noise=noise)
        cur = {"splat": rgb, "refined": out, "real": gt.permute(0, 3, 1, 2), "view": view}
        if prev is not None:
            unlabelled = (~masks[:, fi] & ~masks[:, fi - 1])[:, None].float()
            for k in temporal:
                temporal[k].append(warped_difference(cur[k], prev[k], depth, K, T, alpha, unlabelled))
        prev = cur
        if fi not in held:
            continue
        ok = ~masks[:, fi]
        a, b = rgb.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)
        for c, ps, pr, ss, sr in zip(range(C), masked_psnr(a, gt, ok).tolist(), masked_psnr(b, gt, ok).tolist(),
                                     masked_ssim(a, gt, ok).tolist(), masked_ssim(b, gt, ok).tolist()):
            rows.append({"camera": seq.cameras[c], "frame": seq.frames[fi], "psnr_splat": ps, "psnr_refined": pr,
                         "ssim_splat": ss, "ssim_refined": sr})
        shown.append((a[0], b[0], gt[0]))  # the first camera (front)
    if not rows:
        warnings.warn("evaluate_real: no held-out frames", stacklevel=2)
        return {"rows": [], "images": 0}
    mean = lambda k: sum(r[k] for r in rows) / len(rows)
    return {"images": len(rows), **{k: mean(k) for k in ("psnr_splat", "psnr_refined", "ssim_splat", "ssim_refined")},
            **{f"temporal_{k}": sum(v) / max(1, len(v)) for k, v in temporal.items()},
            "examples": [shown[i] for i in sorted({0, len(shown) // 2, len(shown) - 1})], "rows": rows}
