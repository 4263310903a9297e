"""Logged traffic signals: a per-step state table replayed on a map (in place of the cyclic timing).

Procedural maps have cyclic signals (`RoadMap.signal_group` + `signal_timing`: groups take turns).
Real logs (WOMD, ScenarioNet-Waymo) record each signal's state at every step; `LoggedSignals`
holds that table, [T, G] codes (`SIGNAL_CODES`), with the lane each signal controls and its stop
point. The simulator reads both kinds through the same path: `RoadMap.signal_group` maps a lane
to the signal whose stop line is at that lane's END (what reactive agents and the expert stop
for, `MapBank.signal_stop`), and `MapBank.group_red` answers "is this group red at time t" from
the cycle or, on a map with a table, from the logged row of that step (the last row after the
log ends). Only red stops traffic; yellow and unknown do not (as Waymax's and MetaDrive's
replayed lights: agents stop for STOP / ARROW_STOP only).

WOMD's stop point usually lies at the START of the controlled lane (the lane through the
junction): the stop line then ends the lanes that lead into it (`stop_line_lanes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNAL_CODES = {"unknown": 0, "red": 1, "yellow": 2, "green": 3}
RED = SIGNAL_CODES["red"]


@dataclass
class LoggedSignals:
    state: np.ndarray  # [T, G] int8 SIGNAL_CODES per step and signal
    lane: np.ndarray  # [G] int64 lane each signal controls (index in the map)
    stop_point: np.ndarray  # [G, 2] m, the stop point of each signal
    dt: float = 0.1  # s per row

    def __post_init__(self):
        self.state = np.asarray(self.state, np.int8).reshape(len(self.state), -1)
        self.lane = np.asarray(self.lane, np.int64).reshape(-1)
        self.stop_point = np.asarray(self.stop_point, float).reshape(-1, 2)
        G = self.state.shape[1]
        if len(self.lane) != G or len(self.stop_point) != G or len(self.state) < 1:
            raise ValueError(f"logged signals: state {self.state.shape}, {len(self.lane)} lanes, "
                             f"{len(self.stop_point)} stop points: need [T>=1, G], G, G")
        if not set(np.unique(self.state).tolist()) <= set(SIGNAL_CODES.values()):
            raise ValueError(f"logged signals: state codes must be in {sorted(SIGNAL_CODES.values())}")
        if not self.dt > 0 or not np.isfinite(self.stop_point).all():
            raise ValueError("logged signals: dt must be positive and stop points finite")

    @property
    def num_signals(self) -> int:
        return self.state.shape[1]

    def red(self, group: int, t: float) -> bool:
        """Is signal `group` red at time t (s)? The last row holds after the log ends."""
        k = min(max(int(round(t / self.dt)), 0), len(self.state) - 1)
        return bool(self.state[k, group] == RED)


def _end_heading(p: np.ndarray) -> float:
    d = p[-1] - p[-2]
    return float(np.arctan2(d[1], d[0]))


def _start_heading(p: np.ndarray) -> float:
    d = p[1] - p[0]
    return float(np.arctan2(d[1], d[0]))


def stop_line_lanes(lanes, signals: LoggedSignals) -> dict[int, int]:
    """{lane: signal} for the lanes whose end is a signal's stop line: the controlled lane itself
    when its stop point is nearer its end than its start, else the lanes that lead into it. A lane
    leading into several signalled lanes takes the signal of the straightest one (the through
    movement; a turn arrow then does not stop through traffic)."""
    best: dict[int, tuple[float, int]] = {}
    preds: dict[int, list[int]] = {}
    for i, lane in enumerate(lanes):
        for j in lane.successors:
            preds.setdefault(j, []).append(i)
    for g, (L, p) in enumerate(zip(signals.lane, signals.stop_point)):
        cl = np.asarray(lanes[L].centerline, float)
        if np.linalg.norm(p - cl[-1]) < np.linalg.norm(p - cl[0]):
            best[int(L)] = (-1.0, g)  # its own stop line wins
            continue
        for i in preds.get(int(L), []):
            turn = abs((_start_heading(cl) - _end_heading(np.asarray(lanes[i].centerline, float)) + np.pi) % (2 * np.pi) - np.pi)
            if i not in best or turn < best[i][0]:
                best[i] = (turn, g)
    return {i: g for i, (_, g) in sorted(best.items())}


def stop_lines(road) -> np.ndarray:
    """[S, 6] stop lines of a map: (x, y, ux, uy, half width, group): the point, the driving
    direction there and the half width of the lane. Logged signals: at each stop point, across the
    controlled lane; cyclic signals: at the end of each lane of `signal_group`."""
    rows = []
    log = getattr(road, "signal_log", None)
    if log is not None:
        for g, (L, p) in enumerate(zip(log.lane, log.stop_point)):
            cl = np.asarray(road.lanes[L].centerline, float)
            k = int(np.argmin(np.linalg.norm(cl - p, axis=1)))
            d = cl[min(k + 1, len(cl) - 1)] - cl[max(k - 1, 0)] if len(cl) > 1 else np.array([1.0, 0.0])
            u = d / max(float(np.linalg.norm(d)), 1e-9)
            rows.append([p[0], p[1], u[0], u[1], road.lanes[L].width / 2, g])
    else:
        for lane_id, g in sorted(road.signal_group.items()):
            cl = np.asarray(road.lanes[lane_id].centerline, float)
            d = cl[-1] - cl[-2]
            u = d / max(float(np.linalg.norm(d)), 1e-9)
            rows.append([cl[-1, 0], cl[-1, 1], u[0], u[1], road.lanes[lane_id].width / 2, g])
    return np.array(rows, float).reshape(-1, 6)


def signal_tables(maps: list):
    """Padded logged-signal tables (red [M, Tmax, Gmax], rows [M], dt [M]) and stop lines
    ([M, S, 5] and their groups [M, S]) of RoadMaps, for MapBank."""
    logs = [m.signal_log for m in maps]
    T = max([len(g.state) for g in logs if g is not None] + [1])
    G = max([g.num_signals for g in logs if g is not None] + [1])
    table = np.zeros((len(maps), T, G), bool)
    steps, sdt = np.zeros(len(maps), np.int64), np.full(len(maps), 0.1)
    for mi, g in enumerate(logs):
        if g is not None:
            table[mi, : len(g.state), : g.num_signals] = g.state == RED
            steps[mi], sdt[mi] = len(g.state), g.dt
    per_map = [stop_lines(m) for m in maps]
    S = max([len(r) for r in per_map] + [1])
    lines, group = np.zeros((len(maps), S, 5)), -np.ones((len(maps), S), np.int64)
    for mi, r in enumerate(per_map):
        lines[mi, : len(r)], group[mi, : len(r)] = r[:, :5], r[:, 5]
    return table, steps, sdt, lines, group
