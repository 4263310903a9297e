"""Scene reconstruction: SSIM against a plain reference, masks, split, a tiny real fit, the artifact."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from drivesim.io import pandaset as ps
from drivesim.render.reconstruct import fit as rc
from drivesim.render.reconstruct import artifact as art
from drivesim.render.splat.rasterize import render

warnings.filterwarnings("ignore", message="render: using the torch rasterizer")


def ssim_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map by 2D convolution with an explicit 11x11 Gaussian window (sigma 1.5), channel mean."""
    x = np.arange(11) - 5.0
    g = np.exp(-x * x / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    maps = []
    for ch in range(3):
        p, q = a[..., ch], b[..., ch]
        f = lambda t: convolve2d(t, w, mode="valid")
        mp, mq = f(p), f(q)
        spp, sqq, spq = f(p * p) - mp ** 2, f(q * q) - mq ** 2, f(p * q) - mp * mq
        maps.append((2 * mp * mq + c1) * (2 * spq + c2) / ((mp ** 2 + mq ** 2 + c1) * (spp + sqq + c2)))
    return np.mean(maps, 0)


def test_ssim_matches_reference_and_psnr_is_masked():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 24, 30, 3, generator=gen, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(2, 24, 30, 3, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = rc.ssim_map(a, b)
    for i in range(2):
        np.testing.assert_allclose(ours[i].numpy(), ssim_reference(a[i].numpy(), b[i].numpy()), atol=1e-10)
    valid = torch.ones(2, 24, 30, dtype=torch.bool)
    assert torch.allclose(rc.masked_ssim(a, a, valid), torch.ones(2, dtype=torch.float64))
    c = a.clone()
    c[:, :, :10] += 0.5  # a wrong region, then masked out: PSNR and SSIM see only the rest
    valid[:, :, :16] = False
    d = a.clone()
    d[:, :, 10:] += 0.1
    assert torch.allclose(rc.masked_psnr(d, a, valid), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.allclose(rc.masked_psnr(c, a, valid), torch.full((2,), 100.0, dtype=torch.float64))


def test_split_holds_out_one_frame_in_eight():
    train, held = rc.split_frames(80, 8)
    assert held == list(range(7, 80, 8)) and len(train) == 70 and not set(train) & set(held)
    with pytest.raises(ValueError):
        rc.split_frames(10, 1)


def _camera_sequence(boxes: torch.Tensor, w=64, h=48):
    """A one-camera, one-frame sequence looking along world +x from (0, 0, 1.5) (OpenCV camera)."""
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    c2w[2, 3] = 1.5
    K = torch.tensor([[50.0, 0, (w - 1) / 2], [0, 50.0, (h - 1) / 2], [0, 0, 1]])
    return ps.PandaSetSequence(ps.Path("."), ("front",), (0,), w, h, torch.zeros(1, 1, h, w, 3, dtype=torch.uint8),
                               K[None], c2w[None, None], torch.zeros(1, 1, dtype=torch.float64), [boxes], [["Car"] * len(boxes)],
                               torch.eye(4, dtype=torch.float64)[None])


def test_cuboid_masks_cover_projection_and_clip_at_the_camera():
    # a 2 m cube 10 m ahead at camera height: its near face (9 m) spans 100/9 = 11 px around the centre
    seq = _camera_sequence(torch.tensor([[10.0, 0, 1.5, 2, 2, 2, 0.3]], dtype=torch.float64))
    m = rc.object_masks(seq, dilate=0)[0, 0]
    assert m[24, 32] and not m[0, 0] and not m[24, 10]
    assert 100 < int(m.sum()) < 400
    # every sampled point of the box projects into the mask
    pts = ps.box_corners(seq.boxes[0])[0]
    w2c = torch.linalg.inv(seq.cam_to_world[0, 0])
    for lam in torch.rand(200, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64):
        p = (lam / lam.sum()) @ pts
        q = w2c[:3, :3] @ p + w2c[:3, 3]
        u, v = 50 * q[0] / q[2] + 31.5, 50 * q[1] / q[2] + 23.5
        assert m[int(round(float(v))), int(round(float(u)))]
    # behind the camera: nothing; straddling the camera plane: a large clipped region, no error
    behind = _camera_sequence(torch.tensor([[-10.0, 0, 1.5, 2, 2, 2, 0.0]], dtype=torch.float64))
    assert not rc.object_masks(behind, dilate=0).any()
    beside = _camera_sequence(torch.tensor([[3.0, 3.0, 1.5, 10, 2, 2, 0.0]], dtype=torch.float64))
    mb = rc.object_masks(beside, dilate=1)[0, 0]
    assert mb[:, :5].any() and not mb[:, -5:].any()  # a truck from behind us to 8 m ahead, on our left


@pytest.fixture(scope="module")
def tiny(data_dir):
    seq = ps.load(data_dir / "pandaset_002", size=(64, 36), cameras=("front", "left"), frames=(30, 31, 32, 33))
    cfg = rc.ReconConfig(width=64, height=36, cameras=seq.cameras, holdout_every=4, iters=25, batch=2,
                         n_gaussians=1500, init_frames=3, mask_dilate=1)
    return seq, cfg, rc.object_masks(seq, cfg.mask_dilate)


@pytest.mark.data
def test_tiny_fit_lowers_loss_and_raises_heldout_psnr(tiny):
    seq, cfg, masks = tiny
    before = rc.fit(seq, rc.ReconConfig(**{**cfg.__dict__, "iters": 0}), masks, progress=False)
    res = rc.fit(seq, cfg, masks, progress=False)
    assert res.held_out == [3] and res.train == [0, 1, 2]
    first, last = np.mean(res.losses[:5]), np.mean(res.losses[-5:])
    assert last < 0.9 * first
    p0 = rc.evaluate(rc.to_gaussians(before.raw), seq, before, masks)["overall"]["psnr"]
    p1 = rc.evaluate(rc.to_gaussians(res.raw), seq, res, masks)["overall"]["psnr"]
    assert p1 > p0 + 0.5, (p0, p1)


@pytest.mark.data
def test_artifact_round_trip_deterministic_and_novel_views(tiny, tmp_path):
    seq, cfg, masks = tiny
    cfg = rc.ReconConfig(**{**cfg.__dict__, "iters": 3})
    a, b = rc.fit(seq, cfg, masks, progress=False), rc.fit(seq, cfg, masks, progress=False)
    ga, gb = rc.to_gaussians(a.raw), rc.to_gaussians(b.raw)
    assert art.gaussians_hash(ga) == art.gaussians_hash(gb)  # same seed, same scene, bit for bit
    metrics = rc.evaluate(ga, seq, a, masks)
    card = art.save(tmp_path, ga, a, cfg, seq, metrics)
    assert card["held_out_frames"] == [33] and card["train_frames"] == [30, 31, 32]
    assert len(card["data_hash"]) == 64 and card["config"]["iters"] == 3
    g = art.load_scene(tmp_path)
    assert (g.ids == -1).all() and art.gaussians_hash(g) == card["content_hash"]
    vm = torch.linalg.inv(seq.cam_to_world[:, 0]).float()
    out = render(g, vm, seq.K, seq.width, seq.height)
    assert out.alpha.mean() > 0.5
    poses = art.shifted_poses(seq.cam_to_world[:, 0], seq.ego_left(0), (-2, 0, 2))
    assert torch.allclose((poses[2, :, :3, 3] - poses[0, :, :3, 3]).norm(dim=-1), torch.full((2,), 4.0, dtype=torch.float64))
    assert abs(float(seq.ego_left(0)[2])) < 1e-9
    assert art.novel_view_figure(tmp_path / "novel.png", g, seq, a, 0).stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no fitted scene"):
        art.load_scene(tmp_path / "nothing")


@pytest.mark.data
def test_poses_far_from_the_scene_warn_instead_of_a_silent_black_frame(tiny):
    seq, cfg, masks = tiny
    res = rc.fit(seq, rc.ReconConfig(**{**cfg.__dict__, "iters": 0}), masks, progress=False)
    far = seq.cam_to_world.clone()
    far[..., 2, 3] += 5000.0  # 5 km up, looking at nothing
    moved = ps.PandaSetSequence(**{**seq.__dict__, "cam_to_world": far})
    with pytest.warns(UserWarning, match="covers only"):
        rc.evaluate(rc.to_gaussians(res.raw), moved, res, masks)
