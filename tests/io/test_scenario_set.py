"""Scenario set files: round trip, hashes, damaged content, and the `generate` command."""

import json
import zipfile

import numpy as np
import pytest

from drivesim.cli import main
from drivesim.io.scenario_file import ScenarioFileError, load_scenarios, scenario_hash
from drivesim.io.scenario_file import load_set, save_set
from drivesim.events.generate import LabelConfig, generate_set


@pytest.fixture(scope="module")
def event_set():
    return generate_set("cut-in", 6, seed=4, label=LabelConfig(expert_check=False, workers=1), show_progress=False)


def test_round_trip_keeps_scenarios_table_and_shared_maps(tmp_path, event_set):
    path, set_hash = save_set(event_set.scenarios, event_set.table, event_set.header, tmp_path / "cut")
    assert path.name == "cut.set.npz"
    loaded = load_set(path)
    assert not loaded.errors and loaded.header["set_hash"] == set_hash
    assert [s.name for s in loaded.scenarios] == [s.name for s in event_set.scenarios]
    for a, b in zip(loaded.scenarios, event_set.scenarios):
        assert a.meta["content_hash"] == scenario_hash(b)  # the same hash as a single scenario file
        np.testing.assert_array_equal(a.script_lane, b.script_lane)
    roads = {id(s.road) for s in loaded.scenarios}
    assert len(roads) == len({id(s.road) for s in event_set.scenarios})  # each map rebuilt once
    np.testing.assert_allclose(loaded.table["ttc_at_event"], event_set.table["ttc_at_event"], rtol=1e-6)
    assert load_scenarios(path)[0][0].name == event_set.scenarios[0].name  # simulate/evaluate read sets too


def _rewrite(path, out, edit):
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, edit(item.filename, zin.read(item.filename)))


def test_a_damaged_scenario_is_reported_and_the_rest_load(tmp_path, event_set):
    path, _ = save_set(event_set.scenarios, event_set.table, event_set.header, tmp_path / "a")
    bad = tmp_path / "bad.set.npz"

    def edit(name, data):
        if name == "s2/x.npy":
            arr = bytearray(data)
            arr[-1] ^= 0xFF
            return bytes(arr)
        return data

    _rewrite(path, bad, edit)
    loaded = load_set(bad)
    assert len(loaded.scenarios) == 5 and len(loaded.errors) == 1
    assert event_set.scenarios[2].name in loaded.errors[0] and "hash" in loaded.errors[0]


def test_an_edited_table_makes_the_set_an_error(tmp_path, event_set):
    path, _ = save_set(event_set.scenarios, event_set.table, event_set.header, tmp_path / "a")
    bad = tmp_path / "edited.set.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["set_table"] = np.array(str(arrays["set_table"]).replace("true", "false", 1))
    np.savez_compressed(bad, **arrays)
    with pytest.raises(ScenarioFileError, match="set hash mismatch"):
        load_set(bad)
    (tmp_path / "junk.set.npz").write_bytes(b"junk")
    with pytest.raises(ScenarioFileError, match="not a readable scenario set"):
        load_set(tmp_path / "junk.set.npz")


def test_generate_command_writes_set_table_and_figure(tmp_path, capsys):
    out = tmp_path / "cuts"
    assert main(["generate", "cut-in", "--n", "4", "--ttc", "1.0:1.5", "--workers", "1", "--no-expert-check",
                 "--set", "side=left", "-o", str(out)]) == 0
    loaded = load_set(tmp_path / "cuts.set.npz")
    assert len(loaded.scenarios) == 4 and (loaded.table["knob_side"] == "left").all()
    assert loaded.table["knob_target_ttc"].between(1.0, 1.5).all()
    assert (tmp_path / "cuts.png").stat().st_size > 10_000 and (tmp_path / "cuts.csv").exists()
    assert json.dumps(loaded.header["config"]["ttc"]) == "[1.0, 1.5]"
    with pytest.raises(SystemExit, match="ttc"):
        main(["generate", "cut-in", "--n", "2", "--ttc", "2:1", "-o", str(out)])
    with pytest.raises(SystemExit, match="unknown key"):
        main(["generate", "cut-in", "--n", "2", "--set", "sidee=left", "-o", str(out)])
