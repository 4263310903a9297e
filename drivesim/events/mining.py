"""Failure mining (the WorldEngine loop): run a policy on a scenario set, keep where it fails,
and generate variations around each failure.

A run fails on a collision, on leaving the drivable area, on progress below `min_progress` of
the expert's (nuPlan's progress ratio), or when the policy raised. Variations of a failure:
- a generated rare event: the same generator re-sampled with each knob's range narrowed to
  +-`perturb` (relative) around the failed scenario's value (calibrated and measured again);
- a procedural traffic scenario: the same map and traffic config with new seeds;
- with `learned`: N alternative futures of the scene from the learned traffic model (any
  scenario, logged ones included).
The policy is then run on the variations, so the result says how robust each failure is.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from drivesim.events import EVENTS, event_type
from drivesim.core.scenario import Scenario
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.core.config import apply_overrides, tuples_from_json
from drivesim.sim.evaluate import EvalConfig, evaluate
from drivesim.events.generate import LabelConfig, generate_set
from drivesim.sim.expert import PDMClosed

# knob ranges of the event configs and the params key holding the sampled value
KNOB_PARAMS = {"ego_speed": "ego_speed", "rel_speed": "rel_speed", "ttc": "target_ttc", "gap": "target_gap",
               "headway": "target_headway", "lat_speed": "lat_speed", "cutter_brake": "cutter_brake", "decel": "decel",
               "brake_to": "brake_to", "walk_speed": "walk_speed", "offset": "offset", "density": "density"}


@dataclass(frozen=True)
class MineConfig:
    variations: int = 8  # per failure
    seed: int = 0
    min_progress: float = 0.2  # progress ratio to the expert below which a run fails
    perturb: float = 0.1  # relative half-width of the knob ranges around a failure
    learned: bool = False  # also alternative futures from the learned traffic model
    batch_size: int = 64


@dataclass
class MineResult:
    failures: pd.DataFrame  # one row per failed scenario: name, reason, key metrics
    scenarios: list[Scenario]  # the variations
    table: pd.DataFrame  # one row per variation: parent, kind, whether the policy fails it and why
    variation_failure_rate: float


def failure_reason(row: dict, min_progress: float) -> str:
    """'' when the run is fine, else why it failed."""
    if row.get("status") == "error":
        return f"error: {row.get('error', '')}"
    why = []
    if row.get("collision_any", 0) > 0:
        why.append("collision")
    if row.get("drivable_area_compliance", 1) == 0:
        why.append("off road")
    if row.get("progress_ratio", 1.0) < min_progress:
        why.append(f"progress {row.get('progress_ratio', 0.0):.0%} of the expert's")
    return ", ".join(why)


def _run(scenarios, policy, cfg: MineConfig) -> pd.DataFrame:
    ev = evaluate(scenarios, [policy], expert=PDMClosed(), config=EvalConfig(batch_size=cfg.batch_size,
                                                                             keep_failure_trajectories=False))
    rows = ev.results[ev.results["policy"] == policy.name].to_dict("records")
    for r in rows:
        r["reason"] = failure_reason(r, cfg.min_progress)
    return pd.DataFrame(rows)


def _narrowed(s: Scenario, cfg: MineConfig):
    """The failed event's config with every knob range shrunk around the failed value."""
    et = event_type(s.meta["event"])
    config = apply_overrides(et.config(), tuples_from_json(s.meta.get("config", {})), where="config")
    params, over = s.meta["params"], {"band": None} if hasattr(config, "band") else {}
    for f in fields(config):
        key = KNOB_PARAMS.get(f.name)
        rng = getattr(config, f.name)
        if key is None or key not in params or not isinstance(params[key], (int, float)):
            continue
        lo, hi = rng if rng is not None else (-np.inf, np.inf)
        v = float(params[key])
        half = cfg.perturb * max(abs(v), 0.1)
        over[f.name] = (float(np.clip(v - half, lo, hi)), float(np.clip(v + half, lo, hi)))
    if "ttc" in over and params.get("target_gap") is not None and getattr(config, "gap", None) is None:
        over.pop("gap", None)
    return apply_overrides(config, over, where="config")


def variations(s: Scenario, cfg: MineConfig, behavior=None) -> list[tuple[str, Scenario]]:
    """(kind, scenario) variations of one failed scenario."""
    seed = cfg.seed * 1_000_003 + zlib.crc32(s.name.encode()) % 1_000_003
    out = []
    if s.meta.get("event") in EVENTS:
        es = generate_set(s.meta["event"], cfg.variations, seed=seed, config=_narrowed(s, cfg),
                          label=LabelConfig(expert_check=False, workers=1), show_progress=False)
        out += [("knobs", v) for v in es.scenarios]
    elif s.meta.get("generator") == "procedural_traffic":
        tcfg = apply_overrides(TrafficConfig(), tuples_from_json(s.meta["config"]), where="traffic")
        out += [("traffic", procedural_scenario(s.road, tcfg, seed=seed + j, name=f"{s.name}~t{j}"))
                for j in range(cfg.variations)]
    if behavior is not None:
        from drivesim.traffic_model.futures import alternative_futures

        out += [("learned", f) for f in alternative_futures(s, behavior, cfg.variations, seed=seed)]
    for j, (kind, v) in enumerate(out):
        v.name = f"{s.name}~{kind[0]}{j}"
        v.meta = {**v.meta, "mined_from": s.name, "mined_from_hash": s.meta.get("content_hash", ""), "variation": kind}
    return out


def mine(scenarios: list[Scenario], policy, cfg: MineConfig | None = None, behavior=None) -> MineResult:
    cfg = cfg or MineConfig()
    if cfg.learned and behavior is None:
        from drivesim.traffic_model.model import DEFAULT_ARTIFACT, LearnedTraffic

        behavior = LearnedTraffic.load(DEFAULT_ARTIFACT, seed=cfg.seed)
    base = _run(scenarios, policy, cfg)
    failed = base[base["reason"] != ""]
    by_name = {s.name: s for s in scenarios}
    made: list[tuple[str, str, Scenario]] = []
    for name in failed["scenario"]:
        made += [(name, kind, v) for kind, v in variations(by_name[name], cfg, behavior)]
    keep = [c for c in ("scenario", "reason", "collision_any", "drivable_area_compliance", "progress_ratio", "pdms")
            if c in failed]
    if not made:
        return MineResult(failed[keep].reset_index(drop=True), [], pd.DataFrame(), 0.0)
    rerun = _run([v for _, _, v in made], policy, cfg).set_index("scenario")
    table = pd.DataFrame([{"scenario": v.name, "parent": parent, "kind": kind, "reason": rerun.loc[v.name, "reason"],
                           "failed": rerun.loc[v.name, "reason"] != "", "pdms": rerun.loc[v.name].get("pdms", np.nan)}
                          for parent, kind, v in made])
    return MineResult(failed[keep].reset_index(drop=True), [v for _, _, v in made], table, float(table["failed"].mean()))
