"""Training results table: bootstrap intervals, overlap warnings, table and chart."""

import numpy as np

from drivesim.io.scenario_file import scenario_hash
from drivesim.io.suite import build_scenarios, load_suite
from drivesim.sim.policy import ConstantVelocity, IDMLaneKeeping
from drivesim.train.results_table import bootstrap_ci, evaluate_variants, format_table, overlap_warnings, plot
from tests.helpers import SUITES


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_data():
    rng = np.random.default_rng(0)
    small = rng.random((20, 3)) < 0.3
    big = rng.random((2000, 3)) < 0.3
    m, lo, hi = bootstrap_ci(small)
    M, LO, HI = bootstrap_ci(big)
    assert lo <= m <= hi and LO <= M <= HI
    assert HI - LO < hi - lo
    assert abs(M - 0.3) < 0.03
    assert bootstrap_ci(np.ones((5, 2))) == (1.0, 1.0, 1.0)


def test_overlap_with_training_scenarios_is_warned():
    scenarios = build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False)
    card = {"training_scenarios": {scenarios[1].name: scenario_hash(scenarios[1])}}
    warn = overlap_warnings("il seed 0", card, {"nominal": scenarios})
    assert len(warn) == 1 and "1 of" in warn[0] and scenarios[1].name in warn[0]
    assert overlap_warnings("il seed 0", {}, {"nominal": scenarios}) == []


def test_variants_table_and_chart(tmp_path):
    scenarios = build_scenarios(load_suite(SUITES / "tiny.yaml"), progress=False)
    rep = evaluate_variants({"cv": [ConstantVelocity(), ConstantVelocity()], "idm": [IDMLaneKeeping()]}, {"tiny": scenarios})
    t = rep.table.set_index("variant")
    assert set(t.index) == {"cv", "idm", "expert (reference)"}
    assert t.loc["cv", "seeds"] == 2 and t.loc["idm", "seeds"] == 1
    assert (t["success_lo"] <= t["success"]).all() and (t["success"] <= t["success_hi"]).all()
    assert "| cv |" in format_table(rep.table)
    assert plot(rep.table, tmp_path / "bars.png").stat().st_size > 5000
