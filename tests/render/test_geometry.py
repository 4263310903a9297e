"""Geometry of the splat cameras: rotation shifts, agent masks against projected boxes, depth,
and the real nuScenes calibration against its annotated boxes."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath
from scipy.spatial import ConvexHull

from drivesim.core.types import AgentType
from drivesim.render.splat.camera import Rig, ego_pose_matrix, load_rig
from drivesim.render.splat.gaussians import Gaussians
from drivesim.render.splat.scene import HEIGHTS, agent_gaussians, agent_kinds
from drivesim.render.splat.sensors import SplatCameras

W, H = 400, 225


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes", W, H)


def front_only(rig: Rig) -> Rig:
    i = rig.names.index("CAM_FRONT")
    return Rig(rig.names[i:i + 1], rig.K[i:i + 1], rig.cam_to_ego[i:i + 1], rig.width, rig.height, rig.source)


def blob(centre, scale, color=(1.0, 0.1, 0.1), ids=-1) -> Gaussians:
    c = torch.as_tensor(centre, dtype=torch.float32).reshape(-1, 3)
    n = len(c)
    return Gaussians(c, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), float(scale)),
                     torch.full((n,), 0.99), torch.tensor(color).repeat(n, 1), torch.full((n,), ids, dtype=torch.long))


def quiet(cams, scene, x=0.0, y=0.0, yaw=0.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cams.render_scene(scene, x, y, yaw)


@pytest.mark.parametrize("degrees", [2.0, -2.0])
def test_a_yaw_shifts_the_front_image_by_f_tan_theta(rig, degrees):
    """A far marker on the front camera's optical axis moves by fx tan(theta): right when the
    ego turns left (+yaw), within 1 px."""
    front = front_only(rig)
    cam = front.cam_to_ego[0]
    marker = cam[:3, 3] + 400.0 * cam[:3, 2]  # 400 m along the optical axis (ego at the origin)
    scene = blob(marker, 1.2)
    cams = SplatCameras(front, view_range=1000.0)
    u = torch.arange(W, dtype=torch.float32) + 0.5

    def centroid(yaw):
        a = quiet(cams, scene, yaw=yaw).alpha[0]
        assert float(a.sum()) > 1.0, "the marker is not in view"
        return float((a.sum(0) * u).sum() / a.sum())

    theta = math.radians(degrees)
    expected = float(front.K[0, 0, 0]) * math.tan(theta)
    shift = centroid(theta) - centroid(0.0)
    assert abs(expected) > 10 and shift * expected > 0
    assert abs(shift - expected) < 1.0, (shift, expected)


def box_corners_world(x, y, yaw, length, width, height) -> np.ndarray:
    lx, ly = np.array([1, 1, -1, -1]) * length / 2, np.array([1, -1, -1, 1]) * width / 2
    c, s = math.cos(yaw), math.sin(yaw)
    xy = np.stack([x + c * lx - s * ly, y + s * lx + c * ly], -1)
    return np.concatenate([np.c_[xy, np.zeros(4)], np.c_[xy, np.full(4, height)]])


def project(rig: Rig, cam: int, pts_world: np.ndarray, ego=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Pixel coordinates [N, 2] (continuous: pixel i spans [i, i + 1)) and depth [N]."""
    view = rig.viewmats(*ego)[cam].double().numpy()
    pc = (view[:3, :3] @ pts_world.T + view[:3, 3:]).T
    uv = (rig.render_Ks[cam].double().numpy() @ pc.T).T
    return np.c_[uv[:, :2] / uv[:, 2:], pc[:, 2]]


@pytest.mark.parametrize("agent_type, length, width, yaw", [
    (AgentType.VEHICLE, 4.6, 1.9, 0.5),
    (AgentType.VEHICLE, 4.6, 1.9, -1.4),
    (AgentType.VEHICLE, 10.0, 2.5, 0.3),
    (AgentType.STATIC, 2.0, 0.6, 1.2),
])
def test_agent_masks_cover_their_projected_boxes(rig, agent_type, length, width, yaw):
    front = front_only(rig)
    x, y = 14.0, 1.5
    t = lambda v: torch.tensor([v], dtype=torch.float32)
    scene = agent_gaussians(t(x), t(y), t(yaw), t(length), t(width), torch.tensor([int(agent_type)]), torch.tensor([3]))
    mask = (quiet(SplatCameras(front), scene).agent_id[0] == 3).numpy()
    height = float(HEIGHTS[agent_kinds(torch.tensor([int(agent_type)]), t(length), t(width))[0]])
    uvz = project(front, 0, box_corners_world(x, y, yaw, length, width, height))
    assert (uvz[:, 2] > 1).all()
    hull = uvz[ConvexHull(uvz[:, :2]).vertices, :2]
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    footprint = MplPath(hull).contains_points(np.c_[jj.ravel(), ii.ravel()]).reshape(H, W)
    iou = (mask & footprint).sum() / (mask | footprint).sum()
    assert footprint.sum() > 500 and iou >= 0.7, iou


@pytest.mark.parametrize("distance", [6.0, 20.0, 45.0])
def test_depth_of_a_wall_on_each_optical_axis(rig, distance):
    """An opaque wall facing each camera at `distance` along its optical axis: the depth at the
    principal point is that distance within 2 %."""
    g = torch.arange(-40, 41, dtype=torch.float32) * 0.1 * distance / 20  # a wall of about +-4 m (at 20 m)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    pts_cam = torch.stack([gx.flatten(), gy.flatten(), torch.full((gx.numel(),), distance), torch.ones(gx.numel())], -1)
    ego_to_world = ego_pose_matrix(3.0, -2.0, 0.7)
    walls = [(ego_to_world @ rig.cam_to_ego[c] @ pts_cam.T).T[:, :3] for c in range(len(rig))]
    scene = blob(torch.cat(walls), 0.07 * distance / 20)
    out = quiet(SplatCameras(rig), scene, 3.0, -2.0, 0.7)
    for c in range(len(rig)):
        u, v = (int(rig.K[c, 0, 2]), int(rig.K[c, 1, 2]))
        assert float(out.alpha[c, v, u]) > 0.95
        assert abs(float(out.depth[c, v, u]) - distance) < 0.02 * distance, (rig.names[c], float(out.depth[c, v, u]))


@pytest.mark.data
def test_the_nuscenes_rig_reprojects_a_real_box_into_the_right_camera(data_dir):
    """The nearest annotated car of scene-0061's first keyframe, through the shipped rig: seen by
    exactly one camera, inside its image, where the annotation's own 2D centre is."""
    info = pickle.loads(next((data_dir / "nuscenes_scene0061_kf0").glob("*.pkl")).read_bytes())["data_list"][0]
    rig = load_rig("nuscenes")
    lidar_to_ego = np.asarray(info["lidar_points"]["lidar2ego"])
    cars = [i for i in info["instances"] if i["bbox_3d_isvalid"] and i["bbox_label"] == 0]
    car = min(cars, key=lambda i: np.hypot(*i["bbox_3d"][:2]))
    x, y, z, length, width, height, yaw = car["bbox_3d"]  # lidar frame, gravity centre
    corners = box_corners_world(x, y, yaw, length, width, height) - [0, 0, height / 2 - z]
    pts = np.r_[np.array([[x, y, z]]), corners]
    pts_ego = (lidar_to_ego[:3, :3] @ pts.T + lidar_to_ego[:3, 3:]).T
    seen = []
    for c, name in enumerate(rig.names):
        uvz = project(rig, c, pts_ego)  # the ego at the world origin: world = ego frame
        inside = (uvz[:, 2] > 0) & (uvz[:, 0] >= 0) & (uvz[:, 0] < rig.width) & (uvz[:, 1] >= 0) & (uvz[:, 1] < rig.height)
        if inside[0]:
            seen.append(name)
            assert inside.all(), f"{name}: box corners outside the image {uvz[~inside]}"
            centre, depth = uvz[0, :2], uvz[0, 2]
    assert seen == ["CAM_BACK"]
    annotated = [a for a in info["cam_instances"]["CAM_BACK"] if a["bbox_label"] == 0]
    best = min(annotated, key=lambda a: np.hypot(*(np.asarray(a["center_2d"]) - centre)))
    # within 3 px: the annotation's lidar-to-camera transform also carries the ego's motion in
    # the 10 ms between the lidar and camera timestamps (about 2 px here); the rig is the static calibration
    assert np.hypot(*(np.asarray(best["center_2d"]) - centre)) < 3.0
    assert abs(best["depth"] - depth) < 0.15  # the same 10 ms of ego motion: about 0.1 m
