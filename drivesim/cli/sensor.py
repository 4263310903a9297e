"""Sensor world model commands (`drivesim reconstruct`, ...), registered by cli.py.

Kept beside cli.py so that the command file stays readable.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from drivesim.cli.overview import COMMANDS

RECONSTRUCT_HELP = """\
Fit a background Gaussian scene to a real PandaSet sequence (the WorldEngine way) through the
shared rasterizer, then score it on held-out frames and drive it at novel poses.

Labelled objects (every cuboid of the frame, dilated) are masked out of the loss and the metrics.
Frames with index % 8 == 7 are held out (7 of every 8 frames train). Without lidar points the
Gaussians start from training pixels lifted to a ground / street-wall / sky-dome depth prior.

Outputs in --out: scene.pt (the Gaussians), card.json (content hash, frames, config, data hash,
wall time, PSNR/SSIM per camera), heldout.png (real vs rendered, held-out frame) and
novel_views.png (ego shifted laterally by -2, -1, 0, +1, +2 m). The defaults (240x135, all six
cameras) are sized for a CPU run of about 20 minutes on 2 cores; on a CUDA GPU use e.g.
--device cuda --size 1920x1080 --gaussians 1000000 --iters 7000.
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 240x135, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def add_commands(sub) -> None:
    """Add the sensor-model subcommands to the `drivesim` parser's subparsers `sub`."""
    from drivesim.io.pandaset import CAMERAS
    from drivesim.render.reconstruct.fit import ReconConfig

    d = ReconConfig()
    rp = sub.add_parser("reconstruct", help=COMMANDS["reconstruct"],
                        description=RECONSTRUCT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rsub = rp.add_subparsers(dest="source", required=True)
    p = rsub.add_parser("pandaset", help="a PandaSet sequence folder (devkit layout)", description=RECONSTRUCT_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(os.environ.get("DRIVESIM_DATA", "../shared/data")) / "pandaset_002"),
                   help="sequence folder (default: $DRIVESIM_DATA/pandaset_002)")
    p.add_argument("--out", default="out/reconstruct/pandaset_002", help="artifact folder (default: %(default)s)")
    p.add_argument("--size", type=_size, default=(d.width, d.height),
                   help=f"fitting resolution WxH (default {d.width}x{d.height}, 1/8 of 1920x1080)")
    p.add_argument("--iters", type=int, default=d.iters, help="optimisation steps (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step (default %(default)s)")
    p.add_argument("--gaussians", type=int, default=d.n_gaussians, help="initial Gaussians (default %(default)s)")
    p.add_argument("--cameras", nargs="+", choices=CAMERAS, default=list(d.cameras),
                   help="cameras to fit (default: all six)")
    p.add_argument("--frame", type=int, default=55, help="frame of the figures (default 55, held out)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the Gaussians' initialisation and the batches")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reconstruct_pandaset)


def cmd_reconstruct_pandaset(args) -> int:
    import torch

    from drivesim.io.errors import ImportDataError
    from drivesim.io.pandaset import load
    from drivesim.render.reconstruct import fit as rc
    from drivesim.render.reconstruct import artifact as art

    t0 = time.perf_counter()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cfg = rc.ReconConfig(width=args.size[0], height=args.size[1], cameras=tuple(args.cameras), iters=args.iters,
                         batch=args.batch, n_gaussians=args.gaussians, seed=args.seed)
    try:
        seq = load(args.data, size=args.size, cameras=cfg.cameras)
    except (ImportDataError, MemoryError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"loaded {len(seq.cameras)} cameras x {len(seq.frames)} frames at {seq.width}x{seq.height} "
          f"from {args.data} ({time.perf_counter() - t0:.1f} s)")
    masks = rc.object_masks(seq, cfg.mask_dilate)
    result = rc.fit(seq, cfg, masks, device=device, progress=not args.quiet)
    g = rc.to_gaussians(result.raw)
    metrics = rc.evaluate(g, seq, result, masks)
    out = Path(args.out)
    frame = min(result.held_out, key=lambda f: abs(seq.frames[f] - args.frame))
    out.mkdir(parents=True, exist_ok=True)
    cpu = g.to("cpu")
    figs = [art.heldout_figure(out / "heldout.png", cpu, seq, result, masks, frame, metrics),
            art.novel_view_figure(out / "novel_views.png", cpu, seq, result, frame)]
    wall = time.perf_counter() - t0
    card = art.save(out, g.to("cpu"), result, cfg, seq, metrics,
                    {"wall_seconds": round(wall, 1), "device": device, "threads": torch.get_num_threads(),
                     "figures": [f.name for f in figs], "figure_frame": seq.frames[frame]})
    print(format_table(metrics))
    print(f"{len(g)} Gaussians (sha256 {card['content_hash'][:12]}), fit {result.seconds:.0f} s, "
          f"wall {wall:.0f} s on {device}")
    print(f"wrote {out / 'scene.pt'}, {out / 'card.json'}, {figs[0]}, {figs[1]}")
    return 0


def format_table(metrics: dict) -> str:
    lines = ["held-out frames, labelled objects masked", f"{'camera':<12} {'PSNR dB':>8} {'SSIM':>6} {'images':>6}"]
    rows = list(metrics["per_camera"].items()) + [("overall", metrics["overall"])]
    for name, m in rows:
        lines.append(f"{name:<12} {m['psnr']:>8.2f} {m['ssim']:>6.3f} {m['images']:>6d}")
    return "\n".join(lines)
