"""The imitation-learning trainer's config (train/il.py): scenario sources, DART noise, BC and
DAgger schedule, closed-loop checks, budget. `validate_config` names the field that is out of range."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drivesim.core.config import ConfigError
from drivesim.events import EVENTS
from drivesim.sim.expert import PDMConfig
from drivesim.train.il_data import REAL_SOURCES
from drivesim.train.il_variants import DartConfig


@dataclass(frozen=True)
class ILConfig:
    seed: int = 0
    suite: str = "nominal"  # suite YAML (path or name in scenarios/), or "none"
    suite_repeat: int = 6  # its groups drawn this many times over, with their own seed (the suite stays held out)
    rare: int = 0  # generated rare events, split evenly over `rare_events`
    rare_events: tuple[str, ...] = tuple(EVENTS)
    real: bool = False  # the training split of the real scenes ($DRIVESIM_DATA; il_data.real_scenarios), skipped when absent
    real_traffic: str = "hybrid"
    real_sources: tuple[str, ...] = tuple(REAL_SOURCES)  # nuscenes, av2, commonroad, womd, gpudrive
    starts: tuple[float, ...] = (0.0, 2.0)  # ego start speeds (m/s) of the start variants (il_variants.start_variants) ...
    start_fraction: float = 0.25  # ... made of this share of the suite draw, added to it (0: none)
    dart_accel: float = 0.5  # DART: stationary std of the noise on the executed acceleration, m/s^2 ...
    dart_steer: float = 0.005  # ... and steering, rad (both 0: as before; 0.02 at rho 0.5: 3 % of the demos collide)
    dart_rho: float = 0.5  # AR(1) coefficient per step (0.9, ~1 s at 10 Hz: the noisy expert loses 22 % of its progress)
    dart_dagger: bool = False  # the noise in the DAgger rounds too (else only in round 0's expert demonstrations)
    epochs: int = 15  # behaviour cloning on the expert's demonstrations
    dagger: int = 3  # DAgger rounds
    dagger_epochs: int = 4  # epochs on the aggregated data after each round
    beta: float = 0.5  # round r takes the expert's action with probability beta^r at each step
    batch_size: int = 256
    lr: float = 1e-3
    finetune_lr: float = 3e-4  # instead of lr when starting from a checkpoint
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.05
    brake_weight: float = 2.0  # loss weight of samples whose expert bin is at or below brake_below ...
    brake_below: float = -2.0  # m/s^2
    record_every: int = 4  # simulation steps between recorded states (more scenarios beat more alike states)
    val_fraction: float = 0.1  # scenarios held out for the validation loss and accuracy
    eval_scenarios: int = 64  # closed-loop check after each round on fresh scenarios (0: none) ...
    select: str = "best"  # ... and the round written as the policy: "best" (highest PDMS there) or "last"
    keep_data: bool = False  # keep OUT/data.pt (the recorded states, about 2.5 kB each) once the run has finished
    hidden: int = 128
    sim_batch: int = 64  # scenarios simulated together
    minutes: float = 6.0  # wall-clock budget of one run; past it training stops and the policy is written
    expert: PDMConfig = field(default_factory=lambda: PDMConfig(replan_every=1))

    def validate_config(self, where: str = "il") -> None:
        checks = {"suite_repeat": self.suite_repeat >= 1, "rare": self.rare >= 0, "epochs": self.epochs >= 0,
                  "dagger": self.dagger >= 0, "dagger_epochs": self.dagger_epochs >= 0, "beta": 0 <= self.beta <= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "finetune_lr": self.finetune_lr > 0,
                  "label_smoothing": 0 <= self.label_smoothing < 1, "brake_weight": self.brake_weight > 0,
                  "record_every": self.record_every >= 1, "val_fraction": 0 <= self.val_fraction < 1,
                  "eval_scenarios": self.eval_scenarios >= 0, "hidden": self.hidden >= 1, "sim_batch": self.sim_batch >= 1,
                  "minutes": self.minutes > 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"{where}.{key}: got {getattr(self, key)!r}; out of range")
        if self.select not in ("best", "last"):
            raise ConfigError(f"{where}.select: got {self.select!r}; allowed: best, last")
        if self.expert.replan_every != 1:
            raise ConfigError(f"{where}.expert.replan_every: got {self.expert.replan_every}; the labels need an expert "
                              "that re-plans at every call (1)")
        if self.real_traffic not in ("replay", "reactive", "hybrid", "constant_velocity"):
            raise ConfigError(f"{where}.real_traffic: got {self.real_traffic!r}; allowed: replay, reactive, hybrid, constant_velocity")
        for e in self.rare_events:
            if e not in EVENTS:
                raise ConfigError(f"{where}.rare_events: unknown event {e!r}; allowed: {', '.join(EVENTS)}")
        if any(s not in REAL_SOURCES for s in self.real_sources):
            raise ConfigError(f"{where}.real_sources: got {list(self.real_sources)}; allowed: {', '.join(REAL_SOURCES)}")
        if not all(math.isfinite(v) and v >= 0 for v in self.starts) or not 0 <= self.start_fraction <= 1:
            raise ConfigError(f"{where}.starts / start_fraction: got {list(self.starts)} / {self.start_fraction!r}; "
                              "need speeds >= 0 m/s and a fraction in [0, 1]")
        self.dart.validate_config(f"{where}.dart")
        if self.suite == "none" and self.rare == 0 and not self.real:
            raise ConfigError(f"{where}: no training scenarios (suite 'none', rare 0, real off)")


    @property
    def dart(self) -> DartConfig:
        return DartConfig(accel_std=self.dart_accel, steer_std=self.dart_steer, rho=self.dart_rho)
