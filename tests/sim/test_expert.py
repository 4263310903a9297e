import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import boxes_overlap
from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.expert import PDMClosed
from drivesim.sim.rollout import rollout
from tests.helpers import make_scenario


def test_expert_stops_behind_stalled_car_and_scores_well_on_free_road():
    road = build_map("straight", lanes=1, lanes_back=0)
    stalled = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 12}, {"x": 90, "y": -1.8, "mode": ControlMode.STATIC}],
                            duration=15, name="stalled")
    # 12 s: the free run ends before the expert brakes for the end of the road (nuPlan's
    # Savitzky-Golay jerk at the last sample reads that 4 m/s^3 braking ramp as 4.35 > 4.13)
    free = make_scenario(road, [{"x": 5, "y": -1.8, "speed": 12}], duration=12, name="free")
    res = rollout(ScenarioBatch.build([stalled, free]), PDMClosed(), record=True)
    tr = {k: torch.tensor(v) for k, v in res.trajectory.items()}
    for t in range(tr["x"].shape[0]):
        box = lambda j: tuple(tr[k][t, 0, j] for k in ("x", "y", "yaw", "length", "width"))
        assert not bool(boxes_overlap(box(0), box(1)))
    assert res.metrics["success"].tolist() == [1.0, 1.0]
    assert tr["speed"][-1, 0, 0] < 0.5 and tr["x"][-1, 0, 0] > 60
    assert res.metrics["comfort"][1] == 1.0 and res.metrics["pdms"][1] > 0.95


def test_expert_off_the_centreline_at_standstill_drives_off():
    """Stopped 0.5 m beside the centre of a 3.6 m lane (a corner 0.35 m inside the edge): proposals that slid sideways at 0.8 m/s
    whatever the speed turned the box across the lane near standstill, a corner left the road,
    every proposal failed DAC and the planner emergency-braked forever. Lateral motion is now
    bounded per metre driven, so it pulls away and converges on the centre."""
    road = build_map("straight", lanes=1, lanes_back=0)  # drivable y in [-3.6, 0]
    for d in (0.5, -0.5):
        s = make_scenario(road, [{"x": 5, "y": -1.8 + d, "speed": 0.0}], duration=10, name=f"off{d}")
        res = rollout(ScenarioBatch.build([s]), PDMClosed(), record=True)
        assert res.metrics["drivable_area_compliance"][0] == 1.0
        assert res.metrics["progress"][0] > 40.0  # 1.5 m/s^2 to about 10 m/s in 10 s
        assert abs(res.trajectory["y"][-1, 0, 0] + 1.8) < 0.3
