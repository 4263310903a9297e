"""IDM car-following and the MOBIL lane-change rule as plain tensor formulas (docs/definitions.md).

IDM (Treiber et al. 2000): a = a_max [1 - (v/v0)^delta - (s*/s)^2],
    s* = s0 + v T + v dv / (2 sqrt(a_max b)).
MOBIL (Kesting, Treiber, Helbing 2007): change if
    a~_c - a_c + p [(a~_n - a_n) + (a~_o - a_o)] > da_th  and  a~_n >= -b_safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FAR = 1e4  # m: gap used when there is no leader


@dataclass(frozen=True)
class IDMConfig:
    """Defaults are nuPlan's/NAVSIM's reactive-agent parameters (docs/definitions.md), delta 4."""

    min_gap: float = 1.0  # s0, m
    headway: float = 1.5  # T, s
    max_accel: float = 1.0  # a_max, m/s^2
    comfort_decel: float = 2.0  # b, m/s^2
    delta: float = 4.0
    max_decel: float = 8.0  # hard limit on the IDM output, m/s^2
    max_free_decel: float | None = None  # m/s^2 cap on braking for being above v0 alone (None: IDM as is)


@dataclass(frozen=True)
class MOBILConfig:
    """Treiber's values (docs/definitions.md)."""

    politeness: float = 0.25  # p in 0..0.5
    threshold: float = 0.2  # da_th, m/s^2
    safe_decel: float = 4.0  # b_safe, m/s^2
    keep_right: float = 0.2  # m/s^2 asymmetric bias (Treiber): added to the left threshold, taken off the right
    every: int = 10  # all agents evaluate every N steps (simultaneous claims on one gap: see mobil.py)
    cooldown: float = 3.0  # s between two lane changes of one agent


def idm_accel(v, v0, gap, v_lead, cfg: IDMConfig):
    """IDM acceleration for speed v [...], desired speed v0, bumper gap (m, FAR if free) and leader speed."""
    free = 1.0 - (v / v0.clamp(min=0.1)).clamp(min=0) ** cfg.delta
    if cfg.max_free_decel is not None:
        free = free.clamp(min=-cfg.max_free_decel / cfg.max_accel)
    dv = v - v_lead
    s_star = cfg.min_gap + (v * cfg.headway + v * dv / (2.0 * (cfg.max_accel * cfg.comfort_decel) ** 0.5)).clamp(min=0)
    interaction = (s_star / gap.clamp(min=0.1)) ** 2
    interaction = torch.where(gap >= FAR, torch.zeros_like(interaction), interaction)
    return (cfg.max_accel * (free - interaction)).clamp(min=-cfg.max_decel)


def mobil_gain(a_c, a_c_new, a_n, a_n_new, a_o, a_o_new, cfg: MOBILConfig):
    """MOBIL incentive and safety: returns (gain, safe). n: new follower, o: old follower."""
    gain = a_c_new - a_c + cfg.politeness * ((a_n_new - a_n) + (a_o_new - a_o))
    return gain, a_n_new >= -cfg.safe_decel
