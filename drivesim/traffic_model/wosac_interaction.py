"""Interaction features of the WOSAC-style realism metric (traffic_model/wosac.py): the signed
distance from each box to the nearest other valid box, and WOSAC's time to collision with the
object followed.

Per chunk of frames, one bmm scores all agent pairs for the two candidate tests (both are
quadratic forms in the other's position: within the nearest-object radius, on a collision course
within the TTC horizon) and only the few candidate pairs get exact geometry (`box_signed_distance`,
`following_ttc`); padding slots are dropped per chunk. Inputs are [..., A] tensors, the last dim
the agent slot.
"""

from __future__ import annotations

import math

import torch

from drivesim.metrics.boxes import half_diagonal, sat_terms

MAX_HEADING_DIFF = math.radians(75.0)  # WOSAC: an object is followed only if headings differ less
MAX_HEADING_DIFF_SMALL_OVERLAP = math.radians(10.0)  # ... or less than this with < 0.5 m lateral overlap
SMALL_OVERLAP = 0.5  # m
_BIG = 1e30  # added to the pair scores of invalid agents
_BLOCK = 16  # candidate extraction works on blocks of this many others
_MARGIN = 0.5  # m added to the candidate radii (float32 rounding of the quadratic forms)
_WIDE = 1000.0  # m from the frame centre beyond which the forms are evaluated in float64


def nearest_object_and_ttc(x, y, yaw, speed, length, width, valid, cap: float, ttc_max: float,
                           corner_rounding: float = 0.0, chunk_pairs: int = 1 << 20):
    """Signed distance to the nearest other valid box and WOSAC TTC, both shaped like the inputs
    ([..., A], the last dim the agent slot; NaN for invalid slots). Distances above `cap` are
    reported as `cap`; TTC is `ttc_max` without a followed object or when not closing in. Box
    corners are rounded by corner_rounding * min(length, width) / 2; `chunk_pairs` bounds
    frames * A * A per chunk. Candidate pairs come from `_candidates`, exact values from the pairs only."""
    shape, A = x.shape, x.shape[-1]
    x, y, yaw, speed, length, width = (t.reshape(-1, A) for t in (x, y, yaw, speed, length, width))
    valid = valid.reshape(-1, A)
    F = x.shape[0]
    count = valid.sum(dim=1, keepdim=True)
    x = x - (x * valid).sum(dim=1, keepdim=True) / count.clamp(min=1)  # frame-centred: precise quadratic forms
    y = y - (y * valid).sum(dim=1, keepdim=True) / count.clamp(min=1)
    c, s = torch.cos(yaw), torch.sin(yaw)
    shrink = corner_rounding * 0.5 * torch.minimum(length, width)
    fields = (x, y, c, s, speed, length, width, shrink, valid)
    inv_rho2, pairs, work, f0 = torch.zeros_like(x), [], {}, 0  # work: scratch reused by every chunk
    while f0 < F:  # chunks of frames; each keeps only its valid agents (padding is often most of A)
        f1 = min(F, f0 + max(1, chunk_pairs // max(int(count[f0]), 1) ** 2))
        n = max(int(count[f0:f1].max()), 1)
        order = torch.argsort(~valid[f0:f1], dim=1, stable=True)[:, :n]  # [C, n] valid agents first
        rows, inv = _candidates(*(v[f0:f1].gather(1, order) for v in fields), cap, ttc_max, work)
        inv_rho2[f0:f1] = inv_rho2[f0:f1].scatter(1, order, inv)
        base = (f0 + rows[:, 0]) * A
        pairs.append(torch.stack([base + order[rows[:, 0], rows[:, 1]], base + order[rows[:, 0], rows[:, 2]]], 1))
        f0 = f1
    i, j = torch.cat(pairs).unbind(1)  # flat (frame * A + slot) of subject and other
    table = torch.stack([x, y, c, s, yaw, length, width, shrink, speed, inv_rho2], dim=-1).view(F * A, 10)
    xi, yi, ci, si, yaw_i, li, wi, shi, vi, inv_i = table[i].unbind(1)
    xj, yj, cj, sj, yaw_j, lj, wj, shj, vj, _ = table[j].unbind(1)
    dx, dy = xj - xi, yj - yi
    near = ((dx * dx + dy * dy) * inv_i <= 1).nonzero().squeeze(1)  # pairs that can be the nearest
    pick = lambda *t: (v.index_select(0, near) for v in t)
    ndx, ndy, nyi, nli, nwi, nsi, nyj, nlj, nwj, nsj = pick(dx, dy, yaw_i, li, wi, shi, yaw_j, lj, wj, shj)
    d = box_signed_distance(ndx, ndy, nyi, nli - 2 * nsi, nwi - 2 * nsi, nyj, nlj - 2 * nsj, nwj - 2 * nsj) - nsi - nsj
    dist = torch.full((F * A,), cap, dtype=x.dtype, device=x.device).scatter_reduce(0, i[near], d, reduce="amin")
    ttc = following_ttc(i, dx, dy, ci, si, cj, sj, li, wi, lj, wj, vi, vj, F * A, ttc_max)
    undefined = ~valid.reshape(-1)
    return dist.masked_fill_(undefined, math.nan).view(shape), ttc.masked_fill_(undefined, math.nan).view(shape)


def _candidates(x, y, c, s, speed, length, width, shrink, valid, cap: float, horizon: float, work: dict | None = None):
    """Pairs (frame, subject, other) [M, 3] of C frames [C, A] that need an exact test, and the
    subjects' 1 / radius^2 [C, A] of the nearest-object search.

    Nearest object: each signed distance d_j lies in [lb_j, ub_j], lb = centre distance - both
    circumscribed radii R, ub = centre distance - both inscribed radii r; the nearest j has
    lb_j <= min(u, cap) with u = nearest centre distance - r_i - min r (>= that centre's ub), so
    its centre lies within rho = min(u, cap) + R_i + max R.
    Followed object (WOSAC TTC): it lies ahead within |lateral| <= w_i / 2 + max R and matters
    only within L = l_i / 2 + max R + horizon * (v_i - v_min) (farther, gap / (v_i - v_j) >
    horizon): an ellipse through the corners of that band.
    Both tests are quadratic forms in the other's position: one bmm of per-agent vectors scores
    all pairs (frame-centred float32, float64 for frames wider than _WIDE; _MARGIN covers the
    rounding); hits are then extracted block-wise."""
    C, A = x.shape
    Ap = -(-A // _BLOCK) * _BLOCK
    pad = lambda t, v: torch.cat([t, t.new_full((C, Ap - A), v)], dim=1) if Ap > A else t
    pen = torch.where(valid, 0.0, _BIG)
    hd = half_diagonal(length - 2 * shrink, width - 2 * shrink) + shrink
    r_in = 0.5 * torch.minimum(length, width)
    hd_max = torch.where(valid, hd, 0.0).amax(dim=1, keepdim=True)
    r_min = torch.where(valid, r_in, math.inf).amin(dim=1, keepdim=True)
    hd_box = torch.where(valid, half_diagonal(length, width), 0.0).amax(dim=1, keepdim=True)
    v_min = torch.where(valid, speed, math.inf).amin(dim=1, keepdim=True)
    reach = 0.5 * length + hd_box + horizon * (speed - v_min).clamp(min=0)
    a2 = (reach / math.sqrt(2) + _MARGIN) ** -2  # the ellipse through the band's corners
    b2 = ((0.5 * width + hd_box) * math.sqrt(2) + _MARGIN) ** -2
    mxx, myy, mxy = c * c * a2 + s * s * b2, s * s * a2 + c * c * b2, c * s * (a2 - b2)
    qx, qy = x + 0.5 * reach * c, y + 0.5 * reach * s
    mqx, mqy = mxx * qx + mxy * qy, mxy * qx + myy * qy
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    subj = torch.cat([torch.stack([one, zero, one, -2 * x, -2 * y, x * x + y * y + pen, one], -1),  # centre distance^2
                      torch.stack([mxx, 2 * mxy, myy, -2 * mqx, -2 * mqy, qx * mqx + qy * mqy + pen, one], -1)])
    xo, yo = pad(x, 0.0), pad(y, 0.0)
    others = torch.stack([xo * xo, xo * yo, yo * yo, xo, yo, pad(one, 1.0), pad(pen, _BIG)], 1)
    if float(torch.where(valid, x.abs() + y.abs(), 0.0).max()) > _WIDE:  # float32 forms lose the margins
        subj, others = subj.double(), others.double()
    score = torch.bmm(subj, torch.cat([others, others]), out=_scratch(work, "score", (2 * C, A, Ap), subj))
    d2, ellipse = score[:C], score[C:]  # [C, A, Ap] each
    d2[:, :, :A].diagonal(dim1=1, dim2=2).fill_(math.inf)
    ellipse[:, :, :A].diagonal(dim1=1, dim2=2).fill_(math.inf)
    nearest = d2.amin(dim=2).clamp(min=0).sqrt().to(x.dtype)
    rho = (nearest - r_in - r_min).clamp(max=cap) + hd + hd_max + _MARGIN
    inv_rho2 = torch.where(valid, 1.0 / (rho * rho), 1.0)  # invalid rows score >= _BIG anyway
    return _hits(torch.minimum(d2.mul_(inv_rho2.unsqueeze(-1)), ellipse, out=d2), work), inv_rho2


def _scratch(work: dict | None, name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor of `shape` carved from a cached flat buffer (grown when too small)."""
    n, key = math.prod(shape), (name, like.dtype)
    buf = None if work is None else work.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.empty(n, dtype=like.dtype, device=like.device)
        if work is not None:
            work[key] = buf
    return buf[:n].view(shape)


def _hits(score: torch.Tensor, work: dict | None = None) -> torch.Tensor:
    """Indices [M, 3] of score <= 1 in [C, A, Ap] (contiguous, Ap a multiple of _BLOCK), few per row.

    Bool scans are slow on CPU: the others are split in _BLOCK interleaved groups (j = k * nb + b),
    the minimum over k finds the (row, b) that hold a hit, then only those are scanned."""
    C, A, Ap = score.shape
    nb = Ap // _BLOCK
    groups = score.view(C, A, _BLOCK, nb)
    k = _BLOCK // 2
    low = torch.minimum(groups[:, :, :k], groups[:, :, k:], out=_scratch(work, "low", (C, A, k, nb), score))
    while k > 1:  # minimum over the groups' members: halving beats amin over a middle dim
        k //= 2
        low = torch.minimum(low[:, :, :k], low[:, :, k:], out=low[:, :, :k])
    hit = (low[:, :, 0] <= 1).nonzero()  # [Mb, 3] (frame, subject, b)
    start = (hit[:, 0] * A + hit[:, 1]) * Ap + hit[:, 2]
    members = start.unsqueeze(1) + nb * torch.arange(_BLOCK, device=score.device)  # [Mb, _BLOCK] flat
    r, k = (score.view(-1)[members] <= 1).nonzero().unbind(1)
    h = hit[r]
    return torch.stack([h[:, 0], h[:, 1], k * nb + h[:, 2]], dim=1)


def box_signed_distance(dx, dy, yaw_a, len_a, wid_a, yaw_b, len_b, wid_b) -> torch.Tensor:
    """Signed distance between oriented boxes a and b (dx, dy: centre of b minus centre of a):
    the Euclidean gap when apart, minus the penetration depth (shortest separating translation,
    from the separating axes) when they overlap; 0 when they touch."""
    p, reach, _ = sat_terms(dx, dy, yaw_a, len_a, wid_a, yaw_b, len_b, wid_b)
    depth = (p.abs() - reach).amax(dim=-1)  # <= 0 iff the boxes overlap
    rel = yaw_b - yaw_a
    c, s = torch.cos(rel), torch.sin(rel)
    # apart: the gap is reached at a corner of one of the boxes
    gap_b = _corner_gap(p[..., 0], p[..., 1], c, s, 0.5 * len_b, 0.5 * wid_b, 0.5 * len_a, 0.5 * wid_a)
    gap_a = _corner_gap(-p[..., 2], -p[..., 3], c, -s, 0.5 * len_a, 0.5 * wid_a, 0.5 * len_b, 0.5 * wid_b)
    return torch.where(depth <= 0, depth, torch.minimum(gap_a, gap_b))


_SIGN_L = (1.0, 1.0, -1.0, -1.0)
_SIGN_W = (1.0, -1.0, 1.0, -1.0)


def _corner_gap(cx, cy, c, s, hl, hw, box_hl, box_hw):
    """Smallest distance from the 4 corners of a box (centre cx, cy; axes (c, s) and (-s, c); half
    extents hl, hw) to the box [-box_hl, box_hl] x [-box_hw, box_hw] (0 for a corner inside)."""
    sl = torch.tensor(_SIGN_L, dtype=cx.dtype, device=cx.device)
    sw = torch.tensor(_SIGN_W, dtype=cx.dtype, device=cx.device)
    lx, ly = (hl * c).unsqueeze(-1) * sl, (hl * s).unsqueeze(-1) * sl
    wx, wy = (hw * s).unsqueeze(-1) * sw, (hw * c).unsqueeze(-1) * sw
    px = (cx.unsqueeze(-1) + lx - wx).abs_().sub_(box_hl.unsqueeze(-1)).clamp_(min=0)
    py = (cy.unsqueeze(-1) + ly + wy).abs_().sub_(box_hw.unsqueeze(-1)).clamp_(min=0)
    return torch.hypot(px, py).amin(dim=-1)


def following_ttc(subject, dx, dy, ci, si, cj, sj, li, wi, lj, wj, vi, vj, n: int, clamp: float):
    """WOSAC time to collision [n] of each subject with the object it follows, from candidate
    pairs (subject index [M] into n; dx, dy: other minus subject; heading cos/sin, sizes and
    speeds of both): the nearest object ahead (gap > 0) that overlaps laterally with a heading
    within 75 deg (10 deg when the overlap is under 0.5 m); TTC = gap / (v_i - v_j), clamped,
    and `clamp` when not closing in or nothing is followed."""
    lon, lat = dx * ci + dy * si, dy * ci - dx * si
    cos_d, sin_d = ci * cj + si * sj, (sj * ci - cj * si).abs()
    gap = lon - 0.5 * li - 0.5 * (lj * cos_d.abs() + wj * sin_d)
    overlap = lat.abs() - 0.5 * wi - 0.5 * (lj * sin_d + wj * cos_d.abs())
    follows = (gap > 0) & (cos_d >= math.cos(MAX_HEADING_DIFF)) & (overlap < 0) & (
        (overlap < -SMALL_OVERLAP) | (cos_d >= math.cos(MAX_HEADING_DIFF_SMALL_OVERLAP)))
    key = torch.where(follows, gap, math.inf)
    nearest = torch.full((n,), math.inf, dtype=gap.dtype, device=gap.device).scatter_reduce(0, subject, key, "amin")
    pick = follows & (key == nearest[subject])
    closing = vi - vj
    t = torch.where(closing > 0, gap / closing.clamp(min=1e-9), math.inf).clamp(max=clamp)
    out = torch.full((n,), clamp, dtype=gap.dtype, device=gap.device)
    return out.scatter_reduce(0, subject[pick], t[pick], "amin")
