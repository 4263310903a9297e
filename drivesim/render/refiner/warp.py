"""Geometry of the refiner's temporal input: the previous refined frame warped into the current view.

The splat depth of the current frame and the ego motion between the two frames place each current
pixel in the previous image (`reproject`); `warp_previous` samples the previous frame there. The
action never enters here: geometry comes from the render and the poses only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SKY_DEPTH = 1000.0  # m: pixels the splats miss (sky) are warped as if this far away (rotation only)


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
