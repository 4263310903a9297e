"""Variants and perturbations for imitation data: standing and slow starts, and DART noise.

- `with_start_speed` / `start_variants`: copies of scenarios whose ego starts at a given speed
  (0 m/s: a standing start; 1-3 m/s: a slow start), everything else equal (map, agents, route,
  log, scripts, duration). The ego's initial speed is `Scenario.speed[0]` (the simulator starts
  the ego from `init["speed"]`, with zero acceleration); a logged ego keeps its log, which stays
  the progress reference. Variants are named `<name>/start<v>` (`/start0`, `/start2`,
  `/start1.5`) and validated; their meta names the scenario they come from.
- `DartConfig` / `dart_noise`: DART (Laskey et al. 2017, "DART: Noise Injection for Robust
  Imitation Learning"): while demonstrations are recorded, the EXECUTED action is the expert's
  plus Gaussian noise (stationary std `accel_std` m/s^2, `steer_std` rad; AR(1) in time with
  coefficient `rho`), clipped to the action box; the label stays the expert's clean action at
  the state visited. The noise of a scenario comes from its own generator (seed and scenario
  name), so it does not depend on the batch the scenario is simulated in.
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.core.scenario import Scenario, ScenarioError
from drivesim.core.config import ConfigError
from drivesim.io.scenario_file import BOOKKEEPING


# ---------------------------------------------------------------------------- standing / slow starts
def start_suffix(speed: float) -> str:
    """'/start0', '/start2', '/start1.5': the name suffix of a start variant."""
    return f"/start{float(speed):g}"


def with_start_speed(scenario: Scenario, speed: float) -> Scenario:
    """A copy of `scenario` whose ego starts at `speed` m/s, everything else equal; validated
    (a ScenarioError names the scenario)."""
    if not (math.isfinite(speed) and speed >= 0):
        raise ScenarioError(f"scenario {scenario.name!r}: start speed must be finite and >= 0, got {speed!r}")
    out = copy.copy(scenario)
    out.speed = np.array(scenario.speed, dtype=float, copy=True)
    out.speed[0] = float(speed)
    out.name = scenario.name + start_suffix(speed)
    kept = {k: v for k, v in scenario.meta.items() if k not in BOOKKEEPING}  # the content hash was the original's
    out.meta = {**kept, "start_of": scenario.name, "start_speed": float(speed),
                "original_start_speed": float(scenario.speed[0])}
    out.validate()
    return out


def picked_for_starts(name: str, fraction: float, seed: int) -> bool:
    """A fixed `fraction` of scenarios (by a hash of the seed and the name) gets a start variant."""
    return zlib.crc32(f"starts{seed}/{name}".encode()) % 10_000 < fraction * 10_000


def start_variants(scenarios: list[Scenario], speeds, fraction: float = 1.0, seed: int = 0) -> list[Scenario]:
    """One start variant of each scenario that `picked_for_starts` picks (all with fraction 1),
    the speeds taken in turn: the 1st picked scenario starts at speeds[0], the 2nd at speeds[1], ..."""
    speeds = [float(v) for v in speeds]
    if not speeds or fraction <= 0:
        return []
    picked = [s for s in scenarios if picked_for_starts(s.name, fraction, seed)]
    return [with_start_speed(s, speeds[i % len(speeds)]) for i, s in enumerate(picked)]


# ---------------------------------------------------------------------------- DART noise
@dataclass(frozen=True)
class DartConfig:
    accel_std: float = 0.0  # m/s^2, stationary std of the acceleration noise (0: none)
    steer_std: float = 0.0  # rad, of the steering noise
    rho: float = 0.0  # AR(1) coefficient per step (0: white; 0.9 at dt 0.1 s: about 1 s correlation)

    @property
    def active(self) -> bool:
        return self.accel_std > 0 or self.steer_std > 0

    def validate_config(self, where: str = "dart") -> None:
        for key, ok in (("accel_std", self.accel_std >= 0), ("steer_std", self.steer_std >= 0), ("rho", 0 <= self.rho < 1)):
            if not (ok and math.isfinite(getattr(self, key))):
                raise ConfigError(f"{where}.{key}: got {getattr(self, key)!r}; out of range")


def scenario_seed(seed: int, name: str) -> int:
    """The seed of one scenario's noise: the run's seed and the scenario's name."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def dart_noise(names: list[str], steps: int, cfg: DartConfig, seed: int) -> torch.Tensor:
    """[B, steps, 2] (accel, steer) noise, one AR(1) sequence per scenario name with stationary
    std (accel_std, steer_std): n_0 = e_0, n_t = rho n_{t-1} + sqrt(1 - rho^2) e_t, e ~ N(0, std^2)."""
    std = torch.tensor([cfg.accel_std, cfg.steer_std])
    e = torch.zeros(len(names), steps, 2)
    for b, name in enumerate(names):
        e[b] = torch.randn(steps, 2, generator=torch.Generator().manual_seed(scenario_seed(seed, name))) * std
    out = torch.empty_like(e)
    keep = math.sqrt(1.0 - cfg.rho**2)
    for t in range(steps):
        out[:, t] = e[:, 0] if t == 0 else cfg.rho * out[:, t - 1] + keep * e[:, t]
    return out


__all__ = ["with_start_speed", "start_variants", "start_suffix", "picked_for_starts", "DartConfig", "dart_noise",
           "scenario_seed"]
