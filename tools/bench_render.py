#!/usr/bin/env python
"""Splat rendering throughput: six-camera frames per second of drivesim.render.splat.rasterize.render.

    python tools/bench_render.py             # CPU: 112x200 and 224x400 x 20k and 100k Gaussians
    python tools/bench_render.py --quick     # CPU: 112x200 x 20k only (plus the grad path)
    python tools/bench_render.py --threads 2 # torch threads on CPU (default 1)

On a CUDA machine it adds 448x800 with the gsplat backend and the torch backend on the GPU.
The scene is a 100 m road-like area around the ego (ground, roadside clutter, ten car-sized
agent clusters with ids) seen by the nuScenes six-camera rig (configs/rigs/nuscenes.yaml).
The "splat cameras" row times what the simulator renders: `SplatCameras.render_row` of a
procedural scenario on the straight map (procedural background and agents, the Gaussians
within view range; the Gaussian count printed is the background's).
Each configuration runs in its own process so that its peak memory (max RSS on CPU,
torch.cuda.max_memory_allocated on GPU) is its own. Targets: >= 10 fps at 112x200 with 20k
Gaussians on one CPU thread; >= 100 fps at 448x800 on a GPU. Medians of wall time (ms/frame,
frames/s) and of this process's CPU time (cpu ms: less sensitive to other load on the machine).
glibc's malloc hands mid-size buffers back to the OS after each frame;
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=536870912
gave about 15 % on CPU before the compositor used scratch buffers, about 5 % since.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

from drivesim.render.splat.gaussians import Gaussians


def road_scene(n: int, seed: int = 0, device="cpu") -> Gaussians:
    """n Gaussians: 60 % ground (|x| < 50 m, |y| < 15 m), 30 % roadside clutter, 10 % in 10 cars.

    Sizes as a fitted scene would have them at 20k Gaussians: ground splats 0.15-0.45 m (std-dev;
    about 10 overlap at a ground point within 3 sigma), clutter 0.1-0.5 m, car parts 0.05-0.25 m."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen)
    n_ground, n_side = int(0.6 * n), int(0.3 * n)
    n_car = n - n_ground - n_side
    ground = torch.stack([100 * r(n_ground) - 50, 30 * r(n_ground) - 15, 0.02 * r(n_ground)], -1)
    g_scale = torch.stack([0.15 + 0.3 * r(n_ground), 0.15 + 0.3 * r(n_ground), torch.full((n_ground,), 0.02)], -1)
    side_y = torch.where(r(n_side) < 0.5, -1.0, 1.0) * (8 + 12 * r(n_side))
    side = torch.stack([100 * r(n_side) - 50, side_y, 8 * r(n_side)], -1)
    s_scale = (0.1 + 0.4 * r(n_side))[:, None].expand(n_side, 3) * (0.7 + 0.6 * r(n_side, 3))
    car_xy = torch.stack([80 * r(10) - 40, torch.tensor([-5.4, -1.8, 1.8, 5.4])[torch.randint(0, 4, (10,), generator=gen)]], -1)
    car_of = torch.randint(0, 10, (n_car,), generator=gen)
    car = torch.cat([car_xy[car_of] + (r(n_car, 2) - 0.5) * torch.tensor([4.5, 1.9]), 1.5 * r(n_car, 1)], -1)
    c_scale = 0.05 + 0.2 * r(n_car, 3)
    means = torch.cat([ground, side, car])
    scales = torch.cat([g_scale, s_scale, c_scale])
    quats = torch.randn(n, 4, generator=gen)
    quats[:n_ground] = torch.tensor([1.0, 0, 0, 0])  # flat ground splats
    opac = 0.3 + 0.7 * r(n)
    colors = r(n, 3)
    ids = torch.cat([torch.full((n_ground + n_side,), -1), car_of])
    return Gaussians(means, quats, scales, opac, colors, ids).to(device)


def ring_rig(width: int, height: int):
    from drivesim.render.splat.camera import load_rig
    try:
        return load_rig("nuscenes", width=width, height=height)
    except FileNotFoundError:  # a simple six-camera ring, 70 degree field of view
        from drivesim.render.splat.camera import Rig, look_rotation_opencv
        f = 0.5 * width / math.tan(math.radians(35))
        K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]]).expand(6, 3, 3).clone()
        ext = torch.eye(4).repeat(6, 1, 1)
        for k in range(6):
            ext[k, :3, :3] = look_rotation_opencv(2 * math.pi * k / 6)
            ext[k, 2, 3] = 1.5
        return Rig(tuple(f"cam{k}" for k in range(6)), K, ext, width, height, "ring")


def camera_frame(W: int, H: int):
    """(frame function, background size): SplatCameras.render_row of a procedural scenario."""
    import warnings

    from drivesim.core.scenario import ScenarioBatch
    from drivesim.traffic.procedural import procedural_scenario
    from drivesim.map.builders import build_map
    from drivesim.render.splat.camera import load_rig
    from drivesim.render.splat.sensors import SplatCameras
    from drivesim.sim.simulator import Simulator

    warnings.simplefilter("ignore")
    cams = SplatCameras(load_rig("nuscenes"), W, H)
    scenario = procedural_scenario(build_map("straight"), seed=0)
    state = Simulator(ScenarioBatch.build([scenario])).reset()
    background = cams.background(scenario)

    def frame():
        with torch.inference_mode():
            cams.render_row(background, state, 0)
    return frame, len(background)


def run_one(spec: dict) -> dict:
    from drivesim.render.splat.rasterize import render
    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    W, H = spec["width"], spec["height"]
    if spec.get("cameras"):
        frame, spec["gaussians"] = camera_frame(W, H)
        return {**spec, **timed(frame, device, spec["seconds"])}
    rig = ring_rig(W, H)
    g = road_scene(spec["gaussians"], device=device)
    V, K = rig.viewmats(0.0, 0.0, 0.0).to(device), rig.K.to(device)
    grad = spec["grad"]
    if grad:
        g = g.replace(**{k: getattr(g, k).clone().requires_grad_(True)
                         for k in ("means", "quats", "scales", "opacities", "colors")})

    def frame():
        if grad:
            out = render(g, V, K, W, H, backend=spec["backend"])
            (out.rgb.sum() + out.depth.sum()).backward()
        else:
            with torch.inference_mode():
                render(g, V, K, W, H, backend=spec["backend"])
        if device == "cuda":
            torch.cuda.synchronize()

    return {**spec, **timed(frame, device, spec["seconds"])}


def timed(frame, device: str, seconds: float) -> dict:
    """Medians of wall and CPU time per call of frame(), frames/s, peak memory."""
    frame()  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, cpu = [], []
    t_end = time.perf_counter() + seconds
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 200):
        t0, c0 = time.perf_counter(), time.process_time()
        frame()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ms = 1000 * sorted(times)[len(times) // 2]
    cpu_ms = 1000 * sorted(cpu)[len(cpu) // 2]
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"ms": ms, "cpu_ms": cpu_ms, "fps": 1000 / ms, "peak_mb": peak / 2**20, "runs": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="only 112x200 with 20k Gaussians (+ grad path)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    ap.add_argument("--no-cuda", action="store_true", help="skip the GPU rows even when CUDA is present")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON spec, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    base = {"threads": args.threads, "seconds": args.seconds, "grad": False}
    specs = []
    sizes = [(200, 112)] if args.quick else [(200, 112), (400, 224)]
    counts = [20_000] if args.quick else [20_000, 100_000]
    for W, H in sizes:
        for n in counts:
            specs.append({**base, "device": "cpu", "backend": "torch", "width": W, "height": H, "gaussians": n})
    specs.append({**base, "device": "cpu", "backend": "torch", "width": 200, "height": 112, "gaussians": 20_000,
                  "grad": True})
    specs.append({**base, "device": "cpu", "backend": "torch", "width": 200, "height": 112, "gaussians": 0,
                  "cameras": True})
    if torch.cuda.is_available() and not args.no_cuda:
        for backend in ("gsplat", "torch"):
            for n in ([20_000] if args.quick else [20_000, 100_000]):
                specs.append({**base, "device": "cuda", "backend": backend, "width": 800, "height": 448,
                              "gaussians": n})
    print(f"six-camera frames, torch {torch.__version__}, {args.threads} CPU thread(s)")
    header = (f"{'backend':<14}{'device':<7}{'resolution':>11}{'gaussians':>10}{'ms/frame':>10}{'cpu ms':>8}"
              f"{'frames/s':>10}{'peak MB':>9}  target")
    print(header)
    print("-" * len(header))
    for spec in specs:
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{spec['backend']:<14}{spec['device']:<7} {spec['width']}x{spec['height']} failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        name = "splat cameras" if r.get("cameras") else r["backend"] + ("+grad" if r["grad"] else "")
        target = ""
        if r["device"] == "cpu" and (r["width"], r["height"], r["gaussians"]) == (200, 112, 20_000) and not r["grad"]:
            target = f">= 10 fps: {'met' if r['fps'] >= 10 else 'NOT met'}" + (" (1 thread)" if r["threads"] == 1 else "")
        if r["device"] == "cuda" and r["width"] == 800:
            target = f">= 100 fps: {'met' if r['fps'] >= 100 else 'NOT met'}"
        print(f"{name:<14}{r['device']:<7}{r['height']:>5}x{r['width']:<5}{r['gaussians']:>10}{r['ms']:>10.1f}{r['cpu_ms']:>8.1f}"
              f"{r['fps']:>10.1f}{r['peak_mb']:>9.0f}  {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
