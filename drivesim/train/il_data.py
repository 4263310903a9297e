"""Demonstrations for imitation learning: the scenarios to learn from, and (features, expert
acceleration bin) pairs recorded in closed loop.

The scenario sources, each with its provenance (hashes, seeds, counts) for the policy card:
- `suite_scenarios`: a suite's groups drawn again with a seed of their own (so that the suite
  itself stays held out for evaluation), `repeat` times as many;
- `rare_scenarios`: generated rare events (cut-in, hard brake, stalled, merge, pedestrian);
- `real_scenarios`: real nuScenes scenes (ScenarioNet) with reactive log traffic.

`collect` drives scenarios in batches and records `features(obs)` with the expert's action at
every visited state: driven by the expert itself (demonstrations), or (DAgger) by a learner
mixed with the expert (each row takes the expert's action with probability `beta` at each
step). The expert re-plans at every call, so its label is a function of the state alone.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from drivesim.behavior.scenario import Scenario, ScenarioBatch
from drivesim.core.checkpoint import CheckpointError, expect_dict, load_checkpoint
from drivesim.core.safe_io import atomic_torch_save
from drivesim.map.bank import MapBank
from drivesim.metrics.accumulator import MetricAccumulator
from drivesim.sim.expert import PDMClosed, PDMConfig
from drivesim.sim.observation import ObservationConfig, observe
from drivesim.sim.simulator import Simulator
from drivesim.train.policy_net import accel_to_bin, features

SUITES_DIR = Path(__file__).resolve().parents[2] / "scenarios"
FEATURE_KEYS = ("agents", "agents_mask", "lanes", "lanes_mask", "route", "ego")


# ---------------------------------------------------------------------------- scenario sources
def resolve_suite(spec: str) -> Path:
    """A suite file: the path as given, or a name in the project's scenarios/ folder."""
    for p in (Path(spec), SUITES_DIR / spec, SUITES_DIR / f"{spec}.yaml"):
        if p.is_file():
            return p
    raise FileNotFoundError(f"suite {spec!r}: no such file (nor {SUITES_DIR / spec}.yaml)")


def suite_scenarios(spec: str, seed: int | None, repeat: int = 1, tag: str = "il", progress: bool = False):
    """The suite's scenarios; with `seed`, its groups are drawn again from that seed (`repeat`
    times as many, named `<suite>-<tag><seed>/...`). Returns (scenarios, provenance)."""
    from drivesim.io.suite import build_scenarios, load_suite, suite_hash

    path = resolve_suite(spec)
    suite = load_suite(path)
    prov = {"kind": "suite", "file": path.name, "suite": suite.name, "suite_hash": suite_hash(suite)}
    if seed is not None:
        groups = tuple(dataclasses.replace(g, count=g.count * repeat) for g in suite.groups)
        suite = dataclasses.replace(suite, name=f"{suite.name}-{tag}{seed}", seed=seed, groups=groups)
        prov.update({"drawn_as": suite.name, "drawn_seed": seed, "repeat": repeat, "drawn_hash": suite_hash(suite)})
    scenarios = build_scenarios(suite, progress=progress)
    prov["count"] = len(scenarios)
    return scenarios, prov


def rare_scenarios(n: int, events, seed: int, progress: bool = False):
    """`n` generated rare events split evenly over `events` (labelled without the expert check).
    Returns (scenarios, provenance)."""
    from drivesim.sim.events import LabelConfig, generate_set

    events = list(events)
    counts = [n // len(events) + (i < n % len(events)) for i in range(len(events))]
    scenarios, prov = [], {"kind": "rare", "seed": seed, "events": {}}
    for event, k in zip(events, counts):
        if k == 0:
            continue
        es = generate_set(event, k, seed=seed, label=LabelConfig(expert_check=False, workers=1), show_progress=progress)
        scenarios += es.scenarios
        prov["events"][event] = {"n": k, "generator_version": es.header["generator_version"], "config": es.header["config"]}
    prov["count"] = len(scenarios)
    return scenarios, prov


def data_dir() -> Path:
    """Real driving data: $DRIVESIM_DATA, default ../shared/data (relative to the working directory)."""
    return Path(os.environ.get("DRIVESIM_DATA", "../shared/data"))


def real_scenarios(traffic: str = "hybrid", root: Path | None = None):
    """The ScenarioNet nuScenes scenes with `traffic` log traffic; ([], provenance with a reason)
    when the data is not there."""
    from drivesim.behavior.logs import with_traffic
    from drivesim.io import scenarionet

    folder = (root or data_dir()) / "scenarionet_nuscenes"
    if not folder.is_dir():
        print(f"warning: no real scenes at {folder} (set DRIVESIM_DATA); training without them", file=sys.stderr)
        return [], {"kind": "real", "count": 0, "skipped": f"no data at {folder.name}"}
    scenes = [with_traffic(s, traffic) for s in scenarionet.load(folder)]
    return scenes, {"kind": "real", "folder": folder.name, "traffic": traffic, "count": len(scenes),
                    "license": "nuScenes terms (CC BY-NC-SA 4.0)"}


def scenario_hashes(scenarios: list[Scenario]) -> dict[str, str]:
    """{name: content hash} (the name the evaluation compares to warn about overlap)."""
    from drivesim.io.scenario_file import scenario_hash

    return {s.name: s.meta.get("content_hash") or scenario_hash(s) for s in scenarios}


def is_validation(name: str, fraction: float) -> bool:
    """A fixed `fraction` of scenarios (by a hash of the name) is held out for validation."""
    return zlib.crc32(name.encode()) % 10_000 < fraction * 10_000


# ---------------------------------------------------------------------------- demonstrations
@dataclass
class Demos:
    """Recorded states: features [N, ...] (FEATURE_KEYS), the expert's acceleration [N] and its
    bin [N], the scenario of each row (index into `names`) and the round that recorded it."""

    feats: dict[str, torch.Tensor]
    accel: torch.Tensor  # [N] m/s^2
    label: torch.Tensor  # [N] int64 bin
    scenario: torch.Tensor  # [N] int64
    round: torch.Tensor  # [N] int64
    names: list[str]

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: torch.Tensor) -> "Demos":
        return Demos({k: v[idx] for k, v in self.feats.items()}, self.accel[idx], self.label[idx], self.scenario[idx],
                     self.round[idx], self.names)

    @staticmethod
    def cat(parts: list["Demos"]) -> "Demos":
        names = list(dict.fromkeys(n for p in parts for n in p.names))
        index = {n: i for i, n in enumerate(names)}
        remap = lambda p: torch.tensor([index[n] for n in p.names], dtype=torch.long)[p.scenario] if len(p) else p.scenario
        return Demos({k: torch.cat([p.feats[k] for p in parts]) for k in FEATURE_KEYS}, torch.cat([p.accel for p in parts]),
                     torch.cat([p.label for p in parts]), torch.cat([remap(p) for p in parts]),
                     torch.cat([p.round for p in parts]), names)

    def save(self, path) -> None:
        """data.pt, written atomically (a kill or a full disk leaves the previous file loadable)."""
        atomic_torch_save({"feats": self.feats, "accel": self.accel, "label": self.label, "scenario": self.scenario,
                           "round": self.round, "names": self.names}, path)

    @staticmethod
    def load(path) -> "Demos":
        """Demonstrations from `save`'s file, read as plain data; another layout is a CheckpointError."""
        d = expect_dict(load_checkpoint(path, "IL dataset"), path, "IL dataset",
                        ("feats", "accel", "label", "scenario", "round", "names"))
        try:
            demos = Demos(dict(d["feats"]), d["accel"], d["label"], d["scenario"], d["round"], list(d["names"]))
            n = len(demos.label)
            sizes = {k: len(v) for k, v in demos.feats.items()} | {"accel": len(demos.accel), "scenario": len(demos.scenario),
                                                                  "round": len(demos.round)}
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{path}: not an IL dataset of this layout ({type(exc).__name__}: {exc})") from None
        if set(demos.feats) != set(FEATURE_KEYS) or any(v != n for v in sizes.values()):
            raise CheckpointError(f"{path}: IL dataset fields disagree: features {sorted(demos.feats)} "
                                  f"(expected {list(FEATURE_KEYS)}), lengths {sizes} vs {n} labels")
        return demos


@torch.no_grad()
def collect(scenarios: list[Scenario], expert_config: PDMConfig, bins, *, learner=None, beta: float = 1.0, seed: int = 0,
            round_index: int = 0, batch_size: int = 64, record_every: int = 1, obs_config: ObservationConfig | None = None,
            device: str = "cpu", desc: str = "") -> tuple[Demos, pd.DataFrame]:
    """Drive `scenarios` in batches and record (features, expert action) at every
    `record_every`-th step of every row still running (before its end and its route's end).
    Without `learner` the expert drives; with one, each row takes the expert's action with
    probability `beta` at each step (seeded) and the learner's otherwise. Returns the
    demonstrations and the closed-loop metrics of what drove (one row per scenario)."""
    obs_config = obs_config or ObservationConfig()
    gen = torch.Generator().manual_seed(seed)
    bank = MapBank.build(list({id(s.road): s.road for s in scenarios}.values()), device=device)
    chunks = [scenarios[i : i + batch_size] for i in range(0, len(scenarios), batch_size)]
    parts, tables = [], []
    steps = sum(max(s.num_steps for s in c) for c in chunks)
    with tqdm(total=steps, desc=desc or "collect", disable=not desc, leave=False, unit="step") as bar:
        for c, chunk in enumerate(chunks):
            part, table = _collect_batch(ScenarioBatch.build(chunk, bank=bank, device=device), expert_config, bins, learner,
                                         beta, gen, record_every, obs_config, bar)
            part.scenario += c * batch_size
            parts.append(part)
            tables.append(table)
    demos = Demos.cat([dataclasses.replace(p, names=[s.name for s in scenarios]) for p in parts])
    demos.round[:] = round_index
    return demos, pd.concat(tables, ignore_index=True)


def _collect_batch(batch, expert_config, bins, learner, beta, gen, record_every, obs_config, bar):
    sim = Simulator(batch)
    state = sim.reset()
    expert = PDMClosed(expert_config)
    expert.reset(batch)
    if learner is not None:
        learner.reset(batch)
    acc = MetricAccumulator(batch)
    acc.update(state)
    B = batch.batch_size
    done = torch.zeros(B, dtype=torch.bool, device=batch.device)
    rec: dict[str, list] = {k: [] for k in (*FEATURE_KEYS, "accel", "row")}
    for t in range(batch.max_steps):
        obs = observe(state, batch, obs_config)
        action = expert.act(obs)
        running = ~done & (batch.num_steps > t)
        if t % record_every == 0 and bool(running.any()):
            rows = running.nonzero().squeeze(1)
            f = features(obs)
            for k in FEATURE_KEYS:
                rec[k].append(f[k][rows].cpu())
            rec["accel"].append(action[rows, 0].cpu())
            rec["row"].append(rows.cpu())
        if learner is not None:
            mine = learner.controls(obs)  # NetPolicy: the tracker's first step on its trajectory
            use_expert = (torch.rand(B, generator=gen) < beta).to(batch.device)
            action = torch.where(use_expert.unsqueeze(1), action, mine)
        state = sim.step(state, action)
        done = done | acc.route_completed
        acc.update(state, ~done)
        bar.update()
    accel = torch.cat(rec["accel"])
    part = Demos({k: torch.cat(rec[k]) for k in FEATURE_KEYS}, accel, accel_to_bin(accel, bins),
                 torch.cat(rec["row"]), torch.zeros(len(accel), dtype=torch.long), batch.names)
    metrics = {k: v.detach().cpu().numpy().astype(float) for k, v in acc.finalize().items()}
    table = pd.DataFrame({"scenario": batch.names, **{k: metrics[k] for k in ("success", "collision_any", "progress")}})
    return part, table


def label_histogram(demos: Demos, bins) -> list[int]:
    return torch.bincount(demos.label, minlength=len(bins)).tolist()


__all__ = ["Demos", "collect", "suite_scenarios", "rare_scenarios", "real_scenarios", "scenario_hashes", "is_validation",
           "resolve_suite", "data_dir", "label_histogram"]
