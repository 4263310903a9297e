"""Diffusion-refiner commands: `drivesim refiner train | eval | render`, registered by cli.py."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from drivesim.cli.overview import COMMANDS
from drivesim.render.cameras import DEFAULT_REFINER as DEFAULT_CHECKPOINT

PANDASET = "pandaset_002"


def add_commands(sub) -> None:
    """Add `refiner` with its subcommands to the `drivesim` parser's subparsers `sub`."""
    r = sub.add_parser("refiner", help=COMMANDS["refiner"])
    rsub = r.add_subparsers(dest="refiner_command", required=True)
    t = rsub.add_parser("train", help="train on self-supervised splat pairs (+ real PandaSet pairs); 21.9 min measured on one CPU thread")
    t.add_argument("--config", default=None, help="YAML of TrainConfig overrides (refiner:, data:, steps, ...)")
    t.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the config's)")
    t.add_argument("--minutes", type=float, default=None, help="stop the optimisation after this many minutes")
    t.add_argument("--real", default="auto", help="real pairs: a reconstruction artifact folder (scene.pt + card.json), "
                   "'auto' (out/reconstruct[/pandaset_002] if it exists, else fit a small one on PandaSet 002), 'fit', or 'none'")
    t.add_argument("--recon-iters", type=int, default=300, help="iterations of the small reconstruction (--real fit/auto)")
    t.add_argument("--quick", action="store_true", help="a tiny smoke run (one scenario, 20 steps, no real pairs)")
    t.add_argument("-o", "--out", default="out/refiner", help="checkpoint folder (refiner.pt, card.json, plots)")
    t.set_defaults(func=cmd_train)
    e = rsub.add_parser("eval", help="PSNR/SSIM on held-out real frames, action consistency, temporal stability, cost")
    e.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="refiner.pt or its folder")
    e.add_argument("--real", default="auto", help="as for train (the same held-out frames)")
    e.add_argument("--frames", type=int, default=100, help="frames of the temporal-stability rollout")
    e.add_argument("--gpu-size", default="448x256", help="WxH of the CUDA cost measurement (when CUDA is present)")
    e.add_argument("-o", "--out", default="out/refiner_eval", help="output folder (eval.json and figures)")
    e.set_defaults(func=cmd_eval)
    v = rsub.add_parser("render", help="a procedural scenario driven by the expert, six refined cameras beside the BEV")
    v.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="refiner.pt or its folder")
    v.add_argument("--map", default="curved", help="procedural map type: straight | curved | merge | intersection")
    v.add_argument("--seed", type=int, default=0, help="seed of the procedural scenario")
    v.add_argument("--rig", default="nuscenes", help="camera rig: nuscenes | pandaset | a rig YAML")
    v.add_argument("--render-size", default="112x64", help="WxH of each camera (the refiner needs multiples of 8)")
    v.add_argument("--steps", type=int, default=None, help="trajectory steps to render (default all)")
    v.add_argument("--sample-steps", type=int, default=None, help="refiner sampling steps (default: the checkpoint's)")
    v.add_argument("-o", "--out", default="out/refiner_render", help="output folder (the video)")
    v.set_defaults(func=cmd_render)


def data_root() -> Path:
    return Path(os.environ.get("DRIVESIM_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def real_scene(spec: str, width: int, height: int, log=print, iters: int = 300, checkpoint: Path | None = None):
    """(RealScene, seq, masks) for `spec` (see --real), or None for 'none' / no data. With a
    checkpoint folder holding real_scene.pt (the reconstruction it was trained against), 'auto' uses it."""
    if spec == "none":
        return None
    root = data_root() / PANDASET
    if not root.is_dir():
        log(f"refiner: no PandaSet sequence at DRIVESIM_DATA/{PANDASET}: no real pairs")
        return None
    from drivesim.io.pandaset import load
    from drivesim.render.reconstruct.fit import object_masks
    from drivesim.render.refiner.real_pairs import load_reconstruction, load_scene_file, small_reconstruction

    seq = load(root, size=(width, height))
    masks = object_masks(seq, 1)
    if spec == "auto" and checkpoint is not None and (checkpoint / "real_scene.pt").exists():
        try:
            return load_scene_file(checkpoint / "real_scene.pt"), seq, masks
        except ValueError as exc:  # CheckpointError: refused or malformed, named
            raise SystemExit(f"error: {exc}") from None
    found = [p for p in (Path("out/reconstruct") / PANDASET, Path("out/reconstruct")) if (p / "scene.pt").exists()]
    folder = (found[0] if found else Path("out/reconstruct")) if spec == "auto" else Path(spec)
    if spec not in ("auto", "fit") or (spec == "auto" and found):
        try:
            return load_reconstruction(folder, seq), seq, masks
        except (ValueError, FileNotFoundError) as exc:
            if spec != "auto":
                raise SystemExit(f"error: {exc}") from None
            log(f"refiner: cannot use {folder} ({exc}); fitting a small reconstruction instead")
    return small_reconstruction(seq, iters=iters, log=log), seq, masks


def cmd_train(args) -> int:
    import yaml

    from drivesim.render.refiner.data import DataConfig
    from drivesim.render.refiner.real_pairs import real_pairs
    from drivesim.render.refiner.train import TrainConfig, save, train

    raw = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    try:
        cfg = TrainConfig.from_dict(raw or {})
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {args.config}: {exc}") from None
    overrides = {}
    if args.quick:
        overrides.update(data=DataConfig(maps=("curved",), scenarios_per_map=1, clips_per_scenario=2, clip_len=3),
                         steps=20)
        args.real = "none"
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.minutes is not None:
        overrides["max_minutes"] = args.minutes
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **{k: (v.to_dict() if hasattr(v, "to_dict") else v)
                                                    for k, v in overrides.items()}})
    t0 = time.perf_counter()
    found = real_scene(args.real, cfg.data.width, cfg.data.height, iters=args.recon_iters)
    real, lineage = None, None
    if found is not None:
        scene, seq, masks = found
        real = real_pairs(scene, seq, masks, cfg.data.p_prev_target_real, cfg.data.seed)
        lineage = {**scene.lineage, "sequence": PANDASET, "images": len(real), "digest": real.digest()}
    from drivesim.core.run_log import RunLog

    with RunLog(args.out, "refiner") as run_log:  # history.jsonl (+ TensorBoard when installed)
        model, card = train(cfg, real, lineage, run_log=run_log)
    card["wall_seconds"] = round(time.perf_counter() - t0, 1)
    path = save(model, card, args.out)
    if found is not None:
        from drivesim.render.refiner.real_pairs import save_scene

        save_scene(scene, Path(args.out) / "real_scene.pt")
    print(f"wrote {path} ({model.n_params() / 1e6:.2f} M parameters, hash {json.loads((Path(args.out) / 'card.json').read_text())['hash']}), "
          f"loss {card['loss_first_100']:.4f} -> {card['loss_last_100']:.4f}, {card['wall_seconds'] / 60:.1f} min")
    return 0


def cmd_eval(args) -> int:
    import torch

    from drivesim.render.refiner import eval as ev
    from drivesim.render.refiner.real_pairs import evaluate_real
    from drivesim.render.refiner.train import load_refiner

    try:
        model = load_refiner(args.checkpoint)
    except (OSError, ValueError) as exc:  # CheckpointError names the file and what is wrong
        raise SystemExit(f"error: {exc}") from None
    ckpt_card = Path(args.checkpoint) / "card.json" if Path(args.checkpoint).is_dir() else Path(args.checkpoint).with_name("card.json")
    card = json.loads(ckpt_card.read_text()) if ckpt_card.exists() else {}
    data = card.get("config", {}).get("data", {})
    size = (int(data.get("width", 112)), int(data.get("height", 64)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": card.get("hash"), "lineage": card.get("lineage"), "variants": {}}
    ckpt_dir = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent
    found = real_scene(args.real, *size, checkpoint=ckpt_dir)
    examples = []
    for name, start_noise in (("mean start (default)", 0.0), ("noisy start", 1.0)):
        model.cfg = dataclasses.replace(model.cfg, start_noise=start_noise)
        r = report["variants"][name] = {"start_noise": start_noise}
        if found is not None:
            scene, seq, masks = found
            real = evaluate_real(model, scene, seq, masks)
            r["real"] = {k: v for k, v in real.items() if k not in ("examples", "rows")}
            report["reconstruction"] = scene.lineage
            examples = examples or real["examples"]
        r["action_consistency"] = ev.action_consistency(model, size=size)
        r["temporal"] = ev.temporal_stability(model, size=size, frames=args.frames)
    model.cfg = dataclasses.replace(model.cfg, start_noise=0.0)
    report["cost_cpu"] = {"size": f"{size[0]}x{size[1]}", **ev.cost(model, size=size)}
    if torch.cuda.is_available():
        from drivesim.render.splat.sensors import parse_size

        report["cost_cuda"] = {"size": args.gpu_size, **ev.cost(model, size=parse_size(args.gpu_size), device="cuda")}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    temporal_figure(report, out / "temporal.png")
    if examples:
        figure(examples, out / "real_heldout.png")
    print(f"wrote {out / 'eval.json'}, {out / 'temporal.png'}" + (f" and {out / 'real_heldout.png'}" if examples else ""))
    return 0


def print_table(r: dict) -> None:
    print(f"\nrefiner {r.get('checkpoint')}")
    for name, v in r["variants"].items():
        print(f"\n[{name}: start noise x{v['start_noise']:g}]")
        if "real" in v:
            x = v["real"]
            print(f"held-out real PandaSet frames ({x['images']} images, unmasked pixels):  PSNR dB   SSIM")
            print(f"  {'splat':58s} {x['psnr_splat']:6.2f}  {x['ssim_splat']:.4f}")
            print(f"  {'splat + refiner':58s} {x['psnr_refined']:6.2f}  {x['ssim_refined']:.4f}")
            if "temporal_splat" in x:
                print(f"temporal stability over the real sequence (depth-warped |frame - previous|, unlabelled pixels): "
                      f"splat {x['temporal_splat']:.4f}, refined {x['temporal_refined']:.4f}, real images "
                      f"{x['temporal_real']:.4f}")
        else:
            print("held-out real PandaSet frames: not evaluated (no data)")
        a = v["action_consistency"]
        print(f"action consistency, |refined shift - splat shift| over {a['patches']} patches (yaw +-0.02/0.05 rad, "
              f"lateral +-0.25/0.5 m): mean {a['mean_px']:.3f} px (yaw {a['yaw_mean_px']:.3f}, lateral "
              f"{a['lateral_mean_px']:.3f}), median {a['median_px']:.3f}, 90th pct {a['q90_px']:.3f}, max {a['max_px']:.2f}")
        print(f"zero action: refined(0) vs refined(action) shift mean {a['zero_action_shift_mean_px']:.3f} px, max "
              f"{a['zero_action_shift_max_px']:.3f} px; mean |difference| {a['zero_action_abs_diff']:.4f}")
        t = v["temporal"]
        print(f"temporal stability, {t['frames']} closed-loop frames (depth-warped |frame - previous|, static pixels): "
              f"splat {t['splat']:.4f}, refined {t['refined']:.4f}")
    c, t = r["cost_cpu"], next(iter(r["variants"].values()))["temporal"]
    print(f"\ncost per six-camera frame on CPU at {c['size']}: splat render {t['splat_s_per_frame']:.3f} s, refiner "
          f"1 step {c['1_step_s']:.3f} s, 3 steps {c['3_step_s']:.3f} s (torch threads: {torch_threads()})")
    if "cost_cuda" in r:
        g = r["cost_cuda"]
        print(f"cost per six-camera frame on CUDA at {g['size']}: 1 step {g['1_step_s'] * 1e3:.1f} ms, "
              f"3 steps {g['3_step_s'] * 1e3:.1f} ms")
    else:
        print("cost on a CUDA GPU: not measured (no CUDA device here)")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def figure(examples, path: Path) -> None:
    """Rows of (splat, refined, real) held-out front-camera images (first, middle, last held-out frame)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rows = [np.concatenate([(im.clamp(0, 1).numpy() * 255).astype(np.uint8) for im in ex], 1) for ex in examples]
    grid = np.concatenate(rows, 0)
    big = Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST)
    d = ImageDraw.Draw(big)
    w = examples[0][0].shape[1] * 3
    for i, name in enumerate(("splat", "splat + refiner", "real (held out)")):
        d.text((i * w + 4, 2), name, fill=(255, 255, 0))
    big.save(path)


def temporal_figure(report: dict, path: Path) -> None:
    """Per-frame depth-warped |frame - previous frame| of the closed-loop rollout: splat vs refined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for i, (name, v) in enumerate(report["variants"].items()):
        per = v["temporal"]["per_frame"]
        if i == 0:
            ax.plot(range(1, len(per["splat"]) + 1), per["splat"], color="k", lw=1.2, label=f"splat ({v['temporal']['splat']:.4f})")
        ax.plot(range(1, len(per["refined"]) + 1), per["refined"], lw=1, label=f"refined, {name} ({v['temporal']['refined']:.4f})")
    ax.set_xlabel("frame of the closed-loop rollout")
    ax.set_ylabel("mean |frame - warped previous|")
    ax.set_title("temporal stability (static pixels; lower is steadier)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_render(args) -> int:
    from drivesim.render.refiner.cameras import write_refined_video
    from drivesim.render.refiner.data import expert_rollout
    from drivesim.render.refiner.train import load_refiner

    try:
        model = load_refiner(args.checkpoint)
    except (OSError, ValueError) as exc:  # CheckpointError names the file and what is wrong
        raise SystemExit(f"error: {exc}") from None
    scenario, traj = expert_rollout(args.map, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = write_refined_video(scenario, traj, out / f"{scenario.name}_refined.mp4", model, rig=args.rig,
                               size=args.render_size, steps=args.steps, sample_steps=args.sample_steps)
    print(f"wrote {path}: {video_summary(path, scenario.dt)}, rendered in {time.perf_counter() - t0:.1f} s")
    return 0


def video_summary(path, dt: float) -> str:
    """'N frames, S s of video' of a written video (read back from the file)."""
    import imageio.v3 as iio

    frames = iio.improps(path).shape[0]
    return f"{frames} frames, {frames * dt:.1f} s of video"


def simulate_refined(args, scenario, traj: dict, out: Path) -> Path:
    """`drivesim simulate --render refined`: the surround video at the refined fidelity (the
    refiner's checkpoint from --refiner, default policies/refiner; seeded by --seed)."""
    from drivesim.core.safe_io import file_name
    from drivesim.render.refiner.cameras import write_refined_video
    from drivesim.render.refiner.train import load_refiner

    try:
        model = load_refiner(args.refiner or DEFAULT_CHECKPOINT)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    t0 = time.perf_counter()
    every = getattr(args, "render_every", 1)
    video = write_refined_video(scenario, traj, out / f"{file_name(scenario.name)}_refined.{args.format}", model,
                                rig=args.rig, size=args.render_size, every=every, seed=getattr(args, "seed", 0))
    print(f"rendered {-(-len(traj['x']) // every)} refined surround frames ({args.rig}, {args.render_size} per camera, "
          f"refiner {model.n_params() / 1e6:.2f} M parameters) in {time.perf_counter() - t0:.1f} s")
    return video
