"""The tile-binned torch rasterizer against a dense brute-force twin (and gsplat on a GPU)."""

import math
import warnings

import pytest
import torch

from drivesim.render.splat import projection as proj
from drivesim.render.splat import rasterize as rz
from drivesim.render.splat.gaussians import Gaussians
from drivesim.render.splat.rasterize import render

torch.set_num_threads(1)


# ------------------------------------------------------------------ reference and scenes

def reference_render(g, viewmats, Ks, W, H, bg, near=0.05, far=1e4):
    """Every Gaussian at every pixel, gsplat's conventions, loop-free; returns rgb, depth, alpha, id weights."""
    q = torch.nn.functional.normalize(g.quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    Rq = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).view(-1, 3, 3)
    cov = Rq @ torch.diag_embed(g.scales ** 2) @ Rq.transpose(1, 2)  # [N, 3, 3]
    R, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [C, 1, 3, 3]
    pc = (R @ g.means[None, :, :, None])[..., 0] + t  # [C, N, 3]
    cov_c = R @ cov[None] @ R.transpose(-1, -2)
    fx, fy, cx, cy = (Ks[:, i, j][:, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    X, Y, Z = pc.unbind(-1)
    tx = Z * torch.clamp(X / Z, -(cx / fx + 0.3 * 0.5 * W / fx), (W - cx) / fx + 0.3 * 0.5 * W / fx)
    ty = Z * torch.clamp(Y / Z, -(cy / fy + 0.3 * 0.5 * H / fy), (H - cy) / fy + 0.3 * 0.5 * H / fy)
    O = torch.zeros_like(Z)
    J = torch.stack([fx / Z, O, -fx * tx / Z ** 2, O, fy / Z, -fy * ty / Z ** 2], -1).view(*Z.shape, 2, 3)
    cov2d = J @ cov_c @ J.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=Z.dtype)
    conic = torch.linalg.inv(cov2d)  # [C, N, 2, 2]
    m2d = torch.stack([fx * X / Z + cx, fy * Y / Z + cy], -1)  # [C, N, 2]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=Z.dtype) + 0.5, torch.arange(W, dtype=Z.dtype) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], -1).view(-1, 2)  # [HW, 2]
    d = pix[None, :, None, :] - m2d[:, None]  # [C, HW, N, 2]
    sig = 0.5 * torch.einsum("cpni,cnij,cpnj->cpn", d, conic, d)
    alpha = (g.opacities * torch.exp(-sig)).clamp(max=0.999)
    visible = (Z > near) & (Z < far)  # [C, N]
    alpha = torch.where((alpha >= 1 / 255) & visible[:, None], alpha, torch.zeros_like(alpha))
    order = torch.sort(Z.detach(), dim=1, stable=True).indices  # [C, N]
    alpha = torch.gather(alpha, 2, order[:, None].expand_as(alpha))
    T_incl = torch.cumprod(1 - alpha, 2)
    alpha = torch.where(T_incl > 1e-4, alpha, torch.zeros_like(alpha))
    T_excl = torch.cat([torch.ones_like(alpha[..., :1]), torch.cumprod(1 - alpha, 2)[..., :-1]], 2)
    wts = alpha * T_excl  # [C, HW, N] in depth order
    feats = torch.cat([g.colors[order], Z.gather(1, order)[..., None]], -1)  # [C, N, 4]
    acc = wts @ feats  # [C, HW, 4]
    a = wts.sum(-1)
    T_final = torch.prod(1 - alpha, 2)
    rgb = acc[..., :3] + T_final[..., None] * bg
    depth = torch.where(a > 0, acc[..., 3] / a.clamp(min=1e-10), torch.zeros_like(a))
    uid, inv = torch.unique(g.ids, return_inverse=True)
    onehot = torch.nn.functional.one_hot(inv, len(uid)).to(Z.dtype)[order]  # [C, N, K]
    idw = wts.detach() @ onehot
    C = viewmats.shape[0]
    return (rgb.view(C, H, W, 3), depth.view(C, H, W), a.view(C, H, W), idw.view(C, H, W, -1), uid)


def look_at_viewmats(n_cams, dtype=torch.float64):
    """Cameras at the origin looking along +x rotated by 2 pi k / n_cams (OpenCV convention)."""
    from drivesim.render.splat.camera import look_rotation_opencv
    mats = []
    for k in range(n_cams):
        R_c2w = look_rotation_opencv(2 * math.pi * k / n_cams).to(dtype)
        V = torch.eye(4, dtype=dtype)
        V[:3, :3] = R_c2w.T
        mats.append(V)
    return torch.stack(mats)


def intrinsics(n_cams, W, H, fov_deg=70.0, dtype=torch.float64):
    f = 0.5 * W / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0, W / 2 - 0.3], [0, f * 1.05, H / 2 + 0.2], [0, 0, 1]], dtype=dtype)
    return K.expand(n_cams, 3, 3).clone()


def random_scene(n, seed, dtype=torch.float64, n_ids=4):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen, dtype=dtype)
    # in front of cameras 0 (+x) and 1 (-x when n_cams=2), a few behind near/far planes
    side = torch.where(r(n) < 0.5, -1.0, 1.0).to(dtype)
    means = torch.stack([side * (0.02 + 12 * r(n)), 6 * (r(n) - 0.5), 3 * (r(n) - 0.5)], -1)
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    scales = 0.02 + 0.5 * r(n, 3) ** 2
    opac = 0.02 + 0.98 * r(n)
    colors = r(n, 3)
    ids = torch.randint(-1, n_ids - 1, (n,), generator=gen)
    return Gaussians(means, quats, scales, opac, colors, ids)


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_backend_matches_dense_reference(seed, dtype):
    W, H = 64, 40
    g = random_scene(300, seed, dtype)
    V, K = look_at_viewmats(2, dtype), intrinsics(2, W, H, dtype=dtype)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=dtype)
    out = render(g, V, K, W, H, backend="torch", background=bg)
    rgb, depth, alpha, idw, uid = reference_render(g, V, K, W, H, bg)
    assert out.rgb.shape == (2, H, W, 3) and out.agent_id.dtype == torch.int64
    assert alpha.mean() > 0.3, "scene too sparse to test anything"
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert (out.rgb - rgb).abs().max() < tol
    assert (out.alpha - alpha).abs().max() < tol
    # depth divides by alpha: compare absolute where alpha is not tiny (float32), everywhere (float64)
    dmask = alpha > (0 if dtype == torch.float64 else 1e-2)
    assert ((out.depth - depth).abs() / depth.clamp(min=1))[dmask].max() < tol
    assert (out.depth[alpha == 0] == 0).all()
    # agent ids: equal wherever neither the top weight nor the alpha >= 0.5 test is a near-tie
    top2 = idw.topk(2, -1).values
    clear = (top2[..., 0] - top2[..., 1] > 1e-3) & ((alpha - 0.5).abs() > 1e-3)
    ref_id = torch.where(alpha >= 0.5, uid[idw.argmax(-1)], torch.full_like(alpha, -1, dtype=torch.long))
    assert clear.float().mean() > 0.9
    assert (out.agent_id == ref_id)[clear].all()
    assert (out.agent_id >= 0).any() and (out.agent_id == -1).any()


def test_tile_size_does_not_change_the_image():
    W, H = 50, 37  # not a multiple of the tile size
    g = random_scene(200, 5)
    V, K = look_at_viewmats(2), intrinsics(2, W, H)
    a = render(g, V, K, W, H, backend="torch", tile_size=16)
    b = render(g, V, K, W, H, backend="torch", tile_size=8)
    assert (a.rgb - b.rgb).abs().max() < 1e-10 and (a.agent_id == b.agent_id).all()


def test_gradients_match_dense_reference():
    W, H = 32, 24
    g = random_scene(60, 3)
    V, K = look_at_viewmats(2), intrinsics(2, W, H)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    w_rgb = torch.rand(2, H, W, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    names = ("means", "quats", "scales", "opacities", "colors")

    def grads(fn):
        params = {n: getattr(g, n).clone().requires_grad_(True) for n in names}
        gg = g.replace(**params)
        rgb, depth, alpha = fn(gg)
        loss = (rgb * w_rgb).sum() + 0.1 * (depth * alpha).sum() + alpha.sum()
        loss.backward()
        return {n: p.grad for n, p in params.items()}

    tile = grads(lambda gg: (lambda o: (o.rgb, o.depth, o.alpha))(render(gg, V, K, W, H, backend="torch", background=bg)))
    ref = grads(lambda gg: reference_render(gg, V, K, W, H, bg)[:3])
    for n in names:
        assert tile[n].abs().max() > 0, n
        err = (tile[n] - ref[n]).abs().max() / ref[n].abs().max()
        assert err < 1e-8, (n, float(err))


def test_gradcheck_tiny_scene():
    W, H = 12, 10
    g = random_scene(6, 11)
    g = g.replace(means=g.means.abs() * torch.tensor([1.0, 0.3, 0.3], dtype=torch.float64) + torch.tensor([3.0, 0, 0], dtype=torch.float64))
    V, K = look_at_viewmats(1), intrinsics(1, W, H)

    def f(means, quats, scales, opac, colors):
        o = render(Gaussians(means, quats, scales, opac, colors, g.ids), V, K, W, H, backend="torch")
        return o.rgb, o.alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.colors))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_equal_depth_ties_keep_input_order():
    W, H = 32, 32
    V, K = look_at_viewmats(1), intrinsics(1, W, H)
    d = torch.float64
    red, green = torch.tensor([1.0, 0, 0], dtype=d), torch.tensor([0, 1.0, 0], dtype=d)

    def scene(first, second, n_copies=1):
        n = 2 * n_copies
        means = torch.tensor([[5.0, 0, 0]], dtype=d).expand(n, 3).clone()
        colors = torch.stack([first, second]).repeat_interleave(n_copies, 0)
        return Gaussians(means, torch.tensor([[1.0, 0, 0, 0]], dtype=d).expand(n, 4).clone(),
                         torch.full((n, 3), 0.5, dtype=d), torch.full((n,), 0.9, dtype=d), colors,
                         torch.tensor([0] * n_copies + [1] * n_copies))

    a = render(scene(red, green), V, K, W, H, backend="torch")
    b = render(scene(green, red), V, K, W, H, backend="torch")
    c = render(scene(red, green), V, K, W, H, backend="torch")
    centre = (0, H // 2, W // 2)
    al = a.alpha[centre]  # = alpha + alpha (1 - alpha) of the two equal Gaussians
    front = 1 - math.sqrt(1 - al)
    assert front > 0.8 and torch.allclose(a.rgb[centre], torch.tensor([front, front * (1 - front), 0], dtype=d))
    assert torch.equal(b.rgb[centre], a.rgb[centre][[1, 0, 2]])  # the first one given is in front
    assert torch.equal(a.rgb, c.rgb) and a.agent_id[centre] == 0 and b.agent_id[centre] == 0  # front: id 0
    # many ties spread over tiles: the same image as the dense reference (stable sort there too)
    e = render(scene(red, green, 20), V, K, W, H, backend="torch")
    assert (e.rgb - reference_render(scene(red, green, 20), V, K, W, H, torch.zeros(3, dtype=d))[0]).abs().max() < 1e-9


def test_empty_scene_and_blind_camera_warn_and_return_background():
    W, H = 20, 16
    V, K = look_at_viewmats(2, torch.float32), intrinsics(2, W, H, dtype=torch.float32)
    bg = torch.tensor([0.3, 0.4, 0.5])
    with pytest.warns(UserWarning, match="no Gaussians"):
        out = render(Gaussians.empty(), V, K, W, H, backend="torch", background=bg)
    assert torch.equal(out.rgb, bg.expand(2, H, W, 3)) and (out.alpha == 0).all() and (out.agent_id == -1).all()
    g = random_scene(50, 0, torch.float32)
    g = g.replace(means=g.means.abs() + torch.tensor([1.0, 0, 0]))  # only camera 0 (+x) sees them
    with pytest.warns(UserWarning, match="camera 1 sees nothing"):
        out = render(g, V, K, W, H, backend="torch", background=bg)
    assert torch.equal(out.rgb[1], bg.expand(H, W, 3)) and out.alpha[0].max() > 0.5
    behind = g.replace(means=-g.means)  # now only camera 1 (-x) sees them
    with pytest.warns(UserWarning, match="camera 0 sees nothing"):
        render(behind, V, K, W, H, backend="torch")


def test_input_validation_and_backend_choice(monkeypatch):
    W, H = 20, 16
    g = random_scene(30, 0, torch.float32)
    V, K = look_at_viewmats(2, torch.float32), intrinsics(2, W, H, dtype=torch.float32)
    with pytest.raises(ValueError, match="2 viewmats but 1 Ks"):
        render(g, V, K[:1], W, H)
    with pytest.raises(ValueError, match="positive"):
        render(g, V, K, 0, H)
    with pytest.raises(ValueError, match="NaN"):
        render(g.replace(means=g.means.clone().index_fill_(0, torch.tensor([3]), float("nan"))), V, K, W, H)
    with pytest.raises(ValueError, match="unknown backend"):
        render(g, V, K, W, H, backend="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="backend='gsplat' needs CUDA"):
            render(g, V, K, W, H, backend="gsplat")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            render(g, V, K, W, H)
            render(g, V, K, W, H)  # one warning, not one per call
        assert [str(w.message) for w in caught] == [
            "render: using the torch rasterizer because CUDA is not available"]
    monkeypatch.setattr(proj, "MAX_TILE_PAIRS", 10)
    with pytest.raises(MemoryError, match="scene too large for memory: .* pairs"):
        render(g, V, K, W, H, backend="torch")


def test_projection_matches_gsplat_torch_helpers():
    _torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")
    W, H = 64, 40
    g = random_scene(300, 4)
    V, K = look_at_viewmats(2), intrinsics(2, W, H)
    p = rz.project(g, V, K, W, H, near=0.05, far=1e4)
    covars, _ = _torch_impl._quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _torch_impl._fully_fused_projection(
        g.means, covars, V, K, W, H, eps2d=0.3, near_plane=0.05, far_plane=1e4)
    assert len(p.cam) > 100
    # gsplat's torch helper uses a plain 3.33-sigma box: it keeps a superset of our pairs
    assert (radii[p.cam, p.gid] > 0).all()
    assert torch.allclose(p.means2d, means2d[p.cam, p.gid], atol=1e-9)
    assert torch.allclose(p.depths, depths[p.cam, p.gid], atol=1e-12)
    ours = torch.stack([p.conics[:, 0], p.conics[:, 1], p.conics[:, 2]], -1)
    assert torch.allclose(ours, conics[p.cam, p.gid], rtol=1e-8, atol=1e-12)
    assert (p.radii <= radii[p.cam, p.gid]).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_binning_keeps_every_tile_a_gaussian_reaches(dtype):
    """The ellipse binning drops only (tile, Gaussian) pairs where alpha < 1/255 at every pixel."""
    W, H, ts = 64, 40, 8
    g = random_scene(300, 7, dtype)
    g = g.replace(scales=g.scales * torch.tensor([1.0, 0.15, 1.0], dtype=dtype))  # elongated, rotated splats
    V, K = look_at_viewmats(2, dtype), intrinsics(2, W, H, dtype=dtype)
    p = rz.project(g, V, K, W, H, near=0.05, far=1e4)
    flat, tile_of, counts, tw, th = rz.bin_tiles(p, 2, W, H, ts)
    binned = torch.zeros(len(p.cam), 2 * th * tw, dtype=torch.bool)
    binned[flat, tile_of] = True
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype) + 0.5, torch.arange(W, dtype=dtype) + 0.5, indexing="ij")
    d = torch.stack([xs, ys], -1).view(-1, 2)[None] - p.means2d[:, None]  # [P, HW, 2]
    a, b, c = p.conics[:, None].unbind(-1)
    alpha = p.log_opac.exp()[:, None] * torch.exp(-0.5 * (a * d[..., 0] ** 2 + 2 * b * d[..., 0] * d[..., 1] + c * d[..., 1] ** 2))
    tile_of_pixel = ((ys.long() // ts) * tw + xs.long() // ts).view(-1)
    reach = torch.zeros_like(binned)
    pairs, pix = torch.nonzero(alpha >= 1 / 255, as_tuple=True)
    reach[pairs, p.cam[pairs] * th * tw + tile_of_pixel[pix]] = True
    assert reach.sum() > 500 and not (reach & ~binned).any()
    # and it is tighter than the radius boxes: few binned pairs that no pixel needs
    assert (binned & ~reach).sum() < 0.25 * binned.sum()
    assert len(flat) == int(counts.sum()) and (tile_of[1:] >= tile_of[:-1]).all()


def test_camera_depth_sort_float32_key_matches_the_stable_sort():
    gen = torch.Generator().manual_seed(3)
    cam = torch.sort(torch.randint(0, 4, (500,), generator=gen)).values
    z = (torch.randint(1, 30, (500,), generator=gen) * 0.37).float()  # many equal depths
    sel = torch.nonzero(torch.rand(500, generator=gen) < 0.8).flatten()
    fast = proj.sort_by_camera_and_depth(sel, cam, z, 4)
    ref = sel[torch.sort(z.double()[sel], stable=True).indices]
    ref = ref[torch.sort(cam[ref], stable=True).indices]
    assert torch.equal(fast, ref) and torch.equal(proj.sort_by_camera_and_depth(sel, cam, z.double(), 4), ref)


def test_a_gaussian_between_pixel_centres_renders_the_background():
    """Its radius box overlaps the image but its alpha >= 1/255 ellipse reaches no pixel centre."""
    d, W, H = torch.float64, 32, 24
    V, K = look_at_viewmats(1, d), intrinsics(1, W, H, dtype=d)
    z = 5.0
    p_cam = torch.tensor([(-1.6 - K[0, 0, 2]) / K[0, 0, 0] * z, (-1.6 - K[0, 1, 2]) / K[0, 1, 1] * z, z], dtype=d)
    p_world = V[0, :3, :3].T @ (p_cam - V[0, :3, 3])
    g = Gaussians(p_world[None], torch.tensor([[1.0, 0, 0, 0]], dtype=d), torch.full((1, 3), 0.01, dtype=d),
                  torch.tensor([0.9], dtype=d), torch.tensor([[1.0, 0, 0]], dtype=d), torch.tensor([-1]))
    p = rz.project(g, V, K, W, H, near=0.05, far=1e4)
    assert len(p.cam) == 1 and len(rz.bin_tiles(p, 1, W, H, 8)[0]) == 0
    out = render(g, V, K, W, H, backend="torch", background=torch.tensor([0.1, 0.2, 0.3], dtype=d))
    assert (out.alpha == 0).all() and (out.rgb == torch.tensor([0.1, 0.2, 0.3], dtype=d)).all()
    assert (out.agent_id == -1).all()


@pytest.mark.gpu
def test_torch_backend_matches_gsplat_on_gpu():
    pytest.importorskip("gsplat")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    W, H = 224, 128
    V, K = look_at_viewmats(2, torch.float32).cuda(), intrinsics(2, W, H, dtype=torch.float32).cuda()
    bg = torch.tensor([0.2, 0.5, 0.9], device="cuda")
    for seed in range(3):
        g = random_scene(3000, seed, torch.float32, n_ids=6).to("cuda")
        a = render(g, V, K, W, H, backend="gsplat", background=bg)
        b = render(g, V, K, W, H, backend="torch", background=bg)
        rgb = (a.rgb - b.rgb).abs()
        al = (a.alpha - b.alpha).abs()
        m = a.alpha > 1e-2
        dep = ((a.depth - b.depth).abs() / a.depth.clamp(min=1))[m]
        ids = (a.agent_id == b.agent_id).float().mean()
        print(f"seed {seed}: rgb mean {rgb.mean():.2e} max {rgb.max():.2e}; alpha max {al.max():.2e}; "
              f"depth rel max {dep.max():.2e}; agent ids equal {ids:.4f}")
        assert rgb.mean() < 1e-3 and rgb.max() < 2e-2 and al.max() < 2e-2
        assert dep.mean() < 1e-3 and ids > 0.995
