"""Bad data is an error naming the file, scenario and field, or a mask where the source says so
(issue 14 item 4): non-finite logs, NaN speed limits, an ego off its route or past its end, a
backwards road, duplicate scenario names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioError
from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.core.types import ControlMode
from drivesim.io.scenario_file import ScenarioFileError, _arrays, _digest, _header, load_scenario, load_scenarios
from drivesim.map import build_map
from drivesim.map.road import Lane, MapError, RoadMap
from drivesim.sim.evaluate import evaluate
from drivesim.sim.policy import ConstantVelocity

torch.set_num_threads(1)


def logged(name: str = "log/a"):
    """A 2 s straight-road scenario whose agents replay a constant-velocity log (the ego has one too)."""
    road = build_map("straight", lanes=2, lanes_back=1, length=300.0)
    sc = procedural_scenario(road, TrafficConfig(density=1.0, duration=2.0), seed=1, name=name)
    t = np.arange(sc.num_steps + 1) * sc.dt
    log = np.zeros((sc.num_agents, sc.num_steps + 1, 4))
    log[..., 0] = sc.x[:, None] + sc.speed[:, None] * np.cos(sc.yaw[:, None]) * t
    log[..., 1] = sc.y[:, None] + sc.speed[:, None] * np.sin(sc.yaw[:, None]) * t
    log[..., 2], log[..., 3] = sc.yaw[:, None], sc.speed[:, None]
    sc.log, sc.log_valid = log, np.ones(log.shape[:2], bool)
    sc.mode = np.where(np.arange(sc.num_agents) == 0, int(ControlMode.POLICY), int(ControlMode.REPLAY))
    assert sc.num_agents >= 2
    return sc


def write_unchecked(sc, path):
    """Write a scenario file as a foreign tool could: a valid format and hash, no validation."""
    arrays, header = _arrays(sc), _header(sc)
    header["content_hash"] = _digest(arrays, header)
    np.savez_compressed(path, header=np.array(json.dumps(header, default=str)), **arrays)
    return path


def test_non_finite_log_step_of_an_agent_is_masked_invalid(tmp_path):
    sc = logged("log/nan_agent")
    sc.log[1, 5:9, 0] = np.nan  # marked valid in the file
    sc.log[1, 12, 3] = np.inf
    back = load_scenario(write_unchecked(sc, tmp_path / "nan_agent.npz"))
    assert not back.log_valid[1, 5:9].any() and not back.log_valid[1, 12]
    assert back.log_valid[1, :5].all() and back.log_valid[1, 9:12].all() and back.log_valid[0].all()
    assert np.isfinite(back.log).all()
    assert back.meta["log_masked_steps"] == 5
    assert np.array_equal(back.log[1, :5], sc.log[1, :5])  # the valid steps are untouched


def test_non_finite_ego_log_is_an_error_naming_file_scenario_and_field(tmp_path):
    sc = logged("log/nan_ego")
    sc.log[0, 10:, 0] = np.nan
    with pytest.raises(ScenarioFileError, match=r"nan_ego\.npz: scenario 'log/nan_ego': field 'log' of the ego .* step 10"):
        load_scenario(write_unchecked(sc, tmp_path / "nan_ego.npz"))
    sc.log_valid[0, 10:] = False  # where the source says the step is invalid, the value does not matter
    assert np.isfinite(load_scenario(write_unchecked(sc, tmp_path / "ok.npz")).log).all()


def test_nan_lane_speed_limit_is_an_error(tmp_path):
    sc = logged("log/nan_speed")
    for lane in sc.road.lanes:
        lane.speed_limit = float("nan")
    with pytest.raises(ScenarioFileError, match=r"nan_speed\.npz: map 'straight' lane 0: field 'speed_limit' is nan"):
        load_scenario(write_unchecked(sc, tmp_path / "nan_speed.npz"))
    with pytest.raises(MapError, match="speed_limit"):
        RoadMap("m", [Lane(np.array([[0.0, 0.0], [10.0, 0.0]]), speed_limit=0.0)])


def test_ego_far_from_its_route_is_an_error(tmp_path):
    sc = logged("log/far")
    sc.y = sc.y.copy()
    sc.y[0] += 500.0
    sc.log[0, :, 1] += 500.0
    with pytest.raises(ScenarioFileError, match=r"far\.npz: scenario 'log/far': field 'x'/'y' of the ego .* 500\.0 m from its route"):
        load_scenario(write_unchecked(sc, tmp_path / "far.npz"))


def test_ego_past_the_end_of_its_route_is_an_error(tmp_path):
    sc = logged("log/past_end")
    sc.x = sc.x.copy()
    lane = sc.road.lanes[sc.route[-1]]
    sc.x[0], sc.y[0] = lane.centerline[-1] + (lane.centerline[-1] - lane.centerline[-2]) / lane.length * 0.5
    sc.log[0, :, :2] = (sc.x[0], sc.y[0])
    with pytest.raises(ScenarioFileError, match=r"scenario 'log/past_end': the ego starts .* before the end of its route"):
        load_scenario(write_unchecked(sc, tmp_path / "past_end.npz"))


def test_infinite_script_value_is_an_error(tmp_path):
    sc = logged("log/script")
    sc.script_accel = np.full((sc.num_agents, sc.num_steps), np.nan)
    sc.script_accel[1, 3] = np.inf
    with pytest.raises(ScenarioFileError, match="script_accel"):
        load_scenario(write_unchecked(sc, tmp_path / "script.npz"))


def test_a_bad_file_does_not_stop_the_others(tmp_path):
    write_unchecked(logged("log/good"), tmp_path / "good.npz")
    bad = logged("log/bad")
    bad.log[0, 3, 1] = np.nan
    write_unchecked(bad, tmp_path / "bad.npz")
    good, errors = load_scenarios(tmp_path)
    assert [s.name for s in good] == ["log/good"]
    assert len(errors) == 1 and "bad.npz" in errors[0] and "'log'" in errors[0]


def test_duplicate_scenario_names_are_rejected_naming_names_and_files(tmp_path):
    sc = logged("log/dup")
    write_unchecked(sc, tmp_path / "dup1.npz")
    write_unchecked(sc, tmp_path / "dup2.npz")
    scenarios, errors = load_scenarios(tmp_path)
    assert len(scenarios) == 2 and not errors
    with pytest.raises(ScenarioError, match=r"duplicate scenario names .*'log/dup' in dup1\.npz, dup2\.npz"):
        evaluate(scenarios, [ConstantVelocity()], show_progress=False)


def test_cli_rejects_duplicate_names_before_running(tmp_path, capsys):
    from drivesim.cli import main

    sc = logged("log/dup")
    write_unchecked(sc, tmp_path / "dup1.npz")
    write_unchecked(sc, tmp_path / "dup2.npz")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--scenarios", str(tmp_path), "--policies", "constant_velocity", "--no-video",
              "-o", str(tmp_path / "out")])
    assert "duplicate scenario names" in str(e.value) and "dup1.npz, dup2.npz" in str(e.value)
    assert not (tmp_path / "out" / "results.jsonl").exists()  # nothing ran, nothing was truncated
