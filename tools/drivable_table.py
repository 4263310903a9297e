"""Drivable area of every shared real scene, and how much of the log lies on it.

    python tools/drivable_table.py [DATA_DIR]      (default: $DRIVESIM_DATA or ../shared/data)

One row per scene (ScenarioNet nuScenes, AV2 motion, CommonRoad; WOMD importers when present):
drivable area m^2, lane-polygon union m^2 and their ratio, closed road-edge rings used, the share
of ego / vehicle / moving-vehicle (> 2 m/s; all, and those inside the map's extent) logged steps on
the drivable area (no box corner more than 0.3 m off, the DAC test on the MapBank raster), the ego's
DAC and worst corner distance (m, negative: inside).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)

from drivesim.io.drivable_report import drivable_table_rows  # noqa: E402


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    data = Path(argv[0] if argv else os.environ.get("DRIVESIM_DATA", root.parent / "shared" / "data"))
    if not data.is_dir():
        print(f"no data folder at {data} (give it as the argument or set DRIVESIM_DATA)", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = drivable_table_rows(data)
    cols = ("scene", "drivable_m2", "lane_union_m2", "ratio", "rings", "ego_on", "vehicle_on", "moving_vehicle_on",
            "moving_in_map_on", "ego_dac", "ego_max_offroad")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) and c.endswith("_on") else
                         f"{r[c]:.2f}" if isinstance(r[c], float) and c in ("ratio", "ego_max_offroad") else
                         f"{r[c]:.0f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
