"""Property-based fuzzing (hypothesis) of what users feed drivesim: suite files, scenario files and
the simulator's actions. Every input is either accepted (and then usable: a suite builds, a
scenario file batches, a step gives a finite state) or refused with a clean error (SuiteError,
ScenarioFileError, ValueError), never a raw crash. Derandomized and bounded (about 30 s in all)
so it runs, deterministic, in the normal suite."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim.core.scenario import ScenarioBatch
from drivesim.traffic.procedural import EgoConfig, TrafficConfig, procedural_scenario
from drivesim.core.types import ControlMode
from drivesim.io.scenario_file import ScenarioFileError, _digest, load_scenario, save_scenario
from drivesim.io.suite import SuiteError, build_scenarios, load_suite, parse_suite
from drivesim.map import build_map
from drivesim.map.builders import MAP_TYPES
from drivesim.sim.simulator import Simulator

torch.set_num_threads(1)
pytestmark = pytest.mark.fuzz

FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------------------- suites
specials = st.sampled_from([0, 1, -1, 2, 0.5, 3.6, 150.0, 1e9, -1e9, 1e300, float("nan"), float("inf"), float("-inf")])
numbers = st.one_of(specials, st.integers(-5, 500), st.floats(allow_nan=True, allow_infinity=True))
values = st.one_of(numbers, st.lists(numbers, min_size=0, max_size=3), st.text(max_size=4), st.booleans(), st.none(),
                   st.dictionaries(st.text(max_size=3), numbers, max_size=2))
map_keys = sorted({f.name for cls in MAP_TYPES.values() for f in dataclasses.fields(cls)} | {"nonsense"})
traffic_keys = sorted({f.name for f in dataclasses.fields(TrafficConfig)})
ego_keys = sorted({f.name for f in dataclasses.fields(EgoConfig)})
group = st.fixed_dictionaries(
    {"map": st.one_of(st.sampled_from(sorted(MAP_TYPES)), values), "count": st.one_of(st.integers(-1, 2), values)},
    optional={"map_params": st.dictionaries(st.sampled_from(map_keys), values, max_size=3),
              "traffic": st.dictionaries(st.sampled_from(traffic_keys), values, max_size=3),
              "ego": st.dictionaries(st.sampled_from(ego_keys), values, max_size=2), "name": values})
suites = st.fixed_dictionaries(
    {"name": st.one_of(st.just("fuzz"), values), "groups": st.one_of(st.lists(group, max_size=2), values)},
    optional={"duration": st.one_of(st.sampled_from([0.3, 0.5]), numbers), "dt": st.one_of(st.just(0.1), numbers),
              "seed": numbers, "map_grid": numbers})


@settings(max_examples=150, **FUZZ)
@given(suites)
def test_suite_loader_accepts_or_raises_suite_error(data):
    try:
        suite = parse_suite(data, "fuzz.yaml")
    except SuiteError as e:
        assert str(e).startswith("fuzz.yaml: ")
        return
    if suite.duration * suite.num_scenarios > 5:  # keep the fuzz bounded: building long suites is covered elsewhere
        return
    for s in build_scenarios(suite, progress=False):  # each scenario is buildable or carries why not
        if s.error is None:
            s.validate()


@st.composite
def near_valid_suites(draw):
    """One small group whose map parameters lie in, on or just outside their documented ranges."""
    kind = draw(st.sampled_from(sorted(MAP_TYPES)))
    ranges = MAP_TYPES[kind].RANGES
    params = {}
    for key in draw(st.lists(st.sampled_from(sorted(ranges)), max_size=4, unique=True)):
        lo, hi = ranges[key]
        pad = max(1, (hi - lo) // 10) if isinstance(lo, int) else (hi - lo) / 10
        one = st.integers(lo - pad, hi + pad) if isinstance(lo, int) else st.floats(lo - pad, hi + pad)
        params[key] = draw(st.one_of(one, st.lists(one, min_size=2, max_size=2).map(sorted)))
    ego = draw(st.fixed_dictionaries({}, optional={"start_s": st.lists(st.floats(0, 600), min_size=2, max_size=2).map(sorted),
                                                   "speed": st.floats(0, 40)}))
    return {"name": "fuzz", "duration": 0.3, "map_grid": 2,
            "groups": [{"map": kind, "count": 2, "map_params": params, "ego": ego, "traffic": {"density": 0.5}}]}


@settings(max_examples=30, **FUZZ)
@given(near_valid_suites())
def test_near_valid_suite_builds_or_raises_suite_error(data):
    try:
        suite = parse_suite(data, "fuzz.yaml")
    except SuiteError:
        return
    for s in build_scenarios(suite, progress=False):
        if s.error is None:
            s.validate()
        else:
            assert s.error.startswith("fuzz.yaml: groups[0]"), s.error


@settings(max_examples=60, **FUZZ)
@given(st.text(max_size=200))
def test_suite_file_of_any_text_is_a_suite_or_a_suite_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("suite") / "s.yaml"
    path.write_text(text)
    try:
        load_suite(path)
    except SuiteError as e:
        assert str(path) in str(e)


# ---------------------------------------------------------------------------- scenario files
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The arrays and header of a small logged scenario file."""
    road = build_map("straight", lanes=1, lanes_back=1, length=120.0)
    sc = procedural_scenario(road, TrafficConfig(density=1.0, duration=0.5), seed=2, name="fuzz/s")
    T = sc.num_steps
    sc.log = np.repeat(np.stack([sc.x, sc.y, sc.yaw, sc.speed], axis=-1)[:, None], T + 1, axis=1)
    sc.log_valid = np.ones((sc.num_agents, T + 1), bool)
    sc.mode = np.where(np.arange(sc.num_agents) == 0, int(ControlMode.POLICY), int(ControlMode.REPLAY))
    path = save_scenario(sc, tmp_path_factory.mktemp("sc") / "s.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    header.pop("content_hash")
    return arrays, header, path.read_bytes()


fill = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, -1.0, 0.0, 1e6, 7.0])


@st.composite
def edits(draw, keys):
    """(key, how, value): overwrite some entries, change the shape, or the dtype of one array."""
    return draw(st.sampled_from(keys)), draw(st.sampled_from(["entries", "all", "shape", "dtype", "drop"])), draw(fill), \
        draw(st.integers(0, 2**16))


@settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_scenario_file_loader_accepts_or_raises_scenario_file_error(stored, tmp_path_factory, data):
    arrays, header, _ = stored
    arrays = dict(arrays)
    for key, how, value, seed in data.draw(st.lists(edits(sorted(arrays)), min_size=1, max_size=3)):
        if key not in arrays:  # dropped by an earlier edit
            continue
        a = arrays[key]
        rng = np.random.default_rng(seed)
        if how == "entries" and a.size:
            a = a.astype(float) if a.dtype.kind in "fiub" else a
            flat = a.reshape(-1).copy()
            flat[rng.integers(0, flat.size, size=1 + flat.size // 8)] = value if a.dtype.kind == "f" else 0
            a = flat.reshape(a.shape)
        elif how == "all":
            a = np.full(a.shape, value)
        elif how == "shape":
            a = np.resize(a, max(0, a.size + int(rng.integers(-3, 4))))
        elif how == "dtype":
            a = a.astype(np.float32) if a.dtype.kind != "f" else a.astype(np.int64, casting="unsafe") if np.isfinite(a).all() else a
        else:
            arrays.pop(key)
            continue
        arrays[key] = a
    head = {**header, "content_hash": _digest(arrays, header)}  # a well-formed file with bad content
    path = tmp_path_factory.mktemp("bad") / "bad.npz"
    np.savez_compressed(path, header=np.array(json.dumps(head, default=str)), **arrays)
    try:
        sc = load_scenario(path)
    except ScenarioFileError as e:
        assert "bad.npz" in str(e)
        return
    assert np.isfinite(sc.log[sc.log_valid]).all() and np.isfinite(sc.log).all()
    ScenarioBatch.build([sc])  # what validates, batches


@settings(max_examples=40, **FUZZ)
@given(st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_scenario_file_bytes_are_a_scenario_file_error(stored, tmp_path_factory, flips):
    raw = bytearray(stored[2])
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    path = tmp_path_factory.mktemp("flip") / "flipped.npz"
    path.write_bytes(bytes(raw))
    try:
        load_scenario(path)
    except ScenarioFileError as e:
        assert "flipped.npz" in str(e)


# ---------------------------------------------------------------------------- simulator step
@pytest.fixture(scope="module")
def sim():
    road = build_map("straight", lanes=2, lanes_back=1, length=200.0)
    scs = [procedural_scenario(road, TrafficConfig(density=1.0, duration=1.0), seed=k, name=f"fuzz/{k}") for k in range(3)]
    simulator = Simulator(ScenarioBatch.build(scs))
    return simulator, simulator.reset()


def _finite_state(state) -> bool:
    v = state.valid
    return all(torch.isfinite(getattr(state, f)[v]).all() for f in ("x", "y", "yaw", "speed", "accel", "steer"))


@settings(max_examples=40, **FUZZ)
@given(st.lists(st.floats(-1e30, 1e30), min_size=6, max_size=6), st.integers(1, 3))
def test_step_with_any_finite_action_gives_a_finite_state(sim, action, steps):
    simulator, state = sim
    a = torch.tensor(action, dtype=torch.float32).view(3, 2)
    for _ in range(steps):
        try:
            state = simulator.step(state, a)
        except ValueError:  # an out-of-range action may be refused with a clean error (the 'engine' change)
            return
        assert _finite_state(state)


@settings(max_examples=20, **FUZZ)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([np.nan, np.inf])),
                min_size=6, max_size=6))
def test_step_with_a_non_finite_action_is_refused_or_finite(sim, action):
    simulator, state = sim
    try:
        state = simulator.step(state, torch.tensor(action, dtype=torch.float32).view(3, 2))
    except ValueError:
        return
    assert _finite_state(state)
