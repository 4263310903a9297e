"""Demonstrations for imitation learning: the scenarios to learn from, and (features, expert
acceleration bin) pairs recorded in closed loop.

The scenario sources, each with its provenance (hashes, seeds, counts) for the policy card:
- `suite_scenarios`: a suite's groups drawn again with a seed of their own (so that the suite
  itself stays held out for evaluation), `repeat` times as many;
- `rare_scenarios`: generated rare events (cut-in, hard brake, stalled, merge, pedestrian);
- `real_scenarios`: the shared real scenes of every source that loads (ScenarioNet nuScenes,
  AV2 motion, CommonRoad, WOMD TFRecord, GPUDrive JSON) with reactive log traffic, split by a
  fixed rule on the scene name (`is_heldout_real`) into "train" and "heldout" (never trained on);
  `python -m drivesim.train.il_data --heldout` prints the held-out scenes per source.
- `start_scenarios`: a fresh set of standing / slow starts (variants made in il_variants.py).

`collect` drives scenarios in batches and records `features(obs)` with the expert's action at
every visited state: driven by the expert itself (demonstrations), or (DAgger) by a learner
mixed with the expert (each row takes the expert's action with probability `beta` at each
step); optionally with DART noise on the executed action (il_variants.py). The expert re-plans
at every call, so its label is a function of the state alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from drivesim.core.scenario import Scenario, ScenarioBatch, ScenarioError
from drivesim.core.checkpoint import CheckpointError, expect_dict, load_checkpoint
from drivesim.core.safe_io import atomic_torch_save
from drivesim.map.bank import MapBank
from drivesim.metrics.accumulator import MetricAccumulator
from drivesim.sim.expert import PDMClosed, PDMConfig
from drivesim.sim.observation import ObservationConfig, observe
from drivesim.sim.policy import clip_action
from drivesim.sim.simulator import Simulator
from drivesim.train.il_variants import DartConfig, dart_noise, start_variants
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


def start_scenarios(spec: str, seed: int, speeds=(0.0,), fraction: float = 1.0, tag: str = "starts"):
    """A fresh set of standing / slow starts (e.g. for "starts from 0 m/s and drives"): the suite's
    groups drawn with `seed`, and start variants of `fraction` of them (il_variants.start_variants).
    Returns (variants, provenance)."""
    from drivesim.io.scenario_file import scenarios_hash

    drawn, prov = suite_scenarios(spec, seed=seed, tag=tag)
    out = start_variants(drawn, speeds, fraction, seed=seed)
    return out, {**prov, "kind": "starts", "speeds": [float(v) for v in speeds], "fraction": fraction, "count": len(out),
                 "set_hash": scenarios_hash(out)}


def rare_scenarios(n: int, events, seed: int, progress: bool = False):
    """`n` generated rare events split evenly over `events` (labelled without the expert check).
    Returns (scenarios, provenance)."""
    from drivesim.events.generate import LabelConfig, generate_set

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


# real-scene folders under data_dir(): source -> (folder, importer name in io.importers.IMPORTERS, license of the data)
REAL_SOURCES: dict[str, tuple[str, str, str]] = {
    "nuscenes": ("scenarionet_nuscenes", "scenarionet", "nuScenes terms (CC BY-NC-SA 4.0)"),
    "av2": ("av2/motion", "av2", "Argoverse 2 terms (CC BY-NC-SA 4.0)"),
    "commonroad": ("commonroad_ngsim", "commonroad", "NGSIM: public domain; CommonRoad conversion BSD-3"),
    "womd": ("womd_tfrecord", "womd", "Waymo Open Dataset license (non-commercial)"),
    "gpudrive": ("womd_json", "gpudrive", "Waymo Open Dataset license (non-commercial)"),
}
# held out besides the hash rule: the learned traffic model's held-out scenes (traffic_model/train.py HELD_OUT),
# so that both models can be evaluated on them, and one of the two GPUDrive scenes (the rule holds out
# neither), so that every source with more than one scene has a held-out one; fixed before any result
HELD_OUT_REAL = ("scenarionet/scene-0916", "scenarionet/scene-1077", "gpudrive/db4edc9bd0c9d18c")
HELD_OUT_RULE = "sha256(scene name) % 4 == 0, or named in HELD_OUT_REAL"


def is_heldout_real(name: str) -> bool:
    """The fixed held-out split of the real scenes (never trained on): HELD_OUT_RULE."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0 or name in HELD_OUT_REAL


def load_real_source(source: str, root: Path | None = None) -> tuple[list[Scenario], dict]:
    """All scenes of one real source as imported, and {folder, seconds, errors} or {skipped: why}
    (no folder, an optional reader missing, nothing loadable)."""
    from drivesim.io import importers
    from drivesim.io.errors import ImportDataError

    folder_name, module_name, license_ = REAL_SOURCES[source]
    folder = (root or data_dir()) / folder_name
    info = {"folder": folder_name, "license": license_}
    if not folder.is_dir():
        return [], {**info, "skipped": f"no folder {folder_name} under the data directory"}
    t0 = time.perf_counter()
    try:
        scenes, errors = importers.load(module_name, folder)
    except ImportError as exc:  # an optional reader (commonroad-io, protobuf) not installed
        return [], {**info, "skipped": f"cannot read {folder_name}: {exc}"}
    except (ImportDataError, ScenarioError, OSError) as exc:
        return [], {**info, "skipped": str(exc).split(chr(10))[0][:300]}
    return scenes, {**info, "seconds": round(time.perf_counter() - t0, 2), "errors": errors}


def real_scenarios(split: str = "train", sources=tuple(REAL_SOURCES), traffic: str = "hybrid", root: Path | None = None,
                   quiet: bool = False):
    """The real scenes of `sources` in `split` ("train", "heldout" or "all"; `is_heldout_real`)
    with `traffic` log traffic. A source that is absent or cannot be read is skipped with a note;
    a scene that does not validate with the policy ego is skipped with its reason. Returns
    (scenes, provenance: per source the scene names, counts, load seconds, skipped scenes)."""
    from drivesim.traffic.log_modes import with_traffic

    if split not in ("train", "heldout", "all"):
        raise ValueError(f"real_scenarios: split {split!r}; allowed: train, heldout, all")
    unknown = [s for s in sources if s not in REAL_SOURCES]
    if unknown:
        raise ValueError(f"real_scenarios: unknown sources {unknown}; allowed: {', '.join(REAL_SOURCES)}")
    t0 = time.perf_counter()
    out, per = [], {}
    for source in sources:
        scenes, info = load_real_source(source, root)
        if "skipped" in info:
            if not quiet:
                print(f"note: real source {source} skipped: {info['skipped']}", file=sys.stderr)
            per[source] = info
            continue
        kept, skipped = [], {}
        for s in scenes:
            if (split == "heldout") != is_heldout_real(s.name) and split != "all":
                continue
            try:
                s = with_traffic(s, traffic)
                s.validate()
            except ScenarioError as exc:
                skipped[s.name] = str(exc)
                continue
            kept.append(s)
        out += kept
        per[source] = {**info, "loaded": len(scenes), "heldout": sum(map(is_heldout_real, (s.name for s in scenes))),
                       "count": len(kept), "scenes": [s.name for s in kept], "skipped_scenes": skipped}
    prov = {"kind": "real", "split": split, "heldout_rule": HELD_OUT_RULE, "traffic": traffic, "count": len(out),
            "seconds": round(time.perf_counter() - t0, 2), "sources": per}
    if not out and not quiet:
        print(f"warning: no real scenes ({split}) under {root or data_dir()} (set DRIVESIM_DATA); going on without them",
              file=sys.stderr)
    return out, prov


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
            device: str = "cpu", desc: str = "", noise: DartConfig | None = None) -> tuple[Demos, pd.DataFrame]:
    """Drive `scenarios` in batches and record (features, expert action) at every
    `record_every`-th step of every row still running (before its end and its route's end).
    Without `learner` the expert drives; with one, each row takes the expert's action with
    probability `beta` at each step (seeded) and the learner's otherwise. With active `noise`
    (DART) the executed action is that action plus the scenario's noise (`dart_noise`, seeded by
    `seed` and the scenario's name), clipped to the action box; the label stays the expert's clean
    action. Returns the demonstrations and the closed-loop metrics of what drove (one row per scenario)."""
    obs_config = obs_config or ObservationConfig()
    gen = torch.Generator().manual_seed(seed)
    bank = MapBank.build(list({id(s.road): s.road for s in scenarios}.values()), device=device)
    chunks = [scenarios[i : i + batch_size] for i in range(0, len(scenarios), batch_size)]
    parts, tables = [], []
    steps = sum(max(s.num_steps for s in c) for c in chunks)
    with tqdm(total=steps, desc=desc or "collect", disable=not desc, leave=False, unit="step") as bar:
        for c, chunk in enumerate(chunks):
            part, table = _collect_batch(ScenarioBatch.build(chunk, bank=bank, device=device), expert_config, bins, learner,
                                         beta, gen, record_every, obs_config, bar,
                                         noise if noise is not None and noise.active else None, seed)
            part.scenario += c * batch_size
            parts.append(part)
            tables.append(table)
    demos = Demos.cat([dataclasses.replace(p, names=[s.name for s in scenarios]) for p in parts])
    demos.round[:] = round_index
    return demos, pd.concat(tables, ignore_index=True)


def _collect_batch(batch, expert_config, bins, learner, beta, gen, record_every, obs_config, bar, noise=None, seed=0):
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
    perturb = None if noise is None else dart_noise(batch.names, batch.max_steps, noise, seed).to(batch.device)  # [B, T, 2]
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
        if perturb is not None:  # DART: execute a noisy action, the label above stays the clean expert's
            action = clip_action(action + perturb[:, t])
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


def main(argv=None) -> int:
    """`python -m drivesim.train.il_data --heldout | --train`: the real scenes of that split per source."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m drivesim.train.il_data", description="The real scenes of the IL data "
                                f"split ({HELD_OUT_RULE}) per source, under $DRIVESIM_DATA (default ../shared/data)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--heldout", action="store_true", help="print the held-out scenes (never trained on)")
    g.add_argument("--train", action="store_true", help="print the training scenes")
    p.add_argument("--data", default=None, help="data directory (default $DRIVESIM_DATA or ../shared/data)")
    args = p.parse_args(argv)
    split = "heldout" if args.heldout else "train"
    _, prov = real_scenarios(split, root=Path(args.data) if args.data else None, quiet=True)
    print(f"{split} real scenes ({HELD_OUT_RULE}); loaded in {prov['seconds']:.1f} s")
    for source, info in prov["sources"].items():
        if "skipped" in info:
            print(f"{source}: skipped ({info['skipped']})")
            continue
        print(f"{source}: {info['count']} of {info['loaded']} scenes ({info['folder']})")
        for name in info["scenes"]:
            print(f"  {name}")
        for name, why in info["skipped_scenes"].items():
            print(f"  skipped {name}: {why}")
    return 0


__all__ = ["Demos", "collect", "suite_scenarios", "start_scenarios", "rare_scenarios", "real_scenarios", "scenario_hashes", "is_validation",
           "resolve_suite", "data_dir", "label_histogram", "REAL_SOURCES", "HELD_OUT_REAL", "HELD_OUT_RULE",
           "is_heldout_real", "load_real_source"]


if __name__ == "__main__":
    raise SystemExit(main())
