"""The batched, immutable simulator state (waymax-style: a frozen dataclass of tensors)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from drivesim.core.geometry import box_corners


# fields the simulator keeps for its own next step (not stacked into trajectories)
SIM_ONLY = ("step", "lane_change_step", "clock", "released", "lane_s", "lane_d", "lane_seg", "lane_yaw", "held_back",
            "trigger_fired", "trigger_shift", "trigger_lane")
PROJECTION_FIELDS = ("lane_s", "lane_d", "lane_seg", "lane_yaw")  # the lane projection (s, d, seg, yaw) ...
PROJECTION = frozenset(PROJECTION_FIELDS)
PROJECTION_INPUTS = frozenset({"x", "y", "lane", "seg"})  # ... and what it is computed from


@dataclass(frozen=True)
class SimState:
    """State of B scenarios with A agent slots each; the ego is agent 0.

    Padding slots have valid=False. Updates return a new state (`replace`).
    """

    x: torch.Tensor  # [B, A] m, world frame
    y: torch.Tensor  # [B, A] m
    yaw: torch.Tensor  # [B, A] rad
    speed: torch.Tensor  # [B, A] m/s, >= 0
    accel: torch.Tensor  # [B, A] m/s^2, last applied
    steer: torch.Tensor  # [B, A] rad, last applied
    length: torch.Tensor  # [B, A] m
    width: torch.Tensor  # [B, A] m
    agent_type: torch.Tensor  # [B, A] int64 AgentType
    valid: torch.Tensor  # [B, A] bool
    lane: torch.Tensor  # [B, A] int64 global lane id in the MapBank (-1: none)
    seg: torch.Tensor  # [B, A] int64 segment index on that lane (projection cache)
    step: int = 0  # simulation steps taken by this batch
    lane_change_step: torch.Tensor | None = None  # [B, A] int64 scenario step of each agent's last lane change
    clock: torch.Tensor | None = None  # [B] int64 scenario step of each row (rows restart on their own in RL)
    released: torch.Tensor | None = None  # [B, A] bool: a logged REACTIVE/HYBRID agent has left its log
    # the agents' projection on their lanes, made by the simulator's reset/step for the next step
    # (None on a state built elsewhere: the step then projects afresh; sim/simulator.project_lanes)
    lane_s: torch.Tensor | None = None  # [B, A] m arc length on the lane
    lane_d: torch.Tensor | None = None  # [B, A] m lateral offset, left positive
    lane_seg: torch.Tensor | None = None  # [B, A] int64 segment of the projection
    lane_yaw: torch.Tensor | None = None  # [B, A] rad heading of that segment (stale where the lane just changed)
    held_back: torch.Tensor | None = None  # [B, A] bool: a logged agent whose appearance was held back so far
    # script triggers (sim/triggers.py), per row [B]: fired, steps the script runs late, the route lane it cuts into
    trigger_fired: torch.Tensor | None = None  # [B] bool
    trigger_shift: torch.Tensor | None = None  # [B] int64
    trigger_lane: torch.Tensor | None = None  # [B] int64 (-1: none)

    @property
    def row_step(self) -> torch.Tensor:
        """[B] int64: the scenario step of each row (scripts, logs and signals run on it)."""
        if self.clock is not None:
            return self.clock
        return torch.full((self.batch_size,), self.step, dtype=torch.long, device=self.device)

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def num_agents(self) -> int:
        return self.x.shape[1]

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def xy(self) -> torch.Tensor:  # [B, A, 2]
        return torch.stack([self.x, self.y], dim=-1)

    def boxes(self) -> tuple:
        return (self.x, self.y, self.yaw, self.length, self.width)

    def corners(self) -> torch.Tensor:  # [B, A, 4, 2]
        return box_corners(*self.boxes())

    def replace(self, **changes) -> "SimState":
        """A new state with `changes`. Changing positions, lanes or segments without giving the
        lane projection drops it (the next step projects afresh): a moved agent never keeps
        the projection of where it was."""
        if not PROJECTION_INPUTS.isdisjoint(changes) and PROJECTION.isdisjoint(changes):
            changes = {**changes, **dict.fromkeys(PROJECTION)}
        return dataclasses.replace(self, **changes)

    def select_agents(self, idx: torch.Tensor) -> "SimState":
        """The agents idx [B, K] of each row (a smaller state, e.g. the ego and its K-1 nearest)."""
        take = lambda t: None if t is None else t.gather(1, idx)
        per_agent = {f.name: take(getattr(self, f.name)) for f in dataclasses.fields(self)
                     if isinstance(getattr(self, f.name), torch.Tensor) and getattr(self, f.name).dim() == 2}
        return self.replace(**per_agent)

    @staticmethod
    def stack_time(states: list["SimState"]) -> dict[str, torch.Tensor]:
        """Stack a list of states into tensors [T, B, A] per field (for plotting and metrics)."""
        names = [f.name for f in dataclasses.fields(SimState) if f.name not in SIM_ONLY]
        return {n: torch.stack([getattr(s, n) for s in states]) for n in names}
