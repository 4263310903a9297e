"""The fitted scene as an artifact: scene.pt + card.json + figures, its loader, and novel views.

`save(out_dir, ...)` writes
- `scene.pt`: the background Gaussians (means, quats, scales, opacities, colors; ids -1), the
  per-camera colour gain and bias, the background colour and the cameras' intrinsics;
- `card.json`: `content_hash` (sha256 of the Gaussians' tensors), `data_hash` (of the files read),
  `train_frames`, `held_out_frames`, cameras, the config, wall times, the PSNR/SSIM table;
- `heldout.png`: real held-out frames (objects masked, shaded) over their renders;
- `novel_views.png`: the ego shifted to its left by -2, -1, 0, +1, +2 m (negative = right) at one
  frame, for the front camera and one side camera, beside the real image.
`load_scene(out_dir)` returns the `Gaussians` for `render`; `shifted_poses` makes the novel poses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from drivesim.core.checkpoint import expect_dict, load_checkpoint
from drivesim.core.safe_io import atomic_torch_save, atomic_write_text
from drivesim.render.splat.gaussians import Gaussians

FIELDS = ("means", "quats", "scales", "opacities", "colors")


def gaussians_hash(g: Gaussians) -> str:
    """sha256 over the Gaussians' float32 tensors (contiguous, CPU) in a fixed field order."""
    h = hashlib.sha256()
    for name in FIELDS + ("ids",):
        t = getattr(g, name).detach().cpu().contiguous()
        h.update(name.encode())
        h.update((t.float() if t.is_floating_point() else t).numpy().tobytes())
    return h.hexdigest()


def load_scene(path) -> Gaussians:
    """The background Gaussians (ids -1) of a reconstruct artifact folder or its scene.pt."""
    path = Path(path)
    path = path / "scene.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fitted scene (run `drivesim reconstruct pandaset` first)")
    d = load_checkpoint(path, "reconstructed scene")
    try:
        g = d["gaussians"]
        return Gaussians(*(g[k] for k in FIELDS), torch.full((len(g["means"]),), -1, dtype=torch.long))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a reconstructed scene ({exc})") from None


def load_extras(path) -> dict:
    """The colour correction and background saved beside the Gaussians."""
    path = Path(path)
    path = path / "scene.pt" if path.is_dir() else path
    d = expect_dict(load_checkpoint(path, "reconstructed scene"), path, "reconstructed scene",
                    ("camera_gain", "camera_bias", "background", "cameras"))
    return {k: d[k] for k in ("camera_gain", "camera_bias", "background", "cameras")}


def shifted_poses(cam_to_world: torch.Tensor, left: torch.Tensor, shifts) -> torch.Tensor:
    """[S, C, 4, 4]: cameras [C, 4, 4] moved by each shift (m) along the ego's `left` [3]."""
    out = cam_to_world[None].repeat(len(shifts), 1, 1, 1)
    out[:, :, :3, 3] += torch.tensor(list(shifts), dtype=out.dtype)[:, None, None] * left.to(out.dtype)
    return out


def save(out_dir, g: Gaussians, fitres, cfg, seq, metrics: dict, extra: dict | None = None) -> dict:
    """Write scene.pt and card.json; returns the card."""
    from dataclasses import asdict

    out = Path(out_dir)
    atomic_torch_save({"gaussians": {k: getattr(g, k).detach().cpu() for k in FIELDS},
                       "camera_gain": fitres.camera_gain.cpu(), "camera_bias": fitres.camera_bias.cpu(),
                       "background": fitres.background.cpu(), "cameras": list(seq.cameras),
                       "K": seq.K.cpu(), "width": seq.width, "height": seq.height}, out / "scene.pt")
    card = {
        "kind": "gaussian_scene/background",
        "content_hash": gaussians_hash(g),  # sha256 of the Gaussians' tensors
        "data_hash": seq.data_hash(),  # sha256 of every file read
        "num_gaussians": len(g),
        "data": {"source": f"PandaSet sequence {seq.root.name}", "files": len(seq.files),
                 "license": "PandaSet (CC BY 4.0, as reported)"},
        "cameras": list(seq.cameras),
        "train_frames": [seq.frames[i] for i in fitres.train],
        "held_out_frames": [seq.frames[i] for i in fitres.held_out],
        "split_rule": f"frame index % {cfg.holdout_every} == {cfg.holdout_every - 1} held out",
        "config": asdict(cfg),
        "metrics": {"split": "held_out", "masked": "pixels of labelled cuboids (dilated) excluded",
                    "per_camera": metrics["per_camera"], "overall": metrics["overall"]},
        "fit_seconds": round(fitres.seconds, 1),
        "final_loss": fitres.losses[-1] if fitres.losses else None,
    }
    card.update(extra or {})
    atomic_write_text(out / "card.json", json.dumps(card, indent=2) + "\n")
    return card


def _figure(rows: list[list[torch.Tensor]], row_names, col_names, path, title: str) -> Path:
    """A grid of [H, W, 3] images in [0, 1] with labels (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = rows[0][0].shape[:2]
    scale = 2.6 / w * 100
    fig = Figure(figsize=(len(col_names) * w * scale / 100 + 0.6, len(rows) * h * scale / 100 + 0.7), dpi=150)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(col_names), squeeze=False)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(img.clamp(0, 1).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_names[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(row_names[r], fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _corrected(g, seq, fitres, cams, fidx, cam_to_world=None) -> torch.Tensor:
    from drivesim.render.reconstruct.fit import render_views

    with torch.no_grad():
        out = render_views(g, seq, cams, fidx, fitres.background, cam_to_world)
        return (out.rgb * fitres.camera_gain[cams, None, None] + fitres.camera_bias[cams, None, None]).clamp(0, 1)


def heldout_figure(path, g: Gaussians, seq, fitres, masks, frame_index: int, metrics: dict) -> Path:
    """Real held-out images (object masks shaded) over their renders, all cameras at one frame."""
    C = len(seq.cameras)
    cams, fidx = torch.arange(C), torch.full((C,), frame_index)
    real = seq.images[cams, fidx].float() / 255
    shade = masks[cams, fidx][..., None]
    real = torch.where(shade, real * 0.35 + torch.tensor([0.6, 0.0, 0.0]) * 0.65, real)
    rendered = _corrected(g, seq, fitres, cams, fidx).cpu()
    frame = seq.frames[frame_index]
    scores = {(r["camera"]): r for r in metrics["per_image"] if r["frame"] == frame}
    names = [f"{c}\n{scores[c]['psnr']:.1f} dB, SSIM {scores[c]['ssim']:.2f}" if c in scores else c
             for c in seq.cameras]
    cols = [list(real), list(rendered)]
    grid = [[cols[r][c] for c in range(C)] for r in range(2)]
    return _figure(grid, ["real (masked: red)", "rendered"], names, path,
                   f"held-out frame {frame}: real vs reconstructed ({seq.width}x{seq.height})")


def novel_view_figure(path, g: Gaussians, seq, fitres, frame_index: int, shifts=(-2, -1, 0, 1, 2),
                      cameras=("front", "left")) -> Path:
    """The ego moved sideways by each shift (m, + = left) at one frame, for `cameras`."""
    cams = [seq.cameras.index(c) for c in cameras if c in seq.cameras] or [0]
    left = seq.ego_left(frame_index)
    rows = []
    for c in cams:
        poses = shifted_poses(seq.cam_to_world[c, frame_index][None], left, shifts)[:, 0]  # [S, 4, 4]
        ci, fi = torch.full((len(shifts),), c), torch.full((len(shifts),), frame_index)
        renders = _corrected(g, seq, fitres, ci, fi, poses).cpu()
        rows.append([seq.images[c, frame_index].float() / 255] + list(renders))
    cols = ["real"] + [f"{s:+g} m" + (" (left)" if s > 0 else " (right)" if s < 0 else " (logged pose)")
                       for s in shifts]
    return _figure(rows, [seq.cameras[c] for c in cams], cols, Path(path),
                   f"frame {seq.frames[frame_index]}: ego shifted laterally (labelled objects are not in the scene)")
