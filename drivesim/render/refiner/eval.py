"""Evaluation of the refiner: real-frame fidelity, action consistency, temporal stability, cost.

- `action_consistency`: the ego pose of a frame is perturbed in yaw and laterally; the displacement
  between the base and perturbed images is measured patch by patch (phase correlation with a
  sub-pixel peak, 32 x 32 Hann-windowed grey patches on a 16 px grid) for the splat images and for
  the refined images; the error is |shift_refined - shift_splat| in px over textured patches. Zeroing
  the action input: the shift between refined(action) and refined(0) at the same pose.
- `temporal_stability`: a closed-loop expert rollout rendered for `frames` frames at splat and
  refined fidelity; per frame the previous frame is warped into the current view with the current
  splat depth and the ego motion, and the mean absolute difference over warp-valid, static pixels
  (no agent) is averaged over frames.
- `cost`: seconds per six-camera frame (splat render, refiner one step, three steps).
"""

from __future__ import annotations

import math
import time

import torch

from drivesim.render.refiner.model import Refiner
from drivesim.render.refiner.warp import warp_previous
from drivesim.render.splat.sensors import TrajectoryStep


def _hann(n: int) -> torch.Tensor:
    w = torch.hann_window(n, periodic=False, dtype=torch.float64)
    return w[:, None] * w[None, :]


def patch_shifts(a: torch.Tensor, b: torch.Tensor, size: int = 32, stride: int = 16):
    """Per-patch displacement (dx, dy) in px of content from image a to image b ([3, H, W] each),
    and the patches' texture (grey std). Returns shifts [P, 2], texture [P]."""
    ga, gb = a.double().mean(0), b.double().mean(0)
    H, W = ga.shape
    win = _hann(size)
    shifts, texture = [], []
    for i in range(0, H - size + 1, stride):
        for j in range(0, W - size + 1, stride):
            pa, pb = ga[i:i + size, j:j + size], gb[i:i + size, j:j + size]
            texture.append(float(pa.std()))
            fa, fb = torch.fft.fft2((pa - pa.mean()) * win), torch.fft.fft2((pb - pb.mean()) * win)
            r = fb * fa.conj()
            corr = torch.fft.ifft2(r / r.abs().clamp_min(1e-12)).real
            k = int(corr.argmax())
            py, px = divmod(k, size)
            sub = []
            for axis, p in ((1, px), (0, py)):
                idx = lambda d: (py, (p + d) % size) if axis == 1 else ((p + d) % size, px)
                c0, cm, cp = corr[idx(0)], corr[idx(-1)], corr[idx(1)]
                den = cm - 2 * c0 + cp
                off = float(0.5 * (cm - cp) / den) if abs(float(den)) > 1e-12 else 0.0
                v = p + max(-0.5, min(0.5, off))
                sub.append(v - size if v > size / 2 else v)
            shifts.append(sub)
    return torch.tensor(shifts), torch.tensor(texture)


def warped_difference(cur: torch.Tensor, prev: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
                      T_prev_from_cur: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean |cur - prev warped into the current view| ([N, 3, H, W] images; warp with the current
    depth, alpha [N, H, W] and the camera motion) over pixels seen in both frames and in mask [N, 1, H, W]."""
    w, seen = warp_previous(prev, depth, K, T_prev_from_cur, alpha)
    m = seen if mask is None else seen * mask
    return float(((cur - w).abs() * m).sum() / (3 * m.sum()).clamp_min(1))


def _rollout(map_type: str, seed: int):
    from drivesim.render.refiner.data import expert_rollout

    return expert_rollout(map_type, seed)


def _cameras(refiner: Refiner, rig: str, width: int, height: int, seed: int = 0, dt: float = 0.1):
    from drivesim.render.splat.camera import load_rig
    from drivesim.render.refiner.cameras import RefinedCameras
    from drivesim.render.splat.sensors import SplatCameras

    splat = SplatCameras(load_rig(rig), width, height)
    return splat, RefinedCameras(splat, refiner, seed=seed, rig_name=rig, dt=dt)


class _Pose(TrajectoryStep):
    """A trajectory step with the ego pose moved (x, y, yaw offsets in the ego frame)."""

    def __init__(self, traj: dict, t: int, lateral: float = 0.0, dyaw: float = 0.0):
        super().__init__(traj, t)
        yaw = float(self.yaw[0, 0])
        self.x[0, 0] -= lateral * math.sin(yaw)
        self.y[0, 0] += lateral * math.cos(yaw)
        self.yaw[0, 0] += dyaw


def action_consistency(refiner: Refiner, rig: str = "nuscenes", size=(112, 64), map_type: str = "curved",
                       seed: int = 101, t: int = 40, yaws=(-0.05, -0.02, 0.02, 0.05), shifts=(-0.5, -0.25, 0.25, 0.5),
                       min_texture: float = 0.03) -> dict:
    """Mean and max |shift_refined - shift_splat| (px) over yaw and lateral perturbations, and the
    shift of refined(action) against refined(zero action)."""
    scenario, traj = _rollout(map_type, seed)
    splat, refined = _cameras(refiner, rig, *size)
    bg = splat.background(scenario)

    def both(state, prev_state=None, zero_action=False):
        refined.reset()
        if prev_state is not None:
            refined.render_row(bg, prev_state, 0)
        s = splat.render_row(bg, state, 0).rgb.permute(0, 3, 1, 2)
        refined.zero_action = zero_action
        r = refined.render_row(bg, state, 0).rgb.permute(0, 3, 1, 2)
        refined.zero_action = False
        return s, r

    prev = _Pose(traj, t - 1)
    s0, r0 = both(_Pose(traj, t), prev)
    errs, per_kind = [], {}
    for kind, values in (("yaw", yaws), ("lateral", shifts)):
        for v in values:
            pose = _Pose(traj, t, dyaw=v) if kind == "yaw" else _Pose(traj, t, lateral=v)
            s1, r1 = both(pose, prev)
            for c in range(s0.shape[0]):
                ds, tex = patch_shifts(s0[c], s1[c])
                dr, _ = patch_shifts(r0[c], r1[c])
                keep = tex > min_texture
                e = (dr - ds)[keep].norm(dim=1)
                errs.append(e)
                per_kind.setdefault(kind, []).append(e)
    # zeroing the action at the same pose and history
    _, rz = both(_Pose(traj, t), prev, zero_action=True)
    zero = []
    for c in range(r0.shape[0]):
        d, tex = patch_shifts(r0[c], rz[c])
        zero.append(d[tex > min_texture].norm(dim=1))
    e, z = torch.cat(errs), torch.cat(zero)
    return {"mean_px": float(e.mean()), "median_px": float(e.median()), "q90_px": float(e.quantile(0.9)),
            "max_px": float(e.max()), "patches": int(e.numel()),
            **{f"{k}_mean_px": float(torch.cat(v).mean()) for k, v in per_kind.items()},
            "zero_action_shift_mean_px": float(z.mean()), "zero_action_shift_max_px": float(z.max()),
            "zero_action_abs_diff": float((r0 - rz).abs().mean())}


def temporal_stability(refiner: Refiner, rig: str = "nuscenes", size=(112, 64), map_type: str = "intersection",
                       seed: int = 102, frames: int = 100, progress: bool = False) -> dict:
    """Mean |frame_t - warp(frame_t-1)| over warp-valid static pixels, splat and refined, over
    `frames` consecutive frames of a closed-loop expert rollout; also the seconds per frame."""
    from tqdm import tqdm

    scenario, traj = _rollout(map_type, seed)
    splat, refined = _cameras(refiner, rig, *size, dt=scenario.dt)
    bg = splat.background(scenario)
    T = min(frames, len(traj["x"]))
    K = splat.rig.K.float()
    prev = None
    diffs = {"splat": [], "refined": []}
    t_splat = t_ref = 0.0
    for t in tqdm(range(T), desc="temporal", disable=not progress):
        st = TrajectoryStep(traj, t)
        t0 = time.perf_counter()
        s = splat.render_row(bg, st, 0)
        t1 = time.perf_counter()
        r = refined.render_row(bg, st, 0)  # renders the splats again inside, then refines
        t_splat, t_ref = t_splat + (t1 - t0), t_ref + (time.perf_counter() - t1) - (t1 - t0)
        view = splat.rig.viewmats(float(st.x[0, 0]), float(st.y[0, 0]), float(st.yaw[0, 0])).float()
        cur = {"splat": s.rgb.permute(0, 3, 1, 2), "refined": r.rgb.permute(0, 3, 1, 2)}
        if prev is not None:
            Trel = prev["view"] @ torch.linalg.inv(view)
            static = (s.agent_id < 0)[:, None].float()
            for k in ("splat", "refined"):
                diffs[k].append(warped_difference(cur[k], prev[k], s.depth, K, Trel, s.alpha, static))
        prev = {**cur, "view": view}
    mean = lambda v: sum(v) / max(1, len(v))
    return {"frames": T, "splat": mean(diffs["splat"]), "refined": mean(diffs["refined"]),
            "splat_s_per_frame": t_splat / T, "refiner_s_per_frame": t_ref / T,
            "per_frame": {k: [round(x, 6) for x in v] for k, v in diffs.items()}}


def cost(refiner: Refiner, size=(112, 64), cameras: int = 6, repeats: int = 5, device="cpu") -> dict:
    """Seconds per `cameras`-image frame of the refiner alone (1 and 3 steps), best of `repeats`."""
    w, h = size
    dev = torch.device(device)
    m = refiner.to(dev)
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(cameras, 3, h, w, generator=g).to(dev)
    depth = (1 + 30 * torch.rand(cameras, h, w, generator=g)).to(dev)
    alpha = torch.ones(cameras, h, w, device=dev)
    prev, valid = rgb.clone(), torch.ones(cameras, 1, h, w, device=dev)
    act, cam = torch.zeros(cameras, 4, device=dev), torch.arange(cameras, device=dev)
    K = torch.tensor([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]], device=dev).expand(cameras, 3, 3)
    out = {}
    for steps in (1, 3):
        best = math.inf
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            wp, ok = warp_previous(prev, depth, K, torch.eye(4, device=dev).expand(cameras, 4, 4), alpha)
            m.sample(rgb, depth, alpha, wp, ok, act, cam, steps=steps, noise=torch.randn_like(rgb))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        out[f"{steps}_step_s"] = best
    refiner.to("cpu")
    return out
