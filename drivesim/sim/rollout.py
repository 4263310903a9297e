"""Batched closed-loop rollouts of a policy over B scenarios, with metrics and failure handling.

A policy action that is not [B, 2], not finite, or outside the action space fails the rows it
concerns (named in the error with the step and the values); those rows brake to a stop and
their metrics are NaN. A policy that raises fails every row still running. Other rows go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from drivesim.behavior.scenario import ScenarioBatch
from drivesim.core.state import SimState
from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig
from drivesim.sim.observation import ObservationConfig, observe
from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
from drivesim.sim.simulator import SimConfig, Simulator

ACTION_TOL = 1e-4


@dataclass
class RolloutResult:
    names: list[str]
    metrics: dict[str, np.ndarray]  # name -> [B] (NaN on failed rows)
    status: list[str]  # 'ok' | 'error' per scenario
    errors: list[str]  # reason per scenario ('' when ok)
    trajectory: dict[str, np.ndarray] | None = None  # SimState fields [T+1, B, A] when recorded
    wall_time: float = 0.0
    agent_steps: int = 0
    extra: dict = field(default_factory=dict)


def check_actions(action, batch_size: int) -> list[str]:
    """A reason per row ('' if the row's action is acceptable)."""
    if not torch.is_tensor(action) or tuple(action.shape) != (batch_size, 2) or not action.is_floating_point():
        shape = tuple(action.shape) if torch.is_tensor(action) else type(action).__name__
        return [f"policy returned {shape}, expected a float tensor [{batch_size}, 2] (accel, steer)"] * batch_size
    a = action.detach().cpu()
    finite = torch.isfinite(a).all(dim=1)
    inside = ((a >= ACTION_LOW - ACTION_TOL) & (a <= ACTION_HIGH + ACTION_TOL)).all(dim=1)
    reasons = [""] * batch_size
    for b in (~(finite & inside)).nonzero().flatten().tolist():  # messages for the bad rows only
        row = a[b]
        if not finite[b]:
            reasons[b] = f"non-finite action {row.tolist()}"
        else:
            reasons[b] = (f"action {[round(v, 3) for v in row.tolist()]} outside the action space "
                          f"accel [{ACTION_LOW[0]:g}, {ACTION_HIGH[0]:g}] m/s^2, steer [{ACTION_LOW[1]:g}, {ACTION_HIGH[1]:g}] rad")
    return reasons


def rollout(batch: ScenarioBatch, policy, *, sim_config: SimConfig | None = None, metric_config: MetricConfig | None = None,
            obs_config: ObservationConfig | None = None, expert_progress: torch.Tensor | None = None, record: bool = False,
            show_progress: bool = False, policy_every: int = 1, behavior=None, cameras=None) -> RolloutResult:
    """Run `policy` on every scenario of `batch` for its duration; return metrics and status.

    The policy acts every `policy_every` simulation steps and its action is held in between
    (simulation and policy rates are separate). `behavior` drives the LEARNED agents
    (`Simulator(batch, behavior=...)`). `cameras`: a renderer (state, batch) -> [B, C, H, W, 3]
    whose images the policy reads as `obs.cameras` (rendered only when it does).
    """
    if policy_every < 1:
        raise ValueError(f"policy_every must be >= 1, got {policy_every}")
    t0 = time.perf_counter()
    if hasattr(policy, "prepare_batch"):  # e.g. the log policy: the ego replays its log
        batch = policy.prepare_batch(batch)
    sim = Simulator(batch, sim_config, behavior=behavior)
    obs_config = obs_config or ObservationConfig()
    state = sim.reset()
    policy.reset(batch)
    B = batch.batch_size
    acc = MetricAccumulator(batch, metric_config or MetricConfig())
    errors = [""] * B
    failed = torch.zeros(B, dtype=torch.bool, device=batch.device)
    acc.update(state, ~failed)
    done = torch.zeros_like(failed)
    frames = [state] if record else None
    brake = torch.tensor([-4.0, 0.0], device=batch.device)
    for t in tqdm(range(batch.max_steps), desc=getattr(policy, "name", "policy"), disable=not show_progress, leave=False):
        if t % policy_every == 0:
            action, reasons = _act(policy, state, batch, obs_config, cameras)
        else:
            reasons = [""] * B
        for b, why in enumerate(reasons):
            if why and not failed[b]:
                errors[b] = f"scenario {batch.names[b]!r}, step {t}: {why}"
                failed[b] = True
        if bool(failed.all()):
            break
        action = torch.where(failed.unsqueeze(1), brake, action)
        state = sim.step(state, action)
        done = done | acc.route_completed  # past the end of its route the ego is no longer scored
        acc.update(state, ~failed & ~done)
        if record:
            frames.append(state)
    metrics = {k: v.detach().cpu().numpy().astype(float) for k, v in acc.finalize(expert_progress).items()}
    for v in metrics.values():
        v[failed.cpu().numpy()] = np.nan
    traj = {k: v.cpu().numpy() for k, v in SimState.stack_time(frames).items()} if record else None
    return RolloutResult(batch.names, metrics, ["error" if f else "ok" for f in failed.tolist()], errors, traj,
                         time.perf_counter() - t0, int(batch.valid.sum()) * state.step)


def _act(policy, state, batch, obs_config, cameras=None):
    B = batch.batch_size
    try:
        action = policy.act(observe(state, batch, obs_config, cameras))
    except Exception as exc:  # a policy bug must not take the suite down: report it per row
        return torch.zeros(B, 2, device=batch.device), [f"policy {getattr(policy, 'name', policy)!r} raised {type(exc).__name__}: {exc}"] * B
    reasons = check_actions(action, B)
    if not torch.is_tensor(action) or tuple(action.shape) != (B, 2):
        return torch.zeros(B, 2, device=batch.device), reasons
    return torch.nan_to_num(action.float(), nan=0.0, posinf=0.0, neginf=0.0), reasons
