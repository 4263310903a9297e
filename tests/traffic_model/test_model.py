"""The learned traffic model: tokens, sampling, the simulator hook (LEARNED agents), seeding,
artifacts with their hash, and the shipped default model."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from drivesim.traffic_model.model import (DEFAULT_ARTIFACT, LearnedTraffic, LearnedTrafficConfig, TrafficModel, load, sample,
                                       save)
from drivesim.traffic_model.tokens import (LANE_FEATURES, NEIGHBOUR_FEATURES, SELF_FEATURES, TokenConfig,
                                              agent_tokens)
from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.rollout import rollout
from drivesim.sim.simulator import Simulator
from drivesim.sim.policy import IDMLaneKeeping
from tests.helpers import make_scenario

SMALL = LearnedTrafficConfig(d_model=16, heads=2, ff=32)


def learned_scenario(seed=3, every=1, duration=4.0):
    """A procedural two-way road; every `every`-th reactive vehicle becomes LEARNED."""
    sc = procedural_scenario(build_map("straight"), TrafficConfig(duration=duration), seed=seed)
    mode = np.asarray(sc.mode).copy()
    reactive = np.nonzero(mode == ControlMode.REACTIVE)[0]
    mode[reactive[::every]] = int(ControlMode.LEARNED)
    sc.mode = mode
    return sc


def small_model(seed=0):
    torch.manual_seed(seed)
    return TrafficModel(SMALL)


def run(sc, behavior, copies=1):
    batch = ScenarioBatch.build([sc] * copies)
    return rollout(batch, IDMLaneKeeping(), behavior=behavior, record=True).trajectory


def test_tokens_are_in_the_agent_frame_with_masks():
    sc = learned_scenario()
    batch = ScenarioBatch.build([sc])
    state = Simulator(batch, behavior=LearnedTraffic(small_model())).reset()
    rows, cols = torch.zeros(3, dtype=torch.long), torch.tensor([1, 2, 3])
    cfg = TokenConfig(neighbours=4, lane_chunks=5)
    tok = agent_tokens(state, batch.bank, batch.map_idx, rows, cols, cfg)
    assert tok.agent.shape == (3, SELF_FEATURES) and tok.neighbours.shape == (3, 4, NEIGHBOUR_FEATURES)
    assert tok.lanes.shape == (3, 5, LANE_FEATURES) and tok.neighbours_mask.shape == (3, 4) and tok.lanes_mask.shape == (3, 5)
    assert all(torch.isfinite(t).all() for t in (tok.agent, tok.neighbours, tok.lanes))
    assert tok.lanes_mask.all()  # a road is always near
    # neighbour positions are in the subject's frame: its nearest neighbour is the nearest agent
    xy = state.xy[0]
    d = (xy - xy[1]).norm(dim=-1)
    d[1] = float("inf")
    d[~state.valid[0]] = float("inf")
    assert torch.isclose(tok.neighbours[0, 0, 2] * 20.0, d.min(), atol=1e-4)
    # the agent sits on a lane: the nearest piece's lateral offset is within half a lane
    assert (tok.lanes[:, :, -3] * 5.0).abs().min(dim=1).values.max() < 2.0


def test_model_outputs_and_sampling():
    model = small_model()
    sc = learned_scenario()
    batch = ScenarioBatch.build([sc])
    state = Simulator(batch, behavior=LearnedTraffic(model)).reset()
    rows, cols = (batch.init["mode"] == ControlMode.LEARNED).nonzero(as_tuple=True)
    logits = model(agent_tokens(state, batch.bank, batch.map_idx, rows, cols, SMALL.tokens))
    assert logits.shape == (len(rows), SMALL.num_actions)
    accel, steer = model.actions(torch.arange(SMALL.num_actions), torch.full((SMALL.num_actions,), 4.5))
    assert accel.min() == min(SMALL.accel_bins) and accel.max() == max(SMALL.accel_bins)
    assert steer.abs().max() < 0.6 and torch.allclose(torch.tan(steer) / (0.6 * 4.5), model.grid_curvature, atol=1e-6)
    z = torch.tensor([[0.0, 2.0, 1.0]])
    assert int(sample(z, torch.tensor([0.3]), 0.0)) == 1  # temperature 0: argmax
    p = torch.softmax(z[0], 0)
    assert int(sample(z, torch.tensor([float(p[0]) - 1e-3]), 1.0)) == 0
    assert int(sample(z, torch.tensor([float(p[0] + p[1]) + 1e-3]), 1.0)) == 2


def test_same_seed_same_rollout_different_seed_different():
    sc = learned_scenario()
    a = run(sc, LearnedTraffic(small_model(), seed=1), copies=2)
    b = run(sc, LearnedTraffic(small_model(), seed=1), copies=2)
    c = run(sc, LearnedTraffic(small_model(), seed=2), copies=2)
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["yaw"], b["yaw"])  # bit for bit
    learned = (sc.mode == ControlMode.LEARNED)
    assert not np.allclose(a["x"][-1, 0, learned], c["x"][-1, 0, learned])
    # two copies of one scenario with the same scenario seed sample the same future
    assert np.array_equal(a["x"][:, 0], a["x"][:, 1])
    sc2 = learned_scenario()
    sc2.seed = 5
    d = run(sc2, LearnedTraffic(small_model(), seed=1))
    assert not np.allclose(d["x"][-1, 0, learned], a["x"][-1, 0, learned])


class Brake:
    """A stub behaviour: every active agent brakes at 2 m/s^2; records what it was asked."""

    def __init__(self):
        self.resets, self.active = 0, []

    def reset(self, batch):
        self.resets += 1

    def act(self, state, batch, active):
        self.active.append(active.clone())
        return torch.where(active, -2.0, 0.0), torch.zeros_like(state.x)


def test_learned_subset_while_others_stay_reactive():
    sc = learned_scenario(every=2, duration=2.0)
    stub = Brake()
    tr = run(sc, stub)
    learned = sc.mode == ControlMode.LEARNED
    reactive = sc.mode == ControlMode.REACTIVE
    assert learned.sum() >= 2 and reactive.sum() >= 2 and stub.resets == 1
    assert all(bool((a[0].numpy() == learned)[tr["valid"][0, 0]].all()) for a in stub.active[:1])
    dv = tr["speed"][10, 0] - tr["speed"][0, 0]  # 1 s
    moving = sc.speed > 2.5
    assert np.allclose(dv[learned & moving], -2.0, atol=0.15)  # jerk limit ramps the first step
    assert (np.abs(dv[reactive & moving] + 2.0) > 0.15).mean() > 0.8  # IDM does not brake at exactly 2 m/s^2
    assert not any(bool((a & torch.as_tensor(reactive)).any()) for a in stub.active)  # never asked for reactive agents


def test_learned_agents_need_a_model():
    batch = ScenarioBatch.build([learned_scenario()])
    with pytest.raises(ValueError, match="LEARNED agents but no behaviour model"):
        Simulator(batch)
    with pytest.raises(ValueError, match="no behaviour model"):
        rollout(batch, IDMLaneKeeping())


class SteerLeft:
    def reset(self, batch):
        pass

    def act(self, state, batch, active):
        return torch.zeros_like(state.x), torch.where(active & (state.row_step.unsqueeze(1) < 12), 0.08, -0.08)


def test_learned_agent_changing_lane_is_relocated():
    road = build_map("straight", lanes=2, lanes_back=0)
    sc = make_scenario(road, [{"x": 0, "y": -20, "speed": 0.0, "mode": ControlMode.STATIC},
                              {"x": 10, "y": -5.25, "speed": 10, "mode": ControlMode.LEARNED}], duration=3.0)
    batch = ScenarioBatch.build([sc])
    sim = Simulator(batch, behavior=SteerLeft())
    state = sim.reset()
    lane0 = int(state.lane[0, 1])
    for _ in range(30):
        state = sim.step(state, torch.zeros(1, 2))
    assert float(state.y[0, 1]) > -3.0  # moved about one lane to the left
    assert int(state.lane[0, 1]) == road.lanes[lane0].left and bool(state.valid[0, 1])


def test_save_load_round_trip_and_tampering(tmp_path):
    model = small_model()
    card = save(model, tmp_path, {"lineage": {"held_out_names": ["x"]}})
    loaded, info = load(tmp_path)
    assert info["sha256"] == json.loads(card.read_text())["sha256"] and info["lineage"]["held_out_names"] == ["x"]
    tok = agent_tokens(*_state_and_rows(), SMALL.tokens)
    assert torch.equal(model(tok), loaded(tok))
    raw = bytearray((tmp_path / "model.pt").read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / "model.pt").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nowhere")


def _state_and_rows():
    batch = ScenarioBatch.build([learned_scenario()])
    state = Simulator(batch, behavior=LearnedTraffic(small_model())).reset()
    return state, batch.bank, batch.map_idx, torch.zeros(2, dtype=torch.long), torch.tensor([1, 2])


def test_shipped_artifact_loads_and_names_its_held_out_scenes():
    beh = LearnedTraffic.load()
    card = beh.card
    assert (DEFAULT_ARTIFACT / "model.pt").stat().st_size < 2_000_000
    held = card["lineage"]["held_out_names"]
    assert len(held) >= 2 and set(card["lineage"]["held_out_scenes"]).isdisjoint(card["lineage"]["real_scenes"])
    assert all(any(h in name for name in card["lineage"]["held_out_scenes"]) for h in held)
    assert card["training"]["total_seconds"] < 15 * 60 and card["lineage"]["procedural"]["scenarios"] > 0
    sc = learned_scenario(duration=1.0)
    tr = run(sc, beh)
    assert np.isfinite(tr["x"]).all()


def test_mirror_tokens_match_the_mirrored_scene():
    """Twin check of the mirror augmentation: mirroring the tokens equals featurizing the
    scene reflected across the x axis (map and agents), up to the raster resolution."""
    import copy

    from shapely.affinity import scale

    from drivesim.traffic_model.tokens import mirror_tokens
    from drivesim.map.road import Lane, RoadMap

    sc = learned_scenario(seed=5)
    road = sc.road
    flip = RoadMap(road.name + "-mirror", [Lane(np.asarray(l.centerline) * [1, -1], l.width, l.speed_limit, l.successors,
                                                l.right, l.left, l.kind, l.dead_end) for l in road.lanes],
                   drivable=scale(road.drivable, 1, -1, origin=(0, 0)))
    mirror = copy.copy(sc)
    mirror.road, mirror.y, mirror.yaw = flip, -np.asarray(sc.y), -np.asarray(sc.yaw)
    toks = []
    for s in (sc, mirror):
        batch = ScenarioBatch.build([s])
        state = Simulator(batch, behavior=LearnedTraffic(small_model())).reset()
        rows, cols = (batch.init["mode"] == ControlMode.LEARNED).nonzero(as_tuple=True)
        toks.append(agent_tokens(state, batch.bank, batch.map_idx, rows, cols, TokenConfig()))
    a, b = mirror_tokens(toks[0]), toks[1]
    assert torch.equal(a.neighbours_mask, b.neighbours_mask) and torch.equal(a.lanes_mask, b.lanes_mask)
    assert torch.allclose(a.neighbours, b.neighbours, atol=1e-4)
    assert torch.allclose(a.lanes, b.lanes, atol=1e-3)
    assert torch.allclose(a.agent, b.agent, atol=0.05)  # road-edge distances from a 0.25 m raster


def test_collision_aware_sampling_brakes_behind_a_stopped_car():
    from drivesim.traffic_model.model import leader_bound, mask_unsafe

    road = build_map("straight", lanes=1, lanes_back=0)
    sc = make_scenario(road, [{"x": -50, "y": -1.75, "speed": 0.0},
                              {"x": 0, "y": -1.75, "speed": 10.0, "mode": ControlMode.LEARNED},
                              {"x": 12, "y": -1.75, "speed": 0.0, "mode": ControlMode.STATIC}], duration=2.0)
    model = small_model()
    with torch.no_grad():
        model.head[-1].bias[model.grid_accel > 1.0] = 20.0  # an untrained model that wants to speed up
    batch = ScenarioBatch.build([sc])
    beh = LearnedTraffic(model, temperature=1.0)
    sim = Simulator(batch, behavior=beh)
    state = sim.reset()
    bound = leader_bound(state, torch.tensor([0]), torch.tensor([1]), model.config.safety)
    assert float(bound) < -2.0  # 10 m/s with 7.5 m to a stopped car
    masked = mask_unsafe(torch.zeros(1, SMALL.num_actions), model.grid_accel, bound)
    assert torch.isfinite(masked).any() and (model.grid_accel[torch.isfinite(masked[0])] <= max(float(bound), -6.0)).all()
    accel, _ = beh.act(state, batch, torch.tensor([[False, True, False]]))
    assert float(accel[0, 1]) <= max(float(bound), min(SMALL.accel_bins))
    free = LearnedTraffic(model, temperature=1.0)
    free.model.config = dataclasses.replace(model.config, safety=dataclasses.replace(model.config.safety, enabled=False))
    free.reset(batch)
    assert float(free.act(state, batch, torch.tensor([[False, True, False]]))[0][0, 1]) > 1.0  # unmasked: speeds up
    model.config = dataclasses.replace(model.config, safety=dataclasses.replace(model.config.safety, enabled=True))


def test_conflict_aware_sampling_masks_paths_into_crossing_traffic():
    from drivesim.traffic_model.model import SafetyConfig, conflict_actions

    road = build_map("intersection")
    sc = make_scenario(road, [{"x": -100, "y": -100, "speed": 0.0},
                              {"x": 0, "y": 0, "speed": 10.0, "mode": ControlMode.LEARNED},
                              {"x": 12, "y": -10, "yaw": np.pi / 2, "speed": 10.0, "mode": ControlMode.STATIC},
                              {"x": -8, "y": 0, "speed": 12.0, "mode": ControlMode.STATIC}], duration=1.0)
    batch = ScenarioBatch.build([sc])
    model = small_model()
    state = Simulator(batch, behavior=LearnedTraffic(model)).reset()
    rows, cols = torch.tensor([0]), torch.tensor([1])
    hit = conflict_actions(state, rows, cols, model.grid_accel, model.grid_curvature, SafetyConfig(), 0.1)[0]
    straight_on = int(((model.grid_accel == 0) & (model.grid_curvature == 0)).nonzero())
    hard_brake = int(((model.grid_accel == min(SMALL.accel_bins)) & (model.grid_curvature == 0)).nonzero())
    assert bool(hit[straight_on]) and not bool(hit[hard_brake]) and not bool(hit.all())
    # the car right behind (agent 3, faster) is not the agent's to avoid: without the crossing car nothing is masked
    state = state.replace(valid=state.valid & (torch.arange(4) != 2))
    assert not conflict_actions(state, rows, cols, model.grid_accel, model.grid_curvature, SafetyConfig(), 0.1).any()
