"""Polylines as tensors: resampling, curve speeds and the Frenet projection on candidate segments.

`project_on_segments` is the plain form (segment rows [..., K, 2] pairs); `project_on_segment_fields`
the simulator's hot-path form on separate contiguous fields (bank.py's `seg_fields`): the same
arithmetic per element, so the same bits (tests/map/test_projection_twin.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline [P, 2] at (at most) `spacing` metres, keeping both ends."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    points, s = points[keep], np.concatenate([[0.0], np.cumsum(seg[seg > 1e-6])])
    n = max(2, int(math.ceil(s[-1] / spacing)) + 1)
    s_new = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(s_new, s, points[:, 0]), np.interp(s_new, s, points[:, 1])], axis=1)


CURVE_LAT_ACCEL = 3.0  # m/s^2 comfortable lateral acceleration in curves (nuPlan's bound is 4.89)
CURVE_YAW_RATE = 0.8  # rad/s (nuPlan's bound is 0.95)


def curve_speed(points: np.ndarray, lookahead: float = 30.0) -> np.ndarray:
    """Comfortable speed [P] at each point of a polyline [P, 2] (about 2 m spacing): the lowest
    of sqrt(a_lat / curvature) and yaw_rate / curvature over the next `lookahead` metres."""
    if len(points) < 3:
        return np.full(len(points), 1e3)
    seg = np.diff(points, axis=0)
    length = np.maximum(np.linalg.norm(seg, axis=1), 1e-6)
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi)
    curv = np.concatenate([[0.0], turn / (0.5 * (length[1:] + length[:-1])), [0.0]])
    curv = np.convolve(curv, np.ones(3) / 3, mode="same")  # a little smoothing of the polyline corners
    vmax = np.minimum(np.sqrt(CURVE_LAT_ACCEL / np.maximum(curv, 1e-6)), CURVE_YAW_RATE / np.maximum(curv, 1e-6))
    ahead = max(1, int(round(lookahead / max(float(length.mean()), 1e-3))))
    padded = np.concatenate([vmax, np.full(ahead, vmax[-1])])
    return np.minimum.reduce([padded[k : k + len(vmax)] for k in range(ahead + 1)])


def project_on_segments(a, tangent, seglen, sa, k, nseg, xy):
    """Project xy [..., 2] on candidate segments of polylines: start points a [..., K, 2], unit
    tangents, lengths and start arc lengths sa [..., K], segment indices k [..., K]; nseg [...] is
    the polyline's segment count (its first and last segments extrapolate).
    Returns (s, d, seg, yaw) with d positive to the left."""
    ap = xy.unsqueeze(-2) - a
    t = (ap * tangent).sum(-1)  # metres along each segment
    lo = torch.where(k == 0, -1e9, 0.0)
    hi = torch.where(k == (nseg - 1).unsqueeze(-1), 1e9, seglen)
    tc = torch.maximum(torch.minimum(t, hi), lo)
    dist2 = (ap * ap).sum(-1) - 2 * tc * t + tc * tc
    best = dist2.argmin(dim=-1, keepdim=True)
    pick = lambda v: v.gather(-1, best).squeeze(-1)
    tx, ty = pick(tangent[..., 0]), pick(tangent[..., 1])
    d = tx * pick(ap[..., 1]) - ty * pick(ap[..., 0])
    return pick(sa + tc), d, pick(k), torch.atan2(ty, tx)


def project_on_polylines(a, b, sa, k, nseg, xy):
    """project_on_segments for segments given by their end points a, b [..., K, 2]."""
    ab = b - a
    seglen = ab.norm(dim=-1).clamp(min=1e-6)
    return project_on_segments(a, ab / seglen.unsqueeze(-1), seglen, sa, k, nseg, xy)


def project_on_segment_fields(ax, ay, tx, ty, seglen, sa, k, nseg, x, y):
    """`project_on_segments` on separate fields: segment starts ax, ay, unit tangents tx, ty,
    lengths and start arc lengths [..., K], segment indices k [..., K], nseg [...]; the point
    x, y [...]. Same operations per element as the plain form (a sum over two terms is the one
    addition), on contiguous tensors and with one gather per output."""
    px, py = x.unsqueeze(-1) - ax, y.unsqueeze(-1) - ay  # [..., K]
    t = px * tx + py * ty  # metres along each segment
    lo = torch.where(k == 0, -1e9, 0.0)
    hi = torch.where(k == (nseg - 1).unsqueeze(-1), 1e9, seglen)
    tc = torch.maximum(torch.minimum(t, hi), lo)
    dist2 = (px * px + py * py) - 2 * tc * t + tc * tc
    best = dist2.argmin(dim=-1, keepdim=True)
    pick = lambda v: v.gather(-1, best).squeeze(-1)
    bx, by = pick(tx), pick(ty)
    d = bx * pick(py) - by * pick(px)
    return pick(sa + tc), d, pick(k), torch.atan2(by, bx)
