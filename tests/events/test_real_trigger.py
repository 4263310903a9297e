"""Cut-ins rewritten into logged scenes start relative to the simulated ego (sim/triggers.py):
whatever the ego does, the cutter enters its lane at the sampled TTC, and the no-reaction label
is what a constant-velocity ego gets in closed loop."""

import numpy as np
import pytest
import torch

from drivesim.events.real_cut_in import RealCutInConfig
from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.types import AgentType, ControlMode
from drivesim.map import build_map
from drivesim.sim.evaluate import EvalConfig, evaluate
from drivesim.events.generate import LabelConfig, generate_real_set
from drivesim.sim.policy import ConstantVelocity, LaneConstantSpeed
from drivesim.sim.rollout import rollout

FAST = LabelConfig(expert_check=False, workers=1)
LANE_W = 3.6


def logged_scene() -> Scenario:
    """A straight two-lane road: the logged ego brakes from 15 to 9 m/s (a human reacting), a
    vehicle 55 m ahead in the next lane holds 11 m/s, another one far behind."""
    road = build_map("straight", lanes=2, lanes_back=0)  # lane 0 at y -1.8, lane 1 at y -5.4
    T, dt = 200, 0.1
    t = np.arange(T + 1) * dt
    v_ego = np.maximum(15.0 - 2.0 * t, 9.0)
    x_ego = 5.0 + np.concatenate([[0.0], np.cumsum(0.5 * (v_ego[1:] + v_ego[:-1]) * dt)])
    track = lambda x, y, v: np.stack([x, np.full_like(t, y), np.zeros_like(t), np.broadcast_to(v, t.shape)], -1)
    log = np.stack([track(x_ego, -1.8, v_ego), track(60 + 11.0 * t, -5.4, 11.0), track(-100 + 15.0 * t, -1.8, 15.0)])
    return Scenario(name="synthetic", road=road, x=log[:, 0, 0].copy(), y=log[:, 0, 1].copy(), yaw=log[:, 0, 2].copy(),
                    speed=log[:, 0, 3].copy(), length=np.full(3, 4.5), width=np.full(3, 1.9),
                    agent_type=np.full(3, int(AgentType.VEHICLE)),
                    mode=np.array([int(ControlMode.POLICY)] + [int(ControlMode.REPLAY)] * 2),
                    desired_speed=np.full(3, 15.0), route=[0], duration=T * dt, log=log, log_valid=np.ones((3, T + 1), bool))


class Cruise:
    """Speeds up or brakes at 1.5 m/s^2 to `target` m/s, then holds it (an ego unlike the logged one)."""

    def __init__(self, target):
        self.target, self.name = target, f"cruise_{target:g}"

    def reset(self, batch):
        pass

    def act(self, obs):
        v = obs.state.speed[:, 0]
        accel = torch.where(v > self.target + 0.1, -1.5, torch.where(v < self.target - 0.1, 1.5, 0.0))
        return torch.stack([accel, torch.zeros_like(v)], -1)


def entry(traj) -> tuple[int, float]:
    """(step, TTC) when the cutter's box first overlaps the ego's lane (straight road along x)."""
    y, x, v, yaw = traj["y"][:, 0], traj["x"][:, 0], traj["speed"][:, 0], traj["yaw"][:, 0, 1]
    across = 2.25 * np.abs(np.sin(yaw)) + 0.95 * np.abs(np.cos(yaw))  # the cutter's half extent across the road
    inside = np.abs(y[:, 1] + 1.8) - across < LANE_W / 2
    k = int(np.argmax(inside)) if inside.any() else -1
    if k < 0:
        return -1, float("nan")
    gap = x[k, 1] - 2.25 - (x[k, 0] + 2.25)
    return k, gap / (v[k, 0] - v[k, 1])


@pytest.fixture(scope="module")
def cut_ins():
    return generate_real_set([logged_scene()], 3, seed=0, config=RealCutInConfig(), label=FAST, show_progress=False)


@pytest.mark.slow
def test_cut_in_meets_the_simulated_ego_at_the_sampled_ttc(cut_ins):
    """The constant-velocity ego (15 m/s), a slower (13.5 m/s) and a faster one (17 m/s) each meet
    the cut-in at the target TTC; a script started at a fixed step would meet them at very
    different ones (or not at all)."""
    assert len(cut_ins.scenarios) == 3
    batch = ScenarioBatch.build(cut_ins.scenarios)
    for policy in (ConstantVelocity(), Cruise(13.5), Cruise(17.0)):
        res = rollout(batch, policy, record=True)
        for b, s in enumerate(cut_ins.scenarios):
            target = s.meta["params"]["target_ttc"]
            k, ttc = entry({key: v[:, b : b + 1] for key, v in res.trajectory.items()})
            assert k > 0 and abs(ttc - target) < 0.35, (s.name, policy.name, k, ttc, target)


@pytest.mark.slow
def test_no_reaction_label_holds_for_its_policy_in_closed_loop(cut_ins):
    t = cut_ins.table
    assert t["event_happened"].all()
    assert (t["no_reaction_policy"] == "lane_constant_speed").all() and cut_ins.header["no_reaction_policy"] == "lane_constant_speed"
    np.testing.assert_allclose(t["ttc_at_event"], t["knob_target_ttc"], atol=0.35)
    ev = evaluate(cut_ins.scenarios, [LaneConstantSpeed()], config=EvalConfig(batch_size=3), show_progress=False)
    collided = ev.results.set_index("scenario").loc[t["scenario"], "collision_any"].to_numpy() > 0
    assert t["no_reaction_collision"].any()
    np.testing.assert_array_equal(collided, t["no_reaction_collision"].to_numpy())


def test_malformed_trigger_is_an_error_row_naming_the_field():
    s = logged_scene()
    s.meta = {"script_trigger": {"agent": 1, "start": 10, "span": 5, "accel": 0.0, "ttc": "soon", "min_gap": 1.0}}
    ev = evaluate([s], [ConstantVelocity()], show_progress=False)
    assert ev.results.status[0] == "error"
    assert "'synthetic': meta.script_trigger.ttc: expected a finite number, got 'soon'" in ev.results.error[0]


@pytest.mark.slow
def test_generate_counts_and_names_only_scenes_that_gave_none():
    from drivesim.events.real_cut_in import real_set_counts

    good, empty = logged_scene(), logged_scene()
    empty.name = "no-neighbour"
    empty.log = empty.log.copy()
    empty.log[1, :, 1] = -1.8  # the vehicle beside the route moves into the ego's lane, behind nobody
    empty.log[1, :, 0] -= 200.0
    empty.x, empty.y = empty.log[:, 0, 0].copy(), empty.log[:, 0, 1].copy()
    es = generate_real_set([good, empty], 2, seed=0, config=RealCutInConfig(insert=False), label=FAST, show_progress=False)
    h = es.header
    assert h["n"] == 1 and h["requested"] == 2 and h["skipped_scenes"] == ["no-neighbour"]
    assert h["attempts"] == {"synthetic": {"tried": 1, "made": 1}, "no-neighbour": {"tried": 1, "made": 0}}
    text = real_set_counts(h)
    named = next(line for line in text.splitlines() if line.startswith("scenes with no vehicle"))
    assert "made 1 of 2 requested" in text and "no-neighbour 0/1" in text and "synthetic" not in named
    assert h["skipped_reasons"] == {"no-neighbour": "no logged vehicle can cut in"}  # insert=False: no car inserted


def no_neighbour_scene() -> Scenario:
    """The logged scene with its neighbour moved into the ego's lane, far behind: no logged vehicle can cut in."""
    s = logged_scene()
    s.name = "no-neighbour"
    s.log = s.log.copy()
    s.log[1, :, 1] = -1.8
    s.log[1, :, 0] -= 200.0
    s.x, s.y = s.log[:, 0, 0].copy(), s.log[:, 0, 1].copy()
    return s


def test_a_car_is_inserted_beside_the_route_where_no_logged_vehicle_can_cut_in():
    from drivesim.events.real_cut_in import candidates, plan_cut_in, retime

    scene = no_neighbour_scene()
    cfg = RealCutInConfig()
    assert not candidates(scene, 1.0, 0.7, cfg)
    assert plan_cut_in(scene, RealCutInConfig(insert=False), np.random.default_rng([0, 0])) is None
    source, p = plan_cut_in(scene, cfg, np.random.default_rng([0, 0]))
    new = scene.num_agents
    assert p["cutter"] == "inserted" and p["agent"] == new and source.num_agents == new + 1
    assert source.agent_type[new] == AgentType.VEHICLE and (source.length[new], source.width[new]) == (4.6, 1.9)
    shown = source.log_valid[new]
    t0 = int(np.argmax(shown))
    assert t0 >= 10 and shown[t0:].all() and not shown[:t0].any()
    track = source.log[new, t0:]
    np.testing.assert_allclose(track[:, 1], -5.4, atol=1e-6)  # in the lane next to the route, along it
    assert track[0, 0] > scene.log[0, t0, 0] + 10  # ahead of the ego
    others = source.log[1:new, t0:, :2]
    assert (np.linalg.norm(others - track[None, :, :2], axis=-1) > 5).all()  # clear of the logged agents
    made, _ = retime(source, p, p["cross"] - p["start"], cfg, "inserted")
    made.validate()
    assert made.meta["source_agent"] == new and made.mode[1] == ControlMode.REACTIVE


@pytest.mark.slow
def test_inserted_cutter_meets_the_lane_keeping_ego_and_its_label_holds():
    es = generate_real_set([no_neighbour_scene()], 2, seed=0, label=FAST, show_progress=False)
    t = es.table
    assert es.header["inserted_cutters"] == 2 and (t["knob_cutter"] == "inserted").all()
    assert t["event_happened"].all()
    np.testing.assert_allclose(t["ttc_at_event"], t["knob_target_ttc"], atol=0.35)
    ev = evaluate(es.scenarios, [LaneConstantSpeed()], config=EvalConfig(batch_size=2), show_progress=False)
    collided = ev.results.set_index("scenario").loc[t["scenario"], "collision_any"].to_numpy() > 0
    np.testing.assert_array_equal(collided, t["no_reaction_collision"].to_numpy())
