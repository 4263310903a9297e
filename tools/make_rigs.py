"""Write configs/rigs/nuscenes.yaml and pandaset.yaml from the real calibrations in DRIVESIM_DATA.

    python tools/make_rigs.py [--data DIR] [--out configs/rigs]

nuScenes: the mmdetection3d info pickle of nuscenes_scene0061_kf0; PandaSet: sequence 002.
Prints each camera's position, heading and field of view as a sanity check.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from drivesim.render.splat.camera import RIG_DIR
from drivesim.render.splat.rigs import camera_yaws, rig_from_nuscenes_info, rig_from_pandaset


def describe(rig) -> None:
    print(f"{rig.source}: {rig.width}x{rig.height}")
    for name, k, m, yaw in zip(rig.names, rig.K, rig.cam_to_ego, camera_yaws(rig)):
        hfov = 2 * math.degrees(math.atan(rig.width / 2 / float(k[0, 0])))
        x, y, z = m[:3, 3].tolist()
        print(f"  {name:20s} at ({x:5.2f}, {y:5.2f}, {z:4.2f}) m  yaw {math.degrees(yaw):7.1f} deg  hfov {hfov:5.1f} deg")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("DRIVESIM_DATA", "../shared/data"))
    p.add_argument("--out", default=str(RIG_DIR))
    args = p.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    infos = sorted((data / "nuscenes_scene0061_kf0").glob("*.pkl"))
    if not infos:
        raise SystemExit(f"no nuScenes info pickle under {data / 'nuscenes_scene0061_kf0'}")
    for name, rig in (("nuscenes", rig_from_nuscenes_info(infos[0])), ("pandaset", rig_from_pandaset(data / "pandaset_002"))):
        describe(rig)
        print(f"wrote {rig.save(out / f'{name}.yaml')}")


if __name__ == "__main__":
    main()
