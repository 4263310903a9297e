"""PDM-style proposal scoring: hand-made cases and a loop/shapely twin on random proposals."""

import math

import numpy as np
import pytest
import torch

from drivesim.core.types import AgentType
from drivesim.map.bank import MapBank
from drivesim.map.builders import build_map
from drivesim.metrics.collisions import CollisionType
from drivesim.metrics.proposals import ProposalConfig, score_proposals
from drivesim.metrics.shapely_reference import box_polygon, classify_collision_reference


@pytest.fixture(scope="module")
def bank():
    return MapBank.build([build_map("straight")])


def _straight_proposals(x0, y0, speeds, T=41, dt=0.1, drift=None):
    """[K, T] straight-line proposals at constant speeds; drift: lateral speed per proposal."""
    t = torch.arange(T) * dt
    xs, ys, yaws, vs = [], [], [], []
    for k, v in enumerate(speeds):
        vy = 0.0 if drift is None else drift[k]
        xs.append(x0 + v * t)
        ys.append(y0 + vy * t)
        yaws.append(torch.full((T,), math.atan2(vy, v) if v > 0 else 0.0))
        vs.append(torch.full((T,), math.hypot(v, vy)))
    return torch.stack([torch.stack(xs), torch.stack(ys)], -1), torch.stack(yaws), torch.stack(vs)


def _others(poses, T=41, dt=0.1):
    """poses: list of (x, y, yaw, speed, length, width) -> tuple of [1, T, A] constant-velocity forecasts."""
    t = torch.arange(T, dtype=torch.float32)[:, None] * dt
    p = torch.tensor(poses, dtype=torch.float32)  # [A, 6]
    x = p[:, 0] + p[:, 3] * torch.cos(p[:, 2]) * t
    y = p[:, 1] + p[:, 3] * torch.sin(p[:, 2]) * t
    rep = lambda i: p[:, i].expand(T, -1)
    return tuple(z.unsqueeze(0) for z in (x, y, rep(2), rep(4), rep(5), rep(3)))


def test_hand_made_proposals(bank):
    xy, yaw, v = _straight_proposals(50.0, -1.8, [10.0, 5.0, 8.0], drift=[0.0, 0.0, -3.5])
    others = _others([(0.0, 0.0, 0.0, 0.0, 1.0, 1.0), (80.0, -1.8, 0.0, 0.0, 4.5, 1.9)])  # slot 0: the ego
    valid = torch.tensor([[False, True]])
    kind = torch.tensor([[int(AgentType.VEHICLE), int(AgentType.VEHICLE)]])
    out = score_proposals(xy[None], yaw[None], v[None], torch.tensor([4.5]), torch.tensor([1.9]), others, valid, kind,
                          torch.tensor([0]), bank, progress=(xy[:, -1, 0] - xy[:, 0, 0])[None])
    assert out["no_collision"][0].tolist() == [0.0, 1.0, 1.0]  # 10 m/s hits the stopped car at 80 m
    assert out["ttc"][0].tolist() == [0.0, 1.0, 1.0]
    assert out["drivable_area_compliance"][0].tolist() == [1.0, 1.0, 0.0]  # drifting 14 m right leaves the road
    assert out["ego_progress"][0].tolist() == [0.0, 1.0, 0.0]  # normalised by the best safe proposal
    assert out["score"][0, 1].item() == pytest.approx((5 + 5 + 2 * out["comfort"][0, 1].item()) / 12)
    assert out["score"][0, 0].item() == 0.0 and out["score"][0, 2].item() == 0.0
    static = others[:3] + (others[3], others[4], others[5])
    kind_static = torch.tensor([[int(AgentType.VEHICLE), int(AgentType.STATIC)]])
    out2 = score_proposals(xy[None], yaw[None], v[None], torch.tensor([4.5]), torch.tensor([1.9]), static, valid,
                           kind_static, torch.tensor([0]), bank, progress=(xy[:, -1, 0] - xy[:, 0, 0])[None])
    assert out2["no_collision"][0, 0].item() == 0.5  # NAVSIM: static objects halve


def _reference(ego_xy, ego_yaw, ego_speed, L, W, oth, valid, kind, offroad, junction, cfg, dt):
    """Loop twin of NC and TTC for one scenario: ego [K, T], others numpy [T+extra, A] per field."""
    K, T = ego_yaw.shape
    ox, oy, oyaw, ol, ow, ov = oth
    nc, ttc = np.ones(K), np.ones(K)
    for k in range(K):
        ego_box = lambda t, s=0.0: (ego_xy[k, t, 0] + ego_speed[k, t] * np.cos(ego_yaw[k, t]) * s,
                                    ego_xy[k, t, 1] + ego_speed[k, t] * np.sin(ego_yaw[k, t]) * s, ego_yaw[k, t], L, W)
        other_box = lambda f, a: (ox[f, a], oy[f, a], oyaw[f, a], ol[f, a], ow[f, a])
        hit = lambda t, f, a, s=0.0: box_polygon(*ego_box(t, s)).intersects(box_polygon(*other_box(f, a)))
        agents = [a for a in range(len(valid)) if valid[a]]
        initial = {a for a in agents if hit(0, 0, a)}
        done = set(initial)
        for t in range(T):
            for a in agents:
                if a in done or not hit(t, t, a):
                    continue
                done.add(a)
                ctype = classify_collision_reference(ego_box(t), ego_speed[k, t], other_box(t, a), ov[t, a], kind[a])
                lateral = ctype == CollisionType.ACTIVE_LATERAL and offroad[k, t]
                if ctype in (CollisionType.ACTIVE_FRONT, CollisionType.STOPPED_TRACK) or lateral:
                    nc[k] = min(nc[k], 0.5 if kind[a] == int(AgentType.STATIC) else 0.0)
            if ego_speed[k, t] < cfg.ttc_stopped_speed:
                continue
            for j in cfg.ttc_shifts:
                for a in agents:
                    if a in initial or not hit(t, t + j, a, j * dt):
                        continue
                    d = np.array([ox[t + j, a] - ego_xy[k, t, 0], oy[t + j, a] - ego_xy[k, t, 1]])
                    heading = [np.cos(ego_yaw[k, t]), np.sin(ego_yaw[k, t])]
                    ang = np.degrees(np.arccos(np.clip(d @ heading / np.linalg.norm(d), -1, 1)))
                    if ang < cfg.ahead_deg or ((offroad[k, t] or junction[k, t]) and ang <= cfg.behind_deg):
                        ttc[k] = 0.0
    return nc, ttc


def test_random_proposals_match_loop_reference(bank):
    cfg, dt, T, K, A = ProposalConfig(), 0.1, 21, 5, 7
    rng = np.random.default_rng(0)
    events = []
    for n in range(4):
        speeds = rng.uniform(0, 15, K)
        xy, yaw, v = _straight_proposals(100.0, -1.8 - 3.6 * (n % 3), list(speeds), T=T, drift=list(rng.uniform(-2, 2, K)))
        poses = [(0.0, 0.0, 0.0, 0.0, 1.0, 1.0)]
        for a in range(1, A):
            poses.append((100 + rng.uniform(-10, 40), rng.uniform(-11, 5), rng.uniform(-np.pi, np.pi),
                          rng.choice([0.0, rng.uniform(1, 12)]), rng.uniform(0.5, 5), rng.uniform(0.5, 2.2)))
        others = _others(poses, T=T)
        valid = torch.tensor([[False] + [True] * (A - 1)])
        kind = torch.tensor([[0] + list(rng.choice([0, 1, 2, 3], A - 1))])
        out = score_proposals(xy[None], yaw[None], v[None], torch.tensor([4.5]), torch.tensor([1.9]), others, valid, kind,
                              torch.tensor([0]), bank, progress=(xy[:, -1, 0] - xy[:, 0, 0])[None], dt=dt)
        # the same quantities the fast path derives from the map, for the loop twin
        from drivesim.core.geometry import box_corners
        corners = box_corners(xy[..., 0], xy[..., 1], yaw, torch.tensor(4.5), torch.tensor(1.9))
        offroad = (bank.signed_distance(torch.tensor([0]), corners.reshape(1, -1, 2)).view(K, T, 4).amax(-1) > 0).numpy()
        direction = bank.driving_direction(torch.tensor([0]), xy.reshape(1, -1, 2)).view(K, T, 2)
        junction = ((direction == 0).all(-1) & ~torch.tensor(offroad)).numpy()
        extra = max(cfg.ttc_shifts)
        t_ext = torch.arange(T + extra, dtype=torch.float32)[:, None] * dt
        p = torch.tensor(poses, dtype=torch.float32)
        oth = ((p[:, 0] + p[:, 3] * torch.cos(p[:, 2]) * t_ext).numpy(), (p[:, 1] + p[:, 3] * torch.sin(p[:, 2]) * t_ext).numpy(),
               *(p[:, i].expand(T + extra, -1).numpy() for i in (2, 4, 5, 3)))
        nc, ttc = _reference(xy.numpy(), yaw.numpy(), v.numpy(), 4.5, 1.9, oth, valid[0].numpy(), kind[0].numpy(),
                             offroad, junction, cfg, dt)
        np.testing.assert_array_equal(out["no_collision"][0].numpy(), nc)
        np.testing.assert_array_equal(out["ttc"][0].numpy(), ttc)
        events += [nc.min() < 1, ttc.min() < 1, ttc.max() == 1]
    assert sum(events[0::3]) >= 1 and sum(events[1::3]) >= 1 and sum(events[2::3]) >= 1


def test_straddling_needs_lanes_for_lateral_fault(bank):
    xy, yaw, v = _straight_proposals(50.0, -3.6, [10.0])  # on the line between lanes 0 and 1
    others = _others([(0.0, 0.0, 0.0, 0.0, 1.0, 1.0), (50.0, -6.5, 0.25, 10.0, 4.5, 1.9)])  # drifts into the ego's side
    valid, kind = torch.tensor([[False, True]]), torch.zeros(1, 2, dtype=torch.long)
    args = (xy[None], yaw[None], v[None], torch.tensor([4.5]), torch.tensor([1.9]), others, valid, kind, torch.tensor([0]),
            bank)
    progress = torch.tensor([[40.0]])
    without = score_proposals(*args, progress=progress)
    lane = torch.zeros(1, 1, xy.shape[1], dtype=torch.long)
    seg = (xy[None, ..., 0] / 2).long().clamp(0, int(bank.lane_npts[0]) - 2)
    with_lanes = score_proposals(*args, progress=progress, ego_lane=lane, ego_seg=seg)
    assert without["no_collision"].item() == 1.0  # lateral contact, not straddling as far as it knows
    assert with_lanes["no_collision"].item() == 0.0
