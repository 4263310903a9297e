"""Gaussian-splat rasterizer with two backends: gsplat (CUDA) and a tile-binned torch compositor.

`render(gaussians, viewmats, Ks, width, height)` draws C pinhole cameras in one call and returns
RGB, expected depth, accumulated alpha and a per-pixel agent-id image.

Both backends follow gsplat 1.5.3's CUDA kernels (`ProjectionEWA3DGSFused.cu`, `IntersectTile.cu`,
`RasterizeToPixels3DGSFwd.cu`, `rasterization(rasterize_mode="classic")`):
- EWA projection: covariance R diag(s^2) R^T from normalised quats (w, x, y, z) and linear scales,
  rotated into the camera, then J Sigma J^T with the pinhole Jacobian J evaluated at the mean whose
  x/z, y/z are clamped to 1.3 times the field of view (gsplat's `persp_proj`); means2d = f x/z + c
  (no skew); a 0.3 px^2 low-pass dilation added to the 2D covariance (eps2d=0.3, no compensation);
- culling: depth z < near or z > far, det <= 0, opacity < 1/255, and boxes fully outside the image;
- radius: gsplat's opacity-aware box, ceil(extend * sqrt(Sigma_xx)) and likewise for y with
  extend = min(3.33, sqrt(2 ln(255 opacity))), which is exactly the alpha >= 1/255 ellipse (the
  torch helper `_fully_fused_projection` uses a plain 3.33 sigma box: same pixels, more tiles);
- tiles: tile_size x tile_size, a Gaussian goes to tiles floor((m - r)/ts) .. ceil((m + r)/ts)
  (gsplat); the torch backend keeps of those only the tiles with a pixel centre inside the
  alpha >= 1/255 ellipse (the others would composite alpha 0: the image is the same);
- compositing front to back by camera depth, ties kept in input order (a stable sort, as gsplat's
  radix sort of (camera, tile, depth) keys over Gaussians in input order); pixel centres at
  (x + 0.5, y + 0.5); alpha = min(0.999, opacity exp(-0.5 d^T Sigma^-1 d)), skipped if < 1/255;
  a pixel stops before the Gaussian that would bring its transmittance to <= 1e-4;
- rgb = sum w_i c_i + T_final * background; depth = sum w_i z_i / alpha (gsplat's "ED"), 0 where
  alpha is 0; agent_id = argmax over ids of sum w_i [id_i == id] (ids in sorted order, ties to the
  smaller id), -1 where that is the background id or alpha < 0.5. The gsplat backend renders the
  one-hot ids as extra channels so that both backends define it identically.

The torch backend is differentiable w.r.t. means, quats, scales, opacities and colors (Adam
fitting runs through it). Without grad it runs an in-place fast path on scratch buffers. CPU
cost (one thread, six cameras at 112x200, 20k Gaussians: about 55 ms): projection ~7 ms,
binning ~5 ms, the rest compositing, whose dense steps are bound by exp2, cumprod and two
small matmuls per (tile, Gaussian, pixel); see tools/bench_render.py.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from drivesim.render.splat.gaussians import Gaussians
from drivesim.render.splat.projection import ALPHA_MIN, EPS2D, Projected, bin_tiles, project  # noqa: F401 (re-exported)

ALPHA_MAX = 0.999
T_MIN = 1e-4  # a pixel stops before its transmittance would reach this
CHUNK_ELEMENTS = 1 << 18  # tiles x Gaussians x pixels per step (1 MB float32 tensors): fastest measured
TORCH_TILE_SIZE = 8  # fewer wasted pixel evaluations than 16 (about 20 % faster on CPU)
_FAR_AWAY = 1e30  # sigma of padding entries: alpha = exp(-1e30) = 0
GC = 32  # Gaussians per tile per step


@dataclass
class RenderOutput:
    rgb: Tensor  # [C, H, W, 3]
    depth: Tensor  # [C, H, W] expected z-depth, 0 where alpha == 0
    alpha: Tensor  # [C, H, W]
    agent_id: Tensor  # [C, H, W] int64, -1 = background or alpha < 0.5




def render(gaussians: Gaussians, viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
           backend: str = "auto", background: Tensor | None = None,
           near: float = 0.05, far: float = 1e4, tile_size: int | None = None) -> RenderOutput:
    """Render C cameras (world-to-camera `viewmats` [C, 4, 4], intrinsics `Ks` [C, 3, 3]).

    `tile_size` None picks the backend's fastest: 16 on gsplat, 8 on torch (the image does not
    depend on it). `background` [3] is composited behind: rgb = sum w c + T_final * background.
    """
    _validate(gaussians, viewmats, Ks, width, height, background, near, far, tile_size)
    device = gaussians.device
    dtype = gaussians.means.dtype
    viewmats, Ks = viewmats.to(device, dtype), Ks.to(device, dtype)
    bg = torch.zeros(3, device=device, dtype=dtype) if background is None else background.to(device, dtype)
    backend = _choose_backend(backend, device)
    if tile_size is None:
        tile_size = 16 if backend == "gsplat" else TORCH_TILE_SIZE
    if backend == "gsplat":
        return _render_gsplat(gaussians, viewmats, Ks, width, height, bg, near, far, tile_size)
    return _render_torch(gaussians, viewmats, Ks, width, height, bg, near, far, tile_size)


def _choose_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'torch' or 'gsplat'")
    if backend == "torch":
        return "torch"
    reason = None
    if not torch.cuda.is_available():
        reason = "CUDA is not available"
    elif device.type != "cuda":
        reason = f"the Gaussians are on {device}, not on a CUDA device"
    else:
        try:
            import gsplat  # noqa: F401
        except ImportError as exc:
            reason = f"gsplat does not import ({exc})"
    if reason is None:
        return "gsplat"
    if backend == "gsplat":
        raise RuntimeError(f"backend='gsplat' needs CUDA tensors and gsplat, but {reason}; "
                           "use backend='torch' (or 'auto') on CPU")
    # once per reason: warnings' own registry ("default" action) drops the repeats
    warnings.warn(f"render: using the torch rasterizer because {reason}", stacklevel=2)
    return "torch"


def _validate(g, viewmats, Ks, width, height, background, near, far, tile_size):
    if not isinstance(g, Gaussians):
        raise TypeError(f"render needs a Gaussians, got {type(g).__name__}")
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive integers, got width={width}, height={height}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}")
    if Ks.ndim != 3 or Ks.shape[1:] != (3, 3):
        raise ValueError(f"Ks must be [C, 3, 3], got {tuple(Ks.shape)}")
    if viewmats.shape[0] != Ks.shape[0]:
        raise ValueError(f"{viewmats.shape[0]} viewmats but {Ks.shape[0]} Ks: one of each per camera")
    if viewmats.shape[0] == 0:
        raise ValueError("render needs at least one camera")
    if background is not None and tuple(background.shape) != (3,):
        raise ValueError(f"background must be an RGB [3] tensor, got {tuple(background.shape)}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    if tile_size is not None and tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    for name in ("means", "quats", "scales", "opacities", "colors"):
        if not torch.isfinite(getattr(g, name)).all():
            raise ValueError(f"Gaussians.{name} has NaN or infinite values")
    if not (torch.isfinite(viewmats).all() and torch.isfinite(Ks).all()):
        raise ValueError("viewmats or Ks have NaN or infinite values")


def _empty_output(C, H, W, bg, dtype, device) -> RenderOutput:
    return RenderOutput(rgb=bg.expand(C, H, W, 3).clone(),
                        depth=torch.zeros(C, H, W, dtype=dtype, device=device),
                        alpha=torch.zeros(C, H, W, dtype=dtype, device=device),
                        agent_id=torch.full((C, H, W), -1, dtype=torch.long, device=device))


def _warn_blind(counts: Tensor, n: int) -> None:
    blind = [str(i) for i in torch.nonzero(counts == 0).flatten().tolist()]
    if n == 0:
        warnings.warn("render: the scene has no Gaussians; every camera sees only the background", stacklevel=4)
    elif blind:
        warnings.warn(f"render: camera {', '.join(blind)} sees nothing (no Gaussian in view of {n})",
                      stacklevel=4)


def _agent_id(id_weights: Tensor, alpha: Tensor, unique_ids: Tensor) -> Tensor:
    """[..., K] per-id blending weights -> [...] int64 id (argmax), -1 for background or alpha < 0.5."""
    best = unique_ids[id_weights.argmax(-1)]
    return torch.where(alpha >= 0.5, best, torch.full_like(best, -1))




def _pixel_features(tile_size: int, dtype, device) -> Tensor:
    """[6, tile_size^2]: 1, u, v, u^2, v^2, u v with (u, v) pixel centres relative to the tile centre."""
    c = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - tile_size / 2
    v, u = torch.meshgrid(c, c, indexing="ij")
    u, v = u.flatten(), v.flatten()
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def _render_torch(g, viewmats, Ks, width, height, bg, near, far, tile_size) -> RenderOutput:
    C, device, dtype = viewmats.shape[0], g.device, g.means.dtype
    if len(g) == 0:
        _warn_blind(torch.zeros(C), 0)
        return _empty_output(C, height, width, bg, dtype, device)
    p = project(g, viewmats, Ks, width, height, near, far)
    _warn_blind(torch.bincount(p.cam, minlength=C), len(g))
    if len(p.cam) == 0:
        return _empty_output(C, height, width, bg, dtype, device)
    flat, tile_of, counts, tw, th = bin_tiles(p, C, width, height, tile_size)
    if len(flat) == 0:  # every visible ellipse falls between pixel centres
        return _empty_output(C, height, width, bg, dtype, device)
    unique_ids, id_index = torch.unique(g.ids, return_inverse=True)
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (g.means, g.quats, g.scales, g.opacities, g.colors))
    acc, best = _composite(p, g.colors.index_select(0, p.gid), id_index.index_select(0, p.gid), len(unique_ids),
                           flat, tile_of, counts, tw, th, tile_size, need_grad)

    def to_image(x):  # [C*th*tw, F, ts*ts] -> [C, H, W, F]
        x = x.view(C, th, tw, -1, tile_size, tile_size).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(C, th * tile_size, tw * tile_size, -1)[:, :height, :width]

    img = to_image(acc)
    alpha = img[..., 4]
    rgb = img[..., :3] + (1 - alpha)[..., None] * bg
    depth = torch.where(alpha > 0, img[..., 3] / alpha.clamp(min=1e-10), torch.zeros_like(alpha))
    best = unique_ids[to_image(best[:, None])[..., 0]]  # the id with the largest blending weight
    agent = torch.where(alpha.detach() >= 0.5, best, torch.full_like(best, -1))
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, agent_id=agent)


_LOG2E = 1.0 / math.log(2.0)
_LOG2_ALPHA_MAX = math.log2(ALPHA_MAX)
_LOG2_ALPHA_FLOOR = -6.0 * _LOG2E  # alpha = e^-6 < 1/255: below the threshold, far from denormals


def _coefficient_table(p: Projected, pid_of, tile_of, n_tiles, tw, th, tile_size) -> Tensor:
    """Per intersection (pair pid_of [I] in tile tile_of [I], pair P = padding) the coefficients
    [I, 6] of log2(alpha) over the pixel features (1, u, v, u^2, v^2, u v), with (u, v) relative
    to the intersection's tile centre; the padding rows give alpha 0."""
    ts, dtype, device = tile_size, p.means2d.dtype, p.means2d.device
    # log2(alpha) = (log(opacity) - 0.5 d^T conic d) / ln 2 with d = (u - mu, v - mv); exp2 is
    # about 3 times faster than exp on CPU
    a, b, c = (_LOG2E * p.conics).unbind(-1)
    per_pair = torch.stack([p.means2d[:, 0], p.means2d[:, 1], _LOG2E * p.log_opac, a, b, c, -0.5 * a, -0.5 * c, -b], -1)
    pad = torch.tensor([[0, 0, -_FAR_AWAY, 0, 0, 0, 0, 0, 0]], dtype=dtype, device=device)
    g = torch.cat([per_pair, pad]).index_select(0, pid_of)  # [I, 9]
    tiles = torch.arange(n_tiles, device=device)
    centres = torch.stack([tiles % tw, (tiles // tw) % th], -1).to(dtype) * ts + ts / 2  # [n_tiles, 2]
    mu, mv = (g[:, :2] - centres.index_select(0, tile_of)).unbind(-1)  # mean - tile centre
    lo, a, b, c = g[:, 2:6].unbind(-1)
    c1, c2 = a * mu + b * mv, c * mv + b * mu
    return torch.stack([lo - 0.5 * (mu * c1 + mv * c2), c1, c2, g[:, 6], g[:, 7], g[:, 8]], -1)


def _tile_groups(counts: Tensor, has_agent: Tensor, tiles_per_group: int):
    """Busy tiles sorted by (holds agent Gaussians, count) descending, cut into groups that
    hold either agent tiles or none.

    Returns the sorted busy tiles and per group (first, last) positions, its tiles' counts (a
    descending list) and whether they hold agent Gaussians."""
    key = counts + has_agent * (int(counts.max()) + 1)
    order = torch.sort(key, descending=True, stable=True).indices
    n_busy = int((counts > 0).sum())
    order = order[:n_busy]
    n_agent = int(has_agent.sum())
    cnt = counts.index_select(0, order).tolist()
    groups = []
    for lo, hi, ag in ((0, n_agent, True), (n_agent, n_busy, False)):
        for a in range(lo, hi, tiles_per_group):
            b = min(a + tiles_per_group, hi)
            groups.append((a, b, cnt[a:b], ag))
    return order, groups


def _group_rows(counts: list[int], starts: Tensor, pad: int):
    """Intersection rows of a group of tiles (counts descending, lists at `starts`) step by step:
    step k covers columns k GC .. k GC + n of the first A_k tiles (those whose lists reach that
    far; n < GC only in the last step, the longest list rounded up to a multiple of 8), lists
    padded with `pad`. Returns the rows [sum A_k GC] and the steps as (row offset, A_k, n)."""
    A, L = len(counts), (counts[0] + 7) // 8 * 8
    S = -(-L // GC)
    cols = torch.arange(S * GC, device=starts.device)
    cnt = torch.tensor(counts, device=starts.device)
    idx = torch.where(cols < cnt[:, None], starts[:, None] + cols, pad).view(A, S, GC).transpose(0, 1)
    steps, active, off = [], [], 0
    for k in range(S):
        while counts[A - 1] <= k * GC:
            A -= 1
        steps.append((off, A, min(GC, L - k * GC)))
        active.append(A)
        off += A * GC
    mask = torch.arange(len(counts), device=starts.device) < torch.tensor(active, device=starts.device)[:, None]
    return idx[mask].view(-1), steps


def _step_block(x: Tensor, off: int, A: int, n: int) -> Tensor:
    """The [A, n, ...] block of a step from rows laid out as `_group_rows` returns them."""
    return x[off:off + A * GC].view(A, GC, *x.shape[1:])[:, :n]


def _composite(p: Projected, colors, id_of_pair, n_ids, flat, tile_of, counts, tw, th, tile_size,
               need_grad: bool):
    """Front-to-back compositing of the binned Gaussians.

    Tiles are taken in groups of similar length (sorted by whether they hold agent Gaussians,
    then by count); each group gathers its depth-sorted coefficient and feature rows once and
    steps through them `GC` Gaussians at a time with dense [tiles, GC, pixels] tensors over the
    tiles whose lists reach that far, carrying each pixel's transmittance (set to 0 once the
    pixel is done), and stops once every pixel of the group is done. Without grad all updates
    are in place. Returns per-tile sums [n_tiles, 5, npix] of w * (r, g, b, depth, 1) and the
    per-pixel index [n_tiles, npix] of the id with the largest sum of w (0 in tiles without
    agent Gaussians, whose id weights are not computed).
    """
    device, dtype = p.means2d.device, p.means2d.dtype
    n_tiles, npix, P, pad = counts.shape[0], tile_size * tile_size, len(p.cam), len(flat)
    pid_of = torch.cat([flat, flat.new_full((1,), P)])  # intersection -> pair; the last one pads
    coef = _coefficient_table(p, pid_of, torch.cat([tile_of, tile_of.new_zeros(1)]), n_tiles, tw, th, tile_size)
    feats = torch.cat([torch.cat([colors, p.depths[:, None], torch.ones_like(p.depths)[:, None]], -1),
                       torch.zeros(1, 5, dtype=dtype, device=device)])  # [P+1, 5]
    with torch.no_grad():
        onehot = torch.cat([F.one_hot(id_of_pair, n_ids).to(dtype), torch.zeros(1, n_ids, dtype=dtype, device=device)])
        has_agent = torch.zeros(n_tiles, dtype=torch.bool, device=device)
        if n_ids > 1:
            has_agent[tile_of[(onehot[:, 1:].sum(-1) > 0).index_select(0, flat)]] = True
    order, groups = _tile_groups(counts, has_agent, max(1, CHUNK_ELEMENTS // (GC * npix)))
    starts = (torch.cumsum(counts, 0) - counts).index_select(0, order)
    plans = [(a0, a1, ids, *_group_rows(cnt, starts[a0:a1], pad)) for a0, a1, cnt, ids in groups]
    PF = _pixel_features(tile_size, dtype, device)  # [6, npix]
    best = torch.zeros(len(order) + 1, npix, dtype=torch.long, device=device)  # last row: empty tiles
    if need_grad:
        out = _groups_with_grad(plans, coef, pid_of, feats, onehot, PF, best)
    else:
        with torch.no_grad():
            out = _groups_in_place(plans, coef, pid_of, torch.cat([feats, onehot], -1), PF, best)
    inv = torch.full((n_tiles,), len(order), dtype=torch.long, device=device)
    inv[order] = torch.arange(len(order), device=device)
    return out.index_select(0, inv), best.index_select(0, inv)


def _groups_in_place(plans, coef, pid_of, feats_ids, PF, best) -> Tensor:
    """No-grad compositing of every group (ids as extra feature channels where they are needed)
    into [n_busy + 1, 5, npix] (the last row zero). Gathers go to buffers allocated once."""
    dtype, device, npix, nfi = coef.dtype, coef.device, PF.shape[1], feats_ids.shape[1]
    n_rows = max(len(plan[3]) for plan in plans)
    pk_buf = torch.empty(n_rows, dtype=torch.long, device=device)
    cg_buf = torch.empty(n_rows, 6, dtype=dtype, device=device)
    fg_buf = torch.empty(n_rows * nfi, dtype=dtype, device=device)
    work = torch.empty(2, max(A * GC for plan in plans for _, A, _ in plan[4]) * npix, dtype=dtype, device=device)
    out = torch.zeros(best.shape[0], 5, npix, dtype=dtype, device=device)
    feats = feats_ids[:, :5].contiguous()
    for a0, a1, ids_here, rows, steps in plans:
        R, nf = len(rows), nfi if ids_here else 5
        pk = torch.index_select(pid_of, 0, rows, out=pk_buf[:R])
        cg = torch.index_select(coef, 0, rows, out=cg_buf[:R])
        fg = torch.index_select(feats_ids if ids_here else feats, 0, pk, out=fg_buf[:R * nf].view(R, nf))
        if ids_here:
            buf = torch.zeros(a1 - a0, nfi, npix, dtype=dtype, device=device)
            _composite_group_(cg, fg, PF, buf, steps, work)
            out[a0:a1] = buf[:, :5]
            best[a0:a1] = buf[:, 5:].argmax(1)
        else:
            _composite_group_(cg, fg, PF, out[a0:a1], steps, work)
    return out


def _groups_with_grad(plans, coef, pid_of, feats, onehot, PF, best) -> Tensor:
    """Differentiable compositing of every group into [n_busy + 1, 5, npix] (the last row zero)."""
    accs = []
    for a0, a1, ids_here, rows, steps in plans:
        pk = pid_of.index_select(0, rows)
        acc, id_acc = _composite_group(coef.index_select(0, rows), feats.index_select(0, pk),
                                       onehot.index_select(0, pk) if ids_here else None, PF, steps)
        accs.append(acc)
        if ids_here:
            best[a0:a1] = id_acc.argmax(1)
    return torch.cat(accs + [torch.zeros(1, 5, PF.shape[1], dtype=coef.dtype, device=coef.device)])


def _thresh(dtype) -> float:
    """The largest float below ALPHA_MIN: F.threshold keeps alpha > it, i.e. alpha >= ALPHA_MIN."""
    return float(torch.nextafter(torch.tensor(ALPHA_MIN, dtype=dtype), torch.tensor(0.0, dtype=dtype)))


def _composite_group_(cg: Tensor, fg: Tensor, PF: Tensor, acc: Tensor, steps, work: Tensor) -> None:
    """No-grad compositing of one tile group into acc [A, nf, npix] (in place).

    cg [rows, 6] log2-alpha coefficients and fg [rows, nf] features of the depth-sorted lists,
    step by step as `_group_rows` lays them out; work [2, >= A GC npix] scratch space
    (no allocation per step: large allocations cost page faults)."""
    npix = PF.shape[1]
    thresh = _thresh(cg.dtype)
    one = torch.ones((), dtype=cg.dtype, device=cg.device)
    T = torch.ones(acc.shape[0], npix, dtype=cg.dtype, device=cg.device)  # 0 once a pixel is done
    for off, A, n in steps:
        T = T[:A]
        w = torch.mm(_step_block(cg, off, A, n).reshape(A * n, 6), PF, out=work[0, :A * n * npix].view(A * n, npix)).view(A, n, npix)
        F.threshold_(w.clamp_(_LOG2_ALPHA_FLOOR, _LOG2_ALPHA_MAX).exp2_(), thresh, 0.0)  # alpha
        T_incl = torch.sub(one, w, out=work[1, :A * n * npix].view(A, n, npix))
        T_incl[:, 0].mul_(T)
        T_incl.cumprod_(1)
        T_next = F.threshold(T_incl[:, -1], T_MIN, 0.0)  # a pixel stops before T would reach T_MIN
        done = T_next == 0
        w[:, 1:].mul_(T_incl[:, :-1])
        w[:, 0].mul_(T)  # w = alpha * T_excl
        if bool(done.any()):  # 0/1 mask, much faster than masked_fill_ on CPU
            w.mul_(F.threshold_(T_incl, T_MIN, 0.0).sign_())
        acc[:A].add_(torch.bmm(_step_block(fg, off, A, n).transpose(1, 2), w))
        T = T_next
        if bool(done.all()):
            break


def _composite_group(cg: Tensor, fg: Tensor, og: Tensor | None, PF: Tensor, steps):
    """Differentiable compositing of one tile group (rows as in `_composite_group_`): returns
    acc [A, 5, npix] and, when og [rows, n_ids] is given, the per-id weights [A, n_ids, npix]
    (without grad)."""
    npix, A0 = PF.shape[1], steps[0][1]
    thresh = _thresh(cg.dtype)
    T = torch.ones(A0, npix, dtype=cg.dtype, device=cg.device)
    acc = torch.zeros(A0, 5, npix, dtype=cg.dtype, device=cg.device)
    id_acc = torch.zeros(A0, og.shape[-1], npix, dtype=cg.dtype, device=cg.device) if og is not None else None
    finished, id_finished = [], []  # rows of tiles whose lists ended, last tiles first
    # one split per group (its backward is one concatenation; slicing per step would zero-fill
    # the group's gradient once per step)
    sizes = [A * GC for _, A, _ in steps]
    blocks = zip(steps, cg.split(sizes), fg.split(sizes), og.split(sizes) if og is not None else [None] * len(steps))
    for (_, A, n), cb, fb, ob in blocks:
        if A < T.shape[0]:
            finished.append(acc[A:])
            acc, T = acc[:A], T[:A]
            if id_acc is not None:
                id_finished.append(id_acc[A:])
                id_acc = id_acc[:A]
        la = torch.mm(_step_block(cb, 0, A, n).reshape(A * n, 6), PF).view(A, n, npix)  # log2 alpha
        alpha = F.threshold(torch.exp2(la.clamp(_LOG2_ALPHA_FLOOR, _LOG2_ALPHA_MAX)), thresh, 0.0)
        T_incl = T[:, None] * torch.cumprod(1 - alpha, 1)
        cross = T_incl[:, -1] <= T_MIN
        if cross.any():  # a pixel stops before the Gaussian that brings T to <= T_MIN
            alpha = alpha * F.threshold(T_incl.detach(), T_MIN, 0.0).sign_()
        w = alpha * torch.cat([T[:, None], T_incl[:, :-1]], 1)  # blending weights
        contrib = torch.bmm(_step_block(fb, 0, A, n).transpose(1, 2), w)  # [A, 5, npix]
        acc = acc + contrib
        T = (T - contrib[:, 4]).masked_fill(cross, 0.0)
        if id_acc is not None:
            with torch.no_grad():
                id_acc += torch.bmm(_step_block(ob, 0, A, n).transpose(1, 2), w.detach())
        if bool(cross.all()):
            break
    acc = torch.cat([acc] + finished[::-1])
    return acc, (torch.cat([id_acc] + id_finished[::-1]) if id_acc is not None else None)


# ---------------------------------------------------------------------------------------------
# gsplat backend (CUDA)
# ---------------------------------------------------------------------------------------------

def _render_gsplat(g, viewmats, Ks, width, height, bg, near, far, tile_size) -> RenderOutput:
    from gsplat import rasterization

    C, device, dtype = viewmats.shape[0], g.device, g.means.dtype
    if len(g) == 0:
        _warn_blind(torch.zeros(C), 0)
        return _empty_output(C, height, width, bg, dtype, device)
    unique_ids, id_index = torch.unique(g.ids, return_inverse=True)
    K = len(unique_ids)
    colors = torch.cat([g.colors, F.one_hot(id_index, K).to(dtype)], -1)  # [N, 3 + K]
    bgs = torch.cat([bg, torch.zeros(K, dtype=dtype, device=device)]).expand(C, 3 + K).contiguous()
    out, alphas, meta = rasterization(
        g.means, g.quats, g.scales, g.opacities, colors, viewmats, Ks, width, height,
        near_plane=near, far_plane=far, eps2d=EPS2D, tile_size=tile_size, backgrounds=bgs,
        render_mode="RGB+ED", rasterize_mode="classic", packed=False)
    radii = meta["radii"]  # [C, N, 2]
    _warn_blind((radii > 0).all(-1).sum(-1), len(g))
    alpha = alphas[..., 0]
    depth = torch.where(alpha > 0, out[..., -1], torch.zeros_like(alpha))
    agent = _agent_id(out[..., 3:3 + K].detach(), alpha.detach(), unique_ids)
    return RenderOutput(rgb=out[..., :3], depth=depth, alpha=alpha, agent_id=agent)
