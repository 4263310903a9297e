"""`evaluate --traffic` and the traffic modes a generated set records: unset keeps them; given,
it changes the background agents only, never the event agent."""

import argparse

import numpy as np
import pandas as pd

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
    from drivesim.cli.main import build_parser, logged_source
    from drivesim.io.scenario_file import save_set

    s = cut_in()
    path, _ = save_set([s], pd.DataFrame({"scenario": [s.name]}), {"generator": "real-cut-in"}, tmp_path / "x.set.npz")
    args = build_parser().parse_args(["evaluate", "--scenarios", str(path)])
    assert args.traffic is None
    loaded, meta = logged_source(args)
    assert loaded[0].mode.tolist() == s.mode.tolist() and meta["traffic"] == "hybrid"
    loaded, meta = logged_source(argparse.Namespace(scenarios=str(path), traffic="replay"))
    assert loaded[0].mode[1] == ControlMode.REACTIVE and loaded[0].mode[2] == ControlMode.REPLAY
