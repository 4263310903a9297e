"""Cut-ins on a straight multi-lane road, and the merge conflict at an on-ramp (a cut-in from
the acceleration lane).

The cutter holds its speed v_c = v_ego - dv (scripted acceleration 0), changes lane towards the
ego's lane at the scripted lateral speed, and brakes at `cutter_brake` for `brake_duration`
once its box crosses the lane line; then IDM takes over again. Positions are set so that, if the
ego kept its speed, the cutter's rear would be `gap` = TTC x dv ahead of the ego's front at the
crossing. How long the lane change takes to reach the line is measured by simulation
(`delay`, `dx`: see sim/events.calibrate), not assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drivesim.events.common import (CAR, Agents, BoundConfig, Range, Script, assemble, background,
                                             check_range, closing_distance, event_road, lane_y, speed_bucket, uniform)
from drivesim.core.config import ConfigError
from drivesim.core.types import ControlMode

START_STEP = 10  # the lane change starts after 1 s of normal driving
MIN_CUTTER_SPEED = 3.0  # m/s
MERGE_FIRST_X = 183.0  # m: the acceleration lane runs straight from 180 m
MAX_HEADING = 0.25  # lateral speed <= this x cutter speed (about 14 deg): keeps the path feasible


@dataclass(frozen=True)
class CutInConfig:
    """Knobs of the cut-in generator; ranges are sampled uniformly per scenario."""

    side: str = "any"  # left | right | any: the side the cutter comes from
    ego_speed: Range = (10.0, 30.0)  # m/s
    rel_speed: Range = (1.0, 10.0)  # m/s: dv = v_ego - v_cutter (clipped so that v_cutter >= 3 m/s)
    ttc: Range = (0.5, 3.0)  # s: TTC_c = gap / dv when the cutter's box crosses the lane line
    gap: Range | None = None  # m: sample the gap instead of the TTC
    band: Range | None = None  # s above the avoidability bound, e.g. (0, 1): overrides ttc and gap
    lat_speed: Range = (0.5, 2.0)  # m/s: the cutter's lateral speed
    cutter_brake: Range = (0.0, 4.0)  # m/s^2 after the cut ...
    brake_duration: float = 2.0  # s ... for this long
    density: Range = (0.0, 2.0)  # background vehicles per lane per 100 m
    lanes: int = 3  # forward lanes
    after: float = 5.0  # s simulated after the cut
    bound: BoundConfig = field(default_factory=BoundConfig)

    def validate_config(self, where: str = "cut_in") -> None:
        if self.side not in ("left", "right", "any"):
            raise ConfigError(f"{where}.side: got {self.side!r}; allowed: left, right, any")
        check_range(self.ego_speed, where, "ego_speed", 4.0, 35.0)
        check_range(self.rel_speed, where, "rel_speed", 0.0, 15.0)
        check_range(self.ttc, where, "ttc", 0.0, 10.0)
        check_range(self.gap, where, "gap", 0.0, 100.0)
        check_range(self.band, where, "band", -3.0, 10.0)
        check_range(self.lat_speed, where, "lat_speed", 0.2, 3.0)
        check_range(self.cutter_brake, where, "cutter_brake", 0.0, 8.0)
        check_range(self.density, where, "density", 0.0, 10.0)
        if not 2 <= self.lanes <= 5:
            raise ConfigError(f"{where}.lanes: got {self.lanes}; allowed: 2..5")
        if not 0 <= self.brake_duration <= 10 or not 2 <= self.after <= 20:
            raise ConfigError(f"{where}: brake_duration must be 0..10 s and after 2..20 s")
        self.bound.validate_config(f"{where}.bound")


@dataclass(frozen=True)
class MergeConfig(CutInConfig):
    """Merge conflict: the cutter comes from the on-ramp's acceleration lane, on the right."""

    side: str = "right"
    ego_speed: Range = (10.0, 25.0)
    rel_speed: Range = (1.0, 8.0)
    lat_speed: Range = (0.5, 1.5)
    cutter_brake: Range = (0.0, 2.0)
    lanes: int = 2

    def validate_config(self, where: str = "merge") -> None:
        super().validate_config(where)
        if self.side != "right":
            raise ConfigError(f"{where}.side: the on-ramp is on the right; got {self.side!r}")


def sample_cut_in(cfg: CutInConfig, rng: np.random.Generator) -> dict:
    """Knob values of one scenario (the criticality target resolved into a gap)."""
    v_e = uniform(rng, cfg.ego_speed)
    dv = min(uniform(rng, cfg.rel_speed), v_e - MIN_CUTTER_SPEED)
    v_c = v_e - dv
    brake = uniform(rng, cfg.cutter_brake)
    p = dict(ego_speed=v_e, rel_speed=dv, cutter_speed=v_c, cutter_brake=brake, brake_duration=cfg.brake_duration,
             lat_speed=min(uniform(rng, cfg.lat_speed), MAX_HEADING * v_c), density=uniform(rng, cfg.density),
             ego_length=CAR[0] * rng.uniform(0.95, 1.05), cutter_length=CAR[0] * rng.uniform(0.9, 1.1),
             cutter_width=CAR[1] * rng.uniform(0.95, 1.05))
    b = cfg.bound
    bound_gap = float(closing_distance(v_e, v_c, brake, cfg.brake_duration, b.max_brake, b.reaction)[0])
    p["bound_gap"] = bound_gap  # m: the smallest gap avoidable by braking alone
    p["bound_ttc"] = bound_gap / dv if dv > 0 else 0.0
    if cfg.band is not None:
        p["target_ttc"] = p["bound_ttc"] + uniform(rng, cfg.band)
        p["target_gap"] = p["target_ttc"] * dv
    elif cfg.gap is not None:
        p["target_gap"] = uniform(rng, cfg.gap)
        p["target_ttc"] = p["target_gap"] / dv if dv > 0 else math.inf
    else:
        p["target_ttc"] = uniform(rng, cfg.ttc)
        p["target_gap"] = p["target_ttc"] * dv
    p["target_gap"] = max(p["target_gap"], 0.0)
    lanes = list(range(cfg.lanes))
    if isinstance(cfg, MergeConfig):
        p.update(side="right", ego_lane=cfg.lanes - 1)
    else:
        side = cfg.side if cfg.side != "any" else ("left", "right")[int(rng.integers(2))]
        ok = lanes[1:] if side == "left" else lanes[:-1]  # lane 0 is next to the median (leftmost)
        p.update(side=side, ego_lane=int(ok[int(rng.integers(len(ok)))]))
    p["background_seed"] = int(rng.integers(2**31))
    return p


def _lane_change_estimate(p: dict, lane_width: float) -> tuple[int, float]:
    """(steps, x travelled) from the start of the lane change to the box touching the line: a
    first guess, replaced by the measured values."""
    steps = math.ceil(((lane_width - p["cutter_width"]) / 2 / p["lat_speed"]) / 0.1) + 3
    return steps, p["cutter_speed"] * steps * 0.1


def build_cut_in(p: dict, cfg: CutInConfig, name: str, seed: int, minimal: bool = False):
    """The scenario of knob values `p` (with `delay`/`dx` once calibrated); `minimal` leaves
    out the background traffic (for calibration)."""
    merge = isinstance(cfg, MergeConfig)
    road = event_road("merge" if merge else "straight", speed_bucket(p["ego_speed"]), cfg.lanes)
    n = cfg.lanes
    w = road.lanes[0].width
    delay, dx = (p["delay"], p["dx"]) if "delay" in p else _lane_change_estimate(p, w)
    start = START_STEP if not merge else 5
    cut = start + delay
    T = cut + int(round(cfg.after / 0.1))
    v_e, v_c, L_e, L_c = p["ego_speed"], p["cutter_speed"], p["ego_length"], p["cutter_length"]
    if merge:
        ego_lane, cutter_lane, target = n - 1, len(road.lanes) - 1, 2 * n - 1  # section 0 rightmost, ramp, section 1
        cross_x = 250.0  # the cutter's rear at the crossing, inside the merge zone (180-320 m, taper from 280 m)
        ego_x = cross_x - p["target_gap"] - L_e / 2 - v_e * cut * 0.1
    else:
        ego_lane = p["ego_lane"]
        cutter_lane = ego_lane - 1 if p["side"] == "left" else ego_lane + 1
        target = ego_lane
        ego_x = 30.0
        cross_x = ego_x + L_e / 2 + v_e * cut * 0.1 + p["target_gap"]
    cutter_x = cross_x + L_c / 2 - (v_c * start * 0.1 + dx)
    if merge and cutter_x < MERGE_FIRST_X:  # start on the straight part of the acceleration lane
        shift = MERGE_FIRST_X - cutter_x
        cutter_x, cross_x, ego_x = cutter_x + shift, cross_x + shift, ego_x + shift
    y_e = lane_y(road, target if merge else ego_lane)
    y_c = lane_y(road, cutter_lane) if not merge else y_e - w
    agents = Agents()
    agents.add(ego_x, lane_y(road, ego_lane), 0.0, v_e, L_e, CAR[1], mode=ControlMode.POLICY)
    agents.add(cutter_x, y_c, 0.0, v_c, L_c, p["cutter_width"], desired=v_c)
    script = Script(T)
    script.set_accel(1, 0, cut, 0.0)
    script.set_accel(1, cut, cut + int(round(p["brake_duration"] / 0.1)), -p["cutter_brake"])
    # the target lane is held to the end (MOBIL's keep-right would otherwise send a cutter back);
    # on the merge map only through the merge section, whose lane id it is
    script.hold_lane(1, 0, start, cutter_lane)  # no lane change of its own before the cut
    script.set_lane(1, start, cut + 30 if merge else T, target, p["lat_speed"])
    ego_lanes = [ego_lane, target, 3 * n - 1] if merge else [ego_lane]
    if merge and ego_x >= road.lanes[target].centerline[0][0]:
        ego_lanes = ego_lanes[1:]
    if not minimal:
        rng = np.random.default_rng(p["background_seed"])
        span = (min(ego_x, cutter_x) - 30.0, ego_x + v_e * T * 0.1 + 40.0)
        keep = {lid: [span] for lid in ego_lanes + ([cutter_lane] if not merge else [])}
        background(road, agents, rng, p["density"], keep)
    meta = {"generator": "cut-in" if not merge else "merge", "event_agent": 1, "trigger": "enter",
            "lane_width": w, "script_start": start, "target_step": cut,
            "lead_brake": p["cutter_brake"], "lead_duration": p["brake_duration"]}
    return assemble(name, road, agents, ego_lanes, T * 0.1, script, seed, meta)
