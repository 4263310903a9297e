"""Policies on every shared real scene (8 nuScenes via ScenarioNet, Argoverse 2 motion, 4
CommonRoad/NGSIM; the WOMD importers add theirs when they exist): the logged ego (`--policy log`)
is the human reference and must score as one; a frozen ego is no success; the PDM expert keeps up
with the log. Needs DRIVESIM_DATA."""

import numpy as np
import pytest
import torch

from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import ScenarioBatch
from drivesim.sim.evaluate import EvalConfig, evaluate, logged_progress
from drivesim.sim.expert import PDMClosed
from drivesim.sim.policy import LogReplay
from drivesim.sim.rollout import rollout

pytestmark = pytest.mark.data


def load_real_scenes(data_dir) -> list:
    """Every shared real scene with an importer in this checkout (probing for the WOMD ones)."""
    from drivesim.io import importers

    scenes = []
    for name, folder in (("scenarionet", "scenarionet_nuscenes"), ("av2", "av2/motion"), ("commonroad", "commonroad_ngsim"),
                         ("womd", "womd_tfrecord"), ("gpudrive", "womd_json")):
        scenes += importers.load(name, data_dir / folder)[0]
    return scenes


@pytest.fixture(scope="module")
def scenes(data_dir):
    return load_real_scenes(data_dir)


class Frozen:
    """Brakes as hard as allowed and stays stopped: never makes progress."""

    name = "frozen"

    def reset(self, batch):
        pass

    def act(self, obs):
        return torch.tensor([[-8.0, 0.0]]).expand(obs.batch_size, 2).clone()


def by_scene(results, policy):
    rows = results[results.policy == policy]
    return {r["scenario"]: r for _, r in rows.iterrows()}


def test_log_policy_replays_the_logged_ego_exactly(scenes):
    s = with_traffic(next(x for x in scenes if x.name.endswith("scene-0061")), "replay")
    batch = ScenarioBatch.build([s])
    res = rollout(batch, LogReplay(), expert_progress=logged_progress(batch), record=True)
    T = res.trajectory["x"].shape[0]
    xy = np.stack([res.trajectory["x"][:, 0, 0], res.trajectory["y"][:, 0, 0]], -1)
    assert np.allclose(xy, s.log[0, :T, :2], atol=1e-4)
    assert np.allclose(res.trajectory["speed"][:, 0, 0], s.log[0, :T, 3], atol=1e-4)
    assert res.metrics["progress_ratio"][0] == 1.0 and res.metrics["route_completion"][0] == 1.0


def test_log_policy_names_a_scenario_without_a_logged_ego(scenes):
    s = with_traffic(next(x for x in scenes if x.name.endswith("scene-0061")), "replay")
    s.log_valid = s.log_valid.copy()
    s.log_valid[0, 0] = False
    s.name = "no-ego-log"
    with pytest.raises(ValueError, match="no-ego-log"):
        rollout(ScenarioBatch.build([s]), LogReplay())


@pytest.fixture(scope="module")
def log_under_replay(scenes):
    ev = evaluate([with_traffic(s, "replay") for s in scenes], [LogReplay()], config=EvalConfig(batch_size=16),
                  show_progress=False)
    return by_scene(ev.results, "log")


@pytest.mark.slow
def test_logged_ego_scores_as_the_human_reference_on_every_shared_scene(scenes, log_under_replay):
    """Issue 15 item 4 bar: under replay traffic the logged ego is a success with no at-fault
    collision and DAC 1 (DAC on nuScenes maps depends on the drivable-area fix of item 1)."""
    rows = log_under_replay
    assert len(rows) == len(scenes)
    for name, r in rows.items():
        assert r["status"] == "ok", name
        assert r["collisions_vru"] + r["collisions_vehicle"] + r["collisions_object"] == 0, name
        assert r["progress_ratio"] == 1.0 and r["making_progress"] == 1.0 and r["route_completion"] == 1.0, name
        assert r["drivable_area_compliance"] == 1.0, name  # DAC-dependent (drivable area of item 1)
        assert r["success"] == 1.0, name


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the logs' own speed/heading noise (one-sample spikes of 2-10 m/s in nuScenes "
                   "ego speeds, NGSIM heading jitter) fails nuPlan's Savitzky-Golay comfort bounds on 11 of 13 "
                   "scenes: comfort 0 caps PDMS at 10/12; see the integrator's report")
def test_logged_ego_pdms_on_every_shared_scene(log_under_replay):
    low = {n: round(r["pdms"], 3) for n, r in log_under_replay.items() if not r["pdms"] >= 0.95}
    assert not low


def test_a_frozen_ego_on_a_real_scene_is_no_success(scenes):
    """Issue 15 item 5: a policy that never moves scored success 1 and PDMS 1.0 on a real scene."""
    picked = [with_traffic(s, "replay") for s in scenes if s.name.endswith(("scene-0061", "USA_Peach-4_8_T-1"))]
    ev = evaluate(picked, [Frozen()], config=EvalConfig(batch_size=16), show_progress=False)
    for name, r in by_scene(ev.results, "frozen").items():
        assert r["collision_any"] == 0 and r["drivable_area_compliance"] == 1.0, name  # safe, but ...
        assert r["making_progress"] == 0.0 and r["success"] == 0.0, name
        assert r["route_completion"] < 0.1, name  # 9 m/s braked to 0 at 8 m/s^2: ~5 m of 92 (0061)


# Issue 15 item 6 bar, measured 2026-12-07 with this branch's reactive traffic (before the
# "reactive" helper's yielding at conflicts): these scenes fall short, for the reasons given.
# 0103 and 0796 reach the bar since reactive traffic yields beyond short junction connectors
# and brakes for vehicles close ahead on unlinked lanes.
EXPERT_SHORT = {
    "scenarionet/scene-0061": "79 % of the log: it stops for a pedestrian standing on the route centreline that the human "
                              "passed 1-1.5 m to the side (only the centreline proposal is used)",
    "commonroad/USA_Lanker-1_1_T-1": "75 %: 4 s scene, IDM a_max 1.5 m/s^2 while the human accelerated harder",
    "commonroad/USA_Peach-4_8_T-1": "48 %: waits for an oncoming car before a left turn, 6 s scene",
    "commonroad/USA_US101-3_3_T-1": "64 %: 3 s scene, IDM a_max 1.5 m/s^2 behind a leader the human closed up on",
}
SHARED = ["scenarionet/scene-0061", "scenarionet/scene-0103", "scenarionet/scene-0553", "scenarionet/scene-0655",
          "scenarionet/scene-0757", "scenarionet/scene-0796", "scenarionet/scene-0916", "scenarionet/scene-1077",
          "av2/0a1e6f0a-1817-4a98-b02e-db8c9327d151", "commonroad/USA_Lanker-1_1_T-1", "commonroad/USA_Peach-4_8_T-1",
          "commonroad/USA_US101-3_3_T-1", "commonroad/USA_US101-4_1_T-1"]


@pytest.fixture(scope="module")
def expert_vs_log(scenes):
    ev = evaluate([with_traffic(s, "reactive") for s in scenes], [LogReplay(), PDMClosed()],
                  config=EvalConfig(batch_size=16), show_progress=False)
    return by_scene(ev.results, "pdm_expert"), by_scene(ev.results, "log")


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=EXPERT_SHORT[n], strict=False))
                                  if n in EXPERT_SHORT else n for n in SHARED])
def test_expert_keeps_up_with_the_log_in_reactive_traffic(expert_vs_log, name):
    """The PDM expert, reactive traffic, covers >= 80 % of the logged ego's progress with no
    at-fault collision where the log itself has none."""
    expert, log = expert_vs_log
    if name not in expert:
        pytest.skip(f"{name} not among the shared scenes read")
    e, g = expert[name], log[name]
    assert e["status"] == "ok"
    assert e["route_completion"] >= 0.8, f"{e['progress']:.1f} m of the log's {e['expert_progress']:.1f} m"
    log_fault = sum(g[c] for c in ("collisions_vru", "collisions_vehicle", "collisions_object"))
    if log_fault == 0:
        assert sum(e[c] for c in ("collisions_vru", "collisions_vehicle", "collisions_object")) == 0
