#!/usr/bin/env python
"""Per-scene table of the shared real scenes: map, the logged ego as a policy, the PDM expert
against the log, and the realism of the traffic models.

    python tools/real_scene_table.py                  # all columns (realism takes a few minutes)
    python tools/real_scene_table.py --no-realism     # skip the realism meta-metrics
    python tools/real_scene_table.py --data DIR --csv out/real_scenes.csv

Scenes: every shared real log with an importer in this checkout (8 nuScenes via ScenarioNet, the
Argoverse 2 motion scenario, 4 CommonRoad/NGSIM; the WOMD TFRecord and the 2 GPUDrive JSON
scenes when io/importers.py registers `womd` / `gpudrive`; a missing importer or folder is
noted and skipped). Columns:
- drivable_m2: area of the scene's drivable-area polygon;
- log_pdms_replay / log_success_replay and ..._reactive: `--policy log` (the ego replays its
  log) under replay and reactive traffic; log_at_fault_reactive: its at-fault collisions there;
- expert_progress_m / log_progress_m / expert_vs_log / expert_at_fault: the PDM expert under
  reactive traffic, its progress along the route against the logged ego's, and its at-fault
  collisions (VRU + vehicle + object);
- realism_<model>: the WOSAC-style meta-metric (traffic_model/realism.py) of replay, learned, idm_mobil
  and constant_velocity traffic (NaN where the log is shorter than 1 s history + 8 s future).
Markdown to stdout, the same table as CSV (--csv).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivesim.traffic.log_modes import with_traffic  # noqa: E402
from drivesim.core.safe_io import atomic_write_text  # noqa: E402
from drivesim.io import importers  # noqa: E402
from drivesim.sim.evaluate import EvalConfig, evaluate  # noqa: E402
from drivesim.sim.expert import PDMClosed  # noqa: E402
from drivesim.sim.policy import LogReplay  # noqa: E402

SOURCES = (  # (importer module, folder under the data directory)
    ("scenarionet", "scenarionet_nuscenes"), ("av2", "av2/motion"), ("commonroad", "commonroad_ngsim"),
    ("womd", "womd_tfrecord"), ("gpudrive", "womd_json"),
)
REALISM_MODELS = ("replay", "learned", "idm_mobil", "constant_velocity")
AT_FAULT = ("collisions_vru", "collisions_vehicle", "collisions_object")


def load_scenes(data: Path) -> tuple[list, list[str]]:
    """Every scene an importer of this checkout reads from `data`, and notes on what was skipped."""
    scenes, notes = [], []
    for module, folder in SOURCES:
        path = data / folder
        if module not in importers.IMPORTERS:
            notes.append(f"{folder}: skipped (no importer {module!r} in this checkout)")
            continue
        if not path.exists():
            notes.append(f"{folder}: skipped (not found under {data})")
            continue
        loaded, errors = importers.load(module, path)
        scenes += loaded
        notes += [f"{folder}: skipped {e}" for e in errors]
    return scenes, notes


def policy_columns(scenes: list, batch_size: int) -> pd.DataFrame:
    """Log-ego and expert columns per scene (one evaluation per traffic mode)."""
    cfg = EvalConfig(batch_size=batch_size, keep_failure_trajectories=False)
    runs = {}
    for mode, policies in (("replay", [LogReplay()]), ("reactive", [LogReplay(), PDMClosed()])):
        res = evaluate([with_traffic(s, mode) for s in scenes], policies, config=cfg, show_progress=False).results
        for col in AT_FAULT:
            if col not in res:
                res[col] = np.nan
        res["at_fault"] = res[list(AT_FAULT)].sum(axis=1, min_count=1)
        runs[mode] = res.set_index(["policy", "scenario"])
    out = pd.DataFrame(index=[s.name for s in scenes])
    out["drivable_m2"] = [round(float(s.road.drivable.area), 0) for s in scenes]
    get = lambda mode, pol, col: [runs[mode][col].get((pol, s.name), np.nan) for s in scenes]
    out["log_pdms_replay"], out["log_success_replay"] = get("replay", "log", "pdms"), get("replay", "log", "success")
    out["log_pdms_reactive"], out["log_success_reactive"] = get("reactive", "log", "pdms"), get("reactive", "log", "success")
    out["log_at_fault_reactive"] = get("reactive", "log", "at_fault")
    out["expert_progress_m"] = get("reactive", "pdm_expert", "progress")
    out["log_progress_m"] = get("reactive", "pdm_expert", "expert_progress")  # the logged ego's (the reference)
    out["expert_vs_log"] = get("reactive", "pdm_expert", "route_completion")
    out["expert_at_fault"] = get("reactive", "pdm_expert", "at_fault")
    return out


def realism_columns(scenes: list) -> tuple[pd.DataFrame, list[str]]:
    """realism_<model> per scene; a model that cannot run (e.g. no learned artifact) is noted."""
    from drivesim.traffic_model.realism import realism

    out, notes = pd.DataFrame(index=[s.name for s in scenes]), []
    for model in REALISM_MODELS:
        try:
            table = realism(scenes, model).table
        except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
            notes.append(f"realism {model}: not computed ({type(exc).__name__}: {exc})")
            out[f"realism_{model}"] = np.nan
            continue
        out[f"realism_{model}"] = table.set_index("scenario")["meta_metric"].reindex(out.index)
    return out, notes


def markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (3 decimals; NaN shown as n/a)."""
    cols = ["scene"] + list(table.columns)
    fmt = lambda v: "n/a" if isinstance(v, float) and np.isnan(v) else (f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([name] + [fmt(v) for v in row.tolist()]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("DRIVESIM_DATA", str(ROOT.parent / "shared" / "data")),
                    help="real data directory (default: DRIVESIM_DATA or ../shared/data)")
    ap.add_argument("--csv", default="out/real_scene_table.csv", help="where to write the table as CSV")
    ap.add_argument("--no-realism", action="store_true", help="skip the realism meta-metrics (slow)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = Path(args.data)
    if not data.is_dir():
        print(f"error: real data not found at {data} (set --data or DRIVESIM_DATA)", file=sys.stderr)
        return 2
    scenes, notes = load_scenes(data)
    if not scenes:
        print(f"error: no real scene could be read under {data}", file=sys.stderr)
        return 2
    table = policy_columns(scenes, args.batch_size)
    if not args.no_realism:
        extra, more = realism_columns(scenes)
        table, notes = table.join(extra), notes + more
    print(markdown(table))
    for note in notes:
        print(f"- {note}")
    atomic_write_text(args.csv, table.rename_axis("scene").to_csv())
    print(f"wrote {args.csv} ({len(table)} scenes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
