"""Rigs, Gaussian scenes, the splat cameras and camera observations."""

import dataclasses
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
import yaml

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.types import AgentType
from drivesim.map.builders import build_map
from drivesim.render.splat.camera import Rig, load_rig, look_rotation_opencv
from drivesim.render.splat.gaussians import Gaussians
from drivesim.render.splat.rigs import camera_yaws, rig_from_nuscenes_info, rig_from_pandaset
from drivesim.render.splat.scene import HEIGHTS, KINDS, SceneConfig, agent_gaussians, agent_kinds, build_background, compose
from drivesim.render.splat.sensors import SplatCameras, parse_size, surround_frame
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario


# ------------------------------------------------------------------------------------------ rigs
@pytest.mark.parametrize("name", ["nuscenes", "pandaset"])
def test_shipped_rigs_are_plausible(name):
    rig = load_rig(name)
    assert len(rig) == 6
    yaws = torch.rad2deg(camera_yaws(rig))
    front = int(torch.argmin(yaws.abs()))
    assert rig.names[front] in ("CAM_FRONT", "front_camera") and abs(float(yaws[front])) < 2.0
    assert float(rig.cam_to_ego[front, 0, 2]) > 0.99  # the optical axis (camera z) is ego +x
    spread = torch.sort(yaws % 360).values
    gaps = torch.diff(torch.cat([spread, spread[:1] + 360]))
    assert float(gaps.max()) < 100  # six cameras all round
    heights = rig.cam_to_ego[:, 2, 3]
    assert bool(((heights > 1.3) & (heights < 2.3)).all()), heights
    assert rig.names[1] in ("CAM_FRONT", "front_camera")  # layout order: front row left to right


def test_rig_scaling_keeps_the_field_of_view():
    rig = load_rig("nuscenes", width=200)
    assert (rig.width, rig.height) == (200, 112)
    assert math.isclose(float(rig.K[1, 0, 0]) / 200, 1266.417 / 1600, rel_tol=1e-4)


def _rig_dict():
    return load_rig("nuscenes").to_dict()


@pytest.mark.parametrize("break_it, words", [
    (lambda d: d.update(lenses=1), "unknown keys ['lenses']"),
    (lambda d: d.pop("width"), "missing keys ['width']"),
    (lambda d: d["cameras"][0].update(fov=60), "exactly the keys name, K, cam_to_ego"),
    (lambda d: d["cameras"][1].update(K=[[1, 0], [0, 1]]), "cameras[1].K must be a finite 3x3"),
    (lambda d: d["cameras"][2].update(cam_to_ego=[[1, 0, 0]] * 4), "cameras[2].cam_to_ego must be a finite 4x4"),
    (lambda d: d["cameras"][0]["cam_to_ego"][0].__setitem__(0, 3.0), "rigid transform"),
    (lambda d: d["cameras"][0]["K"][0].__setitem__(0, -5.0), "fx, fy > 0"),
    (lambda d: d.update(cameras=[]), "non-empty list"),
])
def test_bad_rig_files_are_clear_errors(tmp_path, break_it, words):
    d = _rig_dict()
    break_it(d)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError) as err:
        load_rig(str(path))
    assert words in str(err.value) and "bad.yaml" in str(err.value)


def test_unknown_rig_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="nuscenes"):
        load_rig("kitti")


@pytest.mark.data
def test_nuscenes_loader_matches_the_shipped_yaml(data_dir, tmp_path):
    info = next((data_dir / "nuscenes_scene0061_kf0").glob("*.pkl"))
    rig, shipped = rig_from_nuscenes_info(info), load_rig("nuscenes")
    assert rig.names == shipped.names
    assert torch.allclose(rig.K, shipped.K) and torch.allclose(rig.cam_to_ego, shipped.cam_to_ego, atol=1e-6)
    with pytest.raises(ValueError, match="for 1280x720 images but the images are 1600x900"):
        rig_from_nuscenes_info(info, image_size=(1280, 720))
    with pytest.raises(ValueError, match="principal point"):
        rig_from_nuscenes_info(info, image_size=(800, 450))


@pytest.mark.data
def test_pandaset_loader_matches_the_shipped_yaml(data_dir, tmp_path):
    seq = data_dir / "pandaset_002"
    rig, shipped = rig_from_pandaset(seq), load_rig("pandaset")
    assert rig.names == shipped.names
    assert torch.allclose(rig.cam_to_ego, shipped.cam_to_ego, atol=1e-5)
    with pytest.raises(ValueError, match="for 1600x1200 images but the images are 1920x1080"):
        rig_from_pandaset(seq, image_size=(1600, 1200))
    broken = tmp_path / "seq"
    shutil.copytree(seq / "lidar", broken / "lidar")
    with pytest.raises(ValueError, match="not a PandaSet sequence"):
        rig_from_pandaset(broken)


# ---------------------------------------------------------------------------------------- assets
def _agents(types, lengths, widths):
    n = len(types)
    t = lambda v: torch.tensor(v, dtype=torch.float32)
    x, y, yaw = t(np.linspace(0, 40, n)), t(np.linspace(-3, 3, n)), t(np.linspace(-1, 2, n))
    return x, y, yaw, t(lengths), t(widths), torch.tensor(types), torch.arange(1, n + 1)


def test_assets_fill_each_agents_box_with_its_id():
    V, P, C, S = AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.STATIC
    args = _agents([V, V, P, C, S, S, S], [4.5, 12.0, 0.6, 1.8, 0.4, 2.0, 4.2], [1.9, 2.5, 0.6, 0.7, 0.4, 0.6, 1.8])
    kinds = agent_kinds(args[5], args[3], args[4])
    assert [KINDS[k] for k in kinds] == ["car", "truck", "pedestrian", "cyclist", "cone", "barrier", "car"]
    g = agent_gaussians(*args)
    x, y, yaw, length, width, _, ids = args
    assert set(g.ids.tolist()) == set(ids.tolist())
    for i in range(len(ids)):
        mine = g.ids == ids[i]
        assert mine.sum() >= 6
        d = g.means[mine, :2] - torch.stack([x[i], y[i]])
        c, s = torch.cos(yaw[i]), torch.sin(yaw[i])
        local = torch.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], -1)
        assert float(local[:, 0].abs().max()) <= length[i] / 2 + 1e-4
        assert float(local[:, 1].abs().max()) <= width[i] / 2 + 1e-4
        z = g.means[mine, 2]
        assert 0 <= float(z.min()) and float(z.max()) <= float(HEIGHTS[kinds[i]]) + 0.05


def test_assets_follow_the_pose():
    args = list(_agents([AgentType.VEHICLE], [4.5], [1.9]))
    a = agent_gaussians(*args)
    args[0], args[1], args[2] = args[0] + 10.0, args[1] - 5.0, args[2] + math.pi / 2
    b = agent_gaussians(*args)
    rel_a = a.means[:, :2] - torch.cat([args[0] - 10.0, args[1] + 5.0])
    rel_b = b.means[:, :2] - torch.cat([args[0], args[1]])
    rotated = torch.stack([-rel_a[:, 1], rel_a[:, 0]], -1)  # a quarter turn left about the agent's centre
    assert torch.allclose(rel_b, rotated, atol=1e-4)
    assert torch.allclose(a.means[:, 2], b.means[:, 2]) and torch.allclose(a.scales, b.scales)


# ------------------------------------------------------------------------------------ background
@pytest.fixture(scope="module")
def straight():
    return build_map("straight")


def test_background_is_deterministic_and_within_budget(straight):
    a, b = build_background(straight, seed=3), build_background(straight, seed=3)
    assert torch.equal(a.means, b.means) and torch.equal(a.colors, b.colors)
    assert not torch.equal(build_background(straight, seed=4).means, a.means)
    assert 20_000 <= len(a) <= 60_000
    assert bool((a.ids == -1).all())
    sparse = build_background(straight, SceneConfig(density=0.5), seed=3)
    assert len(sparse) < 0.45 * len(a)


@pytest.mark.parametrize("map_type", ["curved", "merge", "intersection"])
def test_every_procedural_map_gets_a_background(map_type):
    assert 20_000 <= len(build_background(build_map(map_type))) <= 60_000


def test_background_layers_sit_where_they_belong(straight):
    g = build_background(straight)
    import shapely

    inside = shapely.contains_xy(straight.drivable, g.means[:, 0].numpy(), g.means[:, 1].numpy())
    tall = g.means[:, 2] > 0.5  # buildings, trees, nothing on the road
    assert not bool((torch.as_tensor(inside) & tall).any())
    road = torch.as_tensor(inside) & (g.means[:, 2].abs() < 0.01)
    assert road.sum() > 5000 and float(g.colors[road].mean()) < 0.35  # dark asphalt
    white = torch.as_tensor(inside) & (g.colors.min(dim=1).values > 0.85)
    yellow = torch.as_tensor(inside) & (g.colors[:, 0] > 0.9) & (g.colors[:, 2] < 0.2)
    assert white.sum() > 500 and yellow.sum() > 500  # lane lines and the double yellow centre line
    assert float(g.means[tall, 2].max()) > 8.0  # buildings


def test_compose_adds_the_valid_agents_but_not_the_ego(straight):
    sc = make_scenario(straight, [dict(x=10, y=-1.8), dict(x=30, y=-1.8), dict(x=50, y=-5.4, type=AgentType.PEDESTRIAN,
                                                                                 length=0.6, width=0.6)])
    state = Simulator(ScenarioBatch.build([sc])).reset()
    state = state.replace(valid=state.valid.clone())
    bg = Gaussians.empty()
    assert set(compose(bg, state, 0).ids.tolist()) == {1, 2}
    assert set(compose(bg, state, 0, include_ego=True).ids.tolist()) == {0, 1, 2}
    state.valid[0, 2] = False
    assert set(compose(bg, state, 0).ids.tolist()) == {1}


# --------------------------------------------------------------------------------------- sensors
@pytest.fixture(scope="module")
def small_cameras():
    return SplatCameras(load_rig("nuscenes"), 64, 36)


def test_cameras_render_six_images_and_the_surround_frame(straight, small_cameras):
    sc = make_scenario(straight, [dict(x=20, y=-1.8), dict(x=32, y=-1.8)])
    state = Simulator(ScenarioBatch.build([sc])).reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = small_cameras.render_row(small_cameras.background(sc), state, 0)
    assert images.rgb.shape == (6, 36, 64, 3) and images.agent_id.shape == (6, 36, 64)
    assert bool((images.agent_id[1] == 1).any())  # the car ahead, in the front camera
    assert not bool((images.agent_id[4] == 1).any())  # and not in the back camera
    assert float(images.alpha.mean()) > 0.3
    frame = surround_frame(images, np.zeros((74, 99, 3), np.uint8))
    assert frame.shape == (74, 3 * 64 + 2 * 2 + 2 + 99, 3) and frame.dtype == np.uint8


def test_a_camera_that_sees_nothing_warns(straight):
    rig = load_rig("nuscenes", 64, 36)
    up = torch.eye(4)
    up[:3, :3] = look_rotation_opencv(0.0, pitch=-math.pi / 2)  # straight up into the sky
    up[2, 3] = 1.5
    ext = rig.cam_to_ego.clone()
    ext[0] = up
    cams = SplatCameras(Rig(rig.names, rig.K, ext, rig.width, rig.height), view_range=40.0)
    sc = make_scenario(straight, [dict(x=20, y=-1.8)])
    state = Simulator(ScenarioBatch.build([sc])).reset()
    with pytest.warns(RuntimeWarning, match="camera CAM_FRONT_LEFT sees nothing"):
        images = cams.render_row(cams.background(sc), state, 0)
    assert float(images.alpha[0].max()) < 0.5 and float(images.alpha[1].max()) > 0.5


def test_render_size_parsing():
    assert parse_size("200x112") == (200, 112)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("200")


class CameraPolicy:
    """Drives at constant speed and keeps what it sees."""

    name = "camera_reader"

    def reset(self, batch):
        self.seen = []

    def act(self, obs):
        self.seen.append(obs.cameras.clone())
        return torch.zeros(obs.batch_size, 2)


def test_policies_read_camera_frames_that_change_as_the_ego_moves(straight):
    scenarios = [make_scenario(straight, [dict(x=20, y=-1.8, speed=15.0), dict(x=45, y=-5.4, speed=0.0)], duration=0.6,
                               name=f"s{i}") for i in range(2)]
    scenarios[1] = dataclasses.replace(scenarios[1], name="other", x=scenarios[1].x + np.array([100.0, 100.0]))
    cams, policy = SplatCameras(load_rig("nuscenes"), 48, 27), CameraPolicy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rollout(ScenarioBatch.build(scenarios), policy, cameras=cams, policy_every=3)
    assert res.status == ["ok", "ok"]
    assert len(policy.seen) == 2 and policy.seen[0].shape == (2, 6, 27, 48, 3)
    assert 0.0 <= float(policy.seen[0].min()) and float(policy.seen[0].max()) <= 1.0
    moved = (policy.seen[1] - policy.seen[0]).abs().mean(dim=(2, 3, 4))  # [B, C]
    assert bool((moved > 1e-3).all())  # 4.5 m further on, every camera sees something else


def test_observation_without_cameras_says_how_to_get_them(straight):
    from drivesim.sim.observation import observe

    sc = make_scenario(straight, [dict(x=20, y=-1.8)])
    batch = ScenarioBatch.build([sc])
    with pytest.raises(RuntimeError, match="hand a renderer in"):
        observe(Simulator(batch).reset(), batch).cameras


def test_simulate_renders_splat_cameras(tmp_path, capsys):
    from drivesim.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["simulate", "--map", "straight", "--policy", "constant_velocity", "--render", "splat",
                     "--render-size", "64x36", "--render-every", "50", "--rig", "pandaset", "-o", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "surround frames (pandaset, 64x36 per camera)" in out
    videos = list(tmp_path.glob("*_splat.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    for bad, words in ((["--rig", "nope"], "no rig 'nope'"), (["--render-size", "64"], "WIDTHxHEIGHT")):
        with pytest.raises(SystemExit, match=words):
            main(["simulate", "--map", "straight", "--render", "splat", *bad, "-o", str(tmp_path)])


def test_batched_agent_transform_agrees_with_a_loop_over_agents():
    """The one-pass transform against a plain per-agent, per-Gaussian loop on random agents."""
    from drivesim.render.splat.scene import agent_assets

    gen = torch.Generator().manual_seed(0)
    n = 12
    x, y = torch.rand(n, generator=gen) * 100, torch.rand(n, generator=gen) * 100 - 50
    yaw = (torch.rand(n, generator=gen) - 0.5) * 2 * math.pi
    length, width = 0.3 + torch.rand(n, generator=gen) * 12, 0.3 + torch.rand(n, generator=gen) * 2.5
    types, ids = torch.randint(0, 4, (n,), generator=gen), torch.randperm(40, generator=gen)[:n]
    fast = agent_gaussians(x, y, yaw, length, width, types, ids)
    assets, kinds = agent_assets(), agent_kinds(types, length, width)
    rows = []
    for i in range(n):
        k = int(kinds[i])
        c, s = math.cos(float(yaw[i])), math.sin(float(yaw[i]))
        size = (float(length[i]), float(width[i]), float(HEIGHTS[k]))
        for j in range(assets.means.shape[1]):
            if float(assets.opacities[k, j]) <= 0:
                continue
            lx, ly, lz = (float(assets.means[k, j, d]) * size[d] for d in range(3))
            rows.append([float(x[i]) + c * lx - s * ly, float(y[i]) + s * lx + c * ly, lz,
                         *(float(assets.scales[k, j, d]) * size[d] for d in range(3)), int(ids[i])])
    slow = torch.tensor(rows)
    assert len(fast) == len(slow)
    assert torch.allclose(fast.means, slow[:, :3], atol=1e-4) and torch.allclose(fast.scales, slow[:, 3:6], atol=1e-5)
    assert torch.equal(fast.ids, slow[:, 6].long())
    assert torch.allclose(fast.quats[:, 0] ** 2 + fast.quats[:, 3] ** 2, torch.ones(len(fast)))
