"""Training the diffusion refiner on offline pairs, and its checkpoint artifact.

`train(cfg)` builds the pairs (self-supervised degraded-vs-full renders on procedural scenarios,
plus real PandaSet pairs when a reconstruction artifact is given), trains the EDM denoiser with
Adam on the EDM loss plus a temporal loss on consecutive frames (`temporal_loss`), and `save`
writes `refiner.pt` (config + weights) and `card.json` (content hash, lineage: scenarios, splat
code version, reconstruction artifact and its held-out frames, data digest, config, losses, wall
time). `load_refiner(path)` reads it back and checks the layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from drivesim.core.checkpoint import CheckpointError, check_finite, expect_dict, load_checkpoint
from drivesim.core.config import config_from_dict
from drivesim.core.safe_io import atomic_torch_save, atomic_write_text
from drivesim.render.refiner.loss import edm_loss
from drivesim.render.refiner.model import Refiner, RefinerConfig
from drivesim.render.refiner.warp import warp_previous
from drivesim.render.refiner.data import DataConfig, PairSet, synthetic_pairs

SPLAT_FILES = ("drivesim/render/splat/rasterize.py", "drivesim/render/splat/projection.py",
               "drivesim/render/splat/scene.py", "drivesim/render/splat/gaussians.py")


@dataclass(frozen=True)
class TrainConfig:
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 4000
    batch: int = 8
    lr: float = 1e-3  # Adam, cosine-decayed to 5 % over the steps
    real_fraction: float = 0.5  # of each batch, when real pairs exist
    temporal_weight: float = 1.0  # weight of the temporal loss (0: off), relative to the EDM loss at sigma_start
    temporal_batch: int = 4  # consecutive-frame samples per step for it (drawn apart from the main batch)
    p_self_prev: float = 0.5  # temporal samples whose previous-frame channels are the refiner's own warped output
    max_minutes: float = 26.0  # stop the optimisation early past this (the card says so); data takes 1.5-3 min more
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        return config_from_dict(TrainConfig, d, "refiner training")


def splat_version(root: Path | None = None) -> str:
    """Content hash of the splat code (rasterizer, scene builder, Gaussians) the pairs were rendered with."""
    root = root or Path(__file__).resolve().parents[3]
    h = hashlib.sha256()
    for rel in SPLAT_FILES:
        p = root / rel
        h.update(p.read_bytes() if p.exists() else b"missing")
    return h.hexdigest()[:16]


def training_batch(model: Refiner, b: dict, gen: torch.Generator) -> tuple:
    """(target, cond_images, action, camera, prev_sigma, splat, loss_mask) in network units, with
    noise augmentation of the previous frame and its dropout (first frames)."""
    cfg = model.cfg
    N = b["target"].shape[0]
    prev_sigma = torch.rand(N, generator=gen) * cfg.prev_noise_max
    valid = b["prev_valid"] * (torch.rand(N, 1, 1, 1, generator=gen) >= cfg.p_drop_prev).float()
    prev = (b["prev"] + 0.5 * prev_sigma.view(-1, 1, 1, 1) * torch.randn(b["prev"].shape, generator=gen)).clamp(0, 1)
    cond = model.pack(b["rgb"], b["depth"], b["alpha"], prev, valid)
    return b["target"] * 2 - 1, cond, b["action"], b["camera"], prev_sigma, b["rgb"] * 2 - 1, b["loss_mask"]


def masked_edm_loss(model, target, cond, action, camera, prev_sigma, splat, mask, gen):
    """edm_loss over loss-mask pixels: masked pixels take the denoiser's own output as target."""
    if bool(mask.all()):
        return edm_loss(model, target, cond, action, camera, prev_sigma, splat, gen)
    # pixels without a target (labelled objects in real images) are filled with the splat render
    target = torch.where(mask > 0.5, target, splat)
    return edm_loss(model, target, cond, action, camera, prev_sigma, splat, gen)


def temporal_loss(model: Refiner, cur: dict, prev: dict, gen: torch.Generator, p_self: float) -> torch.Tensor:
    """The temporal loss on consecutive frames of the same cameras (`PairSet.batch` dicts `cur` at t
    and `prev` at t - 1): the change of the refiner's error over time, in the current view,

        mean over pixels seen in both frames of ((o_t - y_t) - warp(o_t-1 - y_t-1))^2 / sigma_data^2,

    where o is the sampler's output (one step from the start, as `Refiner.sample` runs) and y the
    target. It is zero when the output changes from frame to frame exactly as the target does, so it
    asks for no blur or copying, only for errors that do not flicker. o_t-1 is computed without
    gradient; for a `p_self` fraction of samples it is also the previous frame the refiner is given at
    t (warped), as when it runs on its own outputs in the simulator."""
    cfg = model.cfg
    N = cur["target"].shape[0]
    zeros = torch.zeros_like(prev["rgb"])
    o_prev = model.sample(prev["rgb"], prev["depth"], prev["alpha"], prev["prev"], prev["prev_valid"], prev["action"],
                          prev["camera"], steps=1, noise=zeros)
    # one warp of the stacked previous output, target and loss mask (the same geometry for all three)
    stacked, seen = warp_previous(torch.cat([o_prev, prev["target"], prev["loss_mask"]], 1), cur["depth"], cur["K"],
                                  cur["T_prev"], cur["alpha"])
    w_out, w_target, w_mask = stacked.split([3, 3, 1], dim=1)
    own = (torch.rand(N, generator=gen) < p_self).view(-1, 1, 1, 1)
    cond = model.pack(cur["rgb"], cur["depth"], cur["alpha"], torch.where(own, w_out, cur["prev"]),
                      torch.where(own, seen, cur["prev_valid"]))
    sigma = torch.full((N,), cfg.sigma_start)
    x = cfg.sigma_start * cfg.start_noise * torch.randn(cur["rgb"].shape, generator=gen)
    den = model(x, sigma, cond, cur["action"], cur["camera"], torch.full((N,), cfg.prev_noise_sample))
    err = (cur["rgb"] * 2 - 1 + den) - (cur["target"] * 2 - 1)  # [-1, 1] units
    err_prev = (w_out - w_target) * 2
    m = seen * cur["loss_mask"] * (w_mask > 0.99).float()
    return (((err - err_prev) ** 2) * m).sum() / (3 * m.sum()).clamp_min(1) / cfg.sigma_data ** 2


def draw_batch(sets: list[tuple[PairSet, int]], gen: torch.Generator, consecutive: bool = False) -> tuple[dict, dict | None]:
    """A batch from (pair set, count) parts; with `consecutive`, only samples whose previous frame is
    kept, and that previous frame's batch too."""
    cur, prev = [], []
    for ps, n in sets:
        if not n:
            continue
        if consecutive:
            pool = torch.nonzero(ps.prev_offset > 0).flatten()
            if not len(pool):
                continue
            idx = pool[torch.randint(len(pool), (n,), generator=gen)]
            prev.append(ps.batch(ps.previous(idx)))
        else:
            idx = torch.randint(len(ps), (n,), generator=gen)
        cur.append(ps.batch(idx))
    cat = lambda parts: {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else None
    return cat(cur), cat(prev)


def train(cfg: TrainConfig, real: PairSet | None = None, real_lineage: dict | None = None, progress: bool = True,
          log=print, run_log=None) -> tuple[Refiner, dict]:
    """Train a refiner; returns it and its card (lineage, losses, timings). `run_log`
    (core/run_log.RunLog) gets the losses every 20 steps."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    synth, scenario_names = synthetic_pairs(cfg.data, progress=progress)
    t_data = time.perf_counter() - t0
    log(f"refiner data: {len(synth)} self-supervised images from {len(scenario_names)} scenarios"
        + (f", {len(real)} real PandaSet images" if real is not None else ", no real pairs") + f" ({t_data:.0f} s)")
    model = Refiner(cfg.refiner)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_real = round(cfg.batch * cfg.real_fraction) if real is not None and len(real) else 0
    nt = cfg.temporal_batch if cfg.temporal_weight > 0 else 0
    nt_real = round(nt * cfg.real_fraction) if n_real else 0
    losses, t_losses, t1, stopped = [], [], time.perf_counter(), None
    bar = tqdm(range(cfg.steps), desc="refiner", disable=not progress, mininterval=5.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        b, _ = draw_batch([(synth, cfg.batch - n_real), (real, n_real)], gen)
        loss = edm = masked_edm_loss(model, *training_batch(model, b, gen), gen)
        if nt:
            cur, prev = draw_batch([(synth, nt - nt_real), (real, nt_real)], gen, consecutive=True)
            if cur is not None:
                t_loss = temporal_loss(model, cur, prev, gen, cfg.p_self_prev)
                t_losses.append(t_loss.item())
                loss = loss + cfg.temporal_weight * t_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(edm.item())
        if run_log is not None and step % 20 == 0:
            run_log.log(step, {"step": step, "edm_loss": losses[-1], "temporal_loss": t_losses[-1] if t_losses else None,
                               "lr": opt.param_groups[0]["lr"]})
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.4f}",
                            temporal=f"{sum(t_losses[-100:]) / max(1, len(t_losses[-100:])):.4f}")
        if (time.perf_counter() - t1) / 60 > cfg.max_minutes:
            stopped = step + 1
            log(f"refiner: stopped after {stopped} of {cfg.steps} steps (max_minutes {cfg.max_minutes})")
            break
    model.eval()
    card = {
        "kind": "drivesim refiner",
        "config": cfg.to_dict(),
        "params": model.n_params(),
        "lineage": {"synthetic_scenarios": scenario_names, "synthetic_images": len(synth),
                    "synthetic_digest": synth.digest(), "splat_version": splat_version(),
                    "real": real_lineage if real is not None else None},
        "steps_done": stopped or cfg.steps,
        "loss_first_100": sum(losses[:100]) / max(1, len(losses[:100])),
        "loss_last_100": sum(losses[-100:]) / max(1, len(losses[-100:])),
        "temporal_loss_first_100": sum(t_losses[:100]) / max(1, len(t_losses[:100])),
        "temporal_loss_last_100": sum(t_losses[-100:]) / max(1, len(t_losses[-100:])),
        "data_seconds": round(t_data, 1),
        "train_seconds": round(time.perf_counter() - t1, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    return model, card


def state_hash(model: Refiner) -> str:
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


def save(model: Refiner, card: dict, out_dir) -> Path:
    """out_dir/refiner.pt (config + weights) and out_dir/card.json (with the weights' hash)."""
    out = Path(out_dir)
    card = {**card, "hash": state_hash(model)}
    atomic_torch_save({"kind": "drivesim refiner", "config": model.cfg.to_dict(), "state_dict": model.state_dict(),
                       "hash": card["hash"]}, out / "refiner.pt")
    atomic_write_text(out / "card.json", json.dumps(card, indent=2))
    return out / "refiner.pt"


def load_refiner(path) -> Refiner:
    """A refiner from refiner.pt (or its folder), read as plain data (weights_only: a file that
    names any other object is refused, never run); a checkpoint of another kind or layout, NaN
    weights or weights that differ from the recorded hash are a CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "refiner.pt"
    ckpt = load_checkpoint(path, "refiner checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "drivesim refiner":
        raise CheckpointError(f"{path} is not a drivesim refiner checkpoint")
    expect_dict(ckpt, path, "refiner checkpoint", ("config", "state_dict"))
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: config and state_dict must be dicts")
    check_finite(ckpt["state_dict"], path, "refiner checkpoint")
    try:
        model = Refiner(RefinerConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().split("\n")[0][:300]
        raise CheckpointError(f"{path}: the weights or config do not fit the refiner ({type(exc).__name__}: {reason})") from None
    model.eval()
    if ckpt.get("hash") and state_hash(model) != ckpt["hash"]:
        raise CheckpointError(f"{path}: weights do not match the hash recorded in the checkpoint")
    return model
