import torch

from drivesim.dynamics import BicycleConfig, apply_limits, inverse, kinematically_feasible, step


def test_inverse_recovers_actions_of_step():
    g = torch.Generator().manual_seed(0)
    B, T, dt = 64, 30, 0.1
    x, y = torch.zeros(B), torch.zeros(B)
    yaw = torch.rand(B, generator=g) * 6 - 3
    v = torch.rand(B, generator=g) * 20 + 1
    length = torch.rand(B, generator=g) * 3 + 3
    accel = torch.randn(B, T, generator=g).clamp(-3, 3)
    steer = torch.randn(B, T, generator=g).clamp(-0.4, 0.4) * 0.5
    yaws, speeds = [yaw], [v]
    for t in range(T):
        x, y, yaw, v, _ = step(x, y, yaw, v, accel[:, t], steer[:, t], length, dt)
        yaws.append(yaw)
        speeds.append(v)
    a_rec, s_rec = inverse(torch.stack(yaws, -1), torch.stack(speeds, -1), length.unsqueeze(-1), dt)
    moving = torch.stack(speeds, -1)[:, 1:] > 0.05
    assert torch.allclose(a_rec[moving], accel[moving], atol=1e-3)
    assert torch.allclose(s_rec[moving], steer[moving], atol=1e-3)


def test_speed_never_negative_and_effective_accel_reported():
    x = y = yaw = torch.zeros(1)
    _, _, _, v, a = step(x, y, yaw, torch.tensor([0.3]), torch.tensor([-8.0]), torch.zeros(1), torch.tensor([4.5]), 0.1)
    assert v.item() == 0.0 and abs(a.item() + 3.0) < 1e-5


def test_limits_clamp_range_jerk_and_steer_rate():
    cfg = BicycleConfig()
    a, s = apply_limits(torch.tensor([50.0]), torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.0]), 0.1, cfg)
    assert a.item() <= cfg.max_jerk * 0.1 + 1e-6 and s.item() <= cfg.max_steer_rate * 0.1 + 1e-6


def test_waymax_feasibility_thresholds():
    ok = kinematically_feasible(torch.tensor([5.0, 11.0, 1.0]), torch.tensor([0.1, 0.0, 0.8]), torch.tensor([4.5, 4.5, 4.5]))
    assert ok.tolist() == [True, False, False]
