"""The importer registry (io/importers.py): every source behind one `load(path) -> (scenarios, errors)`,
no module-level error lists, detection by path, and the CLI's `import` reading the registry."""

import importlib
import json

import numpy as np
import pytest

from drivesim.io import importers
from drivesim.io.errors import ImportDataError
from tests.io.test_gpudrive import hand_scene

SOURCES = {"scenarionet", "nuscenes", "av2", "commonroad", "womd", "gpudrive"}


def test_every_source_is_registered_with_a_description():
    assert set(importers.IMPORTERS) == SOURCES
    for name, entry in importers.IMPORTERS.items():
        assert entry.name == name and entry.description and entry.paths
        assert name in importers.describe() and entry.description in importers.describe()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_importer_modules_keep_no_module_state(name):
    module = importlib.import_module(importers.IMPORTERS[name].module_name)
    assert callable(module.load)
    assert not hasattr(module, "last_errors"), f"{module.__name__} keeps a module-level error list"


def test_unknown_source_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown importer 'lidar'.*av2.*womd"):
        importers.load("lidar", ".")


def test_load_returns_scenarios_and_the_skipped_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(hand_scene()))
    (tmp_path / "b.json").write_text("{not json")
    scenarios, errors = importers.load("gpudrive", tmp_path)
    assert [s.name for s in scenarios] == ["gpudrive/gd0001"]
    assert len(errors) == 1 and "b.json" in errors[0]
    one, none = importers.load("gpudrive", tmp_path / "a.json")
    assert len(one) == 1 and none == []
    again, _ = importers.load("gpudrive", tmp_path)  # nothing carried over between calls
    assert np.array_equal(again[0].log, scenarios[0].log)
    (tmp_path / "a.json").unlink()
    with pytest.raises(ImportDataError, match="no scenario could be imported"):
        importers.load("gpudrive", tmp_path)


def test_detect_by_path(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"")
    assert importers.detect(tmp_path / "a.pkl") == "scenarionet" and importers.detect(tmp_path) == "scenarionet"
    (tmp_path / "scene.json").write_text("{}")
    (tmp_path / "x.tfrecord-00000-of-00001").write_bytes(b"")
    assert importers.detect(tmp_path / "scene.json") == "gpudrive"
    assert importers.detect(tmp_path / "x.tfrecord-00000-of-00001") == "womd"
    assert importers.detect(tmp_path) == "womd"  # TFRecords first, as the scenario loader always did
    (tmp_path / "x.tfrecord-00000-of-00001").unlink()
    assert importers.detect(tmp_path) == "gpudrive"
    (tmp_path / "s.npz").write_bytes(b"")
    assert importers.detect(tmp_path) is None  # scenario files are not a log format
    assert importers.detect(tmp_path / "s.npz") is None


def test_cli_import_lists_the_registry(capsys):
    from drivesim.cli.commands import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "--help"])
    text = capsys.readouterr().out
    for entry in importers.IMPORTERS.values():
        assert entry.name in text and entry.description in text
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "lidar", "x"])
    assert "invalid choice: 'lidar'" in capsys.readouterr().err


@pytest.mark.data
def test_scenario_loader_imports_a_folder_of_scenarionet_pickles(data_dir, tmp_path):
    from drivesim.io.scenario_file import load_scenarios

    name = "sd_nuscenes_v1.0-mini_scene-0757.pkl"
    (tmp_path / name).symlink_to((data_dir / "scenarionet_nuscenes" / name).resolve())
    (tmp_path / "zz_bad.pkl").write_bytes(b"garbage")
    scenarios, errors = load_scenarios(tmp_path)  # what `evaluate --scenarios DIR` and `realism --data DIR` read
    assert [s.name for s in scenarios] == ["scenarionet/scene-0757"]
    assert len(errors) == 1 and "zz_bad.pkl" in errors[0]
