"""Builders for metric tests: random states and hand-made trajectories on procedural maps."""

from __future__ import annotations

import numpy as np
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.state import SimState
from drivesim.core.types import AgentType
from tests.helpers import make_scenario


def random_state(B=4, A=8, seed=0, spread=20.0, max_speed=10.0) -> SimState:
    """Random boxes around the origin (lanes unknown): for geometry tests."""
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, A, generator=g)
    valid = torch.rand(B, A, generator=g) < 0.85
    valid[:, 0] = True
    zeros = torch.zeros(B, A)
    return SimState(x=u(-spread, spread), y=u(-spread, spread), yaw=u(-np.pi, np.pi), speed=u(0, max_speed), accel=zeros,
                    steer=zeros, length=u(1.0, 8.0), width=u(0.5, 2.5), agent_type=torch.randint(0, 4, (B, A), generator=g),
                    valid=valid, lane=torch.full((B, A), -1), seg=torch.zeros(B, A, dtype=torch.long))


def make_batch(road, agents, duration=5.0, route=(0,), rows=1, device="cpu") -> ScenarioBatch:
    """A batch of `rows` copies of one hand-made scenario (agents: dicts, the first is the ego)."""
    scenarios = [make_scenario(road, agents, route=route, duration=duration, name=f"s{i}") for i in range(rows)]
    return ScenarioBatch.build(scenarios, device=device)


def state_from(batch, poses: np.ndarray, step: int, types=None) -> SimState:
    """SimState with poses [B, A, 4] (x, y, yaw, speed); lanes located like the simulator's reset."""
    p = torch.as_tensor(np.asarray(poses, dtype=np.float32), device=batch.device)
    B, A = p.shape[:2]
    lane, seg, _, _ = batch.bank.locate(batch.map_idx.unsqueeze(1).expand(B, A).reshape(-1), p[..., :2].reshape(-1, 2),
                                        p[..., 2].reshape(-1))
    zeros = torch.zeros(B, A, device=batch.device)
    kind = batch.init["agent_type"] if types is None else torch.as_tensor(types, device=batch.device)
    return SimState(x=p[..., 0], y=p[..., 1], yaw=p[..., 2], speed=p[..., 3], accel=zeros, steer=zeros,
                    length=batch.init["length"], width=batch.init["width"], agent_type=kind, valid=batch.valid.clone(),
                    lane=lane.view(B, A), seg=seg.view(B, A), step=step)


def constant_velocity(x0, y0, yaw, speed, steps, dt=0.1) -> np.ndarray:
    """Track [steps+1, 4] moving straight at constant speed."""
    t = np.arange(steps + 1) * dt
    return np.stack([x0 + speed * np.cos(yaw) * t, y0 + speed * np.sin(yaw) * t, np.full_like(t, yaw),
                     np.full_like(t, speed)], axis=1)


def run_tracks(batch, tracks: np.ndarray, acc, active=None):
    """Feed tracks [T+1, B, A, 4] to a MetricAccumulator step by step; returns finalize()."""
    for t in range(tracks.shape[0]):
        acc.update(state_from(batch, tracks[t], t), active)
    return acc


VEHICLE, PEDESTRIAN, STATIC = int(AgentType.VEHICLE), int(AgentType.PEDESTRIAN), int(AgentType.STATIC)
