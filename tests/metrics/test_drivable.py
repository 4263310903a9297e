"""Raster drivable-area distance and DAC against shapely; driving direction and windows."""

import numpy as np
import pytest
import torch

from drivesim.map.bank import MapBank
from drivesim.map.builders import MAP_TYPES, build_map
from drivesim.metrics.drivable import (direction_score, drivable_area_compliance, ego_map_lookup, max_corner_distance,
                                       max_window_sum)
from drivesim.metrics.shapely_reference import ego_max_distance_reference, signed_distance_reference
from drivesim.core.geometry import box_corners

NAMES = sorted(MAP_TYPES)


@pytest.fixture(scope="module")
def maps_bank():
    maps = [build_map(n) for n in NAMES]
    return maps, MapBank.build(maps)


def _points(road, rng, n, margin=5.0):
    """Random points over the raster extent (it reaches 6 m past the drivable bounds)."""
    x0, y0, x1, y1 = road.drivable.bounds
    return np.stack([rng.uniform(x0 - margin, x1 + margin, n), rng.uniform(y0 - margin, y1 + margin, n)], axis=1)


@pytest.mark.parametrize("i", range(len(NAMES)))
def test_signed_distance_matches_shapely(maps_bank, i):
    maps, bank = maps_bank
    rng = np.random.default_rng(i)
    pts = _points(maps[i], rng, 600)
    near_road = rng.normal(size=(600, 2)) * 3.0 + np.asarray(maps[i].lanes[0].centerline[0])  # dense near the edges
    x0, y0, x1, y1 = maps[i].drivable.bounds
    in_raster = (near_road[:, 0] > x0 - 5) & (near_road[:, 0] < x1 + 5) & (near_road[:, 1] > y0 - 5) & (near_road[:, 1] < y1 + 5)
    pts = np.concatenate([pts, near_road[in_raster]])
    ref = signed_distance_reference(maps[i], pts)
    fast = bank.signed_distance(torch.tensor([i]), torch.tensor(pts, dtype=torch.float32)[None])[0].numpy()
    sel = np.abs(ref) < 20
    assert sel.sum() > 300 and (ref[sel] < 0).any() and (ref[sel] > 0).any()
    err = np.abs(fast - ref)[sel]
    assert err.max() < 0.2, f"{NAMES[i]}: max error {err.max():.3f} m at {pts[sel][err.argmax()]}"


@pytest.mark.parametrize("i", range(len(NAMES)))
def test_dac_decision_matches_shapely(maps_bank, i):
    maps, bank = maps_bank
    rng = np.random.default_rng(10 + i)
    lanes = maps[i].lanes
    n = 300
    boxes = []
    for _ in range(n):  # boxes around lane centrelines, some pushed off the road
        lane = lanes[rng.integers(len(lanes))]
        cl = np.asarray(lane.centerline, float)
        k = rng.integers(len(cl) - 1)
        f = rng.uniform()
        p = cl[k] + f * (cl[k + 1] - cl[k])
        heading = np.arctan2(*(cl[k + 1] - cl[k])[::-1])
        off = rng.normal(scale=4.0, size=2)
        boxes.append([p[0] + off[0], p[1] + off[1], heading + rng.normal(scale=0.3), rng.uniform(3.5, 6), rng.uniform(1.6, 2.4)])
    boxes = np.array(boxes)
    ref = ego_max_distance_reference(maps[i], boxes)
    tb = torch.tensor(boxes, dtype=torch.float32)
    corners = box_corners(*tb.T)[None]  # [1, n, 4, 2]
    fast = max_corner_distance(bank, torch.tensor([i]), corners)[0].numpy()
    clear = np.abs(ref - 0.3) > 0.2
    assert clear.sum() > 0.8 * n and (ref > 0.3).any() and (ref < 0.3).any()
    np.testing.assert_array_equal((fast > 0.3)[clear], (ref > 0.3)[clear])
    dac = drivable_area_compliance(torch.tensor(fast)[:, None], dim=1).numpy()
    np.testing.assert_array_equal(dac[clear], (ref <= 0.3)[clear].astype(float))


def test_ego_map_lookup_equals_bank_queries(maps_bank):
    maps, bank = maps_bank
    rng = np.random.default_rng(7)
    B = len(NAMES) * 16
    map_idx = torch.arange(len(NAMES)).repeat_interleave(16)
    centre = torch.tensor(np.concatenate([_points(m, rng, 16) for m in maps]), dtype=torch.float32)
    corners = box_corners(centre[:, 0], centre[:, 1], torch.rand(B) * 6, torch.full((B,), 4.5), torch.full((B,), 1.9))
    sd, direction = ego_map_lookup(bank, map_idx, corners, centre)
    torch.testing.assert_close(sd, bank.signed_distance(map_idx, corners).amax(-1))
    torch.testing.assert_close(direction, bank.driving_direction(map_idx, centre[:, None])[:, 0])


def test_window_and_direction_score():
    v = torch.tensor([0.0, 1.0, 1.0, 0.0, 3.0, 0.0, 0.0])[:, None]
    assert max_window_sum(v, 2).item() == 3.0
    assert max_window_sum(v, 5).item() == 5.0
    assert max_window_sum(v, 100).item() == 5.0
    s = direction_score(torch.tensor([0.0, 2.0, 2.01, 6.0, 6.01]))
    assert s.tolist() == [1.0, 1.0, 0.5, 0.5, 0.0]
