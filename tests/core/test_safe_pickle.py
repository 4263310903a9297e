"""The shared allow-list unpickler (drivesim.core.safe_pickle)."""

import collections
import pickle

import numpy as np
import pytest

from drivesim.core import safe_pickle
from tests.payloads import Touch, assert_payload_works, touch_pickle


def test_plain_data_round_trips():
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": {"VEHICLE", "CYCLIST"}, "f": frozenset({1}),
            "o": collections.OrderedDict(x=1), "n": np.float32(1.5), "i": np.int64(7), "b": np.bool_(True),
            "u": np.array(["GO", "STOP"]), "obj": np.array([None, "x"], dtype=object), "sl": slice(1, 5), "c": 1 + 2j}
    for protocol in (2, 4, 5):
        back = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
        assert back.keys() == data.keys() and back["s"] == data["s"] and back["n"] == np.float32(1.5)
        np.testing.assert_array_equal(back["a"], data["a"])
        assert list(back["u"]) == ["GO", "STOP"] and back["sl"] == slice(1, 5)


def test_defaultdict_with_a_plain_factory_loads():
    for factory in (int, list, float, dict, set):
        d = collections.defaultdict(factory, {"VEHICLE": factory()})
        back = safe_pickle.loads(pickle.dumps({"num_moving_objects_each_type": d}))["num_moving_objects_each_type"]
        assert isinstance(back, collections.defaultdict) and back.default_factory is factory and back == d


def test_defaultdict_with_another_factory_is_refused():
    with pytest.raises(safe_pickle.UnsafePickleError, match="default factory"):
        safe_pickle.loads(pickle.dumps(collections.defaultdict(np.ndarray)))


def test_a_builtin_type_named_in_a_pickle_is_not_callable():
    class CallsInt:
        def __reduce__(self):
            return (int, ("5",))

    with pytest.raises(safe_pickle.UnsafePickleError, match="builtins.int"):
        safe_pickle.loads(pickle.dumps(CallsInt()))


def test_codecs_encode_only_for_latin1():
    assert safe_pickle.loads(pickle.dumps(np.float64(2.5), protocol=2)) == 2.5

    class Rot13:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("abc", "rot13"))

    with pytest.raises(safe_pickle.UnsafePickleError, match="rot13"):
        safe_pickle.loads(pickle.dumps(Rot13(), protocol=2))


@pytest.mark.parametrize("pandas", [False, True])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, pandas):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    for wrap in (lambda p: p, lambda p: {"tracks": {"1": [p]}}, lambda p: collections.defaultdict(int, {"x": p})):
        with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load pathlib"):
            safe_pickle.loads(touch_pickle(marker, wrap), pandas=pandas)
    assert not marker.exists()


def test_pandas_globals_only_when_asked():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": np.arange(3.0), "n": np.arange(3)})
    df.columns = df.columns.astype(object)  # PandaSet's layout (pandas >= 3 would write pyarrow strings)
    with pytest.raises(safe_pickle.UnsafePickleError, match="pandas"):
        safe_pickle.loads(pickle.dumps(df))
    assert safe_pickle.loads(pickle.dumps(df), pandas=True).equals(df)


def test_load_dataframe_reads_gzip_and_refuses_other_objects(tmp_path):
    import gzip

    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": np.arange(4.0), "label": np.array(["Car", "Bus", "Car", "Pedestrian"], dtype=object)})
    df = df.astype({"label": object})
    df.columns = df.columns.astype(object)
    path = tmp_path / "00.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(df, f)
    back = safe_pickle.load_dataframe(path)
    np.testing.assert_array_equal(back["x"].to_numpy(), df["x"].to_numpy())
    assert list(back["label"]) == list(df["label"])
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="DataFrame"):
        safe_pickle.load_dataframe(tmp_path / "list.pkl")


def test_touch_payload_helper_is_a_real_payload():
    assert Touch("x").__reduce__()[0].__name__ == "touch"


def test_pyarrow_string_frames_are_refused_with_a_hint():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"label": ["Car", "Bus"]})
    try:
        data = pickle.dumps(df)
    except Exception:  # pragma: no cover - pandas without pyarrow strings
        pytest.skip("pandas cannot pickle this frame here")
    if b"pyarrow" not in data and b"ArrowString" not in data:
        pytest.skip("this pandas writes object strings")
    with pytest.raises(safe_pickle.UnsafePickleError, match="saved again with object columns"):
        safe_pickle.loads(data, pandas=True)
