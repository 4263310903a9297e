"""Every number of a suite has a range a road can have (issue 14 item 5): non-finite and huge
values are SuiteErrors naming the key and the range, memory is bounded before anything is built,
and a map that cannot be built fails its own scenarios as error rows, not the whole suite."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
import torch

from drivesim.core.scenario import ScenarioError
from drivesim.io.suite import SuiteError, build_scenarios, load_suite
from drivesim.map import MapBank, build_map
from drivesim.map.builders import MAP_TYPES, CurvedRoad
from drivesim.map.road import MapError
from drivesim.sim.evaluate import evaluate
from drivesim.sim.policy import ConstantVelocity

torch.set_num_threads(1)

README = Path(__file__).resolve().parents[2] / "scenarios" / "README.md"


def suite(tmp_path, body: str, top: str = "duration: 2.0") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\n{top}\ngroups:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    return path


@pytest.mark.parametrize("top, body, expected", [
    ("duration: .inf", "- {map: straight, count: 1}\n", r"duration: got inf; allowed: dt \(0.1\) <= duration <= 300 s"),
    ("duration: 100000", "- {map: straight, count: 1}\n", r"duration: got 100000.0; allowed: .* <= 300 s"),
    ("duration: .nan", "- {map: straight, count: 1}\n", r"duration: got nan"),
    ("dt: .nan", "- {map: straight, count: 1}\n", r"dt: got nan"),
    ("duration: 2.0", "- {map: curved, count: 1, map_params: {angle_deg: .nan}}\n",
     r"groups\[0\].map_params.angle_deg: got nan; allowed: a finite number"),
    ("duration: 2.0", "- {map: curved, count: 1, map_params: {radius: 1.0e+9}}\n",
     r"groups\[0\].map_params.radius: got 1000000000.0; allowed: 30 <= radius <= 500"),
    ("duration: 2.0", "- {map: straight, count: 1, map_params: {length: 1.0e+9}}\n",
     r"groups\[0\].map_params.length: got 1000000000.0; allowed: 50 <= length <= 5000"),
    ("duration: 2.0", "- {map: straight, count: 1, map_params: {length: -400}}\n",
     r"groups\[0\].map_params.length: got -400.0; allowed: 50 <= length"),
    ("duration: 2.0", "- {map: straight, count: 1, map_params: {length: [100, .inf]}}\n",
     r"groups\[0\].map_params.length\[1\]: got inf; allowed: a finite number"),
    ("duration: 2.0", "- {map: straight, count: 1, ego: {speed: .inf}}\n", r"groups\[0\].ego.speed: got inf"),
    ("duration: 2.0", "- {map: straight, count: 1, ego: {speed: 1.0e+6}}\n", r"groups\[0\].ego.speed: got 1000000.0; allowed: 0 <= speed <= 70"),
    ("duration: 2.0", "- {map: straight, count: 1, ego: {start_s: [0, .nan]}}\n", r"groups\[0\].ego.start_s: got \(0.0, nan\)"),
    ("duration: 2.0", "- {map: intersection, count: 1, map_params: {green: .inf}}\n", r"groups\[0\].map_params.green: got inf"),
    ("duration: 2.0", "- {map: curved, count: 1, map_params: {length: 1000, radius: 500, angle_deg: 180}}\n",
     r"groups\[0\].map_params: map 'curved' is too large: .* allowed: 8M cells"),
])
def test_unbounded_and_non_finite_values_are_suite_errors(tmp_path, top, body, expected):
    path = suite(tmp_path, body, top)
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    assert re.search(expected, str(e.value)), str(e.value)


def test_out_of_range_map_parameters_are_refused_before_anything_is_built(monkeypatch):
    def never(self):
        raise AssertionError("built a map from an out-of-range parameter")

    monkeypatch.setattr(CurvedRoad, "build", never)
    for params in ({"radius": 1e9}, {"length": 1e9}, {"angle_deg": float("nan")}, {"lanes": 2.5}, {"radius": True}):
        with pytest.raises(MapError, match="allowed: an? (integer|number) in"):
            build_map("curved", **params)


def test_a_map_too_large_for_its_raster_is_refused_before_the_raster_is_built():
    road = build_map("straight", length=5000.0)
    road.drivable = road.drivable.buffer(400.0)  # 5.8 km x 0.8 km: 75M cells
    with pytest.raises(MapError, match="map 'straight' is too large"):
        MapBank.build([road])


def test_a_map_that_cannot_be_built_fails_its_scenarios_as_error_rows_only(tmp_path):
    # both corners of the ranges build (1 lane each way at radius 30; 5 + 5 lanes at 100), but
    # 5 + 5 lanes at radius 30 or 65 are too tight: those scenarios are errors, the others run
    path = suite(tmp_path, """\
        - map: curved
          count: 8
          map_params: {lanes: [1, 5], lanes_back: [0, 5], radius: [30, 100], length: 200}
          traffic: {density: 0.2}
        - {map: straight, count: 2, map_params: {length: 200}, traffic: {density: 0.2}}
        """, "duration: 0.5")
    scenarios = build_scenarios(load_suite(path), progress=False)
    failed = [s for s in scenarios if s.error is not None]
    assert 0 < len(failed) < 8 and all("/00-curved/" in s.name for s in failed)
    assert all("too tight" in s.error and "groups[0].map_params" in s.error for s in failed)
    with pytest.raises(ScenarioError, match="too tight"):
        failed[0].validate()
    rows = evaluate(scenarios, [ConstantVelocity()], show_progress=False).results
    assert len(rows) == 10
    errors = rows[rows.status == "error"]
    assert sorted(errors.scenario) == sorted(s.name for s in failed)
    assert (errors.error.str.contains("too tight")).all()
    assert (rows[~rows.scenario.isin(errors.scenario)].status != "error").all()


def test_start_s_past_the_end_of_the_road_is_an_error_row_naming_the_field(tmp_path):
    path = suite(tmp_path, "- {map: straight, count: 1, ego: {start_s: [900, 950]}}\n")
    (sc,) = build_scenarios(load_suite(path), progress=False)
    assert sc.error is not None
    assert re.search(r"groups\[0\] scenario 0: ego.start_s: \[900.0, 950.0\] is past the end .* 400.0 m", sc.error)
    row = evaluate([sc], [ConstantVelocity()], show_progress=False).results.iloc[0]
    assert row.status == "error" and "start_s" in row.error


def test_every_map_parameter_has_a_range_and_the_readme_says_it():
    text = README.read_text()
    for kind, cls in MAP_TYPES.items():
        assert set(cls.RANGES) == {f.name for f in dataclasses.fields(cls)}, kind
        section = text.split(f"#### Map type `{kind}`", 1)[1].split("\n#", 1)[0]
        for key, (lo, hi) in cls.RANGES.items():
            assert re.search(rf"`{key}` [^|]*\| {lo:g} \.\. {hi:g}", section), f"README: {kind}.{key} [{lo:g}, {hi:g}]"


def test_the_shipped_suites_still_load():
    for path in sorted(README.parent.glob("*.yaml")):
        assert load_suite(path).num_scenarios > 0
