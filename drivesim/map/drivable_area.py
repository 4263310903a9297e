"""The drivable area of an imported map, from lane polygons, source areas and road edges.

One builder for every importer (ScenarioNet, nuScenes devkit, AV2, CommonRoad, WOMD, GPUDrive):

    drivable_area(lane_polygons, road_edges, lane_centerlines, widths, areas=...) -> Polygon | MultiPolygon

- lane area: the union of the lane polygons and, for lanes without one, the centerline buffered by
  half its width (flat caps), grown and shrunk by `sliver` to close gaps between neighbours;
- `areas`: drivable polygons the source gives as such (AV2 `drivable_areas`, nuScenes devkit
  `drivable_area`), united with the lane area;
- closed road-edge rings (a polyline whose ends meet, e.g. ScenarioNet-nuScenes `boundary_*` lines,
  the outlines and holes of nuScenes' drivable_area polygons) are filled by the even-odd rule: a
  point is drivable when an odd number of rings encloses it, so a city block (a hole ring inside the
  road outline) stays off-road. Only the fill near the lanes is kept (`ring_margin`). For rings
  that are shells and holes this is the OGC polygon (a shell minus its holes); `polygonize` faces
  are not to be combined by symmetric difference (each face already carries its holes, so the
  combination filled whole blocks: issue 15);
- open road edges (Waymo ROAD_EDGE_* polylines) cannot be filled; with `edge_gap` > 0 the lane area
  grows by up to that many metres towards them without crossing one (shoulders, the kerb side of
  a parking lane): a grid cell (`edge_cell`) is added when the line from its centre to the nearest
  lane-boundary point crosses no edge (`edge_band`; the result follows an edge to within half a
  cell). Where no edge is in the way the lanes grow by the whole `edge_gap`.

Heights: this is a 2D footprint; points may be [P, 3] (x, y, z), z is ignored here (lanes keep
their own z, see `Lane.z`). Every input is already in the scene frame (minus the origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, box
from shapely.ops import unary_union


@dataclass(frozen=True)
class DrivableAreaConfig:
    sliver: float = 0.05  # m, grow-and-shrink that closes floating-point gaps between lane polygons
    ring_margin: float = 10.0  # m, the even-odd fill of closed rings is clipped to the lane bounds grown by this
    ring_tolerance: float = 1e-3  # m, a road edge is a closed ring when its ends are this close
    edge_gap: float = 0.0  # m, growth of the lane area towards open road edges (0: open edges unused)
    edge_cell: float = 0.25  # m, grid on which the growth tests that the way back to the lanes crosses no edge
    min_piece_area: float = 0.5  # m^2, smaller polygons of the result are dropped (slivers of the fill)

    def __post_init__(self):
        if self.sliver < 0 or self.ring_margin < 0 or self.edge_gap < 0 or self.ring_tolerance < 0:
            raise ValueError(f"DrivableAreaConfig: distances must be >= 0, got {self}")
        if not self.edge_cell > 0:
            raise ValueError(f"DrivableAreaConfig.edge_cell must be positive, got {self.edge_cell}")


def polygons_only(geom) -> Polygon | MultiPolygon:
    """The polygonal part of a geometry (GeometryCollections keep their polygons)."""
    if geom is None or geom.is_empty:
        return Polygon()
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    parts = []
    for g in getattr(geom, "geoms", []):
        p = polygons_only(g)
        parts += list(p.geoms) if isinstance(p, MultiPolygon) else [p] if not p.is_empty else []
    return MultiPolygon(parts) if len(parts) > 1 else parts[0] if parts else Polygon()


def lane_area(lane_polygons: Iterable = (), lane_centerlines: Sequence = (), widths: Sequence[float] = (),
              sliver: float = DrivableAreaConfig.sliver) -> Polygon | MultiPolygon:
    """Union of lane polygons (shapely Polygons or [N, 2+] rings; None entries skipped) and of the
    centerlines [P, 2+] buffered by widths/2 (flat caps), grown and shrunk by `sliver`."""
    if len(widths) != len(lane_centerlines):
        raise ValueError(f"lane_area: {len(lane_centerlines)} centerlines but {len(widths)} widths")
    parts = []
    for p in lane_polygons:
        if p is None:
            continue
        g = p if hasattr(p, "geom_type") else Polygon(np.asarray(p, dtype=float)[:, :2])
        g = shapely.make_valid(g) if not g.is_valid else g
        if not g.is_empty and g.area > 0:
            parts.append(polygons_only(g).buffer(sliver))
    for cl, w in zip(lane_centerlines, widths):
        cl = np.asarray(cl, dtype=float)[:, :2]
        if len(cl) >= 2 and w > 0:
            parts.append(LineString(cl).buffer(0.5 * w + sliver, cap_style="flat", join_style="round"))
    if not parts:
        return Polygon()
    return polygons_only(unary_union(parts).buffer(-sliver))


def closed_rings(road_edges: Iterable, tolerance: float = DrivableAreaConfig.ring_tolerance) -> tuple[list, list]:
    """Split road edges ([P, 2+] polylines) into closed rings (ends within `tolerance`, >= 4 points)
    and open polylines, both as [P, 2] arrays."""
    rings, open_ = [], []
    for e in road_edges:
        pl = np.asarray(e, dtype=float)
        if pl.ndim != 2 or pl.shape[1] < 2 or len(pl) < 2 or not np.isfinite(pl[:, :2]).all():
            continue
        pl = pl[:, :2]
        (rings if len(pl) >= 4 and np.linalg.norm(pl[0] - pl[-1]) <= tolerance else open_).append(pl)
    return rings, open_


def even_odd_fill(rings: Iterable, clip=None) -> Polygon | MultiPolygon:
    """Points enclosed by an odd number of the closed rings ([P, 2] arrays), optionally clipped to
    `clip` (a polygon) after the fill (clipping first would break the parity of enclosing rings)."""
    filled = None
    for r in rings:
        g = polygons_only(shapely.make_valid(Polygon(r)))  # a self-touching ring splits into its loops
        if g.is_empty:
            continue
        filled = g if filled is None else polygons_only(filled.symmetric_difference(g))
    if filled is None:
        return Polygon()
    return polygons_only(filled.intersection(clip)) if clip is not None else filled


def _runs(mask: np.ndarray):
    """(row, first column, last column + 1) of each run of True along the rows of mask [H, W]."""
    pad = np.zeros((mask.shape[0], 1), bool)
    d = np.diff(np.concatenate([pad, mask, pad], axis=1).astype(np.int8), axis=1)
    r0, c0 = np.nonzero(d == 1)
    _, c1 = np.nonzero(d == -1)  # same row-major order as the starts
    return r0, c0, c1


def edge_band(lanes, open_edges: Sequence, gap: float, cell: float = 0.25) -> Polygon | MultiPolygon:
    """The lane area grown by up to `gap` m where the way back to the lanes crosses no open road
    edge: a `cell` m grid cell of the growth ring is kept when the line from its centre to the
    nearest lane-boundary point (boundary sampled every `cell` m) crosses no edge. The result follows
    an edge to within half a cell (on either side); an opening in an edge (a driveway mouth) lets the
    growth through only where a cell sees the lanes."""
    from scipy.spatial import cKDTree

    if gap <= 0 or not open_edges or lanes.is_empty:
        return Polygon()
    band = lanes.buffer(gap)
    edges = unary_union([LineString(e) for e in open_edges if len(e) >= 2])
    if not edges.intersects(band):
        return band
    ring = band.difference(lanes)
    x0, y0, x1, y1 = ring.bounds
    xs, ys = np.arange(x0 + 0.5 * cell, x1, cell), np.arange(y0 + 0.5 * cell, y1, cell)
    gx, gy = np.meshgrid(xs, ys)  # [H, W]
    reach = ring.buffer(0.75 * cell)
    shapely.prepare(reach)
    near = shapely.contains_xy(reach, gx, gy)  # cells that touch the ring
    pts = np.stack([gx[near], gy[near]], axis=1)
    boundary = shapely.get_coordinates(shapely.segmentize(lanes.boundary, cell))
    _, k = cKDTree(boundary).query(pts)
    shapely.prepare(edges)
    seen = np.zeros_like(near)
    seen[near] = ~shapely.intersects(edges, shapely.linestrings(np.stack([pts, boundary[k]], axis=1)))
    if not seen.any():
        return Polygon()
    r, c0, c1 = _runs(seen)  # one box per run of kept cells along a row
    e = 1e-6  # boxes of neighbouring rows overlap a hair and merge
    boxes = shapely.box(x0 + c0 * cell - e, y0 + r * cell - e, x0 + c1 * cell + e, y0 + (r + 1) * cell + e)
    return polygons_only(shapely.union_all(boxes).intersection(ring))


def _drop_small(geom, min_area: float):
    if isinstance(geom, MultiPolygon):
        parts = [p for p in geom.geoms if p.area >= min_area]
        return MultiPolygon(parts) if len(parts) > 1 else parts[0] if parts else Polygon()
    return geom


def drivable_area_parts(lane_polygons: Iterable = (), road_edges: Iterable = (), lane_centerlines: Sequence = (),
                        widths: Sequence[float] = (), areas: Iterable = (),
                        config: DrivableAreaConfig | None = None) -> tuple[Polygon | MultiPolygon, dict]:
    """`drivable_area` and a summary {lane_area, area, rings, open_edges, areas, note} (m^2, counts)."""
    cfg = config or DrivableAreaConfig()
    lane_polygons, road_edges, areas = list(lane_polygons), list(road_edges), list(areas)  # iterables read twice
    lanes = lane_area(lane_polygons, lane_centerlines, widths, cfg.sliver)
    if lanes.is_empty:
        raise ValueError("drivable_area: no lane polygon or centerline to build the drivable area from")
    src = [polygons_only(shapely.make_valid(a if hasattr(a, "geom_type") else Polygon(np.asarray(a, float)[:, :2])))
           for a in areas]
    src = [a for a in src if not a.is_empty]
    rings, open_edges = closed_rings(road_edges, cfg.ring_tolerance)
    x0, y0, x1, y1 = lanes.bounds
    m = cfg.ring_margin
    fill = even_odd_fill(rings, box(x0 - m, y0 - m, x1 + m, y1 + m)) if rings else Polygon()
    band = edge_band(lanes, open_edges, cfg.edge_gap, cfg.edge_cell)
    parts = [g.buffer(cfg.sliver) for g in (lanes, fill, band, *src) if not g.is_empty]
    out = polygons_only(unary_union(parts).buffer(-cfg.sliver))
    out = _drop_small(out if out.is_valid else polygons_only(shapely.make_valid(out)), cfg.min_piece_area)
    used = ["lane polygons" if any(p is not None for p in lane_polygons) else None,
            "buffered centerlines" if len(lane_centerlines) else None,
            f"{len(src)} source drivable polygons" if src else None,
            f"even-odd fill of {len(rings)} closed road-edge rings" if rings else None,
            f"lanes grown {cfg.edge_gap} m up to {len(open_edges)} open road edges" if cfg.edge_gap > 0 and open_edges else None]
    summary = {"lane_area": float(lanes.area), "area": float(out.area), "rings": len(rings),
               "open_edges": len(open_edges), "areas": len(src), "note": "union of " + ", ".join(u for u in used if u)}
    return out, summary


def drivable_area(lane_polygons: Iterable = (), road_edges: Iterable = (), lane_centerlines: Sequence = (),
                  widths: Sequence[float] = (), areas: Iterable = (),
                  config: DrivableAreaConfig | None = None) -> Polygon | MultiPolygon:
    """The drivable area (a valid, non-empty Polygon or MultiPolygon, scene frame).

    lane_polygons: shapely Polygons or [N, 2+] rings of the lanes (None: that lane has none);
    road_edges: [P, 2+] polylines: closed rings are filled even-odd, open ones used with
    `config.edge_gap`; lane_centerlines [P, 2+] with `widths` (m): lanes without a polygon;
    areas: drivable polygons given by the source. Raises ValueError without any lane geometry."""
    return drivable_area_parts(lane_polygons, road_edges, lane_centerlines, widths, areas, config)[0]


__all__ = ["DrivableAreaConfig", "closed_rings", "drivable_area", "drivable_area_parts",
           "edge_band", "even_odd_fill", "lane_area", "polygons_only"]
