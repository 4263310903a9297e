"""`evaluate --traffic` and the traffic modes a generated set records: unset keeps them; given,
it changes the background agents only, never the event agent."""

import numpy as np
import pandas as pd
import pytest

from drivesim.events.real_cut_in import RealCutInConfig, real_cut_in
from drivesim.core.types import ControlMode
from drivesim.events.generate import apply_traffic
from tests.events.test_real_trigger import logged_scene


def cut_in():
    s, _ = real_cut_in(logged_scene(), RealCutInConfig(), np.random.default_rng([0, 0]), "real-cut-in-x")
    s.meta.update({"event": "real-cut-in"})
    return s


def test_set_keeps_its_modes_unless_traffic_is_given():
    s = cut_in()
    assert s.meta["traffic"] == "hybrid" and s.mode[1] == ControlMode.REACTIVE and s.mode[2] == ControlMode.HYBRID
    kept = apply_traffic(s, None)
    assert kept.mode.tolist() == s.mode.tolist()
    replay = apply_traffic(s, "replay")
    assert replay.mode[1] == ControlMode.REACTIVE  # the cutter still runs its script
    assert replay.mode[2] == ControlMode.REPLAY and replay.mode[0] == ControlMode.POLICY
    reactive = apply_traffic(s, "reactive")
    assert reactive.mode[2] == ControlMode.REACTIVE and reactive.mode[1] == ControlMode.REACTIVE


def test_cli_default_keeps_the_recorded_modes(tmp_path):
    from drivesim.cli.commands import build_parser
    from drivesim.events.logged import logged_scenarios
    from drivesim.io.scenario_file import save_set

    s = cut_in()
    path, _ = save_set([s], pd.DataFrame({"scenario": [s.name]}), {"generator": "real-cut-in"}, tmp_path / "x.set.npz")
    args = build_parser().parse_args(["evaluate", "--scenarios", str(path)])
    assert args.traffic is None
    loaded, meta = logged_scenarios(args.scenarios, args.traffic)
    assert loaded[0].mode.tolist() == s.mode.tolist() and meta["traffic"] == "hybrid"
    loaded, meta = logged_scenarios(path, "replay")
    assert loaded[0].mode[1] == ControlMode.REACTIVE and loaded[0].mode[2] == ControlMode.REPLAY


def test_logged_scenarios_name_a_bad_path_and_list_bad_files(tmp_path):
    from drivesim.events.logged import logged_scenarios
    from drivesim.io.scenario_file import ScenarioFileError, save_scenario

    with pytest.raises(ScenarioFileError, match="nowhere"):
        logged_scenarios(tmp_path / "nowhere")
    s = cut_in()
    save_scenario(s, tmp_path / "good.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a scenario file")
    loaded, meta = logged_scenarios(tmp_path, "replay")
    assert [x.name for x in loaded] == [s.name] and meta["traffic"] == "replay"
    assert len(meta["load_errors"]) == 1 and "bad.npz" in meta["load_errors"][0]
