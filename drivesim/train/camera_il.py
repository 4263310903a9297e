"""Imitation inside the sensor world model: the camera policy (train/camera_net.py) learns from
a privileged teacher with the frames rendered on the fly (behaviour cloning, then DAgger). The
teacher is the PDM-Closed-style expert (`teacher="pdm_expert"`), or a vector policy checkpoint:
distilling the RL-post-trained policy (`policies/rl_rare.pt`) carries its gains to pixels, as
LBC and Roach do.

1. Scenarios: `scenarios` drawn from the suite's groups with the run's seed (the suite itself
   stays held out, as for the vector IL).
2. Round 0: the expert drives; every `record_every`-th state of every running row is recorded
   with the six camera images (uint8), the ego speed and the route, and labelled with the
   expert's acceleration (two-hot over the vocabulary's bins, the lateral head on `keep`: the
   vector IL's loss, train/il.py `bc_loss`). Rounds 1..R: the learner drives from its cameras,
   taking the teacher's action with probability beta^r per step; the teacher labels every state
   (a checkpoint teacher: the acceleration it decides, decoded as it drives).
3. Frames are cached on disk by content (`FrameCache`): the key is the hash of the camera
   config, the scenario's content hash and the row's state, so a rerun, or a DAgger round
   revisiting an expert state, renders nothing twice. Only splat frames are cached: a refined
   frame depends on the previous one, so refined runs render every frame.

Outputs in OUT: camera_policy.pt (weights, config, card: data and cache counts, camera config,
training scenarios and hashes; `drivesim evaluate --policies OUT/camera_policy.pt --cameras splat`
drives it), history.jsonl (+ TensorBoard when installed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drivesim.core.config import ConfigError, config_to_dict
from drivesim.core.run_log import RunLog
from drivesim.core.safe_io import atomic_save
from drivesim.core.scenario import ScenarioBatch
from drivesim.render.cameras import CameraConfig, make_cameras, to_uint8
from drivesim.sim.expert import PDMClosed
from drivesim.sim.observation import observe
from drivesim.sim.simulator import Simulator
from drivesim.train.camera_net import CameraNetConfig, CameraPolicyNet, save_camera_policy
from drivesim.train.il import sample_weights, train_epoch
from drivesim.train.il_data import scenario_hashes, suite_scenarios
from drivesim.train.policy_net import NetPolicy, accel_to_bin, load_policy

ROW_FIELDS = ("x", "y", "yaw", "length", "width", "agent_type", "valid")  # what a splat frame depends on, per row


@dataclass(frozen=True)
class CameraILConfig:
    seed: int = 0
    teacher: str = "pdm_expert"  # or a vector policy checkpoint (.pt) to distil
    suite: str = "nominal"
    scenarios: int = 32  # drawn from the suite's groups with `seed`
    cameras: CameraConfig = field(default_factory=lambda: CameraConfig(size=(56, 32)))
    record_every: int = 5  # simulation steps between recorded states
    epochs: int = 6
    dagger: int = 2
    dagger_epochs: int = 3
    beta: float = 0.5
    batch_size: int = 64
    lr: float = 1e-3
    grad_clip: float = 1.0
    label_smoothing: float = 0.05
    brake_weight: float = 2.0
    brake_below: float = -2.0
    sim_batch: int = 16
    minutes: float = 45.0

    def validate_config(self, where: str = "camera_il") -> None:
        self.cameras.validate_config(f"{where}.cameras")
        for name in ("scenarios", "record_every", "epochs", "batch_size", "sim_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.dagger < 0 or self.dagger_epochs < 1 or not 0 <= self.beta <= 1 or not self.minutes > 0:
            raise ConfigError(f"{where}: need dagger >= 0, dagger_epochs >= 1, 0 <= beta <= 1, minutes > 0")


class FrameCache:
    """uint8 frames [C, H, W, 3] on disk, one .npy per key (read with allow_pickle=False)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a truncated or foreign file: render it again
            return None

    def put(self, key: str, frames: np.ndarray) -> None:
        self.path(key).parent.mkdir(exist_ok=True)
        atomic_save(self.path(key), lambda fh: np.save(fh, frames, allow_pickle=False))


class CachedCameras:
    """Splat cameras whose frames come from a FrameCache when it has them (same interface)."""

    def __init__(self, config: CameraConfig, cache: FrameCache):
        if config.kind != "splat":
            raise ValueError("the frame cache holds splat frames only: a refined frame depends on the previous one")
        self.renderer, self.cache = make_cameras(config), cache
        self.tag = json.dumps(config_to_dict(config), sort_keys=True)
        self.rig = self.renderer.rig

    def key(self, scenario_hash: str, state, b: int) -> str:
        h = hashlib.sha256(f"{self.tag}\n{scenario_hash}\n".encode())
        for name in ROW_FIELDS:
            h.update(getattr(state, name)[b].detach().cpu().numpy().tobytes())
        return h.hexdigest()

    def __call__(self, state, batch) -> torch.Tensor:
        rows = []
        for b in range(state.batch_size):
            scenario = batch.scenarios[b]
            key = self.key(scenario.meta.get("content_hash") or scenario.name, state, b)
            frames = self.cache.get(key)
            if frames is None:
                self.cache.misses += 1
                frames = to_uint8(self.renderer.render_row(self.renderer.background(scenario), state, b).rgb)
                self.cache.put(key, frames)
            else:
                self.cache.hits += 1
            rows.append(torch.from_numpy(frames))
        return torch.stack(rows).to(state.device).float() / 255.0


@dataclass
class CameraDemos:
    """Recorded states: images uint8 [N, C, H, W, 3], speed [N, 1], route [N, 2R], the expert's
    acceleration [N] and its bin [N]; `take` gives the net's features of a subset."""

    images: torch.Tensor
    speed: torch.Tensor
    route: torch.Tensor
    accel: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: torch.Tensor) -> "CameraBatch":
        images = self.images[idx].permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # as camera_features scales them
        return CameraBatch({"cameras": images, "speed": self.speed[idx], "route": self.route[idx]}, self.accel[idx],
                           self.label[idx])

    @staticmethod
    def cat(parts: list["CameraDemos"]) -> "CameraDemos":
        return CameraDemos(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(CameraDemos)))


@dataclass
class CameraBatch:
    feats: dict
    accel: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)


class Teacher:
    """The labeller: (controls [B, 2] it drives with, acceleration label [B]) of an observation."""

    def __init__(self, spec: str):
        self.spec = spec
        self.net = None if spec == "pdm_expert" else load_policy(spec, name="teacher")
        self.expert = PDMClosed() if self.net is None else None

    def reset(self, batch) -> None:
        (self.expert or self.net).reset(batch)

    def __call__(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None:
            action = self.expert.act(obs)
            return action, action[:, 0]
        decision = self.net.decide(obs)
        return self.net.controls(obs), decision["accel"]


@torch.no_grad()
def collect(scenarios, cameras, bins, cfg: CameraILConfig, learner=None, beta: float = 1.0, gen=None,
            teacher: Teacher | None = None, desc: str = "") -> CameraDemos:
    """Drive `scenarios` (the teacher, or a mixture with `learner` at teacher probability `beta`)
    and record every `record_every`-th state of the running rows with the teacher's label;
    `desc`: a progress bar over the simulation steps."""
    from tqdm.auto import tqdm

    parts = []
    expert = teacher or Teacher(cfg.teacher)
    steps = sum(max(s.num_steps for s in scenarios[i : i + cfg.sim_batch]) for i in range(0, len(scenarios), cfg.sim_batch))
    bar = tqdm(total=steps, desc=desc, disable=not desc, unit="step", leave=False)
    for i in range(0, len(scenarios), cfg.sim_batch):
        batch = ScenarioBatch.build(scenarios[i : i + cfg.sim_batch])
        sim = Simulator(batch)
        state = sim.reset()
        expert.reset(batch)
        if learner is not None:
            learner.reset(batch)
        rec = {k: [] for k in ("images", "speed", "route", "accel")}
        for t in range(batch.max_steps):
            obs = observe(state, batch, cameras=cameras)
            action, label = expert(obs)
            rows = (batch.num_steps > t).nonzero().squeeze(1)
            if t % cfg.record_every == 0 and len(rows):
                rec["images"].append(torch.from_numpy(to_uint8(obs.cameras[rows])))
                rec["speed"].append(obs.ego[rows, :1] / 20.0)
                rec["route"].append(obs.route[rows].flatten(1) / 50.0)
                rec["accel"].append(label[rows])
            if learner is not None:
                use_expert = torch.rand(batch.batch_size, generator=gen) < beta
                action = torch.where(use_expert.unsqueeze(1), action, learner.controls(obs))
            state = sim.step(state, action)
            bar.update()
        accel = torch.cat(rec["accel"])
        parts.append(CameraDemos(torch.cat(rec["images"]), torch.cat(rec["speed"]), torch.cat(rec["route"]), accel,
                                 accel_to_bin(accel, bins)))
    bar.close()
    return CameraDemos.cat(parts)


def train_camera_il(cfg: CameraILConfig, out, cache_dir=None, progress: bool = False) -> dict:
    """Run camera imitation into `out` (see the module docstring); returns the card."""
    cfg.validate_config()
    out = Path(out)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    deadline = time.monotonic() + 60 * cfg.minutes
    scenarios, prov = suite_scenarios(cfg.suite, cfg.seed + 1000, progress=progress)
    scenarios = scenarios[: cfg.scenarios]
    cache = FrameCache(cache_dir or out / "frames")
    cameras = CachedCameras(cfg.cameras, cache) if cfg.cameras.kind == "splat" else make_cameras(cfg.cameras)
    w, h = cfg.cameras.size
    net = CameraPolicyNet(CameraNetConfig(cameras=len(cameras.rig), width=w, height=h))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    learner = NetPolicy(net, name="camera_il")
    bins = net.cfg.accel_bins
    teacher = Teacher(cfg.teacher)
    demos, history, t0 = None, [], time.perf_counter()
    with RunLog(out, "camera_il") as run_log:
        for r in range(cfg.dagger + 1):
            new = collect(scenarios, cameras, bins, cfg, learner if r else None, cfg.beta ** r, gen, teacher,
                          desc=f"round {r}: driving and rendering" if progress else "")
            demos = new if demos is None else CameraDemos.cat([demos, new])
            weight = sample_weights(demos, bins, cfg)
            for e in range(cfg.epochs if r == 0 else cfg.dagger_epochs):
                stats = train_epoch(net, opt, demos, weight, cfg, gen, f"round {r}, epoch {e}", deadline)
                history.append({"round": r, "epoch": e, "samples": len(demos), **stats,
                                "frames_rendered": cache.misses, "frames_cached": cache.hits})
                run_log.log(len(history), history[-1])
            if time.monotonic() > deadline:
                break
    card = {"kind": "camera_il", "teacher": cfg.teacher, "teacher_card": getattr(teacher.net, "card", None),
            "train_config": config_to_dict(cfg), "params": net.num_parameters(),
            "data": {"samples": len(demos), "frames_rendered": cache.misses, "frames_cached": cache.hits, **prov},
            "training_scenarios": scenario_hashes(scenarios), "seconds": round(time.perf_counter() - t0, 1),
            "history": history}
    save_camera_policy(net, out / "camera_policy.pt", {"name": f"camera_{cfg.cameras.kind}", **card})
    return card
