"""Logged (replayed) traffic-signal states: a red logged signal stops reactive traffic at the stop
line, a green one lets it pass; the table survives scenario files; the bank reads the logged row
of each step (map/signals.py)."""

import numpy as np
import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.map.bank import MapBank
from drivesim.map.road import Lane, MapError, RoadMap
from drivesim.map.signals import SIGNAL_CODES, LoggedSignals, stop_line_lanes
from drivesim.sim.simulator import Simulator
from tests.helpers import make_scenario

RED, GREEN = SIGNAL_CODES["red"], SIGNAL_CODES["green"]


def two_lane_road(states: np.ndarray) -> RoadMap:
    """Lane 0 (0..100 m) leads into lane 1 (100..200 m), whose signal's stop point is its start."""
    lanes = [Lane(np.array([[0.0, 0.0], [100.0, 0.0]]), successors=[1]), Lane(np.array([[100.0, 0.0], [200.0, 0.0]]))]
    log = LoggedSignals(state=states, lane=[1], stop_point=[[100.0, 0.0]], dt=0.1)
    return RoadMap("logged", lanes, signal_group=stop_line_lanes(lanes, log), signal_log=log)


def run(road, steps=150):
    sc = make_scenario(road, [{"x": 2.0}, {"x": 40.0, "speed": 10.0, "v0": 12.0}], route=[0, 1], duration=steps / 10)
    batch = ScenarioBatch.build([sc])
    sim = Simulator(batch)
    state, xs = sim.reset(), []
    for _ in range(steps):
        state = sim.step(state, torch.tensor([[-1.0, 0.0]]))
        xs.append(float(state.x[0, 1]))
    return np.array(xs), float(state.speed[0, 1])


def test_stop_line_is_the_end_of_the_lane_leading_in():
    road = two_lane_road(np.full((10, 1), RED))
    assert road.signal_group == {0: 0}


def test_red_logged_signal_stops_a_reactive_agent():
    xs, v = run(two_lane_road(np.full((151, 1), RED)))
    assert xs.max() + 2.25 < 100.5, "crossed the red stop line"
    assert v < 0.5 and xs[-1] > 85.0  # stopped at the line, not far before it


def test_green_then_red_logged_signal():
    go = run(two_lane_road(np.full((151, 1), GREEN)))[0]
    assert go.max() > 120.0  # green: it drives through
    states = np.full((151, 1), RED)
    states[100:] = GREEN  # red for 10 s, then green: it waits, then goes
    xs, _ = run(two_lane_road(states))
    assert xs[:95].max() + 2.25 < 100.5 and xs[-1] > 102.0


def test_bank_reads_the_logged_row_and_holds_the_last():
    states = np.array([[RED], [GREEN], [RED]])
    bank = MapBank.build([two_lane_road(states)])
    lane = torch.tensor([[0, 1]])
    red = [bank.signal_stop(lane, torch.tensor([0]), t)[0].tolist() for t in (0.0, 0.1, 0.2, 5.0)]
    assert red == [[True, False], [False, False], [True, False], [True, False]]


def test_bad_signal_tables_are_refused():
    lanes = [Lane(np.array([[0.0, 0.0], [100.0, 0.0]]))]
    with pytest.raises(ValueError):
        LoggedSignals(state=np.full((5, 2), 9), lane=[0, 0], stop_point=[[0, 0], [1, 1]])
    with pytest.raises(MapError):
        RoadMap("bad", lanes, signal_group={0: 3}, signal_log=LoggedSignals(np.full((5, 1), RED), [0], [[0.0, 0.0]]))


def test_scenario_file_keeps_the_signal_table(tmp_path):
    from drivesim.io.scenario_file import load_scenario, save_scenario

    states = np.full((151, 1), RED)
    states[40:] = GREEN
    sc = make_scenario(two_lane_road(states), [{"x": 2.0}, {"x": 40.0, "speed": 10.0}], route=[0, 1], duration=15)
    back = load_scenario(save_scenario(sc, tmp_path / "s.npz"))
    log = back.road.signal_log
    assert log is not None and np.array_equal(log.state, states) and back.road.signal_group == {0: 0}
    assert np.allclose(log.stop_point, [[100.0, 0.0]]) and log.lane.tolist() == [1]


# ---------------------------------------------------------------- realism: traffic-light violation
def _traj(xs, ys, yaw, T):
    """[T, 1, A] trajectory dict of agents moving on straight lines (xs, ys: [A, T])."""
    xs = torch.tensor(np.array(xs), dtype=torch.float32).T.unsqueeze(1)
    ys = torch.tensor(np.array(ys), dtype=torch.float32).T.unsqueeze(1)
    A = xs.shape[-1]
    full = lambda v: torch.full((T, 1, A), float(v))
    return {"x": xs, "y": ys, "yaw": torch.tensor(yaw, dtype=torch.float32).expand(T, 1, A).clone(), "speed": full(10.0),
            "length": full(4.5), "width": full(1.9), "valid": torch.ones(T, 1, A, dtype=torch.bool)}


def _through_and_across(T=90):
    t = np.arange(T) * 0.1
    xs = [50 + 0 * t, 60 + 10 * t, 99 + 0 * t]  # ego parked; agent 1 drives through x = 100 at t = 4 s; agent 2 crosses
    ys = [0 * t, 0 * t, -20 + 10 * t]
    return _traj(xs, ys, [0.0, 0.0, 1.5708], T)


def test_red_light_violation_feature_counts_a_vehicle_crossing_red():
    from drivesim.core.types import AgentType
    from drivesim.traffic_model.wosac import features

    traj = _through_and_across()
    kinds = torch.full((1, 3), int(AgentType.VEHICLE))
    for code, expect in ((RED, 1.0), (GREEN, 0.0)):
        bank = MapBank.build([two_lane_road(np.full((90, 1), code))])
        tl = features(traj, bank, torch.tensor([0]), kinds)["traffic_light_violation"][:, 0]  # [T, A]
        assert float(tl[:, 1].sum()) == expect  # one crossing step of the through vehicle
        assert float(tl[:, 0].sum()) == 0.0 and float(tl[:, 2].sum()) == 0.0  # parked; crossing sideways
    states = np.full((90, 1), GREEN)
    states[45:] = RED  # the crossing (step 40) happens before the light turns red
    bank = MapBank.build([two_lane_road(states)])
    assert float(features(traj, bank, torch.tensor([0]), kinds)["traffic_light_violation"].sum()) == 0.0
    # the same trajectory starting at scenario step 10 crosses at step 50: red
    f = features(traj, bank, torch.tensor([0]), kinds, start_step=10)["traffic_light_violation"]
    assert float(f.sum()) == 1.0


def test_realism_traffic_light_likelihood_is_not_constant_one():
    from drivesim.core.types import AgentType
    from drivesim.traffic_model.wosac import RealismConfig, realism_score

    cfg = RealismConfig(n_rollouts=4)
    bank = MapBank.build([two_lane_road(np.full((90, 1), RED))])
    log = _through_and_across()  # the logged vehicle runs the red light at step 40
    stopped = {k: v.clone() for k, v in log.items()}
    stopped["x"][:, 0, 1] = torch.clamp(stopped["x"][:, 0, 1], max=97.0)  # the simulated one stops before the line
    kinds = torch.full((1, 3), int(AgentType.VEHICLE))
    same = realism_score([log] * 4, log, bank, torch.tensor([0]), kinds, cfg)[0]["traffic_light_violation"]
    differ = realism_score([stopped] * 4, log, bank, torch.tensor([0]), kinds, cfg)[0]["traffic_light_violation"]
    assert float(differ) < 0.5 < float(same)
