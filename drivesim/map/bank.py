"""MapBank: many RoadMaps as padded tensors for batched queries.

Lanes of all maps are concatenated (global lane ids); each scenario points at a map through
`map_idx`. The drivable area becomes a signed-distance raster per map (positive outside, the
Waymax offroad convention), stored flat and sampled bilinearly. shapely builds and checks the
geometry; the hot loop only touches tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.map.conflicts import build_conflicts
from drivesim.map.polyline import (CURVE_LAT_ACCEL, CURVE_YAW_RATE, curve_speed, project_on_polylines,  # noqa: F401 (re-exported)
                                   project_on_segment_fields, project_on_segments, resample_polyline)
from drivesim.map.raster import (MAX_RASTER_CELLS, RESOLUTION, SDF_CLAMP, SDF_MARGIN, check_raster_size,  # noqa: F401 (re-exported)
                                 lane_direction_raster, raster_shape, signed_distance_raster)
from drivesim.map.road import RoadMap
from drivesim.map.signals import signal_tables

MAX_SUCCESSORS = 4
SUCC_PERIOD = math.lcm(*range(1, MAX_SUCCESSORS + 1))  # 12: a % n == (a % 12) % n for every count n of successors
COARSE = 8  # full-lane searches look at every 8th point first, then the segments near the best
CHUNK = 6  # points per lane piece in observations (10 m at 2 m spacing)


TAKE_MAX = 4096  # lookup: up to this many entries `take` (one op) is the cheapest, beyond it index_select


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for an int64 index of any shape (entries in range, e.g. lanes clamped at 0):
    the same values as advanced indexing at a fraction of its per-call cost (measured at B=1 and
    B=256 x 32 agents: `take` for small 1-D lookups, one index_select otherwise)."""
    if table.dim() == 1 and index.numel() <= TAKE_MAX:
        return table.take(index)
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def _with_successors(vcurve: np.ndarray, succ: np.ndarray, pts: list, lookahead_pts: int = 15) -> np.ndarray:
    """Near a lane's end, also respect the slowest start of its successors (curves in junctions)."""
    out = vcurve.copy()
    for i, p in enumerate(pts):
        nxt = succ[i][succ[i] >= 0]
        if len(nxt):
            v_next = min(vcurve[j, : lookahead_pts].min() for j in nxt)
            n = len(p)
            tail = slice(max(0, n - lookahead_pts), n)
            out[i, tail] = np.minimum(out[i, tail], v_next)
            out[i, n:] = np.minimum(out[i, n:], v_next)
    return out


def _side_mapping(own: np.ndarray, neighbour: np.ndarray) -> tuple[float, float]:
    """(a, b) with s_neighbour ~ a + b * s_own, from the projections of the lane's two ends."""
    from shapely.geometry import LineString, Point

    line, nb = LineString(own), LineString(neighbour)
    s0, s1 = nb.project(Point(own[0])), nb.project(Point(own[-1]))
    return s0, (s1 - s0) / max(line.length, 1e-6)


@dataclass
class MapBank:
    maps: list[RoadMap]
    lane_pts: torch.Tensor  # [NL, P, 2] padded with the last point
    seg_table: torch.Tensor  # [NL * P, 6] per segment (row lane * P + k): start x, y, unit tangent x, y, length, start s
    lane_npts: torch.Tensor  # [NL] int64
    lane_s: torch.Tensor  # [NL, P] cumulative arc length
    lane_len: torch.Tensor  # [NL]
    lane_width: torch.Tensor  # [NL]
    lane_speed: torch.Tensor  # [NL] speed limit m/s
    curve_speed: torch.Tensor  # [NL * P] comfortable speed in curves at each lane point (row lane * P + k), 30 m ahead
    lane_succ: torch.Tensor  # [NL, S] int64 global ids, -1 pad
    lane_left: torch.Tensor  # [NL] int64, -1 none
    lane_right: torch.Tensor  # [NL] int64
    side_map: torch.Tensor  # [NL, 2, 2] (a, b) with s_on_neighbour ~ a + b * s, for the left (0) and right (1) neighbour
    lane_map: torch.Tensor  # [NL] int64 map index
    lane_dead_end: torch.Tensor  # [NL] bool: the lane ends inside the map (a merge); traffic must leave it
    map_lane_start: torch.Tensor  # [M] int64 first global lane id of each map
    map_num_lanes: torch.Tensor  # [M] int64
    sdf: torch.Tensor  # [sum HW] float16, flat rasters
    lane_dir: torch.Tensor  # [sum HW, 2] float16 unit driving direction per cell (0: no lane or ambiguous)
    sdf_start: torch.Tensor  # [M] int64 offset into sdf
    sdf_hw: torch.Tensor  # [M, 2] int64
    sdf_origin: torch.Tensor  # [M, 2] world xy of the raster corner
    sdf_res: float
    lane_signal: torch.Tensor  # [NL] int64 signal group of the stop line at the lane end (-1: none)
    chunk_pts: torch.Tensor  # [NC, CHUNK, 2] lanes cut in pieces of CHUNK points (observations)
    chunk_lane: torch.Tensor  # [NC] int64 global lane id of each piece
    map_chunk_start: torch.Tensor  # [M] int64
    map_num_chunks: torch.Tensor  # [M] int64
    map_signal: torch.Tensor  # [M, 3] (green s, all-red s, groups); groups 0 when unsignalised
    signal_table: torch.Tensor  # [M, Tmax, Gmax] bool: logged signal red per step (map/signals.py), False padding
    map_signal_steps: torch.Tensor  # [M] int64 rows of each map's logged table (0: cyclic or none)
    map_signal_dt: torch.Tensor  # [M] s per logged row
    stop_line: torch.Tensor  # [M, S, 5] signal stop lines (x, y, ux, uy, half width), zero padding
    stop_group: torch.Tensor  # [M, S] int64 signal group of each stop line (-1: padding)
    conflict_lane: torch.Tensor  # [NL, K] int64 lane crossing or merging with this one (-1 pad), see conflicts.py
    conflict_s: torch.Tensor  # [NL, K, 4] per conflict zone: entry and exit s on this lane, entry and exit s on the other
    lane_stub: torch.Tensor  # [NL] bool: no successor and other lanes ahead of its end (traffic stops there)

    def group_red(self, group: torch.Tensor, map_idx: torch.Tensor, t) -> torch.Tensor:
        """True where signal `group` ([B, ...] int64, -1: none) of each scenario's map (map_idx [B])
        is red at time t (seconds: a number, or [B]): the logged state of that step on maps with a
        signal table (map/signals.py; the last row after the log ends), else the cycle."""
        sig = lookup(self.map_signal, map_idx)  # [B, 3]
        cycle = (sig[:, 0] + sig[:, 1]) * sig[:, 2]
        t = torch.as_tensor(t, dtype=cycle.dtype, device=cycle.device).expand_as(cycle)
        phase = torch.remainder(t, cycle.clamp(min=1e-6))
        slot = sig[:, 0] + sig[:, 1]
        current = torch.floor(phase / slot.clamp(min=1e-6))
        in_green = torch.remainder(phase, slot.clamp(min=1e-6)) < sig[:, 0]
        extra = (1,) * (group.dim() - 1)
        green = (group.float() == current.view(-1, *extra)) & in_green.view(-1, *extra)
        red = (group >= 0) & ~green
        steps = lookup(self.map_signal_steps, map_idx)  # [B] rows of the logged table, 0: cyclic
        if bool((steps > 0).any()):
            k = torch.round(t / lookup(self.map_signal_dt, map_idx).clamp(min=1e-6)).long()
            k = torch.minimum(k.clamp(min=0), (steps - 1).clamp(min=0))  # [B]
            G = self.signal_table.shape[2]
            row = self.signal_table[map_idx, k]  # [B, G]
            flat = group.clamp(0, max(G - 1, 0)).reshape(len(map_idx), -1)
            logged = row.gather(1, flat).view_as(group) & (group >= 0) & (group < G)
            red = torch.where((steps > 0).view(-1, *extra), logged, red)
        return red

    def signal_stop(self, lane: torch.Tensor, map_idx: torch.Tensor, t) -> torch.Tensor:
        """True where the stop line at the end of `lane` ([B, ...], map_idx [B]) is red at time t
        (seconds: a number, or [B] per scenario)."""
        group = torch.where(lane >= 0, lookup(self.lane_signal, lane.clamp(min=0)), torch.full_like(lane, -1))
        return self.group_red(group, map_idx, t)

    def with_signal_offset(self, maps: list[RoadMap], steps: int) -> "MapBank":
        """The same bank for `maps` (one per map, same geometry: e.g. logged scenes windowed from
        log step `steps`) with the logged signal tables starting `steps` rows later."""
        if len(maps) != len(self.maps):
            raise ValueError(f"with_signal_offset: {len(maps)} maps for a bank of {len(self.maps)}")
        rows = self.signal_table.shape[1]
        src = torch.arange(rows, device=self.signal_table.device).unsqueeze(0) + steps  # [1, T]
        src = torch.minimum(src, (self.map_signal_steps - 1).clamp(min=0).unsqueeze(1))  # [M, T]
        table = self.signal_table.gather(1, src.unsqueeze(-1).expand(-1, -1, self.signal_table.shape[2]))
        left = torch.where(self.map_signal_steps > 0, (self.map_signal_steps - steps).clamp(min=1), self.map_signal_steps)
        return dataclasses.replace(self, maps=list(maps), signal_table=table, map_signal_steps=left)

    @staticmethod
    def build(maps: list[RoadMap], spacing: float = 2.0, resolution: float = RESOLUTION, device="cpu") -> "MapBank":
        for m in maps:  # memory is bounded before anything is built
            check_raster_size(m, resolution)
        lanes = [lane for m in maps for lane in m.lanes]
        starts = np.cumsum([0] + [len(m.lanes) for m in maps])[:-1]
        pts = [resample_polyline(np.asarray(l.centerline, float), spacing) for l in lanes]
        P = max(len(p) for p in pts)
        NL = len(lanes)
        lane_pts = np.zeros((NL, P, 2))
        lane_s = np.zeros((NL, P))
        for i, p in enumerate(pts):
            lane_pts[i, : len(p)] = p
            lane_pts[i, len(p):] = p[-1]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
            lane_s[i, : len(p)] = s
            lane_s[i, len(p):] = s[-1]
        vcurve = np.full((NL, P), 1e3)
        for i, p in enumerate(pts):
            vcurve[i, : len(p)] = curve_speed(p)
            vcurve[i, len(p):] = vcurve[i, len(p) - 1]
        succ = -np.ones((NL, MAX_SUCCESSORS), dtype=np.int64)
        left = -np.ones(NL, dtype=np.int64)
        right = -np.ones(NL, dtype=np.int64)
        lane_map = np.zeros(NL, dtype=np.int64)
        gid = 0
        for mi, m in enumerate(maps):
            off = starts[mi]
            for lane in m.lanes:
                if len(lane.successors) > MAX_SUCCESSORS:
                    raise ValueError(f"map {m.name!r}: a lane has more than {MAX_SUCCESSORS} successors")
                for k, sidx in enumerate(lane.successors):
                    succ[gid, k] = off + sidx
                left[gid] = off + lane.left if lane.left >= 0 else -1
                right[gid] = off + lane.right if lane.right >= 0 else -1
                lane_map[gid] = mi
                gid += 1
        side_map = np.zeros((NL, 2, 2))
        side_map[:, :, 1] = 1.0
        for gid, lane in enumerate(lanes):
            off = starts[lane_map[gid]]
            for k, nb in enumerate((lane.left, lane.right)):
                if nb >= 0:
                    side_map[gid, k] = _side_mapping(lane.centerline, lanes[off + nb].centerline)
        signal = -np.ones(NL, dtype=np.int64)
        map_signal = np.zeros((len(maps), 3))
        for mi, m in enumerate(maps):
            for lid, g in m.signal_group.items():
                signal[starts[mi] + lid] = g
            if m.signal_group and m.signal_log is None:
                map_signal[mi] = (*m.signal_timing, max(m.signal_group.values()) + 1)
        table, steps, sdt, lines, line_group = signal_tables(maps)
        ab = np.diff(lane_pts, axis=1, append=lane_pts[:, -1:])  # [NL, P, 2], zero on padding
        seglen = np.linalg.norm(ab, axis=-1)
        tangent = np.where(seglen[..., None] > 1e-9, ab / np.maximum(seglen, 1e-9)[..., None], [1.0, 0.0])
        seg_table = np.concatenate([lane_pts, tangent, np.maximum(seglen, 1e-6)[..., None], lane_s[..., None]], axis=-1)
        rasters, directions, origins, hws = [], [], [], []
        for m in maps:
            r, o, hw = signed_distance_raster(m.drivable, resolution)
            rasters.append(r.reshape(-1))
            directions.append(lane_direction_raster(m.lanes, r.astype(np.float32), o, resolution))
            origins.append(o)
            hws.append(hw)
        sdf_start = np.cumsum([0] + [len(r) for r in rasters])[:-1]
        chunks, chunk_lane, chunk_count = [], [], np.zeros(len(maps), dtype=np.int64)
        for gid, p in enumerate(pts):
            for c0 in range(0, len(p) - 1, CHUNK - 1):
                piece = p[c0 : c0 + CHUNK]
                chunks.append(np.concatenate([piece, np.repeat(piece[-1:], CHUNK - len(piece), axis=0)]))
                chunk_lane.append(gid)
                chunk_count[lane_map[gid]] += 1
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=device)
        conf = build_conflicts(maps)
        return MapBank(
            maps=list(maps),
            lane_pts=t(lane_pts),
            seg_table=t(seg_table.reshape(-1, 6)),
            lane_npts=t([len(p) for p in pts], torch.int64),
            lane_s=t(lane_s),
            lane_len=t(lane_s[:, -1]),
            lane_width=t([l.width for l in lanes]),
            lane_speed=t([l.speed_limit for l in lanes]),
            curve_speed=t(_with_successors(vcurve, succ, pts)).reshape(-1),
            lane_succ=t(succ, torch.int64),
            lane_left=t(left, torch.int64),
            lane_right=t(right, torch.int64),
            side_map=t(side_map),
            lane_map=t(lane_map, torch.int64),
            lane_dead_end=t([l.dead_end for l in lanes], torch.bool),
            map_lane_start=t(starts, torch.int64),
            map_num_lanes=t([len(m.lanes) for m in maps], torch.int64),
            sdf=torch.as_tensor(np.concatenate(rasters), device=device),
            lane_dir=torch.as_tensor(np.concatenate(directions), device=device),
            sdf_start=t(sdf_start, torch.int64),
            sdf_hw=t(hws, torch.int64),
            sdf_origin=t(origins),
            sdf_res=resolution,
            lane_signal=t(signal, torch.int64),
            chunk_pts=t(np.stack(chunks)),
            chunk_lane=t(chunk_lane, torch.int64),
            map_chunk_start=t(np.cumsum(np.concatenate([[0], chunk_count]))[:-1], torch.int64),
            map_num_chunks=t(chunk_count, torch.int64),
            map_signal=t(map_signal),
            signal_table=t(table, torch.bool),
            map_signal_steps=t(steps, torch.int64),
            map_signal_dt=t(sdt),
            stop_line=t(lines),
            stop_group=t(line_group, torch.int64),
            conflict_lane=t(conf.other, torch.int64),
            conflict_s=t(conf.zone),
            lane_stub=t(conf.stub, torch.bool),
        )

    # ------------------------------------------------------------------ queries
    def _raster_cells(self, map_idx: torch.Tensor, xy: torch.Tensor):
        """Bilinear cell indices and weights for xy [B, N, 2] in each scenario's raster."""
        origin = lookup(self.sdf_origin, map_idx).unsqueeze(1)  # [B, 1, 2]
        hw = lookup(self.sdf_hw, map_idx)
        h, w = hw[:, 0:1], hw[:, 1:2]
        g = (xy - origin) / self.sdf_res - 0.5  # continuous cell coordinates
        x0, y0 = torch.floor(g[..., 0]), torch.floor(g[..., 1])
        fx, fy = g[..., 0] - x0, g[..., 1] - y0
        x0, y0 = x0.long(), y0.long()
        inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
        x0 = torch.minimum(x0.clamp(min=0), w - 2)
        y0 = torch.minimum(y0.clamp(min=0), h - 2)
        base = lookup(self.sdf_start, map_idx).unsqueeze(1) + y0 * w + x0
        idx = torch.stack([base, base + 1, base + w, base + w + 1], dim=-1)  # [B, N, 4]
        wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
        return idx, wts, inside

    def signed_distance(self, map_idx: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """Signed distance to the drivable-area edge (m, positive outside) at xy [B, ..., 2].

        map_idx [B]. Bilinear in a raster of `sdf_res`; points outside the raster read as far off-road.
        """
        shape = xy.shape[:-1]
        idx, wts, inside = self._raster_cells(map_idx, xy.reshape(shape[0], -1, 2))
        val = (self.sdf[idx].float() * wts).sum(-1)
        val = torch.where(inside, val, torch.full_like(val, SDF_CLAMP[1]))
        return val.reshape(shape)

    def driving_direction(self, map_idx: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """Unit driving direction [B, ..., 2] of the lane under xy (0 off lanes and in junctions)."""
        shape = xy.shape
        idx, wts, inside = self._raster_cells(map_idx, xy.reshape(shape[0], -1, 2))
        nearest = idx.gather(-1, wts.argmax(-1, keepdim=True)).squeeze(-1)
        val = self.lane_dir[nearest].float() * inside.unsqueeze(-1)
        return val.reshape(shape)

    def project(self, lane: torch.Tensor, seg: torch.Tensor, xy: torch.Tensor, back: int = 1, ahead: int = 3):
        """Frenet projection of xy [..., 2] on `lane` near segment `seg` (both [...], int64).

        Returns (s, d, seg, yaw_lane): arc length (extrapolated before the start and past the
        end), signed lateral offset (left positive), the segment found and the lane heading there.
        """
        lane_c = lane.clamp(min=0)
        nseg = lookup(self.lane_npts, lane_c) - 1  # [...]
        offs = torch.arange(-back, ahead + 1, device=xy.device)
        k = (seg.unsqueeze(-1) + offs).clamp(min=0)
        k = torch.minimum(k, (nseg - 1).unsqueeze(-1))  # [..., K]
        return self._project_segments(lane_c, k, nseg, xy)

    def project_full(self, lane: torch.Tensor, xy: torch.Tensor):
        """Frenet projection searching the whole lane (initialisation, off-window): the nearest of
        every COARSE-th lane point, then the segments within 2 x COARSE of it (`project_exhaustive`
        is the plain twin; they differ only where a lane comes back within a few metres of itself)."""
        P = self.lane_pts.shape[1]
        if P <= 4 * COARSE:
            return self.project_exhaustive(lane, xy)
        lane_c = lane.clamp(min=0)
        coarse = self.lane_pts[:, ::COARSE].index_select(0, lane_c.reshape(-1)).view(*lane.shape, -1, 2)
        n_coarse = (lookup(self.lane_npts, lane_c) - 1) // COARSE + 1  # coarse points that exist on each lane
        dist2 = ((coarse - xy.unsqueeze(-2)) ** 2).sum(-1)
        dist2 = torch.where(torch.arange(coarse.shape[-2], device=xy.device) < n_coarse.unsqueeze(-1), dist2, torch.inf)
        seg = dist2.argmin(dim=-1) * COARSE
        return self.project(lane, seg, xy, back=2 * COARSE, ahead=2 * COARSE)

    def project_exhaustive(self, lane: torch.Tensor, xy: torch.Tensor):
        """Frenet projection searching every segment of the lane."""
        lane_c = lane.clamp(min=0)
        nseg = lookup(self.lane_npts, lane_c) - 1
        P = self.lane_pts.shape[1]
        k = torch.arange(P - 1, device=xy.device).expand(*lane.shape, P - 1)
        k = torch.minimum(k, (nseg - 1).unsqueeze(-1))
        return self._project_segments(lane_c, k, nseg, xy)

    def seg_near(self, lane: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Segment index just before arc length s on `lane` (points are evenly spaced on a lane)."""
        lc = lane.clamp(min=0)
        nseg = (lookup(self.lane_npts, lc) - 1).clamp(min=1)
        k = torch.floor(s / (lookup(self.lane_len, lc) / nseg).clamp(min=1e-3)).long() - 1
        return torch.minimum(k.clamp(min=0), nseg - 1)

    def on_neighbour(self, lane: torch.Tensor, left: torch.Tensor, s: torch.Tensor):
        """Arc length on the left (where `left`) or right neighbour of `lane` of the point at s,
        and a segment index near it (for a windowed projection)."""
        ab = self.side_map[lane.clamp(min=0), torch.where(left, 0, 1)]  # [..., 2]
        nb = torch.where(left, lookup(self.lane_left, lane.clamp(min=0)), lookup(self.lane_right, lane.clamp(min=0))).clamp(min=0)
        s_nb = ab[..., 0] + ab[..., 1] * s
        spacing = lookup(self.lane_len, nb) / (lookup(self.lane_npts, nb) - 1).clamp(min=1)
        seg = (s_nb / spacing.clamp(min=1e-3)).long().clamp(min=0)
        return s_nb, torch.minimum(seg, lookup(self.lane_npts, nb) - 2)

    def segments(self, lane: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Rows [..., 6] of seg_table for segments k of lanes (lane broadcast against k)."""
        idx = (lane * self.lane_pts.shape[1] + k).reshape(-1)
        return self.seg_table.index_select(0, idx).view(*k.shape, 6)

    @functools.cached_property
    def succ_by_index(self) -> torch.Tensor:
        """[NL, SUCC_PERIOD] int64: the successor an agent with index a takes from each lane, at
        column a % SUCC_PERIOD (its choice is a % n of the lane's n successors, and n divides
        SUCC_PERIOD); -1 where the lane has none (traffic/reactive.next_lanes)."""
        n = (self.lane_succ >= 0).sum(-1, keepdim=True)  # [NL, 1]
        col = torch.arange(SUCC_PERIOD, device=n.device).expand(len(n), -1)
        pick = self.lane_succ.gather(1, torch.remainder(col, n.clamp(min=1)))
        return torch.where(n > 0, pick, torch.full_like(pick, -1))

    @functools.cached_property
    def seg_fields(self) -> torch.Tensor:
        """seg_table by field, [6, NL * P] (each field contiguous, for the hot-path projection)."""
        return self.seg_table.t().contiguous()

    def _project_segments(self, lane, k, nseg, xy):
        """project_on_segments on segments k [..., K] of lanes [...] (project_on_segment_fields: same bits)."""
        idx = (lane.unsqueeze(-1) * self.lane_pts.shape[1] + k).reshape(-1)
        f = self.seg_fields.index_select(1, idx).view(6, *k.shape)  # [6, ..., K]
        return project_on_segment_fields(f[0], f[1], f[2], f[3], f[4], f[5], k, nseg, xy[..., 0], xy[..., 1])

    def point_at(self, lane: torch.Tensor, s: torch.Tensor, seg_hint: torch.Tensor | None = None, window: int = 24):
        """World xy [..., 2] and heading of `lane` at arc length s, extrapolated straight beyond
        both ends. With `seg_hint`, only `window` segments from the hint on are searched."""
        lane_c = lane.clamp(min=0)
        nseg = lookup(self.lane_npts, lane_c) - 1
        if seg_hint is None:
            seg_hint, window = torch.zeros_like(lane_c), self.lane_pts.shape[1] - 1
        k = torch.minimum(seg_hint.unsqueeze(-1) + torch.arange(window, device=s.device), (nseg - 1).unsqueeze(-1))
        first = lane_c.unsqueeze(-1) * self.lane_pts.shape[1]  # [..., 1] row of each lane's segment 0
        start_s = lookup(self.seg_fields[5], first + k)  # [..., W] arc length where each segment starts
        pick = ((start_s <= s.unsqueeze(-1)).sum(-1, keepdim=True) - 1).clamp(min=0)
        kk = k.gather(-1, pick).squeeze(-1)
        row = lookup(self.seg_table, first.squeeze(-1) + kk)  # [..., 6] the picked segment
        along = s - row[..., 5]
        lo = torch.where(kk == 0, -1e9, 0.0)
        hi = torch.where(kk == nseg - 1, 1e9, row[..., 4])
        along = torch.maximum(torch.minimum(along, hi), lo)
        return row[..., 0:2] + row[..., 2:4] * along.unsqueeze(-1), torch.atan2(row[..., 3], row[..., 2])

    def locate(self, map_idx: torch.Tensor, xy: torch.Tensor, yaw: torch.Tensor, heading_weight: float = 4.0,
               chunk: int = 1024):
        """Best lane for each pose (map_idx [N], xy [N, 2], yaw [N]): returns (lane, seg, s, d).

        Score: |d| beyond the half width plus a heading-mismatch penalty; searches every segment
        of every lane of the map, `chunk` poses at a time (used at reset and when agents get lost).
        """
        parts = [self._locate(map_idx[i : i + chunk], xy[i : i + chunk], yaw[i : i + chunk], heading_weight)
                 for i in range(0, max(len(xy), 1), chunk)]
        return tuple(torch.cat(p) for p in zip(*parts))

    def _locate(self, map_idx, xy, yaw, heading_weight):
        N = xy.shape[0]
        if N == 0:
            e = torch.zeros(0, dtype=torch.long, device=xy.device)
            return e, e, xy.new_zeros(0), xy.new_zeros(0)
        Lm = int(lookup(self.map_num_lanes, map_idx).max())
        cand = lookup(self.map_lane_start, map_idx).unsqueeze(1) + torch.arange(Lm, device=xy.device)  # [N, Lm]
        ok = torch.arange(Lm, device=xy.device) < lookup(self.map_num_lanes, map_idx).unsqueeze(1)
        cand = torch.where(ok, cand, lookup(self.map_lane_start, map_idx).unsqueeze(1))
        s, d, seg, lane_yaw = self.project_full(cand, xy.unsqueeze(1).expand(N, Lm, 2))
        off_end = torch.relu(-s) + torch.relu(s - lookup(self.lane_len, cand))
        dyaw = torch.remainder(yaw.unsqueeze(1) - lane_yaw + math.pi, 2 * math.pi) - math.pi
        score = torch.relu(d.abs() - 0.5 * lookup(self.lane_width, cand)) + d.abs() * 0.1 + off_end + heading_weight * dyaw.abs()
        score = torch.where(ok, score, torch.full_like(score, float("inf")))
        best = score.argmin(dim=1, keepdim=True)
        pick = lambda t: t.gather(1, best).squeeze(1)
        return pick(cand), pick(seg), pick(s), pick(d)

