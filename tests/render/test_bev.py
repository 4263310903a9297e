"""Bird's-eye-view frames, videos and thumbnails on a hand-made straight-road scenario."""

import imageio.v2 as iio2
import imageio.v3 as iio3
import numpy as np
import pytest

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode
from drivesim.map.builders import build_map
from drivesim.render import bev


def make_scenario(road=None, duration=1.0):
    road = road or build_map("straight")
    types = np.array([AgentType.VEHICLE, AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.STATIC])
    A = len(types)
    mode = np.array([ControlMode.POLICY, ControlMode.REACTIVE, ControlMode.STATIC, ControlMode.REACTIVE, ControlMode.STATIC])
    sc = Scenario(
        name="bev_test", road=road, x=np.array([10.0, 30.0, 40.0, 20.0, 60.0]), y=np.array([-1.8, -5.4, 8.0, -9.0, -1.8]),
        yaw=np.zeros(A), speed=np.array([10.0, 8.0, 0.0, 4.0, 0.0]), length=np.array([4.5, 4.5, 0.5, 1.8, 1.0]),
        width=np.array([1.9, 1.9, 0.5, 0.6, 1.0]), agent_type=types, mode=mode, desired_speed=np.full(A, 10.0),
        route=[0], duration=duration, dt=0.1)
    sc.validate()
    return sc


def make_traj(sc, B=2, b=1):
    """Constant-speed straight motion in row b of a batch of B ([T, B, A] arrays); row 0 padding."""
    T, A = sc.num_steps + 1, sc.num_agents + 1  # one padding agent slot
    t = np.arange(T)[:, None] * sc.dt
    traj = {k: np.zeros((T, B, A)) for k in ("x", "y", "yaw", "speed", "length", "width")}
    traj["agent_type"] = np.zeros((T, B, A), np.int64)
    traj["valid"] = np.zeros((T, B, A), bool)
    n = sc.num_agents
    traj["x"][:, b, :n] = sc.x[None] + sc.speed[None] * t
    traj["y"][:, b, :n] = sc.y[None]
    traj["speed"][:, b, :n] = sc.speed[None]
    traj["length"][:, b, :n], traj["width"][:, b, :n] = sc.length, sc.width
    traj["agent_type"][:, b, :n] = sc.agent_type
    traj["valid"][:, b, :n] = True
    return traj


@pytest.fixture(scope="module")
def scenario():
    return make_scenario()


@pytest.mark.parametrize("view,size", [("ego", (160, 120)), ("full", (201, 99))])
def test_frames_have_size_and_change(scenario, view, size):
    traj = make_traj(scenario)
    frames = bev.render_frames(scenario, traj, 1, view=view, size=size, title_fn=lambda k: f"pdms {k / 10:.2f}")
    assert len(frames) == scenario.num_steps + 1
    for f in frames:
        assert f.shape == (size[1], size[0], 3) and f.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])


def test_moving_agents_change_pixels_beyond_text(scenario):
    """With no overlay change possible (same t), moving agents alone change the image."""
    traj = make_traj(scenario)
    still = {k: v[[0, 0]] for k, v in traj.items()}
    moved = {k: v[[0, -1]] for k, v in traj.items()}
    f_still = bev.render_frames(scenario, still, 1, view="full", size=(320, 240), dt=0.0)
    f_moved = bev.render_frames(scenario, moved, 1, view="full", size=(320, 240), dt=0.0)
    assert np.array_equal(f_still[0], f_still[1])
    assert not np.array_equal(f_moved[0], f_moved[1])


def test_signals_and_highlight_render():
    sc = make_scenario(build_map("intersection"))
    traj = make_traj(sc, B=1, b=0)
    hl = np.zeros((traj["x"].shape[0], traj["x"].shape[2]), bool)
    hl[5:, 1] = True
    frames = bev.render_frames(sc, traj, 0, view="full", size=(200, 200), highlight=hl)
    assert len(frames) == sc.num_steps + 1


def test_bad_inputs(scenario):
    traj = make_traj(scenario)
    with pytest.raises(ValueError, match="view"):
        bev.render_frames(scenario, traj, 1, view="side")
    with pytest.raises(ValueError, match="missing"):
        bev.render_frames(scenario, {"x": traj["x"]}, 1)
    with pytest.raises(ValueError, match="out of range"):
        bev.render_frames(scenario, traj, 5)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_roundtrip(scenario, tmp_path, suffix):
    frames = bev.render_frames(scenario, make_traj(scenario), 1, size=(161, 121))  # odd size: mp4 pads
    path = bev.write_video(frames, tmp_path / f"clip{suffix}", fps=10)
    assert path.is_file() and path.stat().st_size > 0
    if suffix == ".mp4":
        reader = iio2.get_reader(path)
        assert reader.count_frames() == len(frames)
        assert reader.get_meta_data()["size"] == (162, 122)
        reader.close()
    else:
        assert iio3.imread(path).shape == (len(frames), 121, 161, 3)


def test_write_video_errors(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="suffix"):
        bev.write_video(frames, tmp_path / "clip.avi")
    assert not (tmp_path / "clip.avi").exists()
    with pytest.raises(ValueError, match="no frames"):
        bev.write_video([], tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match="shape"):
        bev.write_video([frames[0], np.zeros((16, 32, 3), np.uint8)], tmp_path / "clip.gif")


def test_thumbnail(scenario, tmp_path):
    path = bev.thumbnail(scenario, make_traj(scenario), 1, tmp_path / "thumbs" / "t.png", size=(320, 240), highlight=[1])
    img = iio3.imread(path)
    assert img.shape[:2] == (240, 320)


def test_draw_map_and_agents_on_own_axes(scenario):
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    artists = bev.draw_map(ax, build_map("intersection"), route=[0], t=3.0)
    assert artists["stop_lines"] is not None and len(artists["stop_groups"]) == 8
    frame = {k: v[0] for k, v in make_traj(scenario).items()}
    agents = bev.draw_agents(ax, frame, 1, highlight=[0, 2])
    assert len(agents.boxes.get_paths()) == scenario.num_agents  # the padding slot is hidden


def test_ego_view_holds_when_ego_invalid(scenario):
    """Steps where the ego slot is invalid (time padding) keep the last valid view."""
    traj = make_traj(scenario)
    traj["valid"][-3:, 1, :] = False
    traj["x"][-3:, 1, :] = 0.0
    frames = bev.render_frames(scenario, traj, 1, size=(160, 120), dt=0.0, trail=False)
    assert np.array_equal(frames[-1], frames[-2])
    assert not np.array_equal(frames[-3], frames[-4])  # agents vanish at the first invalid step
