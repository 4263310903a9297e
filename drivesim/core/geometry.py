"""Oriented boxes and 2D transforms on batched torch tensors.

Every function broadcasts over leading dimensions. A box is (x, y, yaw, length, width) with
(x, y) its centre; corners are ordered front-left, rear-left, rear-right, front-right.
"""

from __future__ import annotations

import math

import torch


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def rotate(xy: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """Rotate vectors xy [..., 2] by yaw [...] (counter-clockwise)."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y], dim=-1)


def to_local(xy_world: torch.Tensor, origin_xy: torch.Tensor, origin_yaw: torch.Tensor) -> torch.Tensor:
    """World points [..., 2] into the frame of a pose (origin_xy [..., 2], origin_yaw [...])."""
    return rotate(xy_world - origin_xy, -origin_yaw)


def box_corners(x, y, yaw, length, width) -> torch.Tensor:
    """Corners [..., 4, 2] of oriented boxes."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    lx = torch.stack([hl, -hl, -hl, hl], dim=-1)  # [..., 4]
    ly = torch.stack([hw, hw, -hw, -hw], dim=-1)
    cx = x.unsqueeze(-1) + c.unsqueeze(-1) * lx - s.unsqueeze(-1) * ly
    cy = y.unsqueeze(-1) + s.unsqueeze(-1) * lx + c.unsqueeze(-1) * ly
    return torch.stack([cx, cy], dim=-1)


def _projected_radius(axis_c, axis_s, yaw, hl, hw):
    # half extent of a box (yaw, hl, hw) projected on the unit axis (axis_c, axis_s)
    return hl * (torch.cos(yaw) * axis_c + torch.sin(yaw) * axis_s).abs() + hw * (
        -torch.sin(yaw) * axis_c + torch.cos(yaw) * axis_s
    ).abs()


def boxes_overlap(a: tuple, b: tuple) -> torch.Tensor:
    """Exact oriented-box intersection by the separating axis theorem.

    a, b: tuples (x, y, yaw, length, width) of broadcastable tensors. Touching boxes count as
    overlapping. Returns a bool tensor of the broadcast shape.
    """
    ax, ay, ayaw, al, aw = a
    bx, by, byaw, bl, bw = b
    dx, dy = bx - ax, by - ay
    separated = torch.zeros(torch.broadcast_shapes(dx.shape, ayaw.shape, byaw.shape), dtype=torch.bool, device=dx.device)
    for yaw in (ayaw, byaw):
        for axis in (yaw, yaw + math.pi / 2):
            c, s = torch.cos(axis), torch.sin(axis)
            dist = (dx * c + dy * s).abs()
            reach = _projected_radius(c, s, ayaw, 0.5 * al, 0.5 * aw) + _projected_radius(c, s, byaw, 0.5 * bl, 0.5 * bw)
            separated = separated | (dist > reach)
    return ~separated


def segment_hits_box(p0: torch.Tensor, p1: torch.Tensor, box: tuple) -> torch.Tensor:
    """Does the segment p0-p1 ([..., 2]) touch the oriented box? (Liang-Barsky in the box frame)."""
    x, y, yaw, length, width = box
    origin = torch.stack([x, y], dim=-1)
    q0 = to_local(p0, origin, yaw)
    q1 = to_local(p1, origin, yaw)
    d = q1 - q0
    t0 = torch.zeros_like(q0[..., 0])
    t1 = torch.ones_like(q0[..., 0])
    ok = torch.ones_like(t0, dtype=torch.bool)
    for k, half in ((0, 0.5 * length), (1, 0.5 * width)):
        for sign in (-1.0, 1.0):
            # constraint: sign * (q0 + t d) <= half
            num = half - sign * q0[..., k]
            den = sign * d[..., k]
            parallel = den.abs() < 1e-12
            ok = ok & ~(parallel & (num < 0))
            t = num / torch.where(parallel, torch.ones_like(den), den)
            t1 = torch.where(~parallel & (den > 0), torch.minimum(t1, t), t1)
            t0 = torch.where(~parallel & (den < 0), torch.maximum(t0, t), t0)
    return ok & (t0 <= t1)
