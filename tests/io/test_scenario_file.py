import numpy as np
import pytest

from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
from drivesim.io.scenario_file import ScenarioFileError, load_scenario, load_scenarios, save_scenario, scenario_hash
from drivesim.map import build_map


@pytest.fixture()
def scenario():
    sc = procedural_scenario(build_map("intersection"), TrafficConfig(density=2.0), seed=3, name="x/inter")
    T = sc.num_steps
    sc.log = np.random.default_rng(0).normal(size=(sc.num_agents, T + 1, 4))
    sc.log_valid = np.ones((sc.num_agents, T + 1), bool)
    return sc


def test_round_trip_keeps_everything(tmp_path, scenario):
    path = save_scenario(scenario, tmp_path / "a.npz")
    back = load_scenario(path)
    assert scenario_hash(back) == scenario_hash(scenario) == back.meta["content_hash"]
    for f in ("x", "y", "yaw", "speed", "agent_type", "mode", "log", "log_valid"):
        assert np.array_equal(np.asarray(getattr(back, f)), np.asarray(getattr(scenario, f))), f
    assert back.route == scenario.route and back.road.signal_group == scenario.road.signal_group
    assert [l.successors for l in back.road.lanes] == [l.successors for l in scenario.road.lanes]
    assert back.road.drivable.equals(scenario.road.drivable)


def test_damaged_files_name_the_file(tmp_path, scenario):
    path = save_scenario(scenario, tmp_path / "a.npz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    (tmp_path / "c.npz").write_text("not a scenario")
    with pytest.raises(ScenarioFileError, match="c.npz"):
        load_scenario(tmp_path / "c.npz")
    good, errors = load_scenarios(tmp_path)
    assert len(good) == 1 and len(errors) == 2 and any("b.npz" in e for e in errors)


def test_edited_content_fails_the_hash(tmp_path, scenario):
    path = save_scenario(scenario, tmp_path / "a.npz")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["speed"] = arrays["speed"] + 1.0
    np.savez_compressed(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ScenarioFileError, match="hash mismatch"):
        load_scenario(tmp_path / "edited.npz")


def test_lane_heights_survive_a_round_trip(tmp_path):
    """Heights (issue 15: overpasses) are saved where a source has them; flat lanes stay None."""
    sc = procedural_scenario(build_map("intersection"), TrafficConfig(density=1.0), seed=1, name="x/heights")
    lanes = sc.road.lanes
    lanes[0].z = np.linspace(0.0, 6.0, len(lanes[0].centerline))
    back = load_scenario(save_scenario(sc, tmp_path / "z.npz"))
    assert np.allclose(back.road.lanes[0].z, lanes[0].z)
    assert all(l.z is None for l in back.road.lanes[1:])
    assert scenario_hash(back) == scenario_hash(sc)
