"""Gaussian scenes of simulator states: agent assets moved to their boxes, a procedural background.

- Agents: one asset per kind (car, truck, pedestrian, cyclist, cone, barrier), built once as
  Gaussians in a unit box (x in [-0.5, 0.5] along the length, y in [-0.5, 0.5] across, z in
  [0, 1] of the kind's height), padded to one size so that all agents of a row are scaled to
  their (length, width, height) and moved to (x, y, yaw) in one batched operation.
- Background (`build_background`): from the RoadMap: asphalt over the drivable area, white and
  yellow lane markings and stop lines, curbs, sidewalks, grass and dirt around, buildings and
  trees set back from the road; deterministic from a seed. The sky is the render background
  colour `SKY`.
- `compose(background, state, b)`: background + the valid agents of row b (ids = agent slot).
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
import torch
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiPolygon, Polygon

from drivesim.core.types import AgentType
from drivesim.map.road import RoadMap
from drivesim.render.splat.gaussians import Gaussians

SKY = (0.62, 0.75, 0.90)  # the render background colour
KINDS = ("car", "truck", "pedestrian", "cyclist", "cone", "barrier")
HEIGHTS = torch.tensor([1.5, 3.2, 1.75, 1.7, 0.7, 1.0])  # m, per kind
PAINT = np.array([[0.75, 0.10, 0.10], [0.12, 0.25, 0.60], [0.85, 0.85, 0.85], [0.15, 0.15, 0.17], [0.55, 0.57, 0.60],
                  [0.15, 0.45, 0.25], [0.85, 0.65, 0.15], [0.45, 0.30, 0.20], [0.30, 0.60, 0.80], [0.60, 0.20, 0.55]])


# ------------------------------------------------------------------------------ asset building
class _Parts:
    """Accumulates Gaussians (numpy) of an asset or a background layer."""

    def __init__(self):
        self.means, self.scales, self.yaws, self.colors, self.opac, self.paint = [], [], [], [], [], []

    def add(self, means, scales, colors, opacity=1.0, yaw=0.0, paint=False) -> None:
        means = np.atleast_2d(np.asarray(means, float))
        n = len(means)
        self.means.append(means)
        self.scales.append(np.broadcast_to(np.asarray(scales, float), (n, 3)))
        self.colors.append(np.broadcast_to(np.asarray(colors, float), (n, 3)))
        self.opac.append(np.broadcast_to(np.asarray(opacity, float), (n,)))
        self.yaws.append(np.broadcast_to(np.asarray(yaw, float), (n,)))
        self.paint.append(np.full(n, paint))

    def shell(self, lo, hi, colors, spacing, thickness=0.02, paint=False, bottom=False, yaw=0.0, centre=(0.0, 0.0)):
        """Flat Gaussians covering the faces of an axis-aligned box lo..hi (then turned by yaw about
        `centre` in the xy plane). `colors` is one RGB or a function (points, face normal) -> [N, 3]."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
        for axis in range(3):
            for side in (0, 1):
                if axis == 2 and side == 0 and not bottom:
                    continue
                u, v = [a for a in range(3) if a != axis]
                nu = max(1, int(math.ceil((hi[u] - lo[u]) / spacing[u])))
                nv = max(1, int(math.ceil((hi[v] - lo[v]) / spacing[v])))
                gu = lo[u] + (np.arange(nu) + 0.5) * (hi[u] - lo[u]) / nu
                gv = lo[v] + (np.arange(nv) + 0.5) * (hi[v] - lo[v]) / nv
                pts = np.zeros((nu * nv, 3))
                pts[:, u], pts[:, v] = np.repeat(gu, nv), np.tile(gv, nu)
                pts[:, axis] = hi[axis] if side else lo[axis]
                sc = np.zeros(3)
                sc[u], sc[v], sc[axis] = 0.6 * (hi[u] - lo[u]) / nu, 0.6 * (hi[v] - lo[v]) / nv, thickness
                normal = np.zeros(3)
                normal[axis] = 1.0 if side else -1.0
                col = colors(pts, normal) if callable(colors) else colors
                if yaw:
                    c, s = math.cos(yaw), math.sin(yaw)
                    xy = pts[:, :2] - centre
                    pts[:, :2] = np.c_[c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]] + centre
                self.add(pts, sc, col, 1.0, yaw, paint)

    def arrays(self) -> dict[str, np.ndarray]:
        cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)
        return {"means": cat(self.means, (0, 3)), "scales": cat(self.scales, (0, 3)), "yaws": cat(self.yaws, (0,)),
                "colors": cat(self.colors, (0, 3)), "opac": cat(self.opac, (0,)), "paint": cat(self.paint, (0,)).astype(bool)}

    def gaussians(self, dtype=torch.float32) -> Gaussians:
        a = self.arrays()
        half = torch.as_tensor(a["yaws"], dtype=dtype) / 2
        quats = torch.stack([torch.cos(half), torch.zeros_like(half), torch.zeros_like(half), torch.sin(half)], -1)
        t = lambda k: torch.as_tensor(a[k], dtype=dtype)
        return Gaussians(t("means"), quats, t("scales"), t("opac").clamp(0, 0.99), t("colors").clamp(0, 1),
                         torch.full((len(quats),), -1, dtype=torch.long))


DARK, GLASS, TYRE = (0.08, 0.08, 0.09), (0.12, 0.16, 0.22), (0.05, 0.05, 0.05)


def _car() -> _Parts:
    p = _Parts()
    p.shell((-0.5, -0.5, 0.17), (0.5, 0.5, 0.55), PAINT[0], (0.1, 0.2, 0.13), paint=True, bottom=True)
    p.shell((-0.32, -0.43, 0.55), (0.22, 0.43, 0.97), GLASS, (0.1, 0.2, 0.14))
    p.add([(-0.05, 0, 0.975)], (0.25, 0.4, 0.015), PAINT[0], paint=True)  # roof
    for x in (-0.32, 0.32):
        p.add([(x, -0.49, 0.2), (x, 0.49, 0.2)], (0.07, 0.05, 0.12), TYRE)
    p.add([(0.5, -0.34, 0.45), (0.5, 0.34, 0.45)], (0.01, 0.08, 0.04), (1.0, 0.95, 0.8))  # headlights
    p.add([(-0.5, -0.38, 0.47), (-0.5, 0.38, 0.47)], (0.01, 0.07, 0.04), (0.85, 0.05, 0.05))  # tail lights
    return p


def _truck() -> _Parts:
    p = _Parts()
    p.shell((0.3, -0.5, 0.12), (0.5, 0.5, 0.78), PAINT[0], (0.07, 0.2, 0.1), paint=True)  # cab
    p.add([(0.5, 0, 0.63)], (0.01, 0.4, 0.07), GLASS)  # windscreen
    p.shell((-0.5, -0.5, 0.14), (0.28, 0.5, 1.0), (0.82, 0.82, 0.80), (0.06, 0.2, 0.1), bottom=True)  # cargo box
    for x in (-0.38, -0.25, 0.38):
        p.add([(x, -0.49, 0.11), (x, 0.49, 0.11)], (0.04, 0.05, 0.11), TYRE)
    p.add([(0.5, -0.38, 0.2), (0.5, 0.38, 0.2)], (0.01, 0.06, 0.02), (1.0, 0.95, 0.8))
    p.add([(-0.5, -0.4, 0.2), (-0.5, 0.4, 0.2)], (0.01, 0.05, 0.02), (0.85, 0.05, 0.05))
    return p


def _pedestrian() -> _Parts:
    p = _Parts()
    for y in (-0.15, 0.15):  # legs
        p.add([(0, y, z) for z in (0.1, 0.25, 0.4)], (0.12, 0.1, 0.09), (0.15, 0.15, 0.25))
    p.add([(0, 0, z) for z in (0.55, 0.66, 0.77)], (0.18, 0.33, 0.08), PAINT[0], paint=True)  # torso
    p.add([(0, y, 0.66) for y in (-0.42, 0.42)], (0.1, 0.08, 0.12), PAINT[0], paint=True)  # arms
    p.add([(0, 0, 0.91)], (0.15, 0.15, 0.06), (0.85, 0.65, 0.5))  # head
    return p


def _cyclist() -> _Parts:
    p = _Parts()
    for x in (-0.33, 0.33):  # wheels: thin discs in the xz plane
        p.add([(x, 0, 0.2)], (0.15, 0.04, 0.2), TYRE)
    p.add([(0, 0, 0.33), (0.12, 0, 0.42)], (0.25, 0.05, 0.04), (0.6, 0.6, 0.65))  # frame
    p.add([(-0.02, 0, z) for z in (0.58, 0.68, 0.78)], (0.1, 0.3, 0.07), PAINT[0], paint=True)  # rider
    p.add([(0.0, 0, 0.45)], (0.08, 0.25, 0.12), (0.15, 0.15, 0.25))  # legs
    p.add([(0.0, 0, 0.91)], (0.07, 0.18, 0.06), (0.85, 0.65, 0.5))
    return p


def _cone() -> _Parts:
    p = _Parts()
    for i, z in enumerate(np.linspace(0.08, 0.9, 6)):
        r = 0.45 * (1 - z) + 0.04
        p.add([(0, 0, z)], (r, r, 0.1), (0.95, 0.95, 0.95) if i == 3 else (1.0, 0.4, 0.0))
    return p


def _barrier() -> _Parts:
    stripes = lambda pts, n: np.where((np.floor(pts[:, 0:1] * 6 + pts[:, 1:2] * 6) % 2) == 0, [[0.9, 0.1, 0.1]], [[0.95, 0.95, 0.95]])
    p = _Parts()
    p.shell((-0.5, -0.5, 0.3), (0.5, 0.5, 1.0), stripes, (0.08, 0.25, 0.12))
    p.add([(-0.4, 0, 0.15), (0.4, 0, 0.15)], (0.05, 0.4, 0.15), (0.35, 0.35, 0.35))  # feet
    return p


@dataclass(frozen=True)
class AgentAssets:
    """All kinds' unit-box assets padded to K Gaussians (padding has zero opacity)."""

    means: torch.Tensor  # [KINDS, K, 3] unit box
    scales: torch.Tensor  # [KINDS, K, 3] unit box
    colors: torch.Tensor  # [KINDS, K, 3]
    opacities: torch.Tensor  # [KINDS, K]
    paint: torch.Tensor  # [KINDS, K] bool: takes the agent's paint colour

    @staticmethod
    def build() -> "AgentAssets":
        parts = [f().arrays() for f in (_car, _truck, _pedestrian, _cyclist, _cone, _barrier)]
        K = max(len(a["opac"]) for a in parts)
        pad = lambda x, k: np.concatenate([x, np.zeros((K - len(x), *x.shape[1:]), x.dtype)]) if len(x) < K else x
        stack = lambda k, dtype=torch.float32: torch.as_tensor(np.stack([pad(a[k], k) for a in parts]), dtype=dtype)
        return AgentAssets(stack("means"), stack("scales"), stack("colors"), stack("opac"), stack("paint", torch.bool))


@functools.lru_cache(maxsize=None)
def _assets_on(device: str) -> AgentAssets:
    """The built assets on one device (pure: the same every call, so cached by device name)."""
    a = AgentAssets.build()
    return AgentAssets(*(getattr(a, f).to(device) for f in ("means", "scales", "colors", "opacities", "paint")))


def agent_assets(device="cpu") -> AgentAssets:
    return _assets_on(str(device))


def agent_kinds(agent_type: torch.Tensor, length: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Asset kind (index in KINDS) of each agent from its type and size."""
    kind = torch.zeros_like(agent_type)
    kind = torch.where((agent_type == AgentType.VEHICLE) & (length >= 6.0), 1, kind)
    kind = torch.where(agent_type == AgentType.PEDESTRIAN, 2, kind)
    kind = torch.where(agent_type == AgentType.CYCLIST, 3, kind)
    static = agent_type == AgentType.STATIC
    kind = torch.where(static & (torch.maximum(length, width) < 0.8), 4, kind)
    kind = torch.where(static & (torch.maximum(length, width) >= 0.8) & (length < 3.0), 5, kind)
    return torch.where(static & (length >= 3.0), 0, kind)  # a parked object of car size


def agent_gaussians(x, y, yaw, length, width, agent_type, ids, seed: int = 0) -> Gaussians:
    """Gaussians of N agents [N] (tensors), ids [N] their agent slots; one batched transform."""
    dev, dtype = x.device, torch.float32
    assets = agent_assets(dev)
    kind = agent_kinds(agent_type, length, width)  # [N]
    size = torch.stack([length, width, HEIGHTS.to(dev)[kind]], -1).to(dtype)  # [N, 3]
    local = assets.means[kind] * size[:, None]  # [N, K, 3]
    c, s = torch.cos(yaw).to(dtype)[:, None], torch.sin(yaw).to(dtype)[:, None]
    wx = x.to(dtype)[:, None] + c * local[..., 0] - s * local[..., 1]
    wy = y.to(dtype)[:, None] + s * local[..., 0] + c * local[..., 1]
    means = torch.stack([wx, wy, local[..., 2]], -1)
    paint = torch.as_tensor(PAINT, dtype=dtype, device=dev)[(ids * 7 + seed) % len(PAINT)]  # [N, 3]
    colors = torch.where(assets.paint[kind][..., None], paint[:, None], assets.colors[kind])
    half = (yaw.to(dtype) / 2)[:, None].expand_as(wx)
    quats = torch.stack([torch.cos(half), torch.zeros_like(half), torch.zeros_like(half), torch.sin(half)], -1)
    keep = assets.opacities[kind] > 0  # [N, K]
    return Gaussians(means[keep], quats[keep], (assets.scales[kind] * size[:, None])[keep],
                     assets.opacities[kind][keep], colors[keep], ids[:, None].expand_as(keep)[keep].long())


def compose(background: Gaussians, state, b: int, include_ego: bool = False, seed: int = 0) -> Gaussians:
    """The scene of row b of a SimState: background + its valid agents (ids = agent slots)."""
    valid = state.valid[b].clone()
    if not include_ego:
        valid[0] = False
    idx = valid.nonzero().flatten()
    g = lambda t: t[b, idx]
    agents = agent_gaussians(g(state.x), g(state.y), g(state.yaw), g(state.length), g(state.width),
                             g(state.agent_type), idx, seed).to(background.device)
    return Gaussians.cat([background, agents])


# ---------------------------------------------------------------------------------- background
@dataclass(frozen=True)
class SceneConfig:
    """The procedural background; spacings are divided by `density` (1: about 20-60k Gaussians)."""

    density: float = 1.0
    road_spacing: float = 0.8  # m between asphalt Gaussians
    sidewalk: float = 3.0  # m wide
    grass_band: float = 20.0  # m of fine ground beyond the sidewalks
    margin: float = 150.0  # m of coarse ground around the map
    building_every: float = 22.0  # m along the road edges between building plots
    tree_every: float = 14.0  # m between street trees

    def __post_init__(self):
        if not self.density > 0:
            raise ValueError(f"SceneConfig.density must be positive, got {self.density}")


def _grid(bounds, spacing: float, rng, jitter: float = 0.25) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    xs, ys = np.arange(x0, x1 + spacing, spacing), np.arange(y0, y1 + spacing, spacing)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    return pts + rng.uniform(-jitter, jitter, pts.shape) * spacing


def _inside(geom, pts: np.ndarray) -> np.ndarray:
    shapely.prepare(geom)
    return shapely.contains_xy(geom, pts[:, 0], pts[:, 1])


def _resample(line: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every `step` m along a polyline [P, 2], with their arc length and unit tangent."""
    seg = np.diff(line, axis=0)
    s = np.r_[0.0, np.cumsum(np.linalg.norm(seg, axis=1))]
    q = np.arange(step / 2, s[-1], step)
    pts = np.stack([np.interp(q, s, line[:, 0]), np.interp(q, s, line[:, 1])], -1)
    k = np.clip(np.searchsorted(s, q) - 1, 0, len(seg) - 1)
    tang = seg[k] / np.maximum(np.linalg.norm(seg[k], axis=1, keepdims=True), 1e-9)
    return pts, q, tang


def _flat(parts: _Parts, pts, spacing, color, z, rng, noise=0.03, opacity=0.85) -> None:
    col = np.clip(np.asarray(color) + rng.normal(0, noise, (len(pts), 1)), 0, 1)
    parts.add(np.c_[pts, np.full(len(pts), z)], (0.6 * spacing, 0.6 * spacing, 0.02), col, opacity)


def _markings(road: RoadMap) -> list[tuple[np.ndarray, str]]:
    """(boundary polyline, style) per lane edge: 'dashed' between same-direction lanes, 'yellow'
    where an oncoming lane lies beyond (drawn from both sides: a double line), else 'edge'."""
    lines = []
    for lane in road.lanes:
        if lane.kind == "connector":
            continue
        cl = np.asarray(lane.centerline, float)
        tang = np.gradient(cl, axis=0)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        left = np.stack([-tang[:, 1], tang[:, 0]], 1)
        for sign, neighbour in ((1, lane.left), (-1, lane.right)):
            edge = cl + sign * left * lane.width / 2
            if neighbour != -1:
                if sign == 1:  # the neighbour draws the same line as its right edge: skip that one
                    lines.append((edge, "dashed"))
                continue
            probe, _, tang_e = _resample(edge, 2.0)  # inner points (the ends lie on the map's boundary)
            beyond = probe + sign * np.stack([-tang_e[:, 1], tang_e[:, 0]], 1) * 0.8
            oncoming = len(beyond) > 0 and _inside(road.drivable, beyond).mean() > 0.5
            if oncoming and sign == 1:
                lines.append((edge - left * 0.12, "yellow"))
            elif not oncoming:
                lines.append((edge - sign * left * 0.15, "edge"))
    for lane_id in road.signal_group:  # stop lines
        lane = road.lanes[lane_id]
        cl = np.asarray(lane.centerline, float)
        t = cl[-1] - cl[-2]
        t /= np.linalg.norm(t)
        n = np.array([-t[1], t[0]]) * lane.width / 2
        lines.append((np.stack([cl[-1] - 0.3 * t + n, cl[-1] - 0.3 * t - n]), "stop"))
    return lines


MARK_STYLE = {"dashed": ((0.92, 0.92, 0.9), 0.07), "edge": ((0.92, 0.92, 0.9), 0.08),
              "yellow": ((0.95, 0.75, 0.1), 0.07), "stop": ((0.95, 0.95, 0.95), 0.2)}


def _road_layer(road: RoadMap, cfg: SceneConfig, rng) -> _Parts:
    parts = _Parts()
    step = 0.5 / cfg.density
    marks = []
    for line, style in _markings(road):
        pts, s, tang = _resample(line, step)
        if style == "dashed":
            keep = (s % 9.0) < 3.0
            pts, tang = pts[keep], tang[keep]
        color, half_width = MARK_STYLE[style]
        yaw = np.arctan2(tang[:, 1], tang[:, 0])
        parts.add(np.c_[pts, np.full(len(pts), 0.02)], (0.6 * step, half_width, 0.01), color, 0.99, yaw)
        marks.append(pts)
    spacing = cfg.road_spacing / cfg.density
    grid = _grid(road.drivable.bounds, spacing, rng)
    grid = grid[_inside(road.drivable, grid)]
    if marks:  # leave the markings visible: no asphalt Gaussian centred on them
        dist, _ = cKDTree(np.concatenate(marks)).query(grid)
        grid = grid[dist > 0.5 * spacing]
    _flat(parts, grid, spacing, (0.25, 0.25, 0.26), 0.0, rng, noise=0.015, opacity=0.7)
    return parts


def _rings(geom) -> list[np.ndarray]:
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    return [np.asarray(r.coords) for p in polys for r in (p.exterior, *p.interiors)]


def _roadside_layer(road: RoadMap, cfg: SceneConfig, rng) -> _Parts:
    """Curbs, sidewalks, fine grass near the road and coarse ground out to the margin."""
    parts = _Parts()
    drivable = road.drivable
    for ring in _rings(drivable):  # curbs
        pts, _, tang = _resample(ring, 0.5 / cfg.density)
        parts.add(np.c_[pts, np.full(len(pts), 0.08)], (0.3 / cfg.density, 0.1, 0.08), (0.72, 0.72, 0.7), 0.99,
                  np.arctan2(tang[:, 1], tang[:, 0]))
    walk = drivable.buffer(cfg.sidewalk + 0.2).difference(drivable.buffer(0.2))
    sp = 1.0 / cfg.density
    pts = _grid(walk.bounds, sp, rng)
    _flat(parts, pts[_inside(walk, pts)], sp, (0.58, 0.57, 0.55), 0.12, rng, noise=0.02, opacity=0.85)
    near = drivable.buffer(cfg.sidewalk + cfg.grass_band).difference(drivable.buffer(cfg.sidewalk + 0.1))
    sp = 1.6 / cfg.density
    pts = _grid(near.bounds, sp, rng)
    _ground(parts, pts[_inside(near, pts)], sp, rng)
    x0, y0, x1, y1 = drivable.bounds
    far = Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]).buffer(cfg.margin).difference(
        drivable.buffer(cfg.sidewalk + cfg.grass_band - 6.0))
    pts = _grid(far.bounds, 6.0, rng, jitter=0.1)
    _ground(parts, pts[_inside(far, pts)], 6.0, rng, z=-0.05)
    return parts


def _ground(parts: _Parts, pts, spacing, rng, z=-0.02) -> None:
    """Grass with dirt patches (a smooth pseudo-noise of position)."""
    wave = np.sin(pts[:, 0] / 13.0 + 1.3) * np.sin(pts[:, 1] / 9.0) + 0.5 * np.sin((pts[:, 0] + pts[:, 1]) / 5.0)
    mix = np.clip((wave - 0.4) * 2.0, 0, 1)[:, None]
    col = (1 - mix) * np.array([0.30, 0.42, 0.20]) + mix * np.array([0.45, 0.38, 0.27])
    col = np.clip(col + rng.normal(0, 0.02, (len(pts), 1)), 0, 1)
    parts.add(np.c_[pts, np.full(len(pts), z)], (0.6 * spacing, 0.6 * spacing, 0.03), col, 0.9)


WALLS = np.array([[0.80, 0.74, 0.62], [0.62, 0.62, 0.64], [0.62, 0.34, 0.26], [0.88, 0.86, 0.80], [0.50, 0.55, 0.60]])


def _building(parts: _Parts, centre, yaw, w, d, h, wall, spacing) -> None:
    lo, hi = np.array([centre[0] - d / 2, centre[1] - w / 2, 0.0]), np.array([centre[0] + d / 2, centre[1] + w / 2, h])

    def facade(pts, normal):
        if normal[2] != 0:
            return np.array([0.35, 0.35, 0.37])
        u = pts[:, 0] if normal[0] == 0 else pts[:, 1]
        window = ((u % 3.0) > 1.2) & ((pts[:, 2] % 3.2) > 1.0) & (pts[:, 2] > 1.0)
        return np.where(window[:, None], [[0.2, 0.25, 0.32]], wall[None])

    parts.shell(lo, hi, facade, (spacing, spacing, spacing * 0.8), thickness=0.05, yaw=yaw, centre=np.asarray(centre))


def _tree(parts: _Parts, xy, rng, scale=1.0) -> None:
    h = rng.uniform(4.0, 7.0) * scale
    parts.add([(xy[0], xy[1], z) for z in np.linspace(0.4, h * 0.5, 3)], (0.15, 0.15, h * 0.12), (0.35, 0.25, 0.15))
    n = 10
    offs = rng.normal(0, 1, (n, 3)) * np.array([1.0, 1.0, 0.8]) * h * 0.16
    col = np.array([0.18, 0.35, 0.14]) + rng.normal(0, 0.04, (n, 3))
    parts.add(np.c_[xy[0] + offs[:, 0], xy[1] + offs[:, 1], h * 0.72 + offs[:, 2]], h * 0.15, col, 0.95)


def _buildings_and_trees(road: RoadMap, cfg: SceneConfig, rng) -> _Parts:
    parts = _Parts()
    drivable = road.drivable
    keep_out = drivable.buffer(cfg.sidewalk + 1.5)
    shapely.prepare(keep_out)
    taken = []
    for ring in _rings(drivable):
        pts, _, tang = _resample(ring, cfg.tree_every)
        for p, t in zip(pts, tang):  # street trees on the sidewalk's outer edge
            n = np.array([-t[1], t[0]])
            out = n if not drivable.contains(shapely.Point(p + n)) else -n
            if rng.random() < 0.6:
                q = p + out * (cfg.sidewalk + 0.8)
                if not keep_out.buffer(-1.0).contains(shapely.Point(q)):
                    _tree(parts, q, rng)
        pts, _, tang = _resample(ring, cfg.building_every)
        for p, t in zip(pts, tang):
            n = np.array([-t[1], t[0]])
            out = n if not drivable.contains(shapely.Point(p + n)) else -n
            w, d, h = rng.uniform(10, 20), rng.uniform(8, 16), rng.uniform(5, 24)
            c = p + out * (cfg.sidewalk + rng.uniform(4, 12) + d / 2)
            yaw = math.atan2(out[1], out[0])
            foot = shapely.affinity.rotate(shapely.box(c[0] - d / 2, c[1] - w / 2, c[0] + d / 2, c[1] + w / 2), yaw,
                                           origin=tuple(c), use_radians=True)
            if keep_out.intersects(foot) or any(f.intersects(foot.buffer(2.0)) for f in taken):
                if rng.random() < 0.5:
                    _tree(parts, c, rng, 1.3)
                continue
            if rng.random() < 0.75:
                taken.append(foot)
                _building(parts, c, yaw, w, d, h, WALLS[rng.integers(len(WALLS))], 1.3 / cfg.density)
            else:
                for _ in range(3):
                    _tree(parts, c + rng.uniform(-5, 5, 2), rng, 1.2)
    return parts


def build_background(road: RoadMap, config: SceneConfig | None = None, seed: int = 0) -> Gaussians:
    """The procedural background Gaussians of a map (ids -1), deterministic from `seed`."""
    cfg = config or SceneConfig()
    # one random stream per layer: the buildings stand in the same places at every density
    layers = [f(road, cfg, np.random.default_rng([seed, i]))
              for i, f in enumerate((_road_layer, _roadside_layer, _buildings_and_trees))]
    return Gaussians.cat([layer.gaussians() for layer in layers])
