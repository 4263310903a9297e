"""Training samples for the learned traffic model: (tokens, action label) per agent and step.

Sources are logged scenarios: real logs (nuScenes through ScenarioNet) and procedural traffic
rolled out with IDM/MOBIL and recorded as logs (`procedural_logs`). Three kinds of samples:

- log snapshots: every agent at its logged state (the previous step's action recovered with
  `bicycle.inverse` as its current accel/steer);
- noisy snapshots: the same with the driven agents' poses and speeds perturbed, so the labels
  teach the way back to the log (noise injection against compounding error);
- closed-loop snapshots (DAgger): states visited when the current model drives the agents for
  a few seconds from the log (`closed_loop_samples`), labelled back towards the log.

The label of an agent in any state is the joint (accel, curvature) bin that, held for H steps
through the same actuator limits and bicycle step as the simulator, ends closest to the logged
pose H steps later (`hold_labels`; the along-track error weighs little, so an agent behind or
ahead of its log is taught to regain the logged path and speed, not to chase the logged
position); with the log's own state this is the logged action, averaged over H steps. In
closed loop the labels never accelerate into the agent ahead (`learned.leader_bound`, the
bound the behaviour's collision-aware sampling uses).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.traffic_model.model import LearnedTraffic, TrafficModel, cap_action, leader_bound
from drivesim.traffic_model.tokens import TokenConfig, Tokens, agent_tokens
from drivesim.traffic.log_modes import PARKED_SPEED, window
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.geometry import wrap_angle
from drivesim.core.state import SimState
from drivesim.core.types import AgentType, ControlMode
from drivesim.dynamics.bicycle import WHEELBASE_RATIO, BicycleConfig, apply_limits, inverse
from drivesim.io.scenario_file import scenario_hash
from drivesim.dynamics.bicycle import step as bicycle_step
from drivesim.map.bank import MapBank
from drivesim.traffic_model.futures import scenario_from_trajectory
from drivesim.sim.policy import ConstantVelocity, IDMLaneKeeping
from drivesim.sim.rollout import rollout


TIE_WEIGHT = 1e-6  # m^2 per (m/s^2)^2: far below the pose differences of neighbouring bins of a moving agent
TIE_BRAKE = 0.3  # m/s^2


@dataclass(frozen=True)
class LabelConfig:
    horizon: int = 10  # H steps the candidate action is held
    along_weight: float = 0.2  # weight of the along-track error (in the target's frame): drift along the path is
    # not observable from the agent's state, so labels follow the logged path and speed rather than chase its position
    yaw_weight: float = 3.0  # m per rad in the pose distance
    speed_weight: float = 0.5  # m per m/s in the pose distance


@dataclass
class Source:
    """A logged scenario and which of its agents the model learns to drive ([A] bool)."""

    scenario: Scenario
    driven: np.ndarray
    kind: str  # "real" | "procedural"
    content_hash: str = ""  # of the scenario as loaded (before smoothing)

    @property
    def style(self) -> float:
        """The style token of its samples: 1 real logs, 0 procedural traffic."""
        return 1.0 if self.kind == "real" else 0.0


@dataclass
class Samples:
    tokens: Tokens
    labels: torch.Tensor  # [N] int64 joint action index

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def cat(parts: list["Samples"]) -> "Samples":
        parts = [p for p in parts if len(p)]
        return Samples(Tokens.cat([p.tokens for p in parts]), torch.cat([p.labels for p in parts]))


def driven_vehicles(scenario: Scenario) -> np.ndarray:
    """[A] the agents the `learned` traffic mode drives: vehicles that move in the log (not the ego)."""
    types = np.asarray(scenario.agent_type)
    speed = np.where(scenario.log_valid, scenario.log[..., 3], 0.0).max(axis=1)
    out = (types == int(AgentType.VEHICLE)) & (speed >= PARKED_SPEED)
    out[0] = False
    return out


def smooth_log(scenario: Scenario, steps: int) -> Scenario:
    """A copy whose log is a centred moving average over `steps` steps (valid steps only; yaw
    through its sine and cosine). The real tracks are 2 Hz annotations interpolated to 10 Hz:
    their speed jumps every 0.5 s by the annotation noise, which would otherwise dominate the
    action labels."""
    if steps <= 1:
        return scenario
    log, valid = scenario.log, scenario.log_valid.astype(float)
    kernel = np.ones(steps)
    ma = lambda v: np.stack([np.convolve(row, kernel, mode="same") for row in v])
    count = np.maximum(ma(valid), 1e-9)
    avg = lambda v: ma(v * valid) / count
    out = copy.copy(scenario)
    smooth = log.copy()
    smooth[..., 0], smooth[..., 1], smooth[..., 3] = avg(log[..., 0]), avg(log[..., 1]), avg(log[..., 3])
    smooth[..., 2] = np.arctan2(avg(np.sin(log[..., 2])), avg(np.cos(log[..., 2])))
    out.log = np.where(scenario.log_valid[..., None], smooth, log)
    return out


def procedural_logs(maps: tuple, count: int, seed: int, duration: float, density: tuple) -> list[Source]:
    """`count` procedural scenarios (maps in turn, IDM/MOBIL traffic, an IDM ego) rolled out and
    recorded as logs; the reactive vehicles are the ones to learn."""
    from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
    from drivesim.map.builders import build_map

    roads = {m: build_map(m) for m in maps}
    rng = np.random.default_rng(seed)
    scenarios = []
    for i in range(count):
        cfg = TrafficConfig(density=float(rng.uniform(*density)), duration=duration)
        name = maps[i % len(maps)]
        scenarios.append(procedural_scenario(roads[name], cfg, seed=seed * 1000 + i, name=f"proc{i}-{name}"))
    res = rollout(ScenarioBatch.build(scenarios), IDMLaneKeeping(), record=True)
    out = []
    for b, s in enumerate(scenarios):
        logged = scenario_from_trajectory(s, res.trajectory, b, s.name, {"recorded_from": "idm_mobil"})
        out.append(Source(logged, (np.asarray(s.mode) == ControlMode.REACTIVE), "procedural", scenario_hash(logged)))
    return out


def logged_state(scenario: Scenario, dynamics: BicycleConfig = BicycleConfig()) -> SimState:
    """The log as a SimState with one row per log step ([T+1, A] fields, clock = step); accel
    and steer are the actions recovered from the previous step (0 at the first)."""
    log = torch.as_tensor(scenario.log, dtype=torch.float32).transpose(0, 1)  # [T+1, A, 4]
    valid = torch.as_tensor(scenario.log_valid).transpose(0, 1)
    T1, A = valid.shape
    length = torch.as_tensor(np.asarray(scenario.length), dtype=torch.float32).expand(T1, A)
    acc, steer = inverse(log[..., 2].T, log[..., 3].T, length[0].unsqueeze(1), scenario.dt)  # [A, T]
    both = (valid[1:] & valid[:-1]).T
    acc = torch.where(both, acc, 0.0).clamp(-dynamics.max_decel, dynamics.max_accel)
    steer = torch.where(both, steer, 0.0).clamp(-dynamics.max_steer, dynamics.max_steer)
    zero = torch.zeros(1, A)
    f = lambda v: torch.as_tensor(np.asarray(v)).expand(T1, A)
    return SimState(x=log[..., 0], y=log[..., 1], yaw=log[..., 2], speed=log[..., 3], accel=torch.cat([zero, acc.T]),
                    steer=torch.cat([zero, steer.T]), length=length, width=f(scenario.width).float(),
                    agent_type=f(scenario.agent_type).long(), valid=valid, lane=torch.full((T1, A), -1),
                    seg=torch.zeros(T1, A, dtype=torch.long),
                    clock=torch.arange(T1))


def hold_labels(state: SimState, rows, cols, target: torch.Tensor, model: TrafficModel, cfg: LabelConfig, dt: float,
                dynamics: BicycleConfig = BicycleConfig(), chunk: int = 4096) -> torch.Tensor:
    """[N] the joint action index whose command, held for cfg.horizon steps from each agent's
    state (rows, cols), ends closest to `target` [N, 4] (x, y, yaw, speed)."""
    out = []
    for i in range(0, len(rows), chunk):
        r, c = rows[i:i + chunk], cols[i:i + chunk]
        g = lambda t: t[r, c].unsqueeze(1)  # [n, 1]
        length = g(state.length)
        acc_cmd = model.grid_accel.unsqueeze(0)  # [1, G]
        steer_cmd = torch.atan(model.grid_curvature.unsqueeze(0) * WHEELBASE_RATIO * length)  # [n, G]
        x, y, yaw, v = (g(t).expand(-1, acc_cmd.shape[1]) for t in (state.x, state.y, state.yaw, state.speed))
        prev_a, prev_s = g(state.accel).expand_as(x), g(state.steer).expand_as(x)
        for _ in range(cfg.horizon):
            a, s = apply_limits(acc_cmd.expand_as(x), steer_cmd, prev_a, prev_s, dt, dynamics)
            x, y, yaw, v, prev_a = bicycle_step(x, y, yaw, v, a, s, length, dt, dynamics.max_speed)
            prev_s = s
        tg = target[i:i + chunk]
        cos_t, sin_t = torch.cos(tg[:, 2:3]), torch.sin(tg[:, 2:3])
        along = (x - tg[:, :1]) * cos_t + (y - tg[:, 1:2]) * sin_t
        across = (y - tg[:, 1:2]) * cos_t - (x - tg[:, :1]) * sin_t
        score = ((cfg.along_weight * along) ** 2 + across ** 2 + (cfg.yaw_weight * wrap_angle(yaw - tg[:, 2:3])) ** 2
                 + (cfg.speed_weight * (v - tg[:, 3:4])) ** 2)
        # ties (a stopped agent: every braking bin and every curvature end the same) go to the bin
        # nearest the mean acceleration needed (minus a light brake) and to straight ahead
        a_ref = (tg[:, 3:4] - g(state.speed)) / (cfg.horizon * dt) - TIE_BRAKE
        score = score + TIE_WEIGHT * ((acc_cmd - a_ref) ** 2 + (model.grid_curvature.unsqueeze(0) / 0.02) ** 2)
        out.append(score.argmin(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def snapshot_samples(source: Source, model: TrafficModel, labels: LabelConfig, tokens: TokenConfig, every: int = 1,
                     noise: tuple | None = None, generator: torch.Generator | None = None) -> Samples:
    """Samples from every `every`-th log step of one source: the driven agents valid now and H
    steps later. With `noise` = (longitudinal m, lateral m, yaw rad, speed m/s) standard
    deviations, the driven agents are perturbed first (all at once) and labelled back."""
    s = source.scenario
    state = logged_state(s)
    H = labels.horizon
    T1 = state.x.shape[0]
    ok = state.valid[: T1 - H] & state.valid[H:] & torch.as_tensor(source.driven).unsqueeze(0)
    ok[torch.arange(T1 - H) % every != 0] = False
    rows, cols = ok.nonzero(as_tuple=True)
    if len(rows) == 0:
        return Samples(Tokens(*(torch.zeros(0),) * 5), torch.zeros(0, dtype=torch.long))
    if noise is not None:
        state = _perturb(state, rows, cols, noise, generator)
    log = torch.as_tensor(s.log, dtype=torch.float32)  # [A, T+1, 4]
    target = log[cols, rows + H]
    bank = MapBank.build([s.road])
    map_idx = torch.zeros(T1, dtype=torch.long)
    tok = agent_tokens(state, bank, map_idx, rows, cols, tokens, s.dt, style=source.style)
    return Samples(tok, hold_labels(state, rows, cols, target, model, labels, s.dt))


def _perturb(state: SimState, rows, cols, noise, generator) -> SimState:
    lon, lat, yaw, speed = noise
    n = len(rows)
    z = torch.randn(4, n, generator=generator)
    c, s = torch.cos(state.yaw[rows, cols]), torch.sin(state.yaw[rows, cols])
    dx, dy = lon * z[0] * c - lat * z[1] * s, lon * z[0] * s + lat * z[1] * c
    put = lambda t, v: t.index_put((rows, cols), t[rows, cols] + v)
    return state.replace(x=put(state.x.clone(), dx), y=put(state.y.clone(), dy),
                         yaw=wrap_angle(put(state.yaw.clone(), yaw * z[2])),
                         speed=put(state.speed.clone(), speed * z[3]).clamp(min=0.0))


def learned_window(source: Source, start: int, steps: int) -> Scenario:
    """A window of a source with its driven agents LEARNED and everyone else (ego included)
    replaying the log."""
    w = window(source.scenario, start, steps, keep_all=True)
    mode = np.full(w.num_agents, int(ControlMode.REPLAY))
    mode[source.driven] = int(ControlMode.LEARNED)
    w.mode = mode
    return w


def closed_loop_samples(sources: list[tuple[Source, int]], model: TrafficModel, labels: LabelConfig, tokens: TokenConfig,
                        steps: int, rollouts: int, temperature: float, seed: int, every: int = 2) -> tuple[Samples, dict]:
    """DAgger samples: the model drives each (source, start) window (all of one kind)
    `rollouts` times for `steps` steps; every `every`-th visited state of its agents is labelled towards the log H
    steps later. Also returns rollout statistics (mean distance to the log, collisions)."""
    scen, owner = [], []
    for i, (src, start) in enumerate(sources):
        w = learned_window(src, start, steps)
        for k in range(rollouts):
            c = copy.copy(w)
            c.seed = seed * 100_003 + i * 101 + k
            scen.append(c)
            owner.append(i)
    batch = ScenarioBatch.build(scen)
    style = sources[0][0].style if sources else 1.0
    behavior = LearnedTraffic(model, temperature=temperature, seed=seed, style=style)
    res = rollout(batch, ConstantVelocity(), record=True, behavior=behavior)
    tr = {k: torch.as_tensor(v) for k, v in res.trajectory.items()}  # [T+1, B, A]
    T1, B, A = tr["x"].shape
    H = labels.horizon
    learned = (batch.init["mode"] == ControlMode.LEARNED).unsqueeze(0)  # [1, B, A]
    log_ok = batch.log_valid.permute(2, 0, 1)  # [T+1, B, A]
    ok = tr["valid"][: T1 - H] & learned & log_ok[: T1 - H] & log_ok[H:]
    ok[torch.arange(T1 - H) % every != 0] = False
    t, b, a = ok.nonzero(as_tuple=True)
    flat = lambda k: tr[k].reshape(T1 * B, A)
    state = SimState(x=flat("x"), y=flat("y"), yaw=flat("yaw"), speed=flat("speed"), accel=flat("accel"), steer=flat("steer"),
                     length=flat("length"), width=flat("width"), agent_type=flat("agent_type"), valid=flat("valid"),
                     lane=flat("lane"), seg=flat("seg"), clock=torch.arange(T1).repeat_interleave(B))
    rows = t * B + b
    map_idx = batch.map_idx.repeat(T1)
    tok = agent_tokens(state, batch.bank, map_idx, rows, a, tokens, batch.dt, style=style)
    target = batch.log[b, a, t + H]
    bound = leader_bound(state, rows, a, model.config.safety)
    lab = cap_action(hold_labels(state, rows, a, target, model, labels, batch.dt), bound, model)
    err = (torch.stack([tr["x"][t, b, a], tr["y"][t, b, a]], -1) - batch.log[b, a, t, :2]).norm(dim=-1)
    stats = {"samples": int(len(lab)), "rollouts": B, "mean_log_distance_m": float(err.mean()) if len(err) else 0.0}
    return Samples(tok, lab), stats
