"""Closed-loop metrics on hand-made trajectories (constants from REFERENCE.md)."""

import math

import numpy as np
import pytest
import torch

from drivesim.map.builders import build_map
from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig
from drivesim.metrics.comfort import comfort_checks, comfort_signals
from tests.metrics.helpers import PEDESTRIAN, STATIC, constant_velocity, make_batch, run_tracks

# straight map: forward lanes 0, 1, 2 (+x) at y = -1.8, -5.4, -9.0; backward lanes 3, 4 (-x) at
# y = 1.8, 5.4; drivable y in [-10.8, 7.2]; speed limit 25 m/s; route = lane 0.
LANE0, LANE1, BACK0 = -1.8, -5.4, 1.8


@pytest.fixture(scope="module")
def road():
    return build_map("straight")


def episode(road, tracks, agents=None, expert=None, duration=None, config=None, device="cpu"):
    """tracks: list over agents of [T+1, 4] arrays (one scenario); returns finalize() as floats."""
    tracks = np.stack(tracks, axis=1)[:, None]  # [T+1, 1, A, 4]
    steps = tracks.shape[0] - 1
    agents = agents or [{}] * tracks.shape[2]
    init = [{"x": tr[0], "y": tr[1], "yaw": tr[2], "speed": tr[3], **a} for tr, a in zip(tracks[0, 0], agents)]
    batch = make_batch(road, init, duration=duration or steps * 0.1, device=device)
    acc = run_tracks(batch, tracks, MetricAccumulator(batch, config))
    out = acc.finalize(None if expert is None else torch.tensor([float(expert)], device=device))
    return {k: float(v[0]) for k, v in out.items()}


def test_head_on_collision_is_at_fault(road):
    ego = constant_velocity(50, LANE0, 0.0, 10.0, 30)
    other = constant_velocity(80, LANE0, math.pi, 10.0, 30)  # wrong-way driver in the ego lane
    m = episode(road, [ego, other])
    assert m["collisions_vehicle"] == 1 and m["collisions_all"] == 1  # counted once despite many overlapping steps
    assert m["no_collision"] == 0.0 and m["collision_any"] == 1.0
    assert m["nuplan_score"] == 0.0 and m["pdms"] == 0.0 and m["success"] == 0.0
    assert m["ttc"] == 0.0 and m["min_ttc"] == 0.0  # nuPlan: TTC 0 at an at-fault collision


def test_rear_ended_stopped_ego_is_not_at_fault(road):
    ego = constant_velocity(50, LANE0, 0.0, 0.0, 30)
    other = constant_velocity(30, LANE0, 0.0, 10.0, 30)
    m = episode(road, [ego, other])
    assert m["collision_any"] == 1.0 and m["collisions_all"] == 1
    assert m["collisions_vehicle"] == 0 and m["no_collision"] == 1.0 and m["collision_multiplier"] == 1.0
    assert m["success"] == 0.0  # WorldEngine success counts every collision
    assert m["ttc"] == 1.0  # a stopped ego has no TTC


def test_static_object_collision_halves_scores(road):
    ego = constant_velocity(50, LANE0, 0.0, 10.0, 30)
    cone = constant_velocity(65, LANE0, 0.0, 0.0, 30)
    m = episode(road, [ego, cone], agents=[{}, {"type": STATIC, "length": 0.5, "width": 0.5, "mode": 3}])
    assert m["collisions_object"] == 1 and m["collisions_vehicle"] == 0
    assert m["no_collision"] == 0.5 and m["collision_multiplier"] == 0.5  # nuPlan object threshold 1
    assert m["ttc"] == 0.0
    assert m["pdms"] == pytest.approx(0.5 * (5 * 1 + 5 * 0 + 2 * m["comfort"]) / 12)
    expect = 0.5 * (5 * m["ego_progress"] + 5 * 0 + 4 * m["speed_limit"] + 2 * m["comfort"]) / 16
    assert m["nuplan_score"] == pytest.approx(expect)


def test_pedestrian_collision_counts_as_vru(road):
    ego = constant_velocity(50, LANE0, 0.0, 8.0, 30)
    ped = constant_velocity(66, LANE0 - 3.0, math.pi / 2, 1.5, 30)  # crosses in front of the ego
    m = episode(road, [ego, ped], agents=[{}, {"type": PEDESTRIAN, "length": 0.6, "width": 0.6}])
    assert m["collisions_vru"] == 1 and m["no_collision"] == 0.0 and m["nuplan_score"] == 0.0


def _sideswipe(road, ego_y):
    ego = constant_velocity(50, ego_y, 0.0, 10.0, 20)
    other = constant_velocity(50, LANE1 - 0.2, 0.25, 10.0, 20)  # beside the ego, drifting left into it
    return episode(road, [ego, other])


def test_lateral_collision_fault_depends_on_straddling(road):
    centred = _sideswipe(road, LANE0)
    straddling = _sideswipe(road, -3.6)  # the ego centre on the lane line
    assert centred["collision_any"] == 1 and straddling["collision_any"] == 1
    assert centred["collisions_vehicle"] == 0 and centred["no_collision"] == 1.0
    assert straddling["collisions_vehicle"] == 1 and straddling["no_collision"] == 0.0


def test_leaving_the_road_fails_dac(road):
    ego = constant_velocity(50, -9.0, -0.5, 10.0, 30)
    m = episode(road, [ego])
    assert m["drivable_area_compliance"] == 0.0 and m["max_offroad"] > 5
    assert m["success"] == 0.0 and m["pdms"] == 0.0 and m["nuplan_score"] == 0.0
    inside = episode(road, [constant_velocity(50, -9.0, 0.0, 10.0, 30)])  # outer lane, 0.9 m from the edge
    assert inside["drivable_area_compliance"] == 1.0 and inside["success"] == 1.0


def test_comfort_jerk_violation(road):
    t = np.arange(41) * 0.1
    # an abrupt switch from (allowed) acceleration into (allowed) braking: 4.6 m/s^2 in one step
    # is a longitudinal jerk above 4.13 m/s^3 even through nuPlan's 15-sample Savitzky-Golay filter
    accel = np.where(t < 2.0, 1.6, -3.0)
    speed = 10.0 + np.concatenate([[0.0], np.cumsum(accel[:-1] * 0.1)])
    x = 50 + np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * 0.1)])
    ego = np.stack([x, np.full_like(x, LANE0), np.zeros_like(x), speed], axis=1)
    m = episode(road, [ego])
    assert m["comfort"] == 0.0
    checks = comfort_checks(comfort_signals(torch.tensor(ego[:, 2])[:, None], torch.tensor(speed)[:, None], 0.1))
    assert not checks["lon_jerk"].item() and checks["lon_accel"].item() and checks["yaw_rate"].item()
    smooth = 15.0 - 1.5 * t  # constant braking: comfortable
    xs = 50 + np.concatenate([[0.0], np.cumsum(0.5 * (smooth[1:] + smooth[:-1]) * 0.1)])
    ok = np.stack([xs, np.full_like(xs, LANE0), np.zeros_like(xs), smooth], axis=1)
    assert episode(road, [ok])["comfort"] == 1.0


def test_yaw_rate_violation():
    yaw = torch.arange(30) * 0.1 * 1.2  # 1.2 rad/s > 0.95
    checks = comfort_checks(comfort_signals(yaw[:, None], torch.full((30, 1), 5.0), 0.1))
    assert not checks["yaw_rate"].item()


def test_ttc_below_threshold(road):
    close = episode(road, [constant_velocity(50, LANE0, 0.0, 15.0, 5), constant_velocity(58.8, LANE0, 0.0, 10.0, 5)])
    assert close["collision_any"] == 0 and close["ttc"] == 0.0
    assert close["min_ttc"] == pytest.approx(0.4, abs=1e-4)  # last gap 1.8 m closing at 5 m/s: first grid hit 0.4 s
    far = episode(road, [constant_velocity(50, LANE0, 0.0, 15.0, 5), constant_velocity(63.8, LANE0, 0.0, 10.0, 5)])
    assert far["ttc"] == 1.0 and far["min_ttc"] == pytest.approx(1.4, abs=1e-4)
    behind = episode(road, [constant_velocity(59, LANE0, 0.0, 10.0, 5), constant_velocity(50, LANE0, 0.0, 15.0, 5)])
    assert behind["ttc"] == 1.0  # a faster car closing from behind is not the ego's TTC


def test_wrong_way_driving(road):
    fast = episode(road, [constant_velocity(50, BACK0, 0.0, 10.0, 30)])
    assert fast["max_oncoming"] == pytest.approx(11.0, abs=0.05)  # 1 m per step, nuPlan window of 11 samples
    assert fast["driving_direction"] == 0.0
    assert fast["nuplan_score"] == 0.0
    slow = episode(road, [constant_velocity(50, BACK0, 0.0, 3.0, 30)])
    assert slow["driving_direction"] == 0.5  # 3 m in the 1.1 s window (11 samples)
    assert episode(road, [constant_velocity(50, LANE0, 0.0, 10.0, 30)])["driving_direction"] == 1.0


def test_speed_limit_score(road):
    m = episode(road, [constant_velocity(50, LANE0, 0.0, 26.0, 20)])  # limit 25 m/s
    assert m["speed_limit"] == pytest.approx(1 - 1.0 / 2.23, abs=1e-4)
    assert episode(road, [constant_velocity(50, LANE0, 0.0, 30.0, 20)])["speed_limit"] == 0.0
    assert episode(road, [constant_velocity(50, LANE0, 0.0, 20.0, 20)])["speed_limit"] == 1.0


def test_progress_ratio(road):
    ego = constant_velocity(50, LANE0, 0.0, 10.0, 30)
    own = episode(road, [ego])
    assert own["progress"] == pytest.approx(30.0, abs=0.01) and own["progress_ratio"] == 1.0
    assert own["expert_given"] == 0.0 and own["expert_progress"] == pytest.approx(30.0, abs=0.01)
    half = episode(road, [ego], expert=60.0)
    assert half["expert_given"] == 1.0
    assert half["progress_ratio"] == pytest.approx(0.5, abs=1e-3) and half["ego_progress"] == pytest.approx(0.5, abs=1e-3)
    assert half["navsim_ep"] == pytest.approx(0.5, abs=1e-3) and half["making_progress"] == 1.0
    assert half["nuplan_score"] == pytest.approx((5 * 0.5 + 5 + 4 + 2) / 16, abs=1e-3)
    assert half["pdms"] == pytest.approx((5 * 0.5 + 5 + 2) / 12, abs=1e-3)
    slow = episode(road, [ego], expert=200.0)
    assert slow["making_progress"] == 0.0 and slow["nuplan_score"] == 0.0
    tiny = episode(road, [ego], expert=4.0)
    assert tiny["navsim_ep"] == 1.0  # NAVSIM: expert under 5 m


def test_rows_past_their_duration_and_inactive_rows_are_ignored(road):
    from drivesim.core.scenario import ScenarioBatch
    from tests.helpers import make_scenario

    init = [{"x": 50, "y": LANE0, "speed": 10.0}]
    batch = ScenarioBatch.build([make_scenario(road, init, duration=1.0, name="short"),
                                 make_scenario(road, init, duration=2.0, name="long"),
                                 make_scenario(road, init, duration=2.0, name="failed")])
    ego = constant_velocity(50, LANE0, 0.0, 10.0, 20)
    tracks = np.repeat(ego[:, None, None], 3, axis=1)  # [21, 3, 1, 4]
    acc = MetricAccumulator(batch)
    from tests.metrics.helpers import state_from

    for t in range(21):
        acc.update(state_from(batch, tracks[t], t), torch.tensor([True, True, t <= 5]))
    acc.update(state_from(batch, tracks[20], 25))  # beyond every row: ignored
    m = acc.finalize()
    assert m["steps"].tolist() == [11.0, 21.0, 6.0]
    torch.testing.assert_close(m["progress"], torch.tensor([10.0, 20.0, 5.0]), atol=0.02, rtol=0)


def test_config_is_typed_and_validated():
    from drivesim.core.config import ConfigError, apply_overrides

    cfg = apply_overrides(MetricConfig(), {"ttc": {"threshold": 1.2}, "collision_thresholds": [0, 1, 2]})
    assert cfg.ttc.threshold == 1.2 and cfg.collision_thresholds == (0, 1, 2)
    with pytest.raises(ConfigError):
        apply_overrides(MetricConfig(), {"tcc": {}})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_metrics_on_gpu(road):
    ego = constant_velocity(50, LANE0, 0.0, 10.0, 30)
    cases = [[ego, constant_velocity(80, LANE0, math.pi, 10.0, 30)], [ego, constant_velocity(58.8, LANE0, 0.0, 7.0, 30)],
             [constant_velocity(50, BACK0, 0.0, 10.0, 30)]]
    for tracks in cases:
        cpu, gpu = episode(road, tracks), episode(road, tracks, device="cuda")
        for k in cpu:
            assert cpu[k] == pytest.approx(gpu[k], abs=1e-4), k


def test_a_frozen_ego_is_no_success_and_completes_nothing(road):
    """A policy that never moves scored success 1 (no collision, on the road): success now needs
    nuPlan's making progress (ratio >= 0.2 of the expert's), and route_completion is ~0."""
    frozen = constant_velocity(50, LANE0, 0.0, 0.0, 30)
    m = episode(road, [frozen], expert=30.0)
    assert m["collision_any"] == 0 and m["drivable_area_compliance"] == 1
    assert m["making_progress"] == 0 and m["success"] == 0.0
    assert m["route_completion"] == pytest.approx(0.0, abs=1e-3)
    half = episode(road, [constant_velocity(50, LANE0, 0.0, 5.0, 30)], expert=30.0)  # 15 m of 30
    assert half["success"] == 1.0 and half["route_completion"] == pytest.approx(0.5, abs=1e-3)
    alone = episode(road, [frozen])  # no reference: the share of the route ahead (400 m road)
    assert alone["route_completion"] == pytest.approx(0.0, abs=1e-3) and alone["expert_given"] == 0


def test_progress_ratio_is_capped_and_the_raw_ratio_kept(road):
    fast = episode(road, [constant_velocity(50, LANE0, 0.0, 10.0, 30)], expert=15.0)  # 30 m of 15
    assert fast["progress_ratio"] == 1.0 and fast["progress_ratio_raw"] == pytest.approx(2.0, abs=1e-3)
    assert fast["ego_progress"] == fast["progress_ratio"] and fast["route_completion"] == 1.0


def test_reference_progress_is_capped_where_scoring_stops(road):
    """A reference (e.g. a log) that went past the end of the route cannot be matched: the
    rollout stops scoring at the route's end, so the reference is capped there."""
    ego = constant_velocity(380, LANE0, 0.0, 10.0, 30)  # the 400 m route ends after ~16 m (front 1 m short)
    m = episode(road, [ego], expert=30.0)
    assert m["expert_progress"] < 20.0 and m["progress_ratio"] == 1.0
