"""WOSAC-style realism (drivesim/traffic_model/wosac.py): likelihoods on hand-made data, masking,
and the fast interaction features against all-pairs and shapely references."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from drivesim.core.config import ConfigError
from drivesim.core.geometry import box_corners
from drivesim.map.bank import MapBank
from drivesim.map.builders import build_map
from drivesim.traffic_model.wosac import (
    FEATURES,
    RealismConfig,
    features,
    interaction_features,
    log_likelihoods,
    log_trajectory,
    map_features,
    realism_score,
)
from drivesim.traffic_model.realism import plot_histograms
from drivesim.traffic_model.wosac_interaction import box_signed_distance, following_ttc
from drivesim.metrics.shapely_reference import box_polygon, overlap_reference

KINEMATIC = ("speed", "accel", "angular_speed", "angular_accel")
SMALL = RealismConfig(n_rollouts=4, history_steps=3, future_steps=20)


@pytest.fixture(scope="module")
def bank():
    return MapBank.build([build_map("straight")])  # lanes +x at y = -1.8, -5.4, -9; -x at y = 1.8, 5.4


def make_traj(x, y, yaw, speed, valid=None, length=4.5, width=1.9) -> dict:
    """Trajectory dict of [T, B, A] float32 tensors from arrays of that shape."""
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float32))
    x = t(x)
    full = lambda v: t(np.broadcast_to(np.asarray(v, dtype=np.float32), x.shape).copy())
    return {"x": x, "y": full(y), "yaw": full(yaw), "speed": full(speed), "length": full(length), "width": full(width),
            "valid": torch.ones(x.shape, dtype=torch.bool) if valid is None else torch.as_tensor(np.asarray(valid))}


def lane_log(T=23, B=2, A=5, seed=0) -> dict:
    """Vehicles on the forward lanes, speeds and headings varying smoothly."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None] * 0.1
    v = 8 + 6 * rng.random((1, B, A)) + 1.5 * np.sin(0.7 * t + rng.random((1, B, A)) * 6)
    yaw = 0.05 * np.sin(1.3 * t + rng.random((1, B, A)) * 6)
    x = 20 + 25 * np.arange(A)[None, None, :] + np.cumsum(v * np.cos(yaw), axis=0) * 0.1
    y = np.array([-1.8, -5.4, -9.0])[np.arange(A) % 3][None, None, :] + np.cumsum(v * np.sin(yaw), axis=0) * 0.1
    return make_traj(x, np.broadcast_to(y, x.shape), yaw, v)


def perturbed(log: dict, rng, speed_sd=1.0, yaw_sd=0.03, pos_sd=0.5) -> dict:
    out = dict(log)
    noise = lambda sd: torch.as_tensor(rng.normal(scale=sd, size=log["x"].shape).astype(np.float32))
    out["speed"] = (log["speed"] + noise(speed_sd)).clamp(min=0)
    out["yaw"] = log["yaw"] + noise(yaw_sd)
    out["x"], out["y"] = log["x"] + noise(pos_sd), log["y"] + noise(pos_sd)
    return out


# ------------------------------------------------------------------------------------ config
def test_weights_sum_to_one_and_config_checks():
    cfg = RealismConfig()
    assert abs(sum(s.weight for s in cfg.features) - 1.0) < 1e-9
    assert [s.name for s in cfg.features] == list(FEATURES) and len(FEATURES) == 10
    assert cfg.spec("traffic_light_violation").weight == 0.05 and cfg.spec("collision").bernoulli
    assert (cfg.n_rollouts, cfg.history_steps, cfg.future_steps, cfg.dt) == (32, 10, 80, 0.1)
    bad = tuple(dataclasses.replace(s, weight=0.3) if s.name == "speed" else s for s in cfg.features)
    with pytest.raises(ConfigError, match="sum to 1"):
        dataclasses.replace(cfg, features=bad).validate_config()
    with pytest.raises(ConfigError, match="once"):
        dataclasses.replace(cfg, features=cfg.features[1:]).validate_config()


# ------------------------------------------------------------------------------- likelihoods
def test_identical_simulation_beats_perturbed(bank):
    log = lane_log()
    rng = np.random.default_rng(1)
    map_idx = torch.zeros(2, dtype=torch.long)
    same, meta_same = realism_score([log] * 4, log, bank, map_idx, config=SMALL)
    noisy, meta_noisy = realism_score([perturbed(log, rng) for _ in range(4)], log, bank, map_idx, config=SMALL)
    for name in KINEMATIC + ("distance_to_object", "distance_to_road_edge"):
        assert (same[name] > noisy[name]).all(), (name, same[name], noisy[name])
    assert (meta_same > meta_noisy).all() and (meta_same <= 1).all()
    assert same["collision"].allclose(torch.ones(2), atol=1e-3) and same["offroad"].allclose(torch.ones(2), atol=1e-3)
    for v in same.values():
        assert v.shape == (2,) and ((v >= 0) & (v <= 1)).all()


def test_log_inside_the_distribution_scores_higher():
    cfg = RealismConfig(n_rollouts=4)
    g = torch.Generator().manual_seed(0)
    sim_speed = 10 + 5 * torch.rand(4, 10, 1, 1, generator=g)  # [R, T, B, A] in [10, 15): bins 4 and 5
    sim = {n: torch.zeros(4, 10, 1, 1) for n in FEATURES}
    sim["speed"] = sim_speed
    mask = torch.ones(10, 1, 1, dtype=torch.bool)
    inside = {n: torch.zeros(10, 1, 1) for n in FEATURES}
    inside["speed"] = torch.full((10, 1, 1), 13.0)
    outside = dict(inside, speed=torch.full((10, 1, 1), 24.0))
    L_in = log_likelihoods(sim, inside, mask, cfg)["speed"]
    L_out = log_likelihoods(sim, outside, mask, cfg)["speed"]
    n5 = float(((sim_speed >= 12.5) & (sim_speed < 15)).sum())
    assert L_in.item() == pytest.approx((n5 + 0.1) / (40 + 1.0), rel=1e-5)  # 10 bins, pseudocount 0.1 each
    assert L_out.item() == pytest.approx(0.1 / 41.0, rel=1e-5)
    beyond = dict(inside, speed=torch.full((10, 1, 1), 99.0))  # clips to the last bin, like 24
    assert log_likelihoods(sim, beyond, mask, cfg)["speed"].item() == pytest.approx(L_out.item())


def test_bernoulli_collision_matches_hand_computation(bank):
    """Three cars side by side; in rollout 0 the middle one drifts into the first (both collide)."""
    T, R = 23, 4
    x = np.broadcast_to(50 + 10 * np.arange(T)[:, None, None] * 0.1, (T, 1, 3)).copy()
    y = np.broadcast_to(np.array([-1.8, -5.4, -9.0]), (T, 1, 3)).copy()
    log = make_traj(x, y, 0.0, 10.0)
    rollouts = [dict(log) for _ in range(R)]
    y0 = y.copy()
    y0[15:, 0, 1] = -3.0  # 1.2 m from the first car: the 1.9 m wide boxes overlap
    rollouts[0] = dict(log, y=torch.as_tensor(y0, dtype=torch.float32))
    table, _ = realism_score(rollouts, log, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    c = SMALL.spec("collision").pseudocount
    p_hit_pair, p_clean = (3 + c) / (R + 2 * c), (R + c) / (R + 2 * c)
    expected = math.exp((2 * math.log(p_hit_pair) + math.log(p_clean)) / 3)
    assert table["collision"].item() == pytest.approx(expected, rel=1e-5)
    # the logged outcome "collides" is scored with the complementary probability
    table2, _ = realism_score([rollouts[0]] + rollouts[1:], rollouts[0], bank, torch.zeros(1, dtype=torch.long),
                              config=SMALL)
    expected2 = math.exp((2 * math.log((1 + c) / (R + 2 * c)) + math.log(p_clean)) / 3)
    assert table2["collision"].item() == pytest.approx(expected2, rel=1e-5)
    assert table["traffic_light_violation"].item() == pytest.approx(p_clean, rel=1e-6)


def test_masking_ignores_invalid_steps(bank):
    log = lane_log(B=1, A=4)
    T = log["x"].shape[0]
    valid = torch.ones(T, 1, 4, dtype=torch.bool)
    valid[8:11, 0, 2] = False  # agent 2 vanishes inside the scored window
    valid[:, 0, 3] = False  # agent 3 is padding
    def garbage(traj, value):
        out = {k: v.clone() for k, v in traj.items()}
        for k in ("x", "y", "yaw", "speed", "length", "width"):
            out[k][~valid] = value
        out["valid"] = valid.clone()
        return out
    a, b = garbage(log, float("nan")), garbage(log, 1e4)
    fa = features(a, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    fb = features(b, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    v1 = valid.clone()
    v1[1:] &= valid[:-1]
    v1[0] = False
    v2 = v1.clone()
    v2[1:] &= valid[:-1] & torch.cat([torch.zeros_like(valid[:1]), valid[:-2]])
    v2[:2] = False
    defined = {"accel": v1, "angular_speed": v1, "angular_accel": v2}
    for name in FEATURES:
        ok = defined.get(name, valid)
        assert torch.equal(~torch.isnan(fa[name]), ok), name
        assert torch.equal(fa[name][ok], fb[name][ok]), name  # invalid slots never leak into others
    rng = np.random.default_rng(3)
    sims_a = [garbage(perturbed(log, rng), float("nan")) for _ in range(4)]
    sims_b = [garbage(s, 1e4) for s in sims_a]
    ta, ma = realism_score(sims_a, a, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    tb, mb = realism_score(sims_b, b, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    assert all(torch.equal(ta[n], tb[n]) for n in FEATURES) and torch.equal(ma, mb) and torch.isfinite(ma).all()


def test_repeated_rollout_object_equals_copies(bank):
    log = lane_log(B=1, A=3)
    sim = perturbed(log, np.random.default_rng(5))
    copies = [{k: v.clone() for k, v in sim.items()} for _ in range(4)]
    t1, m1 = realism_score([sim] * 4, log, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    t2, m2 = realism_score(copies, log, bank, torch.zeros(1, dtype=torch.long), config=SMALL)
    assert torch.equal(m1, m2) and all(torch.equal(t1[n], t2[n]) for n in FEATURES)
    with pytest.raises(ValueError, match="rollouts"):
        realism_score(copies[:3], log, bank, torch.zeros(1, dtype=torch.long), config=SMALL)


def test_plot_file_is_written(bank, tmp_path):
    log = lane_log(B=1, A=3)
    rng = np.random.default_rng(2)
    table, _, (sim_f, log_f, mask) = realism_score([perturbed(log, rng) for _ in range(4)], log, bank,
                                                   torch.zeros(1, dtype=torch.long), config=SMALL, return_features=True)
    assert sim_f["speed"].shape == (4, SMALL.future_steps, 1, 3) and mask.shape == (SMALL.future_steps, 1, 3)
    path = tmp_path / "realism.png"
    plot_histograms(sim_f, log_f, path, mask=mask, config=SMALL, table=table)
    assert path.stat().st_size > 10_000


# ------------------------------------------------------------------ interaction features: exact
def random_scene(F=6, A=24, seed=0, spread=(60.0, 14.0), max_speed=25.0):
    """Boxes in a busy strip: mostly along +-x, some turned; sizes from pedestrians to buses."""
    g = np.random.default_rng(seed)
    yaw = np.where(g.random((F, A)) < 0.7, np.pi * (g.random((F, A)) < 0.3), g.uniform(-np.pi, np.pi, (F, A)))
    fields = {"x": g.uniform(0, spread[0], (F, A)), "y": g.uniform(-spread[1], spread[1], (F, A)), "yaw": yaw,
              "speed": g.uniform(0, max_speed, (F, A)) * (g.random((F, A)) < 0.8),
              "length": g.uniform(0.5, 13.0, (F, A)), "width": g.uniform(0.5, 2.6, (F, A))}
    out = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in fields.items()}
    out["valid"] = torch.as_tensor(g.random((F, A)) < 0.85)
    return out


def all_pairs_reference(s, rounding=0.0, cap=40.0, ttc_max=5.0):
    """Nearest signed distance and WOSAC TTC over every pair (no candidate search), float64."""
    d = {k: v.double() for k, v in s.items() if k != "valid"}
    valid = s["valid"]
    F, A = valid.shape
    I = lambda v: v.unsqueeze(2).expand(F, A, A)
    J = lambda v: v.unsqueeze(1).expand(F, A, A)
    shrink = rounding * 0.5 * torch.minimum(d["length"], d["width"])
    dist = box_signed_distance(J(d["x"]) - I(d["x"]), J(d["y"]) - I(d["y"]), I(d["yaw"]), I(d["length"] - 2 * shrink),
                               I(d["width"] - 2 * shrink), J(d["yaw"]), J(d["length"] - 2 * shrink),
                               J(d["width"] - 2 * shrink)) - I(shrink) - J(shrink)
    other = J(valid) & ~torch.eye(A, dtype=torch.bool)
    nearest = torch.where(other, dist, math.inf).amin(dim=2).clamp(max=cap)
    f, i, j = other.nonzero().unbind(1)
    c, sn = torch.cos(d["yaw"]), torch.sin(d["yaw"])
    ttc = following_ttc(f * A + i, d["x"][f, j] - d["x"][f, i], d["y"][f, j] - d["y"][f, i], c[f, i], sn[f, i],
                        c[f, j], sn[f, j], d["length"][f, i], d["width"][f, i], d["length"][f, j],
                        d["width"][f, j], d["speed"][f, i], d["speed"][f, j], F * A, ttc_max).view(F, A)
    return nearest, ttc


SCENES = {0: (24, (60.0, 14.0)), 1: (24, (60.0, 14.0)), 2: (24, (60.0, 14.0)), 3: (40, (300.0, 10.0)),
          4: (40, (3000.0, 10.0))}  # 3: a long road (fast followers); 4: wider than _WIDE (float64 forms)


@pytest.mark.parametrize("seed,rounding,chunk", [(0, 0.0, 1 << 20), (1, 0.7, 1 << 20), (2, 0.0, 600), (3, 0.0, 1 << 20),
                                                 (4, 0.0, 1 << 20)])
def test_interaction_features_match_all_pairs(seed, rounding, chunk):
    A, spread = SCENES[seed]
    s = random_scene(seed=seed, A=A, spread=spread)
    if seed == 4:  # a few tight pairs in the wide scene
        s["x"][:, 1::2] = s["x"][:, ::2] + torch.linspace(-6, 6, A // 2)
    s["valid"][0] = False  # an empty frame and one with a single agent
    s["valid"][1, 1:] = False
    cfg = RealismConfig(corner_rounding=rounding, chunk_pairs=chunk)
    dist, ttc = interaction_features(*(s[k] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")), cfg)
    ref_dist, ref_ttc = all_pairs_reference(s, rounding)
    v = s["valid"]
    assert torch.isnan(dist[~v]).all() and torch.isnan(ttc[~v]).all()
    np.testing.assert_allclose(dist[v].numpy(), ref_dist[v].numpy(), atol=2e-3)
    np.testing.assert_allclose(ttc[v].numpy(), ref_ttc[v].numpy(), atol=2e-3)
    assert (ref_dist[v] < 0).any() and (ref_dist[v] > 1).any() and (ref_ttc[v] < 5).sum() >= 3


def _wosac_ttc_loop(s, f, i, ttc_max=5.0):
    """WOSAC compute_time_to_collision_with_object_in_front for one subject, plain Python."""
    g = {k: s[k][f].double().tolist() for k in ("x", "y", "yaw", "speed", "length", "width")}
    best, best_speed = math.inf, None
    for j in range(len(g["x"])):
        if j == i or not bool(s["valid"][f, j]):
            continue
        diff = abs(math.remainder(g["yaw"][j] - g["yaw"][i], 2 * math.pi))
        lon_off = g["length"][j] / 2 * abs(math.cos(diff)) + g["width"][j] / 2 * abs(math.sin(diff))
        lat_off = g["length"][j] / 2 * abs(math.sin(diff)) + g["width"][j] / 2 * abs(math.cos(diff))
        dx, dy = g["x"][j] - g["x"][i], g["y"][j] - g["y"][i]
        c, sn = math.cos(g["yaw"][i]), math.sin(g["yaw"][i])
        gap = dx * c + dy * sn - g["length"][i] / 2 - lon_off
        overlap = abs(dy * c - dx * sn) - g["width"][i] / 2 - lat_off
        follows = gap > 0 and diff <= math.radians(75) and overlap < 0 and (overlap < -0.5 or diff <= math.radians(10))
        if follows and gap < best:
            best, best_speed = gap, g["speed"][j]
    if best_speed is None or g["speed"][i] <= best_speed:
        return ttc_max
    return min(best / (g["speed"][i] - best_speed), ttc_max)


def test_following_ttc_matches_wosac_loop():
    s = random_scene(F=3, A=30, seed=7, spread=(150.0, 6.0))
    _, ttc = interaction_features(*(s[k] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")))
    hits = 0
    for f in range(3):
        for i in range(30):
            if s["valid"][f, i]:
                ref = _wosac_ttc_loop(s, f, i)
                assert ttc[f, i].item() == pytest.approx(ref, abs=1e-3), (f, i)
                hits += ref < 5
    assert hits >= 3


def test_following_ttc_hand_case():
    """Subject at 20 m/s; leader 30 m ahead (gap 25.5 m) at 10 m/s; a closer car in the next lane,
    an oncoming car in the same lane and a faster car ahead of the leader are not followed
    (WOSAC takes the nearest object among those that satisfy the following test)."""
    x = [[0.0, 30.0, 10.0, 15.0, 60.0]]
    y = [[0.0, 0.0, 3.6, 0.2, 0.0]]
    yaw = [[0.0, 0.0, 0.0, math.pi, 0.0]]
    speed = [[20.0, 10.0, 5.0, 10.0, 30.0]]
    s = make_traj(np.array(x)[None], np.array(y)[None], np.array(yaw)[None], np.array(speed)[None])
    dist, ttc = interaction_features(*(s[k][0] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")))
    assert ttc[0, 0].item() == pytest.approx(25.5 / 10.0, rel=1e-5)
    assert ttc[0, 1].item() == 5.0  # follows the faster car
    assert ttc[0, 3].item() == 5.0  # the oncoming car follows nobody (heading 180 deg off)
    assert dist[0, 0].item() == pytest.approx(math.hypot(10.0 - 4.5, 3.6 - 1.9), abs=1e-4)  # corner to corner
    s["y"][0, 0, 1] = 2.2  # the leader moves over: under 0.5 m lateral overlap once turned ...
    s["yaw"][0, 0, 1] = 0.25  # ... by 14 deg: headings must agree within 10 deg
    _, ttc = interaction_features(*(s[k][0] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")))
    assert ttc[0, 0].item() == 5.0
    s["yaw"][0, 0, 1] = 0.15  # 8.6 deg: followed again, overlap 0.03 m
    _, ttc = interaction_features(*(s[k][0] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")))
    gap = 30.0 - 2.25 - (2.25 * math.cos(0.15) + 0.95 * math.sin(0.15))
    assert ttc[0, 0].item() == pytest.approx(gap / 10.0, rel=1e-5)


def test_box_signed_distance_matches_shapely():
    rng = np.random.default_rng(0)
    n = 3000
    boxes = lambda: np.stack([rng.uniform(-6, 6, n), rng.uniform(-6, 6, n), rng.uniform(-np.pi, np.pi, n),
                              rng.uniform(0.3, 12.0, n), rng.uniform(0.3, 3.0, n)], axis=1)
    a, b = boxes(), boxes()
    ta, tb = torch.tensor(a), torch.tensor(b)
    d = box_signed_distance(tb[:, 0] - ta[:, 0], tb[:, 1] - ta[:, 1], ta[:, 2], ta[:, 3], ta[:, 4], tb[:, 2], tb[:, 3],
                            tb[:, 4]).numpy()
    overlap = overlap_reference(a, b)
    gap = np.array([box_polygon(*p).distance(box_polygon(*q)) for p, q in zip(a, b)])
    assert 0.2 < overlap.mean() < 0.8
    np.testing.assert_array_equal(d <= 0, overlap)
    np.testing.assert_allclose(d[~overlap], gap[~overlap], atol=1e-9)
    # overlapping: -d is the penetration depth, the shortest translation that separates them:
    # no push shorter than it separates, and one along a box axis (the separating one) does
    for k in np.nonzero(overlap)[0][:150]:
        depth = -d[k]
        pa = box_polygon(*a[k])
        moved = lambda u, t, k=k: box_polygon(b[k, 0] + t * u[0], b[k, 1] + t * u[1], *b[k, 2:])
        for phi in rng.uniform(-np.pi, np.pi, 8):
            assert pa.intersects(moved((np.cos(phi), np.sin(phi)), 0.999 * depth - 1e-6))
        axes = [(np.cos(h), np.sin(h)) for h in (a[k, 2], a[k, 2] + np.pi / 2, b[k, 2], b[k, 2] + np.pi / 2)]
        assert any(not pa.intersects(moved((sign * u[0], sign * u[1]), 1.001 * depth + 1e-6))
                   for u in axes for sign in (1, -1))


def test_offroad_shortcut_matches_all_corners(bank):
    g = np.random.default_rng(4)
    T, B, A = 3, 1, 400
    size = (T, B, A)
    s = {"x": g.uniform(-5, 405, size), "y": g.uniform(-14, 11, size), "yaw": g.uniform(-np.pi, np.pi, size),
         "length": g.uniform(0.5, 14, size), "width": g.uniform(0.5, 3, size)}
    s = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in s.items()}
    valid = torch.ones(T, B, A, dtype=torch.bool)
    map_idx = torch.zeros(B, dtype=torch.long)
    edge, off = map_features(s["x"], s["y"], s["yaw"], s["length"], s["width"], valid, bank, map_idx)
    corners = box_corners(s["x"], s["y"], s["yaw"], s["length"], s["width"])  # [T, B, A, 4, 2]
    worst = bank.signed_distance(map_idx, corners.transpose(0, 1)).transpose(0, 1).amax(dim=-1)
    assert torch.equal(off, (worst > 0).float()) and 0.2 < off.mean() < 0.8
    centre = bank.signed_distance(map_idx, torch.stack([s["x"], s["y"]], -1).transpose(0, 1)).transpose(0, 1)
    assert torch.equal(edge, centre)


def test_log_trajectory_from_a_batch():
    from tests.metrics.helpers import constant_velocity, make_batch

    road = build_map("straight")
    agents = [{"x": 10.0, "y": -1.8, "speed": 10.0}, {"x": 40.0, "y": -5.4, "speed": 8.0, "length": 12.0}]
    batch = make_batch(road, agents, duration=2.0, rows=2)
    for sc in batch.scenarios:
        sc.log = np.stack([constant_velocity(10.0, -1.8, 0.0, 10.0, 20), constant_velocity(40.0, -5.4, 0.0, 8.0, 20)])
    batch.log[:] = torch.as_tensor(np.stack([sc.log for sc in batch.scenarios]), dtype=torch.float32)
    batch.log_valid[:] = True
    batch.log_valid[1, 1, 12:] = False
    traj = log_trajectory(batch, start=5, steps=10)
    assert traj["x"].shape == (10, 2, 2) and traj["valid"].shape == (10, 2, 2)
    assert traj["x"][0, 0, 0].item() == pytest.approx(10.0 + 10.0 * 0.5) and traj["length"][3, 1, 1].item() == 12.0
    assert not traj["valid"][9, 1, 1] and traj["valid"][9, 0, 1] and traj["valid"][:, :, 0].all()
