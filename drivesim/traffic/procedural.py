"""Procedural traffic scenarios: an ego route plus random vehicles, pedestrians and objects.

`procedural_scenario(road, TrafficConfig(...), seed, name)` is deterministic given the seed
(one `numpy.random.default_rng(seed)` drives every draw). Vehicles are sampled along lane
centerlines; lanes that continue one another one-to-one (the sections of the merge map) are
sampled as one strand so that gaps hold across lane joints. Connector lanes inside junctions
stay empty at t=0 (their paths cross). Every vehicle keeps a bumper-to-bumper gap of at least
`MIN_GAP + TIME_GAP * (follower speed)` to its leader; boxes on different strands are checked
with the exact oriented-box test. Pedestrians, cyclists, cones and parked cars stand on the
right shoulder of an outer lane, off every lane except possibly the edge of their own lane,
which never happens on the ego's route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from shapely.geometry import Polygon
from shapely.prepared import prep

from drivesim.core.scenario import Scenario
from drivesim.core.config import ConfigError, config_to_dict
from drivesim.core.geometry import box_corners, boxes_overlap
from drivesim.core.types import AgentType, ControlMode
from drivesim.map.road import RoadMap

GENERATOR_VERSION = 1
CAR_SIZE = (4.5, 1.9)  # m, each varied by +-10 %
TRUCK_LENGTH, TRUCK_WIDTH = (8.0, 12.0), 2.5
PEDESTRIAN_SIZE, CYCLIST_SIZE, CONE_SIZE = (0.6, 0.6), (1.8, 0.6), (0.4, 0.4)
MIN_GAP, TIME_GAP = 2.0, 1.0  # m, s: minimum bumper-to-bumper gap 2 m + 1 s x follower speed
COMFORT_DECEL = 3.0  # m/s^2: initial speeds let every vehicle stop for a red light or its leader
OVERLAP_MARGIN = (1.0, 0.3)  # m added to (length, width) when checking boxes across strands
ROUTE_CLASSES = ("any", "lane", "ramp", "left", "through", "right")


@dataclass(frozen=True)
class EgoConfig:
    speed: float = 10.0  # m/s at t=0 (lowered if it could not stop for a red light or its leader)
    start_s: tuple[float, float] = (5.0, 20.0)  # m, centre along the first route lane, uniform
    length: float = 4.5  # m
    width: float = 1.9  # m
    route: str = "any"  # any | lane | ramp | left | through | right (movement class of the route)

    def validate_config(self, where: str = "ego") -> None:
        _check(self.speed >= 0, where, "speed", self.speed, ">= 0")
        _check(0 <= self.start_s[0] <= self.start_s[1], where, "start_s", list(self.start_s), "[lo, hi] with 0 <= lo <= hi")
        _check(self.length > 0, where, "length", self.length, "> 0")
        _check(self.width > 0, where, "width", self.width, "> 0")
        _check(self.route in ROUTE_CLASSES, where, "route", self.route, f"one of {', '.join(ROUTE_CLASSES)}")


@dataclass(frozen=True)
class TrafficConfig:
    density: float = 2.0  # vehicles per lane per 100 m (a target: the minimum gap wins at speed)
    speed_factor: tuple[float, float] = (0.8, 1.0)  # desired speed / lane speed limit, uniform range
    trucks: float = 0.1  # fraction of vehicles that are trucks (8-12 m x 2.5 m)
    pedestrians: int = 0  # standing on the sidewalk (mode STATIC for now)
    cyclists: int = 0  # standing on the shoulder (mode STATIC for now)
    static_objects: int = 0  # cones and parked cars on the shoulder
    parked_fraction: float = 0.5  # share of static objects that are parked cars (the rest cones)
    ego: EgoConfig = field(default_factory=EgoConfig)
    duration: float = 15.0  # s
    dt: float = 0.1  # s

    def validate_config(self, where: str = "traffic") -> None:
        _check(0 <= self.density <= 20, where, "density", self.density, "0 <= density <= 20")
        lo, hi = self.speed_factor
        _check(0 < lo <= hi <= 2, where, "speed_factor", [lo, hi], "[lo, hi] with 0 < lo <= hi <= 2")
        _check(0 <= self.trucks <= 1, where, "trucks", self.trucks, "a fraction in [0, 1]")
        for name in ("pedestrians", "cyclists", "static_objects"):
            _check(0 <= getattr(self, name) <= 200, where, name, getattr(self, name), "0..200")
        _check(0 <= self.parked_fraction <= 1, where, "parked_fraction", self.parked_fraction, "a fraction in [0, 1]")
        _check(0 < self.dt <= 1, where, "dt", self.dt, "0 < dt <= 1")
        _check(self.duration >= self.dt, where, "duration", self.duration, ">= dt")
        self.ego.validate_config(f"{where}.ego")


def _check(ok: bool, where: str, key: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{where}.{key}: got {value!r}; allowed: {allowed}")


@dataclass
class _Agent:
    x: float
    y: float
    yaw: float
    speed: float
    length: float
    width: float
    agent_type: int
    mode: int
    desired_speed: float = 0.0

    def box(self, margin=(0.0, 0.0)) -> tuple:
        return (self.x, self.y, self.yaw, self.length + margin[0], self.width + margin[1])


class _Polyline:
    """Arc-length interpolation on a centerline [P, 2]."""

    def __init__(self, points: np.ndarray):
        pts = np.asarray(points, float)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        self.pts = pts[np.concatenate([[True], seg > 1e-9])]
        self.s = np.concatenate([[0.0], np.cumsum(seg[seg > 1e-9])])
        self.length = float(self.s[-1])

    def pose(self, s: float) -> tuple[np.ndarray, float]:
        s = min(max(s, 0.0), self.length)
        k = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.pts) - 2))
        a, b = self.pts[k], self.pts[k + 1]
        frac = (s - self.s[k]) / max(self.s[k + 1] - self.s[k], 1e-9)
        return a + (b - a) * frac, math.atan2(b[1] - a[1], b[0] - a[0])


class _Strand:
    """Lanes that continue one another one-to-one, sampled as one arc-length axis."""

    def __init__(self, road: RoadMap, lanes: list[int]):
        self.lanes = lanes
        self.lines = [_Polyline(road.lanes[i].centerline) for i in lanes]
        self.offsets = np.concatenate([[0.0], np.cumsum([ln.length for ln in self.lines])])
        self.length = float(self.offsets[-1])

    def index(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.offsets, s, side="right") - 1, 0, len(self.lanes) - 1))

    def pose(self, s: float) -> tuple[np.ndarray, float, int]:
        k = self.index(s)
        xy, yaw = self.lines[k].pose(s - self.offsets[k])
        return xy, yaw, self.lanes[k]


# ---------------------------------------------------------------------------- routes
def predecessors(road: RoadMap) -> list[list[int]]:
    preds: list[list[int]] = [[] for _ in road.lanes]
    for i, lane in enumerate(road.lanes):
        for j in lane.successors:
            preds[j].append(i)
    return preds


def enumerate_routes(road: RoadMap, max_lanes: int = 32) -> list[list[int]]:
    """Every lane sequence from an entry lane (no predecessor) along `successors` to a dead end."""
    preds = predecessors(road)
    starts = [i for i, lane in enumerate(road.lanes) if not preds[i] and lane.kind != "connector"]
    routes: list[list[int]] = []

    def extend(route: list[int]) -> None:
        nxt = [j for j in road.lanes[route[-1]].successors if j not in route]
        if not nxt or len(route) >= max_lanes:
            routes.append(route)
        for j in nxt if len(route) < max_lanes else []:
            extend(route + [j])

    for i in starts or range(len(road.lanes)):
        extend([i])
    return routes


def route_class(road: RoadMap, route: list[int]) -> str:
    """`ramp` (starts on a ramp), `left`/`through`/`right` (turn of its junction connector) or `lane`."""
    if road.lanes[route[0]].kind == "ramp":
        return "ramp"
    for lid in route:
        if road.lanes[lid].kind == "connector":
            cl = np.asarray(road.lanes[lid].centerline, float)
            a, b = cl[1] - cl[0], cl[-1] - cl[-2]
            turn = math.remainder(math.atan2(b[1], b[0]) - math.atan2(a[1], a[0]), 2 * math.pi)
            return "left" if turn > math.pi / 4 else "right" if turn < -math.pi / 4 else "through"
    return "lane"


def route_length(road: RoadMap, route: list[int]) -> float:
    return sum(road.lanes[i].length for i in route)


def ends_at_map_edge(road: RoadMap, route: list[int]) -> bool:
    """The last lane has no successor and is not a `dead_end` inside the map (a ramp)."""
    last = road.lanes[route[-1]]
    return not last.successors and not last.dead_end


def choose_route(road: RoadMap, cfg: TrafficConfig, rng: np.random.Generator) -> tuple[list[int], str]:
    """A random route long enough for the duration at the ego speed or ending at the map edge.

    A movement class is drawn uniformly first (left/through/right at a junction, main road or
    ramp at a merge), then a route of that class.
    """
    need = cfg.ego.start_s[1] + cfg.ego.speed * cfg.duration
    routes = enumerate_routes(road)
    ok = [r for r in routes if route_length(road, r) >= need or ends_at_map_edge(road, r)]
    by_class: dict[str, list[list[int]]] = {}
    for r in ok:
        by_class.setdefault(route_class(road, r), []).append(r)
    if cfg.ego.route != "any":
        if cfg.ego.route not in by_class:
            raise ConfigError(f"ego.route: no {cfg.ego.route!r} route of {need:.0f} m on map {road.name!r}; "
                              f"available: {sorted(by_class) or 'none'}")
        by_class = {cfg.ego.route: by_class[cfg.ego.route]}
    if not by_class:  # nothing long enough: the longest route
        best = max(routes, key=lambda r: route_length(road, r))
        return best, route_class(road, best)
    cls = sorted(by_class)[rng.integers(len(by_class))]
    return by_class[cls][rng.integers(len(by_class[cls]))], cls


# ---------------------------------------------------------------------------- vehicles
def lane_strands(road: RoadMap) -> list[list[int]]:
    """Non-connector lanes grouped in chains where a lane has one successor with one predecessor."""
    preds = predecessors(road)
    lanes = road.lanes

    def next_of(i: int) -> int | None:
        succ = lanes[i].successors
        ok = len(succ) == 1 and lanes[succ[0]].kind != "connector" and len(preds[succ[0]]) == 1
        return succ[0] if ok else None

    usable = [i for i, lane in enumerate(lanes) if lane.kind != "connector"]
    continued = {next_of(i) for i in usable} - {None}
    strands = []
    for i in usable:
        if i not in continued:
            chain = [i]
            while (j := next_of(chain[-1])) is not None and j not in chain:
                chain.append(j)
            strands.append(chain)
    seen = {i for chain in strands for i in chain}
    return strands + [[i] for i in usable if i not in seen]  # lanes on pure cycles: one strand each


def _vehicle_size(cfg: TrafficConfig, rng: np.random.Generator) -> tuple[float, float]:
    if rng.random() < cfg.trucks:
        return float(rng.uniform(*TRUCK_LENGTH)), TRUCK_WIDTH
    return CAR_SIZE[0] * float(rng.uniform(0.9, 1.1)), CAR_SIZE[1] * float(rng.uniform(0.9, 1.1))


def _red_light_cap(road: RoadMap, lane: int, dist_to_end: float) -> float:
    """Highest speed that can still stop before the lane's stop line if it is red at t=0."""
    group = road.signal_group.get(lane)
    if group is None or road.signal_timing is None or road.signal_green(group, 0.0):
        return math.inf
    return math.sqrt(2 * COMFORT_DECEL * max(dist_to_end - 1.0, 0.0))


def _sample_strand(road, strand: _Strand, cfg, rng, fixed: list[tuple]) -> list[list]:
    """Vehicles along a strand: rows [rear_s, length, width, desired, speed]; `fixed` rows
    (the ego) are kept clear of with the same gap rule."""
    lo, hi = cfg.speed_factor
    limit = max(road.lanes[i].speed_limit for i in strand.lanes)
    mean_len = (1 - cfg.trucks) * CAR_SIZE[0] + cfg.trucks * sum(TRUCK_LENGTH) / 2
    spacing = 100.0 / max(cfg.density, 1e-6)
    scale = max(spacing - mean_len - MIN_GAP - TIME_GAP * limit * (lo + hi) / 2, 1.0)
    fixed = sorted(fixed)
    rows, prev_front, prev_speed, fi = [], None, 0.0, 0
    while cfg.density > 0:
        length, width = _vehicle_size(cfg, rng)
        factor, ratio = rng.uniform(lo, hi), rng.uniform(0.9, 1.0)
        if prev_front is None:
            rear = float(rng.uniform(0.0, spacing))
        else:
            rear = prev_front + MIN_GAP + TIME_GAP * prev_speed + float(rng.exponential(scale))
        if rear + length > strand.length:
            break
        k = strand.index(rear + length / 2)
        desired = factor * road.lanes[strand.lanes[k]].speed_limit
        speed = desired * ratio
        if fi < len(fixed) and rear + length + MIN_GAP + TIME_GAP * speed > fixed[fi][0]:
            prev_front, prev_speed = fixed[fi][0] + fixed[fi][1], fixed[fi][4]  # continue past the ego
            fi += 1
            continue
        rows.append([rear, length, width, desired, speed])
        prev_front, prev_speed = rear + length, speed
    return rows


def _cap_speeds(road, strand: _Strand, rows: list[list]) -> None:
    """Lower initial speeds (in place) so that each vehicle can stop for a red stop line and
    for its leader stopping (backward pass from the front of the strand)."""
    rows.sort(key=lambda r: r[0])
    leader = None
    for row in reversed(rows):
        rear, length = row[0], row[1]
        k = strand.index(rear + length / 2)
        row[4] = min(row[4], _red_light_cap(road, strand.lanes[k], strand.offsets[k + 1] - rear - length))
        if leader is not None:
            gap = leader[0] - rear - length
            row[4] = min(row[4], math.sqrt(leader[4] ** 2 + 2 * COMFORT_DECEL * max(gap - MIN_GAP, 0.0)))
        leader = row


def _place_vehicles(road, cfg, rng, ego_strand: int, ego_row: list) -> tuple[_Agent, list[_Agent]]:
    """Sample all strands, cap speeds, and return (ego, vehicles) as agents."""
    strands = [_Strand(road, lanes) for lanes in lane_strands(road)]
    ego, vehicles = None, []
    for si, strand in enumerate(strands):
        fixed = [ego_row] if si == ego_strand else []
        rows = _sample_strand(road, strand, cfg, rng, fixed)
        _cap_speeds(road, strand, rows + fixed)
        for row in rows + fixed:
            xy, yaw, _ = strand.pose(row[0] + row[1] / 2)
            is_ego = row is ego_row
            agent = _Agent(float(xy[0]), float(xy[1]), yaw, max(row[4], 0.0), row[1], row[2], int(AgentType.VEHICLE),
                           int(ControlMode.POLICY if is_ego else ControlMode.REACTIVE), row[3])
            if is_ego:
                ego = agent
            else:
                vehicles.append(agent)
    return ego, vehicles


def _ego_row(road, cfg, rng, route) -> tuple[int, list]:
    """(strand index, row) of the ego on the first route lane."""
    strands = lane_strands(road)
    si = next(k for k, lanes in enumerate(strands) if route[0] in lanes)
    strand = _Strand(road, strands[si])
    k = strands[si].index(route[0])
    lane_len = strand.lines[k].length
    half = cfg.ego.length / 2
    s = min(max(float(rng.uniform(*cfg.ego.start_s)), half), max(lane_len - half, half))
    limit = road.lanes[route[0]].speed_limit
    return si, [strand.offsets[k] + s - half, cfg.ego.length, cfg.ego.width, limit, cfg.ego.speed]


# ---------------------------------------------------------------------------- collisions
def _overlaps_any(agent: _Agent, placed: list[_Agent]) -> bool:
    if not placed:
        return False
    xy = np.array([[a.x, a.y] for a in placed])
    reach = np.array([math.hypot(a.length, a.width) for a in placed]) / 2 + math.hypot(agent.length, agent.width) / 2 + 2.0
    near = [a for a, d, r in zip(placed, np.linalg.norm(xy - [agent.x, agent.y], axis=1), reach) if d < r]
    if not near:
        return False
    t = lambda vals: torch.tensor(vals, dtype=torch.float64)
    mine = tuple(t(v) for v in agent.box(OVERLAP_MARGIN))
    theirs = tuple(t(list(v)) for v in zip(*[a.box(OVERLAP_MARGIN) for a in near]))
    return bool(boxes_overlap(mine, theirs).any())


def _keep_clear(agents: list[_Agent]) -> list[_Agent]:
    """Greedy: keep each agent (in order; the ego first) that overlaps none kept so far."""
    kept: list[_Agent] = []
    for a in agents:
        if not _overlaps_any(a, kept):
            kept.append(a)
    return kept


# ---------------------------------------------------------------------------- roadside
def _roadside_kinds(cfg: TrafficConfig, rng) -> list[str]:
    kinds = ["pedestrian"] * cfg.pedestrians + ["cyclist"] * cfg.cyclists
    kinds += ["parked" if rng.random() < cfg.parked_fraction else "cone" for _ in range(cfg.static_objects)]
    return kinds


def _roadside_agent(road, kind: str, lane: int, on_route: bool, rng) -> _Agent:
    """One roadside agent right of `lane`; only off-route lanes may have their edge intruded."""
    line = _Polyline(road.lanes[lane].centerline)
    xy, yaw = line.pose(float(rng.uniform(0.1, 0.9)) * line.length)
    edge = road.lanes[lane].width / 2
    if kind == "pedestrian":
        (length, width), d, heading = PEDESTRIAN_SIZE, edge + rng.uniform(0.8, 3.0), rng.uniform(-math.pi, math.pi)
    elif kind == "cyclist":
        (length, width), d, heading = CYCLIST_SIZE, edge + 0.3 + rng.uniform(0.3, 1.5), yaw
    else:
        length, width = CONE_SIZE if kind == "cone" else (CAR_SIZE[0] * rng.uniform(0.9, 1.1), CAR_SIZE[1] * rng.uniform(0.9, 1.1))
        d = edge + width / 2 + rng.uniform(0.2, 1.0) - (0.0 if on_route else rng.uniform(0.0, 0.7))
        heading = yaw if kind == "parked" else rng.uniform(-math.pi, math.pi)
    right = np.array([math.sin(yaw), -math.cos(yaw)])
    x, y = xy + right * d
    atype = {"pedestrian": AgentType.PEDESTRIAN, "cyclist": AgentType.CYCLIST, "cone": AgentType.STATIC,
             "parked": AgentType.VEHICLE}[kind]
    return _Agent(float(x), float(y), float(heading), 0.0, float(length), float(width), int(atype), int(ControlMode.STATIC))


def _box_polygon(a: _Agent) -> Polygon:
    return Polygon(box_corners(*(torch.tensor(float(v), dtype=torch.float64) for v in a.box())).numpy())


def _place_roadside(road, cfg, rng, route, placed: list[_Agent], tries: int = 20) -> list[_Agent]:
    """Pedestrians, cyclists and static objects on right shoulders, clear of lanes and agents."""
    hosts = [i for i, lane in enumerate(road.lanes) if lane.kind != "connector" and lane.right < 0]
    others: dict[int, tuple] = {}
    out: list[_Agent] = []
    for kind in _roadside_kinds(cfg, rng) if hosts else []:
        for _ in range(tries):
            lane = hosts[rng.integers(len(hosts))]
            agent = _roadside_agent(road, kind, lane, lane in route, rng)
            if lane not in others:
                host_poly = road.lanes[lane].polygon()
                others[lane] = (prep(road.drivable.difference(host_poly)), host_poly)
            poly = _box_polygon(agent)
            other, host_poly = others[lane]
            if other.intersects(poly) and other.context.intersection(poly).area > 1e-6:
                continue
            if lane in route and host_poly.intersection(poly).area > 1e-6:
                continue
            if not _overlaps_any(agent, placed + out):
                out.append(agent)
                break
    return out


# ---------------------------------------------------------------------------- scenario
def procedural_scenario(road: RoadMap, config: TrafficConfig | None = None, seed: int = 0,
                        name: str = "procedural") -> Scenario:
    """A random traffic scenario on `road` (deterministic in `seed`); agent 0 is the ego."""
    cfg = config if config is not None else TrafficConfig()
    cfg.validate_config("traffic")
    rng = np.random.default_rng(seed)
    route, cls = choose_route(road, cfg, rng)
    ego_strand, ego_row = _ego_row(road, cfg, rng, route)
    ego, vehicles = _place_vehicles(road, cfg, rng, ego_strand, ego_row)
    order = rng.permutation(len(vehicles))
    movers = _keep_clear([ego] + [vehicles[i] for i in order])
    roadside = _place_roadside(road, cfg, rng, route, movers)
    agents = movers + roadside
    col = lambda f, dt=float: np.array([getattr(a, f) for a in agents], dtype=dt)
    kinds = [int(a.agent_type) for a in roadside]
    meta = {
        "generator": "procedural_traffic", "version": GENERATOR_VERSION, "map": road.name, "seed": int(seed),
        "config": config_to_dict(cfg), "route": [int(r) for r in route], "route_class": cls,
        "ego_speed": float(ego.speed), "vehicles": len(movers) - 1,
        "pedestrians": kinds.count(AgentType.PEDESTRIAN), "cyclists": kinds.count(AgentType.CYCLIST),
        "static_objects": len(roadside) - kinds.count(AgentType.PEDESTRIAN) - kinds.count(AgentType.CYCLIST),
    }
    return Scenario(
        name=name, road=road, x=col("x"), y=col("y"), yaw=col("yaw"), speed=col("speed"), length=col("length"),
        width=col("width"), agent_type=col("agent_type", np.int64), mode=col("mode", np.int64),
        desired_speed=col("desired_speed"), route=[int(r) for r in route], duration=cfg.duration, dt=cfg.dt,
        seed=int(seed), meta=meta,
    )
