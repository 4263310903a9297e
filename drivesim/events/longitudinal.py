"""Events in the ego's own lane: a hard-braking leader, a stalled vehicle (optionally revealed
by a leader that swerves around it at the last moment), and a pedestrian stepping out between
parked cars.

Criticality: the hard-braking leader's time headway when it starts braking; the stalled car's
and the pedestrian's TTC (distance / ego speed) when the event starts (the reveal; the
pedestrian's box entering the ego's lane). `band` targets that quantity above the
avoidability bound instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drivesim.events.common import (CAR, Agents, BoundConfig, Range, Script, assemble, background,
                                             check_range, closing_distance, event_road, lane_y, speed_bucket, uniform)
from drivesim.core.config import ConfigError
from drivesim.core.types import AgentType, ControlMode

EVENT_STEP = 20  # the event starts after 2 s
PEDESTRIAN = (0.6, 0.6)  # m


@dataclass(frozen=True)
class HardBrakeConfig:
    ego_speed: Range = (8.0, 30.0)  # m/s
    rel_speed: Range = (-2.0, 2.0)  # m/s: v_ego - v_leader
    headway: Range = (0.5, 2.5)  # s: bumper-to-bumper gap / ego speed when the leader starts braking
    band: Range | None = None  # s of headway above the avoidability bound (overrides headway)
    decel: Range = (3.0, 8.0)  # m/s^2: the leader's braking ...
    brake_to: Range = (0.0, 0.5)  # ... down to this fraction of its speed (then it holds that speed)
    density: Range = (0.0, 2.0)
    lanes: int = 3
    after: float = 8.0  # s simulated after the braking starts
    bound: BoundConfig = field(default_factory=BoundConfig)

    def validate_config(self, where: str = "hard_brake") -> None:
        check_range(self.ego_speed, where, "ego_speed", 4.0, 35.0)
        check_range(self.rel_speed, where, "rel_speed", -10.0, 10.0)
        check_range(self.headway, where, "headway", 0.0, 10.0)
        check_range(self.band, where, "band", -3.0, 10.0)
        check_range(self.decel, where, "decel", 0.5, 10.0)
        check_range(self.brake_to, where, "brake_to", 0.0, 1.0)
        check_range(self.density, where, "density", 0.0, 10.0)
        _check_common(self, where)


@dataclass(frozen=True)
class StalledConfig:
    ego_speed: Range = (8.0, 30.0)
    ttc: Range = (1.0, 5.0)  # s: distance to the stalled car / ego speed at the reveal
    band: Range | None = None  # s above the avoidability bound (overrides ttc)
    reveal: float = 0.5  # probability that a leader hides the stalled car and swerves around it
    offset: Range = (-0.5, 0.5)  # m: the stalled car's lateral offset in its lane
    density: Range = (0.0, 2.0)
    lanes: int = 3
    after: float = 8.0
    bound: BoundConfig = field(default_factory=BoundConfig)

    def validate_config(self, where: str = "stalled") -> None:
        check_range(self.ego_speed, where, "ego_speed", 4.0, 35.0)
        check_range(self.ttc, where, "ttc", 0.0, 20.0)
        check_range(self.band, where, "band", -3.0, 10.0)
        check_range(self.offset, where, "offset", -1.0, 1.0)
        check_range(self.density, where, "density", 0.0, 10.0)
        if not 0 <= self.reveal <= 1:
            raise ConfigError(f"{where}.reveal: got {self.reveal}; allowed: a probability in [0, 1]")
        _check_common(self, where)


@dataclass(frozen=True)
class PedestrianConfig:
    ego_speed: Range = (6.0, 16.0)
    walk_speed: Range = (0.8, 2.5)  # m/s
    ttc: Range = (0.8, 4.0)  # s: distance to the pedestrian / ego speed when it enters the ego's lane
    band: Range | None = None
    parked: int = 4  # parked cars on the shoulder; the pedestrian steps out between two of them
    density: Range = (0.0, 1.0)
    lanes: int = 2
    after: float = 8.0
    bound: BoundConfig = field(default_factory=BoundConfig)

    def validate_config(self, where: str = "pedestrian") -> None:
        check_range(self.ego_speed, where, "ego_speed", 2.0, 25.0)
        check_range(self.walk_speed, where, "walk_speed", 0.3, 4.0)
        check_range(self.ttc, where, "ttc", 0.0, 20.0)
        check_range(self.band, where, "band", -3.0, 10.0)
        check_range(self.density, where, "density", 0.0, 10.0)
        if not 2 <= self.parked <= 10:
            raise ConfigError(f"{where}.parked: got {self.parked}; allowed: 2..10")
        _check_common(self, where)


def _check_common(cfg, where: str) -> None:
    if not 1 <= cfg.lanes <= 5:
        raise ConfigError(f"{where}.lanes: got {cfg.lanes}; allowed: 1..5")
    if not 2 <= cfg.after <= 20:
        raise ConfigError(f"{where}.after: got {cfg.after}; allowed: 2..20 s")
    cfg.bound.validate_config(f"{where}.bound")


def _stop_bound(v_e: float, bound: BoundConfig) -> float:
    """Smallest distance to a standing obstacle that braking alone avoids (m)."""
    return float(closing_distance(v_e, 0.0, 0.0, 0.0, bound.max_brake, bound.reaction)[0])


def _ttc_target(cfg, rng, bound_ttc: float, key: str = "ttc") -> float:
    return bound_ttc + uniform(rng, cfg.band) if cfg.band is not None else uniform(rng, getattr(cfg, key))


# ---------------------------------------------------------------------------- hard brake
def sample_hard_brake(cfg: HardBrakeConfig, rng: np.random.Generator) -> dict:
    v_e = uniform(rng, cfg.ego_speed)
    v_l = max(v_e - uniform(rng, cfg.rel_speed), 2.0)
    decel, frac = uniform(rng, cfg.decel), uniform(rng, cfg.brake_to)
    duration = v_l * (1 - frac) / decel
    b = cfg.bound
    bound_gap = float(closing_distance(v_e, v_l, decel, duration, b.max_brake, b.reaction)[0])
    p = dict(ego_speed=v_e, leader_speed=v_l, rel_speed=v_e - v_l, decel=decel, brake_to=frac, brake_duration=duration,
             bound_gap=bound_gap, bound_headway=bound_gap / v_e, density=uniform(rng, cfg.density),
             ego_lane=int(rng.integers(cfg.lanes)), background_seed=int(rng.integers(2**31)))
    p["target_headway"] = max(_ttc_target(cfg, rng, p["bound_headway"], "headway"), 0.05)
    p["target_gap"] = p["target_headway"] * v_e
    return p


def build_hard_brake(p: dict, cfg: HardBrakeConfig, name: str, seed: int, minimal: bool = False):
    road = event_road("straight", speed_bucket(p["ego_speed"]), cfg.lanes)
    lane = p["ego_lane"]
    y = lane_y(road, lane)
    k = EVENT_STEP
    T = k + int(round(cfg.after / 0.1))
    v_e, v_l = p["ego_speed"], p["leader_speed"]
    ego_x = 30.0
    leader_x = ego_x + CAR[0] + p["target_gap"] + (v_e - v_l) * k * 0.1  # both hold speed until the braking
    agents = Agents()
    agents.add(ego_x, y, 0.0, v_e, mode=ControlMode.POLICY)
    agents.add(leader_x, y, 0.0, v_l, desired=v_l)
    script = Script(T)
    stop = k + int(round(p["brake_duration"] / 0.1))
    script.set_accel(1, 0, k, 0.0)
    script.set_accel(1, k, stop, -p["decel"])
    script.set_accel(1, stop, T, 0.0)
    script.hold_lane(1, 0, T, lane)
    if not minimal:
        keep = {lane: [(ego_x - 30.0, ego_x + v_e * T * 0.1 + 40.0)]}
        background(road, agents, np.random.default_rng(p["background_seed"]), p["density"], keep)
    meta = {"generator": "hard-brake", "event_agent": 1, "trigger": "step", "target_step": k, "lane_width": road.lanes[lane].width, "lead_brake": p["decel"], "lead_duration": p["brake_duration"]}
    return assemble(name, road, agents, [lane], T * 0.1, script, seed, meta)


# ---------------------------------------------------------------------------- stalled vehicle
def sample_stalled(cfg: StalledConfig, rng: np.random.Generator) -> dict:
    v_e = uniform(rng, cfg.ego_speed)
    bound_gap = _stop_bound(v_e, cfg.bound)
    ttc = max(_ttc_target(cfg, rng, bound_gap / v_e), 0.1)
    lane = int(rng.integers(cfg.lanes))
    swerve = lane - 1 if lane > 0 and (lane == cfg.lanes - 1 or rng.random() < 0.5) else lane + 1
    headway = uniform(rng, (0.8, 1.5))
    reveal = bool(rng.random() < cfg.reveal) and cfg.lanes > 1
    # the leader must clear the stalled car: its front stays 2 m behind it at the reveal
    headway = min(headway, ttc - (CAR[0] + 2.0) / v_e - 0.3)
    p = dict(ego_speed=v_e, bound_gap=bound_gap, bound_ttc=bound_gap / v_e, target_ttc=ttc, target_gap=ttc * v_e,
             offset=uniform(rng, cfg.offset), ego_lane=lane, reveal=bool(reveal and headway >= 0.4),
             leader_headway=headway, swerve_lane=swerve, lat_speed=uniform(rng, (1.0, 2.0)),
             density=uniform(rng, cfg.density), background_seed=int(rng.integers(2**31)))
    return p


def build_stalled(p: dict, cfg: StalledConfig, name: str, seed: int, minimal: bool = False):
    road = event_road("straight", speed_bucket(p["ego_speed"]), cfg.lanes)
    lane, v_e = p["ego_lane"], p["ego_speed"]
    y, w = lane_y(road, lane), road.lanes[lane].width
    k, delay, dx = EVENT_STEP, 0, 0.0
    if p["reveal"]:
        if "delay" in p:
            delay, dx = p["delay"], p["dx"]
        else:  # first guess; calibration measures it
            delay = math.ceil((w / 2 + CAR[1] / 2) / p["lat_speed"] / 0.1) + 3
            dx = v_e * delay * 0.1
        k = max(EVENT_STEP, delay + 10)  # the leader drives 1 s before it swerves
    T = k + int(round(cfg.after / 0.1))
    ego_x = 30.0
    stalled_x = ego_x + CAR[0] + v_e * k * 0.1 + p["target_gap"]
    agents = Agents()
    agents.add(ego_x, y, 0.0, v_e, mode=ControlMode.POLICY)
    agents.add(stalled_x, y + p["offset"], 0.0, 0.0, mode=ControlMode.STATIC)
    script, trigger, start = None, "step", 0
    if p["reveal"]:
        start = k - delay
        # its rear is leader_headway x v_e ahead of the ego's front when it leaves the lane at step k
        leader_x = ego_x + CAR[0] + p["leader_headway"] * v_e + v_e * (k - start) * 0.1 - dx
        agents.add(leader_x, y, 0.0, v_e, desired=v_e)
        script = Script(T)
        script.set_accel(2, 0, T, 0.0)
        script.hold_lane(2, 0, start, lane)
        script.set_lane(2, start, k + 30, p["swerve_lane"], p["lat_speed"])
        trigger = "leave"
    if not minimal:
        keep = {lane: [(ego_x - 30.0, ego_x + v_e * T * 0.1 + 40.0)]}
        if p["reveal"]:
            keep[p["swerve_lane"]] = [(ego_x - 10.0, stalled_x + 60.0)]
        background(road, agents, np.random.default_rng(p["background_seed"]), p["density"], keep)
    meta = {"generator": "stalled", "event_agent": 1, "trigger": trigger, "trigger_agent": 2, "target_step": k,
            "script_start": start, "lane_width": w, "lead_brake": 0.0, "lead_duration": 0.0}
    return assemble(name, road, agents, [lane], T * 0.1, script, seed, meta)


# ---------------------------------------------------------------------------- pedestrian
def sample_pedestrian(cfg: PedestrianConfig, rng: np.random.Generator) -> dict:
    v_e = uniform(rng, cfg.ego_speed)
    bound_gap = _stop_bound(v_e, cfg.bound)
    ttc = max(_ttc_target(cfg, rng, bound_gap / v_e), 0.1)
    return dict(ego_speed=v_e, walk_speed=uniform(rng, cfg.walk_speed), bound_gap=bound_gap, bound_ttc=bound_gap / v_e,
                target_ttc=ttc, target_gap=ttc * v_e, density=uniform(rng, cfg.density),
                parked_gap=uniform(rng, (1.2, 2.5)), background_seed=int(rng.integers(2**31)))


def build_pedestrian(p: dict, cfg: PedestrianConfig, name: str, seed: int, minimal: bool = False):
    road = event_road("straight", speed_bucket(p["ego_speed"]), cfg.lanes)
    lane = cfg.lanes - 1  # the rightmost lane, next to the parked cars
    y, w = lane_y(road, lane), road.lanes[lane].width
    v_e, v_p = p["ego_speed"], p["walk_speed"]
    edge = y - w / 2  # the lane's right edge
    row_y = edge - CAR[1] / 2 - 0.3
    ped_x, ped_y = 200.0, row_y
    go = EVENT_STEP
    enter = go + math.ceil((edge - (ped_y + PEDESTRIAN[1] / 2)) / v_p / 0.1)  # first step with the box in the lane
    T = enter + int(round(cfg.after / 0.1))
    ego_x = ped_x - PEDESTRIAN[0] / 2 - p["target_gap"] - CAR[0] / 2 - v_e * enter * 0.1
    agents = Agents()
    agents.add(ego_x, y, 0.0, v_e, mode=ControlMode.POLICY)
    agents.add(ped_x, ped_y, math.pi / 2, 0.0, *PEDESTRIAN, agent_type=AgentType.PEDESTRIAN, mode=ControlMode.REPLAY)
    for j in range(-(cfg.parked // 2), cfg.parked - cfg.parked // 2):  # parked cars, the pedestrian's gap in the middle
        agents.add(ped_x + (j + 0.5) * (CAR[0] + p["parked_gap"]), row_y, 0.0, 0.0, mode=ControlMode.STATIC)
    if not minimal:
        keep = {lane: [(ego_x - 30.0, ego_x + v_e * T * 0.1 + 40.0)]}
        background(road, agents, np.random.default_rng(p["background_seed"]), p["density"], keep)
    A = len(agents.rows)
    t = np.arange(T + 1) * 0.1
    walking = t >= go * 0.1
    log = np.zeros((A, T + 1, 4))
    log_valid = np.zeros((A, T + 1), bool)
    log[1, :, 0], log[1, :, 2] = ped_x, math.pi / 2
    log[1, :, 1] = ped_y + v_p * np.clip(t - go * 0.1, 0.0, None)
    log[1, :, 3] = np.where(walking, v_p, 0.0)
    log_valid[1] = True
    meta = {"generator": "pedestrian", "event_agent": 1, "trigger": "enter", "target_step": enter, "lane_width": w, "lead_brake": 0.0, "lead_duration": 0.0}
    return assemble(name, road, agents, [lane], T * 0.1, None, seed, meta, log, log_valid)
