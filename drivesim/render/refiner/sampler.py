"""The refiner's few-step denoising sampler (EDM Euler steps, Karras et al. 2022).

Sampling starts from r = sigma_start * start_noise * noise, i.e. from the splat render plus noise
(SDEdit-style) instead of pure noise: the splat image is already close to the target. One step
returns the conditional mean correction (the best PSNR); more steps (a Karras rho schedule down to
sigma_min) add sampled detail. `denoiser` is a `model.Refiner` (anything with its `cfg`, `pack` and
`__call__(x, sigma, cond_images, action, camera, prev_sigma)`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sampling_sigmas(cfg, steps: int) -> list[float]:
    """Sampling noise levels of a RefinerConfig from sigma_start down, then 0 (Karras rho schedule)."""
    if steps < 1:
        raise ValueError(f"refiner sampling needs at least 1 step, got {steps}")
    if steps == 1:
        return [cfg.sigma_start, 0.0]
    a, b = cfg.sigma_start ** (1 / cfg.rho), cfg.sigma_min ** (1 / cfg.rho)
    return [(a + i / (steps - 1) * (b - a)) ** cfg.rho for i in range(steps)] + [0.0]


@torch.no_grad()
def sample(denoiser, rgb: Tensor, depth: Tensor, alpha: Tensor, prev: Tensor | None, prev_valid: Tensor | None,
           action: Tensor, camera: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
           noise: Tensor | None = None) -> Tensor:
    """Refined images [N, 3, H, W] in [0, 1]: Euler steps from the splat render + sigma_start noise.
    Without a previous frame (prev None) the warp channels are zero, as in training's dropout."""
    cfg = denoiser.cfg
    N = rgb.shape[0]
    if prev is None:
        prev, prev_valid = torch.zeros_like(rgb), torch.zeros_like(rgb[:, :1])
    cond_images = denoiser.pack(rgb, depth, alpha, prev, prev_valid)
    if noise is None:
        noise = torch.randn(rgb.shape, generator=generator, dtype=rgb.dtype, device="cpu").to(rgb.device)
    sig = sampling_sigmas(cfg, steps or cfg.steps)
    x = sig[0] * cfg.start_noise * noise  # the correction: the splat render plus (scaled) noise
    prev_sigma = torch.full((N,), cfg.prev_noise_sample, device=rgb.device, dtype=rgb.dtype)
    for s, s_next in zip(sig[:-1], sig[1:]):
        den = denoiser(x, torch.full((N,), s, device=rgb.device, dtype=rgb.dtype), cond_images, action, camera, prev_sigma)
        x = den if s_next == 0 else x + (s_next - s) * (x - den) / s
    return ((rgb * 2 - 1 + x + 1) / 2).clamp(0, 1)
