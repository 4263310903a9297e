"""Bird's-eye-view plots and videos of rollouts (matplotlib, Agg canvas, no screen).

Frames are drawn on a `matplotlib.figure.Figure` with its own `FigureCanvasAgg`: no pyplot,
no global backend switch, nothing kept between calls. `render_frames` draws the static map
once and only moves the agent artists, the view limits and the text per frame.

Trajectories are dicts of numpy arrays [T, B, A] (e.g. `SimState.stack_time` moved to numpy):
`x, y, yaw, length, width` are required, `agent_type, valid, speed` optional.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from shapely.geometry import MultiPolygon
from shapely.ops import unary_union

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType
from drivesim.map.road import RoadMap

EGO_COLOR = "#d62728"
TYPE_COLORS = {
    AgentType.VEHICLE: "#1f77b4",
    AgentType.PEDESTRIAN: "#9467bd",
    AgentType.CYCLIST: "#2ca02c",
    AgentType.STATIC: "#7f7f7f",
}
HIGHLIGHT_COLOR = "#ff00ff"
SIGNAL_COLORS = {True: "#2ca02c", False: "#d62728", None: "#303030"}  # green, red, no time given
BACKGROUND = "#f4f4ef"
REQUIRED_KEYS = ("x", "y", "yaw", "length", "width")
VIDEO_SUFFIXES = (".mp4", ".gif")


# ---------------------------------------------------------------------------------------- map
def _polygon_path(geom) -> MplPath:
    """A matplotlib path (with holes) for a shapely Polygon or MultiPolygon."""
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    verts, codes = [], []
    for poly in polys:
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords)
            verts.append(xy)
            codes.append([MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY])
    return MplPath(np.concatenate(verts), np.concatenate(codes))


def _left_normals(cl: np.ndarray) -> np.ndarray:
    tang = np.gradient(cl, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


def _stop_lines(road: RoadMap) -> tuple[list[np.ndarray], list[int]]:
    """One segment across the end of every signalised lane, with its signal group."""
    segs, groups = [], []
    for lane_id, group in sorted(road.signal_group.items()):
        lane = road.lanes[lane_id]
        cl = np.asarray(lane.centerline, float)
        n = _left_normals(cl)[-1] * lane.width / 2
        segs.append(np.stack([cl[-1] + n, cl[-1] - n]))
        groups.append(group)
    return segs, groups


def signal_colors(road: RoadMap, groups: list[int], t: float | None) -> list[str]:
    """Stop-line colours for the signal groups at time t (dark grey when t is None)."""
    if t is None or (road.signal_timing is None and road.signal_log is None):
        return [SIGNAL_COLORS[None]] * len(groups)
    return [SIGNAL_COLORS[bool(road.signal_green(g, t))] for g in groups]


def draw_map(ax, road: RoadMap, route: list[int] | None = None, t: float | None = None) -> dict:
    """Drivable area, lane boundaries and centerlines, the route and the signal stop lines.

    Returns the artists; `stop_lines` (a LineCollection or None) and `stop_groups` let a caller
    recolour the signals for another time with `signal_colors`.
    """
    ax.add_patch(PathPatch(_polygon_path(road.drivable), facecolor="#d9d9d9", edgecolor="#555555",
                           linewidth=1.2, zorder=1))
    if route:
        route_poly = unary_union([road.lanes[r].polygon() for r in route])
        ax.add_patch(PathPatch(_polygon_path(route_poly), facecolor="#4c9be8", alpha=0.22,
                               edgecolor="none", zorder=2))
    centers, edges = [], []
    for lane in road.lanes:
        cl = np.asarray(lane.centerline, float)
        centers.append(cl)
        if lane.kind != "connector":  # connectors cross the junction box: edges would clutter it
            off = _left_normals(cl) * lane.width / 2
            edges += [cl + off, cl - off]
    ax.add_collection(LineCollection(edges, colors="white", linewidths=0.9, zorder=3))
    ax.add_collection(LineCollection(centers, colors="#8a8a8a", linewidths=0.5, linestyles=(0, (4, 4)), zorder=3))
    artists = {"stop_lines": None, "stop_groups": []}
    if road.signal_group:
        segs, groups = _stop_lines(road)
        artists["stop_lines"] = LineCollection(segs, colors=signal_colors(road, groups, t), linewidths=2.5, zorder=4)
        artists["stop_groups"] = groups
        ax.add_collection(artists["stop_lines"])
    return artists


# ------------------------------------------------------------------------------------- agents
def _frame_row(frame: dict, b: int) -> dict:
    """Row b of a frame dict ([B, A] arrays) with defaults for the optional keys."""
    row = {k: np.asarray(frame[k])[b] for k in REQUIRED_KEYS}
    A = row["x"].shape[0]
    row["agent_type"] = np.asarray(frame["agent_type"])[b] if "agent_type" in frame else np.zeros(A, int)
    row["valid"] = np.asarray(frame["valid"])[b].astype(bool) if "valid" in frame else np.ones(A, bool)
    return row


def _corners(x, y, yaw, length, width) -> np.ndarray:
    """Box corners [N, 4, 2] (front-left, rear-left, rear-right, front-right)."""
    c, s = np.cos(yaw), np.sin(yaw)
    lx = np.stack([length, -length, -length, length], axis=-1) / 2
    ly = np.stack([width, width, -width, -width], axis=-1) / 2
    cx = x[:, None] + c[:, None] * lx - s[:, None] * ly
    cy = y[:, None] + s[:, None] * lx + c[:, None] * ly
    return np.stack([cx, cy], axis=-1)


class AgentArtists:
    """The agent boxes and heading ticks on one axes; `update` moves them to another frame."""

    def __init__(self, ax, zorder: float = 5):
        self.boxes = PolyCollection([], zorder=zorder, linewidths=0.8)
        self.ticks = LineCollection([], colors="black", linewidths=1.0, zorder=zorder + 0.1)
        ax.add_collection(self.boxes)
        ax.add_collection(self.ticks)

    def update(self, frame: dict, b: int, highlight=None) -> None:
        """Draw row b of `frame`; `highlight`: agent ids (or an [A] bool mask) to outline."""
        row = _frame_row(frame, b)
        ids = np.flatnonzero(row["valid"])
        corners = _corners(*(row[k][ids].astype(float) for k in REQUIRED_KEYS))
        face = [EGO_COLOR if i == 0 else TYPE_COLORS.get(int(row["agent_type"][i]), "#000000") for i in ids]
        hl = np.zeros(len(row["x"]), bool)
        if highlight is not None:
            h = np.asarray(highlight)
            hl[np.flatnonzero(h) if h.dtype == bool else h.astype(int)] = True
        self.boxes.set_verts(list(corners))
        self.boxes.set_facecolors(face)
        self.boxes.set_edgecolors([HIGHLIGHT_COLOR if hl[i] else "black" for i in ids])
        self.boxes.set_linewidths([2.5 if hl[i] else 0.8 for i in ids])
        front = (corners[:, 0] + corners[:, 3]) / 2
        centre = corners.mean(axis=1)
        self.ticks.set_segments(list(np.stack([centre, front], axis=1)))


def draw_agents(ax, frame: dict, b: int, highlight=None, zorder: float = 5) -> AgentArtists:
    """Oriented boxes of row b of a frame dict of [B, A] arrays; ego (agent 0) in red.

    Colours follow AgentType (vehicle blue, pedestrian purple, cyclist green, static grey);
    agents in `highlight` (ids or an [A] bool mask) get a thick magenta outline.
    """
    artists = AgentArtists(ax, zorder)
    artists.update(frame, b, highlight)
    return artists


# ------------------------------------------------------------------------------------- frames
def _to_numpy(traj: dict) -> dict[str, np.ndarray]:
    out = {}
    for k, v in traj.items():
        out[k] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    return out


def _check_traj(traj: dict, b: int) -> tuple[int, int]:
    missing = [k for k in REQUIRED_KEYS if k not in traj]
    if missing:
        raise ValueError(f"trajectory is missing {missing}; needs {list(REQUIRED_KEYS)} as [T, B, A] arrays")
    shape = traj["x"].shape
    if len(shape) != 3 or shape[0] < 1:
        raise ValueError(f"trajectory arrays must be [T>=1, B, A], got x {shape}")
    if not 0 <= b < shape[1]:
        raise ValueError(f"batch row b={b} out of range for B={shape[1]}")
    return shape[0], shape[2]


def _new_canvas(size: tuple[int, int], dpi: float = 100.0):
    """A figure of exactly size=(W, H) pixels with one frameless axes filling it."""
    W, H = size
    if W < 16 or H < 16:
        raise ValueError(f"frame size must be at least 16x16 pixels, got {size}")
    fig = Figure(figsize=((W + 0.5) / dpi, (H + 0.5) / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    return fig, ax, canvas


def _grab(canvas) -> np.ndarray:
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _fit_window(x0, y0, x1, y1, aspect: float, margin: float = 5.0, min_width: float = 40.0):
    """A window (cx, cy, w, h) holding the box with a margin, at the aspect ratio w/h."""
    w = max(x1 - x0 + 2 * margin, min_width)
    h = y1 - y0 + 2 * margin
    w = max(w, h * aspect)
    return (x0 + x1) / 2, (y0 + y1) / 2, w, w / aspect


def _set_window(ax, cx, cy, w, h) -> None:
    ax.set_xlim(cx - w / 2, cx + w / 2)
    ax.set_ylim(cy - h / 2, cy + h / 2)


def _ego_speed(traj: dict, k: int, b: int, dt: float) -> float:
    if "speed" in traj:
        return float(traj["speed"][k, b, 0])
    if traj["x"].shape[0] < 2:
        return 0.0
    j = max(k, 1)
    d = np.hypot(traj["x"][j, b, 0] - traj["x"][j - 1, b, 0], traj["y"][j, b, 0] - traj["y"][j - 1, b, 0])
    return float(d / dt)


def _ego_track(traj: dict, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Ego positions [T, 2] with invalid steps held at the last valid one, and the valid mask."""
    xy = np.stack([traj["x"][:, b, 0], traj["y"][:, b, 0]], axis=1).astype(float)
    valid = traj["valid"][:, b, 0].astype(bool) if "valid" in traj else np.ones(len(xy), bool)
    if not valid.any():
        return xy, valid
    idx = np.where(valid, np.arange(len(xy)), 0)
    idx = np.maximum.accumulate(idx)
    idx[: np.argmax(valid)] = np.argmax(valid)
    return xy[idx], valid


def _overlay(name: str, traj: dict, k: int, b: int, dt: float, title_fn, start_step: int = 0) -> str:
    lines = [f"{name}  t={(start_step + k) * dt:5.1f}s  ego {_ego_speed(traj, k, b, dt):5.1f} m/s"]
    extra = title_fn(k) if title_fn is not None else None
    if extra:
        lines.append(str(extra))
    return "\n".join(lines)


def _highlight_at(highlight, k: int):
    if highlight is None:
        return None
    h = np.asarray(highlight)
    return h[k] if h.ndim == 2 else h


def render_frames(scenario: Scenario, traj: dict, b: int, view: str = "ego", size=(640, 480),
                  title_fn=None, dt: float | None = None, window: float = 80.0, highlight=None,
                  trail: bool = True, start_step: int = 0) -> list[np.ndarray]:
    """One RGB frame [H, W, 3] uint8 per time step of row b of `traj` ([T, B, A] arrays).

    view: 'ego' follows the ego with a `window`-metre wide view (height from the aspect ratio,
    80 x 60 m at 640x480); 'full' shows the whole map. The overlay shows time (k * dt, dt
    defaults to scenario.dt), ego speed and `title_fn(k)` when given. highlight: agent ids
    ([A] ids or bool mask, fixed) or a [T, A] bool mask per frame, outlined in magenta.
    start_step: the scenario step of the first frame (times and signal phases count from it).
    """
    if view not in ("ego", "full"):
        raise ValueError(f"unknown view {view!r}; expected 'ego' or 'full'")
    traj = _to_numpy(traj)
    T, _ = _check_traj(traj, b)
    dt = scenario.dt if dt is None else dt
    fig, ax, canvas = _new_canvas(size)
    aspect, road = size[0] / size[1], scenario.road
    map_artists = draw_map(ax, road, route=scenario.route, t=0.0)
    if view == "full":
        _set_window(ax, *_fit_window(*road.drivable.bounds, aspect))
    ego_line = ax.plot([], [], color=EGO_COLOR, linewidth=1.2, alpha=0.7, zorder=4.5)[0] if trail else None
    ego_xy, ego_valid = _ego_track(traj, b)
    agents = AgentArtists(ax)
    text = ax.text(0.01, 0.99, "", transform=ax.transAxes, va="top", ha="left", family="monospace",
                   fontsize=8, zorder=10, bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    frames = []
    for k in range(T):
        frame = {key: v[k] for key, v in traj.items() if v.ndim == 3}
        agents.update(frame, b, _highlight_at(highlight, k))
        if view == "ego":
            _set_window(ax, *ego_xy[k], window, window / aspect)
        if map_artists["stop_lines"] is not None:
            map_artists["stop_lines"].set_color(signal_colors(road, map_artists["stop_groups"], (start_step + k) * dt))
        if ego_line is not None:
            seen = ego_valid[: k + 1]
            ego_line.set_data(ego_xy[: k + 1, 0][seen], ego_xy[: k + 1, 1][seen])
        text.set_text(_overlay(scenario.name, traj, k, b, dt, title_fn, start_step))
        frames.append(_grab(canvas))
    return frames


# -------------------------------------------------------------------------------- file output
def _even(frame: np.ndarray) -> np.ndarray:
    """Pad a frame by edge replication to even height and width (yuv420p needs them)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


def _check_frames(frames) -> list[np.ndarray]:
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i}: expected an HxWx3 uint8 array, got {f.dtype} {f.shape}")
        if f.shape != shape:
            raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {shape}; all frames must match")
    return frames


def write_video(frames, path, fps: float = 10) -> Path:
    """Write frames to .mp4 (libx264, yuv420p, padded to even size) or .gif, chosen by suffix.

    In a .gif, Pillow merges identical consecutive frames (adding their durations).
    """
    import imageio.v2 as iio2
    import imageio.v3 as iio3

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"unsupported video suffix {path.suffix!r} for {path}; use one of {list(VIDEO_SUFFIXES)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = _check_frames(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        iio3.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return path
    with iio2.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                         macro_block_size=1, ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(_even(f))
    return path


def thumbnail(scenario: Scenario, traj: dict, b: int, path, size=(320, 240), highlight=None, frame_m: float = 50.0) -> Path:
    """A PNG of the final state with the ego's driven path (a line), framed on the last
    `frame_m` metres of that path around the ego."""
    traj = _to_numpy(traj)
    T, _ = _check_traj(traj, b)
    fig, ax, canvas = _new_canvas(size)
    draw_map(ax, scenario.road, route=scenario.route, t=(T - 1) * scenario.dt)
    ego_xy, valid = _ego_track(traj, b)
    ex, ey = (ego_xy[valid] if valid.any() else ego_xy).T
    ax.plot(ex, ey, color=EGO_COLOR, linewidth=1.5, zorder=4.5)
    draw_agents(ax, {k: v[-1] for k, v in traj.items() if v.ndim == 3}, b, _highlight_at(highlight, T - 1))
    near = np.hypot(ex - ex[-1], ey - ey[-1]) <= frame_m
    fx, fy = ex[near], ey[near]
    _set_window(ax, *_fit_window(fx.min(), fy.min(), fx.max(), fy.max(), size[0] / size[1], margin=15.0))
    ax.text(0.01, 0.99, scenario.name, transform=ax.transAxes, va="top", fontsize=7,
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.draw()
    fig.savefig(path, dpi=fig.dpi, facecolor=BACKGROUND)
    return path
