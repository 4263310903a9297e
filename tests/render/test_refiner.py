import math

import pytest
import torch

from drivesim.render.splat.camera import ego_pose_matrix, load_rig
from drivesim.render.refiner.loss import edm_loss
from drivesim.render.refiner.model import Refiner, RefinerConfig
from drivesim.render.refiner.warp import relative_pose, reproject, warp_previous

torch.set_num_threads(1)

TINY = RefinerConfig(channels=(8, 16), cond_dim=16, start_noise=1.0)


def _inputs(N=2, H=16, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(N, 3, H, W, generator=g)
    depth = 5 + 20 * torch.rand(N, H, W, generator=g)
    alpha = torch.rand(N, H, W, generator=g)
    prev = torch.rand(N, 3, H, W, generator=g)
    valid = (torch.rand(N, 1, H, W, generator=g) > 0.3).float()
    action = torch.randn(N, 4, generator=g)
    camera = torch.arange(N)
    return rgb, depth, alpha, prev, valid, action, camera


def _K(W=32, H=16, f=20.0):
    return torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])


def test_shapes_and_range():
    torch.manual_seed(0)
    m = Refiner(TINY)
    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    out = m.sample(rgb, depth, alpha, prev, valid, action, camera, generator=torch.Generator().manual_seed(1))
    assert out.shape == rgb.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    out3 = m.sample(rgb, depth, alpha, None, None, action, camera, steps=3, generator=torch.Generator().manual_seed(1))
    assert out3.shape == rgb.shape
    # odd sizes are padded inside the UNet and cropped back
    odd = [t[..., :15, :29] if t.dim() == 4 else t for t in (rgb, prev, valid)]
    out = m.sample(odd[0], depth[:, :15, :29], alpha[:, :15, :29], odd[1], odd[2], action, camera)
    assert out.shape == (2, 3, 15, 29)


def test_sampling_is_deterministic_with_a_seed():
    torch.manual_seed(0)
    m = Refiner(TINY)
    with torch.no_grad():  # a non-zero output layer so that the network matters
        m.net.out.weight.normal_(0, 0.1)
    args = _inputs()
    a = m.sample(*args, steps=2, generator=torch.Generator().manual_seed(3))
    b = m.sample(*args, steps=2, generator=torch.Generator().manual_seed(3))
    c = m.sample(*args, steps=2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    m.cfg = RefinerConfig(channels=(8, 16), cond_dim=16)  # default: start at the splat, no noise
    assert torch.equal(m.sample(*args, generator=torch.Generator().manual_seed(3)),
                       m.sample(*args, generator=torch.Generator().manual_seed(4)))


def test_sigma_schedule():
    m = Refiner(TINY)
    assert m.sigmas(1) == [TINY.sigma_start, 0.0]
    s = m.sigmas(3)
    assert len(s) == 4 and s[0] == pytest.approx(TINY.sigma_start) and s[-2] == pytest.approx(TINY.sigma_min)
    assert all(a > b for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        m.sigmas(0)


def test_loss_finite_and_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    m = Refiner(TINY)
    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    target = (rgb * 0.8 + 0.1) * 2 - 1
    cond = m.pack(rgb, depth, alpha, prev, valid)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = edm_loss(m, target, cond, action, camera, torch.zeros(2), rgb * 2 - 1, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])


def test_warp_with_zero_motion_is_identity():
    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    K = _K().expand(2, 3, 3)
    warped, ok = warp_previous(prev, depth, K, torch.eye(4).expand(2, 4, 4))
    assert bool((ok == 1).all())
    assert torch.allclose(warped, prev, atol=1e-4)


def test_warp_with_a_known_yaw_shifts_by_f_tan_yaw():
    H, W, f, yaw = 16, 32, 20.0, 0.1
    K = _K(W, H, f)[None]
    depth = torch.full((1, H, W), 10.0)
    # the ego turns left by yaw; a camera looking forward (OpenCV: x right, y down, z forward)
    rig = load_rig("nuscenes", W, H)
    front = rig.names.index("CAM_FRONT")
    cam_to_ego = rig.cam_to_ego[front:front + 1].clone()
    cam_to_ego[:, :3, 3] = 0  # a camera at the ego origin: pure rotation
    view = lambda yaw: torch.linalg.inv(ego_pose_matrix(0.0, 0.0, yaw) @ cam_to_ego)
    T = relative_pose(view(0.0), view(yaw))
    uv, _ = reproject(depth, K, T)
    # the principal-point pixel of the turned camera was at cx + f tan(yaw) to the right before... or left
    col = torch.arange(W) + 0.5
    du = uv[0, H // 2, :, 0] - col
    centre = du[W // 2]
    R = cam_to_ego[0, :3, :3]
    fwd_rot = abs(float(R[1, 2]))  # how far the camera axis is from the ego's x axis (the nuScenes front camera is ~0)
    assert fwd_rot < 0.05
    assert float(centre.abs()) == pytest.approx(f * math.tan(yaw), rel=0.03)
    assert float(centre) < 0  # turning left moves content to the right in the new view: it was further left before
    # the warp moves image content accordingly: a bright column ends up f tan(yaw) further right
    prev = torch.zeros(1, 3, H, W)
    prev[..., 10] = 1.0
    warped, _ = warp_previous(prev, depth, K, T)
    col_new = float((warped[0, 0, H // 2] * col).sum() / warped[0, 0, H // 2].sum())
    assert col_new - 10.5 == pytest.approx(-float(centre), abs=0.15)


def test_action_does_not_enter_the_geometry_path():
    """The warp takes no action; the conditioning images are the same whatever the action."""
    torch.manual_seed(0)
    m = Refiner(TINY)
    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    assert torch.equal(m.pack(rgb, depth, alpha, prev, valid), m.pack(rgb, depth, alpha, prev, valid))
    import inspect
    assert "action" not in inspect.signature(warp_previous).parameters
    assert "action" not in inspect.signature(m.pack).parameters
    # an untrained refiner (zero output layer) returns the splat at one step whatever the action
    out_a = m.sample(rgb, depth, alpha, prev, valid, action, camera, generator=torch.Generator().manual_seed(0))
    out_0 = m.sample(rgb, depth, alpha, prev, valid, torch.zeros_like(action), camera,
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(out_a, out_0)


def test_config_round_trip_and_unknown_keys():
    cfg = RefinerConfig(channels=(8, 16), steps=2)
    assert RefinerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown refiner config keys"):
        RefinerConfig.from_dict({"chanels": [8]})


def test_checkpoint_round_trip(tmp_path):
    from drivesim.render.refiner.train import load_refiner, save

    torch.manual_seed(0)
    m = Refiner(TINY)
    save(m, {"lineage": {}}, tmp_path)
    m2 = load_refiner(tmp_path)
    args = _inputs()
    assert torch.equal(m.sample(*args, generator=torch.Generator().manual_seed(0)),
                       m2.sample(*args, generator=torch.Generator().manual_seed(0)))
    torch.save({"kind": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a drivesim refiner"):
        load_refiner(tmp_path / "other.pt")


def test_training_steps_on_pairs():
    """Two training steps on a tiny batch of pairs: finite loss."""
    from drivesim.render.refiner.data import make_pairs
    from drivesim.render.refiner.train import masked_edm_loss, training_batch

    torch.manual_seed(0)
    m = Refiner(TINY)
    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    K = _K().expand(2, 3, 3)
    pairs = make_pairs(rgb, rgb.flip(-1), depth, alpha, prev, K, torch.eye(4).expand(2, 4, 4), action, camera)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        loss = masked_edm_loss(m, *training_batch(m, pairs.batch(torch.arange(2)), gen), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(float(loss))


def _frame(rgb, target, N=2, H=16, W=32):
    """A PairSet.batch-like dict of one frame (identity camera motion, everything valid)."""
    return {"target": target, "rgb": rgb, "depth": torch.full((N, H, W), 10.0), "alpha": torch.ones(N, H, W),
            "prev": torch.zeros(N, 3, H, W), "prev_valid": torch.zeros(N, 1, H, W), "loss_mask": torch.ones(N, 1, H, W),
            "action": torch.zeros(N, 4), "camera": torch.arange(N), "K": _K().expand(N, 3, 3),
            "T_prev": torch.eye(4).expand(N, 4, 4)}


def test_temporal_loss_measures_the_change_of_the_error():
    """Zero when the refiner's error is the same in both frames (even a large one); (4 delta)^2 / sd^2
    (in [-1, 1] units) when it flips sign; and it trains the network."""
    from drivesim.render.refiner.train import temporal_loss

    m = Refiner(RefinerConfig(channels=(8, 16), cond_dim=16))  # start at the splat: an untrained net returns it
    g = torch.Generator().manual_seed(0)
    rgb_t, rgb_p = 0.2 + 0.6 * torch.rand(2, 2, 3, 16, 32, generator=g)
    delta = 0.1 * torch.randn(2, 3, 16, 32, generator=g)
    same = temporal_loss(m, _frame(rgb_t, rgb_t + delta), _frame(rgb_p, rgb_p + delta), g, p_self=0.5)
    assert float(same) < 1e-10
    flipped = temporal_loss(m, _frame(rgb_t, rgb_t + delta), _frame(rgb_p, rgb_p - delta), g, p_self=0.5)
    expected = float(((4 * delta) ** 2).mean()) / m.cfg.sigma_data ** 2
    assert float(flipped) == pytest.approx(expected, rel=1e-4)
    flipped.backward()
    assert float(m.net.out.weight.grad.abs().sum()) > 0


def test_pairs_link_consecutive_frames():
    """prev_offset survives concatenation: the temporal loss finds each sample's previous frame."""
    from drivesim.render.refiner.data import PairSet, make_pairs
    from drivesim.render.refiner.train import draw_batch

    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    K, eye = _K().expand(2, 3, 3), torch.eye(4).expand(2, 4, 4)
    first = make_pairs(rgb, rgb, depth, alpha, prev, K, eye, action, camera)  # its own previous frame is not kept
    second = make_pairs(rgb.flip(-1), rgb, depth, alpha, rgb, K, eye, action, camera, prev_kept=True)
    lone = make_pairs(rgb, rgb, depth, alpha, None, K, None, action, camera, prev_kept=True)  # no previous frame
    both = PairSet.cat([lone, first, second])
    assert both.previous(torch.arange(6)).tolist() == [-1, -1, -1, -1, 2, 3]
    assert torch.equal(both.T_prev[0], torch.eye(4)) and both.K.shape == (6, 3, 3)
    cur, prv = draw_batch([(both, 5)], torch.Generator().manual_seed(0), consecutive=True)
    assert torch.allclose(cur["target"].flip(-1), prv["target"], atol=1 / 255)  # each drawn with its previous frame


# ------------------------------------------------------------------------------ in the simulator
class _CameraPolicy:
    name = "camera_reader"

    def __init__(self):
        self.seen = []

    def reset(self, batch):
        self.seen = []

    def act(self, obs):
        self.seen.append(obs.cameras.clone())
        return torch.zeros(obs.batch_size, 2)


def _refined_rollout(seed: int):
    import warnings

    from drivesim.core.scenario import ScenarioBatch
    from drivesim.map.builders import build_map
    from drivesim.render.refiner.cameras import RefinedCameras
    from drivesim.render.splat.sensors import SplatCameras
    from drivesim.sim.rollout import rollout
    from tests.helpers import make_scenario

    torch.manual_seed(0)
    m = Refiner(TINY)
    with torch.no_grad():
        m.net.out.weight.normal_(0, 0.05)  # an untrained but non-trivial refiner
    sc = make_scenario(build_map("straight"), [dict(x=20, y=-1.8, speed=15.0), dict(x=45, y=-5.4, speed=0.0)],
                       duration=0.4)
    cams = RefinedCameras(SplatCameras(load_rig("nuscenes"), 32, 16), m, seed=seed)
    policy = _CameraPolicy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rollout(ScenarioBatch.build([sc]), policy, cameras=cams, policy_every=2)
    assert res.status == ["ok"]
    return policy.seen, cams


def test_refined_camera_observations_are_deterministic_per_seed():
    a, cams = _refined_rollout(seed=0)
    b, _ = _refined_rollout(seed=0)
    c, _ = _refined_rollout(seed=1)
    assert len(a) == 2 and a[0].shape == (1, 6, 16, 32, 3)
    assert 0.0 <= float(a[0].min()) and float(a[0].max()) <= 1.0
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    assert cams._rows[0].frame == 1  # the second observation was refined with the first as its previous frame


def test_pairs_batch_and_digest():
    from drivesim.render.refiner.data import PairSet, make_pairs

    rgb, depth, alpha, prev, valid, action, camera = _inputs()
    K = _K().expand(2, 3, 3)
    p = make_pairs(rgb, rgb, depth, alpha, None, K, None, action, camera)
    assert not bool(p.prev_valid.any())
    q = make_pairs(rgb, rgb, depth, alpha, prev, K, torch.eye(4).expand(2, 4, 4), action, camera,
                   loss_mask=torch.zeros(2, 16, 32, dtype=torch.bool))
    both = PairSet.cat([p, q])
    assert len(both) == 4 and both.digest() == PairSet.cat([p, q]).digest() != p.digest()
    b = both.batch(torch.tensor([0, 3]))
    assert b["target"].shape == (2, 3, 16, 32) and float(b["loss_mask"][1].max()) == 0.0
    assert torch.allclose(b["target"][0], rgb[0], atol=1 / 255)


@pytest.mark.slow
def test_simulate_renders_refined_cameras(tmp_path, capsys):
    import warnings

    from drivesim.cli import main
    from drivesim.render.refiner.train import save

    torch.manual_seed(0)
    save(Refiner(TINY), {"lineage": {}}, tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["simulate", "--map", "straight", "--policy", "constant_velocity", "--render", "refined",
                     "--refiner", str(tmp_path / "ckpt"), "--render-size", "32x16", "--render-every", "50",
                     "--format", "gif", "-o", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "refined surround frames" in out and list(tmp_path.glob("*_refined.gif"))


def test_patch_shifts_measure_a_known_translation():
    from drivesim.render.refiner.eval import patch_shifts

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 112, generator=g), 3, 1, 1)[0]
    moved = torch.roll(img, shifts=(1, 3), dims=(1, 2))  # content moves 3 px right, 1 px down
    d, texture = patch_shifts(img[:, 8:56, 8:104], moved[:, 8:56, 8:104])
    assert d.shape[1] == 2 and len(texture) == len(d)
    assert torch.allclose(d, torch.tensor([3.0, 1.0]).expand_as(d), atol=0.25)


@pytest.mark.slow
def test_eval_command_prints_the_table_and_writes_figures(tmp_path, capsys):
    import json
    import warnings

    from drivesim.cli import main
    from drivesim.render.refiner.train import save

    torch.manual_seed(0)
    save(Refiner(TINY), {"lineage": {}, "config": {"data": {"width": 64, "height": 32}}}, tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["refiner", "eval", "--checkpoint", str(tmp_path / "ckpt"), "--real", "none", "--frames", "4",
                     "-o", str(tmp_path / "eval")])
    assert code == 0
    out = capsys.readouterr().out
    assert "temporal stability, 4 closed-loop frames" in out and "held-out real PandaSet frames: not evaluated" in out
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    temporal = report["variants"]["mean start (default)"]["temporal"]
    assert len(temporal["per_frame"]["refined"]) == 3 and temporal["splat"] > 0
    assert (tmp_path / "eval" / "temporal.png").stat().st_size > 10_000


def test_refined_cameras_action_from_poses_and_recorded_steps():
    """Pose-only states: speed by finite differences, acceleration 0 until two speeds are known (a
    first speed of 0 would read as a 100 m/s^2 jump); recorded steps carry the logged action."""
    import numpy as np

    from drivesim.render.refiner.cameras import RefinedCameras, _RowHistory
    from drivesim.render.splat.sensors import SplatCameras, TrajectoryStep

    cams = RefinedCameras(SplatCameras(load_rig("nuscenes"), 32, 16), Refiner(TINY), dt=0.1)

    class Poses:  # what a state without speed/accel looks like to _action
        pass

    hist = lambda pose, speed: _RowHistory(None, 0, None, torch.eye(4).expand(6, 4, 4), torch.zeros(6, 3, 16, 32), pose, speed)
    a0, v0 = cams._action(Poses(), 0, (0.0, 0.0, 0.0), None)
    assert v0 is None and torch.equal(a0, torch.zeros(4))
    a1, v1 = cams._action(Poses(), 0, (1.0, 0.0, 0.0), hist((0.0, 0.0, 0.0), v0))
    assert v1 == pytest.approx(10.0) and float(a1[0]) == 0.0 and float(a1[2]) == pytest.approx(10.0)
    a2, _ = cams._action(Poses(), 0, (2.1, 0.0, 0.0), hist((1.0, 0.0, 0.0), v1))
    assert float(a2[0]) == pytest.approx(10.0)  # (11 - 10) / 0.1
    traj = {k: np.zeros((3, 1, 2), dtype=np.float32) for k in ("x", "y", "yaw", "length", "width", "agent_type", "valid")}
    traj.update(speed=np.full((3, 1, 2), 7.0, np.float32), accel=np.full((3, 1, 2), -1.5, np.float32),
                steer=np.full((3, 1, 2), 0.1, np.float32))
    step = TrajectoryStep(traj, 1)
    a, v = cams._action(step, 0, (0.0, 0.0, 0.0), None)
    assert v == 7.0 and a[:3].tolist() == pytest.approx([-1.5, 0.1, 7.0])
