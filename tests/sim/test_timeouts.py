"""Time limits: a policy that hangs (a busy loop, a sleep) or is too slow becomes error rows
"timed out" for that policy and those scenarios, and the rest of the evaluation runs on."""

import time

import pytest

from drivesim.sim.evaluate import EvalConfig, evaluate
from drivesim.sim.policy import ConstantVelocity
from tests.sim.test_rollout import tiny  # noqa: F401 - the module fixture


class BusyLoop(ConstantVelocity):
    name = "busy_loop"

    def act(self, obs):
        while True:
            pass


class Sleeps(ConstantVelocity):
    name = "sleeps"

    def act(self, obs):
        time.sleep(1e9)


class HangsOn(ConstantVelocity):
    """Hangs on the scenario `target` only; swallows ordinary exceptions (the watchdog is not one)."""

    name = "hangs_on_one"

    def __init__(self, target):
        self.target = target

    def act(self, obs):
        if self.target in obs.batch.names and obs.state.step == 2:
            try:
                while True:
                    pass
            except Exception:
                pass
        return super().act(obs)


class Slow(ConstantVelocity):
    name = "slow"

    def act(self, obs):
        time.sleep(0.02)
        return super().act(obs)


def rows(ev, policy):
    return ev.results[ev.results.policy == policy].set_index("scenario")


def test_hanging_policies_become_error_rows_and_the_rest_runs(tiny):
    two = tiny[:2]
    t0 = time.perf_counter()
    ev = evaluate(two, [BusyLoop(), Sleeps(), ConstantVelocity(), HangsOn(two[1].name)],
                  config=EvalConfig(batch_size=2, step_timeout=0.3), show_progress=False)
    assert time.perf_counter() - t0 < 60
    for name in ("busy_loop", "sleeps"):
        r = rows(ev, name)
        assert list(r.status) == ["error", "error"] and r.error.str.contains("timed out after 0.3 s").all(), r.error
    assert (rows(ev, "constant_velocity").status == "ok").all()
    one = rows(ev, "hangs_on_one")
    assert one.loc[two[0].name, "status"] == "ok" and one.loc[two[1].name, "status"] == "error"
    assert "step 2" in one.loc[two[1].name, "error"] and "timed out" in one.loc[two[1].name, "error"]


def test_scenario_time_limit_and_off_switch(tiny):
    ev = evaluate(tiny[:1], [Slow()], config=EvalConfig(batch_size=1, scenario_timeout=0.3), show_progress=False)
    assert ev.results.status[0] == "error" and "scenario time limit of 0.3 s" in ev.results.error[0]
    short = [s.__class__(**{**s.__dict__, "duration": 1.0}) for s in tiny[:1]]
    ev = evaluate(short, [Slow()], config=EvalConfig(step_timeout=0, scenario_timeout=0), show_progress=False)
    assert ev.results.status[0] == "ok"
    with pytest.raises(ValueError, match="step_timeout"):
        evaluate(tiny[:1], [Slow()], config=EvalConfig(step_timeout=-1), show_progress=False)


@pytest.mark.slow
def test_cli_step_timeout(tmp_path):
    """`evaluate --step-timeout`: the hanging policy's rows are errors, the expert's are written."""
    import pandas as pd

    from drivesim.cli import main

    out = tmp_path / "ev"
    try:
        main(["evaluate", "--suite", "tiny", "--limit", "2", "--policies", "tests.sim.test_timeouts:Sleeps",
              "--step-timeout", "0.5", "--no-video", "-o", str(out)])
    except SystemExit:
        pass  # exit codes are another change's business: only the rows are checked here
    res = pd.read_csv(out / "results.csv")
    assert (res[res.policy == "sleeps"].status == "error").all() and len(res[res.policy == "sleeps"]) == 2
    assert (res[res.policy == "pdm_expert"].status == "ok").all()
    with pytest.raises(SystemExit, match="step_timeout"):
        main(["evaluate", "--suite", "tiny", "--step-timeout", "-1", "-o", str(out)])
