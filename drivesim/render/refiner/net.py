"""The refiner's inner network F: a small conditioned UNet (DIAMOND-style), preconditioning aside.

Input: the scaled noisy correction and the conditioning images stacked on channels
[N, in_channels, H, W]; output [N, 3, H, W]. Pixel-unshuffle by `patch` at the input (and
pixel-shuffle at the output) keeps full resolution cheap; each level halves H and W. Every residual
block is modulated by the conditioning vector [N, cond_dim] (noise level, action, camera) through a
per-channel scale and shift after group normalisation (FiLM). The last convolutions start at zero,
so an untrained network outputs 0 (no correction).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, FiLM-modulated by the conditioning vector; zero-initialised output."""

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


class UNet(nn.Module):
    """in_channels -> 3 channels at the input's size; `channels` widths per level, `blocks` per level."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], blocks: int, patch: int, cond_dim: int):
        super().__init__()
        ch, D = channels, cond_dim
        self.patch = p = patch
        self.inp = nn.Conv2d(in_channels * p * p, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            cin = ch[max(0, i - 1)] if i else ch[0]
            self.down.append(nn.ModuleList([ResBlock(cin if b == 0 else c, c, D) for b in range(blocks)]))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(ch[-1], ch[-1], D)
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch) - 1)):
            self.up.append(nn.ModuleList([ResBlock(ch[i + 1] + ch[i] if b == 0 else ch[i], ch[i], D)
                                          for b in range(blocks)]))
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
