"""Import time of the shared Waymo Open Motion scenes (issue target: < 3 s a WOMD scenario).

    python tools/bench_import.py [DATA_DIR] [--repeat 3]     (default: $DRIVESIM_DATA or ../shared/data)

Times `drivesim.io.womd.load` on each TFRecord of womd_tfrecord/ and `drivesim.io.gpudrive.load`
on each JSON of womd_json/, one torch thread, best and worst of --repeat runs after one warm-up,
beside the ScenarioNet import of one nuScenes scene as the peer in the same run. Exit 1 when a WOMD
scenario misses the 3 s target.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)

from drivesim.io import gpudrive, scenarionet, womd  # noqa: E402

TARGET_S = 3.0


def _times(load, path: Path, repeat: int) -> list[float]:
    load(path)  # warm-up: imports, protobuf descriptors
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        load(path)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.environ.get("DRIVESIM_DATA", str(root.parent / "shared" / "data")))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    data = Path(args.data)
    jobs = [("womd", womd.load, f) for f in sorted((data / "womd_tfrecord").glob("*.tfrecord*"))]
    jobs += [("gpudrive", gpudrive.load, f) for f in sorted((data / "womd_json").glob("*.json"))]
    jobs += [("scenarionet (peer)", scenarionet.load, f) for f in sorted((data / "scenarionet_nuscenes").glob("*.pkl"))[:1]]
    if not jobs:
        print(f"error: no WOMD, GPUDrive or ScenarioNet files under {data}", file=sys.stderr)
        return 1
    missed = 0
    print(f"{'importer':20s} {'file':44s} {'best s':>7s} {'worst s':>7s}")
    for kind, load, path in jobs:
        t = _times(load, path, args.repeat)
        missed += kind == "womd" and min(t) >= TARGET_S
        print(f"{kind:20s} {path.name[:44]:44s} {min(t):7.2f} {max(t):7.2f}")
    print(f"WOMD target < {TARGET_S:.0f} s a scenario: {'met' if not missed else f'missed on {missed} file(s)'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
