"""A set of 3D Gaussians: the unit every splat scene (background, agent assets) is made of.

Conventions (shared by both rasterizer backends, as in gsplat):
- `means` [N, 3] in metres, world frame (x, y on the map, z up; the ground is z = 0);
- `quats` [N, 4] rotation quaternions (w, x, y, z), not necessarily normalised;
- `scales` [N, 3] standard deviations in metres along the rotated axes (linear, not log);
- `opacities` [N] in [0, 1]; `colors` [N, 3] linear RGB in [0, 1];
- `ids` [N] int64: -1 for the background, otherwise the agent slot the Gaussian belongs to
  (the rasterizer returns it per pixel as the agent-id image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Gaussians:
    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] (w, x, y, z)
    scales: torch.Tensor  # [N, 3]
    opacities: torch.Tensor  # [N]
    colors: torch.Tensor  # [N, 3]
    ids: torch.Tensor  # [N] int64, -1 = background

    def __post_init__(self):
        n = self.means.shape[0]
        shapes = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,), "colors": (n, 3), "ids": (n,)}
        for name, shape in shapes.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} has shape {got}, expected {shape}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def replace(self, **changes) -> "Gaussians":
        return dataclasses.replace(self, **changes)

    def to(self, device) -> "Gaussians":
        return Gaussians(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def index(self, idx) -> "Gaussians":
        return Gaussians(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    @staticmethod
    def cat(parts: list["Gaussians"]) -> "Gaussians":
        if not parts:
            raise ValueError("Gaussians.cat needs at least one set")
        return Gaussians(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Gaussians)})

    @staticmethod
    def empty(device="cpu") -> "Gaussians":
        z = lambda *s: torch.zeros(*s, device=device)
        return Gaussians(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3), torch.zeros(0, dtype=torch.long, device=device))
