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

IMAGE_CHANNELS = 12  # noisy 3 + splat rgb 3 + disparity 1 + alpha 1 + warped previous 3 + mask 1
ACTION_DIM = 4  # acceleration m/s^2, steering rad, speed m/s, yaw change rad
SKY_DEPTH = 1000.0  # m: pixels the splats miss (sky) are warped as if this far away (rotation only)


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


# ---------------------------------------------------------------------------------------------
# geometry: warping the previous frame into the current view
# ---------------------------------------------------------------------------------------------

def reproject(depth: Tensor, K: Tensor, T_prev_from_cur: Tensor, near: float = 0.05) -> tuple[Tensor, Tensor]:
    """Where each current pixel lands in the previous camera.

    depth [N, H, W] z-depth of the current view (0 = nothing hit: treated as SKY_DEPTH, so the sky
    moves with rotation only); K [N, 3, 3] (pixel j's centre at j + 0.5, as the rasterizer);
    T_prev_from_cur [N, 4, 4] current-camera -> previous-camera coordinates.
    Returns uv [N, H, W, 2] continuous pixel coordinates in the previous image and in_front [N, H, W].
    """
    N, H, W = depth.shape
    dtype, device = depth.dtype, depth.device
    v, u = torch.meshgrid(torch.arange(H, device=device, dtype=dtype) + 0.5,
                          torch.arange(W, device=device, dtype=dtype) + 0.5, indexing="ij")
    fx, fy, cx, cy = (K[:, i, j].view(N, 1, 1).to(dtype) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    z = torch.where(depth > 0, depth, torch.full_like(depth, SKY_DEPTH))
    pts = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)  # [N, H, W, 3] current camera
    T = T_prev_from_cur.to(dtype)
    q = torch.einsum("nij,nhwj->nhwi", T[:, :3, :3], pts) + T[:, None, None, :3, 3]
    zq = q[..., 2]
    in_front = zq > near
    zs = torch.where(in_front, zq, torch.ones_like(zq))
    uv = torch.stack([fx * q[..., 0] / zs + cx, fy * q[..., 1] / zs + cy], -1)
    return uv, in_front


def warp_previous(prev: Tensor, depth: Tensor, K: Tensor, T_prev_from_cur: Tensor,
                  alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The previous frame prev [N, 3, H, W] seen from the current camera (bilinear backward warp).

    Pixels whose splat alpha [N, H, W] is under 0.5 (mostly sky; their expected depth is a blend of
    faint Gaussians) are warped as the sky is (rotation only). Returns (warped [N, 3, H, W], valid [N, 1, H, W] float: the pixel came from inside the previous
    image and lies in front of its camera; invalid pixels are 0)."""
    N, _, H, W = prev.shape
    if alpha is not None:
        depth = torch.where(alpha >= 0.5, depth, torch.zeros_like(depth))
    uv, in_front = reproject(depth, K, T_prev_from_cur)
    grid = torch.stack([2 * uv[..., 0] / W - 1, 2 * uv[..., 1] / H - 1], -1)  # align_corners=False
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W) & (uv[..., 1] >= 0) & (uv[..., 1] <= H) & in_front
    warped = F.grid_sample(prev, grid.to(prev.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    valid = inside.unsqueeze(1).to(prev.dtype)
    return warped * valid, valid


def relative_pose(viewmat_prev: Tensor, viewmat_cur: Tensor) -> Tensor:
    """T_prev_from_cur [..., 4, 4] from world-to-camera matrices of the two frames."""
    return viewmat_prev @ torch.linalg.inv(viewmat_cur)


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------

class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class _UNet(nn.Module):
    def __init__(self, cfg: RefinerConfig):
        super().__init__()
        ch, D = cfg.channels, cfg.cond_dim
        self.patch = p = cfg.patch
        self.inp = nn.Conv2d(IMAGE_CHANNELS * p * p, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            cin = ch[max(0, i - 1)] if i else ch[0]
            self.down.append(nn.ModuleList([_ResBlock(cin if b == 0 else c, c, D) for b in range(cfg.blocks)]))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = _ResBlock(ch[-1], ch[-1], D)
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch) - 1)):
            self.up.append(nn.ModuleList([_ResBlock(ch[i + 1] + ch[i] if b == 0 else ch[i], ch[i], D)
                                          for b in range(cfg.blocks)]))
        self.out_norm = nn.GroupNorm(min(8, ch[0]), ch[0])
        self.out = nn.Conv2d(ch[0], 3 * p * p, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        p, f = self.patch, self.patch * 2 ** (len(self.down) - 1)
        ph, pw = (-H) % f, (-W) % f
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        h = self.inp(F.pixel_unshuffle(x, p) if p > 1 else x)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, cond)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        h = self.mid(h, cond)
        for blocks in self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips.pop()], 1)
            for blk in blocks:
                h = blk(h, cond)
        out = self.out(F.silu(self.out_norm(h)))
        return (F.pixel_shuffle(out, p) if p > 1 else out)[..., :H, :W]


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
        self.net = _UNet(cfg)

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
        """Sampling noise levels from sigma_start down, then 0 (Karras rho schedule)."""
        cfg = self.cfg
        if steps < 1:
            raise ValueError(f"refiner sampling needs at least 1 step, got {steps}")
        if steps == 1:
            return [cfg.sigma_start, 0.0]
        a, b = cfg.sigma_start ** (1 / cfg.rho), cfg.sigma_min ** (1 / cfg.rho)
        return [(a + i / (steps - 1) * (b - a)) ** cfg.rho for i in range(steps)] + [0.0]

    @torch.no_grad()
    def sample(self, rgb: Tensor, depth: Tensor, alpha: Tensor, prev: Tensor | None, prev_valid: Tensor | None,
               action: Tensor, camera: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
        """Refined images [N, 3, H, W] in [0, 1]: Euler steps from the splat render + sigma_start noise.
        Without a previous frame (prev None) the warp channels are zero, as in training's dropout."""
        N, _, H, W = rgb.shape
        if prev is None:
            prev, prev_valid = torch.zeros_like(rgb), torch.zeros_like(rgb[:, :1])
        cond_images = self.pack(rgb, depth, alpha, prev, prev_valid)
        if noise is None:
            noise = torch.randn(rgb.shape, generator=generator, dtype=rgb.dtype, device="cpu").to(rgb.device)
        sig = self.sigmas(steps or self.cfg.steps)
        x = sig[0] * self.cfg.start_noise * noise  # the correction: the splat render plus (scaled) noise
        prev_sigma = torch.full((N,), self.cfg.prev_noise_sample, device=rgb.device, dtype=rgb.dtype)
        for s, s_next in zip(sig[:-1], sig[1:]):
            den = self(x, torch.full((N,), s, device=rgb.device, dtype=rgb.dtype), cond_images, action, camera, prev_sigma)
            x = den if s_next == 0 else x + (s_next - s) * (x - den) / s
        return ((rgb * 2 - 1 + x + 1) / 2).clamp(0, 1)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def edm_loss(model: Refiner, target: Tensor, cond_images: Tensor, action: Tensor, camera: Tensor,
             prev_sigma: Tensor, splat: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The EDM training loss on a batch: target and splat [N, 3, H, W] in [-1, 1].

    The correction target - splat is noised at ln sigma ~ N(p_mean, p_std^2); a `p_splat_start`
    fraction instead starts where sampling starts (the splat, zero correction, plus sigma_start noise)
    so that the first sampling step is trained as it is run."""
    cfg = model.cfg
    N = target.shape[0]
    dev = target.device
    rnd = lambda *s: torch.randn(*s, generator=generator).to(dev)
    sigma = (cfg.p_mean + cfg.p_std * rnd(N)).exp()
    from_splat = torch.rand(N, generator=generator).to(dev) < cfg.p_splat_start
    sigma = torch.where(from_splat, torch.full_like(sigma, cfg.sigma_start), sigma)
    res = target - splat
    base = torch.where(from_splat.view(-1, 1, 1, 1), torch.zeros_like(res), res)
    x = base + sigma.view(-1, 1, 1, 1) * rnd(*target.shape)
    den = model(x, sigma, cond_images, action, camera, prev_sigma)
    sd = cfg.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    return (weight.view(-1, 1, 1, 1) * (den - res) ** 2).mean()
