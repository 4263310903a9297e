"""Cut-ins in real scenes: a logged vehicle in a lane next to the ego's route is rewritten into a
cut-in through the same scripted-agent hook as the procedural generator; where none can, a car
is inserted in a lane beside the route (events/inserted.py) and rewritten the same way.

Candidates are (vehicle, start step) pairs where the vehicle moves in the ego's direction in the
lane next to the route, ahead of the ego. Predicting with an ego that keeps its initial speed
along its route (the no-reaction ego of the labels, policy `lane_constant_speed`) and the
cutter changing speed as its script says, the candidate whose TTC at the crossing is nearest
the sampled target is chosen. The cutter replays its log until it is beside the route (the run
of steps before the planned start where it is), then follows its lane at the speed it will cut
in at until the situation it was planned for arises with the simulated ego (the predicted TTC
at the crossing reaches the sampled target: sim/triggers.py; in closed loop the ego is not
where the log was, so a script run at a fixed step would meet nobody), then changes lane at
the sampled lateral speed, changes speed evenly to a sampled fraction of the ego's speed by the
crossing (real neighbours are seldom slower than the ego on their own) and brakes after it. The
rest of the scene keeps its logged traffic in the chosen traffic mode. The realized TTC is
measured by simulation (sim/events.label_scenarios), not assumed. `real_set_counts` says how many
of the requested cut-ins a generated set got and why fewer (from its header).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from drivesim.events.common import BoundConfig, Range, check_range, closing_distance, project, uniform
from drivesim.events.inserted import insert_cutter
from drivesim.traffic.log_modes import TRAFFIC_MODES, with_traffic
from drivesim.core.scenario import Scenario, route_polyline
from drivesim.core.config import ConfigError
from drivesim.core.types import AgentType, ControlMode

PER_AGENT = ("x", "y", "yaw", "speed", "length", "width", "agent_type", "mode", "desired_speed")
SCRIPTS = ("script_accel", "script_lane", "script_lat_speed")


@dataclass(frozen=True)
class RealCutInConfig:
    ttc: Range = (0.8, 3.0)  # s: target TTC at the crossing (the candidate nearest it is chosen)
    lat_speed: Range = (0.6, 1.5)  # m/s
    cutter_brake: Range = (0.0, 3.0)  # m/s^2 after the cut ...
    brake_duration: float = 2.0  # s ... for this long
    min_gap: float = 1.0  # m at the crossing
    slow_to: Range = (0.5, 0.9)  # the cutter reaches this fraction of the ego's speed at the cut ...
    max_decel: float = 3.0  # m/s^2 ... braking at most this hard on the way (then it is slower)
    traffic: str = "hybrid"  # how the scene's other agents move
    after: float = 3.0  # s of log needed after the crossing
    max_heading: float = 0.3  # rad: a cutter moves within this of the route's direction
    insert: bool = True  # no logged vehicle can cut in: insert a car in a lane beside the route (events/inserted.py)
    insert_max_heading: float = 0.6  # rad: ... which may be a junction connector converging on the route
    bound: BoundConfig = field(default_factory=BoundConfig)

    def validate_config(self, where: str = "real_cut_in") -> None:
        check_range(self.ttc, where, "ttc", 0.0, 10.0)
        check_range(self.lat_speed, where, "lat_speed", 0.2, 3.0)
        check_range(self.cutter_brake, where, "cutter_brake", 0.0, 8.0)
        check_range(self.slow_to, where, "slow_to", 0.0, 1.5)
        for name in ("max_heading", "insert_max_heading"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}.{name}: got {getattr(self, name)!r}; expected 0 < {name} <= 1 rad")
        if self.traffic not in TRAFFIC_MODES:
            raise ConfigError(f"{where}.traffic: got {self.traffic!r}; allowed: {', '.join(TRAFFIC_MODES)}")
        self.bound.validate_config(f"{where}.bound")


def _route_lane_at(scene: Scenario, s: float) -> int:
    """The route lane at arc length s along the route."""
    ends = np.cumsum([scene.road.lanes[r].length for r in scene.route])
    return scene.route[int(min(np.searchsorted(ends, s), len(ends) - 1))]


def candidates(scene: Scenario, lat_speed: float, slow_to: float, cfg: RealCutInConfig,
               agents: list[int] | None = None) -> list[dict]:
    """Every (vehicle, start step) that could cut in (of `agents`, default all), with its predicted
    gap and TTC when it changes speed evenly from its logged speed to `slow_to` x the ego's speed
    at the crossing."""
    if scene.log is None or scene.log_valid is None:
        return []
    log, ok = scene.log, scene.log_valid
    T = log.shape[1] - 1
    poly = route_polyline(scene)
    s_e, d_e, h_e = project(poly, log[0, :, :2])
    # the ego that does not react (ConstantVelocity, the no-reaction label): its start speed along
    # the route from its first logged state; the closed-loop trigger re-times the cut-in to any other ego
    v_e = np.full(T + 1, log[0, 0, 3] * np.cos(log[0, 0, 2] - h_e[0]))
    s_e = s_e[0] + v_e * scene.dt * np.arange(T + 1)
    after = int(round(cfg.after / scene.dt))
    out = []
    for a in agents if agents is not None else range(1, scene.num_agents):
        if scene.agent_type[a] != AgentType.VEHICLE or ok[a].sum() < 30:
            continue
        steps = np.arange(10, T - after, 5)
        steps = steps[ok[a, steps] & ok[0, steps]]
        if not len(steps):
            continue
        s_a, d_a, h_a = project(poly, log[a, steps, :2])
        for t0, s, d, h in zip(steps, s_a, d_a, h_a):
            v = float(log[a, t0, 3])
            lane_w = scene.road.lanes[_route_lane_at(scene, s)].width
            if v < 2.0 or abs(math.remainder(log[a, t0, 2] - h, 2 * math.pi)) > cfg.max_heading or not 0.6 * lane_w < abs(d) < 1.5 * lane_w:
                continue
            delay = max(math.ceil((abs(d) - lane_w / 2 - scene.width[a] / 2) / lat_speed / scene.dt), 0) + 3
            tx = t0 + delay
            if tx > T - after or not ok[0, tx]:
                continue
            span = delay * scene.dt
            accel = float(np.clip((slow_to * v_e[tx] - v) / span, -cfg.max_decel, 2.0))
            v_c = v + accel * span
            travel = 0.5 * (v + v_c) * span
            gap = s + travel - scene.length[a] / 2 - (s_e[tx] + scene.length[0] / 2)
            dv = v_e[tx] - v_c
            if gap < cfg.min_gap or dv < 0.3:
                continue
            out.append(dict(agent=int(a), start=int(t0), cross=int(tx), gap=float(gap), rel_speed=float(dv),
                            ttc=float(gap / dv), ego_speed=float(v_e[tx]), logged_speed=v, cutter_speed=v_c,
                            approach_accel=accel, side="left" if d > 0 else "right",
                            target_lane=int(_route_lane_at(scene, s + travel)), lane_width=float(lane_w)))
    return out


def plan_cut_in(scene: Scenario, cfg: RealCutInConfig, rng: np.random.Generator):
    """(source scene, params) of a cut-in planned in `scene`, or None when no vehicle can cut in.
    A logged vehicle is used where one can; otherwise (`cfg.insert`) a car inserted in a lane
    beside the route (events/inserted.py), and the source is the scene with that car added
    (params `cutter` says which)."""
    lat, slow_to = uniform(rng, cfg.lat_speed), uniform(rng, cfg.slow_to)
    target = uniform(rng, cfg.ttc)
    brake = uniform(rng, cfg.cutter_brake)
    found, kind = candidates(scene, lat, slow_to, cfg), "logged"
    if not found and cfg.insert:
        added = insert_cutter(scene, slow_to, target, lat, cfg.after, cfg.insert_max_heading, rng)
        if added is not None:
            scene, kind = added, "inserted"
            found = candidates(scene, lat, slow_to, dataclasses.replace(cfg, max_heading=cfg.insert_max_heading),
                               agents=[scene.num_agents - 1])
    if not found:
        return None
    c = min(found, key=lambda c: abs(c["ttc"] - target))
    b = cfg.bound
    bound_gap = float(closing_distance(c["ego_speed"], c["cutter_speed"], brake, cfg.brake_duration, b.max_brake, b.reaction)[0])
    p = {**c, "source": scene.name, "cutter": kind, "lat_speed": lat, "slow_to": slow_to, "target_ttc": target,
         "predicted_ttc": c["ttc"], "cutter_brake": brake, "brake_duration": cfg.brake_duration, "bound_gap": bound_gap,
         "bound_ttc": bound_gap / c["rel_speed"]}
    del p["ttc"]
    return scene, p


def real_cut_in(scene: Scenario, cfg: RealCutInConfig, rng: np.random.Generator, name: str):
    """(scenario, params) of a cut-in rewritten into `scene`, or None when no vehicle can cut in."""
    planned = plan_cut_in(scene, cfg, rng)
    if planned is None:
        return None
    source, p = planned
    return retime(source, p, p["cross"] - p["start"], cfg, name)


def retime(scene: Scenario, p: dict, delay: int, cfg: RealCutInConfig, name: str):
    """(scenario, params) of the cut-in `p` with a lane change that takes `delay` steps from its
    start to the ego's lane (measured by simulation: sim/events.generate_real_set calibrates it)."""
    p = {**p, "cross": int(p["start"] + max(int(delay), 1))}
    # the trigger may fire from the first step of the cutter's log beside the route (around the planned
    # start) while the script (and `after` s) still fits the scene
    T = scene.log.shape[1] - 1
    p["window"] = [release_step(scene, p), int(max(p["start"], T - (p["cross"] - p["start"]) - round(cfg.after / scene.dt)))]
    return _rewrite(scene, p, cfg, name), p


def release_step(scene: Scenario, p: dict) -> int:
    """The first step of the run of steps up to the planned start where the cutter's log is in a
    position to cut in (moving in the ego's direction in the lane beside the route, on the same
    side): from there it leaves its log and waits for the ego (an ego faster than the logged
    one reaches it earlier)."""
    log, ok = scene.log, scene.log_valid
    a, t0 = p["agent"], p["start"]
    s_a, d_a, h_a = project(route_polyline(scene), log[a, : t0 + 1, :2])
    side = 1.0 if p["side"] == "left" else -1.0
    w = p["lane_width"]
    fits = (ok[a, : t0 + 1] & (log[a, : t0 + 1, 3] >= 2.0) & (np.abs(np.angle(np.exp(1j * (log[a, : t0 + 1, 2] - h_a)))) <= 0.3)
            & (0.6 * w < side * d_a) & (side * d_a < 1.5 * w))
    lo = t0
    while lo - 1 >= 1 and fits[lo - 1]:
        lo -= 1
    return int(lo)


def _rewrite(scene: Scenario, p: dict, cfg: RealCutInConfig, name: str) -> Scenario:
    s = with_traffic(scene, cfg.traffic)
    a = p["agent"]
    order = np.arange(s.num_agents)
    order[[1, a]] = order[[a, 1]]  # the cutter becomes agent 1 (the event agent)
    out = copy.copy(s)
    for f in PER_AGENT:
        setattr(out, f, np.asarray(getattr(s, f))[order].copy())
    out.log, out.log_valid = s.log[order].copy(), s.log_valid[order].copy()
    out.mode[1] = int(ControlMode.REACTIVE)
    out.desired_speed[1] = min(p["cutter_speed"], p["logged_speed"])  # waiting for the ego, never faster than its log
    A, T = out.num_agents, out.num_steps
    acc, lane, lat = np.full((A, T), np.nan), -np.ones((A, T), np.int64), np.full((A, T), np.nan)
    t0, tx = p["start"], p["cross"]
    # from t0 the cutter follows its lane at its desired speed (IDM: the speed it cuts in at) until the
    # trigger fires; it holds the speed it has then through the lane change (the trigger's prediction)
    # and brakes after the crossing
    acc[1, t0:tx] = 0.0
    acc[1, tx : tx + int(round(p["brake_duration"] / s.dt))] = -p["cutter_brake"]
    lane[1, t0 : tx + 20] = p["target_lane"]
    lat[1, t0 : tx + 20] = p["lat_speed"]
    out.script_accel, out.script_lane, out.script_lat_speed = acc, lane, lat
    out.name = name
    out.meta = {**s.meta, "generator": "real-cut-in", "source_scene": scene.name, "event_agent": 1,
                "source_agent": int(a), "trigger": "enter", "target_step": tx, "script_start": t0,
                "lane_width": p["lane_width"], "lead_brake": p["cutter_brake"], "lead_duration": p["brake_duration"],
                # started relative to the simulated ego, not at step t0 (see sim/triggers.py)
                "script_trigger": {"agent": 1, "start": int(t0), "span": int(tx - t0), "accel": 0.0, "release": p["window"][0],
                                   "ttc": float(p["target_ttc"]), "min_gap": float(cfg.min_gap), "window": p["window"],
                                   "lane_width": float(p["lane_width"])}}
    return out


def real_set_counts(header: dict) -> str:
    """How many real cut-ins were made of the requested number, and why fewer."""
    n, made = header["requested"], header["n"]
    inserted = header.get("inserted_cutters", 0)
    lines = [f"made {made} of {n} requested cut-ins in {len(header['attempts'])} scenes"
             + (f" ({inserted} by a car inserted beside the route)" if inserted else "")
             + f"; no-reaction labels from policy {header.get('no_reaction_policy', 'constant_velocity')}"]
    if made < n:
        short = {k: v for k, v in header["attempts"].items() if v["made"] < v["tried"]}
        lines.append(f"{n - made} attempts found no vehicle that can cut in (next to the ego's route, ahead, slower) "
                     "and no free place in a lane beside the route ahead of a moving ego to insert one, "
                     "with their sampled knobs: " + ", ".join(f"{k} {v['made']}/{v['tried']}" for k, v in short.items()))
    if header["skipped_scenes"]:
        lines.append(f"scenes with no vehicle that can cut in: {', '.join(header['skipped_scenes'])}")
        lines += [f"  {k}: {v}" for k, v in header.get("skipped_reasons", {}).items()]
    return "\n".join(lines)
