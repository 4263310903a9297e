"""Seeding helpers: every random draw in drivesim goes through an explicit generator."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
