"""Reading pickle files from outside without running their code: one allow-list for every reader.

Unpickling calls whatever global a file names, so a plain `pickle.load` (or `pd.read_pickle`) of a
file from elsewhere can run any code. The formats drivesim reads by design are pickles: ScenarioNet
scenario descriptions, PandaSet cuboid and lidar DataFrames (gzip), the mmdetection3d nuScenes info
pickle of a camera rig. `load` / `load_file` read them with `SafeUnpickler`, which resolves only
the globals on an allow-list; anything else is refused with `UnsafePickleError` naming it.

What the allow-list holds, and why (the globals the real files reference, listed with pickletools):
- numpy arrays, dtypes and scalars (`ndarray`, `dtype`, `_reconstruct`, `scalar`, `_frombuffer`,
  under `numpy.core` as numpy 1 writes and `numpy._core` as numpy 2 writes);
- `_codecs.encode` for the latin-1 bytes of numpy scalars in protocol-2 pickles (the nuScenes info
  pickle), and only for latin-1;
- builtin containers (`set`, `frozenset`, `slice`, `bytearray`, `complex`), `collections.OrderedDict`,
  and `collections.defaultdict` with a plain default factory (ScenarioNet writes
  `metadata.number_summary.*` as `defaultdict(int)`; the factory is one of `SAFE_FACTORIES`, never
  an arbitrary callable);
- metadrive's `ScenarioDescription` (a dict subclass) read as a plain dict;
- with `pandas=True` only: the DataFrame layout of PandaSet's files (`DataFrame`, `BlockManager`,
  `Index`, `RangeIndex`, `_new_Index`, `_unpickle_block`), whose reconstruction builds arrays and
  indexes from data and calls nothing else. Columns stored as pyarrow-backed strings (pandas >= 3
  writes those) are refused: re-save such a frame with object columns.
"""

from __future__ import annotations

import _compat_pickle
import collections
import gzip
import io
import pickle
from pathlib import Path
from typing import ClassVar

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
NUMPY_GLOBALS = frozenset({("numpy", "ndarray"), ("numpy", "dtype"),
                           *((m, n) for m in _NUMPY_CORE for n in ("_reconstruct", "scalar", "_frombuffer"))})
BUILTIN_GLOBALS = frozenset({("builtins", n) for n in ("set", "frozenset", "slice", "bytearray", "complex")}
                            | {("collections", "OrderedDict")})
PANDAS_GLOBALS = frozenset({("pandas.core.frame", "DataFrame"), ("pandas", "DataFrame"),
                            ("pandas.core.internals.managers", "BlockManager"),
                            ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
                            ("pandas.core.indexes.range", "RangeIndex"), ("pandas", "Index"), ("pandas", "RangeIndex"),
                            ("pandas._libs.internals", "_unpickle_block")})
SAFE_FACTORIES = {"int": int, "float": float, "list": list, "dict": dict, "set": set, "str": str, "tuple": tuple,
                  "bool": bool}  # defaultdict(...) default factories that may be named
DESCRIPTION_MODULES = ("metadrive.", "scenarionet.")  # where ScenarioDescription (a dict subclass) lives


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that is not on the allow-list (it could run code)."""


class _Factory:
    """A builtin type named in a pickle: usable only as a defaultdict's default factory."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args):
        raise UnsafePickleError(f"refusing to call builtins.{self.name} (allowed only as a defaultdict factory)")


def _defaultdict(factory=None, *rest):
    if rest:
        raise UnsafePickleError("refusing collections.defaultdict with more than a default factory")
    if isinstance(factory, _Factory):
        factory = SAFE_FACTORIES.get(factory.name, factory)  # a BUILD could have renamed it: then it is refused below
    if factory is not None and not any(factory is f for f in SAFE_FACTORIES.values()):
        raise UnsafePickleError(f"refusing collections.defaultdict with the default factory {factory!r} "
                                f"(allowed: None or one of {sorted(SAFE_FACTORIES)})")
    return collections.defaultdict(factory)


def _latin1_encode(text="", encoding="latin1", *rest):
    if rest or not isinstance(text, str) or str(encoding).replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1 bytes are read)")
    return text.encode("latin-1")


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only allow-listed globals (see the module doc)."""

    PANDAS: ClassVar[frozenset] = PANDAS_GLOBALS

    def __init__(self, file, *, pandas: bool = False):
        super().__init__(file)
        self.allowed = NUMPY_GLOBALS | BUILTIN_GLOBALS | (self.PANDAS if pandas else frozenset())

    def find_class(self, module, name):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as protocols 0-2 write them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        if (module, name) == ("collections", "defaultdict"):
            return _defaultdict
        if module == "builtins" and name in SAFE_FACTORIES:
            return _Factory(name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if name == "ScenarioDescription" and module.startswith(DESCRIPTION_MODULES):
            return dict
        raise UnsafePickleError(f"refusing to load {module}.{name}: not on the allow-list of plain data types "
                                "(numpy arrays and scalars, builtin containers"
                                + (", pandas DataFrames" if (("pandas", "DataFrame") in self.allowed) else "")
                                + "); unpickling it could run code"
                                + ("; a DataFrame written by pandas >= 3 (pyarrow strings) must be saved again with object "
                                   "columns" if module.startswith(("pandas", "pyarrow")) else ""))


def load(fh, *, pandas: bool = False):
    """The object pickled in the binary file object `fh`, read with `SafeUnpickler`."""
    return SafeUnpickler(fh, pandas=pandas).load()


def loads(data: bytes, *, pandas: bool = False):
    return load(io.BytesIO(data), pandas=pandas)


def load_file(path: str | Path, *, pandas: bool = False):
    """The object pickled in `path` (gzip-compressed when the name ends in .gz). Raises OSError
    when the file cannot be read, UnsafePickleError for a global off the allow-list and other
    exceptions (pickle.UnpicklingError, EOFError, ValueError, ...) for a garbled file: callers
    wrap them in an error naming the file."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return load(fh, pandas=pandas)


def load_dataframe(path: str | Path):
    """A pandas DataFrame pickle (.pkl or .pkl.gz, as PandaSet ships them) through the allow-list
    with the pandas layout (pandas' own `read_pickle` would run any code the file names). Raises
    what `load_file` raises; a file holding anything but a DataFrame is a ValueError."""
    import pandas as pd

    df = load_file(path, pandas=True)
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    return df


__all__ = ["load_dataframe", "SafeUnpickler", "UnsafePickleError", "load", "loads", "load_file", "SAFE_FACTORIES", "NUMPY_GLOBALS",
           "BUILTIN_GLOBALS", "PANDAS_GLOBALS"]
