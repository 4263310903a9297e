#!/usr/bin/env python
"""Diagnose reactive traffic on the shared real scenes: the logged ego replays its log, vehicles
are reactive (issue 15 item 7). Per scene: the ego's at-fault collisions, the logged agents held
back at appearance, and every overlap between two simulated agents (the ego, or an agent driven
by its controller) with its steps, control modes, lanes and speeds at the first overlapping step.

    python tools/reactive_overlaps.py                      # every shared scene
    python tools/reactive_overlaps.py nuscenes/0757 commonroad/USA_Peach-4_8_T-1
    python tools/reactive_overlaps.py --data DIR --verbose # also each pair's step-by-step gap
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivesim.traffic.log_modes import with_traffic  # noqa: E402
from drivesim.core.scenario import ScenarioBatch  # noqa: E402
from drivesim.core.geometry import boxes_overlap  # noqa: E402
from drivesim.core.types import ControlMode  # noqa: E402
from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig  # noqa: E402
from drivesim.sim.simulator import Simulator  # noqa: E402

NUSCENES = ["0061", "0103", "0553", "0655", "0757", "0796", "0916", "1077"]
COMMONROAD = ["USA_Lanker-1_1_T-1", "USA_Peach-4_8_T-1", "USA_US101-3_3_T-1", "USA_US101-4_1_T-1"]
SCENES = [f"nuscenes/{s}" for s in NUSCENES] + ["av2/motion"] + [f"commonroad/{s}" for s in COMMONROAD]
AT_FAULT = ("collisions_vru", "collisions_vehicle", "collisions_object")


def load(data: Path, scene: str):
    kind, name = scene.split("/")
    if kind == "nuscenes":
        from drivesim.io import scenarionet
        return scenarionet.load_file(data / "scenarionet_nuscenes" / f"sd_nuscenes_v1.0-mini_scene-{name}.pkl")
    if kind == "av2":
        from drivesim.io import av2
        return av2.load(data / "av2" / "motion")[0][0]
    from drivesim.io import commonroad
    return commonroad.load_scenario(data / "commonroad_ngsim" / f"{name}.xml")


def diagnose(data: Path, scene: str) -> dict:
    """Run one scene; return its counts and per-pair records."""
    batch = ScenarioBatch.build([with_traffic(load(data, scene), "reactive", ego="replay")])
    sim = Simulator(batch)
    state = sim.reset()
    acc = MetricAccumulator(batch, MetricConfig())
    acc.update(state, torch.ones(1, dtype=torch.bool))
    mode = batch.init["mode"][0]
    pairs: dict[tuple[int, int], dict] = {}
    eye = torch.eye(state.x.shape[1], dtype=torch.bool)
    for _ in range(batch.max_steps):
        state = sim.step(state, torch.zeros(1, 2))
        acc.update(state, torch.ones(1, dtype=torch.bool))
        sim_ag = state.valid[0] & ((mode == ControlMode.REACTIVE) & state.released[0])
        sim_ag[0] = bool(state.valid[0, 0])
        box = [getattr(state, k)[0] for k in ("x", "y", "yaw", "length", "width")]
        hit = boxes_overlap(tuple(v.unsqueeze(1) for v in box), tuple(v.unsqueeze(0) for v in box))
        hit &= sim_ag.unsqueeze(0) & sim_ag.unsqueeze(1) & ~eye
        hit = torch.triu(hit, diagonal=1)
        for i, j in hit.nonzero().tolist():
            rec = pairs.setdefault((i, j), {"steps": [], "first": None})
            rec["steps"].append(int(state.step))
            if rec["first"] is None:
                rec["first"] = {k: (int(state.lane[0, i]), int(state.lane[0, j])) if k == "lane" else
                                (round(float(getattr(state, k)[0, i]), 2), round(float(getattr(state, k)[0, j]), 2))
                                for k in ("lane", "speed", "x", "y", "yaw")}
    m = acc.finalize(None)
    at_fault = sum(float(m[c][0]) for c in AT_FAULT if c in m)
    names = {int(v): v.name for v in ControlMode}
    for (i, j), rec in pairs.items():
        rec["modes"] = (names[int(mode[i])] if i else "EGO(replay)", names[int(mode[j])])
    return {"scene": scene, "at_fault": at_fault, "held_back": int(sim.held_back.sum()), "pairs": pairs,
            "steps": sum(len(r["steps"]) for r in pairs.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*", default=SCENES)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DRIVESIM_DATA", ROOT.parent / "shared" / "data")))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| scene | ego at-fault | overlap pairs | overlap steps | held back |\n|---|---|---|---|---|")
    details = []
    for scene in args.scenes:
        try:
            r = diagnose(args.data, scene)
        except (ImportError, FileNotFoundError) as exc:
            print(f"| {scene} | skipped: {exc} | | | |")
            continue
        print(f"| {scene} | {r['at_fault']:.0f} | {len(r['pairs'])} | {r['steps']} | {r['held_back']} |", flush=True)
        details += [(scene, ij, rec) for ij, rec in r["pairs"].items()]
    for scene, (i, j), rec in details:
        s = rec["steps"]
        print(f"{scene}: agents {i}-{j} modes {rec['modes']} steps {s[0]}..{s[-1]} ({len(s)}) at first: {rec['first']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
