#!/usr/bin/env python
"""Ship seed 0 of a `drivesim report training` run as policies/il_base.pt and policies/rl_rare.pt.

    python tools/ship_policies.py out/training            # writes policies/{il_base,rl_rare}.{pt,json}
    python tools/ship_policies.py out/training --dest DIR

Each card gets `results`: that seed's greedy closed-loop numbers on every held-out set of the
run (from rows.csv), with the sets' provenance and hashes from report.json, the command and the
date; the weights are unchanged (the card's weights_sha256 is checked on load). The curves
figure of the job is copied beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path

import pandas as pd

SHIP = {"il": "il_base", "rl_rare": "rl_rare"}
COLUMNS = {"success": "success", "collision_rate": "collision_any", "pdms": "pdms", "comfort": "comfort",
           "progress_vs_expert": "progress_vs_expert", "route_completion": "route_completion"}


def seed_results(rows: pd.DataFrame, variant: str, seed: int = 0) -> dict:
    mine = rows[(rows["variant"] == variant) & (rows["seed"] == seed)]
    out = {}
    for set_name, g in mine.groupby("set", sort=False):
        out[set_name] = {"scenarios": int(g["scenario"].nunique()),
                         **{k: round(float(g[c].mean()), 3) for k, c in COLUMNS.items() if c in g}}
    return out


def main(argv=None) -> int:
    from drivesim.train.policy_net import load_policy, save_policy

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="the folder of a finished `drivesim report training` run")
    p.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "policies")
    args = p.parse_args(argv)
    report = json.loads((args.run / "report.json").read_text())
    rows = pd.read_csv(args.run / "rows.csv")
    date = datetime.date.today().isoformat()
    for variant, name in SHIP.items():
        job = args.run / f"{variant}_s0"
        policy = load_policy(job / "policy.pt")
        card = {k: v for k, v in policy.card.items() if k not in ("layout", "config", "weights_sha256", "format")}
        n_params = sum(t.numel() for t in policy.net.state_dict().values())
        card["name"] = name
        card["architecture"] = (f"PolicyNet: shared MLP encoders of agents and lane pieces (masked max-pool), route and ego "
                                f"MLPs, trunk MLP, hidden {policy.net.cfg.hidden}; heads: 12 accelerations x "
                                f"{len(policy.net.cfg.vocab.lateral)} lateral options (decoupled), value; decoded by the "
                                f"{policy.net.cfg.decode} acceleration; outputs a 4 s trajectory; {n_params} parameters")
        card["results"] = {"command": f"drivesim report training (seed 0 of {len(report['seeds'])}; greedy; {date})",
                           "held_out": seed_results(rows, variant), "eval_sets": report["eval_sets"],
                           "targets": report.get("targets", [])}
        out = save_policy(policy.net, args.dest / f"{name}.pt", card)
        if (job / "curves.png").exists():
            shutil.copyfile(job / "curves.png", args.dest / f"{name}_curves.png")
        print(f"wrote {out} (+ .json card) from {job}")
    if (args.run / "training.png").exists():
        shutil.copyfile(args.run / "training.png", args.dest / "training_table.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
