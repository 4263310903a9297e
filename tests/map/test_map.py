import numpy as np
import pytest
import torch

from drivesim.map import MapBank, MapError, build_map
from drivesim.map.road import Lane, RoadMap


@pytest.mark.parametrize("kind", ["straight", "curved", "merge", "intersection"])
def test_builders_produce_valid_connected_maps(kind):
    road = build_map(kind)
    assert road.drivable.is_valid and road.drivable.area > 100
    for i, lane in enumerate(road.lanes):
        # every lane lies on the drivable area (its centreline, 0.1 m tolerance)
        from shapely.geometry import LineString
        assert road.drivable.buffer(0.1).contains(LineString(lane.centerline)), (kind, i)


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_straight_lanes_and_neighbours(lanes):
    road = build_map("straight", lanes=lanes, lanes_back=2)
    assert len(road.lanes) == lanes + 2
    for i in range(lanes - 1):
        assert road.lanes[i].right == i + 1 and road.lanes[i + 1].left == i


def test_intersection_has_turn_connectors_and_signals():
    road = build_map("intersection", lanes_in=3)
    kinds = [l.kind for l in road.lanes]
    assert kinds.count("connector") == 4 * 3 and kinds.count("turn") == 4
    assert road.signal_group and road.signal_green(0, 0.0) and not road.signal_green(1, 0.0)


def test_unknown_map_type_and_parameter_are_clear_errors():
    with pytest.raises(MapError, match="unknown map type 'roundabout'"):
        build_map("roundabout")
    with pytest.raises(MapError, match="unknown parameter"):
        build_map("straight", lane=3)
    with pytest.raises(MapError, match=r"lanes = 7; allowed: an integer in \[1, 5\]"):
        build_map("straight", lanes=7)


def test_malformed_lane_is_refused():
    with pytest.raises(MapError, match="centerline"):
        RoadMap("bad", [Lane(np.array([[0.0, 0.0]]))])
    with pytest.raises(MapError, match="missing lane"):
        RoadMap("bad", [Lane(np.array([[0.0, 0.0], [10.0, 0.0]]), successors=[3])])


def test_frenet_projection_on_curved_lane():
    road = build_map("curved", radius=100.0, angle_deg=90.0)
    bank = MapBank.build([road])
    lane = road.lanes[0]
    from shapely.geometry import LineString
    line = LineString(lane.centerline)
    rng = np.random.default_rng(0)
    s_true = rng.uniform(5, line.length - 5, 50)
    pts = np.array([line.interpolate(s).coords[0] for s in s_true])
    xy = torch.tensor(pts, dtype=torch.float32)
    lanes = torch.zeros(50, dtype=torch.long)
    s, d, seg, _ = bank.project_full(lanes, xy)
    assert np.allclose(s.numpy(), s_true, atol=0.1) and d.abs().max() < 0.05
    # windowed search from the found segment gives the same answer
    s2, d2, _, _ = bank.project(lanes, seg, xy)
    assert torch.allclose(s, s2) and torch.allclose(d, d2)


def test_locate_respects_heading_on_two_way_road():
    road = build_map("straight", lanes=2, lanes_back=2)
    bank = MapBank.build([road])
    xy = torch.tensor([[50.0, -1.8], [50.0, 1.8]])
    lane, _, _, _ = bank.locate(torch.zeros(2, dtype=torch.long), xy, torch.tensor([0.0, np.pi]))
    assert lane.tolist() == [0, 2]


def test_point_at_with_segment_guess_matches_full_search():
    bank = MapBank.build([build_map("curved", radius=60.0, angle_deg=120.0), build_map("intersection")])
    g = torch.Generator().manual_seed(0)
    lanes = torch.randint(0, bank.lane_len.shape[0], (2000,), generator=g)
    s = (torch.rand(2000, generator=g) * 1.2 - 0.1) * bank.lane_len[lanes]  # includes both ends' extrapolation
    full_xy, full_yaw = bank.point_at(lanes, s)
    near_xy, near_yaw = bank.point_at(lanes, s, bank.seg_near(lanes, s), 3)
    assert torch.allclose(full_xy, near_xy, atol=1e-3) and torch.allclose(full_yaw, near_yaw, atol=1e-4)


@pytest.mark.parametrize("kind", ["straight", "curved", "merge", "intersection"])
def test_coarse_to_fine_projection_matches_the_exhaustive_twin(kind):
    """project_full searches near the nearest coarse point; project_exhaustive every segment."""
    road = build_map(kind, **({"length": 600.0} if kind == "straight" else {}))
    bank = MapBank.build([road])
    g = torch.Generator().manual_seed(1)
    lane = torch.randint(0, len(road.lanes), (4000,), generator=g)
    k = (torch.rand(4000, generator=g) * (bank.lane_npts[lane] - 1)).long()
    xy = bank.lane_pts[lane, k] + torch.randn(4000, 2, generator=g) * 4.0
    fast, ref = bank.project_full(lane, xy), bank.project_exhaustive(lane, xy)
    for a, b in zip(fast[:2], ref[:2]):
        torch.testing.assert_close(a, b)
