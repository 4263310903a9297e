"""The refiner's EDM training loss and its noise schedule (Karras et al. 2022).

Training noises the correction target - splat at ln sigma ~ N(p_mean, p_std^2); a `p_splat_start`
fraction instead starts where sampling starts (the splat, zero correction, plus sigma_start noise),
so that the first sampling step is trained as it is run. Each sample is weighted by
(sigma^2 + sd^2) / (sigma sd)^2 (sd = sigma_data), which makes the preconditioned network's target
unit-variance at every noise level.
"""

from __future__ import annotations

import torch
from torch import Tensor


def training_sigmas(cfg, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(sigma [n], from_splat [n] bool) drawn for one batch of a RefinerConfig's training."""
    sigma = (cfg.p_mean + cfg.p_std * torch.randn(n, generator=generator)).exp()
    from_splat = torch.rand(n, generator=generator) < cfg.p_splat_start
    return torch.where(from_splat, torch.full_like(sigma, cfg.sigma_start), sigma), from_splat


def loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """EDM's per-sample loss weight (sigma^2 + sd^2) / (sigma sd)^2."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(model, target: Tensor, cond_images: Tensor, action: Tensor, camera: Tensor,
             prev_sigma: Tensor, splat: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The EDM training loss of a `model.Refiner` on a batch: target and splat [N, 3, H, W] in [-1, 1]."""
    cfg = model.cfg
    dev = target.device
    sigma, from_splat = training_sigmas(cfg, target.shape[0], generator)
    sigma, from_splat = sigma.to(dev), from_splat.to(dev)
    res = target - splat
    base = torch.where(from_splat.view(-1, 1, 1, 1), torch.zeros_like(res), res)
    x = base + sigma.view(-1, 1, 1, 1) * torch.randn(*target.shape, generator=generator).to(dev)
    den = model(x, sigma, cond_images, action, camera, prev_sigma)
    return (loss_weight(sigma, cfg.sigma_data).view(-1, 1, 1, 1) * (den - res) ** 2).mean()
