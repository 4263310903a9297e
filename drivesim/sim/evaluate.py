"""Evaluate policies on a scenario suite: batched rollouts, expert-relative progress, failures
isolated per scenario, results as a pandas table (one row per policy × scenario)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from drivesim.core.scenario import Scenario, ScenarioBatch, ScenarioError, check_unique_names
from drivesim.map.bank import MapBank
from drivesim.map.road import MapError
from drivesim.sim.observation import route_position
from drivesim.sim.rollout import PolicyTimeout, RolloutResult, rollout
from drivesim.sim.simulator import SimConfig


@dataclass
class EvalConfig:
    batch_size: int = 64
    keep_failure_trajectories: bool = True  # for BEV thumbnails of failed scenarios
    device: str = "cpu"
    policy_every: int = 1  # simulation steps per policy decision (a policy with its own `policy_every`, e.g. an RL
    # checkpoint trained at that rate, is run at its own)
    sim: SimConfig = field(default_factory=SimConfig)
    # time limits (s; 0 = off, for debugging): one policy call, and one rollout of a chunk of scenarios; a policy
    # past either gets error rows "timed out" for those scenarios and the evaluation goes on (sim/rollout.py)
    step_timeout: float = 60.0
    scenario_timeout: float = 1800.0
    seed: int = 0  # stochastic policies get per-scenario seeds derived from it and the scenario's name (sim/rollout.py)
    # camera observations: a zero-argument factory of a renderer (state, batch) -> [B, C, H, W, 3], e.g.
    # functools.partial(drivesim.render.cameras.make_cameras, CameraConfig("splat")); each task makes its own (and a
    # Ray worker its own), policies read the frames as obs.cameras; None: vector observations only
    cameras: object = None

    def validate_config(self, where: str = "evaluate") -> None:
        for name in ("step_timeout", "scenario_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{where}: {name} must be a number of seconds >= 0 (0 = off), got {value!r}")


@dataclass
class Evaluation:
    results: pd.DataFrame
    scenarios: list[Scenario] = field(default_factory=list)  # the valid scenarios, in order
    trajectories: dict = field(default_factory=dict)  # (policy, scenario name) -> (Scenario, traj dict [T, 1, A])


def _validate(scenarios: list[Scenario]) -> dict[str, str]:
    check_unique_names(scenarios)
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


class CameraTimer:
    """A camera renderer that counts what it renders: `frames` (one per row and call: a frame of
    all the rig's cameras) and `seconds`."""

    def __init__(self, renderer):
        self.renderer, self.frames, self.seconds = renderer, 0, 0.0

    def __call__(self, state, batch) -> torch.Tensor:
        t0 = time.perf_counter()
        images = self.renderer(state, batch)
        self.seconds += time.perf_counter() - t0
        self.frames += state.batch_size
        return images

    def reset(self) -> None:
        if hasattr(self.renderer, "reset"):  # the refiner's previous frames belong to the last rollout
            self.renderer.reset()


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
    cameras = CameraTimer(cfg.cameras()) if cfg.cameras is not None else None
    if cameras is not None:
        cameras.reset()
    res = rollout(batch, policy, sim_config=cfg.sim, expert_progress=ep, record=record, policy_every=every,
                  step_timeout=cfg.step_timeout, scenario_timeout=cfg.scenario_timeout, seed=cfg.seed, cameras=cameras)
    if cameras is not None:  # the frames the policy read, and their cost, shared evenly over the chunk's rows
        res.extra.update(camera_frames=[cameras.frames // len(chunk)] * len(chunk),
                         camera_seconds=[cameras.seconds / len(chunk)] * len(chunk))
    raised = all(st == "error" and "raised" in er for st, er in zip(res.status, res.errors))
    timed_out = all(st == "error" and "timed out" in er for st, er in zip(res.status, res.errors))
    if not (raised or timed_out) or len(chunk) == 1:
        return [(s, res, b) for b, s in enumerate(chunk)]
    out = _run_isolated(chunk[:1], bank, policy, cfg, expert, record)
    if timed_out and "timed out" in out[0][1].errors[0]:  # it hangs alone too: do not wait on each scenario again
        note = f" (timed out on the chunk of {len(chunk)} scenarios and alone on {chunk[0].name!r}: not retried)"
        res.errors = [e + note for e in res.errors]
        return out + [(s, res, b) for b, s in enumerate(chunk) if b > 0]
    for s in chunk[1:]:
        out += _run_isolated([s], bank, policy, cfg, expert, record)
    return out


def run_chunk(chunk: list[Scenario], bank, policy, cfg: EvalConfig, expert: dict | None) -> list[tuple[dict, dict | None]]:
    """One task of an evaluation: the result rows of `policy` on `chunk`, each with the scenario's
    trajectory [T, 1, A] where it failed (else None). A scenario whose simulation raises (not the
    policy: that is caught per step) becomes an error row with the reason; the others still run."""
    try:
        results = _run_isolated(chunk, bank, policy, cfg, expert, cfg.keep_failure_trajectories)
    except (Exception, PolicyTimeout) as exc:  # noqa: BLE001 - isolate the scenario that raises, report the rest
        if len(chunk) > 1:
            return [r for s in chunk for r in run_chunk([s], bank, policy, cfg, expert)]
        return [({"policy": policy.name, "scenario": chunk[0].name, "map": chunk[0].road.name, "status": "error",
                  "error": f"simulation raised {type(exc).__name__}: {exc}"}, None)]
    out = []
    for s, res, b in results:
        row = {"policy": policy.name, "scenario": s.name, "map": s.road.name, "status": res.status[b], "error": res.errors[b]}
        row.update({k: float(v[b]) for k, v in res.metrics.items()})
        row.update(scenario_columns(s))
        if "held_back" in res.extra:  # logged agents whose appearance waited for a free place (sim/simulator.py)
            row["held_back"] = int(res.extra["held_back"][b])
        for key in ("camera_frames", "camera_seconds"):
            if key in res.extra:
                row[key] = res.extra[key][b]
        failed = res.status[b] == "error" or row.get("success", 1.0) < 1
        traj = {k: v[:, b : b + 1] for k, v in res.trajectory.items()} if res.trajectory is not None and failed else None
        out.append((row, traj))
    return out


def scenario_columns(s: Scenario) -> dict:
    """What a generated event set records about a scenario, as result columns: `event` (its type),
    `knob_<name>` (its scalar knobs) and `label_<name>` (its labels: `label_bound_avoidable`,
    `label_expert_solved`, `label_avoidable`, ...); nothing for other scenarios. Reports treat
    them as descriptions of the scenario, not as metrics (io/eval_report.metric_columns)."""
    if "event" not in s.meta:
        return {}
    scalar = lambda v: isinstance(v, (bool, int, float, str)) and not isinstance(v, dict)
    knobs = {f"knob_{k}": v for k, v in (s.meta.get("params") or {}).items() if scalar(v)}
    labels = {f"label_{k}": v for k, v in (s.meta.get("labels") or {}).items() if scalar(v)}
    return {"event": str(s.meta["event"]), **knobs, **labels}


def local_runner(jobs, bank, cfg: EvalConfig, expert: dict | None):
    """The in-process backend: the jobs [(policy, chunk)] one after the other, yielding
    (job index, run_chunk result). Another backend (drivesim.distributed) yields the same pairs
    in any order as its workers finish."""
    for i, (policy, chunk) in enumerate(jobs):
        yield i, run_chunk(chunk, bank, policy, cfg, expert)


def evaluate(scenarios: list[Scenario], policies: list, expert=None, config: EvalConfig | None = None,
             show_progress: bool = True, runner=None, on_rows=None, done_rows: list[dict] | None = None,
             skipped: dict[str, str] | None = None, tags: dict[str, dict] | None = None) -> Evaluation:
    """Run every policy on every scenario. `expert` (a policy) sets the progress reference;
    its own results appear as a policy row too. Bad scenarios become 'error' rows.

    The work is split into jobs of one policy on one chunk of `batch_size` scenarios, run by
    `runner` (default `local_runner`); the expert's jobs go first since the others are scored
    against its progress. `on_rows(rows)` sees each job's rows as they arrive (for streaming);
    the returned table is in policy then scenario order whatever order the jobs finish in.

    Resuming: `done_rows` are rows of an earlier run of the same suite and policies; their
    (policy, scenario) pairs are not run again and appear in the table as they are (the
    expert's stored progress still scores the others). `skipped` ({file: reason}) are input
    files that could not be read: a row with status 'skipped' per policy. `tags` ({policy name:
    fields}) are added to each row of that policy (e.g. suite hash, policy hash, seed)."""
    cfg = config or EvalConfig()
    cfg.validate_config()
    runner = runner or local_runner
    bad = _validate(scenarios)
    good = [s for s in scenarios if s.name not in bad]
    by_name = {s.name: s for s in good}
    kept = {(r["policy"], r["scenario"]): r for r in done_rows or [] if r["scenario"] in by_name}
    bank = MapBank.build(list({id(s.road): s.road for s in good}.values()), device=cfg.device) if good else None
    runs = ([expert] if expert is not None else []) + [p for p in policies if p is not expert]
    phases = [runs[:1], runs[1:]] if expert is not None else [runs]
    todo = {p.name: _chunks([s for s in good if (p.name, s.name) not in kept], cfg.batch_size) for p in runs}
    bar = tqdm(total=sum(map(len, todo.values())), desc="evaluate", disable=not show_progress)
    rows, trajs, expert_progress = list(kept.values()), {}, None
    for phase in phases:
        jobs = [(policy, chunk) for policy in phase for chunk in todo[policy.name]]
        done: dict[int, list] = {}
        for i, result in runner(jobs, bank, cfg, expert_progress) if jobs else ():
            if i in done:  # a retried job that reported twice must not be counted twice
                continue
            done[i] = result
            for row, _ in result:
                row.update((tags or {}).get(row["policy"], {}))
            if on_rows is not None:
                on_rows([row for row, _ in result])
            bar.update(1)
        missing = sorted(set(range(len(jobs))) - set(done))
        if missing:
            raise RuntimeError(f"evaluation backend returned no result for {len(missing)} of {len(jobs)} jobs")
        for i in range(len(jobs)):
            for row, traj in done[i]:
                rows.append(row)
                if traj is not None:
                    trajs[(row["policy"], row["scenario"])] = (by_name[row["scenario"]], traj)
        if expert is not None and phase and phase[0] is expert:
            expert_progress = {r["scenario"]: r.get("progress", np.nan) for r in rows if r["policy"] == expert.name}
    bar.close()
    for policy in runs:
        for name, why in bad.items():
            rows.append({"policy": policy.name, "scenario": name, "map": "", "status": "error", "error": why})
        for name, why in (skipped or {}).items():
            rows.append({"policy": policy.name, "scenario": name, "map": "", "status": "skipped", "error": why})
    return Evaluation(pd.DataFrame(_in_order(rows, runs, scenarios, tags)), good, trajs)


def _in_order(rows: list[dict], runs: list, scenarios: list[Scenario], tags: dict | None) -> list[dict]:
    """The rows in policy then scenario order (stable: unknown names last), each with its policy's tags."""
    policy_at = {p.name: i for i, p in reversed(list(enumerate(runs)))}
    scenario_at = {s.name: i for i, s in reversed(list(enumerate(scenarios)))}
    rows = [{**r, **(tags or {}).get(r["policy"], {})} for r in rows]
    return sorted(rows, key=lambda r: (policy_at.get(r["policy"], len(runs)), scenario_at.get(r["scenario"], len(scenarios))))
