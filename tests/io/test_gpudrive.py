"""GPUDrive / Nocturne JSON scenes: a hand-made scene (SDC as ego, inferred links, tl_states) and
the two shared real scenes (DRIVESIM_DATA/womd_json), `--scenarios` and `drivesim import gpudrive`."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from drivesim.core.types import AgentType
from drivesim.io import gpudrive
from drivesim.io.errors import ImportDataError
from drivesim.map.signals import SIGNAL_CODES

torch.set_num_threads(1)
T = 91


def _obj(oid, kind, x0, y0, v, valid=True):
    return {"id": oid, "type": kind, "length": 4.6, "width": 2.0, "height": 1.6, "mark_as_expert": False,
            "position": [{"x": x0 + v * 0.1 * k, "y": y0, "z": 2.0} for k in range(T)],
            "velocity": [{"x": v, "y": 0.0} for _ in range(T)], "heading": [0.0] * T, "valid": [valid] * T,
            "goalPosition": {"x": x0 + v * 9.0, "y": y0, "z": 2.0}}


def _line(pts):
    return [{"x": float(x), "y": float(y), "z": 2.0} for x, y in pts]


def hand_scene() -> dict:
    lane_pts = [np.stack([np.linspace(a, b, 16), np.full(16, y)], 1) for a, b, y in ((0, 60, 0), (60, 120, 0), (0, 60, 3.7))]
    roads = [{"type": "lane", "map_element_id": 2, "id": 30 + i, "geometry": _line(p)} for i, p in enumerate(lane_pts)]
    roads += [{"type": "lane", "map_element_id": 3, "id": 40, "geometry": _line([(0, -4), (120, -4)])},  # bike lane
              {"type": "road_edge", "map_element_id": 15, "id": 50, "geometry": _line([(0, -2), (120, -2)])},
              {"type": "crosswalk", "map_element_id": 18, "id": 51, "geometry": _line([(62, -2), (66, -2), (66, 2), (62, 2)])},
              {"type": "driveway", "map_element_id": 20, "id": 52, "geometry": _line([(20, -2), (24, -2), (24, -8), (20, -8)])},
              {"type": "stop_sign", "map_element_id": 17, "id": 53, "geometry": _line([(59, -2)])}]
    return {"name": "hand.json", "scenario_id": "gd0001",
            "objects": [_obj(3, "vehicle", 30, 3.7, 8.0), _obj(4, "pedestrian", 5, -6, 0.0), _obj(5, "vehicle", 10, 0, 5.0)],
            "roads": roads,
            "tl_states": {"31": {"state": ["stop"] * 50 + ["go"] * 41, "x": [60.0] * T, "y": [0.0] * T, "time_index": list(range(T))}},
            "metadata": {"sdc_track_index": 2, "objects_of_interest": [3], "tracks_to_predict": [{"track_index": 0, "difficulty": 0}]}}


def test_hand_scene_converts(tmp_path):
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(hand_scene()))
    (sc,), _ = gpudrive.load(path)
    assert sc.name == "gpudrive/gd0001" and sc.num_agents == 3 and sc.num_steps == T - 1
    assert sc.meta["track_ids"] == [5, 3, 4] and sc.meta["tracks_to_predict"] == [1] and sc.meta["objects_of_interest"] == [1]
    assert sc.agent_type.tolist() == [int(AgentType.VEHICLE), int(AgentType.VEHICLE), int(AgentType.PEDESTRIAN)]
    assert len(sc.road.lanes) == 3  # the bike lane is left out
    lanes = sc.road.lanes
    assert lanes[0].successors == [1] and lanes[0].left == 2  # inferred: the layout has no links
    assert sc.meta["road_edges"] == 1 and sc.meta["crosswalks"] == 1 and sc.meta["stop_signs"] == 1
    assert sc.road.drivable.contains(__import__("shapely").Point(22 - 10, -6))  # the driveway is drivable (minus origin x 10)
    log = sc.road.signal_log
    assert log.state.shape == (T, 1) and (log.state[:50] == SIGNAL_CODES["red"]).all()
    assert (log.state[50:] == SIGNAL_CODES["green"]).all() and sc.road.signal_group == {0: 0}


def test_bad_scenes_name_the_file(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ImportDataError, match=r"a\.json: not a JSON file"):
        gpudrive.load(tmp_path / "a.json")
    scene = hand_scene()
    scene["objects"][1]["type"] = "spaceship"
    (tmp_path / "b.json").write_text(json.dumps(scene))
    with pytest.raises(ImportDataError, match=r"b\.json: objects\[1\]: unknown type 'spaceship'"):
        gpudrive.load(tmp_path / "b.json")
    scene = hand_scene()
    del scene["metadata"]["sdc_track_index"]
    (tmp_path / "c.json").write_text(json.dumps(scene))
    with pytest.raises(ImportDataError, match=r"c\.json: metadata.sdc_track_index"):
        gpudrive.load(tmp_path / "c.json")
    scene = hand_scene()
    scene["tl_states"]["31"]["state"][3] = "purple"
    (tmp_path / "d.json").write_text(json.dumps(scene))
    with pytest.raises(ImportDataError, match=r"d\.json: tl_states\['31'\]: unknown states \['purple'\]"):
        gpudrive.load(tmp_path / "d.json")
    (tmp_path / "e.json").write_text(json.dumps(hand_scene()))
    loaded, errors = gpudrive.load(tmp_path)
    assert len(loaded) == 1 and len(errors) == 4 and all(f"{n}.json" in e for n, e in zip("abcd", errors))


# ------------------------------------------------------------------ the shared real scenes
@pytest.fixture(scope="module")
def json_dir(data_dir):
    path = data_dir / "womd_json"
    if not path.is_dir() or not any(path.glob("*.json")):
        pytest.skip(f"no GPUDrive JSON scenes at {path}")
    return path


@pytest.mark.data
def test_shared_scenes(json_dir):
    expect = {"gpudrive/db4edc9bd0c9d18c": (81, 80), "gpudrive/ef3a8f65142f41ac": (62, 61)}  # (objects, sdc index)
    for f in sorted(json_dir.glob("*.json")):
        raw = json.loads(f.read_text())
        t0 = time.perf_counter()
        sc = gpudrive.load_file(f)
        assert time.perf_counter() - t0 < 3.0
        n, sdc = expect[sc.name]
        assert sc.num_agents == n and sc.meta["sdc_track_index"] == sdc and sc.num_steps == 90
        ego = raw["objects"][sdc]
        assert sc.meta["track_ids"][0] == ego["id"]
        first = np.array([ego["position"][0]["x"], ego["position"][0]["y"]])
        assert np.allclose(sc.meta["origin"], first)
        assert len(sc.meta["tracks_to_predict"]) == len(raw["metadata"]["tracks_to_predict"])
        assert sum(len(l.successors) > 0 for l in sc.road.lanes) > 0.5 * len(sc.road.lanes)
        assert sc.meta["road_edges"] > 10 and sc.meta["crosswalks"] > 0
        assert sc.road.signal_log is None  # both shared scenes have empty tl_states


@pytest.mark.data
def test_import_gpudrive_folder_in_parallel(json_dir, tmp_path, capsys):
    from drivesim.cli import main
    from drivesim.io.scenario_file import load_scenarios

    assert main(["import", "gpudrive", str(json_dir), "-o", str(tmp_path), "--workers", "2"]) == 0
    assert "imported 2 scenario(s) from 2 gpudrive file(s)" in capsys.readouterr().out
    written, errors = load_scenarios(tmp_path)
    direct, _ = load_scenarios(json_dir)  # --scenarios DIR reads the JSON folder too
    assert sorted(s.name for s in written) == sorted(s.name for s in direct) and errors == []
