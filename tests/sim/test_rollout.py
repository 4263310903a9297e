"""Rollouts: bad policy output fails only the rows it concerns, with a clear reason; a policy
that raises is isolated per scenario by `evaluate`; malformed scenarios become error rows; the
same inputs give bit-identical rollouts and metrics."""

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.io.suite import build_scenarios, load_suite
from drivesim.sim.evaluate import EvalConfig, evaluate
from drivesim.sim.policy import ConstantVelocity, IDMLaneKeeping
from drivesim.sim.rollout import rollout
from tests.helpers import SUITES


@pytest.fixture(scope="module")
def tiny():
    return build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False)


class BadRow(IDMLaneKeeping):
    """IDM, except that row `row` gets `value`."""

    def __init__(self, row, value):
        super().__init__()
        self.row, self.value, self.name = row, value, "bad_row"

    def act(self, obs):
        a = super().act(obs).clone()
        if obs.state.step == 3 and obs.batch_size > self.row:
            a[self.row] = torch.tensor(self.value)
        return a


@pytest.mark.parametrize("value, cause", [((float("nan"), 0.0), "non-finite"), ((30.0, 0.0), "outside the action space"),
                                          ((0.0, 2.0), "outside the action space")])
def test_bad_action_fails_only_its_scenario(tiny, value, cause):
    batch = ScenarioBatch.build(tiny)
    res = rollout(batch, BadRow(1, value))
    assert res.status == ["ok", "error", "ok", "ok"]
    assert cause in res.errors[1] and tiny[1].name in res.errors[1] and "step 3" in res.errors[1]
    assert np.isnan(res.metrics["pdms"][1]) and np.isfinite(res.metrics["pdms"][[0, 2, 3]]).all()


class WrongShape(ConstantVelocity):
    name = "wrong_shape"

    def act(self, obs):
        return torch.zeros(obs.batch_size, 3)


def test_wrong_action_shape_is_reported(tiny):
    res = rollout(ScenarioBatch.build(tiny[:2]), WrongShape())
    assert res.status == ["error", "error"] and "expected a float tensor [2, 2]" in res.errors[0]


class RaisesOnMerge(ConstantVelocity):
    name = "raises_on_merge"

    def reset(self, batch):
        self.merge = ["merge" in n for n in batch.names]

    def act(self, obs):
        if any(self.merge):
            raise RuntimeError("cannot drive merges")
        return super().act(obs)


def test_policy_that_raises_is_isolated_per_scenario(tiny):
    ev = evaluate(tiny, [RaisesOnMerge()], config=EvalConfig(batch_size=4), show_progress=False)
    rows = ev.results.set_index("scenario")
    assert (rows["status"] == "error").sum() == 1
    bad = rows.loc[[n for n in rows.index if "merge" in n][0]]
    assert "RuntimeError: cannot drive merges" in bad["error"]
    assert rows[rows["status"] == "ok"]["pdms"].notna().all()


def test_malformed_scenario_is_an_error_row_and_others_run(tiny):
    import copy

    broken = copy.copy(tiny[0])
    broken.name = "broken"
    broken.speed = np.asarray(broken.speed)[:-1]  # one value short
    ev = evaluate([broken] + tiny[1:], [ConstantVelocity()], show_progress=False)
    rows = ev.results.set_index("scenario")
    assert rows.loc["broken", "status"] == "error" and "'speed' must have shape" in rows.loc["broken", "error"]
    assert (rows.drop("broken")["status"] == "ok").all() and len(rows) == 4


def test_same_inputs_give_identical_rollouts_and_metrics(tiny):
    runs = [rollout(ScenarioBatch.build(tiny), IDMLaneKeeping(), record=True) for _ in range(2)]
    for k in runs[0].trajectory:
        assert np.array_equal(runs[0].trajectory[k], runs[1].trajectory[k]), k
    for k in runs[0].metrics:
        assert np.array_equal(runs[0].metrics[k], runs[1].metrics[k], equal_nan=True), k


class Counting(ConstantVelocity):
    name = "counting"

    def reset(self, batch):
        self.calls = 0

    def act(self, obs):
        self.calls += 1
        return super().act(obs)


def test_policy_rate_is_separate_from_simulation_rate(tiny):
    policy = Counting()
    batch = ScenarioBatch.build(tiny[:1])
    rollout(batch, policy, policy_every=5)
    assert policy.calls == batch.max_steps // 5
    with pytest.raises(ValueError, match="policy_every"):
        rollout(batch, policy, policy_every=0)


def test_evaluate_runs_a_policy_at_its_own_decision_rate(tiny):
    """A policy that declares `policy_every` (an RL checkpoint trained at that rate) is evaluated at
    it; others at EvalConfig.policy_every."""
    own, default = Counting(), Counting()
    own.policy_every, own.name, default.name = 5, "own", "default"
    evaluate(tiny[:1], [own, default], config=EvalConfig(keep_failure_trajectories=False), show_progress=False)
    steps = ScenarioBatch.build(tiny[:1]).max_steps
    assert default.calls == steps and own.calls == steps // 5


@pytest.mark.parametrize("value, cause", [((float("nan"), 0.0), "non-finite"), ((30.0, 0.0), "outside the action space"),
                                          ((0.0, -2.0), "outside the action space"), ((float("inf"), 0.0), "non-finite")])
def test_simulator_step_rejects_bad_actions_for_every_caller(tiny, value, cause):
    """Called directly (Python API, trainers), Simulator.step neither clamps an out-of-range action
    nor turns a NaN action into a NaN state: it raises, naming the scenario, step and values."""
    from drivesim.sim.simulator import ActionError, Simulator

    batch = ScenarioBatch.build(tiny[:2])
    sim = Simulator(batch)
    state = sim.step(sim.reset(), torch.zeros(2, 2))
    action = torch.zeros(2, 2)
    action[1] = torch.tensor(value)
    with pytest.raises(ActionError, match=cause) as info:
        sim.step(state, action)
    assert repr(tiny[1].name) in str(info.value) and "step 1" in str(info.value) and tiny[0].name not in str(info.value)
    with pytest.raises(ActionError, match="expected a float tensor"):
        sim.step(state, torch.zeros(2, 3))


def test_action_check_keeps_valid_rollouts_and_bounds_exact(tiny):
    """Actions at the bounds pass; valid rollouts are unchanged by the check (same as two runs)."""
    from drivesim.sim.policy import ACTION_HIGH, ACTION_LOW
    from drivesim.sim.simulator import Simulator

    batch = ScenarioBatch.build(tiny[:2])
    sim = Simulator(batch)
    state = sim.step(sim.reset(), torch.stack([ACTION_LOW, ACTION_HIGH]))
    assert torch.isfinite(state.x).all()
    a, b = rollout(batch, IDMLaneKeeping(), record=True), rollout(batch, IDMLaneKeeping(), record=True)
    assert all(np.array_equal(a.trajectory[k], b.trajectory[k]) for k in a.trajectory)
