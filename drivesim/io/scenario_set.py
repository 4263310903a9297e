"""Scenario set files (`*.set.npz`): many scenarios in one file, each map stored once, with a
table (one row per scenario: generator knobs, measurements, labels) and a header (generator,
config, seed, lineage).

Each scenario keeps the content hash it would have as a single scenario file (scenario_file.py);
the set's own hash covers the scenario hashes, the table and the header. Loading checks both:
a damaged scenario is reported by name and the others still load; a damaged table or header
makes the whole file an error.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from drivesim.behavior.scenario import Scenario, ScenarioError
from drivesim.core.safe_io import atomic_save
from drivesim.io.scenario_file import (BOOKKEEPING, CONTENT_ERRORS, SET_SUFFIX, UNREADABLE, ScenarioFileError, _arrays,
                                       _digest, _header, _road, _scenario)
from drivesim.map.road import MapError

SET_FORMAT = "drivesim-scenario-set/1"


@dataclass
class LoadedSet:
    scenarios: list[Scenario]
    table: pd.DataFrame
    header: dict
    errors: list[str] = field(default_factory=list)


def set_path(path) -> Path:
    """`path` with the `.set.npz` suffix (added when missing)."""
    path = Path(path)
    return path if path.name.endswith(SET_SUFFIX) else path.with_name(path.name.removesuffix(".npz") + SET_SUFFIX)


def _set_hash(hashes: list[str], table_json: str, header: dict) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    h.update(table_json.encode())
    for x in hashes:
        h.update(x.encode())
    return h.hexdigest()


def save_set(scenarios: list[Scenario], table: pd.DataFrame, header: dict, path) -> tuple[Path, str]:
    """Write a set; returns (path, set hash). `table` has one row per scenario, in order."""
    if len(table) != len(scenarios):
        raise ValueError(f"table has {len(table)} rows for {len(scenarios)} scenarios")
    maps: dict[int, int] = {}
    arrays, entries, hashes = {}, [], []
    for i, s in enumerate(scenarios):
        s.validate()
        a, h = _arrays(s), _header(s)
        digest = _digest(a, h)
        j = maps.setdefault(id(s.road), len(maps))
        for k, v in a.items():
            if not k.startswith("map_"):
                arrays[f"s{i}/{k}"] = v
            elif f"m{j}/{k}" not in arrays:
                arrays[f"m{j}/{k}"] = v
        entries.append({"header": h, "map": j, "content_hash": digest})
        hashes.append(digest)
    table_json = table.to_json(orient="split", index=False, double_precision=10)
    head = {"format": SET_FORMAT, **header, "count": len(scenarios), "maps": len(maps)}
    head["set_hash"] = _set_hash(hashes, table_json, {k: v for k, v in head.items() if k != "set_hash"})
    path = set_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda f: np.savez_compressed(f, set_header=np.array(json.dumps(head, default=str)),
                                                   set_entries=np.array(json.dumps(entries, default=str)),
                                                   set_table=np.array(table_json), **arrays))
    return path, head["set_hash"]


def load_set(path) -> LoadedSet:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        head = json.loads(str(stored.pop("set_header")))
        entries = json.loads(str(stored.pop("set_entries")))
        table_json = str(stored.pop("set_table"))
    except UNREADABLE as exc:
        raise ScenarioFileError(f"{path}: not a readable scenario set ({type(exc).__name__}: {exc})") from None
    if not isinstance(head, dict) or not isinstance(entries, list):
        raise ScenarioFileError(f"{path}: the set header or scenario list is malformed (not written by drivesim?)")
    if head.get("format") != SET_FORMAT:
        raise ScenarioFileError(f"{path}: format {head.get('format')!r}, expected {SET_FORMAT!r}")
    hashes = [e["content_hash"] for e in entries]
    check = {k: v for k, v in head.items() if k != "set_hash"}
    if head.get("set_hash") != _set_hash(hashes, table_json, check):
        raise ScenarioFileError(f"{path}: set hash mismatch: the table, header or scenario list was damaged or edited")
    groups: dict[str, dict] = {}  # "s3" / "m0" -> its arrays
    for k, v in stored.items():
        owner, name = k.split("/", 1)
        groups.setdefault(owner, {})[name] = v
    roads: dict[int, object] = {}
    scenarios, errors = [], []
    for i, e in enumerate(entries):
        h = e["header"]
        a = {**groups.get(f"s{i}", {}), **groups.get(f"m{e['map']}", {})}
        where = f"{path}: scenario {h.get('name', i)!r}"
        if _digest(a, h) != e["content_hash"]:
            errors.append(f"{where}: content hash mismatch: damaged or edited")
            continue
        try:
            if e["map"] not in roads:
                roads[e["map"]] = _road(a, h)
            s = _scenario(a, h, roads[e["map"]])
            s.validate()
        except (ScenarioError, MapError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        except CONTENT_ERRORS as exc:
            errors.append(f"{where}: malformed content ({type(exc).__name__}: {exc})")
            continue
        s.meta = {**{k: v for k, v in s.meta.items() if k not in BOOKKEEPING}, "content_hash": e["content_hash"],
                  "scenario_file": path.name}
        scenarios.append(s)
    table = pd.read_json(io.StringIO(table_json), orient="split")
    return LoadedSet(scenarios, table, head, errors)
