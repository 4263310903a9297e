"""Rare-event generators: the avoidability bound, knobs, determinism, calibration and labels."""

import numpy as np
import pytest
import torch

from drivesim.events import EVENTS, CutInConfig, HardBrakeConfig, build_event, sample_params
from drivesim.events.common import closing_distance, required_decel, ttc_bound_closed_form
from drivesim.core.config import ConfigError, apply_overrides
from drivesim.core.types import ControlMode
from drivesim.io.scenario_file import scenario_hash
from drivesim.events.generate import LabelConfig, generate_set

FAST = LabelConfig(expert_check=False, workers=1)


def test_bound_matches_reference_closed_form():
    """REFERENCE.md: avoidable by braking iff TTC > rho + dv / (2 b_max) for a constant-speed cutter."""
    dv = np.array([1.0, 5.0, 10.0, 15.0])
    v_e = 25.0
    gap = closing_distance(v_e, v_e - dv, 0.0, 0.0, 6.0, 0.3)
    np.testing.assert_allclose(gap / dv, ttc_bound_closed_form(dv, 0.3, 6.0), atol=0.01)
    np.testing.assert_allclose(ttc_bound_closed_form([10.0, 5.0], 0.3, 6.0), [1.133, 0.717], atol=1e-3)  # REFERENCE's examples


def test_required_decel_is_the_bound_inverted():
    gap = closing_distance(20.0, 12.0, 2.0, 1.5, 5.0, 0.3)
    assert required_decel(gap + 1e-3, 20.0, 12.0, 2.0, 1.5, 0.3)[0] == pytest.approx(5.0, abs=0.05)
    assert np.isinf(required_decel(np.array([0.5]), 20.0, 0.0, 0.0, 0.0, 0.3)[0])  # gone within the reaction time
    # a braking cutter needs more braking than a steady one at the same gap
    assert required_decel(10.0, 20.0, 15.0, 3.0, 2.0, 0.3)[0] > required_decel(10.0, 20.0, 15.0, 0.0, 0.0, 0.3)[0]


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_each_event_builds_valid_deterministic_scenarios(event):
    cfg = EVENTS[event].config()
    a = sample_params(event, cfg, seed=3, n=6)
    b = sample_params(event, cfg, seed=3, n=9)[:6]  # scenario i does not depend on the set size
    assert a == b
    for i, p in enumerate(a):
        s1, s2 = build_event(event, p, cfg, 3, i), build_event(event, p, cfg, 3, i)
        s1.validate()
        assert scenario_hash(s1) == scenario_hash(s2)
        assert s1.mode[0] == ControlMode.POLICY and s1.meta["event"] == event
    assert sample_params(event, cfg, seed=4, n=1) != a[:1]


def test_bad_knobs_are_clear_errors():
    with pytest.raises(ConfigError, match="ttc"):
        apply_overrides(CutInConfig(), {"ttc": (2.0, 1.0)}, where="cut_in")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(CutInConfig(), {"tcc": (1.0, 2.0)}, where="cut_in")
    with pytest.raises(ConfigError, match="side"):
        apply_overrides(CutInConfig(), {"side": "up"}, where="cut_in")
    with pytest.raises(ConfigError, match="decel"):
        apply_overrides(HardBrakeConfig(), {"decel": (0.0, 20.0)}, where="hard_brake")


def test_cut_in_happens_at_the_requested_ttc_and_gap():
    """Calibration by simulation: the cutter's box crosses the line at the target step, gap and TTC."""
    es = generate_set("cut-in", 16, seed=5, label=FAST, show_progress=False)
    t = es.table
    assert t["event_happened"].all() and t["feasible"].all()
    np.testing.assert_allclose(t["gap"], t["knob_target_gap"], atol=0.5)
    np.testing.assert_allclose(t["ttc_at_event"], t["knob_target_ttc"], atol=0.15)
    assert (t["no_reaction_collision"]).mean() > 0.8  # keeping speed into a slower cutter collides


def test_band_targets_the_avoidability_bound():
    cfg = apply_overrides(CutInConfig(), {"band": (0.3, 1.0), "cutter_brake": (0.0, 0.0)}, where="cut_in")
    es = generate_set("cut-in", 12, seed=2, config=cfg, label=FAST, show_progress=False)
    t = es.table
    above = t["ttc_at_event"] - t["knob_bound_ttc"]
    assert (above > 0.2).all() and (above < 1.1).all()
    assert t["bound_avoidable"].all()
    below = generate_set("cut-in", 8, seed=2, config=apply_overrides(cfg, {"band": (-0.6, -0.3)}), label=FAST,
                         show_progress=False)
    assert not below.table["bound_avoidable"].any()


@pytest.mark.parametrize("event", ["hard-brake", "stalled", "merge", "pedestrian"])
def test_other_events_happen_and_are_measured(event):
    es = generate_set(event, 8, seed=1, label=FAST, show_progress=False)
    t = es.table
    assert t["event_happened"].all(), t
    assert t["feasible"].all()
    assert np.isfinite(t["gap"]).all()
    if event == "hard-brake":
        np.testing.assert_allclose(t["headway_at_event"], t["knob_target_headway"], atol=0.05)
    if event in ("stalled", "pedestrian"):
        np.testing.assert_allclose(t["gap"], t["knob_target_gap"], atol=1.0)
    if event == "merge":
        np.testing.assert_allclose(t["ttc_at_event"], t["knob_target_ttc"], atol=0.15)


@pytest.mark.slow
def test_expert_solves_avoidable_cut_ins_and_constant_velocity_does_not():
    torch.manual_seed(0)
    cfg = apply_overrides(CutInConfig(), {"band": (0.3, 1.5)}, where="cut_in")
    es = generate_set("cut-in", 40, seed=11, config=cfg, label=LabelConfig(workers=1), show_progress=False)
    t = es.table
    assert t["bound_avoidable"].all()
    assert t["expert_solved"].mean() >= 0.9, t[["ttc_at_event", "expert_solved"]]
    assert t["no_reaction_collision"].mean() >= 0.8


@pytest.mark.data
@pytest.mark.slow
def test_real_scene_cut_in(data_dir):
    """A logged nuScenes vehicle next to the ego's route is rewritten into a cut-in: it replays
    its log until it is released, then waits for the simulated ego (sim/triggers.py); the event
    is measured and labelled with a constant-velocity ego, and the label is what that policy gets
    in closed loop (`evaluate` with that set's no-reaction policy, its traffic modes kept)."""
    from drivesim.events.real_cut_in import RealCutInConfig, candidates, real_cut_in
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.io import scenarionet
    from drivesim.sim.evaluate import EvalConfig, evaluate
    from drivesim.events.generate import apply_traffic, generate_real_set
    from drivesim.sim.expert import PDMClosed
    from drivesim.sim.policy import ConstantVelocity, LaneConstantSpeed
    from drivesim.sim.rollout import rollout

    scenes, _ = scenarionet.load(data_dir / "scenarionet_nuscenes")
    scene = next(s for s in scenes if s.name.endswith("0796"))
    assert candidates(scene, 1.0, 0.7, RealCutInConfig())
    made, p = real_cut_in(scene, RealCutInConfig(), np.random.default_rng(0), "x")
    made.validate()
    assert made.mode[1] == ControlMode.REACTIVE and made.meta["source_agent"] == p["agent"]
    np.testing.assert_array_equal(made.log[1], scene.log[p["agent"]])  # the cutter is agent 1 now
    es = generate_real_set([scene], 3, seed=0, label=FAST, show_progress=False)
    t = es.table
    s = es.scenarios[0]
    res = rollout(ScenarioBatch.build([s]), ConstantVelocity(), record=True)
    k = s.meta["script_trigger"]["release"]  # until its release the cutter is exactly on its log
    np.testing.assert_allclose(res.trajectory["x"][1 : k + 1, 0, 1], s.log[1, 1 : k + 1, 0], atol=1e-3)
    kept = [apply_traffic(x, None) for x in es.scenarios]
    assert [x.mode.tolist() for x in kept] == [x.mode.tolist() for x in es.scenarios]
    assert (t["no_reaction_policy"] == LaneConstantSpeed.name).all()
    ev = evaluate(kept, [LaneConstantSpeed()], config=EvalConfig(batch_size=2), show_progress=False)
    collided = ev.results.set_index("scenario").loc[t["scenario"], "collision_any"].to_numpy() > 0
    np.testing.assert_array_equal(collided, t["no_reaction_collision"].to_numpy())
    # the no-reaction ego keeps its lane on this curving road and meets the cut-in (constant
    # (accel, steer) drifts out of its lane first), and so does the expert
    assert t["event_happened"].all() and t["no_reaction_collision"].any(), t
    # the expert, which keeps its lane, meets the cut-in
    fired = rollout(ScenarioBatch.build(es.scenarios), PDMClosed(), policy_every=2).extra["trigger_step"]
    assert (fired >= 0).sum() >= 2, fired
