"""Train the learned traffic model (traffic_model/model.py) on real logs plus procedural traffic.

`drivesim train traffic` runs `train_traffic(TrafficTrainConfig(...), out)`:

1. Data. Real nuScenes logs (ScenarioNet pickles in `$DRIVESIM_DATA/scenarionet_nuscenes`)
   minus the held-out scenes, and procedural scenarios (4 map types, IDM/MOBIL traffic)
   rolled out and recorded as logs. Samples: every logged step of every moving vehicle, plus
   `noisy_copies` copies with perturbed poses and speeds labelled back to the log (noise
   injection), see traffic_model/data.py.
2. Behaviour cloning: cross-entropy on the action labels, minibatches mixing real and
   procedural samples (`real_fraction`), AdamW with a cosine schedule.
3. Closed-loop rounds (DAgger, against compounding error over 8 s): the current model drives
   the training windows at the sampling temperature; the states it visits are labelled back
   towards the log and added to the data; training continues.

Writes the artifact (model.pt + card.json with hash, config, lineage: scenes, held-out
scenes, their content hashes, procedural config and seeds; metrics) and a training curve PNG.
Deterministic for a seed on one machine. `minutes` caps the wall time: past it, the remaining
iterations are skipped and the card says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import drivesim
from drivesim.traffic_model.model import LearnedTrafficConfig, TrafficModel, entropy_bits, save
from drivesim.traffic_model.tokens import Tokens, mirror_tokens
from drivesim.core.config import ConfigError, config_to_dict
from drivesim.core.run_log import RunLog
from drivesim.traffic_model.data import (LabelConfig, Samples, Source, closed_loop_samples, driven_vehicles, procedural_logs,
                                         smooth_log, snapshot_samples)

HELD_OUT = ("scene-0916", "scene-1077")  # the last two of the 8 nuScenes mini scenes by name, fixed before any result


@dataclass(frozen=True)
class TrafficTrainConfig:
    seed: int = 0
    held_out: tuple[str, ...] = HELD_OUT  # real scenes never trained on (matched in scenario names)
    model: LearnedTrafficConfig = field(default_factory=LearnedTrafficConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    noise: tuple[float, float, float, float] = (0.5, 0.2, 0.02, 0.3)  # std: longitudinal m, lateral m, yaw rad, speed m/s
    noisy_copies: int = 2  # perturbed copies of every real snapshot
    smooth_steps: int = 9  # moving average over the real logs before labelling (2 Hz annotation noise)
    procedural_scenarios: int = 32
    procedural_maps: tuple[str, ...] = ("straight", "curved", "merge", "intersection")
    procedural_density: tuple[float, float] = (1.0, 3.0)  # vehicles per lane per 100 m, uniform
    procedural_duration: float = 15.0  # s
    procedural_every: int = 2  # log steps between procedural snapshots
    real_fraction: float = 0.5  # share of real-log samples in a minibatch
    mirror: float = 0.5  # probability that a sample is mirrored left-right (augmentation)
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    iterations: int = 3000  # behaviour-cloning iterations
    rounds: int = 3  # closed-loop (DAgger) rounds
    round_iterations: int = 1000
    round_steps: int = 60  # steps each closed-loop window is driven
    round_rollouts: int = 2  # rollouts per window
    round_starts: tuple[int, ...] = (0, 40, 80, 120)  # window starts in the real logs (procedural: 0)
    round_temperature: float = 1.0
    minutes: float = 15.0  # wall-clock cap for the whole run

    def validate_config(self, where: str = "train") -> None:
        if not 0 <= self.real_fraction <= 1 or self.batch_size < 1 or self.iterations < 0 or self.rounds < 0:
            raise ConfigError(f"{where}: need 0 <= real_fraction <= 1, batch_size >= 1, iterations, rounds >= 0")
        if self.procedural_scenarios < 0 or self.noisy_copies < 0 or self.minutes <= 0:
            raise ConfigError(f"{where}: need procedural_scenarios, noisy_copies >= 0 and minutes > 0")
        bins = np.asarray(self.model.curvature_bins)
        if self.mirror > 0 and not np.allclose(bins, -bins[::-1]):
            raise ConfigError(f"{where}.mirror: needs symmetric model.curvature_bins, got {list(bins)}")


@dataclass
class TrainResult:
    model: TrafficModel
    card_path: Path
    card: dict
    curve: list = field(default_factory=list)


def real_sources(scenarios: list, held_out: tuple[str, ...], smooth: int = 1) -> tuple[list[Source], list[Source]]:
    """(training, held-out) real sources, logs smoothed over `smooth` steps; held-out names
    must each match a scenario."""
    from drivesim.io.scenario_file import scenario_hash

    missing = [h for h in held_out if not any(h in s.name for s in scenarios)]
    if missing:
        raise ValueError(f"held-out scene(s) {missing} not found among {[s.name for s in scenarios]}")
    train, held = [], []
    for s in scenarios:
        src = Source(smooth_log(s, smooth), driven_vehicles(s), "real", scenario_hash(s))
        (held if any(h in s.name for h in held_out) else train).append(src)
    return train, held


def _hash_scenarios(sources: list[Source]) -> dict[str, dict]:
    """{name: {content_sha256 (drivesim scenario hash as loaded), file (the source file)}}."""
    return {src.scenario.name: {"content_sha256": src.content_hash, "file": src.scenario.meta.get("file", "")} for src in sources}


class _Pools:
    """Real and procedural sample pools; minibatches mix them at `real_fraction`."""

    def __init__(self, real: Samples, procedural: Samples, real_fraction: float, generator: torch.Generator,
                 mirror: float = 0.0, curvature_bins: int = 1):
        self.real, self.proc, self.frac, self.g = real, procedural, real_fraction, generator
        self.mirror, self.nc = mirror, curvature_bins

    def add(self, kind: str, s: Samples) -> None:
        if kind == "real":
            self.real = Samples.cat([self.real, s])
        else:
            self.proc = Samples.cat([self.proc, s])

    def batch(self, n: int) -> Samples:
        frac = self.frac if len(self.proc) and len(self.real) else float(len(self.real) > 0)
        n_real = int(round(n * frac))
        parts = []
        for pool, k in ((self.real, n_real), (self.proc, n - n_real)):
            if k and len(pool):
                idx = torch.randint(len(pool), (k,), generator=self.g)
                parts.append(Samples(pool.tokens.index(idx), pool.labels[idx]))
        out = Samples.cat(parts)
        return mirrored(out, torch.rand(len(out), generator=self.g) < self.mirror, self.nc) if self.mirror > 0 else out


def mirrored(s: Samples, flip: torch.Tensor, curvature_bins: int) -> Samples:
    """Samples with the rows in `flip` [N] replaced by their left-right mirror image (the
    curvature bins are symmetric, so bin j becomes bin n - 1 - j)."""
    m = mirror_tokens(s.tokens)
    pick = lambda a, b: torch.where(flip.view(-1, *[1] * (a.dim() - 1)), b, a)
    tok = Tokens(*(pick(a, b) for a, b in zip(s.tokens.astuple(), m.astuple())))
    nc = curvature_bins
    return Samples(tok, torch.where(flip, (s.labels // nc) * nc + (nc - 1 - s.labels % nc), s.labels))


def _snapshots(sources: list[Source], model, cfg: TrafficTrainConfig, gen: torch.Generator, every: int = 1) -> Samples:
    parts = []
    for src in sources:
        parts.append(snapshot_samples(src, model, cfg.labels, cfg.model.tokens, every=every))
        for _ in range(cfg.noisy_copies if src.kind == "real" else 0):
            parts.append(snapshot_samples(src, model, cfg.labels, cfg.model.tokens, every=every, noise=cfg.noise, generator=gen))
    return Samples.cat(parts) if parts else None


def _empty_like(s: Samples) -> Samples:
    return Samples(s.tokens.index(slice(0, 0)), s.labels[:0])


@torch.no_grad()
def evaluate_nll(model: TrafficModel, samples: Samples, chunk: int = 4096) -> dict:
    """Mean negative log-likelihood (nats), top-1 accuracy and entropy (bits) on samples."""
    model.eval()
    nll, acc, ent, n = 0.0, 0.0, 0.0, len(samples)
    for i in range(0, n, chunk):
        logits = model(samples.tokens.index(slice(i, i + chunk)))
        y = samples.labels[i:i + chunk]
        nll += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        acc += float((logits.argmax(-1) == y).sum())
        ent += float(entropy_bits(logits).sum())
    model.train()
    return {"nll": nll / max(n, 1), "accuracy": acc / max(n, 1), "entropy_bits": ent / max(n, 1), "samples": n}


def _fit(model, opt, sched, pools: _Pools, iterations: int, cfg, bar, curve: list, deadline: float, phase: str,
         run_log=None) -> bool:
    """`iterations` optimizer steps, each a row of `curve` (and of `run_log`); False if the deadline stopped it early."""
    model.train()
    running = None
    for it in range(iterations):
        if time.perf_counter() > deadline:
            return False
        b = pools.batch(cfg.batch_size)
        loss = torch.nn.functional.cross_entropy(model(b.tokens), b.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        step = len(curve) and curve[-1]["iteration"] + 1 or 1
        curve.append({"iteration": step, "loss": value, "smoothed": running, "phase": phase})
        if run_log is not None:
            run_log.log(step, curve[-1])
        bar.update(1)
        if it % 50 == 0:
            bar.set_postfix(loss=f"{running:.3f}", phase=phase)
    return True


def train_traffic(config: TrafficTrainConfig, out, real_scenarios: list | None = None, real_dir=None,
                  progress: bool = True, save_artifact: bool = True) -> TrainResult:
    """Train, save the artifact and the training curve to `out`; see the module docstring.
    Real scenes come from `real_scenarios` (Scenario objects) or are loaded from `real_dir`;
    with neither, the model is trained on procedural traffic only."""
    cfg = config
    cfg.validate_config()
    t0 = time.perf_counter()
    deadline = t0 + 60.0 * cfg.minutes
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if real_scenarios is None and real_dir is not None:
        from drivesim.io import scenarionet

        real_scenarios, _ = scenarionet.load(real_dir)
    train_src, held_src = real_sources(real_scenarios, cfg.held_out, cfg.smooth_steps) if real_scenarios else ([], [])
    model = TrafficModel(cfg.model)
    proc_src = procedural_logs(cfg.procedural_maps, cfg.procedural_scenarios, cfg.seed, cfg.procedural_duration,
                               cfg.procedural_density) if cfg.procedural_scenarios else []
    real = _snapshots(train_src, model, cfg, gen)
    proc = _snapshots(proc_src, model, cfg, gen, every=cfg.procedural_every)
    if real is None and proc is None:
        raise ValueError("no training data: give real scenes or procedural_scenarios > 0")
    real, proc = real if real is not None else _empty_like(proc), proc if proc is not None else _empty_like(real)
    held = _snapshots(held_src, model, dataclasses.replace(cfg, noisy_copies=0), gen) if held_src else None
    data_s = time.perf_counter() - t0
    pools = _Pools(real, proc, cfg.real_fraction, gen, cfg.mirror, len(cfg.model.curvature_bins))
    total = cfg.iterations + cfg.rounds * cfg.round_iterations
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / max(total, 1))))
    curve, rounds, finished = [], [], True
    with RunLog(out, "traffic") as run_log, tqdm(total=total, desc="train traffic", disable=not progress, leave=False) as bar:
        finished = _fit(model, opt, sched, pools, cfg.iterations, cfg, bar, curve, deadline, "bc", run_log)
        for r in range(cfg.rounds):
            if not finished:
                break
            model.eval()
            bar.set_description(f"closed-loop rollouts, round {r + 1}")
            stats = {"round": r + 1}
            for kind, windows in (("real", [(s, st) for s in train_src for st in cfg.round_starts
                                             if st + cfg.round_steps < s.scenario.log.shape[1]]),
                                  ("procedural", [(s, 0) for s in proc_src])):
                if windows:
                    extra, st = closed_loop_samples(windows, model, cfg.labels, cfg.model.tokens, cfg.round_steps,
                                                    cfg.round_rollouts, cfg.round_temperature, cfg.seed * 10 + r)
                    pools.add(kind, extra)
                    stats[kind] = st
            rounds.append(stats)
            bar.set_description("train traffic")
            finished = _fit(model, opt, sched, pools, cfg.round_iterations, cfg, bar, curve, deadline, f"round{r + 1}",
                            run_log)
    model.eval()
    train_s = time.perf_counter() - t0
    metrics = {"train_loss_last100": float(np.mean([c["loss"] for c in curve[-100:]])) if curve else None,
               "train_real": evaluate_nll(model, Samples(real.tokens.index(slice(0, 20000)), real.labels[:20000])),
               "held_out_one_step": evaluate_nll(model, held) if held is not None else None,
               "closed_loop_rounds": rounds}
    card = _card(cfg, train_src, held_src, proc_src, real, proc, pools, metrics, data_s, train_s, finished, len(curve))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card_path = save(model, out, card) if save_artifact else out / "card.json"
    if save_artifact:
        card = json.loads(card_path.read_text())  # with the weights' sha256, size and parameter count
    plot_curve(curve, out / "training_curve.png", rounds)
    return TrainResult(model, card_path, card, curve)


def _card(cfg, train_src, held_src, proc_src, real, proc, pools, metrics, data_s, train_s, finished, iterations) -> dict:
    proc_hashes = {src.scenario.name: src.content_hash for src in proc_src}
    digest = hashlib.sha256("".join(proc_hashes[k] for k in sorted(proc_hashes)).encode()).hexdigest()
    return {
        "name": "learned_traffic",
        "created_with": f"drivesim {drivesim.__version__}, torch {torch.__version__}, python {platform.python_version()}",
        "train_config": config_to_dict(cfg),
        "lineage": {
            "real_scenes": _hash_scenarios(train_src),
            "held_out_scenes": _hash_scenarios(held_src),
            "held_out_names": list(cfg.held_out),
            "real_source": "nuScenes v1.0-mini via ScenarioNet pickles (CC BY-NC-SA 4.0: non-commercial use)",
            "procedural": {"scenarios": len(proc_src), "maps": list(cfg.procedural_maps),
                           "seeds": [cfg.seed * 1000 + i for i in range(len(proc_src))],
                           "density": list(cfg.procedural_density), "duration_s": cfg.procedural_duration,
                           "traffic": "IDM/MOBIL (reactive), ego: IDM lane keeping", "logs_sha256": digest},
            "samples": {"real": len(pools.real), "procedural": len(pools.proc), "real_snapshots": len(real),
                        "procedural_snapshots": len(proc)},
        },
        "training": {"iterations": iterations, "finished": finished, "data_seconds": round(data_s, 1),
                     "total_seconds": round(train_s, 1), "threads": torch.get_num_threads()},
        "metrics": metrics,
    }


def plot_curve(curve: list, path, rounds: list | None = None) -> None:
    """Training loss per iteration (raw and smoothed), closed-loop rounds marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if curve:
        it = [c["iteration"] for c in curve]
        ax.plot(it, [c["loss"] for c in curve], color="0.8", linewidth=0.6, label="minibatch")
        ax.plot(it, [c["smoothed"] for c in curve], color="C0", label="smoothed")
        starts = [c["iteration"] for a, c in zip(curve, curve[1:]) if a["phase"] != c["phase"]]
        for k, x in enumerate(starts):
            ax.axvline(x, color="C3", linestyle="--", linewidth=0.8, label="closed-loop round" if k == 0 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("learned traffic model: training loss")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90)
