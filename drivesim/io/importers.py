"""The registry of real-log importers: one place that names every source format.

Each importer module (`io/scenarionet.py`, `io/av2.py`, ...) has a public
`load(path, ...) -> (scenarios, errors)`: the scenarios of one file, folder or dataroot, and one
line per bad file / scene that was skipped (ImportDataError when nothing loads or the path itself
is bad). `IMPORTERS` maps a source name to its `Importer` entry (module, the paths it reads, a
one-line description, and optionally how to recognise such a path); the CLI's `import` command,
`io.scenario_file.load_scenarios` (real logs read on the fly) and the training data read it.

Modules are imported lazily (`Importer.module()`), so listing the registry needs none of the
optional readers (commonroad-io, protobuf, nuscenes-devkit).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

@dataclass(frozen=True)
class Importer:
    name: str
    module_name: str  # dotted module with `load(path, ...) -> (scenarios, errors)`
    description: str  # one line, for `drivesim import --help`
    paths: str  # what paths it reads, in words
    detect: Callable[[Path], bool] | None = None  # True for a path of this format; None: only named explicitly
    options: tuple[str, ...] = ()  # keyword arguments of its `load` the CLI passes through (e.g. nuScenes `version`)
    per_file: bool = False  # a folder can be imported file by file (`source_files`, `load_file`) in worker processes

    def module(self):
        return importlib.import_module(self.module_name)

    def load(self, path, **kwargs) -> tuple[list, list[str]]:
        return self.module().load(path, **kwargs)


IMPORTERS: dict[str, Importer] = {}


def register(name: str, module_name: str, description: str, paths: str, detect=None, options=(),
             per_file: bool = False) -> Importer:
    """Add (or replace) the importer `name`; returns its entry."""
    entry = Importer(name, module_name, description, paths, detect, tuple(options), per_file)
    IMPORTERS[name] = entry
    return entry


def get(name: str) -> Importer:
    """The entry of `name`; ValueError listing the known sources otherwise."""
    try:
        return IMPORTERS[name]
    except KeyError:
        raise ValueError(f"unknown importer {name!r}; known: {', '.join(sorted(IMPORTERS))}") from None


def load(source: str, path, **kwargs) -> tuple[list, list[str]]:
    """(scenarios, errors) of `path` read by the importer `source`."""
    return get(source).load(path, **kwargs)


def detect(path) -> str | None:
    """The name of the first importer that recognises `path` (registration order), else None."""
    path = Path(path)
    for entry in IMPORTERS.values():
        if entry.detect is not None and entry.detect(path):
            return entry.name
    return None


def describe() -> str:
    """One line per importer: name, what it reads, description."""
    return "\n".join(f"{e.name:12s} {e.description} ({e.paths})" for _, e in sorted(IMPORTERS.items()))


def _womd_path(path: Path) -> bool:
    """A TFRecord file, or a folder with TFRecord files and no scenario files (.npz)."""
    from drivesim.io import womd

    if path.is_file():
        return womd.is_womd_file(path)
    return path.is_dir() and not any(path.glob("*.npz")) and bool(womd.source_files(path))


def _scenarionet_path(path: Path) -> bool:
    """A .pkl file, or a folder with .pkl files and no scenario files (.npz)."""
    if path.is_file():
        return path.suffix == ".pkl"
    return path.is_dir() and not any(path.glob("*.npz")) and any(path.glob("*.pkl"))


def _gpudrive_path(path: Path) -> bool:
    """A .json file, or a folder with .json files and no scenario files (.npz)."""
    if path.is_file():
        return path.suffix == ".json"
    return path.is_dir() and not any(path.glob("*.npz")) and any(path.glob("*.json"))


# registration order is detection order: TFRecords, then JSON scenes, then ScenarioNet pickles
register("womd", "drivesim.io.womd", "Waymo Open Motion Dataset scenario protos",
         "a *.tfrecord* file or a folder of them", detect=_womd_path, per_file=True)
register("gpudrive", "drivesim.io.gpudrive", "GPUDrive / Waymax-style JSON scenes (WOMD converted)",
         "a .json file or a folder of them", detect=_gpudrive_path, per_file=True)
register("scenarionet", "drivesim.io.scenarionet", "ScenarioNet / MetaDrive scenario description pickles",
         "a .pkl file or a folder of them", detect=_scenarionet_path)
register("nuscenes", "drivesim.io.nuscenes", "nuScenes scenes through nuscenes-devkit (map expansion when present)",
         "a dataroot with <version>/scene.json", options=("version",))
register("av2", "drivesim.io.av2", "Argoverse 2 motion-forecasting scenarios",
         "a scenario_*.parquet file, its folder, or a folder of scenario folders")
register("commonroad", "drivesim.io.commonroad", "CommonRoad scenarios (commonroad-io)",
         "a .xml file or a folder searched for .xml files")
