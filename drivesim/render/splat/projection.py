"""Projection and tile binning of the CPU torch rasterizer (the plain twin of gsplat's CUDA kernels).

`project` turns 3-D Gaussians into visible (camera, Gaussian) pairs with 2-D means, conics and radii,
sorted by (camera, depth); `bin_tiles` lists, per screen tile, the pairs whose ellipse covers it.
`rasterize.py` blends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from drivesim.render.splat.gaussians import Gaussians

ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
EPS2D = 0.3  # pixels^2 added to the 2-D covariance (gsplat eps2d)
EXTEND_MAX = 3.33
MAX_TILE_PAIRS = 20_000_000  # (tile, Gaussian) pairs: about 0.5 GB of index tensors


# ---------------------------------------------------------------------------------------------
# projection (gsplat's EWA conventions, on the (camera, Gaussian) pairs that can be seen)
# ---------------------------------------------------------------------------------------------

@dataclass
class Projected:
    """Visible (camera, Gaussian) pairs, sorted by (camera, depth) with ties in input order."""
    cam: Tensor  # [P] camera index
    gid: Tensor  # [P] Gaussian index
    means2d: Tensor  # [P, 2] pixels
    conics: Tensor  # [P, 3] inverse 2D covariance (a, b, c): a dx^2 + 2 b dx dy + c dy^2
    depths: Tensor  # [P] camera z
    radii: Tensor  # [P, 2] int pixels
    log_opac: Tensor  # [P]


def _covariance2d(Rc: Tensor, jx: Tensor, jxz: Tensor, jy: Tensor, jyz: Tensor, quats: Tensor, scales: Tensor):
    """Entries (xx, yy, xy) [P] of J R_cam R_q diag(s^2) R_q^T R_cam^T J^T + eps2d I, per pair, from
    the camera rotations Rc [9, P] (row-major entries), the Jacobian rows J = [[jx, 0, -jxz],
    [0, jy, -jyz]], quats [P, 4] and scales [P, 3]. Component by component: on [P] vectors the
    elementwise ops are much faster than batched 3x3 products."""
    r = Rc.contiguous()
    w, x, y, z = F.normalize(quats, dim=-1).t().contiguous()
    sx, sy, sz = scales.t().contiguous()
    M = ((1 - 2 * (y * y + z * z)) * sx, 2 * (x * y - w * z) * sy, 2 * (x * z + w * y) * sz,  # R_q diag(s)
         2 * (x * y + w * z) * sx, (1 - 2 * (x * x + z * z)) * sy, 2 * (y * z - w * x) * sz,
         2 * (x * z - w * y) * sx, 2 * (y * z + w * x) * sy, (1 - 2 * (x * x + y * y)) * sz)
    j0 = [jx * r[k] - jxz * r[6 + k] for k in range(3)]  # rows of J R_cam
    j1 = [jy * r[3 + k] - jyz * r[6 + k] for k in range(3)]
    a0 = [j0[0] * M[k] + j0[1] * M[3 + k] + j0[2] * M[6 + k] for k in range(3)]  # rows of J R_cam M
    a1 = [j1[0] * M[k] + j1[1] * M[3 + k] + j1[2] * M[6 + k] for k in range(3)]
    return (a0[0] * a0[0] + a0[1] * a0[1] + a0[2] * a0[2] + EPS2D, a1[0] * a1[0] + a1[1] * a1[1] + a1[2] * a1[2] + EPS2D,
            a0[0] * a1[0] + a0[1] * a1[1] + a0[2] * a1[2])


def project(g: Gaussians, viewmats: Tensor, Ks: Tensor, width: int, height: int,
            near: float, far: float) -> Projected:
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    fx, fy, cx, cy = Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]  # [C]
    lim_xp = (width - cx) / fx + 0.15 * width / fx  # gsplat: 0.3 * tan(fov/2)
    lim_xn = cx / fx + 0.15 * width / fx
    lim_yp = (height - cy) / fy + 0.15 * height / fy
    lim_yn = cy / fy + 0.15 * height / fy
    means_c = torch.einsum("cij,nj->cni", R, g.means) + t[:, None]  # [C, N, 3]
    with torch.no_grad():  # conservative pre-cull before the covariance work
        z = means_c[..., 2].detach()
        zs = z.clamp(min=near)
        smax = g.scales.abs().amax(-1)  # [N]
        jx = fx[:, None] / zs * torch.sqrt(1 + torch.maximum(lim_xp, lim_xn)[:, None] ** 2)
        jy = fy[:, None] / zs * torch.sqrt(1 + torch.maximum(lim_yp, lim_yn)[:, None] ** 2)
        rx = EXTEND_MAX * (jx * smax + math.sqrt(EPS2D)) + 1
        ry = EXTEND_MAX * (jy * smax + math.sqrt(EPS2D)) + 1
        mx = fx[:, None] * means_c[..., 0].detach() / zs + cx[:, None]
        my = fy[:, None] * means_c[..., 1].detach() / zs + cy[:, None]
        keep = ((z >= near) & (z <= far) & (g.opacities >= ALPHA_MIN)[None]
                & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
        cam, gid = torch.nonzero(keep, as_tuple=True)  # (camera, Gaussian) order
    pick = lambda v: v.index_select(0, cam)  # noqa: E731  per-camera values of each pair
    x, y, z = means_c.reshape(-1, 3).index_select(0, cam * len(g) + gid).unbind(-1)
    fxp, fyp = pick(fx), pick(fy)
    tx = z * torch.minimum(pick(lim_xp), torch.maximum(-pick(lim_xn), x / z))
    ty = z * torch.minimum(pick(lim_yp), torch.maximum(-pick(lim_yn), y / z))
    sxx, syy, sxy = _covariance2d(pick(R.reshape(-1, 9)).t(), fxp / z, fxp * tx / (z * z), fyp / z,
                                  fyp * ty / (z * z), g.quats.index_select(0, gid), g.scales.index_select(0, gid))
    det = sxx * syy - sxy * sxy
    means2d = torch.stack([fxp * x / z + pick(cx), fyp * y / z + pick(cy)], -1)
    opac = g.opacities.index_select(0, gid)
    with torch.no_grad():
        extend = torch.sqrt(2 * torch.log(opac.clamp(min=ALPHA_MIN) / ALPHA_MIN)).clamp(max=EXTEND_MAX)
        radii = torch.stack([torch.ceil(extend * sxx.clamp(min=0).sqrt()),
                             torch.ceil(extend * syy.clamp(min=0).sqrt())], -1)
        m = means2d
        ok = ((det > 0) & ((radii[:, 0] > 0) | (radii[:, 1] > 0))
              & (m[:, 0] + radii[:, 0] > 0) & (m[:, 0] - radii[:, 0] < width)
              & (m[:, 1] + radii[:, 1] > 0) & (m[:, 1] - radii[:, 1] < height)
              & (radii[:, 0] > 0) & (radii[:, 1] > 0))
        sel = sort_by_camera_and_depth(torch.nonzero(ok).flatten(), cam, z.detach(), len(Ks))
    det, sel_of = det.index_select(0, sel), lambda v: v.index_select(0, sel)  # noqa: E731
    conics = torch.stack([sel_of(syy) / det, -sel_of(sxy) / det, sel_of(sxx) / det], -1)
    return Projected(sel_of(cam), sel_of(gid), sel_of(means2d), conics, sel_of(z), sel_of(radii).long(),
                     torch.log(sel_of(opac)))


def sort_by_camera_and_depth(sel: Tensor, cam: Tensor, z: Tensor, C: int) -> Tensor:
    """sel (in camera order) sorted by (camera, depth), ties in input order (a stable sort per camera)."""
    if z.dtype == torch.float32 and len(sel) > 0:  # z >= near > 0: its bits sort as integers
        key = (cam.index_select(0, sel) << 32) | z.index_select(0, sel).view(torch.int32).long()
        return sel.index_select(0, torch.sort(key, stable=True).indices)
    counts = torch.bincount(cam.index_select(0, sel), minlength=C).tolist()
    parts, a = [], 0
    for n in counts:
        if n:
            s = sel[a:a + n]
            parts.append(s.index_select(0, torch.sort(z.index_select(0, s), stable=True).indices))
        a += n
    return torch.cat(parts) if parts else sel


# ---------------------------------------------------------------------------------------------
# torch backend: tile binning + chunked front-to-back compositing
# ---------------------------------------------------------------------------------------------

def _expand(n: Tensor):
    """For counts n [K]: (owner [sum n], rank [sum n]) of each of the sum(n) items."""
    owner = torch.repeat_interleave(torch.arange(len(n), device=n.device), n)
    start = torch.cumsum(n, 0) - n
    return owner, torch.arange(len(owner), device=n.device) - start.index_select(0, owner)


def bin_tiles(p: Projected, C: int, width: int, height: int, tile_size: int):
    """(tile, pair) intersections sorted by tile then depth.

    A pair goes to the tiles of its radius box (gsplat's) that hold a pixel centre where its
    alpha can reach ALPHA_MIN: per row of tiles, the columns that the ellipse
    q(d) = d^T conic d <= 2 ln(opacity / ALPHA_MIN) (with a margin for rounding) spans within the
    row's pixel centres. The tiles left out would composite alpha 0 everywhere: the image is
    the same. Returns flat [I] pair ids, tile_of [I] their tiles (both in that order), counts
    [C*th*tw], tw, th.
    """
    ts = tile_size
    tw, th = -(-width // ts), -(-height // ts)
    with torch.no_grad():
        m, r = p.means2d.detach(), p.radii.to(p.means2d.dtype)
        mx, my = m[:, 0], m[:, 1]
        a, b, c = p.conics.detach().unbind(-1)
        D = (a * c - b * b).clamp(min=1e-30)
        Q = (2 * (p.log_opac.detach() - math.log(ALPHA_MIN))).clamp(min=0) * 1.001 + 0.01
        ymax, xmax = torch.sqrt(Q * a / D), torch.sqrt(Q * c / D)  # half extents of the ellipse
        # pixel rows whose centres (j + 0.5) the ellipse and the radius box reach, as tile rows
        py0 = torch.maximum(torch.ceil(my - ymax - 0.5), torch.floor((my - r[:, 1]) / ts) * ts).clamp(min=0)
        py1 = torch.minimum(torch.floor(my + ymax - 0.5), torch.ceil((my + r[:, 1]) / ts) * ts - 1).clamp(max=height - 1)
        ty0 = torch.div(py0, ts, rounding_mode="floor").long()
        n_rows = torch.where(py1 >= py0, torch.div(py1, ts, rounding_mode="floor").long() - ty0 + 1, 0)
        box_x0 = torch.floor((mx - r[:, 0]) / ts).clamp(0, tw).long()
        box_x1 = torch.ceil((mx + r[:, 0]) / ts).clamp(0, tw).long()
        pr, k = _expand(n_rows)  # (pair, tile row) combinations
        ty = ty0.index_select(0, pr) + k
        myr = my.index_select(0, pr)
        lo = torch.maximum(ty * ts, py0.index_select(0, pr).long()) + 0.5 - myr  # band of pixel-centre rows
        hi = torch.minimum(ty * ts + ts - 1, py1.index_select(0, pr).long()) + 0.5 - myr
        ar, br = a.index_select(0, pr), b.index_select(0, pr)
        aQ, Dr = ar * Q.index_select(0, pr), D.index_select(0, pr)
        ystar = -br * xmax.index_select(0, pr) / c.index_select(0, pr)  # the rightmost point's dy
        yr, yl = torch.minimum(torch.maximum(ystar, lo), hi), torch.minimum(torch.maximum(-ystar, lo), hi)
        xr = (torch.sqrt((aQ - Dr * yr * yr).clamp(min=0)) - br * yr) / ar  # right/left edges of the ellipse
        xl = (-torch.sqrt((aQ - Dr * yl * yl).clamp(min=0)) - br * yl) / ar
        mxr = mx.index_select(0, pr)
        px0 = torch.ceil(mxr + xl - 0.5).clamp(min=0)
        px1 = torch.floor(mxr + xr - 0.5).clamp(max=width - 1)
        tx0 = torch.maximum(torch.div(px0, ts, rounding_mode="floor").long(), box_x0.index_select(0, pr))
        tx1 = torch.minimum(torch.div(px1, ts, rounding_mode="floor").long() + 1, box_x1.index_select(0, pr))
        n_cols = torch.where(px1 >= px0, (tx1 - tx0).clamp(min=0), 0)
        total = int(n_cols.sum())
        if total > MAX_TILE_PAIRS:
            raise MemoryError(f"scene too large for memory: {total} tile-Gaussian pairs (budget "
                              f"{MAX_TILE_PAIRS}) for {len(p.cam)} visible Gaussian views at "
                              f"{width}x{height}; lower resolution or Gaussians")
        row, k = _expand(n_cols)
        pair = pr.index_select(0, row)
        tile = (p.cam.index_select(0, pair) * th + ty.index_select(0, row)) * tw + tx0.index_select(0, row) + k
        # pairs are in (camera, depth) order already: a stable sort by tile keeps depth order
        tile_of, order = torch.sort(tile.int(), stable=True)
        counts = torch.bincount(tile, minlength=C * th * tw)
    return pair.index_select(0, order), tile_of.long(), counts, tw, th
