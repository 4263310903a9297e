"""Rare, safety-critical events: generators, avoidability labels, failure mining, set summaries.

Files:
- `__init__.py` (this file): the event registry `EVENTS` (type -> knob config, sampler, builder),
  `build_event`, `sample_params`, `scenario_name`, `event_type`.
- `cut_in.py`, `longitudinal.py`, `inserted.py`: the generators. Cut-in and merge conflict;
  hard-braking leader, stalled vehicle, pedestrian stepping out; an agent inserted into a real
  scene where there is room (`no_place` says why not).
- `real_cut_in.py`: cut-ins in real scenes (a logged neighbour rewritten into a cut-in); `real_set_counts`.
- `logged.py`: logged scenario files with a background traffic mode applied (`--scenarios` / `--traffic`).
- `common.py`: knob ranges, closing distance, required deceleration.
- `generate.py`: generate a labelled set (sample, calibrate by simulation, label avoidable or not).
- `mining.py`: failure mining (run a policy, keep its failures, vary them).
- `summary.py`: a one-page PNG of a set (knob histograms, criticality, BEV thumbnails).

Each event type has a typed config of knobs, a sampler (knobs -> a params dict, one `numpy`
generator per scenario seeded by (seed, index)) and a builder (params -> `Scenario`, the event
driven through the core's scripted-agent hook or, for the pedestrian, a scripted trajectory
replayed as a log). Labelling and calibration run the simulator (`generate.py`), so this folder
sits above `sim/` in the import order (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from drivesim.events.common import BoundConfig
from drivesim.events.cut_in import CutInConfig, MergeConfig, build_cut_in, sample_cut_in
from drivesim.events.longitudinal import (HardBrakeConfig, PedestrianConfig, StalledConfig, build_hard_brake,
                                                   build_pedestrian, build_stalled, sample_hard_brake, sample_pedestrian,
                                                   sample_stalled)
from drivesim.core.scenario import Scenario
from drivesim.core.config import config_to_dict

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class EventType:
    name: str
    config: type
    sample: Callable  # (config, rng) -> params dict
    build: Callable  # (params, config, name, seed, minimal=False) -> Scenario
    criticality: str  # what `band` and the target knob measure: "ttc" or "headway" (s)
    description: str


EVENTS = {e.name: e for e in (
    EventType("cut-in", CutInConfig, sample_cut_in, build_cut_in, "ttc",
              "a vehicle from a neighbouring lane cuts in ahead of the ego"),
    EventType("hard-brake", HardBrakeConfig, sample_hard_brake, build_hard_brake, "headway",
              "the ego's leader brakes hard"),
    EventType("stalled", StalledConfig, sample_stalled, build_stalled, "ttc",
              "a stalled vehicle in the ego's lane, possibly revealed by a leader swerving around it"),
    EventType("merge", MergeConfig, sample_cut_in, build_cut_in, "ttc",
              "a vehicle merges from the on-ramp's acceleration lane ahead of the ego"),
    EventType("pedestrian", PedestrianConfig, sample_pedestrian, build_pedestrian, "ttc",
              "a pedestrian steps out between parked cars into the ego's lane"),
)}


def event_type(name: str) -> EventType:
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; expected one of {', '.join(EVENTS)}")
    return EVENTS[name]


def sample_params(event: str, config, seed: int, n: int, start: int = 0) -> list[dict]:
    """Knob values of scenarios start..start+n-1: scenario i depends on (seed, i) only."""
    et = event_type(event)
    config.validate_config(event.replace("-", "_"))
    return [et.sample(config, np.random.default_rng([seed, i])) for i in range(start, start + n)]


def scenario_name(event: str, seed: int, index: int) -> str:
    return f"{event}-s{seed}-{index:05d}"


def build_event(event: str, params: dict, config, seed: int, index: int, minimal: bool = False) -> Scenario:
    s = event_type(event).build(params, config, scenario_name(event, seed, index), seed, minimal)
    s.meta.update({"event": event, "version": GENERATOR_VERSION, "index": index,
                   "params": {k: v for k, v in params.items()}, "config": config_to_dict(config)})
    return s


__all__ = ["EVENTS", "BoundConfig", "CutInConfig", "MergeConfig", "HardBrakeConfig", "StalledConfig", "PedestrianConfig",
           "event_type", "sample_params", "build_event", "scenario_name"]
