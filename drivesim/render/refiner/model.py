"""Action-conditioned diffusion refiner on top of the splat render (the sensor world model's appearance).

The splat render gives geometry; the refiner gives the appearance splats miss (holes, blur at novel
poses, missing sky and texture) and keeps frames consistent over time. It is a compact EDM denoiser
(Karras et al. 2022, "Elucidating the design space of diffusion-based generative models"; used the
same way by DIAMOND, Alonso et al. 2024, and GameNGen, Valevski et al. 2024):

- image channels: the noisy target x (3), the splat RGB (3), splat disparity s / (s + depth) (1, 0
  where nothing was hit), splat alpha (1), the previous refined frame warped into the current view
  with the splat depth and the ego motion (3) and the warp's validity mask (1): 12 channels;
- conditioning vector: Fourier features of c_noise = ln(sigma) / 4, the ego action (acceleration,
  steering, speed, yaw change since the previous frame, scaled by `action_scale`), the noise level
  of the previous-frame augmentation and a learned camera embedding; it modulates every residual
  block through a per-channel scale and shift after group normalisation;
- residual diffusion: the diffused variable is the correction r = target - splat (both in [-1, 1]),
  so that "start from the splat render plus noise" is r = sigma_start * noise and an untrained
  network returns (almost) the splat render; sigma_data is the scale of those corrections;
- EDM preconditioning: D(r; sigma) = c_skip r + c_out F(c_in r, c_noise) with
  c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2);
  training loss weight (sigma^2 + sd^2) / (sigma sd)^2, ln sigma ~ N(p_mean, p_std^2);
- few-step sampling (1 to 3 Euler steps) from r = sigma_start * noise, i.e. from the splat render
  plus noise (SDEdit-style) instead of pure noise: the splat image is already close to the target.
  One step returns the conditional mean correction (the best PSNR); more steps add sampled detail.
  `start_noise` scales that start noise (default 0: start at the mean, the splat render itself).

This file holds the config and the denoiser wrapper `Refiner` (conditioning vector, EDM
preconditioning, packing of the conditioning images); its pieces live beside it: `net.py` (the
UNet F), `sampler.py` (the Euler sampler and its sigma schedule), `loss.py` (the EDM training loss
and training noise schedule), `warp.py` (the previous frame reprojected into the current view).

Images are [N, 3, H, W] in [0, 1] at the API; the network works in [-1, 1]. Geometry (the warp)
never reads the action: the action only enters through the conditioning vector.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivesim.core.config import config_from_dict
from drivesim.render.refiner.net import UNet
from drivesim.render.refiner.sampler import sample, sampling_sigmas

IMAGE_CHANNELS = 12  # noisy 3 + splat rgb 3 + disparity 1 + alpha 1 + warped previous 3 + mask 1
ACTION_DIM = 4  # acceleration m/s^2, steering rad, speed m/s, yaw change rad


@dataclass(frozen=True)
class RefinerConfig:
    channels: tuple[int, ...] = (32, 64, 96)  # UNet widths per level (each level halves H and W)
    blocks: int = 1  # residual blocks per level and direction
    patch: int = 2  # pixel-unshuffle factor at the input (and pixel-shuffle at the output): cheap full resolution
    cond_dim: int = 128
    n_cameras: int = 16  # camera-embedding slots: rig offset + camera index (nuscenes 0-5, pandaset 8-13)
    sigma_data: float = 0.25  # scale of the corrections target - splat in [-1, 1] units
    p_mean: float = -1.0  # ln sigma ~ N(p_mean, p_std^2) in training
    p_std: float = 1.2
    sigma_start: float = 20.0  # sampling starts at (splat in [-1, 1]) + sigma_start * noise (c_skip leaks 0.3 % of it)
    sigma_min: float = 0.02
    rho: float = 7.0  # Karras schedule exponent for 2-3 steps
    steps: int = 1  # default sampling steps
    start_noise: float = 0.0  # scale of the start noise at sampling: 1 = splat + sigma_start noise (a sample),
    # 0 = the start distribution's mean, the splat itself (deterministic; with this short CPU training the
    # start noise still shows through the network: 1 flickers and lags the geometry, see policies/refiner)
    p_splat_start: float = 0.3  # training: fraction of samples at the sampler's start (splat + sigma_start noise)
    prev_noise_max: float = 0.3  # training: previous frame + U(0, max) * noise (in [-1, 1] units)
    prev_noise_sample: float = 0.0  # the augmentation level at inference
    p_drop_prev: float = 0.15  # training: no previous frame (first frame of a rollout)
    action_scale: tuple[float, ...] = (3.0, 0.3, 15.0, 0.05)
    depth_scale: float = 10.0  # m, disparity = s / (s + depth)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RefinerConfig":
        return config_from_dict(RefinerConfig, d, "refiner")


class Refiner(nn.Module):
    """EDM denoiser over splat renders; see the module docstring."""

    def __init__(self, cfg: RefinerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RefinerConfig()
        D = cfg.cond_dim
        self.register_buffer("freqs", torch.randn(D // 4, generator=torch.Generator().manual_seed(0)) * 4.0)
        self.register_buffer("action_scale", torch.tensor(cfg.action_scale, dtype=torch.float32))
        self.camera_embed = nn.Embedding(cfg.n_cameras, D)
        self.cond_mlp = nn.Sequential(nn.Linear(D // 2 + ACTION_DIM + 1, D), nn.SiLU(), nn.Linear(D, D))
        self.net = UNet(IMAGE_CHANNELS, cfg.channels, cfg.blocks, cfg.patch, cfg.cond_dim)

    def conditioning(self, sigma: Tensor, action: Tensor, camera: Tensor, prev_sigma: Tensor) -> Tensor:
        """[N, cond_dim] from sigma [N], action [N, 4], camera ids [N] and the prev-frame noise level [N]."""
        c_noise = sigma.log() / 4
        ang = 2 * math.pi * c_noise[:, None] * self.freqs
        a = action / self.action_scale
        h = torch.cat([ang.cos(), ang.sin(), a, prev_sigma[:, None]], 1)
        return F.silu(self.cond_mlp(h) + self.camera_embed(camera))

    def forward(self, x: Tensor, sigma: Tensor, cond_images: Tensor, action: Tensor, camera: Tensor,
                prev_sigma: Tensor | None = None) -> Tensor:
        """D(x; sigma): the denoised correction (target - splat, [-1, 1] units). x [N, 3, H, W] the
        noisy correction, sigma [N], cond_images [N, 9, H, W] (`pack`)."""
        sd = self.cfg.sigma_data
        s = sigma.view(-1, 1, 1, 1)
        c_in, c_skip = 1 / (s ** 2 + sd ** 2).sqrt(), sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        prev_sigma = torch.zeros_like(sigma) if prev_sigma is None else prev_sigma
        cond = self.conditioning(sigma, action, camera, prev_sigma)
        F_x = self.net(torch.cat([c_in * x, cond_images], 1), cond)
        return c_skip * x + c_out * F_x

    def pack(self, rgb: Tensor, depth: Tensor, alpha: Tensor, prev: Tensor, prev_valid: Tensor) -> Tensor:
        """[N, 9, H, W] conditioning images from splat rgb [N, 3, H, W] in [0, 1], depth [N, H, W] m,
        alpha [N, H, W], the warped previous frame [N, 3, H, W] in [0, 1] and its mask [N, 1, H, W]."""
        s = self.cfg.depth_scale
        disparity = torch.where(depth > 0, s / (s + depth.clamp_min(0)), torch.zeros_like(depth))
        return torch.cat([rgb * 2 - 1, disparity[:, None], alpha[:, None] * 2 - 1, (prev * 2 - 1) * prev_valid,
                          prev_valid], 1)

    def sigmas(self, steps: int) -> list[float]:
        """Sampling noise levels from sigma_start down, then 0 (`sampler.sampling_sigmas`)."""
        return sampling_sigmas(self.cfg, steps)

    def sample(self, rgb: Tensor, depth: Tensor, alpha: Tensor, prev: Tensor | None, prev_valid: Tensor | None,
               action: Tensor, camera: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
        """Refined images [N, 3, H, W] in [0, 1] (`sampler.sample`: Euler steps from the splat render)."""
        return sample(self, rgb, depth, alpha, prev, prev_valid, action, camera, steps, generator, noise)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
