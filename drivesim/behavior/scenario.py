"""Scenarios (one map, its agents, the ego route, optional log and script) and their batched form.

A `Scenario` is plain numpy: what generators and importers produce and what scenario files
store. `ScenarioBatch` pads B scenarios to the same agent count and holds everything the
simulator needs as tensors, with the maps in one MapBank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from drivesim.core.types import AgentType, ControlMode
from drivesim.map.bank import MapBank, curve_speed, resample_polyline
from drivesim.map.road import RoadMap

AGENT_FIELDS = ("x", "y", "yaw", "speed", "length", "width", "agent_type", "mode", "desired_speed")


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

    @property
    def num_steps(self) -> int:
        return int(round(self.duration / self.dt))

    @property
    def num_agents(self) -> int:
        return len(self.x)

    def validate(self) -> None:
        A, T = self.num_agents, self.num_steps
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
        if not 0 < self.dt <= 1 or T < 1:
            raise ScenarioError(f"{where}: need 0 < dt <= 1 s and at least one step (duration {self.duration}, dt {self.dt})")
        if not self.route or any(not 0 <= r < len(self.road.lanes) for r in self.route):
            raise ScenarioError(f"{where}: route {self.route} must name lanes 0..{len(self.road.lanes) - 1}")
        for a, b in zip(self.route, self.route[1:]):
            if b not in self.road.lanes[a].successors:
                raise ScenarioError(f"{where}: route lane {b} does not follow lane {a} (successors {self.road.lanes[a].successors})")
        if (np.asarray(self.desired_speed) < 0).any():
            raise ScenarioError(f"{where}: desired speeds must be non-negative")
        needs_log = np.isin(np.asarray(self.mode), [ControlMode.REPLAY, ControlMode.HYBRID]).any()
        if needs_log and (self.log is None or self.log_valid is None):
            raise ScenarioError(f"{where}: REPLAY and HYBRID agents need `log` and `log_valid`")
        if self.log is not None and self.log.shape[:2] != (A, T + 1):
            raise ScenarioError(f"{where}: log must be [{A}, {T + 1}, 4], got {self.log.shape}")
        for name in ("script_accel", "script_lane", "script_lat_speed"):
            v = getattr(self, name)
            if v is not None and v.shape != (A, T):
                raise ScenarioError(f"{where}: {name} must be [{A}, {T}], got {v.shape}")


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
