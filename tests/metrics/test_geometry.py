"""Fast box tests against their shapely twins (drivesim/metrics/shapely_reference.py)."""

import numpy as np
import torch

from drivesim.core.geometry import boxes_overlap
from drivesim.metrics.boxes import overlap_at_times, sat_overlap, sat_terms
from drivesim.metrics.collisions import ego_overlaps
from drivesim.metrics.shapely_reference import box_polygon, overlap_reference
from drivesim.metrics.ttc import Boxes, TTCConfig, ttc_constant_velocity
from tests.metrics.helpers import random_state


def _random_boxes(rng, n, spread=8.0):
    return np.stack([rng.uniform(-spread, spread, n), rng.uniform(-spread, spread, n), rng.uniform(-np.pi, np.pi, n),
                     rng.uniform(0.3, 12.0, n), rng.uniform(0.3, 3.0, n)], axis=1)


def test_sat_matches_shapely_on_random_pairs():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 3000, 5.0), _random_boxes(rng, 3000, 5.0)
    ref = overlap_reference(a, b)
    ta, tb = torch.tensor(a), torch.tensor(b)  # float64: exact agreement expected
    fast = sat_overlap(tuple(ta.T), tuple(tb.T)).numpy()
    core = boxes_overlap(tuple(ta.T), tuple(tb.T)).numpy()
    assert 0.2 < ref.mean() < 0.8  # both outcomes well represented
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(core, ref)


def test_sat_float32_matches_shapely_away_from_contact():
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 2000), _random_boxes(rng, 2000)
    ref = overlap_reference(a, b)
    gap = np.array([box_polygon(*p).distance(box_polygon(*q)) for p, q in zip(a, b)])
    depth = np.array([box_polygon(*p).intersection(box_polygon(*q)).area for p, q in zip(a, b)])
    clear = (gap > 1e-3) | (depth > 1e-3)
    fast = sat_overlap(tuple(torch.tensor(a, dtype=torch.float32).T), tuple(torch.tensor(b, dtype=torch.float32).T)).numpy()
    np.testing.assert_array_equal(fast[clear], ref[clear])


def test_ego_overlaps_matches_reference():
    state = random_state(B=16, A=24, seed=3, spread=15.0)
    fast = ego_overlaps(state).numpy()
    x, y, yaw, l, w = (t.numpy() for t in state.boxes())
    for b in range(16):
        for a in range(1, 24):
            expect = state.valid[b, a].item() and box_polygon(x[b, a], y[b, a], yaw[b, a], l[b, a], w[b, a]).intersects(
                box_polygon(x[b, 0], y[b, 0], yaw[b, 0], l[b, 0], w[b, 0]))
            assert fast[b, a] == expect, (b, a)
    assert not fast[:, 0].any() and fast.any()


def test_overlap_at_times_matches_moved_boxes():
    rng = np.random.default_rng(4)
    a, b = torch.tensor(_random_boxes(rng, 500, 20.0)), torch.tensor(_random_boxes(rng, 500, 20.0))
    v = torch.tensor(rng.uniform(-8, 8, (500, 2)))
    times = torch.linspace(0.1, 2.9, 29, dtype=torch.float64)
    p, reach, q = sat_terms(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], a[:, 2], a[:, 3], a[:, 4], b[:, 2], b[:, 3], b[:, 4],
                            v[:, 0], v[:, 1])
    hits = overlap_at_times(p, reach, q, times)  # [500, 29]
    for g, t in enumerate(times):
        moved = b.clone()
        moved[:, 0] += v[:, 0] * t
        moved[:, 1] += v[:, 1] * t
        np.testing.assert_array_equal(hits[:, g].numpy(), overlap_reference(a.numpy(), moved.numpy()))


def _ttc_reference(subj, other, cfg):
    """Loop: step both boxes at constant velocity on nuPlan's grid, shapely intersects."""
    x, y, yaw, v, l, w = subj
    ox, oy, oyaw, ov, ol, ow = other
    if box_polygon(x, y, yaw, l, w).intersects(box_polygon(ox, oy, oyaw, ol, ow)):
        return cfg.clamp
    for t in np.arange(cfg.step, cfg.horizon, cfg.step):
        p = box_polygon(x + v * np.cos(yaw) * t, y + v * np.sin(yaw) * t, yaw, l, w)
        if p.intersects(box_polygon(ox + ov * np.cos(oyaw) * t, oy + ov * np.sin(oyaw) * t, oyaw, ol, ow)):
            return t
    return cfg.clamp


def test_ttc_matches_loop_reference():
    cfg = TTCConfig()
    state = random_state(B=8, A=12, seed=5, spread=25.0, max_speed=15.0)
    boxes = Boxes(state.x.double(), state.y.double(), state.yaw.double(), state.speed.double(), state.length.double(),
                  state.width.double())
    subj = Boxes(*(f[:, :1] for f in boxes))
    consider = state.valid.clone()
    consider[:, 0] = False
    ttc = ttc_constant_velocity(subj, boxes, consider.unsqueeze(1), cfg)[:, 0].numpy()
    f = [t.double().numpy() for t in boxes]
    for b in range(8):
        ref = min([_ttc_reference([g[b, 0] for g in f], [g[b, a] for g in f], cfg)
                   for a in range(1, 12) if state.valid[b, a]] + [cfg.clamp])
        assert abs(ttc[b] - ref) < 1e-6, (b, ttc[b], ref)
    assert (ttc < cfg.clamp).any()
