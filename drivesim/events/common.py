"""Shared pieces of the rare-event generators: knob ranges, the event maps, background traffic,
per-agent scripts, and the 1-D braking bound that labels an event avoidable or not.

Every event is laid out along the +x axis of a straight road (the on-ramp merge's main road is
straight too): lane centres are lines y = const, so gaps are differences of x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.core.config import ConfigError
from drivesim.core.types import AgentType, ControlMode
from drivesim.map.builders import build_map
from drivesim.map.road import RoadMap

Range = tuple[float, float]
CAR = (4.6, 1.9)  # m: ego and event vehicles
MIN_GAP, TIME_GAP = 2.0, 1.0  # m, s: background spacing (as procedural traffic)


def check_range(r, where: str, key: str, lo: float, hi: float) -> None:
    """A knob range [a, b] with lo <= a <= b <= hi, or a ConfigError naming the key."""
    if r is None:
        return
    a, b = r
    if not lo <= a <= b <= hi:
        raise ConfigError(f"{where}.{key}: got {[a, b]}; allowed: [lo, hi] with {lo:g} <= lo <= hi <= {hi:g}")


def uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


@dataclass(frozen=True)
class BoundConfig:
    """The ego model behind the analytic avoidability bound (docs/definitions.md, "Cut-in avoidability bound")."""

    reaction: float = 0.3  # s: rho, ego reaction time
    max_brake: float = 6.0  # m/s^2: b_max, ego braking (the simulator allows 8)

    def validate_config(self, where: str = "bound") -> None:
        if not 0 <= self.reaction <= 3:
            raise ConfigError(f"{where}.reaction: got {self.reaction}; allowed: 0..3 s")
        if not 1 <= self.max_brake <= 10:
            raise ConfigError(f"{where}.max_brake: got {self.max_brake}; allowed: 1..10 m/s^2")


# ---------------------------------------------------------------------------- 1-D bound
_T = np.arange(0.0, 25.0, 0.01)  # s: time grid of the bound (both vehicles stop well within it)


def braking_distance(t, v0, decel, start=0.0, duration=math.inf):
    """Distance covered by t [K] (broadcast against [N, 1] arguments): speed v0 until `start`,
    then braking at `decel` for `duration` (or to a stop), then constant speed."""
    v0, decel, start, duration = (np.asarray(a, float) for a in (v0, decel, start, duration))
    tb = np.minimum(duration, np.where(decel > 0, v0 / np.maximum(decel, 1e-9), 0.0))  # braking time
    tau = np.clip(t - start, 0.0, None)
    during = np.minimum(tau, tb)
    return v0 * np.minimum(t, start) + v0 * during - 0.5 * decel * during**2 + (v0 - decel * tb) * (tau - during)


def closing_distance(v_ego, v_lead, lead_brake, lead_duration, ego_brake, reaction):
    """[N] worst closing of the gap: max over t of (ego distance - lead distance), the ego
    reacting after `reaction` and braking at `ego_brake`, the lead braking at `lead_brake` for
    `lead_duration` from t = 0. An event with gap g is avoidable by braking iff g > this."""
    col = lambda a: np.asarray(a, float).reshape(-1, 1)
    ego = braking_distance(_T, col(v_ego), col(ego_brake), col(reaction))
    lead = braking_distance(_T, col(v_lead), col(lead_brake), 0.0, col(lead_duration))
    return np.max(ego - lead, axis=1)


def ttc_bound_closed_form(rel_speed, reaction: float, max_brake: float):
    """docs/definitions.md: a cut-in at constant cutter speed is avoidable by braking iff
    TTC > rho + dv / (2 b_max)."""
    return reaction + np.asarray(rel_speed, float) / (2 * max_brake)


def required_decel(gap, v_ego, v_lead, lead_brake, lead_duration, reaction, hi: float = 30.0, iters: int = 24):
    """[N] smallest constant ego deceleration (after `reaction`) that keeps the gap positive;
    inf when even `hi` m/s^2 does not (the gap is gone during the reaction time)."""
    gap = np.asarray(gap, float)
    lo_b, hi_b = np.zeros_like(gap), np.full_like(gap, hi)
    ok_hi = closing_distance(v_ego, v_lead, lead_brake, lead_duration, hi_b, reaction) < gap
    for _ in range(iters):
        mid = 0.5 * (lo_b + hi_b)
        ok = closing_distance(v_ego, v_lead, lead_brake, lead_duration, mid, reaction) < gap
        hi_b, lo_b = np.where(ok, mid, hi_b), np.where(ok, lo_b, mid)
    return np.where(ok_hi, hi_b, np.inf)


# ---------------------------------------------------------------------------- maps
@lru_cache(maxsize=32)
def event_road(kind: str, speed_limit: float, lanes: int) -> RoadMap:
    """One shared RoadMap per (kind, speed limit, lanes): every scenario of a set that uses it
    holds the same object, so a batch stores it once."""
    if kind == "straight":
        return build_map("straight", length=600.0, lanes=lanes, lanes_back=2, speed_limit=speed_limit)
    if kind == "merge":
        return build_map("merge", length=500.0, lanes=lanes, lanes_back=2, speed_limit=speed_limit,
                         merge_start=180.0, merge_length=140.0, ramp_length=100.0)
    raise ValueError(f"unknown event road {kind!r}")


def speed_bucket(v: float) -> float:
    """Speed limit of the map for an ego speed: the next multiple of 5 m/s at or above it (>= 10)."""
    return float(max(10.0, 5.0 * math.ceil(v / 5.0 - 1e-9)))


def lane_y(road: RoadMap, lane: int) -> float:
    return float(np.asarray(road.lanes[lane].centerline)[0, 1])


# ---------------------------------------------------------------------------- agents and scripts
@dataclass
class Agents:
    """Agent rows of an event scenario; agent 0 is the ego, 1 the event agent."""

    rows: list[dict] = field(default_factory=list)

    def add(self, x, y, yaw, speed, length=CAR[0], width=CAR[1], agent_type=AgentType.VEHICLE,
            mode=ControlMode.REACTIVE, desired=None) -> int:
        self.rows.append(dict(x=float(x), y=float(y), yaw=float(yaw), speed=float(speed), length=float(length),
                              width=float(width), agent_type=int(agent_type), mode=int(mode),
                              desired_speed=float(speed if desired is None else desired)))
        return len(self.rows) - 1

    def column(self, key: str, dtype=float) -> np.ndarray:
        return np.array([r[key] for r in self.rows], dtype=dtype)


class Script:
    """Scripted overrides [A, T] for the core's hook (NaN / -1 = the model decides)."""

    def __init__(self, num_steps: int):
        self.T = num_steps
        self.accel: dict[int, np.ndarray] = {}
        self.lane: dict[int, np.ndarray] = {}
        self.lat: dict[int, np.ndarray] = {}

    def _row(self, table: dict, agent: int, fill) -> np.ndarray:
        return table.setdefault(agent, np.full(self.T, fill, dtype=float if fill != -1 else np.int64))

    def set_accel(self, agent: int, start: int, stop: int, value: float) -> None:
        self._row(self.accel, agent, np.nan)[max(start, 0) : max(stop, 0)] = value

    def set_lane(self, agent: int, start: int, stop: int, lane: int, lat_speed: float) -> None:
        self._row(self.lane, agent, -1)[max(start, 0) : max(stop, 0)] = lane
        self._row(self.lat, agent, np.nan)[max(start, 0) : max(stop, 0)] = lat_speed

    def hold_lane(self, agent: int, start: int, stop: int, lane: int) -> None:
        """Keep the agent in `lane` (MOBIL may not move it) over [start, stop)."""
        self._row(self.lane, agent, -1)[max(start, 0) : max(stop, 0)] = lane
        self._row(self.lat, agent, np.nan)

    def arrays(self, num_agents: int) -> dict[str, np.ndarray | None]:
        out = {}
        for name, table, fill in (("script_accel", self.accel, np.nan), ("script_lane", self.lane, -1),
                                  ("script_lat_speed", self.lat, np.nan)):
            if not table:
                out[name] = None
                continue
            arr = np.full((num_agents, self.T), fill, dtype=np.int64 if fill == -1 else float)
            for a, row in table.items():
                arr[a] = row
            out[name] = arr
        return out


def background(road: RoadMap, agents: Agents, rng: np.random.Generator, density: float, keep_out: dict[int, list[Range]],
               speed_factor: Range = (0.85, 1.0)) -> None:
    """Reactive background vehicles on every straight lane (not the ramp), `density` per lane per
    100 m, with the procedural spacing rule; none whose x span meets a `keep_out[lane]` interval."""
    if density <= 0:
        return
    spacing = 100.0 / density
    for lane_id, lane in enumerate(road.lanes):
        if lane.kind == "ramp":
            continue
        cl = np.asarray(lane.centerline, float)
        x0, x1 = cl[0, 0], cl[-1, 0]
        sign = 1.0 if x1 > x0 else -1.0
        s, prev_speed = float(rng.uniform(0.0, spacing)), 0.0
        while s < abs(x1 - x0) - 6.0:
            length, width = CAR[0] * rng.uniform(0.9, 1.1), CAR[1] * rng.uniform(0.9, 1.1)
            speed = lane.speed_limit * uniform(rng, speed_factor)
            lo, hi = sorted((x0 + sign * s, x0 + sign * (s + length)))
            if not any(lo < b and hi > a for a, b in keep_out.get(lane_id, [])):
                agents.add(0.5 * (lo + hi), cl[0, 1], 0.0 if sign > 0 else math.pi, speed, length, width)
            s += length + MIN_GAP + TIME_GAP * max(speed, prev_speed) + rng.exponential(max(spacing - 15.0, 1.0))
            prev_speed = speed


def assemble(name: str, road: RoadMap, agents: Agents, route: list[int], duration: float, script: Script | None,
             seed: int, meta: dict, log: np.ndarray | None = None, log_valid: np.ndarray | None = None) -> Scenario:
    A = len(agents.rows)
    scripts = script.arrays(A) if script is not None else {}
    return Scenario(
        name=name, road=road, x=agents.column("x"), y=agents.column("y"), yaw=agents.column("yaw"),
        speed=agents.column("speed"), length=agents.column("length"), width=agents.column("width"),
        agent_type=agents.column("agent_type", np.int64), mode=agents.column("mode", np.int64),
        desired_speed=agents.column("desired_speed"), route=route, duration=duration, dt=0.1, log=log,
        log_valid=log_valid, seed=seed, meta=meta, **scripts,
    )


def project(poly: np.ndarray, pts: np.ndarray):
    """(s, d, heading) of points [N, 2] on a polyline [P, 2] (nearest segment; d left positive)."""
    a, b = poly[:-1], poly[1:]
    ab = b - a
    seg = np.maximum(np.linalg.norm(ab, axis=1), 1e-9)
    tan = ab / seg[:, None]
    ap = pts[:, None, :] - a[None]
    t = np.clip((ap * tan[None]).sum(-1), 0.0, seg[None])
    foot = a[None] + tan[None] * t[..., None]
    k = np.linalg.norm(pts[:, None, :] - foot, axis=-1).argmin(axis=1)
    n = np.arange(len(pts))
    s0 = np.concatenate([[0.0], np.cumsum(seg)])
    d = tan[k, 0] * ap[n, k, 1] - tan[k, 1] * ap[n, k, 0]
    return s0[k] + t[n, k], d, np.arctan2(tan[k, 1], tan[k, 0])
