"""The hot-path projection on separate segment fields (map/polyline.project_on_segment_fields,
used by MapBank.project) gives the same bits as the plain form on [..., K, 2] rows."""

import torch

from drivesim.map import build_map
from drivesim.map.bank import MapBank
from drivesim.map.polyline import project_on_segment_fields, project_on_segments


def plain_project(bank: MapBank, lane, seg, xy, back=1, ahead=3):
    """MapBank.project through the plain project_on_segments (the twin)."""
    lane_c = lane.clamp(min=0)
    nseg = bank.lane_npts[lane_c] - 1
    k = (seg.unsqueeze(-1) + torch.arange(-back, ahead + 1)).clamp(min=0)
    k = torch.minimum(k, (nseg - 1).unsqueeze(-1))
    rows = bank.segments(lane_c.unsqueeze(-1), k)
    return project_on_segments(rows[..., 0:2], rows[..., 2:4], rows[..., 4], rows[..., 5], k, nseg, xy)


def test_field_projection_matches_the_plain_one_bit_for_bit():
    bank = MapBank.build([build_map("curved"), build_map("intersection"), build_map("merge")])
    gen = torch.Generator().manual_seed(0)
    n_lanes, P = bank.lane_pts.shape[:2]
    lane = torch.randint(-1, n_lanes, (64, 32), generator=gen)
    lc = lane.clamp(min=0)
    seg = torch.minimum(torch.randint(0, P, lane.shape, generator=gen), bank.lane_npts[lc] - 2).clamp(min=0)
    base = bank.lane_pts[lc, seg]  # points near the lanes, a few metres off and beyond the ends
    xy = base + torch.randn(*lane.shape, 2, generator=gen) * torch.tensor([6.0, 3.0])
    for back, ahead in ((1, 3), (4, 4), (0, 0)):
        fast = bank.project(lane, seg, xy, back=back, ahead=ahead)
        ref = plain_project(bank, lane, seg, xy, back, ahead)
        for f, r in zip(fast, ref):
            assert f.dtype == r.dtype and torch.equal(f, r)


def test_field_projection_on_hand_made_segments():
    # one segment along x from (0, 0), 10 m long; the point (3, 2) is 3 m along, 2 m to the left
    one = lambda v: torch.tensor([[v]])
    s, d, k, yaw = project_on_segment_fields(one(0.0), one(0.0), one(1.0), one(0.0), one(10.0), one(5.0),
                                             torch.tensor([[0]]), torch.tensor([1]), torch.tensor([3.0]), torch.tensor([2.0]))
    assert float(s) == 8.0 and float(d) == 2.0 and int(k) == 0 and float(yaw) == 0.0


def plain_point_at(bank: MapBank, lane, s, seg_hint, window):
    """MapBank.point_at from whole segment rows (the twin of its field lookups)."""
    lane_c = lane.clamp(min=0)
    nseg = bank.lane_npts[lane_c] - 1
    k = torch.minimum(seg_hint.unsqueeze(-1) + torch.arange(window), (nseg - 1).unsqueeze(-1))
    rows = bank.segments(lane_c.unsqueeze(-1), k)  # [..., W, 6]
    pick = ((rows[..., 5] <= s.unsqueeze(-1)).sum(-1, keepdim=True) - 1).clamp(min=0)
    row = rows.gather(-2, pick.unsqueeze(-1).expand(*pick.shape, 6)).squeeze(-2)
    kk = k.gather(-1, pick).squeeze(-1)
    along = s - row[..., 5]
    lo = torch.where(kk == 0, -1e9, 0.0)
    hi = torch.where(kk == nseg - 1, 1e9, row[..., 4])
    along = torch.maximum(torch.minimum(along, hi), lo)
    return row[..., 0:2] + row[..., 2:4] * along.unsqueeze(-1), torch.atan2(row[..., 3], row[..., 2])


def test_point_at_matches_its_plain_twin():
    bank = MapBank.build([build_map("curved"), build_map("intersection")])
    gen = torch.Generator().manual_seed(2)
    lane = torch.randint(-1, bank.lane_pts.shape[0], (16, 24), generator=gen)
    s = (torch.rand(lane.shape, generator=gen) * 1.4 - 0.2) * bank.lane_len[lane.clamp(min=0)]  # before, on, past the lane
    hint = bank.seg_near(lane, s)
    for window in (3, 24):
        for f, r in zip(bank.point_at(lane, s, hint, window), plain_point_at(bank, lane, s, hint, window)):
            assert torch.equal(f, r)
    for f, r in zip(bank.point_at(lane, s), plain_point_at(bank, lane, s, torch.zeros_like(lane), bank.lane_pts.shape[1] - 1)):
        assert torch.equal(f, r)


def test_lookup_equals_advanced_indexing():
    from drivesim.map.bank import TAKE_MAX, lookup

    gen = torch.Generator().manual_seed(3)
    for table in (torch.rand(50, generator=gen), torch.randint(-1, 9, (50,), generator=gen), torch.rand(50, 4, generator=gen),
                  torch.rand(50, generator=gen) > 0.5):
        for shape in ((3, 7), (TAKE_MAX + 5,), (2, 3, 4)):  # both sides of the take / index_select switch
            index = torch.randint(0, 50, shape, generator=gen)
            out = lookup(table, index)
            assert out.dtype == table.dtype and torch.equal(out, table[index])
