"""One batched driving environment over a ScenarioBatch and its Simulator, in torch.

`DriveEnv` is the environment layer that the gymnasium adapter (sim/gym_env.py), the PPO
trainer's rows (train/ppo.py) and the Ray rollout actors (distributed/ray_backend.py) share:

- `reset()` puts every row at its scenario's start; `restart(rows)` only the rows [B] bool, each
  on its own clock (`SimState.clock` back to 0: signal phases, scripted events and logs restart
  with it) while the other rows go on.
- `step(action)` advances every live row one simulation step with the ego action [B, 2] (accel
  m/s^2, steer rad; `Simulator.step` checks it and raises `ActionError`, never clips).
  `step_trajectory(traj, k)` tracks a `sim.trajectory.Trajectory` (ego frame at the current
  state) with the simulator's controller (`TrajectoryTracker`) for k simulation steps.
- Episode end, per row: `terminated` when the reward object says so (e.g. a collision),
  `truncated` at the scenario's duration (`row_step >= batch.num_steps`). A row that ends in a
  sub-step stops there: its later sub-steps are not applied (it stays where it ended) and earn
  nothing. A finished row stays stopped (`done`) until `restart` or `reset`.
- The reward is pluggable: an object called with the state after each simulation step that
  returns per-row `reward` [B] float and `terminated` [B] bool, plus the bool [B] fields it
  names in its `events` attribute (OR-ed over the sub-steps of one call); `restart(state, rows)`
  starts its per-row memory over (rows None: all) and `state_dict` / `load_state_dict` save it.
  `RouteProgressReward` (here, the gym reward) and `train.reward.DriveReward` are two.
- `state_dict` / `load_state_dict`: the rows mid-episode (state, done, running returns and the
  reward's memory) as plain tensors, for checkpoints.

The step is the simulator's: this class keeps no simulator internals and reaches into none.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.state import SimState
from drivesim.metrics.collisions import ego_overlaps
from drivesim.metrics.drivable import max_corner_distance
from drivesim.sim.observation import route_position
from drivesim.sim.simulator import ActionError, SimConfig, Simulator
from drivesim.sim.trajectory import TrackerConfig, Trajectory, TrajectoryTracker, check_trajectory

OFFROAD_TOLERANCE = 0.3  # m, as the DAC metric


def merge_rows(state: SimState, initial: SimState, rows: torch.Tensor) -> SimState:
    """State with the given rows [B] taken from `initial` (e.g. the scenarios' start); every
    field but the batch's step counter."""
    pick = lambda new, old: torch.where(rows.view(-1, *([1] * (new.dim() - 1))), old, new)
    names = [f.name for f in dataclasses.fields(state) if f.name != "step"]
    return state.replace(**{n: pick(getattr(state, n), getattr(initial, n)) for n in names})


def raise_for_rows(batch: ScenarioBatch, state: SimState, reasons: list[str]) -> None:
    """ActionError naming the first row with a reason (scenario and step), if any."""
    bad = [(b, why) for b, why in enumerate(reasons) if why]
    if bad:
        b, why = bad[0]
        more = f" (and {len(bad) - 1} more scenario(s))" if len(bad) > 1 else ""
        raise ActionError(f"scenario {batch.names[b]!r}, step {state.row_step[b].item()}: {why}{more}")


@dataclass
class ProgressStep:
    """One step of `RouteProgressReward`, all [B]."""

    reward: torch.Tensor  # float, 0 where terminated
    terminated: torch.Tensor  # bool: collision | offroad
    collision: torch.Tensor  # bool: the ego overlaps another agent
    offroad: torch.Tensor  # bool: an ego corner beyond the tolerance off the drivable area


class RouteProgressReward:
    """The gym reward: route progress of the step in units of (lane speed limit x dt), so ~1 per
    step at the limit; terminates with reward 0 on an ego collision or an ego corner more than
    `offroad_tolerance` m off the drivable area."""

    events = ("collision", "offroad")

    def __init__(self, batch: ScenarioBatch, offroad_tolerance: float = OFFROAD_TOLERANCE):
        self.batch, self.offroad_tolerance = batch, offroad_tolerance
        self.s_prev = torch.zeros(batch.batch_size, device=batch.device)  # [B] route position of the last state

    def restart(self, state: SimState, rows: torch.Tensor | None = None) -> None:
        s, _ = route_position(self.batch, state.xy[:, 0])
        self.s_prev = s if rows is None else torch.where(rows, s, self.s_prev)

    def __call__(self, state: SimState) -> ProgressStep:
        batch = self.batch
        s, _ = route_position(batch, state.xy[:, 0])
        crash = ego_overlaps(state).any(dim=1)
        offroad = max_corner_distance(batch.bank, batch.map_idx, state.corners()[:, 0]) > self.offroad_tolerance
        term = crash | offroad
        limit = batch.bank.lane_speed[state.lane[:, 0].clamp(min=0)] * batch.dt
        reward = torch.where(term, torch.zeros_like(s), (s - self.s_prev) / limit)
        self.s_prev = s
        return ProgressStep(reward, term, crash, offroad)

    def state_dict(self) -> dict:
        return {"s_prev": self.s_prev}

    def load_state_dict(self, d: dict) -> None:
        self.s_prev = d["s_prev"].clone()


@dataclass
class EnvStep:
    """What one `step` / `step_trajectory` call gives, all [B] (over its sub-steps)."""

    reward: torch.Tensor  # float: summed over the row's live sub-steps
    terminated: torch.Tensor  # bool: the reward object ended the episode
    truncated: torch.Tensor  # bool: the scenario's duration was reached (and not terminated)
    events: dict[str, torch.Tensor]  # the reward's event flags [B] bool, OR-ed over the live sub-steps
    steps: torch.Tensor  # int64: simulation steps the row took (0 for a row that was already done)


class DriveEnv:
    """B rows of a ScenarioBatch in one Simulator (module docstring). `state` is the current
    SimState, `initial` the scenarios' start, `done` [B] the rows that ended and wait for a
    restart, `episode_return` [B] the summed reward since each row's start."""

    def __init__(self, batch: ScenarioBatch, reward=None, sim_config: SimConfig | None = None,
                 tracker: TrackerConfig | None = None, behavior=None):
        self.batch = batch
        self.sim = Simulator(batch, sim_config, behavior)
        self.reward = reward if reward is not None else RouteProgressReward(batch)
        self.tracker = TrajectoryTracker(tracker)
        self.initial = self.sim.reset()
        self.reset()

    @property
    def num_rows(self) -> int:
        return self.batch.batch_size

    def reset(self) -> SimState:
        """Every row at its scenario's start."""
        self.state = self.initial
        self.done = torch.zeros(self.num_rows, dtype=torch.bool, device=self.batch.device)
        self.episode_return = torch.zeros(self.num_rows, device=self.batch.device)
        self.reward.restart(self.state)
        return self.state

    def restart(self, rows: torch.Tensor) -> None:
        """The rows [B] bool back at their initial state, on their own clock; the others go on."""
        self.state = merge_rows(self.state, self.initial, rows)
        self.done = self.done & ~rows
        self.episode_return = torch.where(rows, torch.zeros_like(self.episode_return), self.episode_return)
        self.reward.restart(self.state, rows)

    def step(self, action: torch.Tensor) -> EnvStep:
        """One simulation step of the live rows with the ego action [B, 2] (a done row's is ignored,
        but checked)."""
        return self._advance(lambda state: action, 1)

    def step_trajectory(self, traj: Trajectory, k: int) -> EnvStep:
        """Track `traj` (ego frame at the current state, covering at least k steps) for k
        simulation steps; ActionError naming the scenario and step for a row's malformed,
        non-finite or too short trajectory."""
        raise_for_rows(self.batch, self.state, check_trajectory(traj, self.num_rows, k * self.batch.dt))
        self.tracker.plan(traj, self.state)
        return self._advance(lambda state: self.tracker.act(state, self.batch.dt), k)

    def _advance(self, act, k: int) -> EnvStep:
        """k simulation steps, action `act(state)`; rows stop where they end."""
        B, dev = self.num_rows, self.batch.device
        zeros = torch.zeros(B, dtype=torch.bool, device=dev)
        reward = torch.zeros(B, device=dev)
        terminated, truncated = zeros.clone(), zeros.clone()
        events = {name: zeros.clone() for name in self.reward.events}
        steps = torch.zeros(B, dtype=torch.long, device=dev)
        for _ in range(k):
            live = ~self.done
            nxt = self.sim.step(self.state, act(self.state))
            if not bool(live.all()):
                nxt = merge_rows(nxt, self.state, self.done)  # finished rows stay where they ended
            r = self.reward(nxt)
            term = r.terminated & live
            trunc = (nxt.row_step >= self.batch.num_steps) & ~term & live
            reward = reward + torch.where(live, r.reward, torch.zeros_like(r.reward))
            for name in events:
                events[name] = events[name] | (getattr(r, name) & live)
            terminated, truncated = terminated | term, truncated | trunc
            steps = steps + live.long()
            self.state = nxt
            self.done = self.done | term | trunc
            if bool(self.done.all()):
                break
        self.episode_return = self.episode_return + reward
        return EnvStep(reward, terminated, truncated, events, steps)

    def state_dict(self) -> dict:
        return {"state": dict(vars(self.state)), "done": self.done, "episode_return": self.episode_return,
                "reward": self.reward.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.state = self.initial.replace(**d["state"])
        self.done = d["done"].clone()
        self.episode_return = d["episode_return"].clone()
        self.reward.load_state_dict(d["reward"])


__all__ = ["DriveEnv", "EnvStep", "RouteProgressReward", "ProgressStep", "merge_rows", "raise_for_rows", "OFFROAD_TOLERANCE"]
