"""Scenario suites: YAML files listing groups of procedural scenarios (see scenarios/README.md).

`load_suite(path)` parses and validates strictly: an unknown key anywhere, a wrong type, a bad
range or an unknown map type raises `SuiteError` naming the file, the key path
(`groups[1].traffic.densty`) and what is allowed. `build_scenarios(suite)` turns a suite into
`Scenario`s deterministically: scenario i of group g draws its parameters and its seed from
(suite seed, g, i) only, and maps with identical sampled parameters are built once and shared
(the same `RoadMap` object, so `ScenarioBatch`/`MapBank` store each once). Float map parameters
given as [lo, hi] take one of `map_grid` evenly spaced values to keep the number of maps small.
`suite_hash(suite)` is the sha256 of the canonical YAML of the parsed content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from shapely.geometry import LineString, Point

from drivesim.core.scenario import Scenario, ScenarioError, failed_scenario
from drivesim.traffic.procedural import EgoConfig, TrafficConfig, procedural_scenario
from drivesim.core.config import (ConfigError, apply_overrides, check_type, describe, field_types, join_path,
                                  type_name, unknown_key_error)
from drivesim.map.builders import MAP_TYPES, build_map
from drivesim.map.road import MapError, RoadMap

TOP_KEYS = {"name": str, "seed": int, "duration": float, "dt": float, "map_grid": int, "groups": list}
GROUP_KEYS = {"map": str, "count": int, "name": str, "map_params": dict, "traffic": dict, "ego": dict}
REQUIRED_TOP, REQUIRED_GROUP = ("name", "groups"), ("map", "count")
DEFAULTS = {"seed": 0, "duration": 15.0, "dt": 0.1, "map_grid": 3}
NOT_IN_TRAFFIC = {
    "ego": "use the group's `ego` section",
    "duration": "set `duration` at the top level of the suite",
    "dt": "set `dt` at the top level of the suite",
}
MAX_COUNT = 100_000
MAX_DURATION = 300.0  # s per scenario
# bounds beyond TrafficConfig/EgoConfig.validate_config, so that every number has a range a road can have
SECTION_RANGES = {"ego": {"speed": (0.0, 70.0), "start_s": (0.0, 5000.0), "length": (0.5, 30.0), "width": (0.3, 5.0)}}


class SuiteError(ConfigError):
    """A suite file is unreadable or invalid; the message names the file and the key path."""


@dataclass(frozen=True)
class Uniform:
    """A parameter drawn per scenario: uniform in [lo, hi] (ints inclusive), or on a grid."""

    lo: float | int
    hi: float | int

    def sample(self, rng: np.random.Generator, grid: int | None = None) -> float | int:
        if isinstance(self.lo, int):
            return int(rng.integers(self.lo, self.hi + 1))
        if grid is not None:
            return round(float(np.linspace(self.lo, self.hi, grid)[rng.integers(grid)]), 6)
        return float(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class GroupSpec:
    map: str
    count: int
    map_params: dict[str, Any]  # value or Uniform
    traffic: dict[str, Any]  # TrafficConfig overrides (value or Uniform)
    ego: dict[str, Any]  # EgoConfig overrides (value or Uniform)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.map


@dataclass(frozen=True)
class Suite:
    name: str
    seed: int
    duration: float
    dt: float
    map_grid: int
    groups: tuple[GroupSpec, ...]
    source: str = "<dict>"  # file it was loaded from (not part of the hash)

    @property
    def num_scenarios(self) -> int:
        return sum(g.count for g in self.groups)


# ---------------------------------------------------------------------------- parsing
def parse_range(value: Any, tp: Any, where: str) -> Any:
    """A fixed value of type `tp`, or `[lo, hi]` (both of type `tp`, lo <= hi) -> Uniform."""
    if not isinstance(value, (list, tuple)):
        return _finite(check_type(value, tp, where), where)
    if tp not in (int, float):
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {describe(value)} (ranges [lo, hi] are for numbers only)")
    if len(value) != 2:
        raise ConfigError(f"{where}: expected a {type_name(tp)} or a range [lo, hi], got a list of {len(value)}")
    lo, hi = (_finite(check_type(v, tp, join_path(where, k)), join_path(where, k)) for k, v in enumerate(value))
    if lo > hi:
        raise ConfigError(f"{where}: range [{lo}, {hi}] has lo > hi; expected [lo, hi] with lo <= hi")
    return Uniform(lo, hi)


def _finite(value: Any, where: str) -> Any:
    """`value`, unless it is (or holds) a non-finite float: `.nan`/`.inf` are never a road's number."""
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not np.isfinite(v) for v in numbers):
        raise ConfigError(f"{where}: got {value!r}; allowed: a finite number")
    return value


def _in_range(values: Mapping[str, Any], ranges: Mapping[str, tuple], where: str) -> None:
    """Each value (a number, a Uniform or a (lo, hi) tuple) lies inside its [lo, hi] of `ranges`."""
    for key, value in values.items():
        if key not in ranges:
            continue
        lo, hi = ranges[key]
        parts = (value.lo, value.hi) if isinstance(value, Uniform) else value if isinstance(value, tuple) else (value,)
        if not all(lo <= v <= hi for v in parts):
            raise ConfigError(f"{join_path(where, key)}: got {_plain(value)!r}; allowed: {lo:g} <= {key} <= {hi:g}")


def _mapping(raw: Any, where: str) -> Mapping:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping (key: value), got {describe(raw)}")
    return raw


def _keys(raw: Mapping, allowed, where: str, required=()) -> None:
    for key in raw:
        if key not in allowed:
            raise unknown_key_error(where, key, allowed)
    for key in required:
        if key not in raw:
            raise ConfigError(f"{join_path(where, key)}: required key is missing")


def _section(raw: Any, hints: dict[str, Any], where: str, forbidden: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Overrides for a dataclass: each key a field; numbers may be ranges unless the field is a tuple."""
    raw, forbidden = _mapping(raw, where), forbidden or {}
    out = {}
    for key, value in raw.items():
        if key in forbidden:
            raise ConfigError(f"{join_path(where, str(key))}: not allowed here; {forbidden[key]}")
        if key not in hints:
            raise unknown_key_error(where, key, set(hints) - set(forbidden))
        tp = hints[key]
        if typing.get_origin(tp) is tuple:  # the field is itself a range: pass it through
            out[key] = _finite(check_type(value, tp, join_path(where, key)), join_path(where, key))
        else:
            out[key] = parse_range(value, tp, join_path(where, key))
    return out


def _corner(values: Mapping[str, Any], hi: bool) -> dict[str, Any]:
    return {k: ((v.hi if hi else v.lo) if isinstance(v, Uniform) else v) for k, v in values.items()}


def _parse_group(raw: Any, where: str) -> GroupSpec:
    raw = _mapping(raw, where)
    _keys(raw, GROUP_KEYS, where, REQUIRED_GROUP)
    kind = check_type(raw["map"], str, join_path(where, "map"))
    if kind not in MAP_TYPES:
        raise ConfigError(f"{join_path(where, 'map')}: unknown map type {kind!r}; allowed: {', '.join(sorted(MAP_TYPES))}")
    count = check_type(raw["count"], int, join_path(where, "count"))
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"{join_path(where, 'count')}: got {count}; allowed: 1..{MAX_COUNT}")
    name = check_type(raw["name"], str, join_path(where, "name")) if "name" in raw else None
    map_params = _section(raw.get("map_params"), field_types(MAP_TYPES[kind]), join_path(where, "map_params"))
    traffic = _section(raw.get("traffic"), field_types(TrafficConfig), join_path(where, "traffic"), NOT_IN_TRAFFIC)
    ego = _section(raw.get("ego"), field_types(EgoConfig), join_path(where, "ego"))
    _in_range(map_params, MAP_TYPES[kind].RANGES, join_path(where, "map_params"))  # before any map is built
    _in_range(ego, SECTION_RANGES["ego"], join_path(where, "ego"))
    for hi in (False, True):  # ranges are monotone checks: validating both corners covers them
        apply_overrides(TrafficConfig(), _corner(traffic, hi), join_path(where, "traffic"))
        apply_overrides(EgoConfig(), _corner(ego, hi), join_path(where, "ego"))
        params = _corner(map_params, hi)
        try:
            build_map(kind, **params)
        except MapError as e:
            raise ConfigError(f"{join_path(where, 'map_params')}: {e} (with {params})") from None
    return GroupSpec(kind, count, map_params, traffic, ego, name)


def parse_suite(data: Any, source: str = "<dict>") -> Suite:
    """Validate parsed YAML content; errors are SuiteError prefixed with `source`."""
    try:
        if data is None:
            raise ConfigError("suite: the file is empty; expected a mapping with at least `name` and `groups`")
        raw = _mapping(data, "suite")
        _keys(raw, TOP_KEYS, "", REQUIRED_TOP)
        vals = {k: check_type(raw.get(k, DEFAULTS.get(k)), TOP_KEYS[k], k) for k in TOP_KEYS if k != "groups"}
        if not vals["name"].strip():
            raise ConfigError("name: must not be empty")
        if vals["seed"] < 0:
            raise ConfigError(f"seed: got {vals['seed']}; allowed: an integer >= 0")
        if not 0 < vals["dt"] <= 1:
            raise ConfigError(f"dt: got {vals['dt']}; allowed: 0 < dt <= 1")
        if not vals["dt"] <= vals["duration"] <= MAX_DURATION:
            raise ConfigError(f"duration: got {vals['duration']}; allowed: dt ({vals['dt']}) <= duration <= {MAX_DURATION:g} s")
        if not 2 <= vals["map_grid"] <= 100:
            raise ConfigError(f"map_grid: got {vals['map_grid']}; allowed: 2..100")
        groups = check_type(raw["groups"], list, "groups")
        if not groups:
            raise ConfigError("groups: must list at least one group")
        specs = tuple(_parse_group(g, join_path("groups", k)) for k, g in enumerate(groups))
    except ConfigError as e:
        raise SuiteError(f"{source}: {e}") from None
    return Suite(groups=specs, source=source, **vals)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (see scenarios/README.md for the schema)."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite file ({e.strerror or e})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SuiteError(f"{path}: invalid YAML{at}: {problem}") from None
    return parse_suite(data, path)


# ---------------------------------------------------------------------------- hashing
def _plain(value: Any) -> Any:
    if isinstance(value, Uniform):
        return [value.lo, value.hi]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def suite_to_dict(suite: Suite) -> dict:
    """Canonical content: defaults filled in, numbers typed, ranges as [lo, hi]."""
    out = {f.name: getattr(suite, f.name) for f in dataclasses.fields(Suite) if f.name not in ("groups", "source")}
    groups = []
    for g in suite.groups:
        d = {"map": g.map, "count": g.count, "map_params": g.map_params, "traffic": g.traffic, "ego": g.ego}
        if g.name is not None:
            d["name"] = g.name
        groups.append(_plain(d))
    return {**out, "groups": groups}


def suite_hash(suite: Suite) -> str:
    """sha256 of the canonical YAML content (independent of comments, key order and defaults)."""
    text = yaml.safe_dump(suite_to_dict(suite), sort_keys=True, default_flow_style=False)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------- building
def scenario_seed(base: int, group: int, index: int) -> int:
    """Seed of scenario `index` of group `group`: depends on (base, group, index) only."""
    return int(np.random.SeedSequence([base, group, index]).generate_state(1)[0])


def _sample_all(values: Mapping[str, Any], rng: np.random.Generator, grid: int | None = None) -> dict:
    # sorted: the draws must not depend on the key order of the file (the hash does not)
    return {k: (values[k].sample(rng, grid) if isinstance(values[k], Uniform) else values[k]) for k in sorted(values)}


def _build_one(suite: Suite, g: int, i: int, maps: dict, digest: str) -> Scenario:
    """Scenario i of group g; one that cannot be built (its map, its traffic) is a `failed_scenario`
    carrying the reason, which the evaluation reports as an error row while the rest runs."""
    group = suite.groups[g]
    where = f"{suite.source}: groups[{g}]"
    name = f"{suite.name}/{g:02d}-{group.label}/{i:03d}"
    rng = np.random.default_rng([suite.seed, g, i, 1])
    params = _sample_all(group.map_params, rng, suite.map_grid)
    meta = {"suite": {"name": suite.name, "hash": digest, "group": g, "index": i, "map_params": params}}
    key = (group.map, tuple(sorted(params.items())))
    if key not in maps:
        try:
            maps[key] = build_map(group.map, **params)
        except MapError as e:
            maps[key] = f"{where}.map_params: {e} (sampled {params})"
    road: RoadMap | str = maps[key]
    if isinstance(road, str):  # this map could not be built: every scenario on it is an error row
        return failed_scenario(name, road, meta)
    try:
        cfg = apply_overrides(TrafficConfig(), _sample_all(group.traffic, rng), f"groups[{g}].traffic")
        cfg = dataclasses.replace(cfg, ego=apply_overrides(EgoConfig(), _sample_all(group.ego, rng), f"groups[{g}].ego"),
                                  duration=suite.duration, dt=suite.dt)
        seed = scenario_seed(suite.seed, g, i)
        scenario = procedural_scenario(road, cfg, seed, name)
        _check_ego_start(scenario, cfg.ego, "ego")
        scenario.validate()
    except (ConfigError, ScenarioError, MapError) as e:
        return failed_scenario(name, f"{where} scenario {i}: {e}", meta)
    scenario.meta.update(meta)
    return scenario


def build_scenario(suite: Suite, group: int, index: int, seed: int | None = None, maps: dict | None = None) -> Scenario:
    """Scenario `index` of group `group`, as `build_scenarios` makes it; with `seed`, as the same
    suite with that seed would (other map parameters and traffic: a fresh draw of the same
    distribution). `maps` caches the built maps between calls."""
    if seed is not None:
        suite = dataclasses.replace(suite, seed=int(seed))
    return _build_one(suite, group, index, {} if maps is None else maps, suite_hash(suite))


def _check_ego_start(scenario: Scenario, ego: EgoConfig, where: str) -> None:
    """ConfigError when the ego's start_s lies past the end of its first route lane (the placement
    stops it at the lane's end, where it would start with no road to score)."""
    lane = scenario.road.lanes[scenario.route[0]]
    line = LineString(lane.centerline)
    ahead = line.length - line.project(Point(float(scenario.x[0]), float(scenario.y[0])))
    if ahead <= ego.length / 2 + 0.05:
        raise ConfigError(f"{where}.start_s: {list(ego.start_s)} is past the end of the ego's first route lane "
                          f"(lane {scenario.route[0]}, {line.length:.1f} m); allowed: start_s < {line.length - ego.length / 2:.1f}")


def build_scenarios(suite: Suite, progress: bool = True) -> list[Scenario]:
    """All scenarios of the suite, in group order; identical maps are one shared RoadMap. A
    scenario that cannot be built is a `failed_scenario` (its `error` says why; `validate()`
    raises it), so one bad map fails its scenarios, never the whole suite."""
    from tqdm.auto import tqdm

    maps: dict = {}
    digest = suite_hash(suite)
    out = []
    with tqdm(total=suite.num_scenarios, desc=f"suite {suite.name}", unit="scenario", disable=not progress) as bar:
        for g, group in enumerate(suite.groups):
            for i in range(group.count):
                out.append(_build_one(suite, g, i, maps, digest))
                bar.update()
    return out


SUITES_DIR = Path(__file__).resolve().parents[2] / "scenarios"  # the suites shipped with the repository


def find_suite(name: str) -> Path:
    """A suite file: `name` as a path, else `scenarios/<name>` or `scenarios/<name>.yaml`."""
    p = Path(name)
    for candidate in (p, SUITES_DIR / name, SUITES_DIR / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    return p  # load_suite names the missing file


def load_suite_scenarios(name: str, limit: int | None = None, progress: bool = True):
    """(suite, its hash, its first `limit` scenarios) for a suite path or shipped suite name."""
    suite = load_suite(find_suite(name))
    scenarios = build_scenarios(suite, progress=progress)
    return suite, suite_hash(suite), scenarios[:limit] if limit else scenarios
