"""map.drivable_area: the shared drivable-area builder (lane polygons, source areas, road edges)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from shapely.geometry import Point, box

from drivesim.io import scenarionet
from drivesim.map.drivable_area import DrivableAreaConfig, closed_rings, drivable_area, drivable_area_parts, even_odd_fill


def _ring(x0, y0, x1, y1, n=5):
    """Closed square ring [P, 2] (first point repeated), n points per side."""
    s = np.linspace(0, 1, n)[:-1]
    pts = [np.stack([x0 + (x1 - x0) * s, np.full_like(s, y0)], 1), np.stack([np.full_like(s, x1), y0 + (y1 - y0) * s], 1),
           np.stack([x1 - (x1 - x0) * s, np.full_like(s, y1)], 1), np.stack([np.full_like(s, x0), y1 - (y1 - y0) * s], 1)]
    pts = np.concatenate(pts)
    return np.concatenate([pts, pts[:1]])


# a 100 m square road outline around a 80 m block (a 10 m wide road all round); lanes along the south
# and north sides (the fill is kept within DrivableAreaConfig.ring_margin of the lanes' bounds)
OUTER, BLOCK = _ring(0, 0, 100, 100), _ring(10, 10, 90, 90)
LANE, NORTH = np.array([[0.0, 5.0], [100.0, 5.0]]), np.array([[100.0, 95.0], [0.0, 95.0]])


def test_closed_rings_and_open_edges_are_told_apart():
    rings, open_ = closed_rings([OUTER, BLOCK, np.array([[0, 0], [5, 0], [5, 5]]), np.zeros((1, 2))])
    assert len(rings) == 2 and len(open_) == 1


def test_even_odd_fill_leaves_the_block_out_and_keeps_an_island():
    island = _ring(40, 40, 60, 60)
    area = even_odd_fill([OUTER, BLOCK, island])
    assert area.area == pytest.approx(100**2 - 80**2 + 20**2)
    assert not area.contains(Point(20, 20)) and area.contains(Point(50, 50)) and area.contains(Point(5, 50))


def test_block_centre_is_off_road_and_the_road_ring_is_drivable():
    area, summary = drivable_area_parts(road_edges=[OUTER, BLOCK], lane_centerlines=[LANE, NORTH], widths=[3.5, 3.5])
    assert summary["rings"] == 2 and "even-odd" in summary["note"]
    assert area.is_valid and area.area == pytest.approx(100**2 - 80**2, rel=1e-3)
    assert not area.contains(Point(50, 50))  # the block
    assert area.contains(Point(95, 50)) and area.contains(Point(50, 95))  # the road on the far sides


def test_ring_order_and_orientation_do_not_matter():
    a = drivable_area(road_edges=[BLOCK[::-1], OUTER], lane_centerlines=[LANE, NORTH], widths=[3.5, 3.5])
    b = drivable_area(road_edges=[OUTER, BLOCK], lane_centerlines=[LANE, NORTH], widths=[3.5, 3.5])
    assert a.area == pytest.approx(100**2 - 80**2, rel=1e-3)
    assert a.symmetric_difference(b).area < 1e-6


def test_fill_is_clipped_near_the_lanes():
    far = _ring(500, 500, 600, 600)
    area = drivable_area(road_edges=[OUTER, BLOCK, far], lane_centerlines=[LANE], widths=[3.5])
    assert not area.intersects(box(400, 400, 700, 700))


def test_lane_polygons_and_centerlines_unite_without_slivers():
    left = box(0, 0, 50, 3.5)
    right = box(0, 3.5 + 1e-4, 50, 7)  # a floating-point gap between two lane polygons
    area = drivable_area([left, None], lane_centerlines=[np.array([[50.0, 1.75], [80.0, 1.75]])], widths=[3.5])
    area2 = drivable_area([left, right])
    assert area.area == pytest.approx(80 * 3.5, rel=1e-3)
    assert area2.geom_type == "Polygon" and area2.area == pytest.approx(50 * 7, rel=1e-3)


def test_source_areas_are_united():
    area = drivable_area(lane_centerlines=[LANE], widths=[3.5], areas=[box(40, 0, 60, 30)])
    assert area.contains(Point(50, 25)) and area.area == pytest.approx(100 * 3.5 + 20 * 30 - 20 * 3.5, rel=1e-2)


def test_open_edges_bound_the_growth_of_the_lane_area():
    # a lane at y in [-1.75, 1.75]; a curb (open road edge) at y = 3 on the left, none on the right
    curb = np.array([[-10.0, 3.0], [110.0, 3.0]])
    lane = np.array([[0.0, 0.0], [100.0, 0.0]])
    plain = drivable_area(road_edges=[curb], lane_centerlines=[lane], widths=[3.5])
    grown = drivable_area(road_edges=[curb], lane_centerlines=[lane], widths=[3.5], config=DrivableAreaConfig(edge_gap=2.0))
    assert plain.area == pytest.approx(350, rel=2e-3)  # open edges unused by default
    assert grown.contains(Point(50, 2.85)) and not grown.contains(Point(50, 3.15))  # up to the curb (half a cell)
    assert grown.contains(Point(50, -3.5)) and not grown.contains(Point(50, -4.0))  # 2 m on the open side


def test_growth_passes_an_opening_in_an_edge_only_where_it_sees_the_lanes():
    # a kerb 1 m beside the lane's edge with a 4 m opening (a driveway mouth) at x in [48, 52]
    lane = np.array([[0.0, 0.0], [100.0, 0.0]])
    kerb = [np.array([[-10.0, -2.75], [48.0, -2.75]]), np.array([[52.0, -2.75], [110.0, -2.75]])]
    area = drivable_area(road_edges=kerb, lane_centerlines=[lane], widths=[3.5], config=DrivableAreaConfig(edge_gap=3.0))
    assert area.contains(Point(20, -2.5)) and not area.contains(Point(20, -3.1))  # kerb holds
    assert area.contains(Point(50, -4.5))  # through the opening
    assert not area.contains(Point(46, -4.5)) and not area.contains(Point(30, -3.5))  # behind the kerb


def test_no_lane_geometry_is_an_error():
    with pytest.raises(ValueError, match="no lane"):
        drivable_area(road_edges=[OUTER])
    with pytest.raises(ValueError, match="widths"):
        drivable_area(lane_centerlines=[LANE], widths=[])


def _nuscenes_like(tmp_path):
    """A ScenarioNet-nuScenes-like file: the road outline and a block as closed `boundary_*` rings."""
    T, off = 11, np.array([300.0, 700.0])
    pos = np.stack([np.linspace(5, 50, T) + off[0], np.full(T, 5.0 + off[1]), np.zeros(T)], 1)
    ego = {"type": "VEHICLE", "metadata": {"type": "vehicle.car"}, "state": {
        "position": pos, "heading": np.zeros(T), "velocity": np.tile([4.5, 0.0], (T, 1)), "valid": np.ones(T, bool),
        "length": np.full(T, 4.5), "width": np.full(T, 1.9)}}
    lane_poly = np.array([[0, 3.25], [100, 3.25], [100, 6.75], [0, 6.75]]) + off
    heading_col = np.zeros((2, 1))  # ScenarioNet-nuScenes polylines carry the heading third
    feats = {"lane-a": {"type": "LANE_SURFACE_STREET", "polyline": np.concatenate([LANE + off, heading_col], 1),
                        "polygon": lane_poly},
             "lane-b": {"type": "LANE_SURFACE_STREET", "polyline": np.concatenate([NORTH + off, heading_col], 1),
                        "polygon": lane_poly + [0, 90]},
             "boundary_0": {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": OUTER + off},
             "boundary_1": {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": BLOCK + off}}
    raw = {"id": "nus", "length": T, "tracks": {"ego": ego}, "map_features": feats, "dynamic_map_states": {},
           "metadata": {"dataset": "nuscenes", "scenario_id": "scene-x", "sdc_id": "ego", "ts": np.arange(T) * 0.1}}
    path = tmp_path / "nus.pkl"
    path.write_bytes(pickle.dumps(raw))
    return path


def test_scenarionet_block_inside_boundary_rings_is_off_road(tmp_path):
    """Issue 15 item 1: polygonize's faces carry their holes, so their symmetric difference filled
    the block (the whole 100 m square was drivable)."""
    (sc,), _ = scenarionet.load(_nuscenes_like(tmp_path), scenarionet.ImportConfig(crop_margin=None))
    centre = Point(50 - 5, 50 - 5)  # block centre in the scene frame (origin: the ego's first position)
    assert not sc.road.drivable.contains(centre)
    assert sc.road.drivable.area == pytest.approx(100**2 - 80**2, rel=1e-2)
    assert sc.road.drivable.contains(Point(95 - 5, 50 - 5))


def _waymo_like() -> dict:
    """A Waymo-style ScenarioNet dict: one 3.2 m lane along +x (widths, no polygon), open road edges
    1.4 m beyond its left side and 0.9 m beyond its right side, a driveway off the right edge."""
    T = 11
    pos = np.stack([np.linspace(10, 20, T), np.zeros(T), np.zeros(T)], 1)
    ego = {"type": "VEHICLE", "metadata": {"type": "VEHICLE"}, "state": {
        "position": pos, "heading": np.zeros(T), "velocity": np.tile([1.0, 0.0], (T, 1)), "valid": np.ones(T, bool),
        "length": np.full(T, 4.5), "width": np.full(T, 1.9)}}
    line = lambda y: np.stack([np.linspace(0, 100, 11), np.full(11, y), np.zeros(11)], 1)
    feats = {"1": {"type": "LANE_SURFACE_STREET", "polyline": line(0.0), "width": np.full((11, 2), 1.6)},
             "2": {"type": "ROAD_EDGE_BOUNDARY", "polyline": line(3.0)},
             "3": {"type": "ROAD_EDGE_BOUNDARY", "polyline": line(-2.5)},
             "4": {"type": "DRIVEWAY", "polygon": np.array([[40.0, -2.5], [46.0, -2.5], [46.0, -12.0], [40.0, -12.0]])}}
    return {"id": "w", "length": T, "tracks": {"ego": ego}, "map_features": feats, "dynamic_map_states": {},
            "metadata": {"dataset": "waymo", "scenario_id": "edges", "sdc_id": "ego", "ts": np.arange(T) * 0.1}}


def test_scenarionet_waymo_lanes_grow_to_the_open_road_edges():
    cfg = scenarionet.ImportConfig(crop_margin=None)
    area = scenarionet.convert(_waymo_like(), "w.pkl", cfg).road.drivable  # ego starts at x = 10
    inside = lambda x, y: area.contains(Point(x - 10, y))
    assert inside(50, 2.85) and not inside(50, 3.15)  # up to the left edge (within half a 0.25 m cell), not across
    assert inside(20, -2.35) and not inside(20, -2.65)  # up to the right edge
    assert inside(43, -10.0)  # the driveway
    lanes_only = scenarionet.convert(_waymo_like(), "w.pkl", scenarionet.ImportConfig(crop_margin=None, edge_gap=0.0))
    assert not lanes_only.road.drivable.contains(Point(40, 2.9)) and lanes_only.road.drivable.contains(Point(33, -10.0))
