"""Comfort as nuPlan computes it: Savitzky-Golay filtered derivatives with nuplan-devkit's windows
and orders (state_extractors.py), checked against scipy's savgol_filter written out step by step."""

import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from drivesim.core.config import ConfigError
from drivesim.metrics.comfort import ComfortConfig, comfort_signals, is_comfortable, savgol


def nuplan_reference(yaw: np.ndarray, speed: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """The nuPlan pipeline in plain scipy (extract_ego_yaw_rate, EgoYawAccelerationStatistics,
    extract_ego_acceleration window 8 order 2, extract_ego_jerk window 15 order 2)."""
    n = len(yaw)
    heading = np.unwrap(yaw)
    yaw_rate = savgol_filter(heading, min(5, n), 2, deriv=1, delta=dt)
    yaw_accel = savgol_filter(heading, min(5, n), 3, deriv=2, delta=dt)
    lon_raw = np.diff(speed) / dt
    lon_raw = np.concatenate([lon_raw[:1], lon_raw])
    lat_raw = speed * yaw_rate
    smooth = lambda x: savgol_filter(x, min(8, n), 2)
    lon, lat, mag = smooth(lon_raw), smooth(lat_raw), smooth(np.hypot(lon_raw, lat_raw))
    jerk = savgol_filter(mag, min(15, n), 2, deriv=1, delta=dt)
    lon_jerk = savgol_filter(lon, min(15, n), 2, deriv=1, delta=dt)
    return {"yaw_rate": yaw_rate, "yaw_accel": yaw_accel, "lon_accel": lon, "lat_accel": lat, "jerk": jerk,
            "lon_jerk": lon_jerk}


def test_signals_match_nuplan_savitzky_golay():
    rng = np.random.default_rng(0)
    T = 60
    t = np.arange(T) * 0.1
    speed = np.clip(8 + 2 * np.sin(t) + 0.3 * rng.standard_normal(T), 0, None)
    yaw = np.cumsum(0.05 * np.sin(2 * t)) + 3.1  # crosses +-pi: the unwrap matters
    sig = comfort_signals(torch.tensor(yaw)[:, None], torch.tensor(speed)[:, None], 0.1)
    ref = nuplan_reference(yaw, speed, 0.1)
    for name, want in ref.items():
        got = sig[name][0][:, 0].numpy()
        assert np.allclose(got, want, atol=1e-6), name


def test_valid_samples_are_filtered_as_one_series():
    speed = torch.linspace(5, 9, 40)
    yaw = torch.linspace(0, 0.4, 40)
    valid = torch.ones(40, 2, dtype=torch.bool)
    valid[25:, 1] = False  # the second column stops after 25 samples (a rollout that ended early)
    two = comfort_signals(torch.stack([yaw, yaw], 1), torch.stack([speed, speed], 1), 0.1, valid)
    short = comfort_signals(yaw[:25, None], speed[:25, None], 0.1)
    for name in two:
        assert torch.allclose(two[name][0][:25, 1], short[name][0][:, 0], atol=1e-5), name
        assert (two[name][0][25:, 1] == 0).all() and not two[name][1][25:, 1].any()


def test_short_series_and_bounds():
    # a series shorter than a window uses the whole series (nuPlan: min(window_length, len))
    assert is_comfortable(torch.zeros(4, 1), torch.full((4, 1), 5.0), 0.1).item() == 1.0
    assert is_comfortable(torch.zeros(1, 1), torch.full((1, 1), 5.0), 0.1).item() == 1.0
    hard = 15.0 - 6.0 * torch.arange(20) * 0.1  # braking at 6 m/s^2 < -4.05
    assert is_comfortable(torch.zeros(20, 1), hard[:, None], 0.1).item() == 0.0
    x = torch.arange(20.0)
    assert torch.allclose(savgol(x[:, None], torch.ones(20, 1, dtype=torch.bool), 5, 2, 1, 0.5)[:, 0], torch.full((20,), 2.0), atol=1e-5)
    with pytest.raises(ConfigError, match="jerk_window"):
        ComfortConfig(jerk_window=2).validate_config()
