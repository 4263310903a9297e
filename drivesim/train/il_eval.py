"""Closed-loop checks of the imitation-learning trainer (train/il.py) and its training curves:
the fresh scenarios of the per-round check (`eval_scenarios`), the greedy learner's (or the
expert's) success, collision rate and PDMS on them (`closed_loop`), and `plot_curves`."""

from __future__ import annotations

import math

import numpy as np
import torch

from drivesim.sim.expert import PDMClosed
from drivesim.train.il_config import ILConfig
from drivesim.train.il_data import rare_scenarios, suite_scenarios
from drivesim.train.il_variants import start_variants
from drivesim.train.policy_net import NetPolicy, PolicyNet


def eval_scenarios(cfg: ILConfig):
    """Fresh scenarios for the closed-loop check: the suite (and the rare events) drawn with another
    seed, with start variants of `start_fraction` of the suite's (the policy must drive off from them)."""
    if cfg.eval_scenarios == 0:
        return []
    out = []
    if cfg.suite != "none":
        s, _ = suite_scenarios(cfg.suite, seed=5000 + cfg.seed, repeat=1, tag="ilval")
        s = s[:: max(1, len(s) // cfg.eval_scenarios)][: cfg.eval_scenarios]
        out += s + start_variants(s, cfg.starts, cfg.start_fraction, seed=5000 + cfg.seed)
    if cfg.rare:
        n = cfg.eval_scenarios if cfg.suite == "none" else cfg.eval_scenarios // 2
        out += rare_scenarios(max(n, len(cfg.rare_events)), cfg.rare_events, seed=5000 + cfg.seed)[0]
    return out


def closed_loop(net: PolicyNet | None, scenarios, cfg: ILConfig, expert_progress=None) -> dict:
    """Success, collision rate and PDMS of the greedy learner (or the expert when net is None)."""
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.map.bank import MapBank
    from drivesim.sim.rollout import rollout

    if not scenarios:
        return {}
    policy = PDMClosed() if net is None else NetPolicy(net, name="il")
    bank = MapBank.build(list({id(s.road): s.road for s in scenarios}.values()))
    rows = {k: [] for k in ("success", "collision_any", "pdms", "comfort", "progress")}
    for i in range(0, len(scenarios), cfg.sim_batch):
        batch = ScenarioBatch.build(scenarios[i : i + cfg.sim_batch], bank=bank)
        ref = None if expert_progress is None else torch.tensor(expert_progress[i : i + cfg.sim_batch], dtype=torch.float32)
        res = rollout(batch, policy, expert_progress=ref)
        for k in rows:
            rows[k] += res.metrics[k].tolist()
    out = {k: round(float(np.nanmean(v)), 4) for k, v in rows.items() if k != "progress"}
    out["n"] = len(scenarios)
    out["_progress"] = rows["progress"]
    return out


def plot_curves(curve: list[dict], rounds: list[dict], expert: dict, path) -> None:
    """Loss and accuracy per epoch (train, validation; rounds marked) and closed-loop results per round."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 3)
    x = [c["global_epoch"] + 1 for c in curve]
    for i, (key, label) in enumerate((("loss", "cross-entropy"), ("acc", "accuracy (acceleration bin)"))):
        ax[i].plot(x, [c[key] for c in curve], "o-", ms=3, label="train")
        if any(f"val_{key}" in c for c in curve):
            ax[i].plot(x, [c.get(f"val_{key}", math.nan) for c in curve], "o-", ms=3, label="validation")
        for a, b in zip(curve, curve[1:]):
            if a["round"] != b["round"]:
                ax[i].axvline(a["global_epoch"] + 1.5, color="0.6", ls="--", lw=0.8)
        ax[i].set(xlabel="epoch (dashed: DAgger round)", ylabel=label)
        ax[i].legend(fontsize=8)
    r = [d["round"] for d in rounds if "success" in d]
    if r:
        ax[2].plot(r, [d["success"] for d in rounds if "success" in d], "o-", label="IL success")
        ax[2].plot(r, [d["collision_any"] for d in rounds if "success" in d], "o-", label="IL collision rate")
        ax[2].plot(r, [d["pdms"] for d in rounds if "success" in d], "o-", label="IL PDMS")
        for key, c in (("success", "C0"), ("collision_any", "C1"), ("pdms", "C2")):
            if key in expert:
                ax[2].axhline(expert[key], color=c, ls=":", lw=1)
        ax[2].set_xticks(r)
    ax[2].set(xlabel="DAgger round (dotted: expert)", ylabel="closed loop, fresh scenarios", ylim=(-0.02, 1.02))
    if r:
        ax[2].legend(fontsize=8)
    fig.savefig(path, dpi=90)
