"""Evaluate policies on a scenario suite: batched rollouts, expert-relative progress, failures
isolated per scenario, results as a pandas table (one row per policy × scenario)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from drivesim.behavior.scenario import Scenario, ScenarioBatch, ScenarioError
from drivesim.map.bank import MapBank
from drivesim.map.road import MapError
from drivesim.sim.observation import route_position
from drivesim.sim.rollout import RolloutResult, rollout
from drivesim.sim.simulator import SimConfig


@dataclass
class EvalConfig:
    batch_size: int = 64
    keep_failure_trajectories: bool = True  # for BEV thumbnails of failed scenarios
    device: str = "cpu"
    policy_every: int = 1  # simulation steps per policy decision (a policy with its own `policy_every`, e.g. an RL
    # checkpoint trained at that rate, is run at its own)
    sim: SimConfig = field(default_factory=SimConfig)


@dataclass
class Evaluation:
    results: pd.DataFrame
    scenarios: list[Scenario] = field(default_factory=list)  # the valid scenarios, in order
    trajectories: dict = field(default_factory=dict)  # (policy, scenario name) -> (Scenario, traj dict [T, 1, A])


def _validate(scenarios: list[Scenario]) -> dict[str, str]:
    bad = {}
    for s in scenarios:
        try:
            s.validate()
        except (ScenarioError, MapError, ValueError) as exc:
            bad[s.name] = str(exc)
    return bad


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def logged_progress(batch: ScenarioBatch) -> torch.Tensor:
    """[B] metres the logged ego drove along its route (NaN where the ego has no log): the
    progress reference for policies driving a logged scenario."""
    xy = batch.log[:, 0, :, :2]  # [B, T+1, 2]
    valid = batch.log_valid[:, 0]
    s, _ = route_position(batch, xy)
    T1 = valid.shape[1]
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)
    last = T1 - 1 - valid.flip(1).to(torch.uint8).argmax(dim=1, keepdim=True)
    progress = (s.gather(1, last) - s.gather(1, first)).squeeze(1)
    return torch.where(valid.any(dim=1), progress, torch.full_like(progress, float("nan")))


def _run_isolated(chunk, bank, policy, cfg, expert, record) -> list[tuple[Scenario, RolloutResult, int]]:
    """Roll out a chunk; if the policy raised for all rows, retry one scenario at a time so that
    only the scenarios where it raises are marked failed. Progress is scored against the logged
    ego where the scenario has one, else against the expert's run."""
    batch = ScenarioBatch.build(chunk, bank=bank, device=cfg.device)
    ep = torch.as_tensor([(expert or {}).get(s.name, np.nan) for s in chunk], dtype=torch.float32, device=cfg.device)
    logged = logged_progress(batch)
    ep = torch.where(torch.isfinite(logged), logged, ep)
    ep = None if torch.isnan(ep).all() else ep
    every = getattr(policy, "policy_every", None) or cfg.policy_every
    res = rollout(batch, policy, sim_config=cfg.sim, expert_progress=ep, record=record, policy_every=every)
    raised = all(st == "error" and "raised" in er for st, er in zip(res.status, res.errors))
    if not raised or len(chunk) == 1:
        return [(s, res, b) for b, s in enumerate(chunk)]
    out = []
    for s in chunk:
        out += _run_isolated([s], bank, policy, cfg, expert, record)
    return out


def evaluate(scenarios: list[Scenario], policies: list, expert=None, config: EvalConfig | None = None,
             show_progress: bool = True) -> Evaluation:
    """Run every policy on every scenario. `expert` (a policy) sets the progress reference;
    its own results appear as a policy row too. Bad scenarios become 'error' rows."""
    cfg = config or EvalConfig()
    bad = _validate(scenarios)
    good = [s for s in scenarios if s.name not in bad]
    rows, trajs = [], {}
    bank = MapBank.build(list({id(s.road): s.road for s in good}.values()), device=cfg.device) if good else None
    expert_progress = None
    runs = ([expert] if expert is not None else []) + [p for p in policies if p is not expert]
    total = len(runs) * len(_chunks(good, cfg.batch_size))
    bar = tqdm(total=total, desc="evaluate", disable=not show_progress)
    for policy in runs:
        name = policy.name
        for chunk in _chunks(good, cfg.batch_size):
            for s, res, b in _run_isolated(chunk, bank, policy, cfg, expert_progress, cfg.keep_failure_trajectories):
                row = {"policy": name, "scenario": s.name, "map": s.road.name, "status": res.status[b], "error": res.errors[b]}
                row.update({k: float(v[b]) for k, v in res.metrics.items()})
                rows.append(row)
                if res.trajectory is not None and (res.status[b] == "error" or row.get("success", 1.0) < 1):
                    trajs[(name, s.name)] = (s, {k: v[:, b : b + 1] for k, v in res.trajectory.items()})
            bar.update(1)
        if policy is expert:
            expert_progress = {r["scenario"]: r.get("progress", np.nan) for r in rows if r["policy"] == name}
    bar.close()
    for policy in runs:
        for name, why in bad.items():
            rows.append({"policy": policy.name, "scenario": name, "map": "", "status": "error", "error": why})
    return Evaluation(pd.DataFrame(rows), good, trajs)
