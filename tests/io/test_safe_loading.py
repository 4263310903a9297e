"""Pickle formats read by design (ScenarioNet, PandaSet cuboids and lidar, the nuScenes info pickle
of a camera rig) go through one allow-list (drivesim.core.safe_pickle): what the real files hold
loads, a crafted file that would run code is refused and its code never runs."""

from __future__ import annotations

import collections
import gzip
import pickle
import shutil

import numpy as np
import pytest

from drivesim.io import pandaset as ps
from drivesim.io import scenarionet
from drivesim.io.errors import ImportDataError
from drivesim.render.splat.rigs import rig_from_nuscenes_info, rig_from_pandaset
from tests.io.test_scenarionet import _synthetic
from tests.payloads import Touch, assert_payload_works, touch_pickle


def _as_scenarionet_writes(raw: dict) -> dict:
    """The metadata ScenarioNet's converters add (scenarionet/converter/utils.py: get_number_summary):
    defaultdict(int) counters, sets of type names, numpy scalars."""
    raw["metadata"]["number_summary"] = {
        "num_objects": 2, "object_types": {"VEHICLE", "PEDESTRIAN"},
        "num_objects_each_type": collections.defaultdict(int, {"VEHICLE": 1, "PEDESTRIAN": 1}),
        "num_moving_objects": 2, "num_moving_objects_each_type": collections.defaultdict(int, {"VEHICLE": 1}),
        "num_traffic_lights": 1, "num_traffic_light_types": {"LANE_STATE_GO"},
        "num_map_features": 5, "map_height_diff": np.float32(0.0)}
    raw["metadata"]["object_summary"] = {"7": {"type": "VEHICLE", "track_length": np.int64(21),
                                              "moving_distance": np.float32(20.0), "valid_length": np.int64(21)}}
    raw["metadata"]["sdc_track_index"] = np.int64(0)
    raw["metadata"]["tracks_to_predict"] = {"8": {"track_index": 1, "track_id": "8", "difficulty": 0,
                                                  "object_type": "PEDESTRIAN"}}
    return raw


@pytest.mark.parametrize("protocol", [2, 4])
def test_scenarionet_waymo_pickle_with_defaultdict_summaries_loads(tmp_path, protocol):
    path = tmp_path / "sd_waymo_v1.2_syn.pkl"
    path.write_bytes(pickle.dumps(_as_scenarionet_writes(_synthetic()), protocol=protocol))
    (sc,), _ = scenarionet.load(path)
    assert sc.meta["track_ids"] == ["7", "8"] and sc.num_steps == 40


def test_scenarionet_refuses_code_and_unsafe_defaultdict_factories(tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    raw = _as_scenarionet_writes(_synthetic())
    raw["metadata"]["number_summary"]["num_objects_each_type"] = collections.defaultdict(int, {"VEHICLE": Touch(marker)})
    (tmp_path / "crafted.pkl").write_bytes(pickle.dumps(raw))
    with pytest.raises(ImportDataError, match="crafted.pkl.*refusing to load pathlib"):
        scenarionet.load(tmp_path / "crafted.pkl")
    raw["metadata"]["number_summary"]["num_objects_each_type"] = collections.defaultdict(np.ndarray)
    (tmp_path / "factory.pkl").write_bytes(pickle.dumps(raw))
    with pytest.raises(ImportDataError, match="factory.pkl.*default factory"):
        scenarionet.load(tmp_path / "factory.pkl")
    assert not marker.exists()


def _crafted_gz(path, marker) -> None:
    with gzip.open(path, "wb") as f:
        f.write(touch_pickle(marker, wrap=lambda p: p))


def test_pandaset_cuboid_and_lidar_pickles_never_run_code(tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    (tmp_path / "annotations" / "cuboids").mkdir(parents=True)
    (tmp_path / "lidar").mkdir()
    _crafted_gz(tmp_path / "annotations" / "cuboids" / "00.pkl.gz", marker)
    _crafted_gz(tmp_path / "lidar" / "00.pkl.gz", marker)
    with pytest.raises(ImportDataError, match="00.pkl.gz: unreadable cuboid pickle.*refusing to load pathlib"):
        ps.read_cuboids(tmp_path / "annotations" / "cuboids" / "00.pkl.gz")
    with pytest.raises(ImportDataError, match="00.pkl.gz: unreadable lidar pickle.*refusing to load pathlib"):
        ps.lidar_points(tmp_path, 0)
    assert not marker.exists()


def test_nuscenes_info_pickle_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    info = tmp_path / "info.pkl"
    info.write_bytes(touch_pickle(marker, wrap=lambda p: {"data_list": [p]}))
    with pytest.raises(ValueError, match="info.pkl: not a readable nuScenes info pickle.*refusing to load pathlib"):
        rig_from_nuscenes_info(info)
    assert not marker.exists()


@pytest.mark.data
def test_real_pandaset_cuboids_load_as_pandas_reads_them(data_dir):
    pd = pytest.importorskip("pandas")
    for path in sorted((data_dir / "pandaset_002" / "annotations" / "cuboids").glob("*.pkl.gz"))[::10]:
        boxes, labels = ps.read_cuboids(path)
        df = pd.read_pickle(path)  # trusted here: the shared data set
        cols = ["position.x", "position.y", "position.z", "dimensions.x", "dimensions.y", "dimensions.z", "yaw"]
        np.testing.assert_array_equal(boxes, df[cols].to_numpy(dtype=np.float64))
        assert labels == [str(s) for s in df["label"]]


@pytest.mark.data
def test_pandaset_rig_with_a_crafted_cuboid_file_is_refused(data_dir, tmp_path):
    src, seq = data_dir / "pandaset_002", tmp_path / "seq"
    seq.mkdir()
    for name in ("camera", "lidar", "meta"):
        (seq / name).symlink_to(src / name)
    (seq / "annotations" / "cuboids").mkdir(parents=True)
    marker = tmp_path / "ran"
    _crafted_gz(seq / "annotations" / "cuboids" / "00.pkl.gz", marker)
    with pytest.raises(ValueError, match="00.pkl.gz: not a readable PandaSet cuboid pickle.*refusing to load pathlib"):
        rig_from_pandaset(seq)
    assert not marker.exists()
    shutil.rmtree(seq / "annotations")
