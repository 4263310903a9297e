"""`Simulator.step(state, action)` is a function of (state, action): the lane projection, the
held-back agents and the script triggers live on the state, nothing the step reads is kept on
the Simulator (issue 17 item 2b)."""

import dataclasses

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.events.real_cut_in import RealCutInConfig, real_cut_in
from drivesim.io.suite import build_scenarios, load_suite
from drivesim.sim.gym_env import merge_rows
from drivesim.sim.policy import IDMLaneKeeping
from drivesim.sim.simulator import Simulator, project_lanes
from tests.events.test_real_trigger import logged_scene
from tests.helpers import SUITES
from tests.sim.test_hold_back import spawn_scenario

STEPS = 60


def tensors(state) -> dict:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def assert_same(a, b, where=""):
    for name, va in tensors(a).items():
        vb = getattr(b, name)
        if torch.is_tensor(va):
            assert torch.equal(va, vb), f"{where}: field {name} differs"
        else:
            assert va == vb, f"{where}: field {name} differs"


@pytest.fixture(scope="module")
def run():
    """A batch with a triggered cut-in into a logged scene, an agent held back at its appearance
    and reactive traffic changing lanes; the states of STEPS steps under an IDM ego."""
    torch.set_num_threads(1)
    real, _ = real_cut_in(logged_scene(), RealCutInConfig(), np.random.default_rng([0, 0]), "real-cut-in-x")
    tiny = build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False)[:1]
    batch = ScenarioBatch.build([real, spawn_scenario(), *tiny])
    sim = Simulator(batch)
    policy = IDMLaneKeeping()
    policy.reset(batch)
    from drivesim.sim.observation import observe

    states, actions = [sim.reset()], []
    for _ in range(STEPS):
        actions.append(policy.act(observe(states[-1], batch)))
        states.append(sim.step(states[-1], actions[-1]))
    return sim, batch, states, actions


def test_the_run_covers_triggers_hold_back_and_lane_changes(run):
    sim, batch, states, _ = run
    assert sim.triggers.any and bool(states[-1].trigger_fired[0]), "the cut-in's trigger fires in the run"
    assert bool(states[-1].held_back[1].any()), "the spawn scenario holds an agent back"
    assert bool((states[-1].lane_change_step[2] >= 0).any()), "reactive traffic changes lanes"


def test_stepping_the_same_state_twice_gives_the_same_state(run):
    sim, _, states, actions = run
    for k in (0, 20, 40):
        assert_same(sim.step(states[k], actions[k]), sim.step(states[k], actions[k]), f"step {k}")


def test_stepping_older_states_after_newer_ones_reproduces_the_run(run):
    """Re-stepping old states (newest first, after the whole run) gives the states of the run:
    no cache, trigger or hold-back record on the Simulator changes the result."""
    sim, _, states, actions = run
    for k in reversed(range(0, STEPS, 3)):
        assert_same(sim.step(states[k], actions[k]), states[k + 1], f"re-stepping step {k}")


def test_step_does_not_change_its_input_state(run):
    sim, _, states, actions = run
    k = 30
    before = {n: v.clone() if torch.is_tensor(v) else v for n, v in tensors(states[k]).items()}
    sim.step(states[k], actions[k])
    for n, v in before.items():
        assert (torch.equal(v, getattr(states[k], n)) if torch.is_tensor(v) else v == getattr(states[k], n)), n


def test_merge_rows_restarts_projection_held_back_and_triggers(run):
    """gym_env.merge_rows (every tensor field by row) alone restarts a row: its projection,
    held-back agents and trigger are the initial state's, and stepping it gives the first step."""
    sim, batch, states, actions = run
    rows = torch.tensor([True, True, False])
    merged = merge_rows(states[-1], states[0], rows)
    for name in ("lane_s", "lane_d", "lane_seg", "lane_yaw", "held_back", "trigger_fired", "trigger_shift", "trigger_lane"):
        assert torch.equal(getattr(merged, name)[:2], getattr(states[0], name)[:2]), name
        assert torch.equal(getattr(merged, name)[2], getattr(states[-1], name)[2]), name
    action = torch.cat([actions[0][:2], actions[-1][2:]])
    out = sim.step(merged, action)
    for name, v in tensors(out).items():
        if torch.is_tensor(v) and v.dim() >= 1:
            assert torch.equal(v[:2], getattr(states[1], name)[:2]), f"restarted rows: {name}"
    assert_same(sim.step(merged, action), out, "merged state")


def test_project_lanes_recomputes_the_projection_of_chosen_rows(run):
    _, batch, states, _ = run
    rows = torch.tensor([False, True, False])
    bare = states[0].replace(lane_s=None, lane_d=None, lane_seg=None, lane_yaw=None)
    assert_same(project_lanes(bare, batch), states[0], "a state without projection")
    moved = states[-1]
    mixed = merge_rows(moved, states[0], rows).replace(lane_s=moved.lane_s, lane_d=moved.lane_d, lane_seg=moved.lane_seg,
                                                       lane_yaw=moved.lane_yaw)  # projection left stale in row 1
    fixed = project_lanes(mixed, batch, rows)
    for name in ("lane_s", "lane_d", "lane_seg", "lane_yaw"):
        assert torch.equal(getattr(fixed, name)[1], getattr(states[0], name)[1]), name
        assert torch.equal(getattr(fixed, name)[[0, 2]], getattr(moved, name)[[0, 2]]), name


def test_held_back_property_reads_the_latest_state(run):
    sim, _, states, actions = run
    out = sim.step(states[-1], actions[-1])
    assert torch.equal(sim.held_back, out.held_back)
    with pytest.raises(AttributeError):
        sim.held_back = torch.zeros_like(out.held_back)


def test_moving_agents_by_hand_drops_the_stale_projection(run):
    """A state whose positions are replaced (agents teleported by a caller) is projected afresh
    by the next step, as a state built from scratch would be, not with where the agents were."""
    sim, batch, states, actions = run
    k = 30
    moved = states[k].replace(x=states[k].x + 7.0)
    assert moved.lane_s is None and moved.lane_yaw is None
    fresh = project_lanes(moved, batch)
    assert not torch.equal(fresh.lane_s, states[k].lane_s)
    assert_same(sim.step(moved, actions[k]), sim.step(fresh, actions[k]), "teleported")
    kept = states[k].replace(speed=states[k].speed + 1.0)  # what the projection does not depend on keeps it
    assert kept.lane_s is states[k].lane_s


def test_a_float64_action_steps_as_its_float32_value(run):
    sim, _, states, actions = run
    k = 10
    assert_same(sim.step(states[k], actions[k].double()), sim.step(states[k], actions[k].float()), "float64 action")
