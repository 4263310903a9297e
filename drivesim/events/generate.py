"""Generate a labelled rare-event scenario set: sample knobs, calibrate by simulation, measure the
criticality that was produced, and check in closed loop that the expert planner solves it.

Three simulator passes over the whole set, batched:
1. calibration (event agents only, the ego keeping its speed): how many steps and metres a
   scripted lane change takes to reach (cut-in, merge) or clear (a stalled car's leader) the
   ego's lane; the scenarios are rebuilt with those figures so that the event happens at the
   target gap;
2. no reaction (full scenario, the ego keeping its speed and heading): the realized event step,
   gap, relative speed, TTC, the deceleration the ego would need after its reaction time, and
   whether doing nothing collides;
3. expert (PDM-Closed-style planner, reactive traffic): does it finish without collision or
   leaving the road, its minimum TTC.

Labels: `bound_avoidable` (the analytic 1-D braking bound of docs/definitions.md on the realized gap
and speeds), `expert_solved`, and `avoidable` = either (the expert may swerve where braking
alone is not enough).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from drivesim.events import GENERATOR_VERSION, build_event, event_type, sample_params, scenario_name
from drivesim.events.inserted import no_place
from drivesim.events.real_cut_in import RealCutInConfig, plan_cut_in, retime
from drivesim.events.common import closing_distance, required_decel
from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.config import config_to_dict
from drivesim.dynamics.bicycle import kinematically_feasible
from drivesim.map.bank import MapBank
from drivesim.sim.expert import PDMClosed, PDMConfig
from drivesim.sim.observation import route_points_at, route_position
from drivesim.sim.policy import ConstantVelocity, LaneConstantSpeed
from drivesim.sim.rollout import rollout

DEFAULT_LOG_TRAFFIC = "reactive"  # traffic of a raw imported log that records no mode of its own
MIN_PER_WORKER = 100  # smaller sets run in one process (spawning one costs about 2 s)
REAL_NO_REACTION = LaneConstantSpeed  # the no-reaction ego of real-scene cut-ins (it keeps its lane on curves)
TRACKED = 3  # agents recorded per scenario in the measuring passes: the ego and up to two event agents


@dataclass(frozen=True)
class LabelConfig:
    expert_check: bool = True  # run the expert in closed loop (pass 3)
    batch_size: int = 500  # scenarios per simulator batch
    expert_every: int = 2  # simulation steps per expert decision
    device: str = "cpu"
    workers: int = 2  # processes (one torch thread each); 1 runs in this process
    expert: PDMConfig = field(default_factory=PDMConfig)


@dataclass
class EventSet:
    """A generated scenario set: scenarios, one table row per scenario (knobs, measurements,
    labels), and the header (generator, config, seed, timings) written to the set file."""

    scenarios: list[Scenario]
    table: pd.DataFrame
    header: dict = field(default_factory=dict)


def _run(scenarios: list[Scenario], policy, cfg: LabelConfig, record: bool, every: int = 1, desc: str = "",
         bank: MapBank | None = None):
    """Metrics [N] (with `trigger_step`, sim/triggers.py) and, when `record`, the first TRACKED
    agents' trajectory [T+1, N, TRACKED]. `bank`: the maps, built once by a caller that runs
    several passes over the same scenes (default: built here)."""
    bank = bank if bank is not None else _bank(scenarios, cfg)
    metrics, trajs = [], []
    chunks = [scenarios[i : i + cfg.batch_size] for i in range(0, len(scenarios), cfg.batch_size)]
    for chunk in tqdm(chunks, desc=desc, disable=not desc or len(chunks) < 2, leave=False):
        batch = ScenarioBatch.build(chunk, bank=bank, device=cfg.device)
        res = rollout(batch, policy, record=record, policy_every=every)
        metrics.append(pd.DataFrame({**res.metrics, "trigger_step": res.extra.get("trigger_step", np.full(len(chunk), -1))}))
        if record:
            trajs.append(_route_frame(batch, {k: v[:, :, :TRACKED] for k, v in res.trajectory.items()}))
    out = pd.concat(metrics, ignore_index=True)
    if not record:
        return out, None
    T = max(t["x"].shape[0] for t in trajs)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], T - a.shape[0], axis=0)]) if a.shape[0] < T else a
    return out, {k: np.concatenate([pad(t[k]) for t in trajs], axis=1) for k in trajs[0]}


def _bank(scenarios: list[Scenario], cfg: LabelConfig) -> MapBank:
    """One MapBank with the maps of `scenarios` (each map once)."""
    return MapBank.build(list({id(s.road): s.road for s in scenarios}.values()), device=cfg.device)


def _route_frame(batch: ScenarioBatch, traj: dict) -> dict:
    """Add route coordinates of the recorded agents [T, B, K]: arc length `route_s`, lateral
    offset `route_d` and heading relative to the route `route_rel_yaw`."""
    T, B, K = traj["x"].shape
    xy = torch.as_tensor(np.stack([traj["x"], traj["y"]], -1), dtype=torch.float32, device=batch.device)
    xy = xy.permute(1, 0, 2, 3).reshape(B, T * K, 2)
    s, d = route_position(batch, xy)
    a, b = route_points_at(batch, s), route_points_at(batch, s + 1.0)
    heading = torch.atan2(b[..., 1] - a[..., 1], b[..., 0] - a[..., 0])
    back = lambda v: v.reshape(B, T, K).permute(1, 0, 2).cpu().numpy()
    rel = np.angle(np.exp(1j * (traj["yaw"] - back(heading))))
    return {**traj, "route_s": back(s), "route_d": back(d), "route_rel_yaw": rel}


def _extent(traj, agent):
    """Half extents of boxes along and across the route [T, N]."""
    rel = traj["route_rel_yaw"][:, :, agent]
    c, s = np.abs(np.cos(rel)), np.abs(np.sin(rel))
    L, W = traj["length"][:, :, agent] / 2, traj["width"][:, :, agent] / 2
    return L * c + W * s, L * s + W * c


def _in_lane(traj, agent, lane_w):
    """[T, N] the box of `agent` overlaps the ego's lane (|d| < lane_w / 2 around the route)."""
    _, across = _extent(traj, agent)
    return (np.abs(traj["route_d"][:, :, agent]) - across < lane_w / 2) & traj["valid"][:, :, agent].astype(bool)


def event_steps(scenarios: list[Scenario], traj: dict) -> np.ndarray:
    """[N] the step each event happened (-1 if it did not): 'enter' = the event agent's box first
    overlaps the ego's lane; 'leave' = the trigger agent's box has left it after its lane change
    started; 'step' = the scripted step."""
    N = len(scenarios)
    meta = [s.meta for s in scenarios]
    lane_w = np.array([m["lane_width"] for m in meta])
    out = np.full(N, -1)
    T = traj["x"].shape[0]
    for trigger in ("enter", "leave", "step"):
        rows = np.array([m["trigger"] == trigger for m in meta])
        if not rows.any():
            continue
        if trigger == "step":
            out[rows] = [m["target_step"] for m, r in zip(meta, rows) if r]
            continue
        agent = 1 if trigger == "enter" else 2
        inside = _in_lane(traj, min(agent, traj["x"].shape[2] - 1), lane_w)  # [T, N]
        start = np.array([m.get("script_start", 0) for m in meta])
        hit = inside if trigger == "enter" else (~inside & (np.arange(T)[:, None] >= start[None, :]))
        first = np.where(hit.any(axis=0), hit.argmax(axis=0), -1)
        out[rows] = first[rows]
    return out


def measure(scenarios: list[Scenario], traj: dict, bound) -> pd.DataFrame:
    """Criticality at each event step from a no-reaction run: gap (m, the event agent's rear edge
    to the ego's front along the ego's route), relative speed, TTC, required deceleration and the bound."""
    k = event_steps(scenarios, traj)
    N = len(scenarios)
    n = np.arange(N)
    kk = np.clip(k, 0, traj["x"].shape[0] - 1)
    along0, _ = _extent(traj, 0)
    along1, _ = _extent(traj, 1)
    front = traj["route_s"][kk, n, 0] + along0[kk, n]
    rear = traj["route_s"][kk, n, 1] - along1[kk, n]
    v_e = traj["speed"][kk, n, 0] * np.cos(traj["route_rel_yaw"][kk, n, 0])
    v_a = traj["speed"][kk, n, 1] * np.cos(traj["route_rel_yaw"][kk, n, 1])
    gap, dv = rear - front, v_e - v_a
    brake = np.array([s.meta["lead_brake"] for s in scenarios])
    dur = np.array([s.meta["lead_duration"] for s in scenarios])
    closing = closing_distance(v_e, v_a, brake, dur, bound.max_brake, bound.reaction)
    ok = k >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc = np.where(dv > 1e-3, gap / dv, np.inf)
    return pd.DataFrame({
        "event_happened": ok, "event_step": k, "gap": np.where(ok, gap, np.nan), "rel_speed": np.where(ok, dv, np.nan),
        "ttc_at_event": np.where(ok, ttc, np.nan), "headway_at_event": np.where(ok, gap / np.maximum(v_e, 0.1), np.nan),
        "required_decel": np.where(ok, required_decel(np.maximum(gap, 0.0), v_e, v_a, brake, dur, bound.reaction), np.nan),
        "bound_margin": np.where(ok, gap - closing, np.nan), "bound_avoidable": ok & (gap > closing),
    })


def _feasible(traj: dict, scenarios: list[Scenario]) -> np.ndarray:
    """[N] the event agent's motion passes Waymax's kinematic check at every step (vehicles only;
    a pedestrian's replayed walk is not a bicycle)."""
    acc = torch.as_tensor(traj["accel"][1:, :, 1])
    steer = torch.as_tensor(traj["steer"][1:, :, 1])
    ok = kinematically_feasible(acc, steer, torch.as_tensor(traj["length"][1:, :, 1])).all(dim=0).numpy()
    ped = np.array([s.meta["generator"] == "pedestrian" for s in scenarios])
    return ok | ped


def _truncate(s: Scenario) -> Scenario:
    """The calibration run only needs to see the lane change reach the line: it stops 4 s
    after the first guess of the event step."""
    steps = min(s.num_steps, int(s.meta["target_step"]) + 40)
    s.duration = steps * s.dt
    for name in ("script_accel", "script_lane", "script_lat_speed"):
        if getattr(s, name) is not None:
            setattr(s, name, getattr(s, name)[:, :steps])
    return s


def calibrate(event: str, params: list[dict], config, seed: int, start: int, cfg: LabelConfig) -> None:
    """Measure each scripted lane change (steps and x travelled from its start to the event) on
    the event agents alone; store them in params as `delay` and `dx` (in place)."""
    idx = [i for i, p in enumerate(params) if event in ("cut-in", "merge") or p.get("reveal")]
    if not idx:
        return
    scen = [_truncate(build_event(event, params[i], config, seed, start + i, minimal=True)) for i in idx]
    _, traj = _run(scen, ConstantVelocity(), cfg, record=True)
    k = event_steps(scen, traj)
    agent = np.array([1 if s.meta["trigger"] == "enter" else 2 for s in scen])
    n = np.arange(len(scen))
    for j, i in enumerate(idx):
        if k[j] < 0:
            continue  # the lane change never reached the line: keep the estimate; reported as no event
        s0 = scen[j].meta["script_start"]
        params[i]["delay"] = int(k[j] - s0)
        params[i]["dx"] = float(traj["x"][k[j], n[j], agent[j]] - traj["x"][s0, n[j], agent[j]])


def label_params(event: str, params: list[dict], config, seed: int, start: int, label: LabelConfig,
                 show_progress: bool = False) -> tuple[list[dict], pd.DataFrame, dict]:
    """Calibrate, measure and label scenarios start..start+len(params)-1 in this process.
    Returns (params with the calibration added, table of measurements and labels, timings)."""
    torch.set_num_threads(1)
    params = [dict(p) for p in params]
    times = {}
    t0 = time.perf_counter()
    calibrate(event, params, config, seed, start, label)
    times["calibrate_s"] = time.perf_counter() - t0
    scenarios = [build_event(event, p, config, seed, start + i) for i, p in enumerate(params)]
    table, more = label_scenarios(scenarios, config.bound, label, show_progress)
    return params, table, {**times, **more}


def _no_reaction(s: Scenario) -> Scenario:
    """The scenario with an ego that does not react: the no-reaction policy (ConstantVelocity for
    procedural sets, which keeps speed and heading; LaneConstantSpeed for real scenes, which keeps
    speed and its route lane) drives it. A logged ego is driven by that policy too (not
    replayed: the human in the log reacts), so the label `no_reaction_collision` is what
    `evaluate --policies <no_reaction_policy>` gets on the set, events triggered relative to the
    simulated ego included."""
    return s


def label_scenarios(scenarios: list[Scenario], bound, label: LabelConfig, show_progress: bool = False,
                    no_reaction=ConstantVelocity, bank: MapBank | None = None):
    """Passes 2 and 3 on built scenarios: (table of measurements and labels, timings). The
    no-reaction run uses the policy class `no_reaction` (its name is the `no_reaction_policy`
    column: `evaluate --policies NAME` on the set gets `no_reaction_collision`)."""
    times = {}
    t1 = time.perf_counter()
    m_none, traj = _run([_no_reaction(s) for s in scenarios], no_reaction(), label, record=True,
                        desc="no reaction" if show_progress else "", bank=bank)
    table = measure(scenarios, traj, bound)
    table["feasible"] = _feasible(traj, scenarios)
    table["no_reaction_collision"] = m_none["collision_any"].to_numpy() > 0
    table["no_reaction_policy"] = no_reaction.name
    times["measure_s"] = time.perf_counter() - t1
    if label.expert_check:
        t2 = time.perf_counter()
        m_exp, _ = _run(scenarios, PDMClosed(label.expert), label, record=False, every=label.expert_every,
                        desc="expert" if show_progress else "", bank=bank)
        table["expert_collision"] = m_exp["collision_any"].to_numpy() > 0
        table["expert_solved"] = m_exp["success"].to_numpy() > 0
        table["expert_min_ttc"] = m_exp["min_ttc"].to_numpy()
        table["avoidable"] = table["bound_avoidable"] | table["expert_solved"]
        times["expert_s"] = time.perf_counter() - t2
    else:
        table["avoidable"] = table["bound_avoidable"]
    return table, times


def _label_part(args):
    return label_params(*args)


def generate_set(event: str, n: int, seed: int = 0, config=None, label: LabelConfig | None = None,
                 start: int = 0, show_progress: bool = True) -> EventSet:
    """`n` scenarios of `event` (indices start..start+n-1), calibrated, measured and labelled,
    split over `label.workers` processes (each scenario's result does not depend on the split)."""
    et = event_type(event)
    config = config if config is not None else et.config()
    label = label or LabelConfig()
    t0 = time.perf_counter()
    params = sample_params(event, config, seed, n, start)
    workers = max(1, min(label.workers, n // MIN_PER_WORKER))
    cuts = np.linspace(0, n, workers + 1).astype(int)
    parts = [(event, params[a:b], config, seed, start + a, label) for a, b in zip(cuts, cuts[1:])]
    if workers == 1:
        results = [label_params(*parts[0], show_progress=show_progress)]
    else:
        if show_progress:
            print(f"labelling {n} {event} scenarios in {workers} processes ...", flush=True)
        ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_label_part, parts))
    params = [p for r in results for p in r[0]]
    table = pd.concat([r[1] for r in results], ignore_index=True)
    times = {k: round(max(r[2].get(k, 0.0) for r in results), 3) for k in results[0][2]}
    scenarios = [build_event(event, p, config, seed, start + i) for i, p in enumerate(params)]
    times["total_s"] = round(time.perf_counter() - t0, 3)
    header = {"generator": event, "generator_version": GENERATOR_VERSION, "seed": seed, "n": n, "start": start,
              "config": config_to_dict(config), "label_config": config_to_dict(label), "criticality": et.criticality,
              "timings": times, "workers": workers}
    return _assemble(event, scenarios, params, table, header, range(start, start + n))


def generate_real_set(scenes: list[Scenario], n: int, seed: int = 0, config: RealCutInConfig | None = None,
                      label: LabelConfig | None = None, show_progress: bool = True) -> EventSet:
    """Up to `n` cut-ins rewritten into real scenes (attempt i on scene i % len(scenes), with its
    own knobs), measured and labelled. The cutter is a logged vehicle where one can cut in, else
    a car inserted in a lane beside the route (`config.insert`). The no-reaction ego is
    REAL_NO_REACTION (`lane_constant_speed`: it keeps its speed and its route lane), named in the
    header and the table. An attempt that finds no cutter makes nothing; the header records
    the attempts and cut-ins per scene (`attempts`) and names the scenes that gave none
    (`skipped_scenes`)."""
    config = config or RealCutInConfig()
    config.validate_config()
    label = label or LabelConfig()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    scenarios, params, index, sources = [], [], [], []
    tried: dict[str, int] = {}  # scene -> attempts, and -> cut-ins made
    made_in: dict[str, int] = {}
    for i in range(n):
        scene = scenes[i % len(scenes)]
        tried[scene.name] = tried.get(scene.name, 0) + 1
        planned = plan_cut_in(scene, config, np.random.default_rng([seed, i]))
        if planned is None:
            continue
        source, p = planned
        made = retime(source, p, p["cross"] - p["start"], config, scenario_name("real-cut-in", seed, i))
        made_in[scene.name] = made_in.get(scene.name, 0) + 1
        scenarios.append(made[0])
        params.append(made[1])
        index.append(i)
        sources.append(source)
    skipped = sorted(name for name in tried if name not in made_in)  # scenes that gave no cut-in at all
    by_name = {s.name: s for s in scenes}
    reasons = {name: "no logged vehicle can cut in" + (f"; {no_place(by_name[name], config.insert_max_heading)}" if config.insert else "")
               for name in skipped}
    if not scenarios:
        raise ValueError("no cut-in could be made: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    bank = _bank(scenarios, label)  # the source maps, for every pass
    scenarios, params = _calibrate_real(scenarios, params, sources, index, config, label, bank=bank)
    table, times = label_scenarios(scenarios, config.bound, label, show_progress, no_reaction=REAL_NO_REACTION, bank=bank)
    base = _base_collisions([scenes[i % len(scenes)] for i in index], config, label, bank)
    table["base_no_reaction_collision"] = base
    table["cut_in_collision"] = table["no_reaction_collision"] & ~base
    times["total_s"] = round(time.perf_counter() - t0, 3)
    header = {"generator": "real-cut-in", "generator_version": GENERATOR_VERSION, "seed": seed, "n": len(scenarios),
              "config": config_to_dict(config), "label_config": config_to_dict(label), "criticality": "ttc",
              "timings": times, "sources": sorted({s.meta["source_scene"] for s in scenarios}),
              "source_hashes": {sc.name: sc.meta.get("content_hash", "") for sc in scenes},
              "skipped_scenes": skipped, "skipped_reasons": reasons, "requested": n, "no_reaction_policy": REAL_NO_REACTION.name,
              "inserted_cutters": sum(p["cutter"] == "inserted" for p in params),
              "attempts": {name: {"tried": k, "made": made_in.get(name, 0)} for name, k in tried.items()}}
    return _assemble("real-cut-in", scenarios, params, table, header, index)


def _base_collisions(bases: list[Scenario], config: RealCutInConfig, label: LabelConfig, bank: MapBank) -> np.ndarray:
    """[N] does the no-reaction ego collide on each variant's source scene without the cut-in
    (same traffic mode)? Where it does, a no-reaction collision on the variant may not be the
    cut-in's (`cut_in_collision` is the no-reaction collisions that are not)."""
    unique = list({s.name: s for s in bases}.values())
    m, _ = _run([with_traffic(s, config.traffic) for s in unique], REAL_NO_REACTION(), label, record=False, bank=bank)
    hit = dict(zip([s.name for s in unique], m["collision_any"].to_numpy() > 0))
    return np.array([hit[s.name] for s in bases], dtype=bool)


def apply_traffic(scenario: Scenario, mode: str | None) -> Scenario:
    """`scenario` with the background traffic mode `mode` (`evaluate --traffic`).

    None keeps the modes a scenario records (a generated set's `meta['traffic']`, e.g. a real
    cut-in's hybrid traffic); a raw imported log, which records none, gets DEFAULT_LOG_TRAFFIC.
    A given mode changes the background agents only: a generated event's agent
    (`meta['event_agent']`) keeps its own mode, so its script still runs (replay would turn the
    cutter back into its log). Scenarios without a log are returned unchanged."""
    if scenario.log is None or scenario.log_valid is None:
        return scenario
    if mode is None:
        if scenario.meta.get("traffic") is not None:
            return scenario
        mode = DEFAULT_LOG_TRAFFIC
    out = with_traffic(scenario, mode)
    agent = scenario.meta.get("event_agent") if scenario.meta.get("event") else None
    if agent is not None and 0 < int(agent) < scenario.num_agents:
        out.mode[int(agent)] = int(np.asarray(scenario.mode)[int(agent)])
    return out


def _calibrate_real(scenarios, params, sources, index, config, label, rounds: int = 3, bank: MapBank | None = None):
    """Measure how many steps each real cut-in's lane change takes from its trigger to the ego's
    lane (the no-reaction ego REAL_NO_REACTION) and rebuild it with that figure, so that the trigger's TTC
    prediction holds at the crossing; a few rounds, since braking after the crossing changes the
    lane change a little. Returns (scenarios, params) with the meta filled in."""
    scenarios, params = list(scenarios), list(params)
    todo = list(range(len(scenarios)))
    for _ in range(rounds):
        if not todo:
            break
        m, traj = _run([scenarios[j] for j in todo], REAL_NO_REACTION(), label, record=True, bank=bank)
        k, fired = event_steps([scenarios[j] for j in todo], traj), m["trigger_step"].to_numpy()
        again = []
        for i, j in enumerate(todo):
            delay = int(k[i] - fired[i])
            if fired[i] >= 0 and delay > 0 and delay != params[j]["cross"] - params[j]["start"]:
                scenarios[j], params[j] = retime(sources[j], params[j], delay, config, scenarios[j].name)
                again.append(j)
        todo = again
    for j, (s, p) in enumerate(zip(scenarios, params)):
        s.meta.update({"event": "real-cut-in", "version": GENERATOR_VERSION, "index": index[j], "params": p})
    return scenarios, params


def _assemble(event, scenarios, params, table, header, index) -> EventSet:
    """Prefix the table with names and knobs; copy each row's labels into its scenario's meta."""
    knobs = pd.DataFrame([{f"knob_{k}": v for k, v in p.items() if not isinstance(v, (list, dict))} for p in params])
    table = pd.concat([pd.DataFrame({"scenario": [s.name for s in scenarios], "event": event, "index": list(index)}),
                       knobs, table.reset_index(drop=True)], axis=1)
    for s, row in zip(scenarios, table.to_dict("records")):
        s.meta["labels"] = {k: _plain(v) for k, v in row.items() if not k.startswith("knob_") and k not in ("scenario", "event", "index")}
    return EventSet(scenarios, table, header)


def _plain(v):
    """numpy scalars -> Python (JSON) values; inf/NaN kept as floats."""
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else str(v)
    return v


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row: counts and the criticality distribution of a labelled set."""
    ok = table["event_happened"]
    q = lambda c: table.loc[ok, c].replace([np.inf, -np.inf], np.nan).quantile([0.1, 0.5, 0.9]).round(2).tolist()
    row = {"scenarios": len(table), "event_happened": int(ok.sum()), "feasible": int(table["feasible"].sum()),
           "bound_avoidable": int(table["bound_avoidable"].sum()), "avoidable": int(table["avoidable"].sum()),
           "no_reaction_collision": int(table["no_reaction_collision"].sum()),
           "ttc_p10_50_90": q("ttc_at_event"), "required_decel_p10_50_90": q("required_decel")}
    if "cut_in_collision" in table:
        row["cut_in_collision"] = int(table["cut_in_collision"].sum())  # real scenes: not a collision of the base scene
    if "expert_solved" in table:
        row["expert_solved"] = int(table["expert_solved"].sum())
        row["expert_solved_of_avoidable_by_bound"] = f"{int((table['expert_solved'] & table['bound_avoidable']).sum())}/{int(table['bound_avoidable'].sum())}"
    return pd.DataFrame([row])


def outcome_table(table: pd.DataFrame) -> pd.DataFrame:
    """Collision rates of the no-reaction ego (the constant-velocity policy) and of the expert on
    the scenarios the braking bound calls avoidable and on the others (the bound does not look at
    the expert, so the comparison is fair)."""
    rows = []
    groups = {"avoidable by the bound": table["bound_avoidable"], "not avoidable by the bound": ~table["bound_avoidable"]}
    reference = str(table["no_reaction_policy"].iloc[0]) if "no_reaction_policy" in table and len(table) else ConstantVelocity.name
    runs = {f"{reference} (no reaction)": "no_reaction_collision", "pdm_expert": "expert_collision"}
    for policy, col in runs.items():
        if col not in table:
            continue
        row = {"policy": policy}
        for name, mask in groups.items():
            n = int(mask.sum())
            row[f"{name}: n"] = n
            row[f"{name}: collision rate"] = round(float(table.loc[mask, col].mean()), 3) if n else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)

