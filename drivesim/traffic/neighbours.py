"""Who is ahead of whom, in O(A log A) per scenario: agents sorted along each lane.

Every agent that overlaps a lane is an entry (lane, s) of a per-scenario sorted list: on its own
lane and, while its body crosses into a same-direction neighbour lane (changing lanes, drifting),
on that lane too. Leaders, followers and MOBIL's gaps are then searches in that list instead of
[B, A, A] pairwise tests. `reference.py` holds the plain loop it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NO_LANE_KEY = 1e15  # sorts after every real entry
LANE_STRIDE = 1e6  # key = lane * LANE_STRIDE + s; |s| stays far below this


@dataclass
class LaneIndex:
    key: torch.Tensor  # [B, E] float64 sorted keys
    lane: torch.Tensor  # [B, E] lane of each sorted entry (-1: none)
    s: torch.Tensor  # [B, E]
    agent: torch.Tensor  # [B, E] agent index of each sorted entry

    def neighbour(self, lane: torch.Tensor, s: torch.Tensor, exclude: torch.Tensor, ahead: bool):
        """Nearest entry whose sort position (rear end) is strictly ahead of (or behind) s on
        `lane`, skipping agent `exclude`; all [B, Q]. Returns (agent, s of the entry, found)."""
        q = lane.double() * LANE_STRIDE + s.double()
        pos = torch.searchsorted(self.key, q.contiguous(), right=ahead)
        step = 1 if ahead else -1
        pos = pos if ahead else pos - 1
        agent, s_at, found = self._at(pos, lane)
        again = found & (agent == exclude)
        agent2, s2, found2 = self._at(pos + step, lane)
        agent = torch.where(again, agent2, agent)
        s_at = torch.where(again, s2, s_at)
        found = torch.where(again, found2, found)
        return agent, s_at, found & (lane >= 0)

    def _at(self, pos, lane):
        E = self.key.shape[1]
        ok = (pos >= 0) & (pos < E)
        p = pos.clamp(0, E - 1)
        return self.agent.gather(1, p), self.s.gather(1, p), ok & (self.lane.gather(1, p) == lane)


def build_index(lanes: list[torch.Tensor], s: list[torch.Tensor], ok: list[torch.Tensor],
                half_length: torch.Tensor | None = None) -> LaneIndex:
    """Sorted entries from several [B, A] (lane, s, ok) sets, e.g. primary and secondary lanes.

    Entries are ordered by their rear end, s - half_length (by s when not given), so that the
    first entry ahead of a position is the nearest bumper; `LaneIndex.s` keeps s itself."""
    B, A = lanes[0].shape
    agent = torch.arange(A, device=lanes[0].device).expand(B, A)
    lane = torch.cat([torch.where(o, l, torch.full_like(l, -1)) for l, o in zip(lanes, ok)], dim=1)
    ss = torch.cat(s, dim=1)
    rear = ss if half_length is None else ss - torch.cat([half_length] * len(lanes), dim=1)
    key = torch.where(lane >= 0, lane.double() * LANE_STRIDE + rear.double(), torch.full_like(ss, NO_LANE_KEY, dtype=torch.float64))
    key, order = key.sort(dim=1)
    return LaneIndex(key, lane.gather(1, order), ss.gather(1, order), torch.cat([agent] * len(lanes), dim=1).gather(1, order))
