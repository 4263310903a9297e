from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from drivesim.core.scenario import AGENT_FIELDS, ScenarioBatch, ScenarioError
from drivesim.io.suite import (SuiteError, Uniform, build_scenarios, load_suite, parse_range, parse_suite,
                               scenario_seed, suite_hash)
from drivesim.core.config import ConfigError

torch.set_num_threads(1)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """
name: t
seed: 3
duration: 4.0
groups:
  - map: straight
    count: 3
    map_params: {lanes: [2, 3], length: [200, 300]}
    traffic: {density: [0.5, 1.0], speed_factor: [0.7, 1.0], trucks: 0.1, pedestrians: [0, 2]}
    ego: {speed: [8, 12]}
  - map: intersection
    count: 2
    traffic: {density: 1.0, static_objects: 1}
"""


def write(tmp_path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_good_suite_and_defaults(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    assert (suite.name, suite.seed, suite.duration, suite.dt, suite.map_grid) == ("t", 3, 4.0, 0.1, 3)
    assert suite.num_scenarios == 5 and [g.map for g in suite.groups] == ["straight", "intersection"]
    g = suite.groups[0]
    assert g.map_params["lanes"] == Uniform(2, 3) and g.map_params["length"] == Uniform(200.0, 300.0)
    assert g.traffic["speed_factor"] == (0.7, 1.0)  # a range-valued field passes through
    assert g.traffic["trucks"] == 0.1 and g.ego["speed"] == Uniform(8.0, 12.0)


def test_build_is_deterministic_and_valid(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    a, b = build_scenarios(suite, progress=False), build_scenarios(suite, progress=True)
    assert len(a) == 5 and [s.name for s in a] == [s.name for s in b]
    for x, y in zip(a, b):
        x.validate()
        assert x.duration == 4.0 and x.num_steps == 40 and x.seed == y.seed
        assert x.meta["suite"]["hash"] == suite_hash(suite)
        for f in AGENT_FIELDS:
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    assert len({s.seed for s in a}) == 5
    ints = a[0].meta["suite"]["map_params"]["lanes"]
    assert isinstance(ints, int) and a[0].meta["config"]["ego"]["speed"] != a[1].meta["config"]["ego"]["speed"]


def test_scenario_depends_only_on_seed_group_index(tmp_path):
    a = build_scenarios(load_suite(write(tmp_path, GOOD)), progress=False)
    more = GOOD.replace("count: 3", "count: 4").replace("count: 2", "count: 1")
    b = build_scenarios(load_suite(write(tmp_path, more, "more.yaml")), progress=False)
    assert [s.name for s in b] == [s.name for s in a[:3]] + ["t/00-straight/003", "t/01-intersection/000"]
    for x, y in zip(a[:3] + a[3:4], b[:3] + b[4:5]):
        np.testing.assert_array_equal(x.x, y.x)
    assert scenario_seed(0, 1, 2) == scenario_seed(0, 1, 2) != scenario_seed(0, 2, 1)


def test_hash_ignores_format_and_follows_content(tmp_path):
    h = suite_hash(load_suite(write(tmp_path, GOOD)))
    reformatted = "# comment\n" + GOOD.replace("seed: 3\nduration: 4.0", "duration: 4\nseed: 3\ndt: 0.1")
    assert suite_hash(load_suite(write(tmp_path, reformatted, "b.yaml"))) == h
    assert suite_hash(load_suite(write(tmp_path, GOOD.replace("seed: 3", "seed: 4"), "c.yaml"))) != h
    assert suite_hash(load_suite(write(tmp_path, GOOD.replace("trucks: 0.1", "trucks: 0.2"), "d.yaml"))) != h


def test_shipped_suites_and_map_sharing():
    nominal = load_suite(SCENARIOS / "nominal.yaml")
    assert nominal.num_scenarios == 64 and nominal.duration == 15.0
    assert {g.map for g in nominal.groups} == {"straight", "curved", "merge", "intersection"}
    scenarios = build_scenarios(nominal, progress=False)
    roads = {id(s.road): s.road for s in scenarios}
    assert 8 <= len(roads) <= 16
    by_params = {}
    for s in scenarios:
        key = (s.meta["map"], tuple(sorted(s.meta["suite"]["map_params"].items())))
        assert by_params.setdefault(key, s.road) is s.road  # identical parameters -> the same object
    assert len(by_params) == len(roads)
    for s in scenarios:
        s.validate()


def test_tiny_suite_builds_a_batch():
    suite = load_suite(SCENARIOS / "tiny.yaml")
    scenarios = build_scenarios(suite, progress=False)
    assert len(scenarios) == 4 and {s.meta["map"] for s in scenarios} == {"straight", "curved", "merge", "intersection"}
    batch = ScenarioBatch.build(scenarios)
    assert batch.batch_size == 4 and batch.map_idx.tolist() == [0, 1, 2, 3]
    assert batch.valid[:, 0].all() and int(batch.num_steps.max()) == 50
    assert batch.init["mode"][:, 0].eq(0).all()


def test_parse_range():
    assert parse_range(3, int, "k") == 3 and parse_range([1, 4], int, "k") == Uniform(1, 4)
    assert parse_range([1, 2], float, "k") == Uniform(1.0, 2.0)
    with pytest.raises(ConfigError, match="k: range \\[2.0, 1.0\\] has lo > hi"):
        parse_range([2, 1], float, "k")
    with pytest.raises(ConfigError, match=r"k\[1\]: expected int"):
        parse_range([1, 2.5], int, "k")
    rng = np.random.default_rng(0)
    assert {Uniform(10.0, 30.0).sample(rng, grid=3) for _ in range(50)} == {10.0, 20.0, 30.0}


BAD = [
    ("nme: x\n" + GOOD, ["nme: unknown key", "allowed: dt, duration, groups, map_grid, name, seed"]),
    (GOOD.replace("density: 1.0", "densty: 1.0"), ["groups[1].traffic.densty: unknown key", "'density'", "speed_factor"]),
    (GOOD.replace("map: intersection", "map: hiway"), ["groups[1].map: unknown map type 'hiway'", "curved, intersection, merge, straight"]),
    (GOOD.replace("count: 3", "count: three"), ["groups[0].count: expected int, got str 'three'"]),
    (GOOD.replace("count: 3", "count: 2.5"), ["groups[0].count: expected int"]),
    (GOOD.replace("seed: 3", "seed: [1, 2]"), ["seed: expected int"]),
    (GOOD.replace("lanes: [2, 3]", "lanes: [2, 3.5]"), ["groups[0].map_params.lanes[1]: expected int"]),
    (GOOD.replace("density: [0.5, 1.0]", "density: [1.0, 0.5]"), ["groups[0].traffic.density: range [1.0, 0.5] has lo > hi"]),
    (GOOD.replace("density: [0.5, 1.0]", "density: [0.5, 1.0, 2.0]"), ["groups[0].traffic.density", "range [lo, hi]"]),
    (GOOD.replace("count: 2", "count: 0"), ["groups[1].count: got 0; allowed: 1..100000"]),
    (GOOD.replace("count: 2", "count: -4"), ["groups[1].count: got -4"]),
    (GOOD.replace("density: [0.5, 1.0]", "density: [-1.0, 1.0]"), ["groups[0].traffic.density: got -1.0; allowed"]),
    (GOOD.replace("trucks: 0.1", "trucks: 1.5"), ["groups[0].traffic.trucks", "[0, 1]"]),
    (GOOD.replace("speed_factor: [0.7, 1.0]", "speed_factor: [1.0, 0.7]"), ["groups[0].traffic.speed_factor", "lo <= hi"]),
    (GOOD.replace("speed_factor: [0.7, 1.0]", "speed_factor: 0.7"), ["groups[0].traffic.speed_factor: expected tuple"]),
    (GOOD.replace("trucks: 0.1", "duration: 3"), ["groups[0].traffic.duration: not allowed here", "top level"]),
    (GOOD.replace("ego: {speed: [8, 12]}", "ego: {sped: 3}"), ["groups[0].ego.sped: unknown key", "speed"]),
    (GOOD.replace("ego: {speed: [8, 12]}", "ego: {route: sideways}"), ["groups[0].ego.route: got 'sideways'", "left"]),
    (GOOD.replace("ego: {speed: [8, 12]}", "ego: {route: [1, 2]}"), ["groups[0].ego.route: expected str"]),
    (GOOD.replace("ego: {speed: [8, 12]}", "ego: 5"), ["groups[0].ego: expected a mapping"]),
    (GOOD.replace("lanes: [2, 3]", "lanes: [2, 7]"), ["groups[0].map_params.lanes:", "allowed: 1 <= lanes <= 5"]),
    (GOOD.replace("lanes: [2, 3]", "lane: 2"), ["groups[0].map_params.lane: unknown key", "lanes_back"]),
    (GOOD.replace("    map_params: {lanes: [2, 3], length: [200, 300]}\n", "    colour: red\n"), ["groups[0].colour: unknown key"]),
    (GOOD.replace("  - map: intersection\n", "  - map_type: intersection\n"), ["groups[1].map_type: unknown key", "allowed: count, ego, map, map_params"]),
    (GOOD.replace("  - map: intersection\n", "  - name: x\n"), ["groups[1].map: required key is missing"]),
    ("name: t\n", ["groups: required key is missing"]),
    ("name: t\ngroups: []\n", ["groups: must list at least one group"]),
    ("name: t\ngroups: {map: straight}\n", ["groups: expected list"]),
    ("name: t\ngroups: [3]\n", ["groups[0]: expected a mapping"]),
    (GOOD.replace("duration: 4.0", "duration: -1"), ["duration: got -1.0; allowed"]),
    (GOOD.replace("duration: 4.0", "dt: 2.0"), ["dt: got 2.0; allowed: 0 < dt <= 1"]),
    (GOOD.replace("seed: 3", "seed: -3"), ["seed: got -3"]),
    ("- 1\n- 2\n", ["suite: expected a mapping"]),
    ("", ["suite: the file is empty; expected a mapping"]),
    (GOOD.replace("count: 2\n", "count: 2\n    count: 3\n"), ["invalid YAML at line", "duplicate key 'count'"]),
    ("name: t\ngroups: [\n  - map: straight\n", ["invalid YAML at line"]),
    ("name: t\n  seed: 1\n bad", ["invalid YAML at line 2"]),
]


@pytest.mark.parametrize("text, expected", BAD)
def test_bad_suites_raise_with_file_and_key_path(tmp_path, text, expected):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    msg = str(e.value)
    assert msg.startswith(str(path) + ": "), msg
    for part in expected:
        assert part in msg, msg


def test_missing_file_and_dict_source(tmp_path):
    with pytest.raises(SuiteError, match=r"nope\.yaml: cannot read suite file"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(SuiteError, match=r"^<cli>: groups\[0\]\.count"):
        parse_suite({"name": "x", "groups": [{"map": "straight", "count": 0}]}, "<cli>")


def test_build_time_errors_name_the_group(tmp_path):
    text = "name: t\ngroups:\n  - map: straight\n    count: 1\n    ego: {route: ramp}\n"
    suite = load_suite(write(tmp_path, text))
    (failed,) = build_scenarios(suite, progress=False)  # a scenario that cannot be built is an error row, not a crash
    with pytest.raises(ScenarioError, match=r"suite\.yaml: groups\[0\] scenario 0: ego.route: no 'ramp' route"):
        failed.validate()
