"""Lane linking and conflicts keep apart lanes at different heights (an overpass, issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim.map.linking import infer_links, lane_conflicts, same_level
from drivesim.map.road import Lane, MapError, RoadMap


def _lane(p0, p1, z0, z1=None, n=11):
    xy = np.linspace(p0, p1, n)
    z = None if z0 is None else np.linspace(z0, z0 if z1 is None else z1, n)
    return Lane(xy, width=3.5, z=z)


def _bridge(heights: bool = True):
    """0: the bridge deck along +x at z = 6 m; 1: the deck goes on; 2: a road at z = 0 that starts
    below the end of the deck, along +x; 3: a road at z = 0 crossing under the deck along +y;
    4: a road at z = 0 beside the deck, 3.5 m to its left (stacked roadways)."""
    h = (lambda z: z) if heights else (lambda z: None)
    return [_lane((-50, 0), (50, 0), h(6.0)), _lane((50, 0), (100, 0), h(6.0)), _lane((50, 0.2), (100, 0.2), h(0.0)),
            _lane((0, -50), (0, 50), h(0.0)), _lane((-50, 3.5), (50, 3.5), h(0.0))]


def test_bridge_is_not_linked_to_the_road_below():
    lanes = _bridge()
    infer_links(lanes)
    assert lanes[0].successors == [1]  # the deck goes on; the road starting under it is 6 m lower
    assert lanes[0].left == -1 and lanes[4].right == -1
    flat = _bridge(heights=False)  # the same map without heights: 2D geometry joins them
    infer_links(flat)
    assert flat[0].successors == [1, 2] and flat[0].left == 4


def test_bridge_crossing_is_no_conflict():
    lanes = _bridge()
    infer_links(lanes)
    assert not [c for c in lane_conflicts(lanes) if {c[0], c[1]} == {0, 3}]
    flat = _bridge(heights=False)
    infer_links(flat)
    crossing = [c for c in lane_conflicts(flat) if {c[0], c[1]} == {0, 3}]
    assert len(crossing) == 1 and crossing[0][2] == "cross" and crossing[0][3:] == pytest.approx((0.0, 0.0))


def test_ramp_on_a_grade_is_still_linked_and_merges_are_conflicts():
    ramp = _lane((-50, -10), (0, 0), 0.0, 5.0)  # climbs 5 m to the deck: one level at the joint
    deck = _lane((0, 0), (50, 0), 5.0)
    main = _lane((-50, 0), (0, 0.3), 5.0)  # the deck's own approach, merging with the ramp
    lanes = [ramp, deck, main]
    infer_links(lanes)
    assert lanes[0].successors == [1] and lanes[2].successors == [1]
    assert [(i, j, k) for i, j, k, *_ in lane_conflicts(lanes)] == [(0, 2, "merge")]


def test_height_helpers_and_validation():
    assert same_level(0.0, 1.5) and not same_level(0.0, 6.0) and same_level(np.nan, 6.0)
    with pytest.raises(MapError, match="z must be"):
        RoadMap("bad", [Lane(np.array([[0.0, 0.0], [10.0, 0.0]]), z=np.zeros(3))])
