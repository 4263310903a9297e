"""Realism of a traffic model against real logs (the WOSAC meta-metric, traffic_model/wosac.py).

For each logged scenario: 1 s of logged history, then the traffic model drives every agent but
the ego (which replays its log) for 8 s from the logged state; the simulated features are scored
against the logged ones. The built-in traffic models are deterministic, so their 32 rollouts are
identical (one simulation, repeated). The learned model (`model="learned"`, a `LearnedTraffic`
behaviour) is stochastic: its 32 rollouts are 32 copies of each scenario with scenario seeds
0..31, simulated in one batch, each sampling its own future (traffic_model/model.py, seeding).
"""

from __future__ import annotations

from dataclasses import dataclass

import copy

import pandas as pd
import torch

from drivesim.traffic.log_modes import window, with_traffic
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.traffic_model.wosac import RealismConfig, bin_index, log_trajectory, realism_score
from drivesim.sim.policy import ConstantVelocity
from drivesim.sim.rollout import rollout

MODELS = {"replay": "replay", "idm_mobil": "reactive", "constant_velocity": "constant_velocity", "hybrid": "hybrid",
          "learned": "learned"}


@dataclass
class RealismResult:
    table: pd.DataFrame  # one row per scenario: each feature's likelihood and the meta-metric
    skipped: list[str]  # scenarios too short for history + future
    features: tuple | None = None  # (sim_feats, log_feats, mask) for plotting


def realism(scenarios: list[Scenario], model: str, config: RealismConfig | None = None, device: str = "cpu",
            behavior=None) -> RealismResult:
    """Score traffic model `model` (a key of MODELS) on logged scenarios. `behavior` drives the
    `learned` model (default: the shipped artifact, `LearnedTraffic.load()`)."""
    cfg = config or RealismConfig()
    if model not in MODELS:
        raise ValueError(f"unknown traffic model {model!r}; expected one of {sorted(MODELS)}")
    start, steps = cfg.history_steps - 1, cfg.future_steps  # the rollout starts at the last history step
    usable = [s for s in scenarios if s.log is not None and s.log.shape[1] > start + steps]
    skipped = [s.name for s in scenarios if s not in usable]
    if not usable:
        raise ValueError(f"no scenario has {start + steps + 1} logged steps (skipped: {skipped})")
    logged = ScenarioBatch.build([window(s, 0, start + steps, keep_all=True) for s in usable], device=device)
    sim_scen = [with_traffic(window(s, start, steps, keep_all=True), MODELS[model], ego="replay") for s in usable]
    log_traj = log_trajectory(logged)
    if model == "learned":
        if behavior is None:
            from drivesim.traffic_model.model import LearnedTraffic

            behavior = LearnedTraffic.load(device=device)
        rollouts = _stochastic_rollouts(sim_scen, logged, log_traj, start, cfg.n_rollouts, behavior, device)
    else:
        batch = ScenarioBatch.build(sim_scen, bank=_sim_bank(logged, usable, sim_scen, start), device=device)
        res = rollout(batch, ConstantVelocity(), record=True)  # the ego replays its log: the policy is not used
        rollouts = [_with_history(res.trajectory, log_traj, start, device)] * cfg.n_rollouts
    table, meta, feats = realism_score(rollouts, log_traj, logged.bank, logged.map_idx,
                                       logged.init["agent_type"], cfg, return_features=True)
    rows = pd.DataFrame({k: v.cpu().numpy() for k, v in table.items()})
    rows.insert(0, "scenario", [s.name for s in usable])
    rows["meta_metric"] = meta.cpu().numpy()
    return RealismResult(rows, skipped, feats)


def _sim_bank(logged: ScenarioBatch, usable: list[Scenario], sim_scen: list[Scenario], start: int):
    """The logged batch's bank for the windowed scenarios: the same one, unless a map replays
    logged signals (their windows carry tables shifted by `start`: behavior.logs.window)."""
    if all(s.road is w.road for s, w in zip(usable, sim_scen)):
        return logged.bank
    new = {id(s.road): w.road for s, w in zip(usable, sim_scen)}
    return logged.bank.with_signal_offset([new.get(id(m), m) for m in logged.bank.maps], start)


def _with_history(trajectory: dict, log_traj: dict, start: int, device) -> dict:
    """A simulated trajectory ([T+1, B, A] arrays) behind the logged history steps before `start`."""
    sim = {k: torch.as_tensor(trajectory[k], device=device) for k in ("x", "y", "yaw", "speed", "valid")}
    out = {k: torch.cat([log_traj[k][:start], sim[k]]) for k in sim}
    out.update(length=log_traj["length"], width=log_traj["width"])
    return out


def _stochastic_rollouts(sim_scen: list[Scenario], logged: ScenarioBatch, log_traj: dict, start: int, n: int, behavior,
                         device) -> list[dict]:
    """n rollouts of a stochastic behaviour: copy r of every scenario gets scenario seed r; all
    copies run in one batch (rows rollout-major) and are split back into n trajectories."""
    copies = []
    for r in range(n):
        for s in sim_scen:
            c = copy.copy(s)
            c.seed = r
            copies.append(c)
    batch = ScenarioBatch.build(copies, bank=_sim_bank(logged, logged.scenarios, sim_scen, start), device=device)
    res = rollout(batch, ConstantVelocity(), record=True, behavior=behavior)
    S = len(sim_scen)
    return [_with_history({k: v[:, r * S:(r + 1) * S] for k, v in res.trajectory.items()}, log_traj, start, device)
            for r in range(n)]


def plot(result: RealismResult, path, config: RealismConfig | None = None) -> None:
    sim_f, log_f, mask = result.features
    table = {k: torch.tensor(result.table[k].to_numpy(copy=True)) for k in result.table.columns if k not in ("scenario", "meta_metric")}
    plot_histograms(sim_f, log_f, path, mask=mask, config=config or RealismConfig(), table=table)


def plot_histograms(sim_feats: dict, log_feats: dict, path, mask: torch.Tensor | None = None,
                    config: RealismConfig = RealismConfig(), table: dict | None = None) -> None:
    """Grid of the features: normalized histograms of the simulated (all rollouts) and logged
    values on each feature's bins (outside values in the end bins), restricted to `mask`
    [T, B, A] when given; with `table`, titles show L_i (mean over scenarios)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, (len(config.features) + 1) // 2).reshape(-1)
    for ax, spec in zip(axes, config.features):
        edges = torch.linspace(spec.lo, spec.hi, spec.bins + 1)
        for values, label, kw in ((sim_feats[spec.name], "simulated", {"fill": True, "alpha": 0.4}),
                                  (log_feats[spec.name], "logged", {"linewidth": 2.0})):
            v = values[mask.expand_as(values)] if mask is not None else values.reshape(-1)
            counts = torch.bincount(bin_index(v[~torch.isnan(v)], spec).cpu(), minlength=spec.bins).float()
            ax.stairs((counts / counts.sum().clamp(min=1)).numpy(), edges.numpy(), label=label, **kw)
        title = spec.name if table is None else f"{spec.name}  L={float(table[spec.name].nanmean()):.3f}"
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.05)
    for ax in axes[len(config.features):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=80)
