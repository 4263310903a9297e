"""Batched closed-loop rollouts of a policy over B scenarios, with metrics and failure handling.

A policy action that is not [B, 2], not finite, or outside the action space fails the rows it
concerns (named in the error with the step and the values); those rows brake to a stop and
their metrics are NaN. A policy that raises fails every row still running. Other rows go on.
A policy may return a `Trajectory` (sim/trajectory.py) instead of actions: the simulator's
controller (`TrajectoryTracker`) tracks it every step until the next decision; a trajectory of
the wrong shape, with non-finite poses or shorter than the re-plan interval fails its rows the same way.

Seeds: `rollout(..., seed=S)` gives each scenario its own seed, `scenario_seeds(S, names)`,
derived from S and the scenario's name only (so neither the batch size, the order nor the
backend changes it), and hands them to a policy whose `reset` takes them:
`policy.reset(batch, seeds=[int per scenario])` (a policy whose `reset(batch)` takes no `seeds`
is reset as before). A stochastic policy seeds one generator per row from them and draws per
row, so its rows are reproducible. The evaluator passes `EvalConfig.seed` (nuPlan and NAVSIM
seed their workers the same way).

Time limits (`step_timeout`, `scenario_timeout` in seconds, 0 = off): a policy call (`reset` or
`act`) that takes longer than `step_timeout`, or a rollout still running after `scenario_timeout`,
fails every row still running with a "timed out" reason, and the rollout stops. The watchdog is
SIGALRM (`signal.setitimer`) in the main thread: it interrupts Python-level hangs (`while True`,
`time.sleep`, waiting on I/O or a lock); C code that never returns to the interpreter (a hung
extension holding the GIL) cannot be interrupted in-process: the Ray backend's task deadline
(distributed/ray_backend.py) kills such a worker. Off the main thread (or without SIGALRM) only
the between-step check of `scenario_timeout` applies.
"""

from __future__ import annotations

import hashlib
import inspect
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.state import SimState
from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig
from drivesim.sim.observation import ObservationConfig, observe
from drivesim.sim.simulator import SimConfig, Simulator, action_problems
from drivesim.sim.trajectory import Trajectory, TrackerConfig, TrajectoryTracker, check_trajectory


@dataclass
class RolloutResult:
    names: list[str]
    metrics: dict[str, np.ndarray]  # name -> [B] (NaN on failed rows)
    status: list[str]  # 'ok' | 'error' per scenario
    errors: list[str]  # reason per scenario ('' when ok)
    trajectory: dict[str, np.ndarray] | None = None  # SimState fields [T+1, B, A] when recorded
    wall_time: float = 0.0
    agent_steps: int = 0
    extra: dict = field(default_factory=dict)  # per row [B]: trigger_step (when a script waiting for the ego started, -1 never), held_back (logged agents whose appearance waited for a free place)


class PolicyTimeout(BaseException):
    """A policy call ran past its time limit (a BaseException, so that a policy's own
    `except Exception` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float, what: str):
    """Raise PolicyTimeout in this (main) thread if the block runs longer than `seconds`
    (inf or <= 0: no limit; a no-op off the main thread or where SIGALRM does not exist)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or not 0 < seconds < float("inf"):
        yield
        return

    def expired(signum, frame):
        raise PolicyTimeout(f"{what} timed out after {seconds:.3g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def scenario_seeds(seed: int, names: list[str]) -> list[int]:
    """A 63-bit seed per scenario from the evaluation seed and the scenario's name (sha256)."""
    return [int.from_bytes(hashlib.sha256(f"{int(seed)}/{n}".encode()).digest()[:8], "little") >> 1 for n in names]


def _takes_seeds(policy) -> bool:
    try:
        params = inspect.signature(policy.reset).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return False
    return any(p.name == "seeds" or p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


def rollout(batch: ScenarioBatch, policy, *, sim_config: SimConfig | None = None, metric_config: MetricConfig | None = None,
            obs_config: ObservationConfig | None = None, expert_progress: torch.Tensor | None = None, record: bool = False,
            show_progress: bool = False, policy_every: int = 1, behavior=None, cameras=None,
            step_timeout: float = 0.0, scenario_timeout: float = 0.0, seed: int | None = None,
            tracker: TrackerConfig | None = None) -> RolloutResult:
    """Run `policy` on every scenario of `batch` for its duration; return metrics and status.

    The policy acts every `policy_every` simulation steps and its action is held in between
    (simulation and policy rates are separate). A policy may return a `Trajectory`
    (sim/trajectory.py) instead: a `TrajectoryTracker` (config `tracker`) tracks it every
    simulation step until the next decision; it must cover at least `policy_every` steps (rows
    whose trajectory is bad fail, as for bad actions). `behavior` drives the LEARNED agents
    (`Simulator(batch, behavior=...)`). `cameras`: a renderer (state, batch) -> [B, C, H, W, 3]
    whose images the policy reads as `obs.cameras` (rendered only when it does).
    `step_timeout` / `scenario_timeout`: time limits in seconds (0 = off); `seed`: the seed the
    per-scenario seeds of a stochastic policy derive from (module docstring).
    """
    if policy_every < 1:
        raise ValueError(f"policy_every must be >= 1, got {policy_every}")
    t0 = time.perf_counter()
    if hasattr(policy, "prepare_batch"):  # e.g. the log policy: the ego replays its log
        batch = policy.prepare_batch(batch)
    sim = Simulator(batch, sim_config, behavior=behavior)
    obs_config = obs_config or ObservationConfig()
    state = sim.reset()
    B = batch.batch_size
    name = getattr(policy, "name", policy)
    deadline = t0 + scenario_timeout if scenario_timeout > 0 else float("inf")
    over = f"timed out: scenario time limit of {scenario_timeout:g} s exceeded (--scenario-timeout)"

    def limit() -> tuple[float, str | None]:
        """(seconds the next policy call may take, the reason to give if it does not return; None: the step limit's)"""
        left = deadline - time.perf_counter()
        return (step_timeout, None) if 0 < step_timeout <= left else (left, over)

    errors = [""] * B
    failed = torch.zeros(B, dtype=torch.bool, device=batch.device)
    seconds, why = limit()
    try:
        with time_limit(seconds, f"policy {name!r}: reset"):
            if seed is not None and _takes_seeds(policy):
                policy.reset(batch, seeds=scenario_seeds(seed, batch.names))
            else:
                policy.reset(batch)
    except PolicyTimeout as exc:
        errors, failed = [f"scenario {n!r}, step 0: {why or exc}" for n in batch.names], torch.ones_like(failed)
    acc = MetricAccumulator(batch, metric_config or MetricConfig())
    acc.update(state, ~failed)
    done = torch.zeros_like(failed)
    frames = [state] if record else None
    brake = torch.tensor([-4.0, 0.0], device=batch.device)
    plan, controller = None, None  # the Trajectory being tracked (None: actions held) and its tracker
    for t in tqdm(range(batch.max_steps), desc=getattr(policy, "name", "policy"), disable=not show_progress, leave=False):
        if t == 0 and bool(failed.all()):  # its reset timed out
            break
        if time.perf_counter() > deadline:
            reasons = [over] * B
        elif t % policy_every == 0:
            action, reasons = _act(policy, state, batch, obs_config, cameras, *limit())
            plan = None
            if isinstance(action, Trajectory):  # tracked by the controller until the next decision
                plan, action = action, None
                reasons = [r or why for r, why in zip(reasons, check_trajectory(plan, B, policy_every * batch.dt))]
                if not all(reasons):  # else every row fails (a bad shape or horizon fails them all)
                    controller = controller or TrajectoryTracker(tracker)
                    controller.plan(plan, state)
        else:
            reasons = [""] * B
        for b, why in enumerate(reasons):
            if why and not failed[b]:
                errors[b] = f"scenario {batch.names[b]!r}, step {t}: {why}"
                failed[b] = True
        if bool(failed.all()):
            break
        if plan is not None:
            action = controller.act(state, batch.dt)
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
    extra = {"held_back": state.held_back.sum(dim=1).cpu().tolist()}  # logged agents held back at appearance, per row
    if sim.triggers.any:  # sim/triggers.py
        extra["trigger_step"] = sim.triggers.fired_at(state).cpu().numpy()
    return RolloutResult(batch.names, metrics, ["error" if f else "ok" for f in failed.tolist()], errors, traj,
                         time.perf_counter() - t0, int(batch.valid.sum()) * state.step, extra)


def _act(policy, state, batch, obs_config, cameras=None, seconds: float = float("inf"), over: str | None = None):
    """(action [B, 2] or the policy's Trajectory, reason per row); `seconds`: time limit of the
    call, `over`: the reason when it is the scenario's limit that ran out (else the step limit's)."""
    B = batch.batch_size
    try:
        with time_limit(seconds, f"policy {getattr(policy, 'name', policy)!r}: act"):
            action = policy.act(observe(state, batch, obs_config, cameras))
    except PolicyTimeout as exc:
        return torch.zeros(B, 2, device=batch.device), [over or f"{exc} (--step-timeout)"] * B
    except Exception as exc:  # a policy bug must not take the suite down: report it per row
        return torch.zeros(B, 2, device=batch.device), [f"policy {getattr(policy, 'name', policy)!r} raised {type(exc).__name__}: {exc}"] * B
    if isinstance(action, Trajectory):  # checked by the caller, which knows the re-plan interval
        return action, [""] * B
    reasons = action_problems(action, B)  # the check Simulator.step makes, per row, so that only bad rows fail
    if not torch.is_tensor(action) or tuple(action.shape) != (B, 2):
        return torch.zeros(B, 2, device=batch.device), [f"policy returned {why.removeprefix('got ')}" for why in reasons]
    return torch.nan_to_num(action.float(), nan=0.0, posinf=0.0, neginf=0.0), reasons
