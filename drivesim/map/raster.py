"""Drivable-area rasters of a map: signed distance to the road edge and lane driving directions
(built once per map by MapBank.build; sampled by bank.py)."""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy.ndimage import distance_transform_edt

from drivesim.map.polyline import resample_polyline
from drivesim.map.road import MapError, RoadMap

SDF_CLAMP = (-20.0, 40.0)  # m; covers the WOSAC distance-to-road-edge range
RESOLUTION = 0.25  # m per cell of the drivable-area rasters (MapBank.build's default)
SDF_MARGIN = 6.0  # m of raster around the drivable area
MAX_RASTER_CELLS = 8_000_000  # per map (0.5 km^2 at 0.25 m): building one peaks at ~270 bytes a cell, so <= ~2.2 GB


def raster_shape(drivable, resolution: float, margin: float = SDF_MARGIN) -> tuple[int, int]:
    """(h, w) cells of the signed-distance raster of `drivable`."""
    x0, y0, x1, y1 = drivable.bounds
    return int(math.ceil((y1 - y0 + 2 * margin) / resolution)), int(math.ceil((x1 - x0 + 2 * margin) / resolution))


def check_raster_size(road: RoadMap, resolution: float = RESOLUTION) -> None:
    """MapError when the map's raster would exceed MAX_RASTER_CELLS (checked before any is built)."""
    h, w = raster_shape(road.drivable, resolution)
    if h * w > MAX_RASTER_CELLS:
        x0, y0, x1, y1 = road.drivable.bounds
        raise MapError(f"map {road.name!r} is too large: {x1 - x0:.0f} m x {y1 - y0:.0f} m needs a {w} x {h} raster "
                       f"at {resolution} m ({h * w / 1e6:.0f}M cells); allowed: {MAX_RASTER_CELLS / 1e6:.0f}M cells")


def signed_distance_raster(drivable, resolution: float, margin: float = SDF_MARGIN):
    """Signed distance to the drivable-area boundary at cell centres (positive outside)."""
    x0, y0, x1, y1 = drivable.bounds
    x0, y0 = x0 - margin, y0 - margin
    w = int(math.ceil((x1 + margin - x0) / resolution))
    h = int(math.ceil((y1 + margin - y0) / resolution))
    xs = x0 + (np.arange(w) + 0.5) * resolution
    ys = y0 + (np.arange(h) + 0.5) * resolution
    gx, gy = np.meshgrid(xs, ys)
    shapely.prepare(drivable)
    inside = shapely.contains_xy(drivable, gx, gy)
    d_in = distance_transform_edt(inside) * resolution
    d_out = distance_transform_edt(~inside) * resolution
    sdf = np.where(inside, -(d_in - 0.5 * resolution), d_out - 0.5 * resolution)
    return np.clip(sdf, *SDF_CLAMP).astype(np.float16), (x0, y0), (h, w)


def lane_direction_raster(lanes, sdf: np.ndarray, origin, resolution: float, neighbours: int = 6) -> np.ndarray:
    """Unit driving direction [H*W, 2] of the lane covering each drivable cell; 0 where no lane
    covers it or lanes with different directions overlap (junction interiors)."""
    from scipy.spatial import cKDTree

    h, w = sdf.shape
    pts, tang, half = [], [], []
    for lane in lanes:
        p = resample_polyline(np.asarray(lane.centerline, float), 1.0)
        t = np.gradient(p, axis=0)
        pts.append(p)
        tang.append(t / np.linalg.norm(t, axis=1, keepdims=True))
        half.append(np.full(len(p), 0.5 * lane.width))
    pts, tang, half = (np.concatenate(v).astype(np.float32) for v in (pts, tang, half))
    jj, ii = np.nonzero(sdf <= 0)
    cells = np.stack([origin[0] + (ii + 0.5) * resolution, origin[1] + (jj + 0.5) * resolution], axis=1).astype(np.float32)
    _, idx = cKDTree(pts).query(cells, k=min(neighbours, len(pts)))  # [N, k]
    rel = cells[:, None, :] - pts[idx]
    t = tang[idx]
    lateral = np.abs(t[..., 0] * rel[..., 1] - t[..., 1] * rel[..., 0])
    along = np.abs((t * rel).sum(-1))
    covers = (lateral <= half[idx]) & (along <= 1.0)  # [N, k]
    first = t[np.arange(len(idx)), covers.argmax(axis=1)]  # direction of one covering lane
    agree = ((t * first[:, None, :]).sum(-1) > 0.9) | ~covers
    ok = covers.any(axis=1) & agree.all(axis=1)
    out = np.zeros((h * w, 2))
    out[(jj * w + ii)[ok]] = first[ok]
    return out.astype(np.float16)
