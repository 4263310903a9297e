"""Scripts that start relative to the simulated ego, not at a fixed step.

A rare event rewritten into a real scene (events/real.py) plans its script against an
ego; in closed loop the ego is wherever the policy drove it, so a script run at the planned step
meets nobody (the cutter crosses 40 m ahead of a slower ego). A scenario whose
`meta['script_trigger']` is set instead runs the script of one agent when the situation it was
planned for arises with the simulated ego:

    {"agent": 1,          # the scripted agent, a logged REACTIVE one: it replays its log until
     "start": t0,         # this step (its script arrays start here), then follows its lane at
                          # its desired speed until the trigger fires; the script runs from then
     "span": k,           # steps from the script's start to the crossing of the ego's lane
     "accel": a,          # m/s^2 the agent's speed changes at over those k steps (prediction)
     "ttc": 1.6,          # s: fire when the predicted TTC at the crossing falls to this ...
     "min_gap": 1.0,      # m: ... with at least this predicted gap, the ego in its lane
     "lane_width": 3.5,   # m (|offset| of the ego from its route under half of it)
     "window": [t1, hi]}  # steps where it may fire (hi leaves the script time to play out)

The prediction at each step (from the same snapshot every agent decides on): the ego keeps its
speed for k steps, the agent changes speed at `accel`; gap = agent's rear minus the ego's front
along the ego's route, TTC = gap / closing speed. At the first step of the window where the
TTC is at most the target (gap >= min_gap, closing >= MIN_CLOSING) the script starts, shifted
in time (`script_view`), into the route lane beside the agent where it will cross. An ego that never closes in (it brakes, it is slower) meets no cut-in:
the event did not happen for it. One triggered agent per scenario; a row whose clock restarts
(gym autoreset) re-arms its trigger.

The trigger's progress (fired, shift, lane) lives on the state (`SimState.trigger_*`): `fire`
returns the new fields and changes nothing, so stepping is a function of (state, action).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from drivesim.core.scenario import ScenarioBatch, ScenarioError
from drivesim.core.state import SimState
from drivesim.sim.observation import route_position
from drivesim.map.bank import lookup

MIN_CLOSING = 0.3  # m/s: a closing speed below this is no cut-in


KEYS = {"agent": int, "start": int, "span": int, "accel": float, "ttc": float, "min_gap": float, "lane_width": float}


def _spec(scenario, num_agents: int) -> dict | None:
    """The checked trigger of a scenario (None without one); a malformed one is a ScenarioError
    naming the scenario and the field."""
    p = scenario.meta.get("script_trigger") if isinstance(scenario.meta, dict) else None
    if p is None:
        return None
    where = f"scenario {scenario.name!r}: meta.script_trigger"
    if not isinstance(p, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(p).__name__}")
    out = {}
    for key, kind in KEYS.items():
        value = p.get(key, 3.5 if key == "lane_width" else None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ScenarioError(f"{where}.{key}: expected a finite number, got {value!r}")
        out[key] = kind(value)
    if not 0 < out["agent"] < num_agents or out["span"] < 1 or out["ttc"] < 0:
        raise ScenarioError(f"{where}: agent must be 1..{num_agents - 1}, span >= 1 step, ttc >= 0; got {p}")
    window = p.get("window", [out["start"], 10**9])
    if not (isinstance(window, (list, tuple)) and len(window) == 2 and all(isinstance(w, int) for w in window)):
        raise ScenarioError(f"{where}.window: expected [first step, last step], got {window!r}")
    release = p.get("release", out["start"])
    if not isinstance(release, int):
        raise ScenarioError(f"{where}.release: expected a step, got {release!r}")
    return {**out, "window": list(window), "release": release}


class ScriptTriggers:
    """The triggers of a batch: [B] tensors, agent -1 where a row has none."""

    def __init__(self, batch: ScenarioBatch):
        specs = [_spec(s, s.num_agents) for s in batch.scenarios]
        self.any = any(p is not None for p in specs)
        self.batch = batch
        if not self.any:
            return
        dev = batch.device
        none = {"agent": -1, "start": 0, "release": -1, "span": 1, "accel": 0.0, "ttc": 0.0, "min_gap": 0.0,
                "lane_width": 3.5, "window": [0, -1]}
        specs = [p or none for p in specs]
        col = lambda key, dtype: torch.tensor([p[key] for p in specs], dtype=dtype, device=dev)
        self.agent, self.start, self.release = col("agent", torch.long), col("start", torch.long), col("release", torch.long)
        self.span = col("span", torch.float32) * batch.dt
        self.accel, self.ttc, self.min_gap = col("accel", torch.float32), col("ttc", torch.float32), col("min_gap", torch.float32)
        self.lo = torch.tensor([p["window"][0] for p in specs], dtype=torch.long, device=dev)
        self.hi = torch.tensor([p["window"][1] for p in specs], dtype=torch.long, device=dev)
        self.mask = torch.zeros_like(batch.valid)  # [B, A] the triggered agents
        rows = (self.agent >= 0).nonzero().flatten()
        self.mask[rows, self.agent[rows]] = True
        self.half_lane = col("lane_width", torch.float32) / 2
        lanes = batch.route_lanes
        length = torch.where(lanes >= 0, lookup(batch.bank.lane_len, lanes.clamp(min=0)), torch.zeros_like(lanes, dtype=torch.float32))
        self.route_end = length.cumsum(dim=1)  # [B, R] arc length where each route lane ends
        self.route_count = (lanes >= 0).sum(dim=1)  # [B]

    def initial(self) -> dict[str, torch.Tensor]:
        """The trigger fields of a state at its start (SimState.trigger_*): none fired, no shift, no lane."""
        B, dev = self.batch.batch_size, self.batch.device
        return {"trigger_fired": torch.zeros(B, dtype=torch.bool, device=dev),
                "trigger_shift": torch.zeros(B, dtype=torch.long, device=dev),
                "trigger_lane": torch.full((B,), -1, dtype=torch.long, device=dev)}

    def fire(self, state: SimState) -> dict[str, torch.Tensor]:
        """The trigger fields (SimState.trigger_*) after starting the scripts whose situation has
        arisen on `state` (their time shift and lane); `state` itself is not changed."""
        out = {k: getattr(state, k) for k in ("trigger_fired", "trigger_shift", "trigger_lane")}
        if any(v is None for v in out.values()):  # a state built outside the simulator: none fired yet
            out = self.initial()
        if not self.any:
            return out
        B = state.batch_size
        b = torch.arange(B, device=state.device)
        a = self.agent.clamp(min=0)
        t = state.row_step
        fired = out["trigger_fired"] & (t > 0)  # a restarted row re-arms
        xy = torch.stack([state.xy[:, 0], state.xy[b, a]], dim=1)  # [B, 2, 2] ego, agent
        s, d = route_position(self.batch, xy)
        v_e, v_c = state.speed[:, 0], state.speed[b, a]
        span = self.span
        v_end = (v_c + self.accel * span).clamp(min=0.0)
        travel = 0.5 * (v_c + v_end) * span
        gap = (s[:, 1] + travel - 0.5 * state.length[b, a]) - (s[:, 0] + v_e * span + 0.5 * state.length[:, 0])
        closing = v_e - v_end
        ttc = gap / closing.clamp(min=1e-3)
        in_lane = d[:, 0].abs() < self.half_lane  # an ego that left its lane meets no cut-in into it
        armed = (self.agent >= 0) & ~fired & state.valid[b, a] & state.valid[:, 0] & (t >= self.lo) & (t <= self.hi)
        go = armed & in_lane & (closing >= MIN_CLOSING) & (gap >= self.min_gap) & (ttc <= self.ttc)
        out["trigger_fired"] = fired
        if not bool(go.any()):
            return out
        shift = torch.where(go, t + 1 - self.start, out["trigger_shift"])  # the script's first entry runs at t + 1
        k = torch.searchsorted(self.route_end, (s[:, 1] + travel).unsqueeze(1)).squeeze(1)  # the route lane at the crossing
        k = torch.minimum(k, (self.route_count - 1).clamp(min=0))
        lane = torch.where(go, self.batch.route_lanes.gather(1, k.unsqueeze(1)).squeeze(1), out["trigger_lane"])
        return {"trigger_fired": fired | go, "trigger_shift": shift, "trigger_lane": lane}

    def fired_at(self, state: SimState) -> torch.Tensor:
        """[B] the step each row's trigger fired at on `state` (its script ran from the next), -1 if it did not."""
        if not self.any or state.trigger_fired is None:
            return torch.full((self.batch.batch_size,), -1, dtype=torch.long, device=self.batch.device)
        return torch.where(state.trigger_fired, state.trigger_shift + self.start - 1, -1)

    def script_view(self, state: SimState, fields: dict[str, torch.Tensor]) -> ScenarioBatch:
        """The batch with its scripts read at each agent's own script clock, as tables [B, A, 1]
        (`reactive_control` reads the last entry past their end): the row's step for every
        agent, minus the shift for a triggered agent (no script until it fires). `fields`: the
        trigger fields `fire(state)` returned. Without triggers: the batch itself."""
        batch = self.batch
        if not self.any:
            return batch
        t = state.row_step.unsqueeze(1).expand_as(self.mask)  # [B, A]
        fired = self.mask & (fields["trigger_fired"] & (state.row_step > 0)).unsqueeze(1)
        clock = torch.where(fired, t - fields["trigger_shift"].unsqueeze(1), t)
        free = self.mask & ~fired
        T = batch.script_accel.shape[2]
        idx = clock.clamp(0, T - 1).unsqueeze(-1)  # [B, A, 1]
        nan = torch.full_like(batch.script_accel[..., :1], float("nan"))
        pick = lambda table, empty: torch.where(free.unsqueeze(-1), empty, table.gather(2, idx))
        lane = pick(batch.script_lane, torch.full_like(idx, -1))
        lane = torch.where(fired.unsqueeze(-1) & (lane >= 0), fields["trigger_lane"].view(-1, 1, 1).expand_as(lane), lane)
        return dataclasses.replace(batch, script_accel=pick(batch.script_accel, nan), script_lane=lane,
                                   script_lat_speed=pick(batch.script_lat_speed, nan))
