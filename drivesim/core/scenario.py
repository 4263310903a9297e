"""Scenarios (one map, its agents, the ego route, optional log and script) and their batched form.

A `Scenario` is plain numpy: what generators and importers produce and what scenario files
store. `ScenarioBatch` pads B scenarios to the same agent count and holds everything the
simulator needs as tensors, with the maps in one MapBank.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from shapely.geometry import LineString, Point

from drivesim.core.types import AgentType, ControlMode
from drivesim.map.bank import MapBank, curve_speed, resample_polyline
from drivesim.map.road import Lane, RoadMap

AGENT_FIELDS = ("x", "y", "yaw", "speed", "length", "width", "agent_type", "mode", "desired_speed")
MAX_EGO_OFF_ROUTE = 10.0  # m: an ego farther than this from its route at t=0 is not on the road it is scored on
MAX_STEPS = 6000  # simulation steps per scenario (10 min at 0.1 s): bounds the [A, T] arrays
MIN_ROUTE_AHEAD = 1.0  # m of route the ego must have ahead of it at t=0 (at or past its end, progress is 0 by construction)


class ScenarioError(ValueError):
    """A scenario is malformed; the message names the scenario and the field."""


@dataclass
class Scenario:
    """One scenario. Agent arrays are [A]; agent 0 is the ego (mode POLICY)."""

    name: str
    road: RoadMap
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    agent_type: np.ndarray  # int AgentType
    mode: np.ndarray  # int ControlMode
    desired_speed: np.ndarray  # IDM v0 of each agent, m/s
    route: list[int]  # ego lane sequence (lane indices of `road`)
    duration: float = 20.0  # s
    dt: float = 0.1  # s
    log: np.ndarray | None = None  # [A, T+1, 4] x, y, yaw, speed for REPLAY agents (and the logged ego)
    log_valid: np.ndarray | None = None  # [A, T+1] bool
    script_accel: np.ndarray | None = None  # [A, T] m/s^2 override, NaN = model decides
    script_lane: np.ndarray | None = None  # [A, T] target lane override (road lane index), -1 = model decides
    script_lat_speed: np.ndarray | None = None  # [A, T] m/s cap on lateral speed while changing lane, NaN = default
    seed: int = 0
    meta: dict = field(default_factory=dict)
    error: str | None = None  # why the scenario could not be built (failed_scenario); validate() raises it

    @property
    def num_steps(self) -> int:
        return int(round(self.duration / self.dt))

    @property
    def num_agents(self) -> int:
        return len(self.x)

    def validate(self) -> None:
        """Check every field (ScenarioError naming the scenario and the field) and mask bad log steps.

        Like Waymax's validity masks: a logged step of a non-ego agent with a non-finite value is
        made invalid at that step (counted in `meta["log_masked_steps"]`), and values at invalid
        steps are set to 0 so that no NaN reaches the simulator. The ego's log must be finite
        wherever it is valid: its log is the progress reference, so a NaN there is an error. An ego
        with a log must also start on its route (hand-made scenarios whose ego has no log may park
        it anywhere, as tests do)."""
        if self.error is not None:
            raise ScenarioError(f"scenario {self.name!r}: {self.error}")
        A = self.num_agents
        where = f"scenario {self.name!r}"
        for f in AGENT_FIELDS:
            v = np.asarray(getattr(self, f))
            if v.shape != (A,):
                raise ScenarioError(f"{where}: field {f!r} must have shape ({A},), got {v.shape}")
            if not np.isfinite(v.astype(float)).all():
                raise ScenarioError(f"{where}: field {f!r} has non-finite values")
        if A < 1 or int(self.mode[0]) not in (ControlMode.POLICY, ControlMode.REPLAY):
            raise ScenarioError(f"{where}: agent 0 must be the ego, with mode POLICY (or REPLAY to replay its log)")
        if (np.asarray(self.mode[1:]) == ControlMode.POLICY).any():
            raise ScenarioError(f"{where}: only agent 0 may have mode POLICY")
        if not set(np.unique(self.agent_type)) <= {int(t) for t in AgentType}:
            raise ScenarioError(f"{where}: unknown agent type in {np.unique(self.agent_type)}")
        if (self.length <= 0).any() or (self.width <= 0).any() or (self.speed < 0).any():
            raise ScenarioError(f"{where}: lengths and widths must be positive and speeds non-negative")
        if not (np.isfinite(self.duration) and np.isfinite(self.dt) and 0 < self.dt <= 1 and 1 <= self.num_steps <= MAX_STEPS):
            raise ScenarioError(f"{where}: need 0 < dt <= 1 s and 1..{MAX_STEPS} steps (duration {self.duration}, dt {self.dt})")
        if not self.route or any(not 0 <= r < len(self.road.lanes) for r in self.route):
            raise ScenarioError(f"{where}: route {self.route} must name lanes 0..{len(self.road.lanes) - 1}")
        for a, b in zip(self.route, self.route[1:]):
            if b not in self.road.lanes[a].successors:
                raise ScenarioError(f"{where}: route lane {b} does not follow lane {a} (successors {self.road.lanes[a].successors})")
        if (np.asarray(self.desired_speed) < 0).any():
            raise ScenarioError(f"{where}: desired speeds must be non-negative")
        self._validate_log(where)
        if self.log is not None and self.log_valid[0].any():  # a logged ego (imports): its route was derived from its log
            self._validate_ego_on_route(where)
        self._validate_scripts(where)

    def _validate_ego_on_route(self, where: str) -> None:
        """The ego starts on its route (within MAX_EGO_OFF_ROUTE) with MIN_ROUTE_AHEAD of it left."""
        line = LineString(route_polyline(self))
        ego = Point(float(self.x[0]), float(self.y[0]))
        off, s = line.distance(ego), line.project(ego)
        if off > MAX_EGO_OFF_ROUTE:
            raise ScenarioError(f"{where}: field 'x'/'y' of the ego ({ego.x:.1f}, {ego.y:.1f}) is {off:.1f} m from its "
                                f"route (lanes {self.route}); allowed: within {MAX_EGO_OFF_ROUTE:g} m")
        if line.length - s < MIN_ROUTE_AHEAD:
            raise ScenarioError(f"{where}: the ego starts {line.length - s:.1f} m before the end of its route "
                                f"(route length {line.length:.1f} m); need at least {MIN_ROUTE_AHEAD:g} m ahead")

    def _validate_log(self, where: str) -> None:
        A, T = self.num_agents, self.num_steps
        needs_log = np.isin(np.asarray(self.mode), [ControlMode.REPLAY, ControlMode.HYBRID]).any()
        if needs_log and (self.log is None or self.log_valid is None):
            raise ScenarioError(f"{where}: REPLAY and HYBRID agents need `log` and `log_valid`")
        if self.log is None:
            return
        if self.log.shape != (A, T + 1, 4):
            raise ScenarioError(f"{where}: log must be [{A}, {T + 1}, 4], got {self.log.shape}")
        if self.log_valid is None or np.asarray(self.log_valid).shape != (A, T + 1):
            shape = None if self.log_valid is None else np.asarray(self.log_valid).shape
            raise ScenarioError(f"{where}: log_valid must be [{A}, {T + 1}] beside the log, got {shape}")
        valid = np.asarray(self.log_valid)
        if not (valid.dtype == bool or (valid.dtype.kind in "iu" and np.isin(valid, (0, 1)).all())):
            raise ScenarioError(f"{where}: field 'log_valid' must be boolean, got {valid.dtype}")
        log, valid = np.asarray(self.log, dtype=float), valid.astype(bool)
        finite = np.isfinite(log).all(axis=-1)  # [A, T+1]
        bad_ego = np.flatnonzero(valid[0] & ~finite[0])
        if bad_ego.size:
            raise ScenarioError(f"{where}: field 'log' of the ego (agent 0) is non-finite at {bad_ego.size} valid step(s) "
                                f"(first: step {bad_ego[0]}); the ego log must be finite wherever log_valid is True")
        masked = int((valid & ~finite).sum())
        if masked or np.asarray(self.log_valid).dtype != bool:  # else keep the caller's arrays as they are
            self.log_valid = valid & finite
        if not finite.all():
            self.log = np.where(np.isfinite(log), log, 0.0)  # only at invalid steps now
            self.meta = {**self.meta, "log_masked_steps": int(self.meta.get("log_masked_steps", 0)) + masked}

    def _validate_scripts(self, where: str) -> None:
        A, T = self.num_agents, self.num_steps
        for name in ("script_accel", "script_lane", "script_lat_speed"):
            v = getattr(self, name)
            if v is None:
                continue
            if v.shape != (A, T):
                raise ScenarioError(f"{where}: {name} must be [{A}, {T}], got {v.shape}")
            v = np.asarray(v, dtype=float)
            if np.isinf(v).any() or (name == "script_lat_speed" and (v < 0).any()):
                raise ScenarioError(f"{where}: field {name!r} has infinite or negative values (NaN means 'not scripted')")
            if name == "script_lane" and ((v < -1) | (v >= len(self.road.lanes)) | np.isnan(v)).any():
                raise ScenarioError(f"{where}: field 'script_lane' must name lanes 0..{len(self.road.lanes) - 1} or be -1")


def check_unique_names(scenarios: list[Scenario]) -> None:
    """ScenarioError naming every duplicated scenario name and the files it came from: the rows
    of one evaluation are told apart by scenario name."""
    files: dict[str, list[str]] = {}
    for s in scenarios:
        files.setdefault(s.name, []).append(str(s.meta.get("scenario_file", "<in memory>")))
    dups = {n: f for n, f in files.items() if len(f) > 1}
    if dups:
        listed = "; ".join(f"{n!r} in {', '.join(f)}" for n, f in sorted(dups.items()))
        raise ScenarioError(f"duplicate scenario names in one evaluation (rows could not be told apart): {listed}")


def failed_scenario(name: str, error: str, meta: dict | None = None) -> Scenario:
    """A scenario that could not be built (e.g. its map): it carries `error`, and `validate()`
    raises it, so an evaluation reports it as an error row while the other scenarios run."""
    return Scenario(name=name, road=placeholder_road(), x=np.zeros(1), y=np.zeros(1), yaw=np.zeros(1), speed=np.zeros(1),
                    length=np.ones(1), width=np.ones(1), agent_type=np.zeros(1, np.int64),
                    mode=np.full(1, int(ControlMode.POLICY)), desired_speed=np.zeros(1), route=[0], error=error,
                    meta=dict(meta or {}))


@functools.lru_cache(maxsize=1)
def placeholder_road() -> RoadMap:
    """One 10 m lane, the road of every failed scenario (never simulated): built once, on first use."""
    return RoadMap("unbuilt", [Lane(np.array([[0.0, 0.0], [10.0, 0.0]]))])


@dataclass
class ScenarioBatch:
    """B scenarios as padded tensors (agents to A, time to T, route to RP points)."""

    scenarios: list[Scenario]
    bank: MapBank
    map_idx: torch.Tensor  # [B]
    init: dict[str, torch.Tensor]  # AGENT_FIELDS -> [B, A]
    valid: torch.Tensor  # [B, A] bool (padding False)
    route_lanes: torch.Tensor  # [B, R] global lane ids, -1 pad
    route_pts: torch.Tensor  # [B, RP, 2]
    route_s: torch.Tensor  # [B, RP]
    route_npts: torch.Tensor  # [B]
    route_vmax: torch.Tensor  # [B, RP] comfortable speed in the route's curves (30 m ahead)
    num_steps: torch.Tensor  # [B]
    dt: float
    log: torch.Tensor  # [B, A, T+1, 4]
    log_valid: torch.Tensor  # [B, A, T+1]
    script_accel: torch.Tensor  # [B, A, T] NaN = free
    script_lane: torch.Tensor  # [B, A, T] global lane ids, -1 = free
    script_lat_speed: torch.Tensor  # [B, A, T] NaN = default

    @property
    def batch_size(self) -> int:
        return len(self.scenarios)

    @property
    def device(self) -> torch.device:
        return self.map_idx.device

    @property
    def max_steps(self) -> int:
        return int(self.num_steps.max())

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scenarios]

    @staticmethod
    def build(scenarios: list[Scenario], device="cpu", bank: MapBank | None = None) -> "ScenarioBatch":
        """Stack scenarios; maps shared by several scenarios (the same object) are stored once."""
        if not scenarios:
            raise ScenarioError("empty scenario list")
        for s in scenarios:
            s.validate()
        dts = {s.dt for s in scenarios}
        if len(dts) != 1:
            raise ScenarioError(f"scenarios in one batch must share dt, got {sorted(dts)}")
        roads = bank.maps if bank is not None else []
        map_idx = []
        for s in scenarios:
            hit = next((i for i, r in enumerate(roads) if r is s.road), None)
            if hit is None:
                if bank is not None:
                    raise ScenarioError(f"scenario {s.name!r}: its map is not in the given MapBank")
                roads.append(s.road)
                hit = len(roads) - 1
            map_idx.append(hit)
        if bank is None:
            bank = MapBank.build(roads, device=device)
        B, A = len(scenarios), max(s.num_agents for s in scenarios)
        T = max(s.num_steps for s in scenarios)
        starts = bank.map_lane_start.cpu().numpy()[map_idx]
        init = {f: np.zeros((B, A)) for f in AGENT_FIELDS}
        init["length"][:] = 1.0
        init["width"][:] = 1.0
        init["mode"][:] = ControlMode.STATIC
        valid = np.zeros((B, A), bool)
        log = np.zeros((B, A, T + 1, 4))
        log_valid = np.zeros((B, A, T + 1), bool)
        s_acc = np.full((B, A, T), np.nan)
        s_lane = -np.ones((B, A, T), np.int64)
        s_lat = np.full((B, A, T), np.nan)
        route_lanes = -np.ones((B, max(len(s.route) for s in scenarios)), np.int64)
        route_pts = []
        for b, s in enumerate(scenarios):
            n, t = s.num_agents, s.num_steps
            for f in AGENT_FIELDS:
                init[f][b, :n] = getattr(s, f)
            valid[b, :n] = True
            if s.log is not None:
                log[b, :n, : t + 1] = s.log
                log_valid[b, :n, : t + 1] = s.log_valid
            if s.script_accel is not None:
                s_acc[b, :n, :t] = s.script_accel
            if s.script_lane is not None:
                s_lane[b, :n, :t] = np.where(s.script_lane >= 0, s.script_lane + starts[b], -1)
            if s.script_lat_speed is not None:
                s_lat[b, :n, :t] = s.script_lat_speed
            route_lanes[b, : len(s.route)] = np.asarray(s.route) + starts[b]
            route_pts.append(route_polyline(s))
        RP = max(len(p) for p in route_pts)
        rp = np.zeros((B, RP, 2))
        rs = np.zeros((B, RP))
        rv = np.zeros((B, RP))
        for b, p in enumerate(route_pts):
            rp[b, : len(p)], rp[b, len(p):] = p, p[-1]
            v = curve_speed(p)
            rv[b, : len(p)], rv[b, len(p):] = v, v[-1]
            cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
            rs[b, : len(p)], rs[b, len(p):] = cum, cum[-1]
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
        i64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64, device=device)
        tinit = {f: (i64(v) if f in ("agent_type", "mode") else f32(v)) for f, v in init.items()}
        return ScenarioBatch(
            scenarios=list(scenarios), bank=bank, map_idx=i64(map_idx), init=tinit,
            valid=torch.as_tensor(valid, device=device), route_lanes=i64(route_lanes),
            route_pts=f32(rp), route_s=f32(rs), route_npts=i64([len(p) for p in route_pts]), route_vmax=f32(rv),
            num_steps=i64([s.num_steps for s in scenarios]), dt=float(scenarios[0].dt),
            log=f32(log), log_valid=torch.as_tensor(log_valid, device=device),
            script_accel=f32(s_acc), script_lane=i64(s_lane), script_lat_speed=f32(s_lat),
        )


def route_polyline(s: Scenario) -> np.ndarray:
    """Centerlines of the route lanes joined end to end (duplicate joints removed)."""
    parts = [np.asarray(s.road.lanes[r].centerline, float) for r in s.route]
    pts = np.concatenate([parts[0]] + [p[1:] if np.allclose(p[0], q[-1], atol=0.5) else p for q, p in zip(parts, parts[1:])])
    return resample_polyline(pts, 2.0)
